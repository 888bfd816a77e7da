//! Serving an issuer store over HTTP, for Entra (the controller and the sandbox mount this).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::store::{ETag, IssuerStore, validate_path};

/// Options of [`router_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// `Cache-Control: public, max-age=…` on every document.
    pub max_age: Duration,
}

impl Default for ServeOptions {
    /// One minute: short, so a withdrawn key disappears quickly from shared caches.
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(60),
        }
    }
}

#[derive(Clone)]
struct ServeState {
    store: Arc<dyn IssuerStore>,
    cache_control: HeaderValue,
}

/// A router serving every document of `store` at `/{path}` (GET and HEAD only), with
/// `Content-Type: application/json`, a strong `ETag` (`If-None-Match` → 304) and a short
/// `Cache-Control`. Unknown or invalid paths are 404; other methods are 405.
pub fn router(store: Arc<dyn IssuerStore>) -> Router {
    router_with(store, ServeOptions::default())
}

/// [`router`] with explicit options.
pub fn router_with(store: Arc<dyn IssuerStore>, options: ServeOptions) -> Router {
    let cache_control = HeaderValue::try_from(format!("public, max-age={}", options.max_age.as_secs()))
        .unwrap_or_else(|_| HeaderValue::from_static("public, max-age=60"));
    Router::new()
        .route("/{*path}", get(serve))
        .with_state(ServeState { store, cache_control })
}

async fn serve(State(state): State<ServeState>, Path(path): Path<String>, headers: HeaderMap) -> Response {
    if validate_path(&path).is_err() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let (bytes, etag) = match state.store.read(&path).await {
        Ok(Some(found)) => found,
        Ok(None) => return StatusCode::NOT_FOUND.into_response(),
        Err(error) => {
            tracing::warn!(%path, %error, "reading an issuer document failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut out = HeaderMap::new();
    out.insert(header::CACHE_CONTROL, state.cache_control.clone());
    if let Ok(value) = HeaderValue::try_from(etag.as_str()) {
        out.insert(header::ETAG, value);
    }
    if if_none_match(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    (StatusCode::OK, out, bytes).into_response()
}

/// RFC 9110 §13.1.2: weak comparison against each listed tag, or `*`.
fn if_none_match(headers: &HeaderMap, etag: &ETag) -> bool {
    let ours = etag.as_str().trim_start_matches("W/");
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
}
