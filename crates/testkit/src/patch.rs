//! PATCH bodies: JSON merge patch, JSON patch, strategic merge patch (approximated) and
//! server-side apply (simplified field ownership).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The patch flavours, by request content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// The patch type of a content type.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let ct = ct.split(';').next().unwrap_or_default().trim();
        match ct {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml"
            | "application/apply-patch+json"
            | "application/apply-patch+cbor" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Applies an RFC 7386 merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Applies an RFC 6902 JSON patch, atomically.
///
/// Like kube-apiserver (evanphx/json-patch), a `test` of `null` succeeds against a missing path:
/// kube-runtime's finalizer helper relies on it when an object has no finalizers yet.
pub fn json(target: &mut Value, patch: &Value) -> Result<(), String> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| format!("invalid JSON patch: {e}"))?;
    let mut patched = target.clone();
    for op in ops.0 {
        if let json_patch::PatchOperation::Test(test) = &op
            && test.value.is_null()
            && patched.pointer(test.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut patched, &[op]).map_err(|e| e.to_string())?;
    }
    *target = patched;
    Ok(())
}

/// How a list field merges in a strategic merge patch.
enum ListStrategy {
    /// Replaced whole.
    Replace,
    /// Elements matched by this key are merged; others appended.
    MergeByKey(&'static str),
    /// A list of primitives merged as a set.
    Union,
}

/// The merge strategy of the built-in list fields that matter (from the Kubernetes types'
/// `patchStrategy`/`patchMergeKey` tags).
fn list_strategy(field: &str) -> ListStrategy {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "secrets"
        | "conditions"
        | "resourceClaims" => {
            if field == "conditions" {
                ListStrategy::MergeByKey("type")
            } else {
                ListStrategy::MergeByKey("name")
            }
        }
        "volumeMounts" => ListStrategy::MergeByKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeByKey("devicePath"),
        "ports" => ListStrategy::MergeByKey("containerPort"),
        "ownerReferences" => ListStrategy::MergeByKey("uid"),
        "hostAliases" => ListStrategy::MergeByKey("ip"),
        "finalizers" => ListStrategy::Union,
        _ => ListStrategy::Replace,
    }
}

/// Removes `$`-directives from a value (they are instructions, never stored).
fn clean(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), clean(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(clean).collect()),
        other => other.clone(),
    }
}

/// Applies a strategic merge patch: a merge patch in which the built-in lists that have a merge key
/// (containers, env, volumes, volumeMounts, ports, ownerReferences, ...) merge element-wise and
/// `finalizers` merge as a set. Directives: `$patch: replace|delete` on maps and list elements,
/// `$deleteFromPrimitiveList/<field>`; `$setElementOrder/*` and `$retainKeys` are ignored.
pub fn strategic(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = clean(patch);
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = clean(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else { return };
    for (key, value) in patch_map {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(remove)) = (target_map.get_mut(field), value) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        match value {
            Value::Null => {
                target_map.remove(key);
            }
            Value::Object(inner) if inner.get("$patch").and_then(Value::as_str) == Some("delete") => {
                target_map.remove(key);
            }
            Value::Object(_) => strategic(target_map.entry(key.clone()).or_insert(Value::Null), value),
            Value::Array(items) => {
                let existing = target_map.get_mut(key).and_then(Value::as_array_mut);
                match (list_strategy(key), existing) {
                    (ListStrategy::MergeByKey(merge_key), Some(list)) => merge_list(list, items, merge_key),
                    (ListStrategy::Union, Some(list)) => {
                        for item in items {
                            if !list.contains(item) {
                                list.push(item.clone());
                            }
                        }
                    }
                    _ => {
                        let items: Vec<Value> = items
                            .iter()
                            .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"))
                            .map(clean)
                            .collect();
                        target_map.insert(key.clone(), Value::Array(items));
                    }
                }
            }
            other => {
                target_map.insert(key.clone(), other.clone());
            }
        }
    }
}

fn merge_list(list: &mut Vec<Value>, items: &[Value], merge_key: &str) {
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *list = items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .map(clean)
            .collect();
        return;
    }
    for item in items {
        let key = item.get(merge_key);
        let position = key.and_then(|k| list.iter().position(|e| e.get(merge_key) == Some(k)));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                list.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic(&mut list[i], item),
            (None, false) => list.push(clean(item)),
        }
    }
}

/// A leaf of an applied configuration: a path and its value (scalars and lists are leaves; lists
/// are atomic).
fn leaves(value: &Value, path: &mut Vec<String>, out: &mut BTreeMap<Vec<String>, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                path.push(k.clone());
                leaves(v, path, out);
                path.pop();
            }
        }
        other => {
            out.insert(path.clone(), other.clone());
        }
    }
}

fn config_leaves(config: &Value) -> BTreeMap<Vec<String>, Value> {
    let mut out = BTreeMap::new();
    let mut path = Vec::new();
    leaves(config, &mut path, &mut out);
    // apiVersion/kind/name/namespace identify the object; they are not owned fields.
    out.retain(|p, _| {
        let p: Vec<&str> = p.iter().map(String::as_str).collect();
        !matches!(
            p.as_slice(),
            ["apiVersion"]
                | ["kind"]
                | ["metadata", "name"]
                | ["metadata", "namespace"]
                | ["metadata", "resourceVersion"]
                | ["metadata", "managedFields", ..]
                | ["metadata", "uid"]
                | ["metadata", "creationTimestamp"]
        )
    });
    out
}

