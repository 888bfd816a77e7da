//! The ARM surface: user-assigned identities and their federated identity credentials
//! (`Microsoft.ManagedIdentity`), with authentication, authorization, `api-version` checks,
//! per-caller throttling and ARM's request-id headers.
//!
//! Fixed path segments match case-insensitively (as ARM does); names keep their first spelling.

pub(crate) mod auth;
pub(crate) mod errors;
mod fics;
mod identities;
mod paging;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{OriginalUri, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};

use self::auth::Caller;
use self::errors::ArmError;
use crate::clock::unix_f64;
use crate::routes::{ArmPath, Route};
use crate::server::Shared;
use crate::throttle::{OpClass, Take};

/// `api-version`s accepted for identities.
pub const IDENTITY_API_VERSIONS: [&str; 8] = [
    "2015-08-31-preview",
    "2018-11-30",
    "2021-09-30-preview",
    "2022-01-31-preview",
    "2023-01-31",
    "2023-07-31-preview",
    "2024-11-30",
    "2025-01-31-preview",
];

/// `api-version`s accepted for federated identity credentials (they arrived in 2022-01-31-preview).
pub const FIC_API_VERSIONS: [&str; 5] = [
    "2022-01-31-preview",
    "2023-01-31",
    "2023-07-31-preview",
    "2024-11-30",
    "2025-01-31-preview",
];

/// One ARM request after routing and authentication.
pub(crate) struct Request {
    pub path: ArmPath,
    pub caller: Caller,
    pub query: HashMap<String, String>,
    pub api_version: String,
    pub body: Bytes,
    /// The request path without query (the resource id or collection id as written).
    pub raw_path: String,
}

