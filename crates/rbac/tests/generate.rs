#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The generated ClusterRole and ClusterRoleBinding: exact objects, order, de-duplication.

use idbind_model::{AllowedSubject, ClientId};
use idbind_rbac::{GeneratedRbac, generate, normalize_subjects};
use serde_json::{Value, json};

const CLIENT_ID: &str = "6f1e1bd1-3c43-4b8a-8f5e-0d6c2a7b9e10";

fn client_id() -> ClientId {
    ClientId::parse(CLIENT_ID).unwrap()
}

fn subjects(list: &[&str]) -> Vec<AllowedSubject> {
    list.iter().map(|s| AllowedSubject::parse(s).unwrap()).collect()
}

fn binding_subjects(generated: &GeneratedRbac) -> Value {
    serde_json::to_value(&generated.cluster_role_binding).unwrap()["subjects"].clone()
}

#[test]
fn cluster_role_is_exactly_the_aks_shape() {
    let generated = generate(&client_id(), &subjects(&["team-a"]));
    assert_eq!(
        serde_json::to_value(&generated.cluster_role).unwrap(),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {
                "name": "use-mi-6f1e1bd1-3c43-4b8a-8f5e-0d6c2a7b9e10",
                "labels": {
                    "app.kubernetes.io/managed-by": "idbind",
                    "idbind.dev/client-id": CLIENT_ID,
                },
            },
            "rules": [{
                "apiGroups": ["cid.wi.aks.azure.com"],
                "resources": [CLIENT_ID],
                "verbs": ["use-managed-identity"],
            }],
        })
    );
}

#[test]
fn cluster_role_binding_is_exact() {
    let generated = generate(&client_id(), &subjects(&["team-b/api", "team-a"]));
    assert_eq!(
        serde_json::to_value(&generated.cluster_role_binding).unwrap(),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {
                "name": "use-mi-6f1e1bd1-3c43-4b8a-8f5e-0d6c2a7b9e10",
                "labels": {
                    "app.kubernetes.io/managed-by": "idbind",
                    "idbind.dev/client-id": CLIENT_ID,
                },
            },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "use-mi-6f1e1bd1-3c43-4b8a-8f5e-0d6c2a7b9e10",
            },
            "subjects": [
                { "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:serviceaccounts:team-a" },
                { "apiGroup": "", "kind": "ServiceAccount", "name": "api", "namespace": "team-b" },
            ],
        })
    );
}

#[test]
fn client_id_is_written_in_lower_case_whatever_the_input() {
    let generated = generate(&ClientId::parse(&CLIENT_ID.to_uppercase()).unwrap(), &[]);
    assert_eq!(generated, generate(&client_id(), &[]));
}

#[test]
fn output_does_not_depend_on_input_order_or_duplicates() {
    let list = [
        "team-b/api",
        "team-a/web",
        "team-c",
        "team-a/api",
        "team-b/api",
        "team-c",
    ];
    let expected = generate(&client_id(), &subjects(&list));
    let mut reversed = list;
    reversed.reverse();
    assert_eq!(generate(&client_id(), &subjects(&reversed)), expected);
    let mut rotated = list;
    rotated.rotate_left(2);
    assert_eq!(generate(&client_id(), &subjects(&rotated)), expected);
    assert_eq!(
        binding_subjects(&expected),
        json!([
            { "apiGroup": "", "kind": "ServiceAccount", "name": "api", "namespace": "team-a" },
            { "apiGroup": "", "kind": "ServiceAccount", "name": "web", "namespace": "team-a" },
            { "apiGroup": "", "kind": "ServiceAccount", "name": "api", "namespace": "team-b" },
            { "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:serviceaccounts:team-c" },
        ])
    );
}

#[test]
fn a_whole_namespace_makes_its_service_accounts_redundant() {
    let normalized = normalize_subjects(&subjects(&["team-a/api", "team-a", "team-b/api", "team-a/web"]));
    assert_eq!(normalized, subjects(&["team-a", "team-b/api"]));
    let generated = generate(&client_id(), &subjects(&["team-a/api", "team-a", "team-b/api"]));
    assert_eq!(
        binding_subjects(&generated),
        json!([
            { "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:serviceaccounts:team-a" },
            { "apiGroup": "", "kind": "ServiceAccount", "name": "api", "namespace": "team-b" },
        ])
    );
}

#[test]
fn no_subjects_gives_an_explicitly_empty_binding() {
    let generated = generate(&client_id(), &[]);
    assert_eq!(binding_subjects(&generated), json!([]));
    assert_eq!(generated.cluster_role.rules.as_ref().map(Vec::len), Some(1));
}
