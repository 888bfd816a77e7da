//! What particular kinds do on write (the parts of kube-apiserver's per-kind strategies that idbind
//! relies on), and conversions between views.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::meta::{self, NameRule};
use crate::registry::{ResourceType, View};
use crate::status::{ApiError, Cause};

/// How names of a kind are validated.
pub fn name_rule(rt: &ResourceType) -> NameRule {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") | ("", "services") => NameRule::Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

fn invalid(rt: &ResourceType, object: &Value, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid(&rt.group, &rt.kind, meta::name(object), causes)
}

/// Per-kind preparation of a new object (defaults, derived fields, validation), in the view of `rt`.
pub fn prepare_create(rt: &ResourceType, object: &mut Value) -> Result<(), ApiError> {
    if rt.status_subresource
        && let Some(map) = object.as_object_mut()
    {
        map.remove("status");
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => {
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            object["status"] = json!({"phase": "Active"});
            label_namespace(object);
        }
        ("", "pods") => {
            validate_pod(rt, object)?;
            if object["spec"]["serviceAccountName"]
                .as_str()
                .is_none_or(str::is_empty)
            {
                object["spec"]["serviceAccountName"] = json!("default");
            }
            object["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        ("", "secrets") => prepare_secret(rt, object)?,
        ("", "configmaps") => validate_configmap(rt, object)?,
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            validate_binding(rt, object)?;
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => prepare_crd(rt, object)?,
        _ => {}
    }
    Ok(())
}

/// Per-kind preparation of an update (`new` already carries the old system metadata).
pub fn prepare_update(rt: &ResourceType, old: &Value, new: &mut Value) -> Result<(), ApiError> {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => {
            label_namespace(new);
            new["spec"] = old["spec"].clone();
            if new.get("status").is_none() {
                new["status"] = old["status"].clone();
            }
        }
        ("", "pods") => {
            validate_pod(rt, new)?;
            if new["spec"]["serviceAccountName"] != old["spec"]["serviceAccountName"]
                || new["spec"]["containers"].as_array().map(Vec::len)
                    != old["spec"]["containers"].as_array().map(Vec::len)
            {
                return Err(invalid(
                    rt,
                    new,
                    vec![Cause::forbidden(
                        "spec",
                        "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                    )],
                ));
            }
        }
        ("", "secrets") => {
            prepare_secret(rt, new)?;
            immutable_data(rt, old, new)?;
        }
        ("", "configmaps") => {
            validate_configmap(rt, new)?;
            immutable_data(rt, old, new)?;
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            validate_binding(rt, new)?;
            if new["roleRef"] != old["roleRef"] {
                return Err(invalid(
                    rt,
                    new,
                    vec![Cause::invalid(
                        "roleRef",
                        &new["roleRef"],
                        "cannot change roleRef",
                    )],
                ));
            }
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            if new["spec"]["scope"] != old["spec"]["scope"] {
                return Err(invalid(
                    rt,
                    new,
                    vec![Cause::invalid(
                        "spec.scope",
                        &new["spec"]["scope"],
                        "field is immutable",
                    )],
                ));
            }
            prepare_crd(rt, new)?;
        }
        _ => {}
    }
    Ok(())
}

/// Every namespace carries `kubernetes.io/metadata.name: <name>` (set by the apiserver, so
/// namespace selectors can match on it).
fn label_namespace(namespace: &mut Value) {
    let name = meta::name(namespace).to_string();
    let meta_map = meta::metadata_mut(namespace);
    let labels = meta_map.entry("labels").or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    labels["kubernetes.io/metadata.name"] = json!(name);
}

fn validate_pod(rt: &ResourceType, pod: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    match pod["spec"]["containers"].as_array() {
        None => causes.push(Cause::required("spec.containers")),
        Some(containers) if containers.is_empty() => causes.push(Cause::required("spec.containers")),
        Some(containers) => {
            for (i, c) in containers.iter().enumerate() {
                if c["name"].as_str().is_none_or(str::is_empty) {
                    causes.push(Cause::required(format!("spec.containers[{i}].name")));
                }
                if c["image"].as_str().is_none_or(str::is_empty) {
                    causes.push(Cause::required(format!("spec.containers[{i}].image")));
                }
            }
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(rt, pod, causes))
    }
}

/// `stringData` is write-only: merged into `data` (base64) on every write, as the apiserver does.
fn prepare_secret(rt: &ResourceType, secret: &mut Value) -> Result<(), ApiError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(Value::Object(string_data)) = secret.as_object_mut().and_then(|m| m.remove("stringData")) {
        let data = secret
            .as_object_mut()
            .map(|m| m.entry("data").or_insert_with(|| json!({})))
            .filter(|d| d.is_object());
        if let Some(Value::Object(data)) = data {
            for (k, v) in string_data {
                data.insert(k, json!(b64.encode(v.as_str().unwrap_or_default())));
            }
        }
    }
    if secret["type"].as_str().is_none_or(str::is_empty) {
        secret["type"] = json!("Opaque");
    }
    let mut causes = Vec::new();
    for (k, v) in secret["data"].as_object().into_iter().flatten() {
        if v.as_str().is_none_or(|s| b64.decode(s).is_err()) {
            return Err(ApiError::bad_request(format!(
                "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 0 (key {k:?})"
            )));
        }
        if !is_config_key(k) {
            causes.push(Cause::invalid(format!("data[{k}]"), &json!(k), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(rt, secret, causes))
    }
}

fn is_config_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn validate_configmap(rt: &ResourceType, cm: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    for field in ["data", "binaryData"] {
        for (k, v) in cm[field].as_object().into_iter().flatten() {
            if !is_config_key(k) {
                causes.push(Cause::invalid(format!("{field}[{k}]"), &json!(k), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
            }
            if !v.is_string() {
                return Err(ApiError::bad_request(format!(
                    "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal {} into Go struct field ConfigMap.{field} of type string",
                    if v.is_number() { "number" } else { "object" }
                )));
            }
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(rt, cm, causes))
    }
}

fn immutable_data(rt: &ResourceType, old: &Value, new: &Value) -> Result<(), ApiError> {
    if old["immutable"].as_bool() != Some(true) {
        return Ok(());
    }
    if new["data"] != old["data"] || new["binaryData"] != old["binaryData"] {
        return Err(invalid(
            rt,
            new,
            vec![Cause::forbidden(
                "data",
                "field is immutable when `immutable` is set",
            )],
        ));
    }
    if new["immutable"] != old["immutable"] {
        return Err(invalid(
            rt,
            new,
            vec![Cause::forbidden(
                "immutable",
                "field is immutable when `immutable` is set",
            )],
        ));
    }
    Ok(())
}

fn validate_binding(rt: &ResourceType, binding: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let role_ref = &binding["roleRef"];
    if role_ref["name"].as_str().is_none_or(str::is_empty) {
        causes.push(Cause::required("roleRef.name"));
    }
    match role_ref["kind"].as_str() {
        Some("ClusterRole") => {}
        Some("Role") if rt.plural == "rolebindings" => {}
        other => causes.push(Cause::new(
            "FieldValueNotSupported",
            "roleRef.kind",
            format!(
                "Unsupported value: {:?}: supported values: {}",
                other.unwrap_or_default(),
                if rt.plural == "rolebindings" {
                    "\"Role\", \"ClusterRole\""
                } else {
                    "\"ClusterRole\""
                }
            ),
        )),
    }
    if role_ref["apiGroup"].as_str() != Some("rbac.authorization.k8s.io") {
        causes.push(Cause::new(
            "FieldValueNotSupported",
            "roleRef.apiGroup",
            format!(
                "Unsupported value: {:?}: supported values: \"rbac.authorization.k8s.io\"",
                role_ref["apiGroup"].as_str().unwrap_or_default()
            ),
        ));
    }
    for (i, s) in binding["subjects"].as_array().into_iter().flatten().enumerate() {
        if s["name"].as_str().is_none_or(str::is_empty) {
            causes.push(Cause::required(format!("subjects[{i}].name")));
        }
        match s["kind"].as_str() {
            Some("ServiceAccount") => {
                if s["namespace"].as_str().is_none_or(str::is_empty) {
                    causes.push(Cause::required(format!("subjects[{i}].namespace")));
                }
            }
            Some("User" | "Group") => {}
            other => causes.push(Cause::new(
                "FieldValueNotSupported",
                format!("subjects[{i}].kind"),
                format!(
                    "Unsupported value: {:?}: supported values: \"ServiceAccount\", \"User\", \"Group\"",
                    other.unwrap_or_default()
                ),
            )),
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(rt, binding, causes))
    }
}

/// Validates a CRD and sets its status as an established CRD.
fn prepare_crd(rt: &ResourceType, crd: &mut Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let kind = spec["names"]["kind"].as_str().unwrap_or_default();
    if group.is_empty() {
        causes.push(Cause::required("spec.group"));
    } else if !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            &spec["group"],
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural"));
    }
    if kind.is_empty() {
        causes.push(Cause::required("spec.names.kind"));
    }
    if !matches!(spec["scope"].as_str(), Some("Namespaced" | "Cluster")) {
        causes.push(Cause::new(
            "FieldValueNotSupported",
            "spec.scope",
            format!(
                "Unsupported value: {:?}: supported values: \"Cluster\", \"Namespaced\"",
                spec["scope"].as_str().unwrap_or_default()
            ),
        ));
    }
    let expected = format!("{plural}.{group}");
    if meta::name(crd) != expected {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(meta::name(crd)),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::invalid(
            "spec.versions",
            &spec["versions"],
            "must have exactly one version marked as storage version",
        ));
    }
    let storage: Vec<&Value> = versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .collect();
    if !versions.is_empty() && storage.len() != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            &spec["versions"],
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        if v["schema"]["openAPIV3Schema"].is_null() {
            causes.push(Cause::required(format!(
                "spec.versions[{i}].schema.openAPIV3Schema"
            )));
        }
        if v["name"].as_str().is_none_or(str::is_empty) {
            causes.push(Cause::required(format!("spec.versions[{i}].name")));
        }
    }
    if !causes.is_empty() {
        return Err(invalid(rt, crd, causes));
    }
    let mut names = spec["names"].clone();
    if names["singular"].as_str().is_none_or(str::is_empty) {
        names["singular"] = json!(kind.to_lowercase());
    }
    if names["listKind"].as_str().is_none_or(str::is_empty) {
        names["listKind"] = json!(format!("{kind}List"));
    }
    crd["spec"]["names"] = names.clone();
    let now = meta::now();
    let stored = storage.first().map(|v| v["name"].clone()).unwrap_or(Value::Null);
    crd["status"] = json!({
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now}
        ],
        "storedVersions": [stored],
    });
    Ok(())
}

/// Field renames between core/v1 Events (storage) and events.k8s.io/v1 Events.
const EVENT_RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename(object: &Value, to_v1: bool, api_version: &str) -> Value {
    let mut out = object.clone();
    if let Some(map) = out.as_object_mut() {
        for (core, v1) in EVENT_RENAMES {
            let (from, to) = if to_v1 { (core, v1) } else { (v1, core) };
            if let Some(v) = map.remove(*from) {
                map.insert((*to).to_string(), v);
            }
        }
        map.insert("apiVersion".into(), json!(api_version));
        map.insert("kind".into(), json!("Event"));
    }
    out
}

/// Converts an object from the view of `rt` into its storage layout.
pub fn to_storage(rt: &ResourceType, object: &Value, storage_api_version: &str) -> Value {
    match rt.view {
        View::EventsV1 => rename(object, false, "v1"),
        View::Plain => {
            let mut out = object.clone();
            if rt.custom {
                out["apiVersion"] = json!(storage_api_version);
            }
            out
        }
    }
}

/// Converts a stored object into the view of `rt` (including read-time defaulting of custom
/// resources).
pub fn to_view(rt: &ResourceType, object: &Value) -> Value {
    match rt.view {
        View::EventsV1 => rename(object, true, &rt.api_version()),
        View::Plain => {
            let mut out = object.clone();
            if rt.custom {
                out["apiVersion"] = json!(rt.api_version());
                if let Some(schema) = &rt.schema {
                    crate::schema::apply_defaults(&mut out, schema);
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn events_convert_both_ways() {
        let registry = Registry::new();
        let Some(v1) = registry.find("events.k8s.io", "v1", "events") else {
            panic!("events.k8s.io served")
        };
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}, "involvedObject": {"name": "p"}, "message": "hi", "reason": "R"});
        let view = to_view(&v1, &core);
        assert_eq!(view["regarding"]["name"], "p");
        assert_eq!(view["note"], "hi");
        assert_eq!(view["apiVersion"], "events.k8s.io/v1");
        assert_eq!(to_storage(&v1, &view, "v1"), core);
    }

    #[test]
    fn secrets_merge_string_data() {
        let registry = Registry::new();
        let Some(rt) = registry.find("", "v1", "secrets") else {
            panic!("secrets served")
        };
        let mut s = json!({"metadata": {"name": "s"}, "data": {"a": "eA=="}, "stringData": {"b": "y"}});
        assert!(prepare_create(&rt, &mut s).is_ok());
        assert_eq!(s["data"], json!({"a": "eA==", "b": "eQ=="}));
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
        let mut bad = json!({"metadata": {"name": "s"}, "data": {"a": "%%%"}});
        assert_eq!(prepare_create(&rt, &mut bad).map_err(|e| e.code), Err(400));
    }
}
