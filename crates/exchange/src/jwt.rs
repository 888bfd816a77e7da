//! Looking inside a service-account token without verifying it (the API server verifies it), only
//! to bound cache lifetimes and to reject what cannot be a JWT before calling the API server.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Longest assertion accepted. Projected service-account tokens are about 1 KiB.
pub(crate) const MAX_ASSERTION_LEN: usize = 16 * 1024;

/// SHA-256 of a token: the cache key, and (shortened) what logs show instead of the token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TokenHash([u8; 32]);

impl TokenHash {
    pub(crate) fn of(token: &str) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }
}

impl fmt::Display for TokenHash {
    /// The first 8 bytes in hex: enough to correlate log lines, useless to an attacker.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({self})")
    }
}

/// What an unverified look at a token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Peek {
    /// `exp` in seconds since the epoch, when present and numeric.
    pub(crate) exp: Option<u64>,
}

/// Checks that `token` has the shape of a signed JWS and reads its `exp`. The error names what is
/// wrong, for the caller (it never contains the token).
pub(crate) fn peek(token: &str) -> Result<Peek, String> {
    if token.is_empty() {
        return Err("client_assertion is empty".to_owned());
    }
    if token.len() > MAX_ASSERTION_LEN {
        return Err(format!(
            "client_assertion is {} bytes, more than the {MAX_ASSERTION_LEN} accepted",
            token.len()
        ));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(
            "client_assertion is not a JWT (expected three base64url parts separated by '.')".to_owned(),
        );
    };
    let header = decode_part(header, "header")?;
    match header.get("alg").and_then(|a| a.as_str()) {
        None => return Err("client_assertion JWT header has no 'alg'".to_owned()),
        Some(alg) if alg.eq_ignore_ascii_case("none") => {
            return Err("client_assertion is an unsigned JWT (alg 'none')".to_owned());
        }
        Some(_) => {}
    }
    if signature.is_empty() {
        return Err("client_assertion JWT has an empty signature".to_owned());
    }
    let claims = decode_part(payload, "payload")?;
    let exp = claims.get("exp").and_then(|v| match v {
        serde_json::Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        _ => None,
    });
    Ok(Peek { exp })
}

type Object = serde_json::Map<String, serde_json::Value>;

fn decode_part(part: &str, what: &str) -> Result<Object, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| format!("client_assertion JWT {what} is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| format!("client_assertion JWT {what} is not a JSON object"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn reads_exp_of_a_well_formed_token() {
        let t = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256","kid":"k"}"#),
            b64(r#"{"exp":1700000000,"sub":"x"}"#)
        );
        assert_eq!(
            peek(&t),
            Ok(Peek {
                exp: Some(1_700_000_000)
            })
        );
        let t = format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64(r#"{"sub":"x"}"#));
        assert_eq!(peek(&t), Ok(Peek { exp: None }));
    }

    #[test]
    fn rejects_what_cannot_be_a_signed_jwt() {
        let good_payload = b64(r#"{"exp":1}"#);
        let cases = [
            (String::new(), "empty"),
            ("abc".to_owned(), "not a JWT"),
            ("a.b.c.d".to_owned(), "not a JWT"),
            (
                format!("{}.{good_payload}.", b64(r#"{"alg":"none"}"#)),
                "alg 'none'",
            ),
            (
                format!("{}.{good_payload}.sig", b64(r#"{"alg":"None"}"#)),
                "alg 'none'",
            ),
            (
                format!("{}.{good_payload}.sig", b64(r#"{"typ":"JWT"}"#)),
                "no 'alg'",
            ),
            (
                format!("{}.{good_payload}.", b64(r#"{"alg":"RS256"}"#)),
                "empty signature",
            ),
            (format!("!!.{good_payload}.sig"), "header is not base64url"),
            (
                format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64("[1]")),
                "payload is not a JSON object",
            ),
            ("x".repeat(MAX_ASSERTION_LEN + 1), "more than"),
        ];
        for (token, want) in cases {
            let err = peek(&token).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn hash_display_is_short() {
        let h = TokenHash::of("token");
        assert_eq!(h.to_string().len(), 16);
        assert_eq!(h, TokenHash::of("token"));
        assert_ne!(h, TokenHash::of("token2"));
    }
}
