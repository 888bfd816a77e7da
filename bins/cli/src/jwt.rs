//! Reading a JWT's header and claims without verifying it (for display only).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// A JWT's decoded claims (the header is checked to be JSON).
#[derive(Clone, Debug)]
pub struct Decoded {
    /// The claims.
    pub claims: Value,
}

/// Decodes a compact JWS without checking its signature.
pub fn decode(token: &str) -> Result<Decoded, String> {
    let mut parts = token.trim().split('.');
    let (Some(header), Some(claims), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT: expected three dot-separated parts".to_owned());
    };
    let part = |name: &str, b64: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(b64.trim_end_matches('='))
            .map_err(|e| format!("the JWT {name} is not base64url: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("the JWT {name} is not JSON: {e}"))
    };
    part("header", header)?;
    Ok(Decoded {
        claims: part("claims", claims)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_refuses() {
        let enc = |v: &str| URL_SAFE_NO_PAD.encode(v);
        let token = format!(
            "{}.{}.sig",
            enc(r#"{"alg":"RS256"}"#),
            enc(r#"{"exp":1700000000,"aud":"x"}"#)
        );
        let d = decode(&token).unwrap();
        assert_eq!(d.claims["exp"], 1_700_000_000);
        assert!(decode("a.b").unwrap_err().contains("three"));
        assert!(decode("!!.e30.x").unwrap_err().contains("base64url"));
    }
}
