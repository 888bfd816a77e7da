//! OpenAPI v3 documents (`/openapi/v3` and one per group-version), enough for `kubectl explain` and
//! for kubectl to detect server-side field validation. Custom resources carry their CRD schema;
//! built-in kinds a permissive object schema.

use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{Value, json};

use crate::registry::{Behaviour, Registry, ResourceType};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Every group-version key (`api/v1`, `apis/<group>/<version>`).
fn group_versions(registry: &Registry) -> Vec<(String, String)> {
    let mut out = vec![(String::new(), "v1".to_string())];
    for (group, versions) in registry.groups() {
        for version in versions {
            out.push((group.clone(), version));
        }
    }
    out
}

fn schema_name(t: &ResourceType) -> String {
    let group = if t.group.is_empty() {
        "io.k8s.api.core".to_string()
    } else if t.custom {
        t.group.split('.').rev().collect::<Vec<_>>().join(".")
    } else {
        format!("io.k8s.api.{}", t.group.split('.').next().unwrap_or_default())
    };
    format!("{group}.{}.{}", t.version, t.kind)
}

fn kind_schema(t: &ResourceType) -> Value {
    let mut schema = match &t.schema {
        Some(schema) => (**schema).clone(),
        None => json!({
            "type": "object",
            "description": format!("{} (schema not published by the idbind Kubernetes emulator).", t.kind),
            "x-kubernetes-preserve-unknown-fields": true,
        }),
    };
    let props = schema
        .as_object_mut()
        .map(|m| m.entry("properties").or_insert_with(|| json!({})));
    if let Some(Value::Object(props)) = props {
        props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"}));
        props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"}));
        props.insert("metadata".into(), json!({"type": "object", "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata", "x-kubernetes-preserve-unknown-fields": true}));
    }
    schema["x-kubernetes-group-version-kind"] =
        json!([{"group": t.group, "version": t.version, "kind": t.kind}]);
    schema
}

fn operation(t: &ResourceType, action: &str) -> Value {
    let mut params =
        vec![json!({"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}})];
    if matches!(action, "patch" | "put" | "post") {
        params.push(
            json!({"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}}),
        );
        params.push(json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}));
    }
    if action == "patch" {
        params.push(
            json!({"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}}),
        );
    }
    json!({
        "tags": [t.api_version()],
        "operationId": format!("{action}{}", t.kind),
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", schema_name(t))}}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind},
    })
}

/// The document of one group-version, if served.
pub fn group_version_document(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = registry.group_version(group, version);
    if types.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let prefix = format!("/{}", gv_path(group, version));
    for t in &types {
        schemas.insert(schema_name(t), kind_schema(t));
        let collection = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{prefix}/{}", t.plural)
        };
        if t.behaviour == Behaviour::CreateOnly {
            paths.insert(collection, json!({"post": operation(t, "post")}));
            continue;
        }
        paths.insert(
            collection.clone(),
            json!({"get": operation(t, "list"), "post": operation(t, "post")}),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({"get": operation(t, "get"), "put": operation(t, "put"), "patch": operation(t, "patch"), "delete": operation(t, "delete")}),
        );
        if t.status_subresource {
            paths.insert(
                format!("{collection}/{{name}}/status"),
                json!({"get": operation(t, "get"), "put": operation(t, "put"), "patch": operation(t, "patch")}),
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// A stable hash of a document, used in `serverRelativeURL` as the real server does.
pub fn document_hash(doc: &Value) -> String {
    let mut hasher = DefaultHasher::new();
    doc.to_string().hash(&mut hasher);
    format!("{:016X}", hasher.finish())
}

/// `/openapi/v3`: the index of group-version documents.
pub fn index(registry: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    for (group, version) in group_versions(registry) {
        if let Some(doc) = group_version_document(registry, &group, &version) {
            let key = gv_path(&group, &version);
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", document_hash(&doc))}),
            );
        }
    }
    json!({"paths": paths})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_advertise_field_validation() {
        let r = Registry::new();
        let doc = group_version_document(&r, "", "v1").unwrap_or_default();
        let op = &doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "ConfigMap");
        assert!(
            op["parameters"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["name"] == "fieldValidation"))
        );
        assert!(
            index(&r)["paths"]
                .get("apis/rbac.authorization.k8s.io/v1")
                .is_some()
        );
    }
}
