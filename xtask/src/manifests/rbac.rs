//! Service accounts and least-privilege RBAC for the controller and the proxy.
//!
//! Every rule below is something the binaries do; `xtask/tests/deploy.rs` checks each request they
//! make against these objects with `idbind-rbac` (and a few they must not be able to make).
//! Kubernetes cannot restrict `create` or `delete` by name, nor ClusterRoles by a name prefix; the
//! [`super::policy`] ValidatingAdmissionPolicy closes those gaps.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::meta::Owner;
use super::names::*;
use super::{CONTROLLER_OWNER, PROXY_OWNER};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
/// Kubernetes records Events about cluster-scoped objects (IdentityBindings) in `default`.
pub const EVENTS_NAMESPACE: &str = "default";

/// The API group of IdentityBindings.
pub fn binding_group() -> String {
    <idbind_model::IdentityBinding as kube::Resource>::group(&()).into_owned()
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

fn named(mut rule: PolicyRule, names: &[&str]) -> PolicyRule {
    rule.resource_names = Some(names.iter().map(|x| (*x).to_owned()).collect());
    rule
}

/// The controller's cluster-wide rules.
pub fn controller_cluster_rules() -> Vec<PolicyRule> {
    let group = binding_group();
    let ib = group.as_str();
    vec![
        // The reconciler: watches bindings, patches finalizers and status. Owner references on
        // the generated RBAC do not set blockOwnerDeletion, so `identitybindings/finalizers` is
        // not needed.
        rule(&[ib], &["identitybindings"], &["get", "list", "watch", "patch"]),
        rule(&[ib], &["identitybindings/status"], &["patch"]),
        // Generated RBAC `use-mi-<clientId>` (names unknown in advance; the admission policy
        // limits them to that prefix and shape). The ClusterRoleBindings are watched (owned).
        rule(
            &[RBAC_GROUP],
            &["clusterroles"],
            &["get", "create", "update", "delete"],
        ),
        rule(
            &[RBAC_GROUP],
            &["clusterrolebindings"],
            &["get", "list", "watch", "create", "update", "delete"],
        ),
        // RBAC escalation prevention: to create a ClusterRole granting `use-managed-identity` on
        // a client id (and bind it), the creator must hold that permission itself. Holding it
        // on every client id adds nothing the controller lacks: it owns the signing keys.
        rule(
            &[idbind_model::RBAC_API_GROUP],
            &["*"],
            &[idbind_model::RBAC_VERB],
        ),
        // The MutatingWebhookConfiguration: created if missing, its clientConfig kept in sync.
        rule(
            &["admissionregistration.k8s.io"],
            &["mutatingwebhookconfigurations"],
            &["create"],
        ),
        named(
            rule(
                &["admissionregistration.k8s.io"],
                &["mutatingwebhookconfigurations"],
                &["get", "update"],
            ),
            &[WEBHOOK_CONFIGURATION],
        ),
        // The webhook reads the pod's service account (client-id and tenant annotations).
        rule(&[""], &["serviceaccounts"], &["get"]),
        // The proxy trust bundle goes into every namespace, as kube-root-ca.crt does.
        rule(&[""], &["namespaces"], &["list", "watch"]),
        rule(&[""], &["configmaps"], &["create"]),
        // `list` by name works with a `metadata.name` field selector, which the controller uses.
        named(
            rule(&[""], &["configmaps"], &["list", "update"]),
            &[PROXY_CA_CONFIGMAP],
        ),
    ]
}

/// The controller's rules in its own namespace.
pub fn controller_namespace_rules() -> Vec<PolicyRule> {
    vec![
        rule(&[""], &["secrets"], &["create"]),
        named(
            rule(&[""], &["secrets"], &["get", "list", "watch", "update"]),
            &[
                SIGNING_KEY_SECRET,
                PROXY_CA_SECRET,
                PROXY_TLS_SECRET,
                WEBHOOK_SECRET,
            ],
        ),
        rule(&["coordination.k8s.io"], &["leases"], &["create"]),
        named(
            rule(&["coordination.k8s.io"], &["leases"], &["get", "update"]),
            &[LEASE],
        ),
    ]
}

/// The controller's rules where Events about IdentityBindings go.
pub fn controller_event_rules() -> Vec<PolicyRule> {
    vec![rule(&["events.k8s.io"], &["events"], &["create", "patch"])]
}

/// The proxy's rules: authenticate and authorize callers, follow the bindings.
pub fn proxy_cluster_rules() -> Vec<PolicyRule> {
    vec![
        rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
        rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
        rule(
            &[binding_group().as_str()],
            &["identitybindings"],
            &["get", "list", "watch"],
        ),
    ]
}

fn subject(service_account: &str) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".to_owned(),
        name: service_account.to_owned(),
        namespace: Some(NAMESPACE.to_owned()),
        api_group: None,
    }]
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some(RBAC_GROUP.to_owned()),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

/// Everything RBAC for one component: service account, cluster role and binding, and optional
/// namespaced roles (namespace, name, rules).
pub struct ComponentRbac {
    /// The service account.
    pub service_account: ServiceAccount,
    /// Its cluster role.
    pub cluster_role: ClusterRole,
    /// The cluster role binding.
    pub cluster_role_binding: ClusterRoleBinding,
    /// Namespaced roles with their bindings.
    pub roles: Vec<(Role, RoleBinding)>,
}

fn component(
    owner: Owner,
    cluster_rules: Vec<PolicyRule>,
    roles: Vec<(&str, String, Vec<PolicyRule>)>,
) -> ComponentRbac {
    let name = owner.name;
    ComponentRbac {
        service_account: ServiceAccount {
            metadata: owner.meta(NAMESPACE, name),
            ..ServiceAccount::default()
        },
        cluster_role: ClusterRole {
            metadata: owner.cluster_meta(name),
            rules: Some(cluster_rules),
            aggregation_rule: None,
        },
        cluster_role_binding: ClusterRoleBinding {
            metadata: owner.cluster_meta(name),
            role_ref: role_ref("ClusterRole", name),
            subjects: Some(subject(name)),
        },
        roles: roles
            .into_iter()
            .map(|(namespace, role_name, rules)| {
                (
                    Role {
                        metadata: owner.meta(namespace, &role_name),
                        rules: Some(rules),
                    },
                    RoleBinding {
                        metadata: owner.meta(namespace, &role_name),
                        role_ref: role_ref("Role", &role_name),
                        subjects: Some(subject(name)),
                    },
                )
            })
            .collect(),
    }
}

/// The controller's service account and RBAC.
pub fn controller() -> ComponentRbac {
    component(
        CONTROLLER_OWNER,
        controller_cluster_rules(),
        vec![
            (NAMESPACE, CONTROLLER.to_owned(), controller_namespace_rules()),
            (
                EVENTS_NAMESPACE,
                format!("{CONTROLLER}-events"),
                controller_event_rules(),
            ),
        ],
    )
}

/// The proxy's service account and RBAC.
pub fn proxy() -> ComponentRbac {
    component(PROXY_OWNER, proxy_cluster_rules(), Vec::new())
}
