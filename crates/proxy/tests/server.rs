//! The HTTPS listener over real TLS on loopback, with a fake exchanger: ALPN, certificate reload
//! without dropping connections, connection limit, timeouts, graceful shutdown, admin endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Certs, Fake, SNI, python_body};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use idbind_proxy::{
    AdminServer, ProxyMetrics, ProxyServer, ReadinessReport, ServerOptions, ServerTls, Surface,
    SurfaceConfig, TokenExchange,
};
use prometheus_client::registry::Registry;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const FORM: &str = "application/x-www-form-urlencoded";

struct Running {
    server: ProxyServer,
    tls: ServerTls,
    surface: Arc<Surface<Arc<Fake>>>,
}

async fn start(fake: Arc<Fake>, certs: &Certs, tweak: impl FnOnce(&mut ServerOptions)) -> Running {
    let tls = ServerTls::from_files(&certs.cert, &certs.key, Duration::ZERO).unwrap();
    let config = SurfaceConfig::new(url::Url::parse("https://login.microsoftonline.com").unwrap());
    let surface = Arc::new(Surface::new(fake, config, ProxyMetrics::default()));
    let mut options = ServerOptions::new("127.0.0.1:0".parse().unwrap());
    tweak(&mut options);
    let server = ProxyServer::start(surface.clone(), &tls, options).await.unwrap();
    Running { server, tls, surface }
}

fn client(certs: &Certs, addr: SocketAddr) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(certs.ca_pem().as_bytes()).unwrap()])
        .resolve(SNI, addr)
        .tls_info(true)
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("https://{SNI}:{}{path}", addr.port())
}

async fn post_token(client: &reqwest::Client, addr: SocketAddr) -> reqwest::Response {
    client
        .post(url(addr, "/"))
        .header("content-type", FORM)
        .body(python_body())
        .send()
        .await
        .unwrap()
}

/// A raw TLS connection, for tests that need to hold or reuse one connection.
async fn tls_connect(
    certs: &Certs,
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut config = idbind_tls::client_config_with_roots(certs.ca_pem()).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(SNI).unwrap(), tcp)
        .await
}

/// An HTTP/1.1 connection that sends token requests over one TLS session.
struct H1 {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    peer_cert: Vec<u8>,
}

impl H1 {
    async fn open(certs: &Certs, addr: SocketAddr) -> Self {
        let tls = tls_connect(certs, addr, &[b"http/1.1"]).await.unwrap();
        let peer_cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        Self { sender, peer_cert }
    }

    async fn token(&mut self) -> u16 {
        let req = http::Request::post("/")
            .header("host", SNI)
            .header("content-type", FORM)
            .body(Full::new(Bytes::from(python_body())))
            .unwrap();
        let response = self.sender.send_request(req).await.unwrap();
        let status = response.status().as_u16();
        response.into_body().collect().await.unwrap();
        status
    }
}

