//! Just enough JWT (compact JWS) handling to inspect and verify RS256 assertions.

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::Value;

/// A decoded, not yet verified, compact JWS.
#[derive(Debug, Clone)]
pub(crate) struct Jwt {
    pub header: Value,
    pub claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

impl Jwt {
    /// Splits and decodes a compact JWS. The error says what is malformed.
    pub(crate) fn parse(token: &str) -> Result<Jwt, String> {
        let parts: Vec<&str> = token.split('.').collect();
        let [h, c, s] = parts.as_slice() else {
            return Err(format!("expected 3 dot-separated parts, found {}", parts.len()));
        };
        let decode_json = |what: &str, part: &str| -> Result<Value, String> {
            let bytes = B64
                .decode(part.trim_end_matches('='))
                .map_err(|_| format!("the {what} is not base64url"))?;
            let v: Value = serde_json::from_slice(&bytes).map_err(|_| format!("the {what} is not JSON"))?;
            if v.is_object() {
                Ok(v)
            } else {
                Err(format!("the {what} is not a JSON object"))
            }
        };
        let header = decode_json("header", h)?;
        let claims = decode_json("payload", c)?;
        let signature = B64
            .decode(s.trim_end_matches('='))
            .map_err(|_| "the signature is not base64url".to_owned())?;
        Ok(Jwt {
            header,
            claims,
            signing_input: format!("{h}.{c}"),
            signature,
        })
    }

    pub(crate) fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }

    pub(crate) fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    pub(crate) fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A numeric date claim (integer or float seconds).
    pub(crate) fn time_claim(&self, name: &str) -> Option<i64> {
        let v = self.claims.get(name)?;
        v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
    }

    /// The `aud` claim as a list (a single string counts as a one-element list).
    pub(crate) fn audiences(&self) -> Vec<String> {
        match self.claims.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        }
    }

    /// Verifies an RS256 signature with a JWK's base64url `n` and `e`.
    pub(crate) fn verify_rs256(&self, n: &str, e: &str) -> Result<(), String> {
        let n = B64
            .decode(n.trim_end_matches('='))
            .map_err(|_| "the key's 'n' is not base64url".to_owned())?;
        let e = B64
            .decode(e.trim_end_matches('='))
            .map_err(|_| "the key's 'e' is not base64url".to_owned())?;
        RsaPublicKeyComponents { n: &n, e: &e }
            .verify(
                &RSA_PKCS1_2048_8192_SHA256,
                self.signing_input.as_bytes(),
                &self.signature,
            )
            .map_err(|_| "the signature does not verify with the key".to_owned())
    }
}
