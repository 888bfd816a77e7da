//! Discovery documents: legacy (`/api`, `/apis`, group and group-version resource lists) and
//! aggregated discovery v2 (`apidiscovery.k8s.io/v2`), built from the registry.

use serde_json::{Value, json};

use crate::registry::{Registry, ResourceType, version_priority};

/// The media type of aggregated discovery v2 responses.
pub const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for aggregated discovery v2.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

/// `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let gv = |v: &String| json!({"groupVersion": format!("{name}/{v}"), "version": v});
    json!({
        "name": name,
        "versions": versions.iter().map(gv).collect::<Vec<_>>(),
        "preferredVersion": versions.first().map(gv).unwrap_or(Value::Null),
    })
}

/// `/apis`.
pub fn api_group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .groups()
        .iter()
        .map(|(name, versions)| group_json(name, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`.
pub fn api_group(registry: &Registry, group: &str) -> Option<Value> {
    let groups = registry.groups();
    let (name, versions) = groups.iter().find(|(g, _)| g == group)?;
    let mut doc = group_json(name, versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn subresource_verbs(name: &str, extra: &[String]) -> Vec<String> {
    if name == "status" {
        vec!["get".into(), "patch".into(), "update".into()]
    } else {
        extra.to_vec()
    }
}

/// `/api/v1` and `/apis/<group>/<version>`.
pub fn api_resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = registry.group_version(group, version);
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in &types {
        let mut r = json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": t.verbs(),
        });
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        resources.push(r);
        for (name, kind, verbs) in subresources(t) {
            let mut s = json!({
                "name": format!("{}/{name}", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if name == "token" {
                s["group"] = json!("authentication.k8s.io");
                s["version"] = json!("v1");
            }
            resources.push(s);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

fn subresources(t: &ResourceType) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    if t.status_subresource {
        out.push((
            "status".to_string(),
            t.kind.clone(),
            subresource_verbs("status", &[]),
        ));
    }
    for (name, kind, verbs) in &t.extra_subresources {
        out.push((name.clone(), kind.clone(), subresource_verbs(name, verbs)));
    }
    out
}

fn aggregated_group(registry: &Registry, group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|version| {
            let resources: Vec<Value> = registry
                .group_version(group, version)
                .iter()
                .map(|t| {
                    let kind = json!({"group": t.group, "version": t.version, "kind": t.kind});
                    let mut r = json!({
                        "resource": t.plural,
                        "responseKind": kind,
                        "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": t.singular,
                        "verbs": t.verbs(),
                    });
                    if !t.short_names.is_empty() {
                        r["shortNames"] = json!(t.short_names);
                    }
                    if !t.categories.is_empty() {
                        r["categories"] = json!(t.categories);
                    }
                    let subs: Vec<Value> = subresources(t)
                        .into_iter()
                        .map(|(name, kind, verbs)| {
                            let (g, v) = if name == "token" { ("authentication.k8s.io", "v1") } else { (t.group.as_str(), t.version.as_str()) };
                            json!({"subresource": name, "responseKind": {"group": g, "version": v, "kind": kind}, "verbs": verbs})
                        })
                        .collect();
                    if !subs.is_empty() {
                        r["subresources"] = json!(subs);
                    }
                    r
                })
                .collect();
            json!({"version": version, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

/// Aggregated discovery for `/api` (the core group).
pub fn aggregated_core(registry: &Registry) -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": [aggregated_group(registry, "", &["v1".to_string()])],
    })
}

/// Aggregated discovery for `/apis`.
pub fn aggregated_apis(registry: &Registry) -> Value {
    let items: Vec<Value> = registry
        .groups()
        .iter()
        .map(|(group, versions)| {
            let mut sorted = versions.clone();
            sorted.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
            aggregated_group(registry, group, &sorted)
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-idbind-emulator",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_list_builtins() {
        let r = Registry::new();
        let core = api_resource_list(&r, "", "v1").unwrap_or_default();
        let names: Vec<&str> = core["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert!(
            names.contains(&"configmaps")
                && names.contains(&"pods/status")
                && names.contains(&"serviceaccounts/token")
        );
        let groups = api_group_list(&r);
        assert!(
            groups["groups"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g["name"] == "rbac.authorization.k8s.io"))
        );
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated("application/json"));
    }
}
