//! Loads the example cluster of `tests/fixtures/cluster.yaml`.

use idbind_rbac::RbacSnapshot;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The RBAC objects of `tests/fixtures/cluster.yaml`.
pub fn fixture_snapshot() -> RbacSnapshot {
    let yaml = include_str!("../fixtures/cluster.yaml");
    let documents: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("fixture is valid YAML");
    let mut snapshot = RbacSnapshot::default();
    for document in documents {
        match document["kind"].as_str() {
            Some("ClusterRole") => snapshot.cluster_roles.push(object(document)),
            Some("ClusterRoleBinding") => snapshot.cluster_role_bindings.push(object(document)),
            Some("Role") => snapshot.roles.push(object(document)),
            Some("RoleBinding") => snapshot.role_bindings.push(object(document)),
            other => panic!("unexpected kind {other:?}"),
        }
    }
    snapshot
}

fn object<T: DeserializeOwned>(document: Value) -> T {
    let name = format!("{} {}", document["kind"], document["metadata"]["name"]);
    serde_json::from_value(document).unwrap_or_else(|err| panic!("{name}: {err}"))
}
