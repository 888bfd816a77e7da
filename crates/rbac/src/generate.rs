//! The AKS-compatible ClusterRole and ClusterRoleBinding granting `use-managed-identity` on one
//! client id.

use std::collections::{BTreeMap, BTreeSet};

use idbind_model::{
    AllowedSubject, CLIENT_ID_LABEL, ClientId, MANAGED_BY_LABEL, MANAGED_BY_VALUE, RBAC_API_GROUP, RBAC_VERB,
    rbac_object_name,
};
use k8s_openapi::{
    api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use crate::request::service_accounts_group;

/// API group of the RBAC API (`roleRef.apiGroup`, and `apiGroup` of User and Group subjects).
pub const RBAC_AUTHORIZATION_GROUP: &str = "rbac.authorization.k8s.io";

/// The RBAC objects idbind generates for one identity.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedRbac {
    /// ClusterRole `use-mi-<clientId>` with the single `use-managed-identity` rule.
    pub cluster_role: ClusterRole,
    /// ClusterRoleBinding `use-mi-<clientId>` binding that role to the allowed subjects.
    pub cluster_role_binding: ClusterRoleBinding,
}

/// Generates the ClusterRole and ClusterRoleBinding that let `subjects` use the identity
/// `client_id`, in the shape AKS documents for identity bindings.
///
/// - Both objects are named `use-mi-<clientId>` and labelled `app.kubernetes.io/managed-by: idbind`
///   and `idbind.dev/client-id: <clientId>`.
/// - The role has exactly one rule: verb `use-managed-identity` on resource `<clientId>` in API
///   group `cid.wi.aks.azure.com`.
/// - Subjects are normalised by [`normalize_subjects`]: a namespace alone becomes Group
///   `system:serviceaccounts:<namespace>`, a service account a ServiceAccount subject.
/// - An empty list yields a binding with an explicitly empty `subjects: []`: it grants nothing, still
///   exists (so `who-can` and the binding's owner see it), and replaces stale subjects under any
///   patch strategy (a merge patch omitting `subjects` would keep them).
///
/// The names are used as given; they are validated where they enter (the CRD schema,
/// [`AllowedSubject::parse`], [`AllowedSubject::validate`]).
pub fn generate(client_id: &ClientId, subjects: &[AllowedSubject]) -> GeneratedRbac {
    let name = rbac_object_name(client_id);
    let metadata = ObjectMeta {
        name: Some(name.clone()),
        labels: Some(BTreeMap::from([
            (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
            (CLIENT_ID_LABEL.to_owned(), client_id.to_string()),
        ])),
        ..ObjectMeta::default()
    };
    let cluster_role = ClusterRole {
        metadata: metadata.clone(),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![RBAC_API_GROUP.to_owned()]),
            resources: Some(vec![client_id.to_string()]),
            verbs: vec![RBAC_VERB.to_owned()],
            ..PolicyRule::default()
        }]),
        aggregation_rule: None,
    };
    let cluster_role_binding = ClusterRoleBinding {
        metadata,
        role_ref: RoleRef {
            api_group: Some(RBAC_AUTHORIZATION_GROUP.to_owned()),
            kind: "ClusterRole".to_owned(),
            name,
        },
        subjects: Some(normalize_subjects(subjects).iter().map(binding_subject).collect()),
    };
    GeneratedRbac {
        cluster_role,
        cluster_role_binding,
    }
}

/// The subjects as the binding lists them: sorted by namespace then service account, duplicates
/// removed, and service accounts dropped from a namespace that is allowed as a whole (the group
/// `system:serviceaccounts:<namespace>` already holds them). Lists granting the same access thus give
/// the same binding.
pub fn normalize_subjects(subjects: &[AllowedSubject]) -> Vec<AllowedSubject> {
    let whole_namespaces: BTreeSet<&str> = subjects
        .iter()
        .filter(|s| s.service_account.is_none())
        .map(|s| s.namespace.as_str())
        .collect();
    let kept: BTreeSet<&AllowedSubject> = subjects
        .iter()
        .filter(|s| s.service_account.is_none() || !whole_namespaces.contains(s.namespace.as_str()))
        .collect();
    kept.into_iter().cloned().collect()
}

fn binding_subject(subject: &AllowedSubject) -> Subject {
    match &subject.service_account {
        None => Subject {
            api_group: Some(RBAC_AUTHORIZATION_GROUP.to_owned()),
            kind: "Group".to_owned(),
            name: service_accounts_group(&subject.namespace),
            namespace: None,
        },
        Some(service_account) => Subject {
            api_group: Some(String::new()),
            kind: "ServiceAccount".to_owned(),
            name: service_account.clone(),
            namespace: Some(subject.namespace.clone()),
        },
    }
}