/// Polls `check` until it holds (tests wait on conditions, not on time).
async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn serves_h2_and_http11_by_alpn_over_tls12_and_13() {
    let certs = Certs::new();
    let running = start(Fake::ok(), &certs, |_| {}).await;
    let addr = running.server.local_addr();

    let h2 = client(&certs, addr).build().unwrap();
    let r = post_token(&h2, addr).await;
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(r.status(), 200);

    let h1 = client(&certs, addr).http1_only().build().unwrap();
    let r = post_token(&h1, addr).await;
    assert_eq!(r.version(), http::Version::HTTP_11);
    assert_eq!(r.status(), 200);

    let tls12 = client(&certs, addr)
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert_eq!(post_token(&tls12, addr).await.status(), 200);

    // No ALPN at all: HTTP/1.1 is detected from the bytes.
    let tls = tls_connect(&certs, addr, &[]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("/")
        .header("host", "anything")
        .header("content-type", FORM)
        .body(Full::new(Bytes::from(python_body())))
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
    assert_eq!(running.surface.metrics().request_count("token", 200, "ok"), 4);
}

#[tokio::test]
async fn replaced_certificate_serves_new_handshakes_and_keeps_open_connections() {
    let certs = Certs::new();
    let running = start(Fake::ok(), &certs, |_| {}).await;
    let addr = running.server.local_addr();

    let mut old = H1::open(&certs, addr).await;
    assert_eq!(old.token().await, 200);

    certs.rotate();
    let mut new = H1::open(&certs, addr).await;
    assert_ne!(
        new.peer_cert, old.peer_cert,
        "new handshakes get the new certificate"
    );
    assert_eq!(new.token().await, 200);
    assert_eq!(
        old.token().await,
        200,
        "the connection opened before the rotation still works"
    );
    assert_eq!(running.tls.certificate_reloads(), 1);

    // A half-written pair (new certificate, old key) is ignored; the current one stays.
    let other = idbind_tls::CertificateAuthority::generate("other", Duration::from_secs(3600)).unwrap();
    let stray = other
        .issue_server_cert(&[SNI.into()], &[], Duration::from_secs(3600))
        .unwrap();
    std::fs::write(&certs.cert, &stray.cert_pem).unwrap();
    let mut again = H1::open(&certs, addr).await;
    assert_eq!(again.peer_cert, new.peer_cert);
    assert_eq!(again.token().await, 200);
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_until_one_ends() {
    let certs = Certs::new();
    let running = start(Fake::ok(), &certs, |o| o.max_connections = 2).await;
    let addr = running.server.local_addr();
    let metrics = running.surface.metrics().clone();

    let mut first = H1::open(&certs, addr).await;
    let mut second = H1::open(&certs, addr).await;
    assert_eq!(first.token().await, 200);
    assert_eq!(second.token().await, 200);

    assert!(
        tls_connect(&certs, addr, &[b"http/1.1"]).await.is_err(),
        "a third connection is refused"
    );
    assert_eq!(metrics.connection_count("rejected_limit"), 1);

    drop(first);
    wait_for("a slot to free up", async || {
        metrics.connections_open.get() == 1 && tls_connect(&certs, addr, &[b"http/1.1"]).await.is_ok()
    })
    .await;
    assert_eq!(second.token().await, 200);
}

#[tokio::test]
async fn handshake_and_header_timeouts_close_silent_connections() {
    let certs = Certs::new();
    let running = start(Fake::ok(), &certs, |o| {
        o.handshake_timeout = Duration::from_millis(200);
        o.header_read_timeout = Duration::from_millis(200);
    })
    .await;
    let addr = running.server.local_addr();

    // Connects and never says hello.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(tcp.read(&mut buf).await.unwrap(), 0, "closed by the server");
    assert_eq!(running.surface.metrics().connection_count("handshake_timeout"), 1);

    // Sends half a request head and stalls.
    let mut tls = tls_connect(&certs, addr, &[b"http/1.1"]).await.unwrap();
    tls.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest).await;
    assert!(rest.is_empty() || String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 408"));
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight_and_refuses_new_connections() {
    let certs = Certs::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let fake = Fake::gated(gate.clone());
    let running = start(fake.clone(), &certs, |_| {}).await;
    let addr = running.server.local_addr();

    let c = client(&certs, addr).build().unwrap();
    let in_flight = tokio::spawn(async move { post_token(&c, addr).await.status() });
    wait_for("the request to reach the exchanger", async || fake.calls() == 1).await;

    let shutdown = tokio::spawn(running.server.shutdown());
    wait_for("the listener to close", async || {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    gate.add_permits(1);
    assert_eq!(in_flight.await.unwrap(), 200, "the request in flight completed");
    assert!(shutdown.await.unwrap().drained);
}

#[tokio::test]
async fn shutdown_is_bounded_by_the_grace_period() {
    let certs = Certs::new();
    let fake = Fake::gated(Arc::new(tokio::sync::Semaphore::new(0)));
    let running = start(fake.clone(), &certs, |o| {
        o.shutdown_grace = Duration::from_millis(100);
    })
    .await;
    let addr = running.server.local_addr();
    let c = client(&certs, addr).build().unwrap();
    let stuck = tokio::spawn(async move { c.post(url(addr, "/")).body(python_body()).send().await });
    wait_for("the request to reach the exchanger", async || fake.calls() == 1).await;
    assert!(!running.server.shutdown().await.drained);
    assert!(stuck.await.unwrap().is_err(), "the stuck request was cut");
}

#[tokio::test]
async fn admin_serves_metrics_health_and_readiness() {
    let certs = Certs::new();
    let fake = Fake::ok();
    fake.set_ready(false);
    let mut registry = Registry::default();
    let metrics = ProxyMetrics::register(registry.sub_registry_with_prefix("idbind"));
    let config = SurfaceConfig::new(url::Url::parse("https://login.microsoftonline.com").unwrap());
    let surface = Arc::new(Surface::new(fake.clone(), config, metrics));
    let tls = ServerTls::from_files(&certs.cert, &certs.key, Duration::ZERO).unwrap();
    let server = ProxyServer::start(
        surface.clone(),
        &tls,
        ServerOptions::new("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .unwrap();
    let readiness = {
        let fake = fake.clone();
        move || {
            let r = fake.readiness();
            ReadinessReport {
                bindings_synced: r.bindings_synced,
                keys_loaded: r.keys_loaded,
                certificate_loaded: true,
            }
        }
    };
    let admin = AdminServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(registry), readiness)
        .await
        .unwrap();
    let base = format!("http://{}", admin.local_addr());
    let http = reqwest::Client::new();

    assert_eq!(
        http.get(format!("{base}/healthz")).send().await.unwrap().status(),
        200
    );
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["checks"]["bindings_synced"], false);
    fake.set_ready(true);
    assert_eq!(
        http.get(format!("{base}/readyz")).send().await.unwrap().status(),
        200
    );

    let c = client(&certs, server.local_addr()).build().unwrap();
    assert_eq!(post_token(&c, server.local_addr()).await.status(), 200);
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"idbind_proxy_requests_total{route="token",status="200",outcome="ok"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("idbind_proxy_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(r#"idbind_proxy_connections_total{result="accepted"} 1"#),
        "{text}"
    );
    admin.shutdown().await;
}
