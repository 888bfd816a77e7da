//! Certificates the controller manages: a CA and serving certificate for the token proxy (with
//! its trust bundle published to pods), and one for the admission webhook (with its bundle in the
//! MutatingWebhookConfiguration).
//!
//! Both follow the same state machine ([`state`]), kept in a Secret and driven by a
//! [`manager::CertManager`] on the leader, which hands every new state to a
//! [`manager::Projection`]:
//!
//! | | proxy ([`proxy::ProxyProjection`]) | webhook ([`crate::webhook`]) |
//! |---|---|---|
//! | state Secret | `idbind-proxy-ca-key` (`state.json`, `ca.crt`, `ca.key`, `next-ca.*`, `previous-ca.crt`, `tls.*`) | `idbind-webhook-tls` (same layout) |
//! | serving certificate | Secret `idbind-proxy-tls` (`tls.crt`, `tls.key`, `ca.crt`) mounted by proxies | read from the state Secret by every replica |
//! | trust bundle | ConfigMap `idbind-proxy-ca` key `ca.crt` in every namespace | `caBundle` of the MutatingWebhookConfiguration |
//! | default delays | 1 h propagation, 1 h retirement | 5 min, 5 min |
//!
//! A CA renewal introduces the new CA into the bundle, waits for it to reach every client, then
//! switches the serving certificate, waits for every server to serve it, and only then drops the
//! old CA: a client never sees a certificate its bundle does not trust, provided its bundle lags
//! by less than the propagation delay and servers lag by less than the retire delay.

pub mod args;
pub mod follow;
pub mod manager;
pub mod metrics;
pub mod proxy;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use crate::args::Args;
use crate::runtime::{RuntimeBuilder, TaskError};
use crate::{Error, Result};

use manager::{CertManager, CertSettings};
use metrics::CertMetrics;
use proxy::{ProxyProjection, ProxyTlsObjects};

/// Settings of the proxy's certificate manager, from the flags.
pub fn proxy_settings(args: &Args) -> Result<(CertSettings, ProxyTlsObjects)> {
    let ns = &args.cluster.namespace;
    let p = &args.proxy_tls;
    let settings = CertSettings {
        namespace: ns.clone(),
        secret_name: p.proxy_ca_secret.clone(),
        component: "proxy".to_owned(),
        policy: p.policy()?,
        subject: p.subject(ns)?,
        retry_delay: args.reconcile.error_backoff_min.max(Duration::from_secs(1)),
        recheck_interval: args.reconcile.resync_interval,
    };
    if p.proxy_tls_secret == p.proxy_ca_secret {
        return Err(Error::config(
            "--proxy-tls-secret",
            "must differ from --proxy-ca-secret (proxies must not see the CA key)",
        ));
    }
    let objects = ProxyTlsObjects {
        namespace: ns.clone(),
        tls_secret: p.proxy_tls_secret.clone(),
        ca_configmap: p.proxy_ca_configmap.clone(),
    };
    Ok((settings, objects))
}

/// Adds the proxy's TLS management to `builder`: on the leader, the certificate manager (woken
/// when a namespace appears, so it gets the bundle); on every replica, the export to
/// `--proxy-tls-export-dir` if set.
pub fn install_proxy_tls(
    mut builder: RuntimeBuilder,
    args: &Args,
    metrics: &CertMetrics,
) -> Result<RuntimeBuilder> {
    if !args.proxy_tls.proxy_tls_managed {
        return Ok(builder);
    }
    let (settings, objects) = proxy_settings(args)?;
    let metrics = metrics.clone();
    builder = builder.leader_task("proxy TLS", move |ctx| {
        let manager = CertManager::new(
            ctx.client.clone(),
            settings.clone(),
            ctx.clock.clone(),
            Arc::new(ProxyProjection::new(ctx.client.clone(), objects.clone())),
        )
        .with_metrics(metrics.clone());
        let waker = proxy::wake_on_new_namespaces(ctx.client.clone(), manager.waker(), ctx.shutdown.clone());
        async move {
            tokio::join!(manager.run(ctx.shutdown.clone()), waker);
            Ok::<(), TaskError>(())
        }
    });
    if let Some(dir) = args.proxy_tls.proxy_tls_export_dir.clone() {
        let secret = args.proxy_tls.proxy_tls_secret.clone();
        builder = builder.task("proxy TLS export", move |ctx| {
            let fut = follow::export_tls_secret(
                ctx.client,
                ctx.namespace,
                secret.clone(),
                dir.clone(),
                ctx.shutdown,
            );
            async move {
                fut.await;
                Ok::<(), TaskError>(())
            }
        });
    }
    Ok(builder)
}
