//! Structural schemas of custom resources: pruning of unknown fields, defaulting, OpenAPI value
//! validation and CEL `x-kubernetes-validations` rules, with field paths and messages as
//! kube-apiserver words them.

use regex::Regex;
use serde_json::{Map, Value};

use crate::status::{Cause, show_value};

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// Removes fields the schema does not declare (recording their paths in `unknown`), and null values
/// of non-nullable fields. At the root (and in embedded resources) `apiVersion`, `kind` and
/// `metadata` are kept.
pub fn prune(value: &mut Value, schema: &Value, path: &str, root: bool, unknown: &mut Vec<String>) {
    let embedded = root || flag(schema, "x-kubernetes-embedded-resource");
    match value {
        Value::Object(map) => {
            let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let child_path = if additional.is_some() && props.is_none() {
                    format!("{path}[{key}]")
                } else {
                    join(path, &key)
                };
                if embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child_schema = props.and_then(|p| p.get(&key)).or(additional);
                match child_schema {
                    Some(child_schema) => {
                        if map.get(&key).is_some_and(Value::is_null) && !flag(child_schema, "nullable") {
                            map.remove(&key);
                            continue;
                        }
                        if let Some(child) = map.get_mut(&key) {
                            prune(child, child_schema, &child_path, false, unknown);
                        }
                    }
                    None if preserve => {}
                    None => {
                        unknown.push(child_path);
                        map.remove(&key);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item, item_schema, &format!("{path}[{i}]"), false, unknown);
                }
            }
        }
        _ => {}
    }
}

/// Applies `default`s of missing properties, recursively.
pub fn apply_defaults(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, prop) in props {
                    if !map.contains_key(key)
                        && let Some(default) = prop.get("default")
                    {
                        map.insert(key.clone(), default.clone());
                    }
                    if let Some(child) = map.get_mut(key) {
                        apply_defaults(child, prop);
                    }
                }
            } else if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for child in map.values_mut() {
                    apply_defaults(child, additional);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => value.is_number(),
        _ => true,
    }
}

fn invalid(path: &str, value: &Value, detail: &str) -> Cause {
    Cause::invalid(path, value, detail)
}

/// A cache of compiled regular expressions, so each pattern compiles once per validation pass.
#[derive(Default)]
struct Patterns(Vec<(String, Option<Regex>)>);

impl Patterns {
    fn get(&mut self, pattern: &str) -> Option<&Regex> {
        if let Some(i) = self.0.iter().position(|(p, _)| p == pattern) {
            return self.0[i].1.as_ref();
        }
        self.0.push((pattern.to_string(), Regex::new(pattern).ok()));
        self.0.last().and_then(|(_, r)| r.as_ref())
    }
}

/// Validates a value against an OpenAPI v3 structural schema; returns the causes.
pub fn validate(value: &Value, schema: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let mut patterns = Patterns::default();
    validate_at(value, schema, "", true, &mut causes, &mut patterns);
    causes
}

fn validate_at(
    value: &Value,
    schema: &Value,
    path: &str,
    root: bool,
    causes: &mut Vec<Cause>,
    re: &mut Patterns,
) {
    if value.is_null() {
        if !flag(schema, "nullable") && schema.get("type").is_some() {
            causes.push(invalid(
                path,
                &Value::String("null".into()),
                &format!(
                    "{path} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("object")
                ),
            ));
        }
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            causes.push(invalid(
                path,
                value,
                &format!(
                    "{path} in body must be of type integer or string: \"{}\"",
                    type_name(value)
                ),
            ));
            return;
        }
    } else if let Some(expected) = schema.get("type").and_then(Value::as_str)
        && !type_matches(expected, value)
    {
        causes.push(Cause::new(
            "FieldValueTypeInvalid",
            path,
            format!(
                "Invalid value: \"{}\": {path} in body must be of type {expected}: \"{}\"",
                type_name(value),
                type_name(value)
            ),
        ));
        return;
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let supported: Vec<String> = options.iter().map(show_value).collect();
        causes.push(Cause::new(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                show_value(value),
                supported.join(", ")
            ),
        ));
    }
    match value {
        Value::String(s) => validate_string(s, value, schema, path, causes, re),
        Value::Number(_) => validate_number(value, schema, path, causes),
        Value::Array(items) => validate_array(items, value, schema, path, causes, re),
        Value::Object(map) => validate_object(map, value, schema, path, root, causes, re),
        Value::Bool(_) | Value::Null => {}
    }
    for sub in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        validate_at(value, sub, path, root, causes, re);
    }
    for (key, need_one) in [("anyOf", false), ("oneOf", true)] {
        if let Some(subs) = schema.get(key).and_then(Value::as_array) {
            let passing = subs
                .iter()
                .filter(|sub| {
                    let mut c = Vec::new();
                    validate_at(value, sub, path, root, &mut c, re);
                    c.is_empty()
                })
                .count();
            let ok = if need_one { passing == 1 } else { passing >= 1 };
            if !ok {
                let what = if need_one {
                    "must validate one and only one schema (oneOf)"
                } else {
                    "must validate at least one schema (anyOf)"
                };
                causes.push(invalid(path, value, &format!("{path} in body {what}")));
            }
        }
    }
    if let Some(not) = schema.get("not") {
        let mut c = Vec::new();
        validate_at(value, not, path, root, &mut c, re);
        if c.is_empty() {
            causes.push(invalid(
                path,
                value,
                &format!("{path} in body should not validate the schema (not)"),
            ));
        }
    }
}

