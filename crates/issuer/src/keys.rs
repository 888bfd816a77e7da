//! Cluster signing keys: RSA-2048 generation, PKCS#8 PEM, public JWK, RFC 7638 thumbprints.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// PEM label of a PKCS#8 private key.
const PKCS8_PEM_TAG: &str = "PRIVATE KEY";

/// The name of a member cluster: a DNS-1123 label. It prefixes every key id of the cluster
/// (`<cluster>.<thumbprint>`), so it cannot contain a `.` and one cluster's prefix is never a
/// prefix of another's.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterName(String);

impl ClusterName {
    /// Parses a cluster name: 1–63 lower-case letters, digits and `-`, starting and ending
    /// alphanumeric.
    pub fn parse(input: &str) -> Result<Self> {
        idbind_model::validate_dns_label("cluster name", input).map_err(|e| Error::InvalidClusterName {
            input: input.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self(input.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefix of this cluster's key ids: `<cluster>.`.
    pub fn kid_prefix(&self) -> String {
        format!("{}.", self.0)
    }

    /// Whether a key id belongs to this cluster.
    pub fn owns_kid(&self, kid: &str) -> bool {
        kid.strip_prefix(self.0.as_str())
            .is_some_and(|rest| rest.starts_with('.'))
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterName({})", self.0)
    }
}

impl FromStr for ClusterName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ClusterName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<ClusterName> for String {
    fn from(c: ClusterName) -> String {
        c.0
    }
}

/// The cluster that owns a key id (`<cluster>.<thumbprint>` → `<cluster>`), if it has that shape.
pub fn kid_cluster(kid: &str) -> Option<&str> {
    kid.split_once('.')
        .map(|(cluster, _)| cluster)
        .filter(|c| !c.is_empty())
}

/// A public RSA signing key as published in a JWKS (RFC 7517).
///
/// Members other than the six below are kept as they were read, so rewriting a JWKS never drops
/// what another writer put there.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type, `RSA`.
    pub kty: String,
    /// Public key use, `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// Algorithm, `RS256`.
    pub alg: String,
    /// Key id, `<cluster>.<thumbprint>`.
    pub kid: String,
    /// Modulus, base64url without padding.
    pub n: String,
    /// Public exponent, base64url without padding.
    pub e: String,
    /// Any other members, kept verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// JWK member holding when a key first appeared in a JWKS (seconds since the Unix epoch), written
/// by [`crate::Publisher`]. Not a registered JWK parameter; consumers ignore it (RFC 7517 §4).
pub const PUBLISHED_AT_MEMBER: &str = "idbind_published_at";

impl Jwk {
    /// When this key was first published ([`PUBLISHED_AT_MEMBER`]), if stamped.
    pub fn published_at(&self) -> Option<i64> {
        self.extra
            .get(PUBLISHED_AT_MEMBER)
            .and_then(serde_json::Value::as_i64)
    }

    /// An RS256 signing JWK from big-endian modulus and exponent.
    pub fn rsa(kid: impl Into<String>, modulus: &[u8], exponent: &[u8]) -> Self {
        Self {
            kty: "RSA".to_owned(),
            use_: "sig".to_owned(),
            alg: "RS256".to_owned(),
            kid: kid.into(),
            n: URL_SAFE_NO_PAD.encode(strip_leading_zeros(modulus)),
            e: URL_SAFE_NO_PAD.encode(strip_leading_zeros(exponent)),
            extra: serde_json::Map::new(),
        }
    }

    /// The RFC 7638 thumbprint of this key: SHA-256 over `{"e":…,"kty":…,"n":…}`, base64url.
    pub fn thumbprint(&self) -> String {
        rsa_thumbprint(&self.e, &self.kty, &self.n)
    }
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("kty", &self.kty)
            .field("alg", &self.alg)
            .finish()
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    &bytes[start..]
}

/// RFC 7638 §3: the required members in lexicographic order, no whitespace.
fn rsa_thumbprint(e: &str, kty: &str, n: &str) -> String {
    let json_str = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    let canonical = format!(
        r#"{{"e":{},"kty":{},"n":{}}}"#,
        json_str(e),
        json_str(kty),
        json_str(n)
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// One RSA-2048 signing key of a cluster, with its key id.
///
/// `Debug` shows only the key id; the private key is reachable only through
/// [`SigningKey::to_pkcs8_pem`].
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    thumbprint: String,
    pkcs8_pem: String,
    encoding: jsonwebtoken::EncodingKey,
    jwk: Jwk,
}

impl SigningKey {
    /// Generates a new RSA-2048 key for `cluster`.
    pub fn generate(cluster: &ClusterName) -> Result<Self> {
        let pair = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|e| Error::Crypto(format!("generating an RSA-2048 key: {e}")))?;
        let der = pair
            .as_der()
            .map_err(|e| Error::Crypto(format!("encoding the new key as PKCS#8: {e}")))?;
        let pem = pem::encode(&pem::Pem::new(PKCS8_PEM_TAG, der.as_ref()));
        Self::from_pair(cluster, &pair, pem, "generated key")
    }

    /// Loads a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) RSA key of `cluster`. `what` names the
    /// source in errors (a file, a Secret entry).
    pub fn from_pkcs8_pem(cluster: &ClusterName, pem_bytes: &[u8], what: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidKey {
            what: what.to_owned(),
            reason,
        };
        let parsed = pem::parse(pem_bytes).map_err(|e| invalid(format!("not PEM ({e})")))?;
        if parsed.tag() != PKCS8_PEM_TAG {
            return Err(invalid(format!(
                "PEM label is '{}', expected '{PKCS8_PEM_TAG}' (an unencrypted PKCS#8 key)",
                parsed.tag()
            )));
        }
        let pair = KeyPair::from_pkcs8(parsed.contents())
            .map_err(|e| invalid(format!("not an RSA PKCS#8 private key of 2048-8192 bits ({e})")))?;
        if pair.public_modulus_len() < 256 {
            return Err(invalid("the RSA key is shorter than 2048 bits".to_owned()));
        }
        let pem = pem::encode(&pem::Pem::new(PKCS8_PEM_TAG, parsed.contents()));
        Self::from_pair(cluster, &pair, pem, what)
    }

    fn from_pair(cluster: &ClusterName, pair: &KeyPair, pkcs8_pem: String, what: &str) -> Result<Self> {
        let components = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let mut jwk = Jwk::rsa(String::new(), &components.n, &components.e);
        let thumbprint = jwk.thumbprint();
        let kid = format!("{}{thumbprint}", cluster.kid_prefix());
        jwk.kid.clone_from(&kid);
        let encoding =
            jsonwebtoken::EncodingKey::from_rsa_pem(pkcs8_pem.as_bytes()).map_err(|e| Error::InvalidKey {
                what: what.to_owned(),
                reason: format!("the signer rejected it ({e})"),
            })?;
        Ok(Self {
            kid,
            thumbprint,
            pkcs8_pem,
            encoding,
            jwk,
        })
    }

    /// The key id, `<cluster>.<thumbprint>`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The RFC 7638 thumbprint of the public key.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The public key as a JWK (`kty RSA`, `use sig`, `alg RS256`, `kid`, `n`, `e`).
    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The private key as unencrypted PKCS#8 PEM. Treat the result as a secret.
    pub fn to_pkcs8_pem(&self) -> &str {
        &self.pkcs8_pem
    }

    pub(crate) fn encoding_key(&self) -> &jsonwebtoken::EncodingKey {
        &self.encoding
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl PartialEq for SigningKey {
    fn eq(&self, other: &Self) -> bool {
        self.kid == other.kid && self.jwk == other.jwk
    }
}

impl Eq for SigningKey {}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1.
    const RFC_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    fn cluster(name: &str) -> ClusterName {
        ClusterName::parse(name).unwrap()
    }

    #[test]
    fn rfc7638_example_thumbprint() {
        let jwk = Jwk {
            kty: "RSA".into(),
            use_: "sig".into(),
            alg: "RS256".into(),
            kid: "2011-04-29".into(),
            n: RFC_N.into(),
            e: "AQAB".into(),
            extra: serde_json::Map::new(),
        };
        assert_eq!(jwk.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn jwk_from_components_strips_leading_zeros() {
        let jwk = Jwk::rsa("k", &[0, 0, 1, 2], &[0, 1, 0, 1]);
        assert_eq!(jwk.n, URL_SAFE_NO_PAD.encode([1, 2]));
        assert_eq!(jwk.e, "AQAB");
        let json = serde_json::to_value(&jwk).unwrap();
        assert_eq!(json["use"], "sig");
        assert_eq!(json["kty"], "RSA");
        assert_eq!(json["alg"], "RS256");
    }

    #[test]
    fn generated_key_round_trips_through_pem() {
        let c = cluster("east-1");
        let key = SigningKey::generate(&c).unwrap();
        assert!(key.kid().starts_with("east-1."));
        assert_eq!(key.kid(), format!("east-1.{}", key.thumbprint()));
        assert_eq!(key.public_jwk().kid, key.kid());
        assert_eq!(key.public_jwk().thumbprint(), key.thumbprint());
        assert_eq!(key.public_jwk().e, "AQAB");
        // 2048-bit modulus: 256 bytes → 342 base64url characters.
        assert_eq!(key.public_jwk().n.len(), 342);
        assert!(key.to_pkcs8_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
        let loaded = SigningKey::from_pkcs8_pem(&c, key.to_pkcs8_pem().as_bytes(), "test").unwrap();
        assert_eq!(loaded, key);
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        let c = cluster("c");
        let err = SigningKey::from_pkcs8_pem(&c, b"nope", "file k.pem")
            .unwrap_err()
            .to_string();
        assert!(err.contains("file k.pem") && err.contains("not PEM"), "{err}");
        let wrong_tag = pem::encode(&pem::Pem::new("RSA PRIVATE KEY", vec![1, 2, 3]));
        let err = SigningKey::from_pkcs8_pem(&c, wrong_tag.as_bytes(), "k")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'RSA PRIVATE KEY'"), "{err}");
        let garbage = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
        let err = SigningKey::from_pkcs8_pem(&c, garbage.as_bytes(), "k")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an RSA PKCS#8"), "{err}");
    }

    #[test]
    fn cluster_names_and_kid_ownership() {
        for bad in ["", "East", "a.b", "-a", "a_b"] {
            assert!(ClusterName::parse(bad).is_err(), "{bad}");
        }
        let a = cluster("a");
        assert!(a.owns_kid("a.xyz"));
        assert!(!a.owns_kid("ab.xyz"));
        assert!(!a.owns_kid("a"));
        assert_eq!(kid_cluster("a-b.xyz"), Some("a-b"));
        assert_eq!(kid_cluster(".xyz"), None);
        assert_eq!(kid_cluster("plain"), None);
    }
}
