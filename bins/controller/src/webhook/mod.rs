//! The mutating admission webhook, compatible with azure-workload-identity in identity-binding
//! mode (PROTOCOL.md §4.1), and its certificates.
//!
//! - [`mutate`]: for a pod labelled `azure.workload.identity/use: "true"` and annotated
//!   `azure.workload.identity/use-identity-binding: "true"`, every container and init container not
//!   listed in `azure.workload.identity/skip-containers` gets the `AZURE_*` variables it does not
//!   set itself and a read-only mount of `/var/run/secrets/azure/wi`; the pod gets the projected
//!   volume `azure-workload-identity-reserved-<30 hex of sha256(pod name)>` with the service
//!   account token (audience `api://AKSIdentityBinding`, lifetime from the pod's or the service
//!   account's `service-account-token-expiration`, 3600–86400 s) and the proxy CA bundle. For a
//!   pod with only `generateName`, the hashed name is `"<generateName> (prefix)"`, as in
//!   azure-workload-identity. A second admission of a mutated pod yields no patch. A service
//!   account without `azure.workload.identity/client-id` gets the pod denied with the fix.
//!   Pods with the label but without the identity-binding annotation are left to a plain
//!   azure-workload-identity webhook, if any.
//! - [`server`]: HTTPS on `--webhook-listen`, `POST /mutate-v1-pod`, on every replica, with the
//!   certificate of Secret `idbind-webhook-tls` followed through the API.
//! - [`configuration`]: the MutatingWebhookConfiguration `idbind`, created if missing, its
//!   `clientConfig.caBundle` kept in step with the webhook CA by a
//!   [`crate::certs::manager::CertManager`] on the leader.
//!
//! [`install`] plugs all of it, and the proxy's TLS management, into a
//! [`RuntimeBuilder`].

pub mod args;
pub mod configuration;
pub mod mutate;
pub mod projection;
pub mod review;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpListener;

use crate::args::Args;
use crate::certs::manager::{CertManager, CertSettings};
use crate::certs::metrics::CertMetrics;
use crate::runtime::{RuntimeBuilder, TaskError};
use crate::{Error, Result};

use args::WebhookArgs;
use configuration::WebhookConfigProjection;
use server::WebhookMetrics;

/// Adds to `builder`: the webhook server (every replica; its listener is bound now, so a
/// `--webhook-url` with port 0 gets the real port), the webhook's certificate and
/// MutatingWebhookConfiguration (leader), and the proxy's TLS management (see
/// [`crate::certs::install_proxy_tls`]).
pub async fn install(mut builder: RuntimeBuilder, args: &Args) -> Result<RuntimeBuilder> {
    let cert_metrics = CertMetrics::register(builder.registry_mut());
    builder = crate::certs::install_proxy_tls(builder, args, &cert_metrics)?;
    let w = &args.webhook;
    if !w.webhook_enabled {
        return Ok(builder);
    }
    let ns = args.cluster.namespace.clone();
    let injection = WebhookArgs::injection(args)?;
    let policy = w.policy()?;
    let subject = w.subject(&ns, &args.proxy_tls.cluster_domain)?;
    let listener = TcpListener::bind(w.webhook_listen)
        .await
        .map_err(|source| Error::Listen {
            addr: w.webhook_listen.to_string(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| Error::Listen {
        addr: w.webhook_listen.to_string(),
        source,
    })?;
    let target = w.target(&ns, Some(bound))?;
    tracing::info!(addr = %bound, target = ?target, "admission webhook listening");
    let config = w.configuration(&ns, target);
    let metrics = WebhookMetrics::register(builder.registry_mut());
    let ready = builder.health().check("webhook-certificate");

    let settings = CertSettings {
        namespace: ns.clone(),
        secret_name: w.webhook_secret.clone(),
        component: "webhook".to_owned(),
        policy,
        subject,
        retry_delay: args.reconcile.error_backoff_min.max(Duration::from_secs(1)),
        recheck_interval: args.reconcile.resync_interval,
    };
    builder = builder.leader_task("webhook TLS", move |ctx| {
        let manager = CertManager::new(
            ctx.client.clone(),
            settings.clone(),
            ctx.clock.clone(),
            Arc::new(WebhookConfigProjection::new(ctx.client.clone(), config.clone())),
        )
        .with_metrics(cert_metrics.clone());
        async move {
            manager.run(ctx.shutdown.clone()).await;
            Ok::<(), TaskError>(())
        }
    });

    let listener = Arc::new(Mutex::new(Some(listener)));
    let secret = w.webhook_secret.clone();
    builder = builder.task("admission webhook", move |ctx| {
        let listener = listener.lock().take();
        let router = server::router(ctx.client.clone(), injection.clone(), metrics.clone());
        let (secret, ready) = (secret.clone(), ready.clone());
        async move {
            let listener = listener.ok_or("the admission webhook task was started twice")?;
            server::serve(
                ctx.client,
                ctx.namespace,
                secret,
                listener,
                router,
                Some(ready),
                ctx.shutdown,
            )
            .await?;
            Ok::<(), TaskError>(())
        }
    });
    Ok(builder)
}
