//! The token request's parameters: a strict `application/x-www-form-urlencoded` decoder and the
//! checks on the client-credentials fields (PROTOCOL.md §1.3, §1.10).

use idbind_exchange::{ExchangeError, normalize_scope};

/// The only `client_assertion_type` accepted.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The only `grant_type` accepted.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";

/// Fields every token request must carry, in the order they are reported when missing.
const REQUIRED: [&str; 5] = [
    "grant_type",
    "client_id",
    "scope",
    "client_assertion",
    "client_assertion_type",
];

/// Longest correlation id echoed; longer or odd ones are replaced by a fresh one.
const MAX_CORRELATION_ID: usize = 128;

/// Why a body is not a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FormError(pub(crate) String);

/// Decodes `a=b&c=d` strictly: `+` is a space, `%XX` a byte; a `%` not followed by two hex
/// digits, or a value that is not UTF-8 once decoded, is an error (not silently replaced).
pub(crate) fn parse_form(input: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    let mut pairs = Vec::new();
    for (index, segment) in input.split(|b| *b == b'&').enumerate() {
        if segment.is_empty() {
            continue;
        }
        let (key, value) = match segment.iter().position(|b| *b == b'=') {
            Some(eq) => (&segment[..eq], &segment[eq + 1..]),
            None => (segment, &[][..]),
        };
        let key = decode(key).map_err(|e| FormError(format!("parameter #{}: {e}", index + 1)))?;
        let value = decode(value).map_err(|e| FormError(format!("parameter '{}': {e}", shorten(&key))))?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

fn decode(input: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = input.get(i + 1..i + 3).and_then(|h| {
                    let s = std::str::from_utf8(h).ok()?;
                    u8::from_str_radix(s, 16).ok()
                });
                match hex {
                    Some(byte) => out.push(byte),
                    None => return Err(format!("bad percent-escape at byte {i}")),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded".to_owned())
}

/// A checked client-credentials token request.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TokenParams {
    pub(crate) client_id: String,
    /// Normalized: the OIDC scopes MSAL Go appends are gone.
    pub(crate) scope: String,
    /// Surrounding ASCII whitespace trimmed (Python sends the token file's trailing newline).
    pub(crate) assertion: String,
    pub(crate) claims: Option<String>,
}

impl std::fmt::Debug for TokenParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenParams")
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("assertion", &"<redacted>")
            .field("claims", &self.claims.is_some())
            .finish()
    }
}

/// The parameters the proxy reads, in a form request or a query string. Unknown parameters
/// (`x-client-*`, `client_info`, `client-request-id`, ...) are ignored.
#[derive(Default)]
pub(crate) struct RawParams {
    grant_type: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
    client_assertion: Option<String>,
    client_assertion_type: Option<String>,
    claims: Option<String>,
    /// `client-request-id` (MSAL Node sends it in the body and the query).
    pub(crate) client_request_id: Option<String>,
}

impl RawParams {
    /// Collects the known parameters; the same known parameter twice with different values is
    /// refused (which one would the caller mean?).
    pub(crate) fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, ExchangeError> {
        let mut p = Self::default();
        for (key, value) in pairs {
            let slot = match key.as_str() {
                "grant_type" => &mut p.grant_type,
                "client_id" => &mut p.client_id,
                "scope" => &mut p.scope,
                "client_assertion" => &mut p.client_assertion,
                "client_assertion_type" => &mut p.client_assertion_type,
                "claims" => &mut p.claims,
                "client-request-id" => &mut p.client_request_id,
                _ => continue,
            };
            match slot {
                Some(previous) if *previous != value => {
                    return Err(ExchangeError::invalid_request(format!(
                        "parameter '{key}' appears more than once with different values"
                    )));
                }
                _ => *slot = Some(value),
            }
        }
        Ok(p)
    }

    /// Checks the client-credentials fields.
    pub(crate) fn into_token_params(self) -> Result<TokenParams, ExchangeError> {
        let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        if let Some(grant) = self
            .grant_type
            .as_deref()
            .map(str::trim)
            .filter(|g| !g.is_empty())
            && grant != CLIENT_CREDENTIALS
        {
            return Err(ExchangeError::unsupported_grant_type(format!(
                "grant_type '{}' is not supported; the proxy serves only 'client_credentials'",
                shorten(grant)
            )));
        }
        let fields = [
            &self.grant_type,
            &self.client_id,
            &self.scope,
            &self.client_assertion,
            &self.client_assertion_type,
        ];
        let missing: Vec<&str> = REQUIRED
            .iter()
            .zip(fields)
            .filter(|(_, v)| !present(v))
            .map(|(name, _)| *name)
            .collect();
        if !missing.is_empty() {
            return Err(ExchangeError::invalid_request(format!(
                "the request must contain {}: {}",
                if missing.len() == 1 {
                    "the parameter"
                } else {
                    "the parameters"
                },
                missing.join(", ")
            )));
        }
        let assertion_type = self
            .client_assertion_type
            .as_deref()
            .map(str::trim)
            .unwrap_or_default();
        if assertion_type != JWT_BEARER {
            return Err(ExchangeError::invalid_request(format!(
                "client_assertion_type '{}' is not supported; expected '{JWT_BEARER}'",
                shorten(assertion_type)
            )));
        }
        let raw_scope = self.scope.unwrap_or_default();
        let scope = normalize_scope(&raw_scope).ok_or_else(|| {
            ExchangeError::invalid_scope(format!(
                "scope '{}' names no resource; expected e.g. https://management.azure.com/.default",
                shorten(raw_scope.trim())
            ))
        })?;
        Ok(TokenParams {
            client_id: self.client_id.unwrap_or_default().trim().to_owned(),
            scope,
            assertion: self
                .client_assertion
                .unwrap_or_default()
                .trim_matches(|c: char| c.is_ascii_whitespace())
                .to_owned(),
            claims: self.claims.filter(|c| !c.trim().is_empty()),
        })
    }
}

