//! The proxy's TLS against the Kubernetes API emulator: the CA, the serving certificate Secret and
//! the bundle ConfigMap in every namespace; and a CA renewal while a client keeps handshaking
//! with a server that follows the Secret, with the lags of kubelet and of the slowest SDK.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use idbind_controller::certs::follow::write_entries;
use idbind_controller::certs::manager::{CertManager, CertSettings};
use idbind_controller::certs::proxy::{ProxyProjection, ProxyTlsObjects};
use idbind_controller::certs::state::{CertPhase, CertPolicy, Subject};
use idbind_controller::clock::{Clock, ManualClock, SystemClock};
use idbind_testkit::KubeEmulator;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, ObjectMeta, PostParams};
use parking_lot::Mutex;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const SNI: &str = "proxy.idbind.test";
const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;
const TIMEOUT: Duration = Duration::from_secs(60);

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Cancels on drop, so every task a test starts ends with it.
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

async fn cluster(namespaces: &[&str]) -> (KubeEmulator, kube::Client) {
    let kube = KubeEmulator::start().await.unwrap();
    let client = kube.client().unwrap();
    for ns in namespaces {
        create_namespace(&client, ns).await;
    }
    (kube, client)
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    api.create(&PostParams::default(), &ns).await.unwrap();
}

fn settings(policy: CertPolicy) -> CertSettings {
    CertSettings {
        namespace: "idbind".into(),
        secret_name: "idbind-proxy-ca-key".into(),
        component: "proxy".into(),
        policy,
        subject: Subject {
            ca_name: "test proxy CA".into(),
            dns_names: vec![SNI.into(), "idbind-proxy.idbind.svc".into()],
            ips: vec![],
        },
        retry_delay: Duration::from_millis(100),
        recheck_interval: Duration::from_secs(3600),
    }
}

fn objects() -> ProxyTlsObjects {
    ProxyTlsObjects {
        namespace: "idbind".into(),
        tls_secret: "idbind-proxy-tls".into(),
        ca_configmap: "idbind-proxy-ca".into(),
    }
}

fn manager(client: &kube::Client, policy: CertPolicy, clock: Arc<dyn Clock>) -> CertManager {
    let projection = Arc::new(ProxyProjection::new(client.clone(), objects()));
    CertManager::new(client.clone(), settings(policy), clock, projection)
}

fn default_policy() -> CertPolicy {
    CertPolicy {
        ca_validity: Duration::from_secs(365 * DAY),
        ca_renew_before: Duration::from_secs(60 * DAY),
        cert_validity: Duration::from_secs(30 * DAY),
        cert_renew_before: Duration::from_secs(10 * DAY),
        propagation_delay: Duration::from_secs(HOUR),
        retire_delay: Duration::from_secs(HOUR),
    }
}

async fn bundle_in(client: &kube::Client, ns: &str) -> Option<String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    api.get_opt("idbind-proxy-ca")
        .await
        .unwrap()?
        .data?
        .get("ca.crt")
        .cloned()
}

async fn tls_secret(client: &kube::Client) -> Secret {
    let api: Api<Secret> = Api::namespaced(client.clone(), "idbind");
    api.get("idbind-proxy-tls").await.unwrap()
}

fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

/// A TLS server answering `ok` to every connection, with the certificate files in `dir`
/// re-read on every handshake (as `idbind_tls::ReloadingCertResolver` does in the proxy).
async fn tls_server(dir: &Path, shutdown: CancellationToken) -> SocketAddr {
    let resolver = idbind_tls::ReloadingCertResolver::new(dir.join("tls.crt"), dir.join("tls.key"))
        .unwrap()
        .with_check_interval(Duration::ZERO);
    let config = Arc::new(idbind_tls::server_config_with_resolver(Arc::new(resolver)).unwrap());
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                () = shutdown.cancelled() => return,
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"ok").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    addr
}

