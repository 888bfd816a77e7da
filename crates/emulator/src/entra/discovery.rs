//! Entra's metadata endpoints: the OpenID configuration, the JWKS and instance discovery.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::json;

use super::errors::EntraError;
use crate::server::Shared;

const GENERIC_TENANTS: [&str; 3] = ["common", "organizations", "consumers"];

pub(crate) async fn openid_configuration(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    let tid = if GENERIC_TENANTS.contains(&tenant.to_ascii_lowercase().as_str()) {
        "{tenantid}".to_owned()
    } else {
        match shared.state.read().tenant(&tenant) {
            Some(t) => t.id.to_string(),
            None => return EntraError::tenant_not_found(&tenant).into_response_for(&shared, &headers),
        }
    };
    let base = shared.base_url();
    Json(json!({
        "token_endpoint": format!("{base}/{tid}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{tid}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{base}/{tid}/v2.0"),
        "request_uri_parameter_supported": false,
        "authorization_endpoint": format!("{base}/{tid}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{tid}/oauth2/v2.0/devicecode"),
        "end_session_endpoint": format!("{base}/{tid}/oauth2/v2.0/logout"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "oid", "tid", "appid", "idtyp", "xms_mirid", "ver"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
    }))
    .into_response()
}

pub(crate) async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({"keys": [shared.signer.jwk()]})).into_response()
}

/// `GET /common/discovery/instance?api-version=1.1&authorization_endpoint=...` (MSAL asks it for
/// authority hosts it does not know).
pub(crate) async fn instance_discovery(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let base = shared.base_url();
    let host = base.split("://").nth(1).unwrap_or_default().to_owned();
    let tenant = query
        .get("authorization_endpoint")
        .and_then(|ep| ep.strip_prefix(&format!("{base}/")))
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("common")
        .to_owned();
    Json(json!({
        "tenant_discovery_endpoint": format!("{base}/{tenant}/v2.0/.well-known/openid-configuration"),
        "api-version": "1.1",
        "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
    }))
    .into_response()
}
