//! The per-identity OIDC discovery document and JWKS (PROTOCOL.md §3.2), and pure operations on
//! one cluster's keys in a JWKS.

use std::collections::{BTreeMap, BTreeSet};

use idbind_model::{ClientId, IssuerBaseUrl, MAX_JWKS_KEYS, TenantId};
use serde::{Deserialize, Serialize};

use crate::{ClusterName, Error, Jwk, PUBLISHED_AT_MEMBER, Result};

/// Store path of an identity's discovery document, relative to the issuer base:
/// `{tenant}/{client}/.well-known/openid-configuration`.
pub fn discovery_path(tenant: &TenantId, client: &ClientId) -> String {
    idbind_model::discovery_url(&format!("{tenant}/{client}"))
}

/// Store path of an identity's JWKS, relative to the issuer base: `{tenant}/{client}/openid/v1/jwks`.
pub fn jwks_path(tenant: &TenantId, client: &ClientId) -> String {
    idbind_model::jwks_url(&format!("{tenant}/{client}"))
}

/// The OIDC discovery document Entra reads for an issuer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryDocument {
    /// The issuer, exactly as in the FIC and the assertions.
    pub issuer: String,
    /// `{issuer}/openid/v1/jwks`.
    pub jwks_uri: String,
    /// `["id_token"]`.
    pub response_types_supported: Vec<String>,
    /// `["public"]`.
    pub subject_types_supported: Vec<String>,
    /// `["RS256"]`.
    pub id_token_signing_alg_values_supported: Vec<String>,
}

impl DiscoveryDocument {
    /// The discovery document of an issuer URL.
    pub fn for_issuer(issuer: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            jwks_uri: idbind_model::jwks_url(issuer),
            response_types_supported: vec!["id_token".to_owned()],
            subject_types_supported: vec!["public".to_owned()],
            id_token_signing_alg_values_supported: vec!["RS256".to_owned()],
        }
    }

    /// The discovery document of one identity's issuer `{base}/{tenant}/{client}`.
    pub fn for_identity(base: &IssuerBaseUrl, tenant: &TenantId, client: &ClientId) -> Self {
        Self::for_issuer(&base.issuer_for(tenant, client))
    }

    /// Parses a stored document; `path` names it in errors.
    pub fn parse(bytes: &[u8], path: &str) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::MalformedDocument {
            path: path.to_owned(),
            reason: format!("not an OIDC discovery document ({e})"),
        })
    }

    /// The document as JSON bytes (stable formatting).
    pub fn to_json(&self) -> Vec<u8> {
        to_json(self)
    }
}

