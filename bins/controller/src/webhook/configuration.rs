//! The MutatingWebhookConfiguration, kept in step with the webhook's CA bundle.
//!
//! Policy: the configuration is **created** with idbind's full webhook entry when it is missing;
//! when it exists, only the `clientConfig` (URL or Service, and `caBundle`) of idbind's entry is
//! kept in sync (and the entry appended if it is absent). Everything else — failure policy,
//! selectors, timeouts — is left to whoever manages it (a Helm chart, GitOps), so an operator can
//! tighten or loosen it without the controller fighting back.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::{Api, ObjectMeta, PostParams};

use crate::certs::manager::{Projection, short};
use crate::certs::state::CertState;
use crate::{Error, Result};

/// Name of idbind's webhook entry in the configuration.
pub const WEBHOOK_NAME: &str = "pods.webhook.idbind.dev";
/// Label Kubernetes sets on every namespace with its name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// How the API server reaches the webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientTarget {
    /// `clientConfig.url`.
    Url(String),
    /// `clientConfig.service`.
    Service {
        /// Namespace of the Service.
        namespace: String,
        /// Name of the Service.
        name: String,
        /// Port of the Service.
        port: u16,
        /// Path of the webhook.
        path: String,
    },
}

/// What the configuration looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfigSettings {
    /// Name of the MutatingWebhookConfiguration.
    pub name: String,
    /// Where the webhook is.
    pub target: ClientTarget,
    /// Namespace whose pods are never sent to the webhook (idbind's own, so the controller can
    /// always start).
    pub exclude_namespace: String,
}

impl WebhookConfigSettings {
    /// The `clientConfig` for a CA bundle.
    pub fn client_config(&self, bundle: &str) -> WebhookClientConfig {
        let ca_bundle = Some(ByteString(bundle.as_bytes().to_vec()));
        match &self.target {
            ClientTarget::Url(url) => WebhookClientConfig {
                url: Some(url.clone()),
                service: None,
                ca_bundle,
            },
            ClientTarget::Service {
                namespace,
                name,
                port,
                path,
            } => WebhookClientConfig {
                url: None,
                service: Some(ServiceReference {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    path: Some(path.clone()),
                    port: Some(i32::from(*port)),
                }),
                ca_bundle,
            },
        }
    }

    /// idbind's full webhook entry.
    pub fn webhook(&self, bundle: &str) -> MutatingWebhook {
        MutatingWebhook {
            name: WEBHOOK_NAME.to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            client_config: self.client_config(bundle),
            failure_policy: Some("Fail".to_owned()),
            match_policy: Some("Equivalent".to_owned()),
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: NAMESPACE_NAME_LABEL.to_owned(),
                    operator: "NotIn".to_owned(),
                    values: Some(vec![self.exclude_namespace.clone()]),
                }]),
                match_labels: None,
            }),
            object_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    idbind_model::POD_USE_LABEL.to_owned(),
                    "true".to_owned(),
                )])),
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
}

/// Writes the webhook's CA bundle into the MutatingWebhookConfiguration.
pub struct WebhookConfigProjection {
    api: Api<MutatingWebhookConfiguration>,
    settings: WebhookConfigSettings,
}

impl WebhookConfigProjection {
    /// A projection keeping the configuration described by `settings`.
    pub fn new(client: kube::Client, settings: WebhookConfigSettings) -> Self {
        Self {
            api: Api::all(client),
            settings,
        }
    }

    /// Makes the configuration carry `bundle`; creates it if missing.
    pub async fn sync(&self, bundle: &str) -> Result<()> {
        let name = &self.settings.name;
        let what = format!("MutatingWebhookConfiguration {name}");
        let desired = self.settings.client_config(bundle);
        let Some(mut existing) = self
            .api
            .get_opt(name)
            .await
            .map_err(Error::kube(format!("reading {what}")))?
        else {
            let configuration = MutatingWebhookConfiguration {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(BTreeMap::from([(
                        idbind_model::MANAGED_BY_LABEL.to_owned(),
                        idbind_model::MANAGED_BY_VALUE.to_owned(),
                    )])),
                    ..ObjectMeta::default()
                },
                webhooks: Some(vec![self.settings.webhook(bundle)]),
            };
            return match self.api.create(&PostParams::default(), &configuration).await {
                Ok(_) => {
                    tracing::info!(configuration = %name, "created the MutatingWebhookConfiguration");
                    Ok(())
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    Err(Error::Conflict(format!("{what} was created meanwhile")))
                }
                Err(e) => Err(Error::kube(format!("creating {what}"))(e)),
            };
        };
        let webhooks = existing.webhooks.get_or_insert_with(Vec::new);
        match webhooks.iter_mut().find(|w| w.name == WEBHOOK_NAME) {
            Some(hook) if hook.client_config == desired => return Ok(()),
            Some(hook) => hook.client_config = desired,
            None => webhooks.push(self.settings.webhook(bundle)),
        }
        match self.api.replace(name, &PostParams::default(), &existing).await {
            Ok(_) => {
                tracing::info!(configuration = %name, "updated the webhook's clientConfig");
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                Err(Error::Conflict(format!("{what} changed meanwhile")))
            }
            Err(e) => Err(Error::kube(format!("updating {what}"))(e)),
        }
    }
}

impl Projection for WebhookConfigProjection {
    fn publish<'a>(&'a self, state: &'a CertState) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            tracing::debug!(ca = %short(state.current_fingerprint()), "syncing the webhook caBundle");
            self.sync(&state.bundle_pem()).await
        })
    }
}
