//! The two discovery documents MSAL asks for before a token request (PROTOCOL.md §1.3, §1.10):
//! tenant discovery (`/{tenant}/v2.0/.well-known/openid-configuration`, always sent by MSAL Go)
//! and instance discovery (`/common/discovery/instance`, MSAL Go and Node for authority hosts
//! they do not know). Both are synthesized in Entra's shape from the advertised authority, so
//! they are served even when Entra is unreachable.
//!
//! The documents name the advertised authority's host, not the proxy's: MSAL Go requires the
//! `issuer` host to match the authority it was configured with (`AZURE_AUTHORITY_HOST`), and every
//! SDK in proxy mode rewrites the host of the `token_endpoint` it then calls to the proxy's,
//! keeping the path `/{tenant}/oauth2/v2.0/token`, which the proxy serves.

use serde_json::{Value, json};

/// Whether a tenant path segment is one Entra could accept (a GUID, a domain, `common`,
/// `organizations`, `consumers`): letters, digits, `-`, `.` and `_`, at most 256 characters.
pub(crate) fn valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 256
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// `authority` without a trailing slash, e.g. `https://login.microsoftonline.com`.
fn base(authority: &url::Url) -> String {
    authority.as_str().trim_end_matches('/').to_owned()
}

/// The tenant's OpenID configuration, in Entra's v2 shape.
pub(crate) fn openid_configuration(authority: &url::Url, tenant: &str) -> Value {
    let a = base(authority);
    let host = authority.host_str().unwrap_or_default();
    json!({
        "token_endpoint": format!("{a}/{tenant}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{a}/{tenant}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{a}/{tenant}/v2.0"),
        "request_uri_parameter_supported": false,
        "authorization_endpoint": format!("{a}/{tenant}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{a}/{tenant}/oauth2/v2.0/devicecode"),
        "end_session_endpoint": format!("{a}/{tenant}/oauth2/v2.0/logout"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid", "appid", "azp"],
        "tenant_region_scope": null,
        "cloud_instance_name": host,
    })
}

/// Instance discovery (`api-version=1.1`): `authorization_endpoint` (from the query) decides the
/// host and tenant of `tenant_discovery_endpoint`, as Entra does; without a usable one the
/// advertised authority and `common` are used.
pub(crate) fn instance_discovery(authority: &url::Url, query: Option<&str>) -> Value {
    let requested = query
        .into_iter()
        .flat_map(|q| url::form_urlencoded::parse(q.as_bytes()))
        .find(|(k, _)| k == "authorization_endpoint")
        .and_then(|(_, v)| url::Url::parse(&v).ok())
        .filter(|u| u.scheme() == "https" && u.host_str().is_some());
    let (origin, host, tenant) = match &requested {
        Some(u) => {
            let tenant = u
                .path_segments()
                .and_then(|mut s| s.next())
                .filter(|t| valid_tenant(t));
            (
                u.origin().ascii_serialization(),
                u.host_str().unwrap_or_default().to_owned(),
                tenant.unwrap_or("common").to_owned(),
            )
        }
        None => (
            base(authority),
            authority.host_str().unwrap_or_default().to_owned(),
            "common".to_owned(),
        ),
    };
    json!({
        "tenant_discovery_endpoint": format!("{origin}/{tenant}/v2.0/.well-known/openid-configuration"),
        "api-version": "1.1",
        "metadata": [{
            "preferred_network": host,
            "preferred_cache": host,
            "aliases": [host],
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entra() -> url::Url {
        url::Url::parse("https://login.microsoftonline.com/").unwrap()
    }

    #[test]
    fn openid_configuration_has_what_msal_go_validates() {
        let doc = openid_configuration(&entra(), "11111111-1111-1111-1111-111111111111");
        for field in ["authorization_endpoint", "token_endpoint", "issuer"] {
            assert!(doc[field].as_str().is_some_and(|s| !s.is_empty()), "{field}");
        }
        assert_eq!(
            doc["issuer"],
            "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/v2.0"
        );
        assert_eq!(
            doc["token_endpoint"],
            "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/oauth2/v2.0/token"
        );
        assert_eq!(doc["cloud_instance_name"], "login.microsoftonline.com");
    }

    #[test]
    fn instance_discovery_follows_the_authorization_endpoint() {
        let q = "api-version=1.1&authorization_endpoint=https%3A%2F%2Flogin.example.test%2Ftenant-a%2Foauth2%2Fv2.0%2Fauthorize";
        let doc = instance_discovery(&entra(), Some(q));
        assert_eq!(
            doc["tenant_discovery_endpoint"],
            "https://login.example.test/tenant-a/v2.0/.well-known/openid-configuration"
        );
        assert_eq!(doc["api-version"], "1.1");
        assert_eq!(doc["metadata"][0]["aliases"][0], "login.example.test");

        let doc = instance_discovery(&entra(), None);
        assert_eq!(
            doc["tenant_discovery_endpoint"],
            "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration"
        );
        // Not https, or junk: the advertised authority is used.
        let doc = instance_discovery(&entra(), Some("authorization_endpoint=http%3A%2F%2Fevil%2Fx"));
        assert_eq!(
            doc["metadata"][0]["preferred_network"],
            "login.microsoftonline.com"
        );
    }

    #[test]
    fn tenant_segments_are_checked() {
        assert!(valid_tenant("contoso.onmicrosoft.com"));
        assert!(valid_tenant("11111111-1111-1111-1111-111111111111"));
        assert!(!valid_tenant(""));
        assert!(!valid_tenant("a%2Fb"));
        assert!(!valid_tenant("<script>"));
    }
}