/// The fallback handler: everything not matched by Entra or admin routes lands here.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut remaining: Option<(OpClass, u64)> = None;
    let mut resp = match dispatch(&shared, &method, &uri, &headers, body, &mut remaining).await {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_client_error() || e.status.is_server_error() {
                tracing::debug!(%method, path = uri.path(), status = e.status.as_u16(), code = e.code, "ARM error");
            }
            e.into_response()
        }
    };
    let h = resp.headers_mut();
    let request_id = uuid::Uuid::new_v4().to_string();
    let correlation = headers
        .get("x-ms-correlation-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| request_id.clone());
    for (name, value) in [
        ("x-ms-request-id", &request_id),
        ("x-ms-correlation-request-id", &correlation),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    if let Some(v) = headers.get("x-ms-client-request-id") {
        h.insert("x-ms-client-request-id", v.clone());
    }
    if let Some((class, n)) = remaining {
        h.insert(class.header(), HeaderValue::from(n));
    }
    resp
}

async fn dispatch(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    body: Bytes,
    remaining: &mut Option<(OpClass, u64)>,
) -> Result<Response, ArmError> {
    let raw_path = uri.path().trim_end_matches('/').to_owned();
    let Some(path) = ArmPath::parse(&raw_path) else {
        return Err(ArmError::new(
            404,
            "NotFound",
            format!(
                "The emulator does not serve '{method} {raw_path}' (only Microsoft.ManagedIdentity identities and federated identity credentials)."
            ),
        ));
    };
    let route = path.route(method);
    if route == Route::Other {
        return Err(ArmError::new(
            405,
            "MethodNotAllowed",
            format!("The method '{method}' is not allowed on '{raw_path}'."),
        ));
    }
    let caller = auth::authenticate(shared, headers)?;
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let is_fic = matches!(
        route,
        Route::ArmFicGet | Route::ArmFicPut | Route::ArmFicDelete | Route::ArmFicList
    );
    let api_version = check_api_version(query.get("api-version").map(String::as_str), is_fic)?;

    let class = match *method {
        Method::PUT => OpClass::Write,
        Method::DELETE => OpClass::Delete,
        _ => OpClass::Read,
    };
    match shared
        .throttle
        .take(&caller.object_id, class, unix_f64(shared.now()))
    {
        Take::Allowed(n) => *remaining = Some((class, n)),
        Take::Throttled(secs) => {
            *remaining = Some((class, 0));
            let mut e = ArmError::new(
                429,
                "TooManyRequests",
                format!(
                    "The request is being throttled as the limit has been reached for operation type - {}. Please \
                     try again after {secs} seconds.",
                    match class {
                        OpClass::Read => "Read",
                        OpClass::Write => "Write",
                        OpClass::Delete => "Delete",
                    }
                ),
            );
            e.retry_after = Some(secs);
            return Err(e);
        }
    }

    check_containers(shared, &caller, &path, class)?;
    let action = action_name(route);
    auth::authorize(shared, &caller, action, &raw_path)?;

    let req = Request {
        path,
        caller,
        query,
        api_version,
        body,
        raw_path,
    };
    match route {
        Route::ArmIdentityGet => identities::get(shared, &req),
        Route::ArmIdentityPut => identities::put(shared, &req),
        Route::ArmIdentityDelete => identities::delete(shared, &req),
        Route::ArmIdentityList => identities::list(shared, &req),
        Route::ArmFicGet => fics::get(shared, &req),
        Route::ArmFicPut => fics::put(shared, &req).await,
        Route::ArmFicDelete => fics::delete(shared, &req).await,
        Route::ArmFicList => fics::list(shared, &req),
        _ => Err(ArmError::internal("unrouted ARM request")),
    }
}

fn check_api_version(given: Option<&str>, fic: bool) -> Result<String, ArmError> {
    let Some(v) = given.filter(|v| !v.is_empty()) else {
        return Err(ArmError::bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    let supported: &[&str] = if fic {
        &FIC_API_VERSIONS
    } else {
        &IDENTITY_API_VERSIONS
    };
    if supported.contains(&v) {
        return Ok(v.to_owned());
    }
    let well_formed = {
        let date = v.strip_suffix("-preview").unwrap_or(v);
        date.len() == 10
            && date.chars().enumerate().all(|(i, c)| {
                if i == 4 || i == 7 {
                    c == '-'
                } else {
                    c.is_ascii_digit()
                }
            })
    };
    let ty = if fic {
        "userAssignedIdentities/federatedIdentityCredentials"
    } else {
        "userAssignedIdentities"
    };
    if !well_formed {
        return Err(ArmError::bad_request(
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{v}' is invalid. The supported versions are '{}'.",
                supported.join(",")
            ),
        ));
    }
    Err(ArmError::bad_request(
        "NoRegisteredProviderFound",
        format!(
            "No registered resource provider found for location 'westeurope' and API version '{v}' for type '{ty}'. \
             The supported api-versions are '{}'.",
            supported.join(", ")
        ),
    ))
}

/// Subscription and resource group existence, and the token's tenant owning the subscription.
fn check_containers(
    shared: &Shared,
    caller: &Caller,
    path: &ArmPath,
    class: OpClass,
) -> Result<(), ArmError> {
    let (sub_tenant, rg_exists) = {
        let state = shared.state.read();
        let sub = state.subscription(&path.subscription).map(|s| s.tenant);
        let rg = path
            .resource_group
            .as_deref()
            .is_none_or(|rg| state.resource_group_exists(&path.subscription, rg));
        (sub, rg)
    };
    match sub_tenant {
        Some(t) => auth::check_tenant(shared, caller, t)?,
        None if shared.settings.auto_create_containers => {
            if class == OpClass::Write {
                shared.mutate(|s| {
                    s.ensure_subscription(&path.subscription, caller.tenant);
                })?;
            }
        }
        None => {
            return Err(ArmError::new(
                404,
                "SubscriptionNotFound",
                format!("The subscription '{}' could not be found.", path.subscription),
            ));
        }
    }
    if !rg_exists && !shared.settings.auto_create_containers {
        return Err(ArmError::new(
            404,
            "ResourceGroupNotFound",
            format!(
                "Resource group '{}' could not be found.",
                path.resource_group.as_deref().unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

fn action_name(route: Route) -> &'static str {
    match route {
        Route::ArmIdentityGet | Route::ArmIdentityList => {
            "Microsoft.ManagedIdentity/userAssignedIdentities/read"
        }
        Route::ArmIdentityPut => "Microsoft.ManagedIdentity/userAssignedIdentities/write",
        Route::ArmIdentityDelete => "Microsoft.ManagedIdentity/userAssignedIdentities/delete",
        Route::ArmFicGet | Route::ArmFicList => {
            "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/read"
        }
        Route::ArmFicPut => {
            "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write"
        }
        _ => "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/delete",
    }
}

/// Parses a JSON request body (400 `InvalidRequestContent` otherwise).
pub(crate) fn json_body(body: &[u8]) -> Result<serde_json::Value, ArmError> {
    if body.is_empty() {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    serde_json::from_slice(body).map_err(|e| {
        ArmError::bad_request(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: {e}."),
        )
    })
}

/// A JSON response with a status.
pub(crate) fn json(status: u16, value: serde_json::Value) -> Response {
    let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    (status, axum::Json(value)).into_response()
}