/// One handshake and read; `Err` describes the failure.
async fn request(addr: SocketAddr, bundle: &str) -> Result<(), String> {
    let config = idbind_tls::client_config_with_roots(bundle).map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(ServerName::try_from(SNI).unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut buf = Vec::new();
    tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
    (buf == b"ok")
        .then_some(())
        .ok_or_else(|| format!("unexpected answer {buf:?}"))
}

#[tokio::test]
async fn bundle_goes_to_every_namespace_and_the_serving_secret_is_published() {
    let (_kube, client) = cluster(&["idbind", "apps", "team"]).await;
    let m = manager(&client, default_policy(), Arc::new(SystemClock));
    let (state, _) = m.reconcile().await.unwrap();
    assert_eq!(state.phase(), CertPhase::Stable);
    for ns in ["idbind", "apps", "team", "default"] {
        if ns == "default" && bundle_in(&client, ns).await.is_none() {
            continue; // the emulator may not have a default namespace
        }
        assert_eq!(
            bundle_in(&client, ns).await.as_deref(),
            Some(state.bundle_pem().as_str()),
            "namespace {ns}"
        );
    }
    let secret = tls_secret(&client).await;
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret_data(&secret);
    assert_eq!(data["tls.crt"], state.serving_cert_pem().as_bytes());
    assert_eq!(data["ca.crt"], state.bundle_pem().as_bytes());
    // The CA key stays in the controller's Secret only.
    assert!(!data.contains_key("ca.key"));
    let ca_secret: Api<Secret> = Api::namespaced(client.clone(), "idbind");
    let ca_data = secret_data(&ca_secret.get("idbind-proxy-ca-key").await.unwrap());
    assert!(ca_data.contains_key("ca.key") && ca_data.contains_key("state.json"));

    // A server with the published files is trusted by a client with the published bundle,
    // under the SNI name.
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), &data, &["tls.crt", "tls.key"]).unwrap();
    let stop = StopOnDrop(CancellationToken::new());
    let addr = tls_server(dir.path(), stop.0.clone()).await;
    request(addr, &bundle_in(&client, "apps").await.unwrap())
        .await
        .unwrap();

    // A second round changes nothing.
    let before = tls_secret(&client).await.metadata.resource_version;
    let (again, _) = m.reconcile().await.unwrap();
    assert_eq!(*again, *state);
    assert_eq!(tls_secret(&client).await.metadata.resource_version, before);

    // A bundle someone overwrote is put back; other keys of the ConfigMap are kept.
    let apps: Api<ConfigMap> = Api::namespaced(client.clone(), "apps");
    let mut cm = apps.get("idbind-proxy-ca").await.unwrap();
    let data = cm.data.get_or_insert_with(BTreeMap::new);
    data.insert("ca.crt".into(), "garbage".into());
    data.insert("note".into(), "mine".into());
    apps.replace("idbind-proxy-ca", &PostParams::default(), &cm)
        .await
        .unwrap();
    m.reconcile().await.unwrap();
    let cm = apps.get("idbind-proxy-ca").await.unwrap();
    assert_eq!(cm.data.as_ref().unwrap()["ca.crt"], state.bundle_pem());
    assert_eq!(cm.data.as_ref().unwrap()["note"], "mine");
}

#[tokio::test]
async fn a_new_namespace_gets_the_bundle_at_once() {
    let (_kube, client) = cluster(&["idbind"]).await;
    let m = manager(&client, default_policy(), Arc::new(SystemClock));
    let mut observed = m.subscribe();
    let stop = StopOnDrop(CancellationToken::new());
    let waker =
        idbind_controller::certs::proxy::wake_on_new_namespaces(client.clone(), m.waker(), stop.0.clone());
    tokio::spawn(waker);
    tokio::spawn(m.run(stop.0.clone()));
    let state = observed.wait_for(Option::is_some).await.unwrap().clone().unwrap();
    create_namespace(&client, "late").await;
    // The recheck interval is an hour: only the namespace watch can bring it this fast.
    let bundle = eventually("the bundle in namespace late", || async {
        bundle_in(&client, "late").await
    })
    .await;
    assert_eq!(bundle, state.bundle_pem());
}

/// What a renewal run saw.
#[derive(Debug, Default)]
struct Outcome {
    ok: u64,
    failures: Vec<String>,
    phases: Vec<CertPhase>,
    first_ca: String,
    last_ca: String,
    last_bundle_cas: usize,
}