fn remove_path(target: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = target;
    for p in parents {
        match cur.get_mut(p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(map) = cur.as_object_mut() {
        map.remove(last);
    }
}

fn get_path<'a>(target: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(target, |cur, p| cur.get(p))
}

fn deep_merge(target: &mut Value, config: &Value) {
    match (target, config) {
        (Value::Object(t), Value::Object(c)) => {
            for (k, v) in c {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => deep_merge(existing, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, c) => *t = c.clone(),
    }
}

/// A field-manager conflict of server-side apply.
#[derive(Clone, Debug, PartialEq)]
pub struct ApplyConflict {
    /// The manager that owns the field.
    pub manager: String,
    /// The field, as `.a.b`.
    pub field: String,
}

/// Server-side apply with simplified ownership.
///
/// Each field manager owns the leaves of the configuration it last applied (lists are atomic).
/// Applying: fields that another manager applied with a different value conflict unless `force`
/// (forcing moves ownership to the applier); fields this manager applied before but left out now
/// are removed unless another manager also applied them; then the configuration is merged into
/// the live object. Writes that are not applies (create, update, patch) own nothing.
///
/// `managers` holds every manager's last applied configuration and is updated in place.
pub fn apply(
    live: &Value,
    config: &Value,
    manager: &str,
    managers: &mut BTreeMap<String, Value>,
    force: bool,
) -> Result<Value, Vec<ApplyConflict>> {
    let new_leaves = config_leaves(config);
    let mut conflicts = Vec::new();
    for (other, other_config) in managers.iter() {
        if other == manager {
            continue;
        }
        let theirs = config_leaves(other_config);
        for (path, value) in &new_leaves {
            let overlapping = theirs
                .iter()
                .find(|(p, _)| p.starts_with(path) || path.starts_with(p));
            if let Some((p, v)) = overlapping
                && (p != path || v != value)
            {
                conflicts.push(ApplyConflict {
                    manager: other.clone(),
                    field: format!(".{}", path.join(".")),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    if force {
        // Ownership moves to the applier: drop the overlapping fields from the others' configs.
        for (other, other_config) in managers.iter_mut() {
            if other == manager {
                continue;
            }
            let theirs = config_leaves(other_config);
            for path in theirs.keys() {
                if new_leaves
                    .keys()
                    .any(|p| p.starts_with(path) || path.starts_with(p))
                {
                    remove_path(other_config, path);
                }
            }
        }
    }
    let mut result = live.clone();
    if let Some(previous) = managers.get(manager) {
        for path in config_leaves(previous).keys() {
            let still_applied = new_leaves
                .keys()
                .any(|p| p.starts_with(path) || path.starts_with(p));
            let owned_by_other = managers
                .iter()
                .filter(|(m, _)| m.as_str() != manager)
                .any(|(_, c)| get_path(c, path).is_some());
            if !still_applied && !owned_by_other {
                remove_path(&mut result, path);
            }
        }
    }
    deep_merge(&mut result, config);
    managers.insert(manager.to_string(), config.clone());
    Ok(result)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_patch_test_of_null_matches_a_missing_path() {
        let mut obj = json!({"metadata": {"name": "a"}});
        let patch = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}
        ]);
        json(&mut obj, &patch).unwrap();
        assert_eq!(obj["metadata"]["finalizers"], json!(["x"]));
        // Now present: a test of null fails, and nothing of the patch is applied.
        let again = json!([
            {"op": "replace", "path": "/metadata/name", "value": "b"},
            {"op": "test", "path": "/metadata/finalizers", "value": null}
        ]);
        assert!(json(&mut obj, &again).is_err());
        assert_eq!(obj["metadata"]["name"], "a");
    }

    #[test]
    fn strategic_merges_containers_by_name_and_finalizers_as_a_set() {
        let mut pod = json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [
            {"name": "app", "image": "v1", "env": [{"name": "A", "value": "1"}]},
            {"name": "side", "image": "s"}
        ]}});
        strategic(
            &mut pod,
            &json!({"metadata": {"finalizers": ["b"]}, "spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [
                {"name": "app", "image": "v2", "env": [{"name": "B", "value": "2"}]},
                {"name": "side", "$patch": "delete"}
            ]}}),
        );
        assert_eq!(
            pod,
            json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"containers": [
                {"name": "app", "image": "v2", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
            ]}})
        );
    }

    #[test]
    fn apply_owns_fields_and_detects_conflicts() {
        let mut managers = BTreeMap::new();
        let live = json!({"data": {"a": "1", "b": "2"}});
        let applied = apply(
            &live,
            &json!({"data": {"a": "x", "c": "3"}}),
            "one",
            &mut managers,
            false,
        );
        assert_eq!(applied, Ok(json!({"data": {"a": "x", "b": "2", "c": "3"}})));
        let live = applied.unwrap_or_default();
        // Dropping "c" from the config removes it; "b" was never applied by "one" and stays.
        let applied = apply(&live, &json!({"data": {"a": "x"}}), "one", &mut managers, false);
        assert_eq!(applied, Ok(json!({"data": {"a": "x", "b": "2"}})));
        let live = applied.unwrap_or_default();
        let conflict = apply(&live, &json!({"data": {"a": "y"}}), "two", &mut managers, false);
        assert_eq!(
            conflict,
            Err(vec![ApplyConflict {
                manager: "one".into(),
                field: ".data.a".into()
            }])
        );
        // Same value: shared ownership, no conflict.
        assert!(apply(&live, &json!({"data": {"a": "x"}}), "two", &mut managers, false).is_ok());
        let forced = apply(&live, &json!({"data": {"a": "z"}}), "two", &mut managers, true);
        assert_eq!(forced, Ok(json!({"data": {"a": "z", "b": "2"}})));
        assert_eq!(managers.get("one"), Some(&json!({"data": {}})));
    }
}
