//! The Entra ID surface: token endpoint, OpenID configuration, JWKS, instance discovery.
//!
//! Error statuses: `invalid_client` errors (7000218, 7000215, 70002, 70021 and the 70021x
//! variants, 700024, 700027, 50166, 700222) answer 401; `invalid_request` (900144, 90002,
//! 50027), `unauthorized_client` (700016), `invalid_scope` (700022, 70011) and
//! `unsupported_grant_type` (70003) answer 400.

pub(crate) mod assertion;
pub(crate) mod discovery;
pub(crate) mod errors;
pub(crate) mod issuer_cache;
pub(crate) mod token;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::server::Shared;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token::token))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route(
            "/{tenant}/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(discovery::jwks))
        .route("/{tenant}/discovery/keys", get(discovery::jwks))
        .route("/common/discovery/instance", get(discovery::instance_discovery))
}
