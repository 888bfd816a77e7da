//! RS256 client assertions for Entra's federated credential exchange (PROTOCOL.md §3.2).

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Error, Result, SigningKey};

/// Default assertion lifetime: long enough for one exchange with retries, short if leaked.
pub const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// The longest lifetime [`mint_assertion`] accepts.
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// What an assertion claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssertionClaims {
    /// `iss`: the per-identity issuer, exactly as in the FIC.
    pub issuer: String,
    /// `sub`: the FIC subject (the identity's resource ID in lower case).
    pub subject: String,
    /// `aud`: the FIC audience, normally [`idbind_model::ENTRA_FIC_AUDIENCE`].
    pub audience: String,
    /// `exp - iat`.
    pub lifetime: Duration,
}

impl AssertionClaims {
    /// Claims for a FIC with audience `api://AzureADTokenExchange` and the default lifetime.
    pub fn new(issuer: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            subject: subject.into(),
            audience: idbind_model::ENTRA_FIC_AUDIENCE.to_owned(),
            lifetime: DEFAULT_ASSERTION_LIFETIME,
        }
    }

    /// Claims matching a FIC exactly (issuer, subject, audience), with the default lifetime.
    pub fn for_fic(fic: &idbind_model::FicSpec) -> Self {
        Self {
            issuer: fic.issuer.clone(),
            subject: fic.subject.clone(),
            audience: fic.audience.clone(),
            lifetime: DEFAULT_ASSERTION_LIFETIME,
        }
    }

    /// The same claims with another lifetime.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }
}

/// A signed assertion. `Debug` omits the token.
#[derive(Clone, PartialEq, Eq)]
pub struct MintedAssertion {
    /// The compact JWS, to send as `client_assertion`.
    pub token: String,
    /// Its unique id (`jti`), safe to log.
    pub jti: String,
    /// The signing key's id (`kid` header).
    pub kid: String,
    /// `iat`.
    pub issued_at: Timestamp,
    /// `exp`.
    pub expires_at: Timestamp,
}

impl fmt::Debug for MintedAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedAssertion")
            .field("jti", &self.jti)
            .field("kid", &self.kid)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The claims of an assertion as they appear in the JWT (useful to verifiers and tests).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionPayload {
    /// Issuer.
    pub iss: String,
    /// Subject.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expiry.
    pub exp: i64,
    /// Unique id.
    pub jti: String,
}

/// Signs an RS256 assertion with `key`, valid from `now` for `claims.lifetime` (header: `alg
/// RS256`, `typ JWT`, `kid`; claims: `iss`, `sub`, `aud`, `iat`, `nbf`, `exp`, `jti`).
pub fn mint_assertion(key: &SigningKey, claims: &AssertionClaims, now: Timestamp) -> Result<MintedAssertion> {
    let lifetime = claims.lifetime.as_secs();
    if lifetime == 0 || claims.lifetime > MAX_ASSERTION_LIFETIME {
        return Err(Error::InvalidLifetime {
            seconds: lifetime,
            max: MAX_ASSERTION_LIFETIME.as_secs(),
        });
    }
    let iat = now.as_second();
    let payload = AssertionPayload {
        iss: claims.issuer.clone(),
        sub: claims.subject.clone(),
        aud: claims.audience.clone(),
        iat,
        nbf: iat,
        exp: iat.saturating_add_unsigned(lifetime),
        jti: uuid::Uuid::new_v4().to_string(),
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.typ = Some("JWT".to_owned());
    header.kid = Some(key.kid().to_owned());
    let token =
        jsonwebtoken::encode(&header, &payload, key.encoding_key()).map_err(|source| Error::Signing {
            kid: key.kid().to_owned(),
            source,
        })?;
    let at = |s: i64| Timestamp::from_second(s).unwrap_or(Timestamp::MAX);
    tracing::debug!(kid = key.kid(), jti = %payload.jti, exp = payload.exp, "minted client assertion");
    Ok(MintedAssertion {
        token,
        jti: payload.jti,
        kid: key.kid().to_owned(),
        issued_at: at(payload.iat),
        expires_at: at(payload.exp),
    })
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;
    use crate::ClusterName;

    fn key() -> SigningKey {
        SigningKey::generate(&ClusterName::parse("c1").unwrap()).unwrap()
    }

    #[test]
    fn minted_assertion_verifies_with_the_public_jwk() {
        let key = key();
        let claims = AssertionClaims::new("https://issuer.example/t/c", "/subscriptions/x");
        let now = Timestamp::now();
        let minted = mint_assertion(&key, &claims, now).unwrap();
        assert_eq!(minted.kid, key.kid());
        assert_eq!(minted.expires_at.as_second() - minted.issued_at.as_second(), 300);
        assert!(!format!("{minted:?}").contains(&minted.token));

        let header = jsonwebtoken::decode_header(&minted.token).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(header.kid.as_deref(), Some(key.kid()));

        let jwk = key.public_jwk();
        let decoding = DecodingKey::from_rsa_components(&jwk.n, &jwk.e).unwrap();
        let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["api://AzureADTokenExchange"]);
        validation.set_issuer(&["https://issuer.example/t/c"]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub", "aud"]);
        let data = jsonwebtoken::decode::<AssertionPayload>(&minted.token, &decoding, &validation).unwrap();
        assert_eq!(data.claims.sub, "/subscriptions/x");
        assert_eq!(data.claims.jti, minted.jti);
        assert_eq!(data.claims.nbf, data.claims.iat);
        assert_eq!(data.claims.iat, now.as_second());

        let other = super::tests::key();
        let wrong = DecodingKey::from_rsa_components(&other.public_jwk().n, &other.public_jwk().e).unwrap();
        assert!(jsonwebtoken::decode::<AssertionPayload>(&minted.token, &wrong, &validation).is_err());
    }

    #[test]
    fn jti_is_unique_and_lifetime_is_configurable() {
        let key = key();
        let claims = AssertionClaims::new("i", "s").with_lifetime(Duration::from_secs(60));
        let a = mint_assertion(&key, &claims, Timestamp::UNIX_EPOCH).unwrap();
        let b = mint_assertion(&key, &claims, Timestamp::UNIX_EPOCH).unwrap();
        assert_ne!(a.jti, b.jti);
        assert_eq!(a.expires_at.as_second(), 60);
    }

    #[test]
    fn lifetime_bounds() {
        let key = key();
        for bad in [
            Duration::ZERO,
            Duration::from_millis(500),
            MAX_ASSERTION_LIFETIME + Duration::from_secs(1),
        ] {
            let claims = AssertionClaims::new("i", "s").with_lifetime(bad);
            let err = mint_assertion(&key, &claims, Timestamp::UNIX_EPOCH).unwrap_err();
            assert!(matches!(err, Error::InvalidLifetime { .. }), "{err}");
        }
    }
}
