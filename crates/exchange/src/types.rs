//! What a caller asks for and what it gets back.

use std::fmt;

use serde::Serialize;

/// One token request, as the HTTP surface parsed it from the caller's client-credentials form.
#[derive(Clone, Default)]
pub struct ExchangeRequest {
    /// `client_id`: the managed identity's client id.
    pub client_id: String,
    /// `scope`, as sent (normalized by the exchanger, see [`normalize_scope`](crate::normalize_scope)).
    pub scope: String,
    /// `client_assertion`: the projected service-account token, surrounding whitespace trimmed.
    pub assertion: String,
    /// `claims` (CAE or a claims challenge). A request carrying it bypasses the token cache.
    pub claims: Option<String>,
    /// The tenant from the request path, if any. Advisory only: the binding decides the tenant.
    pub tenant_hint: Option<String>,
    /// The caller's correlation id (`client-request-id`), forwarded to Entra and logged.
    pub correlation_id: String,
}

impl fmt::Debug for ExchangeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeRequest")
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("assertion", &"<redacted>")
            .field("claims", &self.claims.as_ref().map(|_| "<present>"))
            .field("tenant_hint", &self.tenant_hint)
            .field("correlation_id", &self.correlation_id)
            .finish()
    }
}

/// A successful exchange, serialized exactly as Entra's v2 token response (PROTOCOL.md §1.8).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct TokenResponse {
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds the token remains valid (its *remaining* lifetime when served from the cache).
    pub expires_in: u64,
    /// Entra's extended lifetime, also as remaining seconds.
    pub ext_expires_in: u64,
    /// The Entra access token.
    pub access_token: String,
    /// Seconds after which the caller should fetch a fresh token, while this one still works.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_in: Option<u64>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("ext_expires_in", &self.ext_expires_in)
            .field("access_token", &"<redacted>")
            .field("refresh_in", &self.refresh_in)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_response_is_entra_shaped_and_redacted() {
        let r = TokenResponse {
            token_type: "Bearer",
            expires_in: 3599,
            ext_expires_in: 3599,
            access_token: "secret-token".into(),
            refresh_in: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"secret-token"}"#
        );
        assert!(!format!("{r:?}").contains("secret-token"));
        let req = ExchangeRequest {
            assertion: "sa-token".into(),
            ..Default::default()
        };
        assert!(!format!("{req:?}").contains("sa-token"));
    }
}
