//! The admin surface under `/_emulator` (no authentication: bind it to loopback).
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /_emulator/healthz`, `GET /_emulator/readyz` | | `ok` |
//! | `GET /_emulator/metrics` | | Prometheus text: `idbind_emulator_requests_total{route,status}` |
//! | `GET /_emulator/info` | | [`EmulatorInfo`](crate::EmulatorInfo) (the ready line) |
//! | `GET /_emulator/counters` | | [`Counters`](crate::Counters): `{"arm.fic.put": {"201": 3}}` |
//! | `POST /_emulator/counters/reset` (or `DELETE /_emulator/counters`) | | 204 |
//! | `GET /_emulator/faults` | | route name → [`Fault`] |
//! | `PUT /_emulator/faults/{route}` (`*` for all) | [`Fault`] JSON | 204 |
//! | `DELETE /_emulator/faults/{route}` / `DELETE /_emulator/faults` | | 204 |
//! | `GET`/`PUT /_emulator/throttle` | [`ThrottleConfig`] JSON | 200 / 204 |
//! | `PUT /_emulator/fic-write-hold` | `{"millis": 100}` | 204 |
//! | `POST /_emulator/issuer-cache/flush` | | 204 |
//! | `POST /_emulator/tenants` | | `{"tenantId"}` |
//! | `POST /_emulator/service-principals` | [`ServicePrincipalSpec`] JSON | [`ServicePrincipalCredentials`](crate::ServicePrincipalCredentials) |
//! | `POST /_emulator/identities` | `{"subscription"?, "resourceGroup", "name", "location"?}` | [`IdentityInfo`](crate::IdentityInfo) |
//! | `POST /_emulator/seed` | a seed document (YAML or JSON) | 204 |

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::config::ThrottleConfig;
use crate::faults::Fault;
use crate::ops::{IdentityRequest, ServicePrincipalSpec};
use crate::routes::RouteSelector;
use crate::seed::Seed;
use crate::server::Shared;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_emulator/healthz", get(|| async { "ok" }))
        .route("/_emulator/readyz", get(|| async { "ok" }))
        .route("/_emulator/metrics", get(metrics))
        .route("/_emulator/info", get(info))
        .route("/_emulator/counters", get(counters).delete(reset_counters))
        .route("/_emulator/counters/reset", post(reset_counters))
        .route("/_emulator/faults", get(faults).delete(clear_faults))
        .route("/_emulator/faults/{route}", put(set_fault).delete(clear_fault))
        .route("/_emulator/throttle", get(throttle).put(set_throttle))
        .route("/_emulator/fic-write-hold", put(set_hold))
        .route("/_emulator/issuer-cache/flush", post(flush))
        .route("/_emulator/tenants", post(create_tenant))
        .route("/_emulator/service-principals", post(create_principal))
        .route("/_emulator/identities", post(create_identity))
        .route("/_emulator/seed", post(seed))
        .route(
            "/_emulator/{*rest}",
            delete(not_found).get(not_found).post(not_found).put(not_found),
        )
}

fn bad_request(msg: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": msg.to_string()}))).into_response()
}

fn result<T: serde::Serialize>(r: crate::Result<T>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e @ crate::Error::NotFound { .. }) => {
            (StatusCode::NOT_FOUND, Json(json!({"error": e.to_string()}))).into_response()
        }
        Err(e @ (crate::Error::StateWrite { .. } | crate::Error::Crypto(_))) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
        Err(e) => bad_request(e),
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no such admin endpoint; see the idbind_emulator::admin docs"})),
    )
        .into_response()
}

async fn info(State(s): State<Arc<Shared>>) -> Response {
    Json(crate::info_of(&s)).into_response()
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.counters.encode(),
    )
        .into_response()
}

async fn counters(State(s): State<Arc<Shared>>) -> Response {
    Json(s.counters.snapshot()).into_response()
}

async fn reset_counters(State(s): State<Arc<Shared>>) -> StatusCode {
    s.counters.reset();
    StatusCode::NO_CONTENT
}

async fn faults(State(s): State<Arc<Shared>>) -> Response {
    Json(s.faults.snapshot()).into_response()
}

async fn clear_faults(State(s): State<Arc<Shared>>) -> StatusCode {
    s.faults.clear(None);
    StatusCode::NO_CONTENT
}

async fn set_fault(
    State(s): State<Arc<Shared>>,
    Path(route): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let sel: RouteSelector = match route.parse() {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let fault: Fault = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return bad_request(format!("expected a fault JSON object: {e}")),
    };
    s.faults.set(sel, fault);
    StatusCode::NO_CONTENT.into_response()
}

async fn clear_fault(State(s): State<Arc<Shared>>, Path(route): Path<String>) -> Response {
    match route.parse::<RouteSelector>() {
        Ok(sel) => {
            s.faults.clear(Some(sel));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_request(e),
    }
}

async fn throttle(State(s): State<Arc<Shared>>) -> Response {
    Json(s.throttle.config()).into_response()
}

async fn set_throttle(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<ThrottleConfig>(&body) {
        Ok(c) => {
            s.throttle.set(c);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_request(format!("expected a throttle JSON object: {e}")),
    }
}

#[derive(Deserialize)]
struct Hold {
    millis: u64,
}

async fn set_hold(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<Hold>(&body) {
        Ok(h) => {
            *s.fic_write_hold.lock() = Duration::from_millis(h.millis);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_request(format!("expected {{\"millis\": <integer>}}: {e}")),
    }
}

async fn flush(State(s): State<Arc<Shared>>) -> StatusCode {
    s.issuers.flush();
    StatusCode::NO_CONTENT
}

async fn create_tenant(State(s): State<Arc<Shared>>) -> Response {
    result(s.create_tenant().map(|t| json!({"tenantId": t})))
}

async fn create_principal(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let spec: ServicePrincipalSpec = if body.is_empty() {
        ServicePrincipalSpec::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(x) => x,
            Err(e) => return bad_request(format!("expected a service principal JSON object: {e}")),
        }
    };
    result(s.create_service_principal(&spec))
}

async fn create_identity(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let req: IdentityRequest = match serde_json::from_slice(&body) {
        Ok(x) => x,
        Err(e) => {
            return bad_request(format!(
                "expected {{\"subscription\"?, \"resourceGroup\", \"name\", \"location\"?}}: {e}"
            ));
        }
    };
    let sub = req
        .subscription
        .clone()
        .unwrap_or_else(|| s.state.read().default_subscription.clone());
    result(s.create_identity(&sub, &req.resource_group, &req.name, req.location.as_deref()))
}

async fn seed(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return bad_request("the seed must be UTF-8 YAML or JSON");
    };
    match Seed::from_str_named(text, "request body").and_then(|seed| s.apply_seed(&seed)) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => result::<()>(Err(e)),
    }
}
