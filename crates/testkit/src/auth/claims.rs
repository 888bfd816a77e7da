//! The claims of a service-account token, exactly as kube-apiserver writes them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The claims of a service-account token. Fields serialize in the order kube-apiserver's tokens
/// have them (alphabetical, as go-jose merges claims through a map).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountClaims {
    /// Audiences (always an array in minted tokens).
    #[serde(deserialize_with = "string_or_array")]
    pub aud: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// The issuer URL.
    pub iss: String,
    /// Unique token id (a UUID).
    pub jti: String,
    /// The `kubernetes.io` private claim.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
    /// Not before, seconds since the epoch.
    pub nbf: i64,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
}

/// The `kubernetes.io` private claim: namespace, service account and the bound objects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    /// Namespace of the service account.
    #[serde(default)]
    pub namespace: String,
    /// Node of the bound pod, or the bound node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
    /// The bound pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    /// The bound secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    /// The service account.
    #[serde(default)]
    pub serviceaccount: ObjectRef,
}

/// A `{name, uid}` reference inside the `kubernetes.io` claim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Object name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Object UID.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

impl ObjectRef {
    /// A reference to `name` with `uid`.
    pub fn new(name: impl Into<String>, uid: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            uid: uid.into(),
        }
    }
}

fn string_or_array<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// The registered claims of a token that passed the signature check, read leniently (as go-jose
/// does: `aud` string or array, numeric dates possibly fractional, all optional).
#[derive(Debug, Default)]
pub(crate) struct VerifiedClaims {
    pub(crate) aud: Vec<String>,
    pub(crate) exp: Option<i64>,
    pub(crate) nbf: Option<i64>,
    pub(crate) iat: Option<i64>,
    pub(crate) jti: String,
    pub(crate) kubernetes: KubernetesClaims,
}

/// Reads verified claims; `Err` describes a claim of the wrong type.
pub(crate) fn read_claims(claims: &serde_json::Map<String, Value>) -> Result<VerifiedClaims, String> {
    let date = |key: &str| -> Result<Option<i64>, String> {
        match claims.get(key) {
            None | Some(Value::Null) => Ok(None),
            #[allow(clippy::cast_possible_truncation)]
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| format!("{key}: {n}")),
            Some(other) => Err(format!("{key}: expected a number, got {other}")),
        }
    };
    let aud = match claims.get("aud") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("aud: expected strings, got {v}"))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => Err(format!("aud: expected a string or an array, got {other}"))?,
    };
    let jti = match claims.get("jti") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => Err(format!("jti: expected a string, got {other}"))?,
    };
    let kubernetes = match claims.get("kubernetes.io") {
        None | Some(Value::Null) => KubernetesClaims::default(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| format!("kubernetes.io: {e}"))?,
    };
    Ok(VerifiedClaims {
        aud,
        exp: date("exp")?,
        nbf: date("nbf")?,
        iat: date("iat")?,
        jti,
        kubernetes,
    })
}