/// A caller-supplied correlation id, if it is short and made of safe characters.
pub(crate) fn usable_correlation_id(value: &str) -> Option<&str> {
    let ok = !value.is_empty()
        && value.len() <= MAX_CORRELATION_ID
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then_some(value)
}

/// At most 64 characters of untrusted input, for messages.
pub(crate) fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use idbind_exchange::Rejection;

    use super::*;

    fn params(body: &str) -> Result<TokenParams, ExchangeError> {
        let pairs = parse_form(body.as_bytes()).map_err(|e| ExchangeError::invalid_request(e.0))?;
        RawParams::from_pairs(pairs)?.into_token_params()
    }

    const GOOD: &str = "client_assertion=eyJ.a.b%0A&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_id=22222222-2222-2222-2222-222222222222&grant_type=client_credentials&scope=https%3A%2F%2Fmanagement.azure.com%2F.default";

    #[test]
    fn python_body_is_accepted_and_assertion_trimmed() {
        let p = params(GOOD).unwrap();
        assert_eq!(p.assertion, "eyJ.a.b");
        assert_eq!(p.client_id, "22222222-2222-2222-2222-222222222222");
        assert_eq!(p.scope, "https://management.azure.com/.default");
        assert_eq!(p.claims, None);
        assert!(!format!("{p:?}").contains("eyJ"));
    }

    #[test]
    fn msal_go_scopes_and_extra_fields_are_dropped() {
        let body = format!(
            "{GOOD}&client_info=1&x-client-SKU=msal.js.node&client-request-id=abc&claims=%7B%22a%22%3A1%7D"
        )
        .replace("%2F.default", "%2F.default+openid+offline_access+profile");
        let p = params(&body).unwrap();
        assert_eq!(p.scope, "https://management.azure.com/.default");
        assert_eq!(p.claims.as_deref(), Some(r#"{"a":1}"#));
    }

    #[test]
    fn missing_fields_are_named() {
        let e = params("grant_type=client_credentials&scope=x").unwrap_err();
        assert_eq!(e.rejection(), Rejection::InvalidRequest);
        assert_eq!(e.status().as_u16(), 400);
        assert!(
            e.description()
                .contains("client_id, client_assertion, client_assertion_type"),
            "{e}"
        );
        let e = params("").unwrap_err();
        assert!(e.description().contains("grant_type, client_id, scope"), "{e}");
        // Empty values count as missing.
        let e = params(&GOOD.replace("client_id=22222222-2222-2222-2222-222222222222", "client_id="))
            .unwrap_err();
        assert!(e.description().ends_with("the parameter: client_id"), "{e}");
    }

    #[test]
    fn wrong_grant_and_assertion_type_are_refused() {
        let e = params(&GOOD.replace("client_credentials", "password")).unwrap_err();
        assert_eq!(e.error_code(), "unsupported_grant_type");
        let e = params(&GOOD.replace("jwt-bearer", "saml2-bearer")).unwrap_err();
        assert_eq!(e.error_code(), "invalid_request");
        assert!(e.description().contains("client_assertion_type"), "{e}");
    }

    #[test]
    fn oidc_only_scope_is_invalid_scope() {
        let e = params(&GOOD.replace("https%3A%2F%2Fmanagement.azure.com%2F.default", "openid+profile"))
            .unwrap_err();
        assert_eq!(e.error_code(), "invalid_scope");
    }

    #[test]
    fn malformed_forms_are_refused() {
        assert!(parse_form(b"a=%zz").unwrap_err().0.contains("percent-escape"));
        assert!(parse_form(b"a=%4").is_err());
        assert!(parse_form(b"a=%ff%fe").unwrap_err().0.contains("UTF-8"));
        assert_eq!(
            parse_form(b"&a=1&&b&c=x+y%21=").unwrap(),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), String::new()),
                ("c".into(), "x y!=".into())
            ]
        );
    }

    #[test]
    fn conflicting_duplicates_are_refused_and_identical_ones_tolerated() {
        let e = params(&format!("{GOOD}&client_id=33333333-3333-3333-3333-333333333333")).unwrap_err();
        assert!(
            e.description().contains("'client_id' appears more than once"),
            "{e}"
        );
        assert!(params(&format!("{GOOD}&grant_type=client_credentials")).is_ok());
    }

    #[test]
    fn correlation_ids_are_checked() {
        assert_eq!(usable_correlation_id("3f1c-AB_9.x:y"), Some("3f1c-AB_9.x:y"));
        assert_eq!(usable_correlation_id(""), None);
        assert_eq!(usable_correlation_id("a b"), None);
        assert_eq!(usable_correlation_id(&"a".repeat(129)), None);
    }
}
