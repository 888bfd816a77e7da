//! The crate's setup error ([`Error`]) and the per-request rejection ([`ExchangeError`]), which
//! carries everything needed to answer the caller with an Entra-shaped error.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

/// Result of setting up an exchanger or one of its parts.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while setting up an [`Exchanger`](crate::Exchanger).
/// Failures of single exchanges are [`ExchangeError`]s instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is unusable.
    #[error("invalid configuration {what}: {reason}")]
    Config {
        /// The setting at fault.
        what: &'static str,
        /// What was wrong and what was expected.
        reason: String,
    },

    /// The HTTP client for Entra could not be built (for example a bad CA bundle).
    #[error("building the Entra HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),

    /// The signing-key directory could not be read.
    #[error("reading signing keys from {path}: {source}")]
    KeysRead {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The signing-key files do not hold a usable key set.
    #[error("signing keys in {path} are unusable: {reason}")]
    KeysInvalid {
        /// The directory.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// Why an exchange was refused: the outcome label of the exchange metrics, and what tests check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// A request parameter is missing or malformed.
    InvalidRequest,
    /// The scope names no resource.
    InvalidScope,
    /// The grant type is not `client_credentials` (rendered by the HTTP surface).
    UnsupportedGrantType,
    /// The service-account token did not authenticate.
    Unauthenticated,
    /// No Ready IdentityBinding serves the client id.
    Unbound,
    /// Kubernetes RBAC does not allow the service account to use the identity.
    Forbidden,
    /// Entra refused the exchange; its status and body are passed through.
    UpstreamRejected,
    /// Transient trouble: Entra or the Kubernetes API unavailable, or not ready yet.
    Unavailable,
    /// idbind itself is misconfigured or failed.
    Internal,
}

impl Rejection {
    /// A short stable name, used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidScope => "invalid_scope",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::Unauthenticated => "unauthenticated",
            Self::Unbound => "unbound",
            Self::Forbidden => "forbidden",
            Self::UpstreamRejected => "upstream_rejected",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Entra's answer to a refused exchange, kept verbatim to be passed through.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamResponse {
    /// Entra's HTTP status.
    pub status: StatusCode,
    /// Entra's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Entra's body, unchanged.
    pub body: Bytes,
}

impl fmt::Debug for UpstreamResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamResponse")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A refused exchange: what to tell the caller.
///
/// [`ExchangeError::to_response`] renders it. Errors idbind decides itself get Entra's JSON error
/// shape (PROTOCOL.md §3.4) with an OAuth `error` code and a description starting with
/// `idbind:`; errors Entra returned ([`Rejection::UpstreamRejected`]) keep Entra's status and
/// body unchanged. See the crate docs for the full mapping.
#[derive(Clone, Debug)]
pub struct ExchangeError(Box<Details>);

#[derive(Clone, Debug)]
struct Details {
    rejection: Rejection,
    status: StatusCode,
    error: String,
    description: String,
    error_codes: Vec<u32>,
    retry_after: Option<Duration>,
    upstream: Option<UpstreamResponse>,
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.0.status.as_u16(),
            self.0.error,
            self.0.description
        )
    }
}

impl std::error::Error for ExchangeError {}

/// An HTTP error response, ready to be written.
#[derive(Clone, Debug)]
pub struct ErrorResponse {
    /// The status code.
    pub status: StatusCode,
    /// The `Content-Type` of `body` (may be absent for a passed-through upstream body).
    pub content_type: Option<String>,
    /// A `Retry-After` value in whole seconds, to send as that header when present.
    pub retry_after_secs: Option<u64>,
    /// The body.
    pub body: Bytes,
}

#[derive(Serialize)]
struct EntraErrorBody<'a> {
    error: &'a str,
    error_description: String,
    #[serde(skip_serializing_if = "<[u32]>::is_empty")]
    error_codes: &'a [u32],
    timestamp: String,
    trace_id: String,
    correlation_id: &'a str,
}

impl ExchangeError {
    fn build(rejection: Rejection, status: StatusCode, error: &str, description: impl Into<String>) -> Self {
        Self(Box::new(Details {
            rejection,
            status,
            error: error.to_owned(),
            description: description.into(),
            error_codes: Vec::new(),
            retry_after: None,
            upstream: None,
        }))
    }

