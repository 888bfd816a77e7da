//! The proxy's TLS as the cluster sees it:
//!
//! - ConfigMap `idbind-proxy-ca` (key `ca.crt`: the trust bundle) in **every** namespace, since a
//!   pod's projected volume can only reference a ConfigMap of its own namespace (as
//!   `kube-root-ca.crt` is published everywhere by kube-controller-manager);
//! - Secret `idbind-proxy-tls` (type `kubernetes.io/tls`: `tls.crt`, `tls.key`, and `ca.crt`, the
//!   bundle) in the idbind namespace, which proxies mount and follow.
//!
//! ConfigMaps are written before the Secret, and a round fails if any namespace could not be
//! written (except namespaces being deleted), so the manager never records a bundle as published
//! before it is everywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::manager::{COMPONENT_LABEL, Projection};
use super::state::CertState;
use crate::{Error, Result};

/// Key of the bundle in the ConfigMap and the TLS Secret.
pub const BUNDLE_KEY: &str = "ca.crt";
/// Keys of the serving certificate and key in the TLS Secret.
pub const TLS_CERT_KEY: &str = "tls.crt";
/// Key of the serving key in the TLS Secret.
pub const TLS_KEY_KEY: &str = "tls.key";

/// Names of what the proxy projection writes.
#[derive(Clone, Debug)]
pub struct ProxyTlsObjects {
    /// The idbind namespace (TLS Secret).
    pub namespace: String,
    /// Name of the TLS Secret.
    pub tls_secret: String,
    /// Name of the bundle ConfigMap.
    pub ca_configmap: String,
}

/// Publishes the bundle to every namespace and the serving certificate to the TLS Secret.
pub struct ProxyProjection {
    client: kube::Client,
    objects: ProxyTlsObjects,
}

impl ProxyProjection {
    /// A projection writing `objects`.
    pub fn new(client: kube::Client, objects: ProxyTlsObjects) -> Self {
        Self { client, objects }
    }

    fn labels(component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                idbind_model::MANAGED_BY_LABEL.to_owned(),
                idbind_model::MANAGED_BY_VALUE.to_owned(),
            ),
            (COMPONENT_LABEL.to_owned(), component.to_owned()),
        ])
    }

    /// Namespaces that should hold the bundle: all but those being deleted, and always ours.
    async fn namespaces(&self) -> Result<BTreeSet<String>> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(Error::kube("listing namespaces"))?;
        let mut names: BTreeSet<String> = list
            .items
            .into_iter()
            .filter(|ns| ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating"))
            .filter_map(|ns| ns.metadata.name)
            .collect();
        names.insert(self.objects.namespace.clone());
        Ok(names)
    }

    async fn publish_bundle(&self, bundle: &str) -> Result<()> {
        let name = &self.objects.ca_configmap;
        let all: Api<ConfigMap> = Api::all(self.client.clone());
        let existing: BTreeMap<String, ConfigMap> = all
            .list(&ListParams::default().fields(&format!("metadata.name={name}")))
            .await
            .map_err(Error::kube(format!("listing ConfigMaps {name}")))?
            .items
            .into_iter()
            .filter(|cm| cm.metadata.name.as_deref() == Some(name.as_str()))
            .filter_map(|cm| cm.metadata.namespace.clone().map(|ns| (ns, cm)))
            .collect();
        let mut written = 0usize;
        for ns in self.namespaces().await? {
            let current = existing.get(&ns);
            if current
                .and_then(|cm| cm.data.as_ref())
                .and_then(|d| d.get(BUNDLE_KEY))
                .map(String::as_str)
                == Some(bundle)
            {
                continue;
            }
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &ns);
            let result = match current {
                Some(cm) => {
                    let mut cm = cm.clone();
                    cm.data
                        .get_or_insert_with(BTreeMap::new)
                        .insert(BUNDLE_KEY.to_owned(), bundle.to_owned());
                    api.replace(name, &PostParams::default(), &cm).await.map(|_| ())
                }
                None => {
                    let cm = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            namespace: Some(ns.clone()),
                            labels: Some(Self::labels("proxy-ca-bundle")),
                            ..ObjectMeta::default()
                        },
                        data: Some(BTreeMap::from([(BUNDLE_KEY.to_owned(), bundle.to_owned())])),
                        ..ConfigMap::default()
                    };
                    api.create(&PostParams::default(), &cm).await.map(|_| ())
                }
            };
            match result {
                Ok(()) => written += 1,
                // Deleted meanwhile, or being deleted: nothing will run there.
                Err(kube::Error::Api(s))
                    if ns != self.objects.namespace
                        && (s.code == 404 || (s.code == 403 && s.message.contains("terminat"))) =>
                {
                    tracing::debug!(namespace = %ns, "namespace gone or terminating; bundle not published there");
                }
                Err(e) => return Err(Error::kube(format!("writing ConfigMap {ns}/{name}"))(e)),
            }
        }
        if written > 0 {
            tracing::info!(configmap = %name, namespaces = written, "published the proxy CA bundle");
        }
        Ok(())
    }

    async fn publish_tls(&self, state: &CertState, bundle: &str) -> Result<()> {
        let name = &self.objects.tls_secret;
        let what = format!("Secret {}/{name}", self.objects.namespace);
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.objects.namespace);
        let desired = BTreeMap::from([
            (
                TLS_CERT_KEY.to_owned(),
                ByteString(state.serving_cert_pem().as_bytes().to_vec()),
            ),
            (
                TLS_KEY_KEY.to_owned(),
                ByteString(state.serving_key_pem().as_bytes().to_vec()),
            ),
            (BUNDLE_KEY.to_owned(), ByteString(bundle.as_bytes().to_vec())),
        ]);
        let result = match api
            .get_opt(name)
            .await
            .map_err(Error::kube(format!("reading {what}")))?
        {
            Some(secret) if secret.data.as_ref() == Some(&desired) => return Ok(()),
            Some(mut secret) => {
                secret.data = Some(desired);
                api.replace(name, &PostParams::default(), &secret)
                    .await
                    .map(|_| ())
            }
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(self.objects.namespace.clone()),
                        labels: Some(Self::labels("proxy-tls")),
                        ..ObjectMeta::default()
                    },
                    type_: Some("kubernetes.io/tls".to_owned()),
                    data: Some(desired),
                    ..Secret::default()
                };
                api.create(&PostParams::default(), &secret).await.map(|_| ())
            }
        };
        result.map_err(Error::kube(format!("writing {what}")))?;
        tracing::info!(secret = %what, issuer = %super::manager::short(state.serving_issuer()), "published the proxy serving certificate");
        Ok(())
    }
}

impl Projection for ProxyProjection {
    fn publish<'a>(&'a self, state: &'a CertState) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let bundle = state.bundle_pem();
            self.publish_bundle(&bundle).await?;
            self.publish_tls(state, &bundle).await
        })
    }
}

/// Wakes `manager` whenever a namespace appears (or changes), so it gets the bundle at once.
pub async fn wake_on_new_namespaces(client: kube::Client, wake: Arc<Notify>, shutdown: CancellationToken) {
    let api: Api<Namespace> = Api::all(client);
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(stream);
    let mut seen = BTreeSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            next = stream.next() => match next {
                None => return,
                Some(Ok(ns)) => {
                    if let Some(name) = ns.metadata.name
                        && seen.insert(name)
                    {
                        wake.notify_one();
                    }
                }
                Some(Err(e)) => tracing::debug!(error = %e, "namespace watch error"),
            }
        }
    }
}
