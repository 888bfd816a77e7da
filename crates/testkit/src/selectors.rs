//! Label and field selectors, parsed and matched like kube-apiserver does.

use std::collections::BTreeSet;

use serde_json::Value;

/// One label requirement.
#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    Exists(String),
    NotExists(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Greater(String, i64),
    Less(String, i64),
}

/// A parsed label selector (all requirements must match).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_set(s: &str, whole: &str) -> Result<BTreeSet<String>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            format!("unable to parse requirement: found '{s}', expected: '(' ... ')' in {whole:?}")
        })?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn check_key(key: &str, whole: &str) -> Result<String, String> {
    let key = key.trim();
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(key.to_string())
    } else {
        Err(format!("invalid label key {key:?} in selector {whole:?}"))
    }
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (x,y),!f,g`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement::NotExists(check_key(key, s)?)
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(check_key(k, s)?, v.trim().to_string())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Equals(check_key(k, s)?, v.trim().to_string())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Equals(check_key(k, s)?, v.trim().to_string())
            } else if let Some((k, v)) = part.split_once(" notin ") {
                Requirement::NotIn(check_key(k, s)?, parse_set(v, s)?)
            } else if let Some((k, v)) = part.split_once(" in ") {
                Requirement::In(check_key(k, s)?, parse_set(v, s)?)
            } else if let Some((k, v)) = part.split_once('>') {
                let n = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("invalid number {v:?} in selector {s:?}"))?;
                Requirement::Greater(check_key(k, s)?, n)
            } else if let Some((k, v)) = part.split_once('<') {
                let n = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("invalid number {v:?} in selector {s:?}"))?;
                Requirement::Less(check_key(k, s)?, n)
            } else {
                Requirement::Exists(check_key(part, s)?)
            };
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    /// Whether an object's labels match.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, set) => get(k).is_some_and(|v| set.contains(v)),
            Requirement::NotIn(k, set) => get(k).is_none_or(|v| !set.contains(v)),
            Requirement::Greater(k, n) => get(k).and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *n),
            Requirement::Less(k, n) => get(k).and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *n),
        })
    }
}

/// A parsed field selector.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits on `sep` not preceded by a backslash.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

impl FieldSelector {
    /// Parses `metadata.name=x,metadata.namespace!=y`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_unescaped(s, ',') {
            if part.trim().is_empty() {
                continue;
            }
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: '{s}'; can't understand '{part}'"));
            };
            reqs.push((field.trim().to_string(), equal, unescape(value.trim())));
        }
        Ok(Self(reqs))
    }

    /// Checks that every field is supported for `resource` (of `group`), as the apiserver does.
    pub fn check_supported(&self, group: &str, resource: &str) -> Result<(), String> {
        for (field, _, _) in &self.0 {
            if !supported_field(group, resource, field) {
                return Err(format!("field label not supported: {field}"));
            }
        }
        Ok(())
    }

    /// Whether an object matches.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let actual = field_value(object, field);
            (actual == *value) == *equal
        })
    }
}

fn supported_field(group: &str, resource: &str, field: &str) -> bool {
    if matches!(field, "metadata.name" | "metadata.namespace") {
        return true;
    }
    match (group, resource) {
        ("", "pods") => matches!(
            field,
            "spec.nodeName"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "spec.hostNetwork"
                | "status.phase"
                | "status.podIP"
                | "status.nominatedNodeName"
        ),
        ("", "secrets") => field == "type",
        ("", "namespaces") => field == "status.phase",
        ("", "events") => matches!(
            field,
            "involvedObject.kind"
                | "involvedObject.namespace"
                | "involvedObject.name"
                | "involvedObject.uid"
                | "involvedObject.apiVersion"
                | "involvedObject.resourceVersion"
                | "involvedObject.fieldPath"
                | "reason"
                | "reportingComponent"
                | "source"
                | "type"
        ),
        ("events.k8s.io", "events") => matches!(
            field,
            "regarding.kind"
                | "regarding.namespace"
                | "regarding.name"
                | "regarding.uid"
                | "regarding.apiVersion"
                | "regarding.resourceVersion"
                | "regarding.fieldPath"
                | "reason"
                | "reportingController"
                | "type"
        ),
        _ => false,
    }
}

/// The value of a dotted field path as a field selector sees it ("" when absent).
fn field_value(object: &Value, field: &str) -> String {
    let field = match field {
        "source" => "source.component",
        "spec.hostNetwork" => {
            return object["spec"]["hostNetwork"]
                .as_bool()
                .unwrap_or(false)
                .to_string();
        }
        other => other,
    };
    let mut cur = object;
    for part in field.split('.') {
        cur = &cur[part];
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(labels: &Value) -> Value {
        json!({"metadata": {"name": "n", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn label_operators() {
        let o = obj(&json!({"app": "web", "tier": "front"}));
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (db, web)", true),
            ("app notin (db,web)", false),
            ("missing notin (a)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier in (front)", true),
            ("app=web,tier=back", false),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).map(|s| s.matches(&o)),
                Ok(want),
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("app in db").is_err());
    }

    #[test]
    fn field_selectors() {
        let o = obj(&json!({}));
        let s = FieldSelector::parse("metadata.name=n,metadata.namespace!=other").unwrap_or_default();
        assert!(s.matches(&o));
        assert!(
            !FieldSelector::parse("metadata.name==x")
                .unwrap_or_default()
                .matches(&o)
        );
        assert!(
            FieldSelector::parse("spec.foo=1")
                .unwrap_or_default()
                .check_supported("", "configmaps")
                .is_err()
        );
        assert!(
            FieldSelector::parse("status.phase=Running")
                .unwrap_or_default()
                .check_supported("", "pods")
                .is_ok()
        );
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
