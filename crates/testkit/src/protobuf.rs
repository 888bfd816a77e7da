//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into
//! JSON, for the kinds kubectl's typed clients send that way (`kubectl auth can-i`,
//! `kubectl create namespace|configmap|secret|serviceaccount|role|rolebinding|token`, ...).
//! Responses are always JSON (every client accepts it).

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// The type of a field.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    /// Bytes, base64 in JSON.
    Bytes,
    Bool,
    Int,
    Msg(&'static [Field]),
    MapStr,
    MapBytes,
    /// `map<string, ExtraValue>` (ExtraValue: `repeated string items = 1`).
    MapStrings,
    Time,
}

#[derive(Clone, Copy)]
struct Field {
    tag: u64,
    name: &'static str,
    ty: Ty,
    repeated: bool,
}

const fn f(tag: u64, name: &'static str, ty: Ty) -> Field {
    Field {
        tag,
        name,
        ty,
        repeated: false,
    }
}

const fn r(tag: u64, name: &'static str, ty: Ty) -> Field {
    Field {
        tag,
        name,
        ty,
        repeated: true,
    }
}

const OWNER_REFERENCE: &[Field] = &[
    f(1, "kind", Ty::Str),
    f(3, "name", Ty::Str),
    f(4, "uid", Ty::Str),
    f(5, "apiVersion", Ty::Str),
    f(6, "controller", Ty::Bool),
    f(7, "blockOwnerDeletion", Ty::Bool),
];
const OBJECT_META: &[Field] = &[
    f(1, "name", Ty::Str),
    f(2, "generateName", Ty::Str),
    f(3, "namespace", Ty::Str),
    f(5, "uid", Ty::Str),
    f(6, "resourceVersion", Ty::Str),
    f(7, "generation", Ty::Int),
    f(8, "creationTimestamp", Ty::Time),
    f(9, "deletionTimestamp", Ty::Time),
    f(10, "deletionGracePeriodSeconds", Ty::Int),
    f(11, "labels", Ty::MapStr),
    f(12, "annotations", Ty::MapStr),
    r(13, "ownerReferences", Ty::Msg(OWNER_REFERENCE)),
    r(14, "finalizers", Ty::Str),
];
const LABEL_SELECTOR_REQUIREMENT: &[Field] = &[
    f(1, "key", Ty::Str),
    f(2, "operator", Ty::Str),
    r(3, "values", Ty::Str),
];
const LABEL_SELECTOR: &[Field] = &[
    f(1, "matchLabels", Ty::MapStr),
    r(2, "matchExpressions", Ty::Msg(LABEL_SELECTOR_REQUIREMENT)),
];
const SELECTOR_ATTRIBUTES: &[Field] = &[
    f(1, "rawSelector", Ty::Str),
    r(2, "requirements", Ty::Msg(LABEL_SELECTOR_REQUIREMENT)),
];
const OBJECT_REFERENCE: &[Field] = &[
    f(1, "kind", Ty::Str),
    f(2, "namespace", Ty::Str),
    f(3, "name", Ty::Str),
    f(4, "uid", Ty::Str),
    f(5, "apiVersion", Ty::Str),
    f(6, "resourceVersion", Ty::Str),
    f(7, "fieldPath", Ty::Str),
];
const LOCAL_OBJECT_REFERENCE: &[Field] = &[f(1, "name", Ty::Str)];

const CONFIG_MAP: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "data", Ty::MapStr),
    f(3, "binaryData", Ty::MapBytes),
    f(4, "immutable", Ty::Bool),
];
const SECRET: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "data", Ty::MapBytes),
    f(3, "type", Ty::Str),
    f(4, "stringData", Ty::MapStr),
    f(5, "immutable", Ty::Bool),
];
const NAMESPACE_SPEC: &[Field] = &[r(1, "finalizers", Ty::Str)];
const NAMESPACE: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(NAMESPACE_SPEC)),
];
const SERVICE_ACCOUNT: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    r(2, "secrets", Ty::Msg(OBJECT_REFERENCE)),
    r(3, "imagePullSecrets", Ty::Msg(LOCAL_OBJECT_REFERENCE)),
    f(4, "automountServiceAccountToken", Ty::Bool),
];

