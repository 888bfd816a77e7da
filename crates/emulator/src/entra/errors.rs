//! Entra's error shape: `{"error", "error_description": "AADSTS<code>: ...\r\nTrace ID: ...",
//! "error_codes", "timestamp", "trace_id", "correlation_id", "error_uri"}`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;

use crate::clock::entra_timestamp;
use crate::server::Shared;

/// An Entra error: HTTP status, OAuth `error`, AADSTS code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntraError {
    pub status: StatusCode,
    pub error: &'static str,
    pub code: u32,
    pub message: String,
}

impl EntraError {
    fn new(status: StatusCode, error: &'static str, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            code,
            message: message.into(),
        }
    }

    /// 900144: a required body parameter is missing.
    pub(crate) fn missing_parameter(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    }

    /// 90002: the tenant in the path is unknown.
    pub(crate) fn tenant_not_found(tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing \
                 into the correct cloud."
            ),
        )
    }

    /// 70003: not `client_credentials`.
    pub(crate) fn unsupported_grant_type(grant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant}'."),
        )
    }

    /// 700022: more than one scope (resource).
    pub(crate) fn multi_resource_scope(scope: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            700022,
            format!(
                "The provided value for the input parameter scope is not valid because it contains more than one \
                 resource. Scope {scope} is not valid."
            ),
        )
    }

    /// 70011: a scope that is not `<resource>/.default`.
    pub(crate) fn invalid_scope(scope: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            format!(
                "The provided request must include a 'scope' input parameter. The provided value for the input \
                 parameter 'scope' is not valid. The scope {scope} is not valid. The client credentials flow \
                 accepts only '<resource>/.default'."
            ),
        )
    }

    /// 700016: no application with this client id in the tenant.
    pub(crate) fn unknown_client(client_id: &str, tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can \
                 happen if the application has not been installed by the administrator of the tenant or consented \
                 to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        )
    }

    /// 7000218: neither `client_assertion` nor `client_secret`.
    pub(crate) fn no_credential() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
    }

    /// 7000215: wrong client secret.
    pub(crate) fn invalid_secret(client_id: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret \
                 value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        )
    }

    /// 70002: unsupported `client_assertion_type`.
    pub(crate) fn bad_assertion_type(t: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            70002,
            format!(
                "Error validating credentials. The client_assertion_type '{t}' is not supported; expected \
                 '{}'.",
                super::token::JWT_BEARER
            ),
        )
    }

    /// 50027: the assertion is not a JWT.
    pub(crate) fn malformed_assertion(reason: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50027,
            format!("JWT token is invalid or malformed: {reason}."),
        )
    }

    /// 70021: no FIC at all, or none matching.
    pub(crate) fn no_matching_fic() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            70021,
            "No matching federated identity record found for presented assertion. Assertion Issuer, Subject and \
             Audience must match a federated identity credential configured on the application or managed identity.",
        )
    }

    fn fic_mismatch(code: u32, what: &str, value: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            code,
            format!(
                "No matching federated identity record found for presented assertion {what} '{value}'. Please check \
                 your federated identity credential Subject, Audience and Issuer against the presented assertion. \
                 https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
            ),
        )
    }

    /// 700211: no FIC with this issuer.
    pub(crate) fn issuer_mismatch(iss: &str) -> Self {
        Self::fic_mismatch(700211, "issuer", iss)
    }

    /// 700212: no FIC (with this issuer and subject) whose audience the assertion carries.
    pub(crate) fn audience_mismatch(aud: &str) -> Self {
        Self::fic_mismatch(700212, "audience", aud)
    }

    /// 700213: no FIC with this issuer and subject (case-sensitive).
    pub(crate) fn subject_mismatch(sub: &str) -> Self {
        Self::fic_mismatch(700213, "subject", sub)
    }

    /// 700024: outside `nbf`..`exp` (with skew).
    pub(crate) fn time_range(detail: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700024,
            format!("Client assertion is not within its valid time range. {detail}"),
        )
    }

    /// 700027: signature (or key, or algorithm) problem.
    pub(crate) fn signature(reason: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700027,
            format!("Client assertion failed signature validation. (Reason: {reason})"),
        )
    }

    /// 50166: the issuer's documents could not be fetched.
    pub(crate) fn issuer_fetch(reason: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            50166,
            format!("Request to External OIDC endpoint failed. {reason}"),
        )
    }

    /// 700222: an Entra-issued token was presented as an assertion.
    pub(crate) fn entra_token_as_assertion() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700222,
            "AAD-issued tokens may not be used for federated identity flows.",
        )
    }

    /// 90033: a transient failure (injected faults).
    pub(crate) fn transient(status: StatusCode) -> Self {
        Self::new(
            status,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
        )
    }

    /// Internal failure (for example the state file could not be written).
    pub(crate) fn internal(message: &str) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            90100,
            message.to_owned(),
        )
    }

    /// The response, with fresh trace and correlation ids (the caller's `client-request-id` is used as
    /// correlation id when it is a GUID).
    pub(crate) fn into_response_for(self, shared: &Shared, request_headers: &HeaderMap) -> Response {
        let trace = uuid::Uuid::new_v4().to_string();
        let caller_corr = request_headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| uuid::Uuid::try_parse(v).ok());
        let correlation = caller_corr.unwrap_or_else(uuid::Uuid::new_v4).to_string();
        let timestamp = entra_timestamp(shared.now());
        let body = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {timestamp}",
                self.code, self.message
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("{}/error?code={}", shared.base_url(), self.code),
        });
        let mut resp = (self.status, Json(body)).into_response();
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&trace) {
            h.insert("x-ms-request-id", v);
        }
        if let Some(v) = caller_corr.and_then(|c| HeaderValue::from_str(&c.to_string()).ok()) {
            h.insert("client-request-id", v);
        }
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store, no-cache"),
        );
        resp
    }
}
