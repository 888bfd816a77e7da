//! What the logs may say about a token instead of the token: a short SHA-256 fingerprint and its
//! `jti`, read (unverified) from the payload.

use base64::Engine as _;

/// The first 8 bytes of the token's SHA-256, in hex: enough to correlate log lines, useless to
/// an attacker.
pub(crate) fn token_fingerprint(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The `jti` claim of a JWT, if the payload decodes and holds a short printable one.
pub(crate) fn token_jti(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    if payload.len() > 16 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Claims {
        jti: Option<String>,
    }
    let jti = serde_json::from_slice::<Claims>(&bytes).ok()?.jti?;
    (jti.len() <= 128 && jti.bytes().all(|b| b.is_ascii_graphic())).then_some(jti)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_and_jti() {
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"jti":"abc-123","sub":"x"}"#);
        let token = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.sig");
        assert_eq!(token_jti(&token).as_deref(), Some("abc-123"));
        let fp = token_fingerprint(&token);
        assert_eq!(fp.len(), 16);
        assert!(!token.contains(&fp));
        assert_eq!(token_jti("not-a-jwt"), None);
        assert_eq!(token_jti("a.!!!.c"), None);
    }
}