const RESOURCE_ATTRIBUTES: &[Field] = &[
    f(1, "namespace", Ty::Str),
    f(2, "verb", Ty::Str),
    f(3, "group", Ty::Str),
    f(4, "version", Ty::Str),
    f(5, "resource", Ty::Str),
    f(6, "subresource", Ty::Str),
    f(7, "name", Ty::Str),
    f(8, "fieldSelector", Ty::Msg(SELECTOR_ATTRIBUTES)),
    f(9, "labelSelector", Ty::Msg(SELECTOR_ATTRIBUTES)),
];
const NON_RESOURCE_ATTRIBUTES: &[Field] = &[f(1, "path", Ty::Str), f(2, "verb", Ty::Str)];
const SELF_SUBJECT_ACCESS_REVIEW_SPEC: &[Field] = &[
    f(1, "resourceAttributes", Ty::Msg(RESOURCE_ATTRIBUTES)),
    f(2, "nonResourceAttributes", Ty::Msg(NON_RESOURCE_ATTRIBUTES)),
];
const SUBJECT_ACCESS_REVIEW_SPEC: &[Field] = &[
    f(1, "resourceAttributes", Ty::Msg(RESOURCE_ATTRIBUTES)),
    f(2, "nonResourceAttributes", Ty::Msg(NON_RESOURCE_ATTRIBUTES)),
    f(3, "user", Ty::Str),
    r(4, "groups", Ty::Str),
    f(5, "extra", Ty::MapStrings),
    f(6, "uid", Ty::Str),
];
const SELF_SUBJECT_ACCESS_REVIEW: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(SELF_SUBJECT_ACCESS_REVIEW_SPEC)),
];
const SUBJECT_ACCESS_REVIEW: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(SUBJECT_ACCESS_REVIEW_SPEC)),
];

const BOUND_OBJECT_REFERENCE: &[Field] = &[
    f(1, "kind", Ty::Str),
    f(2, "apiVersion", Ty::Str),
    f(3, "name", Ty::Str),
    f(4, "uid", Ty::Str),
];
const TOKEN_REQUEST_SPEC: &[Field] = &[
    r(1, "audiences", Ty::Str),
    f(3, "boundObjectRef", Ty::Msg(BOUND_OBJECT_REFERENCE)),
    f(4, "expirationSeconds", Ty::Int),
];
const TOKEN_REQUEST: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(TOKEN_REQUEST_SPEC)),
];
const TOKEN_REVIEW_SPEC: &[Field] = &[f(1, "token", Ty::Str), r(2, "audiences", Ty::Str)];
const TOKEN_REVIEW: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    f(2, "spec", Ty::Msg(TOKEN_REVIEW_SPEC)),
];
const SELF_SUBJECT_REVIEW: &[Field] = &[f(1, "metadata", Ty::Msg(OBJECT_META))];

const POLICY_RULE: &[Field] = &[
    r(1, "verbs", Ty::Str),
    r(2, "apiGroups", Ty::Str),
    r(3, "resources", Ty::Str),
    r(4, "resourceNames", Ty::Str),
    r(5, "nonResourceURLs", Ty::Str),
];
const AGGREGATION_RULE: &[Field] = &[r(1, "clusterRoleSelectors", Ty::Msg(LABEL_SELECTOR))];
const ROLE: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    r(2, "rules", Ty::Msg(POLICY_RULE)),
];
const CLUSTER_ROLE: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    r(2, "rules", Ty::Msg(POLICY_RULE)),
    f(3, "aggregationRule", Ty::Msg(AGGREGATION_RULE)),
];
const SUBJECT: &[Field] = &[
    f(1, "kind", Ty::Str),
    f(2, "apiGroup", Ty::Str),
    f(3, "name", Ty::Str),
    f(4, "namespace", Ty::Str),
];
const ROLE_REF: &[Field] = &[
    f(1, "apiGroup", Ty::Str),
    f(2, "kind", Ty::Str),
    f(3, "name", Ty::Str),
];
const ROLE_BINDING: &[Field] = &[
    f(1, "metadata", Ty::Msg(OBJECT_META)),
    r(2, "subjects", Ty::Msg(SUBJECT)),
    f(3, "roleRef", Ty::Msg(ROLE_REF)),
];

