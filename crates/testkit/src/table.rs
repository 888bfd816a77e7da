//! `meta.k8s.io/v1` Tables (what `kubectl get` asks for) and PartialObjectMetadata views.

use serde_json::{Value, json};

use crate::jsonpath;
use crate::registry::{PrinterColumn, ResourceType};

/// What an `Accept` header asks the object to be rendered as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rendering {
    /// The object itself.
    Object,
    /// A `Table`.
    Table,
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata,
}

impl Rendering {
    /// The rendering asked for by an `Accept` header (first acceptable alternative wins).
    pub fn from_accept(accept: &str) -> Self {
        for part in accept.split(',') {
            let params: Vec<&str> = part.split(';').map(str::trim).collect();
            let is_meta = params.contains(&"g=meta.k8s.io");
            if is_meta && params.contains(&"as=Table") {
                return Self::Table;
            }
            if is_meta && params.iter().any(|p| p.starts_with("as=PartialObjectMetadata")) {
                return Self::Metadata;
            }
            if params
                .first()
                .is_some_and(|m| *m == "application/json" || *m == "*/*" || *m == "application/yaml")
            {
                return Self::Object;
            }
        }
        Self::Object
    }
}

/// Go's `duration.HumanDuration`, as kubectl shows ages.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = hours / 24 % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn age_of(timestamp: &str) -> String {
    match timestamp.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".to_string(),
    }
}

/// Columns the real server computes for built-in kinds.
fn computed(name: &str, object: &Value) -> Value {
    let count = |v: &Value| {
        v.as_object()
            .map(|m| m.len())
            .or_else(|| v.as_array().map(Vec::len))
            .unwrap_or(0)
    };
    match name {
        "#data" => json!(count(&object["data"]) + count(&object["binaryData"])),
        "#secrets" => json!(count(&object["secrets"])),
        "#pod-ready" => {
            let statuses = object["status"]["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let ready = statuses
                .iter()
                .filter(|s| s["ready"].as_bool() == Some(true))
                .count();
            json!(format!("{ready}/{}", count(&object["spec"]["containers"])))
        }
        "#pod-restarts" => {
            let statuses = object["status"]["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            json!(
                statuses
                    .iter()
                    .filter_map(|s| s["restartCount"].as_i64())
                    .sum::<i64>()
                    .to_string()
            )
        }
        _ => Value::Null,
    }
}

fn cell(column: &PrinterColumn, object: &Value) -> Value {
    if column.json_path.starts_with('#') {
        return computed(&column.json_path, object);
    }
    let found = jsonpath::evaluate(&column.json_path, object).unwrap_or_default();
    if found.is_empty() {
        return Value::Null;
    }
    if column.type_ == "date" {
        return found[0].as_str().map(|s| json!(age_of(s))).unwrap_or(Value::Null);
    }
    if found.len() > 1 {
        let parts: Vec<String> = found
            .iter()
            .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
            .collect();
        return json!(parts.join(", "));
    }
    match (column.type_.as_str(), found[0]) {
        ("string", Value::String(_))
        | ("integer", Value::Number(_))
        | ("number", Value::Number(_))
        | ("boolean", Value::Bool(_)) => found[0].clone(),
        ("string", other) => json!(other.to_string()),
        (_, other) => other.clone(),
    }
}

/// `PartialObjectMetadata` of an object.
pub fn partial_metadata(object: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]})
}

fn column_definitions(rt: &ResourceType) -> Vec<Value> {
    let mut defs = vec![json!({
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
        "priority": 0,
    })];
    for c in &rt.columns {
        defs.push(json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}));
    }
    defs
}

/// A Table of objects; `include_object` is `None`, `Metadata` (default) or `Object`.
pub fn table(
    rt: &ResourceType,
    objects: &[Value],
    resource_version: &str,
    include_object: &str,
    list_meta: Option<&Value>,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            cells.extend(rt.columns.iter().map(|c| cell(c, o)));
            let mut row = json!({"cells": cells});
            match include_object {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => row["object"] = partial_metadata(o),
            }
            row
        })
        .collect();
    let mut metadata = json!({"resourceVersion": resource_version});
    if let Some(list_meta) = list_meta {
        for key in ["continue", "remainingItemCount"] {
            if let Some(v) = list_meta.get(key) {
                metadata[key] = v.clone();
            }
        }
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions(rt),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3600 * 5 + 60), "5h1m");
        assert_eq!(human_duration(3600 * 30), "30h");
        assert_eq!(human_duration(86400 * 3), "3d");
    }

    #[test]
    fn accept_headers() {
        assert_eq!(
            Rendering::from_accept(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
            ),
            Rendering::Table
        );
        assert_eq!(
            Rendering::from_accept("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
            Rendering::Metadata
        );
        assert_eq!(Rendering::from_accept("application/json, */*"), Rendering::Object);
    }
}
