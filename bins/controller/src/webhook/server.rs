//! The webhook's HTTPS server: AdmissionReviews in, JSON patches out, with the serving
//! certificate taken from the webhook Secret as the leader rotates it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;
use parking_lot::RwLock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::args::MUTATE_PATH;
use super::mutate::{self, InjectionSettings};
use super::review::{AdmissionResponse, AdmissionReview};
use crate::admin::ReadyFlag;
use crate::certs::state::{TLS_CERT_KEY, TLS_KEY_KEY};
use crate::{Error, Result};

/// A certificate resolver fed from Secret data; answers no certificate until one is loaded.
#[derive(Debug, Default)]
pub struct SecretCertResolver {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl SecretCertResolver {
    /// Takes `tls.crt`/`tls.key` of a Secret's data into use. An unusable pair is refused and the
    /// previous one kept.
    pub fn load(&self, data: &BTreeMap<String, Vec<u8>>) -> Result<()> {
        let text = |key: &str| {
            data.get(key)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| Error::InvalidData {
                    what: format!("Secret entry {key}"),
                    reason: "missing or not PEM text".into(),
                })
        };
        let key = idbind_tls::certified_key(text(TLS_CERT_KEY)?, text(TLS_KEY_KEY)?).map_err(|e| {
            Error::InvalidData {
                what: "webhook serving certificate".into(),
                reason: e.to_string(),
            }
        })?;
        *self.current.write() = Some(Arc::new(key));
        Ok(())
    }

    /// Whether a certificate is loaded.
    pub fn is_loaded(&self) -> bool {
        self.current.read().is_some()
    }
}

impl ResolvesServerCert for SecretCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().clone()
    }
}

/// Labels `{result}` of an admission.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// `mutated`, `unchanged`, `skipped`, `denied` or `error`.
    pub result: String,
}

/// Admissions by result.
#[derive(Clone, Debug, Default)]
pub struct WebhookMetrics {
    admissions: Family<AdmissionLabels, Counter>,
}

impl WebhookMetrics {
    /// Creates the metrics and registers them under the prefix `idbind_webhook`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.sub_registry_with_prefix("idbind_webhook").register(
            "admissions",
            "Pod admissions by result",
            m.admissions.clone(),
        );
        m
    }

    fn count(&self, result: &str) {
        self.admissions
            .get_or_create(&AdmissionLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Admissions counted with `result` so far.
    pub fn admissions(&self, result: &str) -> u64 {
        self.admissions
            .get_or_create(&AdmissionLabels {
                result: result.to_owned(),
            })
            .get()
    }
}

#[derive(Clone)]
struct Admission {
    client: kube::Client,
    settings: Arc<InjectionSettings>,
    metrics: WebhookMetrics,
}

/// The webhook's routes: `POST /mutate-v1-pod` and `GET /healthz`.
pub fn router(client: kube::Client, settings: InjectionSettings, metrics: WebhookMetrics) -> Router {
    Router::new()
        .route(MUTATE_PATH, post(review))
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .with_state(Admission {
            client,
            settings: Arc::new(settings),
            metrics,
        })
}

async fn review(State(admission): State<Admission>, body: Bytes) -> Response {
    let review: AdmissionReview = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("expected an admission.k8s.io/v1 AdmissionReview: {e}\n"),
            )
                .into_response();
        }
    };
    let Some(request) = review.request else {
        return (StatusCode::BAD_REQUEST, "the AdmissionReview has no request\n").into_response();
    };
    let response = decide(&admission, request).await;
    let json = serde_json::to_vec(&response.into_review()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

async fn decide(admission: &Admission, request: super::review::AdmissionRequest) -> AdmissionResponse {
    let uid = request.uid.as_str();
    let Some(pod) = request.object.filter(|_| request.operation == "CREATE") else {
        admission.metrics.count("skipped");
        return AdmissionResponse::allow(uid);
    };
    if !mutate::opted_in(&pod) {
        admission.metrics.count("skipped");
        return AdmissionResponse::allow(uid);
    }
    let namespace = request.namespace.filter(|n| !n.is_empty()).or_else(|| {
        pod.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let Some(namespace) = namespace else {
        admission.metrics.count("denied");
        return AdmissionResponse::deny(uid, 400, "the pod has no namespace");
    };
    let sa_name = ["/spec/serviceAccountName", "/spec/serviceAccount"]
        .iter()
        .find_map(|p| pod.pointer(p).and_then(Value::as_str).filter(|s| !s.is_empty()))
        .unwrap_or("default")
        .to_owned();
    let pod_name = mutate::pod_name_for_volume(&pod);
    let api: Api<ServiceAccount> = Api::namespaced(admission.client.clone(), &namespace);
    let sa = match api.get_opt(&sa_name).await {
        Ok(Some(sa)) => sa,
        Ok(None) => {
            admission.metrics.count("denied");
            return AdmissionResponse::deny(
                uid,
                400,
                format!(
                    "service account {namespace}/{sa_name} used by pod {namespace}/{pod_name} does not exist"
                ),
            );
        }
        Err(e) => {
            tracing::warn!(namespace = %namespace, service_account = %sa_name, error = %e, "cannot read the pod's service account");
            admission.metrics.count("error");
            return AdmissionResponse::deny(
                uid,
                500,
                format!("reading service account {namespace}/{sa_name}: {e}"),
            );
        }
    };
    match mutate::mutate(&pod, &sa, &namespace, &admission.settings) {
        Ok(m) if m.patch.0.is_empty() => {
            admission.metrics.count("unchanged");
            AdmissionResponse::allow(uid)
        }
        Ok(m) => {
            tracing::debug!(pod = %format!("{namespace}/{pod_name}"), ops = m.patch.0.len(), "mutated pod");
            admission.metrics.count("mutated");
            AdmissionResponse::patched(uid, &m.patch)
        }
        Err(denial) => {
            tracing::info!(pod = %format!("{namespace}/{pod_name}"), reason = %denial, "denied pod");
            admission.metrics.count("denied");
            AdmissionResponse::deny(uid, denial.code, denial.message)
        }
    }
}

/// Serves `router` over TLS on `listener` with the certificate of Secret `namespace/secret`
/// (followed as it changes) until `shutdown`; `ready` turns true once a certificate is loaded.
pub async fn serve(
    client: kube::Client,
    namespace: String,
    secret: String,
    listener: TcpListener,
    router: Router,
    ready: Option<ReadyFlag>,
    shutdown: CancellationToken,
) -> Result<()> {
    let resolver = Arc::new(SecretCertResolver::default());
    let config = idbind_tls::server_config_with_resolver(resolver.clone())
        .map_err(|e| Error::config("webhook TLS", e.to_string()))?;
    let follower = {
        let resolver = resolver.clone();
        let what = format!("{namespace}/{secret}");
        let token = shutdown.clone();
        async move {
            crate::certs::follow::follow_secret(client, &namespace, &secret, token, |data| {
                match resolver.load(data) {
                    Ok(()) => {
                        tracing::info!(secret = %what, "webhook serving certificate loaded");
                        if let Some(r) = &ready {
                            r.set(true);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(secret = %what, error = %e, "keeping the previous webhook certificate");
                    }
                }
            })
            .await;
        }
    };
    tokio::join!(
        follower,
        crate::serve::serve(listener, router, Some(Arc::new(config)), shutdown)
    );
    Ok(())
}
