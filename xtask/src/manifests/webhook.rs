//! The MutatingWebhookConfiguration, shipped so that `kubectl delete -k` removes it with the rest
//! (a configuration left behind with `failurePolicy: Fail` would block every opted-in pod).
//!
//! The controller creates the same object when it is missing and otherwise keeps only the
//! `clientConfig` of its entry in sync (`caBundle` from its webhook CA): the entry here carries no
//! `caBundle`, and opted-in pods are refused until the controller has filled it in. Selectors and
//! the failure policy are the operator's to change.

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::CONTROLLER_OWNER;
use super::meta::{Owner, map};
use super::names::*;

const OWNER: Owner = Owner {
    name: CONTROLLER_OWNER.name,
    component: "webhook",
};
/// Label Kubernetes puts on every namespace with its name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// The Service port the API server calls (controller `--webhook-service-port`).
pub const SERVICE_PORT: i32 = 443;

/// idbind's webhook entry, as the controller would create it, without `caBundle`.
pub fn webhook() -> MutatingWebhook {
    MutatingWebhook {
        name: WEBHOOK_NAME.to_owned(),
        admission_review_versions: vec!["v1".to_owned()],
        client_config: WebhookClientConfig {
            service: Some(ServiceReference {
                namespace: NAMESPACE.to_owned(),
                name: WEBHOOK_SERVICE.to_owned(),
                path: Some(WEBHOOK_PATH.to_owned()),
                port: Some(SERVICE_PORT),
            }),
            url: None,
            ca_bundle: None,
        },
        failure_policy: Some("Fail".to_owned()),
        match_policy: Some("Equivalent".to_owned()),
        // idbind's own pods are never sent to the webhook, so the controller can always start.
        namespace_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: NAMESPACE_NAME_LABEL.to_owned(),
                operator: "NotIn".to_owned(),
                values: Some(vec![NAMESPACE.to_owned()]),
            }]),
            match_labels: None,
        }),
        object_selector: Some(LabelSelector {
            match_labels: Some(map([(idbind_model::POD_USE_LABEL, "true")])),
            match_expressions: None,
        }),
        reinvocation_policy: Some("IfNeeded".to_owned()),
        rules: Some(vec![RuleWithOperations {
            api_groups: Some(vec![String::new()]),
            api_versions: Some(vec!["v1".to_owned()]),
            operations: Some(vec!["CREATE".to_owned()]),
            resources: Some(vec!["pods".to_owned()]),
            scope: Some("Namespaced".to_owned()),
        }]),
        side_effects: "None".to_owned(),
        timeout_seconds: Some(10),
        match_conditions: None,
    }
}

/// The configuration.
pub fn configuration() -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: OWNER.cluster_meta(WEBHOOK_CONFIGURATION),
        webhooks: Some(vec![webhook()]),
    }
}
