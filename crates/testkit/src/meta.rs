//! Reading and writing `metadata` of JSON objects, and metadata validation.

use serde_json::{Map, Value, json};

use crate::status::Cause;

/// `metadata.<field>` as a string ("" when absent).
pub fn str_field<'a>(object: &'a Value, field: &str) -> &'a str {
    object["metadata"][field].as_str().unwrap_or_default()
}

/// `metadata.name`.
pub fn name(object: &Value) -> &str {
    str_field(object, "name")
}

/// `metadata.namespace`.
pub fn namespace(object: &Value) -> &str {
    str_field(object, "namespace")
}

/// `metadata.uid`.
pub fn uid(object: &Value) -> &str {
    str_field(object, "uid")
}

/// `metadata.resourceVersion`.
pub fn resource_version(object: &Value) -> &str {
    str_field(object, "resourceVersion")
}

/// Whether `metadata.deletionTimestamp` is set.
pub fn is_deleting(object: &Value) -> bool {
    !object["metadata"]["deletionTimestamp"].is_null()
}

/// `metadata.finalizers`.
pub fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Sets (or with an empty list removes) `metadata.finalizers`.
pub fn set_finalizers(object: &mut Value, finalizers: &[String]) {
    let meta = metadata_mut(object);
    if finalizers.is_empty() {
        meta.remove("finalizers");
    } else {
        meta.insert("finalizers".into(), json!(finalizers));
    }
}

/// The uids named in `metadata.ownerReferences`.
pub fn owner_uids(object: &Value) -> Vec<String> {
    object["metadata"]["ownerReferences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["uid"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata` as a mutable map (created if missing or not an object).
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let Value::Object(map) = object else {
        unreachable!("just made an object")
    };
    let meta = map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    match meta {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// The current time as Kubernetes writes timestamps (RFC 3339, seconds, UTC).
pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A new uid.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The 5-character suffix `generateName` appends (the apiserver's alphabet).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes
        .iter()
        .take(5)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `s` is an RFC 1123 subdomain.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// How a kind's names are validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most kinds).
    Subdomain,
    /// RFC 1123 label (namespaces, services).
    Label,
    /// Any path segment (RBAC kinds): not `.`/`..`, no `/` or `%`.
    PathSegment,
}

/// Validates `metadata.name`.
pub fn validate_name(name: &str, rule: NameRule) -> Option<Cause> {
    let value = Value::String(name.to_string());
    match rule {
        NameRule::Subdomain if !is_dns_subdomain(name) => {
            let msg = if name.len() > 253 {
                "must be no more than 253 characters"
            } else {
                DNS1123_SUBDOMAIN_MSG
            };
            Some(Cause::invalid("metadata.name", &value, msg))
        }
        NameRule::Label if !is_dns_label(name) => {
            let msg = if name.len() > 63 {
                "must be no more than 63 characters"
            } else {
                DNS1123_LABEL_MSG
            };
            Some(Cause::invalid("metadata.name", &value, msg))
        }
        NameRule::PathSegment if name == "." || name == ".." => Some(Cause::invalid(
            "metadata.name",
            &value,
            &format!("may not be '{name}'"),
        )),
        NameRule::PathSegment if name.contains('/') || name.contains('%') => Some(Cause::invalid(
            "metadata.name",
            &value,
            &format!("may not contain '{}'", if name.contains('/') { "/" } else { "%" }),
        )),
        _ => None,
    }
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Whether `s` is a qualified name (`[prefix/]name`) as label keys and finalizers must be.
pub fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty() && is_dns_subdomain(prefix) && is_qualified_name_part(name)
        }
        None => is_qualified_name_part(s),
    }
}

fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_qualified_name_part(s)
}

/// Validates labels, finalizers and owner references.
pub fn validate_metadata(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let meta = &object["metadata"];
    if let Some(labels) = meta["labels"].as_object() {
        for (k, v) in labels {
            if !is_qualified_name(k) {
                causes.push(Cause::invalid("metadata.labels", &json!(k), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"));
            }
            match v.as_str() {
                Some(s) if is_label_value(s) => {}
                _ => causes.push(Cause::invalid("metadata.labels", v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")),
            }
        }
    }
    if let Some(annotations) = meta["annotations"].as_object() {
        for (k, v) in annotations {
            if !is_qualified_name(&k.to_lowercase()) {
                causes.push(Cause::invalid("metadata.annotations", &json!(k), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
            }
            if !v.is_string() {
                causes.push(Cause::invalid(
                    format!("metadata.annotations[{k}]"),
                    v,
                    "must be a string",
                ));
            }
        }
    }
    for (i, f) in meta["finalizers"].as_array().into_iter().flatten().enumerate() {
        match f.as_str() {
            Some(s) if is_qualified_name(s) => {}
            _ => causes.push(Cause::invalid(format!("metadata.finalizers[{i}]"), f, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")),
        }
    }
    for (i, r) in meta["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for field in ["apiVersion", "kind", "name", "uid"] {
            if r[field].as_str().is_none_or(str::is_empty) {
                let path = format!("metadata.ownerReferences[{i}].{field}");
                causes.push(if field == "uid" || field == "name" {
                    Cause::invalid(path, &json!(""), &format!("{field} must not be empty"))
                } else {
                    Cause::required(path)
                });
            }
        }
    }
    let controllers = meta["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["controller"].as_bool() == Some(true))
        .count();
    if controllers > 1 {
        causes.push(Cause::invalid(
            "metadata.ownerReferences",
            &meta["ownerReferences"],
            "Only one reference can have Controller set to true",
        ));
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("a.b-c", NameRule::Subdomain).is_none());
        assert!(validate_name("Upper", NameRule::Subdomain).is_some());
        assert!(validate_name("a.b", NameRule::Label).is_some());
        assert!(validate_name("system:controller:x", NameRule::PathSegment).is_none());
        assert!(validate_name("a/b", NameRule::PathSegment).is_some());
        assert_eq!(random_suffix().len(), 5);
    }

    #[test]
    fn metadata_rules() {
        let ok = json!({"metadata": {"labels": {"app.kubernetes.io/name": "x", "a": ""}, "finalizers": ["idbind.dev/cleanup"]}});
        assert!(validate_metadata(&ok).is_empty());
        let bad = json!({"metadata": {"labels": {"a": "not ok!"}, "finalizers": ["bad finalizer"]}});
        assert_eq!(validate_metadata(&bad).len(), 2);
    }
}