/// A JSON Web Key Set, its keys sorted by `kid`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
    /// Any other top-level members, kept verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Jwks {
    /// Parses a stored JWKS; `path` names it in errors. Duplicate key ids are refused.
    pub fn parse(bytes: &[u8], path: &str) -> Result<Self> {
        let malformed = |reason: String| Error::MalformedDocument {
            path: path.to_owned(),
            reason,
        };
        let mut jwks: Jwks = serde_json::from_slice(bytes)
            .map_err(|e| malformed(format!("not a JWKS of RSA keys with kid, n and e ({e})")))?;
        jwks.keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        if let Some(pair) = jwks.keys.windows(2).find(|w| w[0].kid == w[1].kid) {
            return Err(malformed(format!("key id '{}' appears twice", pair[0].kid)));
        }
        Ok(jwks)
    }

    /// The JWKS as JSON bytes (stable formatting and key order).
    pub fn to_json(&self) -> Vec<u8> {
        to_json(self)
    }

    /// The keys of `cluster` (those whose kid starts with `<cluster>.`).
    pub fn cluster_keys<'a>(&'a self, cluster: &'a ClusterName) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys.iter().filter(move |k| cluster.owns_kid(&k.kid))
    }

    /// The clusters with keys in this JWKS, with how many keys each has. Keys whose id is not
    /// `<cluster>.<thumbprint>` are not counted.
    pub fn clusters(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for key in &self.keys {
            if let Some(cluster) = crate::keys::kid_cluster(&key.kid) {
                *out.entry(cluster.to_owned()).or_insert(0) += 1;
            }
        }
        out
    }

    /// This JWKS with `cluster`'s keys replaced by `keys`. Refuses keys of another cluster,
    /// duplicate key ids, and a result of more than [`MAX_JWKS_KEYS`] keys.
    ///
    /// Each key carries [`PUBLISHED_AT_MEMBER`]: the time it first appeared in this JWKS (kept
    /// when the key is published again, `published_at` for a new key). RFC 7517 §4 requires
    /// consumers to ignore members they do not understand, so Entra ignores it; operators read it
    /// to see how old the keys of each cluster are.
    pub fn with_cluster_keys_at(
        &self,
        cluster: &ClusterName,
        keys: &[Jwk],
        published_at: i64,
    ) -> Result<Jwks> {
        let mut seen = BTreeSet::new();
        for key in keys {
            if !cluster.owns_kid(&key.kid) {
                return Err(Error::ForeignKey {
                    cluster: cluster.to_string(),
                    kid: key.kid.clone(),
                });
            }
            if !seen.insert(key.kid.as_str()) {
                return Err(Error::DuplicateKid { kid: key.kid.clone() });
            }
        }
        let mut out = self.without_cluster(cluster);
        out.keys.extend(keys.iter().map(|key| {
            let mut key = key.clone();
            let first_seen = self
                .find(&key.kid)
                .and_then(Jwk::published_at)
                .unwrap_or(published_at);
            key.extra
                .insert(PUBLISHED_AT_MEMBER.to_owned(), first_seen.into());
            key
        }));
        out.keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        if out.keys.len() > MAX_JWKS_KEYS {
            return Err(Error::TooManyKeys {
                count: out.keys.len(),
                max: MAX_JWKS_KEYS,
            });
        }
        Ok(out)
    }

    /// [`Jwks::with_cluster_keys_at`] stamping new keys with the current time.
    pub fn with_cluster_keys(&self, cluster: &ClusterName, keys: &[Jwk]) -> Result<Jwks> {
        self.with_cluster_keys_at(cluster, keys, jiff::Timestamp::now().as_second())
    }

    /// This JWKS without any key of `cluster`.
    pub fn without_cluster(&self, cluster: &ClusterName) -> Jwks {
        Jwks {
            keys: self
                .keys
                .iter()
                .filter(|k| !cluster.owns_kid(&k.kid))
                .cloned()
                .collect(),
            extra: self.extra.clone(),
        }
    }

    /// Whether `cluster`'s keys in this JWKS are exactly `keys` (ignoring order).
    /// The [`PUBLISHED_AT_MEMBER`] stamp is not part of the comparison.
    pub fn has_exactly(&self, cluster: &ClusterName, keys: &[Jwk]) -> bool {
        let unstamped = |k: &Jwk| {
            let mut k = k.clone();
            k.extra.remove(PUBLISHED_AT_MEMBER);
            k
        };
        let mut have: Vec<Jwk> = self.cluster_keys(cluster).map(unstamped).collect();
        let mut want: Vec<Jwk> = keys.iter().map(unstamped).collect();
        have.sort_by(|a, b| a.kid.cmp(&b.kid));
        want.sort_by(|a, b| a.kid.cmp(&b.kid));
        have == want
    }

    /// The key with this id.
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Documents hold only strings and maps of JSON values: serialization cannot fail.
    let mut out = serde_json::to_vec_pretty(value).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str) -> ClusterName {
        ClusterName::parse(name).unwrap()
    }

    fn jwk(kid: &str) -> Jwk {
        Jwk::rsa(kid, &[1, 2, 3], &[1, 0, 1])
    }

    fn ids() -> (TenantId, ClientId) {
        (
            TenantId::parse("11111111-1111-1111-1111-111111111111").unwrap(),
            ClientId::parse("22222222-2222-2222-2222-222222222222").unwrap(),
        )
    }

    #[test]
    fn discovery_document_is_what_entra_reads() {
        let (t, c) = ids();
        let base = IssuerBaseUrl::parse("https://issuer.example.com/ib/").unwrap();
        let doc = DiscoveryDocument::for_identity(&base, &t, &c);
        let json: serde_json::Value = serde_json::from_slice(&doc.to_json()).unwrap();
        let issuer = format!("https://issuer.example.com/ib/{t}/{c}");
        assert_eq!(
            json,
            serde_json::json!({
                "issuer": issuer,
                "jwks_uri": format!("{issuer}/openid/v1/jwks"),
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            })
        );
        assert_eq!(DiscoveryDocument::parse(&doc.to_json(), "p").unwrap(), doc);
        assert!(
            DiscoveryDocument::parse(b"{}", "p")
                .unwrap_err()
                .to_string()
                .contains("'p'")
        );
        assert_eq!(
            discovery_path(&t, &c),
            format!("{t}/{c}/.well-known/openid-configuration")
        );
        assert_eq!(jwks_path(&t, &c), format!("{t}/{c}/openid/v1/jwks"));
    }

    #[test]
    fn jwks_shape_and_deterministic_order() {
        let jwks = Jwks::default()
            .with_cluster_keys(&cluster("b"), &[jwk("b.2"), jwk("b.1")])
            .unwrap();
        let jwks = jwks.with_cluster_keys(&cluster("a"), &[jwk("a.1")]).unwrap();
        let kids: Vec<_> = jwks.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["a.1", "b.1", "b.2"]);
        let json: serde_json::Value = serde_json::from_slice(&jwks.to_json()).unwrap();
        let first = &json["keys"][0];
        for (field, value) in [
            ("kty", "RSA"),
            ("use", "sig"),
            ("alg", "RS256"),
            ("kid", "a.1"),
            ("e", "AQAB"),
        ] {
            assert_eq!(first[field], value, "{field}");
        }
        let reparsed = Jwks::parse(&jwks.to_json(), "p").unwrap();
        assert_eq!(reparsed, jwks);
        assert_eq!(reparsed.to_json(), jwks.to_json());
        assert_eq!(
            jwks.clusters(),
            BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 2)])
        );
    }

    #[test]
    fn replace_and_remove_one_cluster() {
        let a = cluster("a");
        let ab = cluster("ab");
        let jwks = Jwks::default()
            .with_cluster_keys(&a, &[jwk("a.1"), jwk("a.2")])
            .unwrap()
            .with_cluster_keys(&ab, &[jwk("ab.1")])
            .unwrap();
        let replaced = jwks.with_cluster_keys(&a, &[jwk("a.3")]).unwrap();
        let kids: Vec<_> = replaced.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["a.3", "ab.1"]);
        assert!(replaced.has_exactly(&a, &[jwk("a.3")]));
        assert!(!replaced.has_exactly(&a, &[jwk("a.1")]));
        let removed = replaced.without_cluster(&a);
        let kids: Vec<_> = removed.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["ab.1"], "removing 'a' must not touch 'ab'");
        assert!(removed.has_exactly(&a, &[]));
    }

    #[test]
    fn keys_are_stamped_when_first_published_and_keep_their_stamp() {
        let a = cluster("a");
        let first = Jwks::default()
            .with_cluster_keys_at(&a, &[jwk("a.1")], 1_000)
            .unwrap();
        assert_eq!(first.find("a.1").unwrap().published_at(), Some(1_000));
        // Republished with a rotation: the old key keeps its time, the new one gets the new time.
        let second = first
            .with_cluster_keys_at(&a, &[jwk("a.1"), jwk("a.2")], 2_000)
            .unwrap();
        assert_eq!(second.find("a.1").unwrap().published_at(), Some(1_000));
        assert_eq!(second.find("a.2").unwrap().published_at(), Some(2_000));
        // The stamp is not part of "already published".
        assert!(second.has_exactly(&a, &[jwk("a.2"), jwk("a.1")]));
        let json: serde_json::Value = serde_json::from_slice(&second.to_json()).unwrap();
        assert_eq!(json["keys"][0][PUBLISHED_AT_MEMBER], 1_000);
        assert_eq!(Jwks::parse(&second.to_json(), "p").unwrap(), second);
    }

    #[test]
    fn foreign_and_duplicate_keys_are_refused() {
        let a = cluster("a");
        let err = Jwks::default().with_cluster_keys(&a, &[jwk("b.1")]).unwrap_err();
        assert!(matches!(err, Error::ForeignKey { .. }), "{err}");
        let err = Jwks::default()
            .with_cluster_keys(&a, &[jwk("a.1"), jwk("a.1")])
            .unwrap_err();
        assert!(matches!(err, Error::DuplicateKid { .. }), "{err}");
        let doubled = br#"{"keys":[{"kty":"RSA","use":"sig","alg":"RS256","kid":"x.1","n":"AQ","e":"AQAB"},
                                   {"kty":"RSA","use":"sig","alg":"RS256","kid":"x.1","n":"AQ","e":"AQAB"}]}"#;
        assert!(
            Jwks::parse(doubled, "p")
                .unwrap_err()
                .to_string()
                .contains("appears twice")
        );
        assert!(
            Jwks::parse(b"[]", "p")
                .unwrap_err()
                .to_string()
                .contains("malformed document at 'p'")
        );
    }

    #[test]
    fn more_than_100_keys_are_refused() {
        let mut jwks = Jwks::default();
        for i in 0..50 {
            let c = cluster(&format!("c{i}"));
            jwks = jwks
                .with_cluster_keys(&c, &[jwk(&format!("c{i}.1")), jwk(&format!("c{i}.2"))])
                .unwrap();
        }
        assert_eq!(jwks.keys.len(), MAX_JWKS_KEYS);
        // Replacing a cluster's keys at the limit is fine; adding one more is not.
        jwks.with_cluster_keys(&cluster("c0"), &[jwk("c0.3"), jwk("c0.4")])
            .unwrap();
        let err = jwks
            .with_cluster_keys(&cluster("c0"), &[jwk("c0.1"), jwk("c0.2"), jwk("c0.3")])
            .unwrap_err();
        assert!(
            matches!(err, Error::TooManyKeys { count: 101, max: 100 }),
            "{err}"
        );
        let err = jwks
            .with_cluster_keys(&cluster("new"), &[jwk("new.1")])
            .unwrap_err();
        assert!(err.to_string().contains("only the first 100"), "{err}");
    }

    #[test]
    fn unknown_members_survive_a_rewrite() {
        let raw = br#"{"keys":[{"kty":"RSA","use":"sig","alg":"RS256","kid":"x.1","n":"AQ","e":"AQAB","x5t":"abc"}],
                       "note":"kept"}"#;
        let jwks = Jwks::parse(raw, "p")
            .unwrap()
            .with_cluster_keys(&cluster("y"), &[jwk("y.1")])
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&jwks.to_json()).unwrap();
        assert_eq!(json["note"], "kept");
        assert_eq!(json["keys"][0]["x5t"], "abc");
    }
}