/// Drives a CA renewal tick by tick on a manual clock while a client loops over TLS:
///
/// - "kubelet" copies the TLS Secret into the server's files and the bundle ConfigMap into the
///   client's CA file one tick (a minute) after they change;
/// - the client re-reads its CA file at most every 10 minutes (the Rust SDK's interval, the
///   slowest of the SDKs);
/// - the server re-reads its files on every handshake.
///
/// Between ticks the test waits until the client completed two more requests.
async fn renewal_under_load(policy: CertPolicy) -> Outcome {
    let (_kube, client) = cluster(&["idbind", "apps"]).await;
    let start = Timestamp::now();
    let clock = ManualClock::new(start);
    let m = manager(&client, policy, Arc::new(clock.clone()));
    let (state, _) = m.reconcile().await.unwrap();
    let first_ca = state.current_fingerprint().to_owned();

    let server_dir = tempfile::tempdir().unwrap();
    write_entries(
        server_dir.path(),
        &secret_data(&tls_secret(&client).await),
        &["tls.crt", "tls.key"],
    )
    .unwrap();
    let stop = StopOnDrop(CancellationToken::new());
    let addr = tls_server(server_dir.path(), stop.0.clone()).await;

    // The client: a CA file (as projected into the pod) it re-reads every 10 minutes.
    let ca_file: Arc<Mutex<String>> = Arc::new(Mutex::new(bundle_in(&client, "apps").await.unwrap()));
    let client_bundle: Arc<Mutex<String>> = Arc::new(Mutex::new(ca_file.lock().clone()));
    let done = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    {
        let (bundle, done, failures, token) = (
            client_bundle.clone(),
            done.clone(),
            failures.clone(),
            stop.0.clone(),
        );
        tokio::spawn(async move {
            while !token.is_cancelled() {
                let current = bundle.lock().clone();
                if let Err(e) = request(addr, &current).await {
                    failures.lock().push(e);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        });
    }

    let tick = Duration::from_secs(MINUTE);
    let mut last_read = start;
    let mut pending_server: Option<BTreeMap<String, Vec<u8>>> = None;
    let mut pending_ca: Option<String> = None;
    let mut phases = vec![state.phase()];
    // Jump to a minute before the renewal starts, then tick through it and a little past it.
    let renewal = state
        .current_ca_expires()
        .saturating_sub(policy.ca_renew_before)
        .unwrap();
    let jump = Duration::try_from(renewal.duration_since(start)).unwrap() - tick;
    clock.advance(jump);
    let ticks = (policy.propagation_delay + policy.retire_delay).as_secs() / MINUTE + 10;
    let mut last = state;
    for _ in 0..ticks {
        clock.advance(tick);
        let (state, _) = m.reconcile().await.unwrap();
        if phases.last() != Some(&state.phase()) {
            phases.push(state.phase());
        }
        // Kubelet: apply what it saw a tick ago, then look again.
        if let Some(data) = pending_server.take() {
            write_entries(server_dir.path(), &data, &["tls.crt", "tls.key"]).unwrap();
        }
        if let Some(bundle) = pending_ca.take() {
            *ca_file.lock() = bundle;
        }
        pending_server = Some(secret_data(&tls_secret(&client).await));
        pending_ca = bundle_in(&client, "apps").await;
        // The SDK re-reads its CA file every 10 minutes.
        let now = clock.now();
        if now.duration_since(last_read) >= jiff::SignedDuration::from_secs(10 * 60) {
            *client_bundle.lock() = ca_file.lock().clone();
            last_read = now;
        }
        let target = done.load(Ordering::SeqCst) + 2;
        eventually("two more client requests", || async {
            (done.load(Ordering::SeqCst) >= target).then_some(())
        })
        .await;
        last = state;
    }
    drop(stop);
    let failures = failures.lock().clone();
    Outcome {
        ok: done.load(Ordering::SeqCst) - failures.len() as u64,
        failures,
        phases,
        first_ca,
        last_ca: last.current_fingerprint().to_owned(),
        last_bundle_cas: last.bundle_fingerprints().len(),
    }
}

fn renewal_policy(propagation: Duration, retire: Duration) -> CertPolicy {
    CertPolicy {
        ca_validity: Duration::from_secs(30 * DAY),
        ca_renew_before: Duration::from_secs(10 * DAY),
        cert_validity: Duration::from_secs(5 * DAY),
        cert_renew_before: Duration::from_secs(2 * DAY),
        propagation_delay: propagation,
        retire_delay: retire,
    }
}

#[tokio::test]
async fn a_client_looping_over_tls_sees_no_failure_through_a_ca_renewal() {
    let outcome = renewal_under_load(renewal_policy(
        Duration::from_secs(HOUR),
        Duration::from_secs(HOUR),
    ))
    .await;
    assert!(
        outcome.failures.is_empty(),
        "failed requests: {:?}",
        outcome.failures
    );
    assert_eq!(
        outcome.phases,
        [
            CertPhase::Stable,
            CertPhase::Introduced,
            CertPhase::Switched,
            CertPhase::Stable
        ],
        "the renewal did not complete"
    );
    assert_ne!(outcome.first_ca, outcome.last_ca);
    assert_eq!(
        outcome.last_bundle_cas, 1,
        "the old CA should have left the bundle"
    );
    assert!(outcome.ok > 300, "only {} requests", outcome.ok);
}

/// The same run with a propagation delay shorter than the client's 10-minute re-read: the
/// switch reaches the server before the new CA reaches the client, and requests fail. This is
/// what the delay protects against (and shows the test above can fail).
#[tokio::test]
async fn a_too_short_propagation_delay_breaks_slow_clients() {
    let outcome = renewal_under_load(renewal_policy(
        Duration::from_secs(5 * MINUTE),
        Duration::from_secs(HOUR),
    ))
    .await;
    assert!(
        !outcome.failures.is_empty(),
        "expected failures; phases {:?}",
        outcome.phases
    );
    assert!(
        outcome.failures.iter().all(|f| f.contains("handshake")),
        "{:?}",
        outcome.failures
    );
}

#[tokio::test]
async fn state_survives_a_restart_of_the_manager_mid_renewal() {
    let (_kube, client) = cluster(&["idbind"]).await;
    let clock = ManualClock::new(Timestamp::now());
    let policy = renewal_policy(Duration::from_secs(HOUR), Duration::from_secs(HOUR));
    let first = manager(&client, policy, Arc::new(clock.clone()));
    let (state, at) = first.reconcile().await.unwrap();
    clock.set(
        at.max(
            state
                .current_ca_expires()
                .saturating_sub(policy.ca_renew_before)
                .unwrap(),
        ),
    );
    let (introduced, _) = first.reconcile().await.unwrap();
    assert_eq!(introduced.phase(), CertPhase::Introduced);
    drop(first);
    // A new leader reads the same state: nothing is regenerated, the switch comes on time.
    let second = manager(&client, policy, Arc::new(clock.clone()));
    let (read, at) = second.reconcile().await.unwrap();
    assert_eq!(*read, *introduced);
    clock.set(at);
    let (switched, _) = second.reconcile().await.unwrap();
    assert_eq!(switched.phase(), CertPhase::Switched);
    assert_eq!(
        switched.bundle_fingerprints()[1],
        introduced.current_fingerprint()
    );
    assert_eq!(bundle_in(&client, "idbind").await.unwrap(), switched.bundle_pem());
}

#[tokio::test]
async fn a_corrupt_state_secret_is_reported_not_replaced() {
    let (_kube, client) = cluster(&["idbind"]).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "idbind");
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("idbind-proxy-ca-key".into()),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([("state.json".into(), "{}".into())])),
        ..Secret::default()
    };
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let m = manager(&client, default_policy(), Arc::new(SystemClock));
    let e = m.reconcile().await.unwrap_err().to_string();
    assert!(
        e.contains("Secret idbind/idbind-proxy-ca-key entry state.json"),
        "{e}"
    );
    // Nothing was published from a state that could not be read.
    assert!(bundle_in(&client, "idbind").await.is_none());
}
