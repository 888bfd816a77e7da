#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The authorizer against the semantics of the Kubernetes RBAC documentation: the table of
//! `fixtures/cases.yaml` over the cluster of `fixtures/cluster.yaml` plus idbind's generated RBAC.

mod common;

use idbind_model::{AllowedSubject, ClientId};
use idbind_rbac::{Authorizer, Decision, NonResourceAttributes, ResourceAttributes, UserInfo, generate};
use serde::Deserialize;

/// One row of `fixtures/cases.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Case {
    case: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    groups: Vec<String>,
    /// `namespace/name`: the user and groups the API server gives that service account.
    service_account: Option<String>,
    verb: String,
    #[serde(default)]
    api_group: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    subresource: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    /// A non-resource URL; the resource fields are then unused.
    path: Option<String>,
    allowed: bool,
}

impl Case {
    fn user(&self) -> UserInfo {
        match self.service_account.as_deref() {
            Some(sa) => {
                let (namespace, name) = sa.split_once('/').expect("serviceAccount is namespace/name");
                UserInfo::service_account(namespace, name)
            }
            None => UserInfo::new(&self.user).with_groups(&self.groups),
        }
    }

    fn evaluate(&self, authorizer: &Authorizer) -> Decision {
        let user = self.user();
        match &self.path {
            Some(path) => authorizer.can_non_resource(&user, &NonResourceAttributes::new(&self.verb, path)),
            None => authorizer.can(&user, &self.resource_attributes()),
        }
    }

    fn resource_attributes(&self) -> ResourceAttributes {
        ResourceAttributes::new(&self.verb, &self.api_group, &self.resource)
            .with_subresource(&self.subresource)
            .named(&self.name)
            .in_namespace(&self.namespace)
    }
}

fn cases() -> Vec<Case> {
    serde_saphyr::from_str(include_str!("fixtures/cases.yaml")).expect("cases.yaml is a list of cases")
}

/// The example cluster plus idbind's RBAC for the two identities of `cases.yaml`.
fn authorizer() -> Authorizer {
    let allowed_a = [
        AllowedSubject::parse("team-a/api").unwrap(),
        AllowedSubject::parse("team-b").unwrap(),
    ];
    let allowed_b = [AllowedSubject::parse("team-c/worker").unwrap()];
    let client_a = ClientId::parse("aaaaaaaa-0000-0000-0000-000000000001").unwrap();
    let client_b = ClientId::parse("bbbbbbbb-0000-0000-0000-000000000002").unwrap();
    common::fixture_snapshot()
        .with_generated(generate(&client_a, &allowed_a))
        .with_generated(generate(&client_b, &allowed_b))
        .authorizer()
}

fn core(verb: &str, resource: &str, namespace: &str) -> ResourceAttributes {
    ResourceAttributes::new(verb, "", resource).in_namespace(namespace)
}

#[test]
fn kubernetes_rbac_semantics_table() {
    let authorizer = authorizer();
    let cases = cases();
    assert!(cases.len() >= 30, "the table has {} cases", cases.len());
    assert!(
        cases.iter().filter(|c| !c.allowed).count() >= 15,
        "the table needs denials"
    );
    let mut failures = Vec::new();
    for case in &cases {
        let decision = case.evaluate(&authorizer);
        if decision.allowed != case.allowed {
            failures.push(format!(
                "{}: expected allowed={}, got {decision:?}",
                case.case, case.allowed
            ));
        } else if decision.allowed && !decision.reason.starts_with("RBAC: allowed by ") {
            failures.push(format!("{}: allowed without a reason: {decision:?}", case.case));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn allow_reasons_name_the_binding_role_and_subject_like_kubernetes() {
    let authorizer = authorizer();
    let reason = |user: &UserInfo, request: &ResourceAttributes| authorizer.can(user, request).reason;
    assert_eq!(
        reason(&UserInfo::new("jane"), &core("get", "pods", "default")),
        r#"RBAC: allowed by RoleBinding "read-pods/default" of Role "pod-reader" to User "jane""#
    );
    assert_eq!(
        reason(
            &UserInfo::new("mia").with_groups(["manager"]),
            &core("get", "secrets", "prod")
        ),
        r#"RBAC: allowed by ClusterRoleBinding "read-secrets-global" of ClusterRole "secret-reader" to Group "manager""#
    );
    assert_eq!(
        reason(
            &UserInfo::service_account("ci", "builder"),
            &core("get", "pods", "ci")
        ),
        r#"RBAC: allowed by RoleBinding "builder-reads-pods/ci" of ClusterRole "pod-and-pod-logs-reader" to ServiceAccount "builder/ci""#
    );
}

#[test]
fn denials_report_the_missing_roles_of_the_users_bindings() {
    let authorizer = authorizer();
    let ghost = authorizer.can(&UserInfo::new("ghost"), &core("get", "pods", "default"));
    assert!(!ghost.allowed);
    assert_eq!(
        ghost.reason,
        r#"RBAC: [ClusterRoleBinding "dangling": ClusterRole "does-not-exist" not found, RoleBinding "dangling-role/default": Role "pod-reader-typo" not found]"#
    );
    let cluster_wide = authorizer.can(&UserInfo::new("ghost"), &core("get", "pods", ""));
    assert_eq!(
        cluster_wide.reason,
        r#"RBAC: ClusterRoleBinding "dangling": ClusterRole "does-not-exist" not found"#
    );
    let jane = authorizer.can(&UserInfo::new("jane"), &core("delete", "pods", "default"));
    assert_eq!(
        jane,
        Decision {
            allowed: false,
            reason: String::new()
        }
    );
}

#[test]
fn evaluation_does_not_depend_on_the_order_of_the_lists() {
    let mut snapshot = common::fixture_snapshot();
    let forward = Authorizer::new(&snapshot);
    snapshot.cluster_roles.reverse();
    snapshot.cluster_role_bindings.reverse();
    snapshot.roles.reverse();
    snapshot.role_bindings.reverse();
    let backward = Authorizer::new(&snapshot);
    for case in cases() {
        assert_eq!(case.evaluate(&forward), case.evaluate(&backward), "{}", case.case);
    }
    assert_eq!(
        forward.cluster_role_rules("crd-reader"),
        backward.cluster_role_rules("crd-reader")
    );
}
