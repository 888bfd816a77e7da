//! A ValidatingAdmissionPolicy that narrows what the controller's RBAC cannot: Kubernetes RBAC
//! cannot limit `create` or `delete` to names, nor cluster roles to a name prefix, so the
//! controller's grants on ClusterRoles, ClusterRoleBindings, ConfigMaps, Secrets, Leases and the
//! MutatingWebhookConfiguration would reach every object of those kinds. The policy applies to
//! requests of the controller's service account only, and admits:
//!
//! - ClusterRoles and ClusterRoleBindings named `use-mi-<clientId>`; a role with nothing but the
//!   `use-managed-identity` rule on its own client id (no aggregation, no other group or verb);
//!   a binding referring to the ClusterRole of the same name, with service-account subjects;
//! - ConfigMaps named `idbind-proxy-ca` (any namespace);
//! - its own Secrets and Lease in the idbind namespace, and the webhook configuration `idbind`.
//!
//! Needs Kubernetes 1.30 (ValidatingAdmissionPolicy GA).

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec, ValidatingAdmissionPolicySpec,
    Validation,
};

use super::CONTROLLER_OWNER;
use super::meta::Owner;
use super::names::*;

/// Name of the policy and its binding.
pub const POLICY: &str = "idbind-controller-writes";

const OWNER: Owner = Owner {
    name: CONTROLLER_OWNER.name,
    component: "admission-policy",
};

/// The condition selecting the controller's requests.
pub fn match_condition() -> (String, String) {
    (
        "controller-service-account".to_owned(),
        format!("request.userInfo.username == 'system:serviceaccount:{NAMESPACE}:{CONTROLLER}'"),
    )
}

/// The validations: (CEL expression, message).
pub fn validations() -> Vec<(String, String)> {
    let prefix = idbind_model::RBAC_NAME_PREFIX;
    let group = idbind_model::RBAC_API_GROUP;
    let verb = idbind_model::RBAC_VERB;
    let quoted = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let secrets = quoted(&[
        SIGNING_KEY_SECRET,
        PROXY_CA_SECRET,
        PROXY_TLS_SECRET,
        WEBHOOK_SECRET,
    ]);
    vec![
        (
            format!(
                "request.resource.group != 'rbac.authorization.k8s.io' || request.name.startsWith('{prefix}')"
            ),
            format!(
                "{CONTROLLER} may write only ClusterRoles and ClusterRoleBindings named {prefix}<clientId>"
            ),
        ),
        (
            format!(
                "request.resource.resource != 'clusterroles' || request.operation == 'DELETE' || \
                 (!has(object.aggregationRule) && has(object.rules) && object.rules.all(r, \
                 has(r.apiGroups) && r.apiGroups == ['{group}'] && r.verbs == ['{verb}'] && \
                 has(r.resources) && r.resources.all(x, '{prefix}' + x == request.name) && \
                 !has(r.resourceNames) && !has(r.nonResourceURLs)))"
            ),
            format!(
                "{CONTROLLER} may only grant '{verb}' on '{group}/<clientId>' in the ClusterRole of that client id"
            ),
        ),
        (
            "request.resource.resource != 'clusterrolebindings' || request.operation == 'DELETE' || \
             (object.roleRef.kind == 'ClusterRole' && object.roleRef.name == request.name && \
             (!has(object.subjects) || object.subjects.all(s, s.kind == 'ServiceAccount' || \
             (s.kind == 'Group' && s.name.startsWith('system:serviceaccounts:')))))"
                .to_owned(),
            format!(
                "{CONTROLLER} may only bind the ClusterRole of the same name to service accounts or \
                 service-account groups"
            ),
        ),
        (
            format!("request.resource.resource != 'configmaps' || request.name == '{PROXY_CA_CONFIGMAP}'"),
            format!("{CONTROLLER} may write only the ConfigMaps {PROXY_CA_CONFIGMAP}"),
        ),
        (
            format!(
                "request.resource.resource != 'secrets' || \
                 (request.namespace == '{NAMESPACE}' && request.name in [{secrets}])"
            ),
            format!("{CONTROLLER} may write only its own Secrets in {NAMESPACE}"),
        ),
        (
            format!(
                "request.resource.resource != 'leases' || \
                 (request.namespace == '{NAMESPACE}' && request.name == '{LEASE}')"
            ),
            format!("{CONTROLLER} may write only its Lease {NAMESPACE}/{LEASE}"),
        ),
        (
            format!(
                "request.resource.resource != 'mutatingwebhookconfigurations' || \
                 request.name == '{WEBHOOK_CONFIGURATION}'"
            ),
            format!("{CONTROLLER} may write only the MutatingWebhookConfiguration {WEBHOOK_CONFIGURATION}"),
        ),
    ]
}

fn rule(group: &str, resources: &[&str]) -> NamedRuleWithOperations {
    NamedRuleWithOperations {
        api_groups: Some(vec![group.to_owned()]),
        api_versions: Some(vec!["*".to_owned()]),
        operations: Some(["CREATE", "UPDATE", "DELETE"].map(str::to_owned).to_vec()),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        resource_names: None,
        scope: None,
    }
}

/// The policy.
pub fn policy() -> ValidatingAdmissionPolicy {
    let (name, expression) = match_condition();
    ValidatingAdmissionPolicy {
        metadata: OWNER.cluster_meta(POLICY),
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".to_owned()),
            match_conditions: Some(vec![MatchCondition { name, expression }]),
            match_constraints: Some(MatchResources {
                resource_rules: Some(vec![
                    rule(
                        "rbac.authorization.k8s.io",
                        &["clusterroles", "clusterrolebindings"],
                    ),
                    rule("", &["configmaps", "secrets"]),
                    rule("coordination.k8s.io", &["leases"]),
                    rule("admissionregistration.k8s.io", &["mutatingwebhookconfigurations"]),
                ]),
                ..MatchResources::default()
            }),
            validations: Some(
                validations()
                    .into_iter()
                    .map(|(expression, message)| Validation {
                        expression,
                        message: Some(message),
                        reason: Some("Forbidden".to_owned()),
                        message_expression: None,
                    })
                    .collect(),
            ),
            ..ValidatingAdmissionPolicySpec::default()
        }),
        status: None,
    }
}

/// Its binding (deny on violation).
pub fn binding() -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: OWNER.cluster_meta(POLICY),
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: POLICY.to_owned(),
            validation_actions: vec!["Deny".to_owned()],
            ..ValidatingAdmissionPolicyBindingSpec::default()
        },
    }
}