const TYPE_META: &[Field] = &[f(1, "apiVersion", Ty::Str), f(2, "kind", Ty::Str)];
const UNKNOWN: &[Field] = &[f(1, "typeMeta", Ty::Msg(TYPE_META)), f(2, "raw", Ty::Bytes)];

fn schema_of(kind: &str) -> Option<&'static [Field]> {
    Some(match kind {
        "ConfigMap" => CONFIG_MAP,
        "Secret" => SECRET,
        "Namespace" => NAMESPACE,
        "ServiceAccount" => SERVICE_ACCOUNT,
        "SelfSubjectAccessReview" => SELF_SUBJECT_ACCESS_REVIEW,
        "SubjectAccessReview" | "LocalSubjectAccessReview" => SUBJECT_ACCESS_REVIEW,
        "TokenRequest" => TOKEN_REQUEST,
        "TokenReview" => TOKEN_REVIEW,
        "SelfSubjectReview" => SELF_SUBJECT_REVIEW,
        "Role" => ROLE,
        "ClusterRole" => CLUSTER_ROLE,
        "RoleBinding" | "ClusterRoleBinding" => ROLE_BINDING,
        _ => return None,
    })
}

/// The protobuf media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long".into())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or("truncated field")?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn skip(&mut self, wire: u64) -> Result<(), String> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.advance(8),
            2 => self.bytes().map(|_| ()),
            5 => self.advance(4),
            other => Err(format!("unsupported wire type {other}")),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), String> {
        if self.pos + n > self.buf.len() {
            return Err("truncated field".into());
        }
        self.pos += n;
        Ok(())
    }
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "invalid UTF-8 in a string field".to_string())
}

/// Decodes `key = 1, value = 2` map entries.
fn map_entry(bytes: &[u8], value_ty: Ty) -> Result<(String, Value), String> {
    let mut reader = Reader::new(bytes);
    let (mut key, mut value) = (String::new(), Value::Null);
    while !reader.done() {
        let header = reader.varint()?;
        let (tag, wire) = (header >> 3, header & 7);
        match (tag, wire) {
            (1, 2) => key = utf8(reader.bytes()?)?,
            (2, 2) => {
                let raw = reader.bytes()?;
                value = match value_ty {
                    Ty::MapBytes => json!(base64::engine::general_purpose::STANDARD.encode(raw)),
                    Ty::MapStrings => {
                        let items = message(raw, &[r(1, "items", Ty::Str)])?;
                        items.get("items").cloned().unwrap_or_else(|| json!([]))
                    }
                    _ => json!(utf8(raw)?),
                };
            }
            (_, wire) => reader.skip(wire)?,
        }
    }
    if value.is_null() {
        value = if matches!(value_ty, Ty::MapStrings) {
            json!([])
        } else {
            json!("")
        };
    }
    Ok((key, value))
}