    /// 400 `invalid_request`: a parameter is missing or malformed.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::build(
            Rejection::InvalidRequest,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            description,
        )
    }

    /// 400 `invalid_scope`: the scope names no resource.
    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Self::build(
            Rejection::InvalidScope,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            description,
        )
    }

    /// 400 `unsupported_grant_type`: only `client_credentials` is served.
    pub fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::build(
            Rejection::UnsupportedGrantType,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            description,
        )
    }

    /// 401 `invalid_client`: the service-account token did not authenticate.
    pub fn unauthenticated(description: impl Into<String>) -> Self {
        Self::build(
            Rejection::Unauthenticated,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            description,
        )
    }

    /// 400 `unauthorized_client`: no Ready binding serves the client id.
    pub fn unbound(description: impl Into<String>) -> Self {
        Self::build(
            Rejection::Unbound,
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            description,
        )
    }

    /// 403 `unauthorized_client`: RBAC denies the use of the identity.
    pub fn forbidden(description: impl Into<String>) -> Self {
        Self::build(
            Rejection::Forbidden,
            StatusCode::FORBIDDEN,
            "unauthorized_client",
            description,
        )
    }

    /// 503 `temporarily_unavailable`: transient trouble; retrying later may succeed.
    pub fn unavailable(description: impl Into<String>, retry_after: Option<Duration>) -> Self {
        let mut e = Self::build(
            Rejection::Unavailable,
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            description,
        );
        e.0.retry_after = retry_after;
        e
    }

    /// 500 `server_error`: idbind is misconfigured or failed.
    pub fn internal(description: impl Into<String>) -> Self {
        Self::build(
            Rejection::Internal,
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            description,
        )
    }

    /// Any other status and OAuth error code decided by the HTTP surface (for example 413 for an
    /// oversized body), counted as [`Rejection::InvalidRequest`].
    pub fn custom(status: StatusCode, error: &str, description: impl Into<String>) -> Self {
        Self::build(Rejection::InvalidRequest, status, error, description)
    }

    /// Entra refused: its status and body are passed through unchanged.
    pub(crate) fn upstream(
        response: UpstreamResponse,
        error: Option<String>,
        description: Option<String>,
        error_codes: Vec<u32>,
        retry_after: Option<Duration>,
    ) -> Self {
        Self(Box::new(Details {
            rejection: Rejection::UpstreamRejected,
            status: response.status,
            error: error.unwrap_or_else(|| "invalid_request".to_owned()),
            description: description.unwrap_or_else(|| format!("Entra answered {}", response.status)),
            error_codes,
            retry_after,
            upstream: Some(response),
        }))
    }

    /// Why the exchange was refused.
    pub fn rejection(&self) -> Rejection {
        self.0.rejection
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The OAuth `error` code (`invalid_request`, `invalid_client`, `unauthorized_client`,
    /// `temporarily_unavailable`, ...); for an upstream rejection, Entra's.
    pub fn error_code(&self) -> &str {
        &self.0.error
    }

    /// The human-readable description (Entra's for an upstream rejection).
    pub fn description(&self) -> &str {
        &self.0.description
    }

    /// AADSTS codes; only Entra's own, never invented by idbind.
    pub fn error_codes(&self) -> &[u32] {
        &self.0.error_codes
    }

    /// How long the caller should wait before retrying, for transient failures.
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }

    /// Entra's original response, for an upstream rejection.
    pub fn upstream_response(&self) -> Option<&UpstreamResponse> {
        self.0.upstream.as_ref()
    }

    /// Renders the response: Entra's verbatim for an upstream rejection, otherwise Entra's JSON
    /// error shape with `correlation_id` echoed and a fresh `trace_id`.
    pub fn to_response(&self, correlation_id: &str) -> ErrorResponse {
        let d = &self.0;
        let retry_after_secs = d.retry_after.map(|d| d.as_secs().max(1));
        if let Some(up) = &d.upstream {
            return ErrorResponse {
                status: up.status,
                content_type: up.content_type.clone(),
                retry_after_secs,
                body: up.body.clone(),
            };
        }
        let now = jiff::Timestamp::now();
        let timestamp = now.strftime("%Y-%m-%d %H:%M:%SZ").to_string();
        let trace_id = uuid::Uuid::new_v4().to_string();
        let body = EntraErrorBody {
            error: &d.error,
            error_description: format!(
                "idbind: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}",
                d.description
            ),
            error_codes: &d.error_codes,
            timestamp,
            trace_id,
            correlation_id,
        };
        // Serializing a struct of strings cannot fail; fall back to a minimal body anyway.
        let body = serde_json::to_vec(&body).unwrap_or_else(|_| {
            format!(r#"{{"error":"{}","error_description":"idbind"}}"#, d.error).into_bytes()
        });
        ErrorResponse {
            status: d.status,
            content_type: Some("application/json; charset=utf-8".to_owned()),
            retry_after_secs,
            body: Bytes::from(body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_errors_render_entra_shaped_json() {
        let e = ExchangeError::forbidden("not allowed");
        let r = e.to_response("corr-1");
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.retry_after_secs, None);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"], "unauthorized_client");
        assert_eq!(v["correlation_id"], "corr-1");
        let desc = v["error_description"].as_str().unwrap();
        assert!(desc.starts_with("idbind: not allowed\r\nTrace ID: "), "{desc}");
        assert!(v.get("error_codes").is_none());
        assert_eq!(
            v["timestamp"].as_str().unwrap().len(),
            "2025-01-01 00:00:00Z".len()
        );
    }

    #[test]
    fn upstream_errors_pass_through_unchanged() {
        let body = Bytes::from_static(br#"{"error":"invalid_client","error_codes":[70021]}"#);
        let e = ExchangeError::upstream(
            UpstreamResponse {
                status: StatusCode::UNAUTHORIZED,
                content_type: Some("application/json".into()),
                body: body.clone(),
            },
            Some("invalid_client".into()),
            None,
            vec![70021],
            None,
        );
        assert_eq!(e.rejection(), Rejection::UpstreamRejected);
        assert_eq!(e.error_code(), "invalid_client");
        let r = e.to_response("x");
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body, body);
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
    }

    #[test]
    fn unavailable_carries_retry_after() {
        let e = ExchangeError::unavailable("down", Some(Duration::from_millis(1500)));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.error_code(), "temporarily_unavailable");
        assert_eq!(e.to_response("c").retry_after_secs, Some(1));
    }
}
