//! RS256 compact JWS: the issuer's signing key, and strict parsing of untrusted tokens.
//!
//! Signing and verification use aws-lc-rs directly, so no JWT library's process-wide provider is
//! involved and every rejection can be reported the way kube-apiserver reports it.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair as _, RsaKeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::error::{Error, Result};

/// An RSA-2048 signing key with its key id and public JWK.
pub(crate) struct SigningKey {
    key_pair: RsaKeyPair,
    kid: String,
    jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh RSA-2048 key. The key id is derived as kube-apiserver derives it:
    /// base64url(SHA-256(DER SubjectPublicKeyInfo)).
    pub(crate) fn generate() -> Result<Self> {
        let key_pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| Error::Key(e.to_string()))?;
        let public = key_pair.public_key();
        let spki = public.as_der().map_err(|e| Error::Key(e.to_string()))?;
        let kid = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            spki.as_ref(),
        ));
        let jwk = json!({
            "use": "sig",
            "kty": "RSA",
            "kid": kid,
            "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        });
        Ok(Self { key_pair, kid, jwk })
    }

    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// Signs `claims` as a compact JWS with header `{"alg":"RS256","kid":...}`.
    pub(crate) fn sign(&self, claims: &Value) -> Result<String> {
        let header = json!({ "alg": "RS256", "kid": self.kid });
        let encode = |v: &Value| -> Result<String> {
            let bytes = serde_json::to_vec(v).map_err(|e| Error::Key(e.to_string()))?;
            Ok(URL_SAFE_NO_PAD.encode(bytes))
        };
        let signing_input = format!("{}.{}", encode(&header)?, encode(claims)?);
        let mut sig = vec![0; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|e| Error::Key(format!("signing failed: {e}")))?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// Whether `signature` is this key's RS256 signature over `signing_input`.
    pub(crate) fn verifies(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            self.key_pair.public_key().as_ref(),
        )
        .verify(signing_input, signature)
        .is_ok()
    }
}

/// A syntactically valid compact JWS whose signature is not checked yet.
#[derive(Debug)]
pub(crate) struct UnverifiedJws {
    /// `alg` of the protected header.
    pub(crate) alg: String,
    /// The decoded payload (a JSON object).
    pub(crate) claims: serde_json::Map<String, Value>,
    /// `<header>.<payload>` as sent.
    pub(crate) signing_input: String,
    /// The decoded signature.
    pub(crate) signature: Vec<u8>,
}

/// Parses a compact JWS strictly (three unpadded base64url parts, JSON object header with a
/// string `alg` and no `crit`, JSON object payload). `None` for anything else.
pub(crate) fn parse(token: &str) -> Option<UnverifiedJws> {
    let mut parts = token.split('.');
    let (header_b64, payload_b64, sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_b64).ok()?).ok()?;
    let header = header.as_object()?;
    if header.contains_key("crit") {
        return None;
    }
    let alg = header.get("alg")?.as_str()?.to_owned();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload_b64).ok()?).ok()?;
    let Value::Object(claims) = claims else {
        return None;
    };
    let signature = URL_SAFE_NO_PAD.decode(sig).ok()?;
    Some(UnverifiedJws {
        alg,
        claims,
        signing_input: format!("{header_b64}.{payload_b64}"),
        signature,
    })
}
