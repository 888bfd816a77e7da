//! The default RBAC objects kube-apiserver creates at start (its "bootstrap policy"), limited to
//! those that matter to clients of the emulator: discovery, `kubectl auth can-i` for every user,
//! public health and version information, and service-account issuer discovery.

use idbind_rbac::RbacSnapshot;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::user::{SERVICE_ACCOUNTS_GROUP, SYSTEM_AUTHENTICATED, SYSTEM_MASTERS, SYSTEM_UNAUTHENTICATED};

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| (*s).to_owned()).collect())
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(
            [(
                "kubernetes.io/bootstrapping".to_owned(),
                "rbac-defaults".to_owned(),
            )]
            .into(),
        ),
        annotations: Some(
            [(
                "rbac.authorization.kubernetes.io/autoupdate".to_owned(),
                "true".to_owned(),
            )]
            .into(),
        ),
        ..ObjectMeta::default()
    }
}

fn role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta(name),
        rules: Some(rules),
        ..ClusterRole::default()
    }
}

fn binding(name: &str, groups: &[&str]) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: name.to_owned(),
        },
        subjects: Some(
            groups
                .iter()
                .map(|g| Subject {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Group".into(),
                    name: (*g).to_owned(),
                    namespace: None,
                })
                .collect(),
        ),
    }
}

fn urls(paths: &[&str]) -> PolicyRule {
    PolicyRule {
        non_resource_urls: strings(paths),
        verbs: vec!["get".into()],
        ..PolicyRule::default()
    }
}

fn create(group: &str, resources: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: strings(&[group]),
        resources: strings(resources),
        verbs: vec!["create".into()],
        ..PolicyRule::default()
    }
}

/// The bootstrap ClusterRoles and ClusterRoleBindings: `cluster-admin` (bound to
/// `system:masters`), `system:discovery` and `system:basic-user` (bound to
/// `system:authenticated`), `system:public-info-viewer` (authenticated and unauthenticated) and
/// `system:service-account-issuer-discovery` (bound to `system:serviceaccounts`). The server
/// stores them at start so they can be listed, like any other RBAC object.
pub fn bootstrap_rbac() -> RbacSnapshot {
    let cluster_roles = vec![
        role(
            "cluster-admin",
            vec![
                PolicyRule {
                    api_groups: strings(&["*"]),
                    resources: strings(&["*"]),
                    verbs: vec!["*".into()],
                    ..PolicyRule::default()
                },
                PolicyRule {
                    non_resource_urls: strings(&["*"]),
                    verbs: vec!["*".into()],
                    ..PolicyRule::default()
                },
            ],
        ),
        role(
            "system:discovery",
            vec![urls(&[
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ])],
        ),
        role(
            "system:basic-user",
            vec![
                create(
                    "authorization.k8s.io",
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                create("authentication.k8s.io", &["selfsubjectreviews"]),
            ],
        ),
        role(
            "system:public-info-viewer",
            vec![urls(&["/healthz", "/livez", "/readyz", "/version", "/version/"])],
        ),
        role(
            "system:service-account-issuer-discovery",
            vec![urls(&[
                "/.well-known/openid-configuration",
                "/.well-known/openid-configuration/",
                "/openid/v1/jwks",
                "/openid/v1/jwks/",
            ])],
        ),
    ];
    let cluster_role_bindings = vec![
        binding("cluster-admin", &[SYSTEM_MASTERS]),
        binding("system:discovery", &[SYSTEM_AUTHENTICATED]),
        binding("system:basic-user", &[SYSTEM_AUTHENTICATED]),
        binding(
            "system:public-info-viewer",
            &[SYSTEM_AUTHENTICATED, SYSTEM_UNAUTHENTICATED],
        ),
        binding(
            "system:service-account-issuer-discovery",
            &[SERVICE_ACCOUNTS_GROUP],
        ),
    ];
    RbacSnapshot {
        cluster_roles,
        cluster_role_bindings,
        roles: Vec::new(),
        role_bindings: Vec::new(),
    }
}
