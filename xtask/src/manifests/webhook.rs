//! The MutatingWebhookConfiguration, shipped so that `kubectl delete -k` removes it with the rest
//! (a configuration left behind with `failurePolicy: Fail` would block every opted-in pod).
//!
//! The controller creates the same object when it is missing and otherwise keeps only the
//! `clientConfig` of its entry in sync (`caBundle` from its webhook CA): the entry here is the
//! controller's own ([`WebhookConfigSettings::webhook_without_ca_bundle`]), so the two cannot
//! drift, and carries no `caBundle`: opted-in pods are refused until the controller has filled it
//! in. Selectors and the failure policy are the operator's to change.

use idbind_controller::webhook::configuration::{ClientTarget, WebhookConfigSettings};
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, MutatingWebhookConfiguration};

use super::CONTROLLER_OWNER;
use super::meta::Owner;
use super::names::*;

const OWNER: Owner = Owner {
    name: CONTROLLER_OWNER.name,
    component: "webhook",
};
/// The Service port the API server calls (controller `--webhook-service-port`).
pub const SERVICE_PORT: u16 = 443;

/// The controller's settings for the configuration these manifests install (its flags as the
/// controller Deployment sets them).
fn settings() -> WebhookConfigSettings {
    WebhookConfigSettings {
        name: WEBHOOK_CONFIGURATION.to_owned(),
        target: ClientTarget::Service {
            namespace: NAMESPACE.to_owned(),
            name: WEBHOOK_SERVICE.to_owned(),
            port: SERVICE_PORT,
            path: WEBHOOK_PATH.to_owned(),
        },
        exclude_namespace: NAMESPACE.to_owned(),
    }
}

/// idbind's webhook entry, as the controller would create it, without `caBundle`.
pub fn webhook() -> MutatingWebhook {
    settings().webhook_without_ca_bundle()
}

/// The configuration.
pub fn configuration() -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: OWNER.cluster_meta(WEBHOOK_CONFIGURATION),
        webhooks: Some(vec![webhook()]),
    }
}