fn time(bytes: &[u8]) -> Result<Value, String> {
    let mut reader = Reader::new(bytes);
    let mut seconds = 0i64;
    while !reader.done() {
        let header = reader.varint()?;
        match (header >> 3, header & 7) {
            (1, 0) => seconds = reader.varint()? as i64,
            (_, wire) => reader.skip(wire)?,
        }
    }
    let ts = jiff::Timestamp::from_second(seconds).map_err(|e| format!("invalid time: {e}"))?;
    Ok(json!(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

fn message(bytes: &[u8], schema: &[Field]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    let mut reader = Reader::new(bytes);
    while !reader.done() {
        let header = reader.varint()?;
        let (tag, wire) = (header >> 3, header & 7);
        let Some(field) = schema.iter().find(|f| f.tag == tag) else {
            reader.skip(wire)?;
            continue;
        };
        let value = match (field.ty, wire) {
            (Ty::Bool, 0) => json!(reader.varint()? != 0),
            (Ty::Int, 0) => json!(reader.varint()? as i64),
            (Ty::Str, 2) => json!(utf8(reader.bytes()?)?),
            (Ty::Bytes, 2) => json!(base64::engine::general_purpose::STANDARD.encode(reader.bytes()?)),
            (Ty::Msg(inner), 2) => Value::Object(message(reader.bytes()?, inner)?),
            (Ty::Time, 2) => time(reader.bytes()?)?,
            (ty @ (Ty::MapStr | Ty::MapBytes | Ty::MapStrings), 2) => {
                let (k, v) = map_entry(reader.bytes()?, ty)?;
                let map = out.entry(field.name).or_insert_with(|| json!({}));
                if let Some(map) = map.as_object_mut() {
                    map.insert(k, v);
                }
                continue;
            }
            (_, wire) => return Err(format!("field {} has unexpected wire type {wire}", field.name)),
        };
        if field.repeated {
            let list = out.entry(field.name).or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut() {
                list.push(value);
            }
        } else {
            out.insert(field.name.to_string(), value);
        }
    }
    Ok(out)
}

/// Decodes a protobuf-encoded object (`k8s\0` + `runtime.Unknown`) into its JSON form.
pub fn decode(bytes: &[u8]) -> Result<Value, String> {
    let body = bytes
        .strip_prefix(b"k8s\0")
        .ok_or("missing the k8s protobuf magic prefix")?;
    let envelope = message(body, UNKNOWN)?;
    let api_version = envelope["typeMeta"]["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let kind = envelope["typeMeta"]["kind"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(envelope.get("raw").and_then(Value::as_str).unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let schema = schema_of(&kind)
        .ok_or_else(|| format!("protobuf bodies of kind {kind:?} are not supported; send JSON"))?;
    let mut object = message(&raw, schema)?;
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(kind));
    Ok(Value::Object(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(tag: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(tag << 3 | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_a_self_subject_access_review() {
        let attrs = [tagged(2, b"create"), tagged(5, b"pods"), tagged(1, b"default")].concat();
        let spec = tagged(1, &attrs);
        let raw = tagged(2, &spec);
        let type_meta = [
            tagged(1, b"authorization.k8s.io/v1"),
            tagged(2, b"SelfSubjectAccessReview"),
        ]
        .concat();
        let mut body = b"k8s\0".to_vec();
        body.extend(tagged(1, &type_meta));
        body.extend(tagged(2, &raw));
        let decoded = decode(&body);
        assert_eq!(
            decoded,
            Ok(
                json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"verb": "create", "resource": "pods", "namespace": "default"}}})
            )
        );
    }

    #[test]
    fn decodes_maps_and_rejects_garbage() {
        let entry = [tagged(1, b"k"), tagged(2, b"v")].concat();
        let meta = tagged(1, b"cm");
        let raw = [tagged(1, &meta), tagged(2, &entry)].concat();
        let type_meta = [tagged(1, b"v1"), tagged(2, b"ConfigMap")].concat();
        let mut body = b"k8s\0".to_vec();
        body.extend(tagged(1, &type_meta));
        body.extend(tagged(2, &raw));
        assert_eq!(
            decode(&body),
            Ok(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}})
            )
        );
        assert!(decode(b"k8s\0\x0a\xff").is_err());
        assert!(decode(b"{}").is_err());
    }
}
