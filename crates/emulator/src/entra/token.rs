//! `POST /{tenant}/oauth2/v2.0/token`: the client-credentials grant with a client secret or a
//! federated (jwt-bearer) client assertion.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use idbind_model::TenantId;
use serde_json::json;

use super::errors::EntraError;
use crate::clock::unix_secs;
use crate::server::Shared;
use crate::state::{Client, Fic};

/// The only supported `client_assertion_type`.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Who a token is for.
struct Subject {
    tenant: TenantId,
    appid: String,
    oid: String,
    mirid: Option<String>,
    /// `appidacr`: 1 = secret, 2 = certificate/assertion.
    acr: &'static str,
}

pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match issue(&shared, &tenant, &headers, &body).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::info!(tenant, code = e.code, "token request rejected");
            e.into_response_for(&shared, &headers)
        }
    }
}

async fn issue(
    shared: &Shared,
    tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, EntraError> {
    let tenant_id = shared
        .state
        .read()
        .tenant(tenant)
        .map(|t| t.id)
        .ok_or_else(|| EntraError::tenant_not_found(tenant))?;
    let form: HashMap<String, String> = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map_err(|_| EntraError::missing_parameter("grant_type"))?
        .into_iter()
        .rev()
        .collect();
    let param = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let grant = param("grant_type").ok_or_else(|| EntraError::missing_parameter("grant_type"))?;
    if grant != "client_credentials" {
        return Err(EntraError::unsupported_grant_type(grant));
    }
    let (basic_id, basic_secret) = basic_auth(headers).unzip();
    let client_id = param("client_id")
        .map(str::to_owned)
        .or(basic_id)
        .ok_or_else(|| EntraError::missing_parameter("client_id"))?;
    let scope = param("scope").ok_or_else(|| EntraError::missing_parameter("scope"))?;
    let audience = scope_audience(scope)?;
    let secret = param("client_secret").map(str::to_owned).or(basic_secret);
    let assertion = param("client_assertion");

    enum Who {
        Principal {
            object_id: String,
            secret: String,
        },
        Identity {
            object_id: String,
            mirid: String,
            fics: Vec<Fic>,
        },
    }
    let who = {
        let state = shared.state.read();
        match state.client(tenant_id, &client_id) {
            Some(Client::Principal(p)) => Who::Principal {
                object_id: p.object_id.to_string(),
                secret: p.secret.clone(),
            },
            Some(Client::Identity(i)) => Who::Identity {
                object_id: i.principal_id.to_string(),
                mirid: i.resource_id(),
                fics: i.fics.values().cloned().collect(),
            },
            None => return Err(EntraError::unknown_client(&client_id, tenant)),
        }
    };

    let subject = match (secret, assertion) {
        (None, None) => return Err(EntraError::no_credential()),
        (Some(given), None) => match who {
            Who::Principal { object_id, secret }
                if aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), secret.as_bytes())
                    .is_ok() =>
            {
                Subject {
                    tenant: tenant_id,
                    appid: client_id.clone(),
                    oid: object_id,
                    mirid: None,
                    acr: "1",
                }
            }
            _ => return Err(EntraError::invalid_secret(&client_id)),
        },
        (_, Some(assertion)) => {
            match param("client_assertion_type") {
                None => return Err(EntraError::missing_parameter("client_assertion_type")),
                Some(JWT_BEARER) => {}
                Some(other) => return Err(EntraError::bad_assertion_type(other)),
            }
            let (object_id, mirid, fics) = match who {
                Who::Identity {
                    object_id,
                    mirid,
                    fics,
                } => (object_id, Some(mirid), fics),
                Who::Principal { object_id, .. } => (object_id, None, Vec::new()),
            };
            super::assertion::validate(shared, assertion, &fics).await?;
            Subject {
                tenant: tenant_id,
                appid: client_id.clone(),
                oid: object_id,
                mirid,
                acr: "2",
            }
        }
    };
    mint(shared, &subject, &audience)
}

/// Client secret from `Authorization: Basic` (client_secret_basic).
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// The token audience for a `<resource>/.default` scope. ARM's resource keeps its trailing slash
/// (`https://management.azure.com/`), as Entra's tokens for it do.
pub(crate) fn scope_audience(scope: &str) -> Result<String, EntraError> {
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    if scopes.len() > 1 {
        let resources: std::collections::BTreeSet<&str> = scopes
            .iter()
            .map(|s| s.trim_end_matches("/.default").trim_end_matches('/'))
            .collect();
        if resources.len() > 1 || scopes.iter().any(|s| !s.ends_with("/.default")) {
            return Err(EntraError::multi_resource_scope(scope));
        }
    }
    let one = scopes.first().copied().unwrap_or_default();
    let resource = one
        .strip_suffix("/.default")
        .ok_or_else(|| EntraError::invalid_scope(scope))?;
    let bare = resource.trim_end_matches('/');
    if bare.is_empty() {
        return Err(EntraError::invalid_scope(scope));
    }
    const SLASHED: [&str; 2] = [
        "https://management.azure.com",
        "https://management.core.windows.net",
    ];
    if SLASHED.iter().any(|s| s.eq_ignore_ascii_case(bare)) {
        Ok(format!("{bare}/"))
    } else {
        Ok(bare.to_owned())
    }
}

fn mint(shared: &Shared, s: &Subject, audience: &str) -> Result<Response, EntraError> {
    let now = unix_secs(shared.now());
    let lifetime = i64::try_from(shared.settings.token_lifetime.as_secs()).unwrap_or(86_100);
    let mut claims = json!({
        "aud": audience,
        "iss": shared.issuer(&s.tenant),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "appid": s.appid,
        "azp": s.appid,
        "appidacr": s.acr,
        "azpacr": s.acr,
        "idtyp": "app",
        "oid": s.oid,
        "sub": s.oid,
        "tid": s.tenant.to_string(),
        "uti": uuid::Uuid::new_v4().simple().to_string(),
        "ver": "2.0",
    });
    if let Some(mirid) = &s.mirid {
        claims["xms_mirid"] = json!(mirid);
    }
    let token = shared
        .signer
        .sign(&claims)
        .map_err(|e| EntraError::internal(&e.to_string()))?;
    tracing::info!(client_id = %s.appid, aud = audience, kid = shared.signer.kid(), "issued access token");
    let mut resp = Json(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": token,
    }))
    .into_response();
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    resp.headers_mut()
        .insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_to_audience() {
        assert_eq!(
            scope_audience("https://management.azure.com/.default").unwrap(),
            "https://management.azure.com/"
        );
        assert_eq!(
            scope_audience("https://management.azure.com//.default").unwrap(),
            "https://management.azure.com/"
        );
        assert_eq!(
            scope_audience("https://storage.azure.com/.default").unwrap(),
            "https://storage.azure.com"
        );
        assert_eq!(scope_audience("api://x/.default").unwrap(), "api://x");
        assert_eq!(
            scope_audience("https://a/.default https://b/.default")
                .unwrap_err()
                .code,
            700022
        );
        assert_eq!(scope_audience("https://a/user.read").unwrap_err().code, 70011);
        assert_eq!(scope_audience("/.default").unwrap_err().code, 70011);
    }
}