fn validate_string(
    s: &str,
    value: &Value,
    schema: &Value,
    path: &str,
    causes: &mut Vec<Cause>,
    re: &mut Patterns,
) {
    let len = s.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        causes.push(Cause::new(
            "FieldValueTooLong",
            path,
            format!("Too long: may not be more than {max} bytes"),
        ));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        causes.push(invalid(
            path,
            value,
            &format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match re.get(pattern) {
            Some(regex) if !regex.is_match(s) => {
                causes.push(invalid(
                    path,
                    value,
                    &format!("{path} in body should match '{pattern}'"),
                ));
            }
            Some(_) => {}
            None => causes.push(invalid(
                path,
                value,
                &format!("{path} has an invalid pattern '{pattern}'"),
            )),
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time")
        && jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.f%:z", s).is_err()
        && s.parse::<jiff::Timestamp>().is_err()
    {
        causes.push(invalid(
            path,
            value,
            &format!("{path} in body must be of type date-time: {s:?}"),
        ));
    }
}

fn validate_number(value: &Value, schema: &Value, path: &str, causes: &mut Vec<Cause>) {
    let Some(n) = value.as_f64() else { return };
    let exclusive_min = flag(schema, "exclusiveMinimum");
    let exclusive_max = flag(schema, "exclusiveMaximum");
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && (n < min || (exclusive_min && n == min))
    {
        let op = if exclusive_min {
            "greater than"
        } else {
            "greater than or equal to"
        };
        causes.push(invalid(
            path,
            value,
            &format!("{path} in body should be {op} {}", schema["minimum"]),
        ));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && (n > max || (exclusive_max && n == max))
    {
        let op = if exclusive_max {
            "less than"
        } else {
            "less than or equal to"
        };
        causes.push(invalid(
            path,
            value,
            &format!("{path} in body should be {op} {}", schema["maximum"]),
        ));
    }
    if let Some(m) = schema.get("multipleOf").and_then(Value::as_f64)
        && m != 0.0
        && (n / m).fract() != 0.0
    {
        causes.push(invalid(
            path,
            value,
            &format!("{path} in body should be a multiple of {}", schema["multipleOf"]),
        ));
    }
}

fn validate_array(
    items: &[Value],
    value: &Value,
    schema: &Value,
    path: &str,
    causes: &mut Vec<Cause>,
    re: &mut Patterns,
) {
    let len = items.len() as u64;
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && len > max
    {
        causes.push(Cause::new(
            "FieldValueTooMany",
            path,
            format!("Too many: {len}: must have at most {max} items"),
        ));
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && len < min
    {
        causes.push(invalid(
            path,
            value,
            &format!("{path} in body should have at least {min} items"),
        ));
    }
    let list_type = schema.get("x-kubernetes-list-type").and_then(Value::as_str);
    if list_type == Some("set") || flag(schema, "uniqueItems") {
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                causes.push(Cause::new(
                    "FieldValueDuplicate",
                    format!("{path}[{i}]"),
                    format!("Duplicate value: {}", show_value(item)),
                ));
            }
        }
    }
    if list_type == Some("map") {
        let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
            .as_array()
            .map(|k| k.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let key_of = |item: &Value| {
            keys.iter()
                .map(|k| item.get(*k).cloned().unwrap_or(Value::Null))
                .collect::<Vec<_>>()
        };
        for (i, item) in items.iter().enumerate() {
            let key = key_of(item);
            if items[..i].iter().any(|other| key_of(other) == key) {
                let shown = keys
                    .iter()
                    .zip(&key)
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                causes.push(Cause::new(
                    "FieldValueDuplicate",
                    format!("{path}[{i}]"),
                    format!("Duplicate value: map[string]interface {{}}{{{shown}}}"),
                ));
            }
        }
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            validate_at(item, item_schema, &format!("{path}[{i}]"), false, causes, re);
        }
    }
}

fn validate_object(
    map: &Map<String, Value>,
    value: &Value,
    schema: &Value,
    path: &str,
    root: bool,
    causes: &mut Vec<Cause>,
    re: &mut Patterns,
) {
    for required in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(name) = required.as_str()
            && !map.contains_key(name)
        {
            causes.push(Cause::required(join(path, name)));
        }
    }
    let count = map.len() as u64;
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && count > max
    {
        causes.push(Cause::new(
            "FieldValueTooMany",
            path,
            format!("Too many: {count}: must have at most {max} items"),
        ));
    }
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
        && count < min
    {
        causes.push(invalid(
            path,
            value,
            &format!("{path} in body should have at least {min} properties"),
        ));
    }
    let embedded = root || flag(schema, "x-kubernetes-embedded-resource");
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (key, child) in map {
        if embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(prop) = props.and_then(|p| p.get(key)) {
            validate_at(child, prop, &join(path, key), false, causes, re);
        } else if let Some(additional) = additional {
            validate_at(child, additional, &format!("{path}[{key}]"), false, causes, re);
        }
    }
}

/// Evaluates the schema's CEL `x-kubernetes-validations` rules (transition rules only when `old`
/// is given).
pub fn validate_cel(
    validator: &kube::core::cel::Validator,
    schema: &Value,
    object: &Value,
    old: Option<&Value>,
) -> Vec<Cause> {
    if !schema.to_string().contains("x-kubernetes-validations") {
        return Vec::new();
    }
    match validator.validate(schema, object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_vec()
            .into_iter()
            .map(|e| {
                let at = lookup(object, &e.field_path);
                let shown = at.map(type_name).unwrap_or("object");
                let reason = match e.reason.as_deref() {
                    Some("FieldValueForbidden") => "FieldValueForbidden",
                    Some("FieldValueRequired") => "FieldValueRequired",
                    Some("FieldValueDuplicate") => "FieldValueDuplicate",
                    _ => "FieldValueInvalid",
                };
                Cause::new(
                    reason,
                    e.field_path.clone(),
                    format!("Invalid value: \"{shown}\": {}", e.message),
                )
            })
            .collect(),
    }
}

/// Looks up a dotted path with `[i]` indexes (as produced in field errors).
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = value;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            let idx = idx.trim_end_matches(']');
            cur = match idx.parse::<usize>() {
                Ok(i) => cur.get(i)?,
                Err(_) => cur.get(idx)?,
            };
        }
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5, "minLength": 1},
                        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                        "count": {"type": "integer", "minimum": 1, "maximum": 3},
                        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "opt": {"type": "string", "nullable": true}
                    }
                }
            }
        })
    }

    #[test]
    fn prunes_unknown_fields_and_non_nullable_nulls() {
        let mut v = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "extra": 1,
            "spec": {"name": "a", "bogus": {"x": 1}, "free": {"any": 1}, "mode": null, "opt": null, "labels": {"k": "v"}}});
        let mut unknown = Vec::new();
        prune(&mut v, &schema(), "", true, &mut unknown);
        assert_eq!(unknown, vec!["extra".to_string(), "spec.bogus".to_string()]);
        assert_eq!(v["spec"]["free"]["any"], 1);
        assert!(v["spec"].get("mode").is_none());
        assert!(v["spec"].get("opt").is_some());
        assert_eq!(v["metadata"]["name"], "a");
        apply_defaults(&mut v, &schema());
        assert_eq!(v["spec"]["mode"], "a");
    }

    #[test]
    fn validation_messages_name_fields() {
        let v = json!({"spec": {"name": "ABCDEFG", "mode": "c", "count": 7, "tags": ["x", "x", "y"], "labels": {"k": 1}}});
        let causes: Vec<String> = validate(&v, &schema()).iter().map(Cause::render).collect();
        assert!(
            causes.contains(&"spec.name: Too long: may not be more than 5 bytes".to_string()),
            "{causes:?}"
        );
        assert!(
            causes.contains(
                &"spec.name: Invalid value: \"ABCDEFG\": spec.name in body should match '^[a-z]+$'"
                    .to_string()
            ),
            "{causes:?}"
        );
        assert!(
            causes
                .contains(&"spec.mode: Unsupported value: \"c\": supported values: \"a\", \"b\"".to_string()),
            "{causes:?}"
        );
        assert!(
            causes.contains(
                &"spec.count: Invalid value: 7: spec.count in body should be less than or equal to 3"
                    .to_string()
            ),
            "{causes:?}"
        );
        assert!(
            causes.contains(&"spec.tags: Too many: 3: must have at most 2 items".to_string()),
            "{causes:?}"
        );
        assert!(
            causes.contains(&"spec.tags[1]: Duplicate value: \"x\"".to_string()),
            "{causes:?}"
        );
        assert!(
            causes
                .iter()
                .any(|c| c.starts_with("spec.labels[k]: Invalid value: \"integer\"")),
            "{causes:?}"
        );
        let missing: Vec<String> = validate(&json!({"spec": {}}), &schema())
            .iter()
            .map(Cause::render)
            .collect();
        assert_eq!(missing, vec!["spec.name: Required value".to_string()]);
    }

    #[test]
    fn cel_transition_rules() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "id": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "id is immutable"}]}
        }}}});
        let validator = kube::core::cel::Validator::new();
        let new = json!({"spec": {"id": "b"}});
        assert!(validate_cel(&validator, &schema, &new, None).is_empty());
        let causes = validate_cel(&validator, &schema, &new, Some(&json!({"spec": {"id": "a"}})));
        assert_eq!(
            causes.iter().map(Cause::render).collect::<Vec<_>>(),
            vec!["spec.id: Invalid value: \"string\": id is immutable".to_string()]
        );
    }
}
