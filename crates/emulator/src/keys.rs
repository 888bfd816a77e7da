//! The emulator's own token-signing key (RSA-2048, RS256) and its JWK.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use crate::{Error, Result};

/// An RSA signing key with its RFC 7638 thumbprint as `kid`.
pub(crate) struct Signer {
    key: KeyPair,
    pkcs8: Vec<u8>,
    kid: String,
    n: String,
    e: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer(kid={})", self.kid)
    }
}

impl Signer {
    pub(crate) fn generate() -> Result<Self> {
        let key =
            KeyPair::generate(KeySize::Rsa2048).map_err(|_| Error::Crypto("RSA key generation".into()))?;
        let pkcs8 = key
            .as_der()
            .map_err(|_| Error::Crypto("PKCS#8 encoding".into()))?
            .as_ref()
            .to_vec();
        Self::from_parts(key, pkcs8)
    }

    pub(crate) fn from_pkcs8(der: &[u8]) -> Result<Self> {
        let key = KeyPair::from_pkcs8(der)
            .map_err(|e| Error::Crypto(format!("stored signing key is not an RSA PKCS#8 key: {e}")))?;
        Self::from_parts(key, der.to_vec())
    }

    fn from_parts(key: KeyPair, pkcs8: Vec<u8>) -> Result<Self> {
        let comps = PublicKeyComponents::<Vec<u8>>::from(key.public_key());
        let n = B64.encode(&comps.n);
        let e = B64.encode(&comps.e);
        let kid = thumbprint(&n, &e);
        Ok(Self {
            key,
            pkcs8,
            kid,
            n,
            e,
        })
    }

    pub(crate) fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (`use: sig`, `alg: RS256`).
    pub(crate) fn jwk(&self) -> Value {
        json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": self.n, "e": self.e})
    }

    /// Signs `claims` as a compact RS256 JWS with this key's `kid`.
    pub(crate) fn sign(&self, claims: &Value) -> Result<String> {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| Error::Crypto("RS256 signing".into()))?;
        Ok(format!("{input}.{}", B64.encode(sig)))
    }

    /// Verifies a token signed by this key; returns its claims.
    pub(crate) fn verify(&self, token: &str) -> Option<Value> {
        let jwt = crate::jwt::Jwt::parse(token).ok()?;
        if jwt.alg() != Some("RS256") || jwt.kid() != Some(self.kid.as_str()) {
            return None;
        }
        jwt.verify_rs256(&self.n, &self.e).ok()?;
        Some(jwt.claims)
    }
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url) of an RSA public key.
pub(crate) fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    B64.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        canonical.as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_survives_pkcs8_round_trip() {
        let signer = Signer::generate().unwrap();
        let token = signer.sign(&json!({"sub": "x"})).unwrap();
        assert_eq!(signer.verify(&token).unwrap()["sub"], "x");
        let again = Signer::from_pkcs8(signer.pkcs8()).unwrap();
        assert_eq!(again.kid(), signer.kid());
        assert!(again.verify(&token).is_some());
        let other = Signer::generate().unwrap();
        assert!(other.verify(&token).is_none());
        let mut tampered = token;
        tampered.push('A');
        assert!(signer.verify(&tampered).is_none());
    }
}
