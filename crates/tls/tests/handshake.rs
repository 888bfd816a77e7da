#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Real TLS handshakes over loopback: SAN checks, ALPN, CA trust, and certificate reload.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use idbind_tls::{
    CertificateAuthority, ReloadingCertResolver, client_config_with_roots, server_config_with_resolver,
};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const DAY: Duration = Duration::from_secs(86400);

/// An echo-ish TLS server on port 0 that answers every connection with one line naming the
/// negotiated ALPN protocol; aborted on drop.
struct Server {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(config: rustls::ServerConfig) -> Server {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let alpn = tls
                        .get_ref()
                        .1
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned());
                    let line = format!("{}\n", alpn.unwrap_or_else(|| "none".into()));
                    let _ = tls.write_all(line.as_bytes()).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    Server { addr, task }
}

async fn connect(addr: std::net::SocketAddr, ca_pem: &str, sni: &str) -> Result<(String, Vec<u8>), String> {
    let connector = TlsConnector::from(Arc::new(client_config_with_roots(ca_pem).unwrap()));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let mut out = String::new();
    tls.read_to_string(&mut out).await.map_err(|e| e.to_string())?;
    Ok((out.trim().to_owned(), leaf))
}

fn write_pair(dir: &std::path::Path, pem: &idbind_tls::CertifiedKeyPem) {
    // Replace atomically, as a Secret volume update does.
    for (name, data) in [("tls.crt", &pem.cert_pem), ("tls.key", &pem.key_pem)] {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, data).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

#[tokio::test]
async fn handshake_checks_san_and_negotiates_h2() {
    let ca = CertificateAuthority::generate("test CA", DAY).unwrap();
    let leaf = ca
        .issue_server_cert(
            &["proxy.test.sni".into()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            DAY,
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &leaf);
    let resolver =
        ReloadingCertResolver::new(dir.path().join("tls.crt"), dir.path().join("tls.key")).unwrap();
    let server = serve(server_config_with_resolver(Arc::new(resolver)).unwrap()).await;

    let (alpn, _) = connect(server.addr, ca.cert_pem(), "proxy.test.sni")
        .await
        .unwrap();
    assert_eq!(alpn, "h2");
    let (_, _) = connect(server.addr, ca.cert_pem(), "127.0.0.1").await.unwrap();

    let wrong_name = connect(server.addr, ca.cert_pem(), "other.test.sni")
        .await
        .unwrap_err();
    assert!(
        wrong_name.contains("NotValidForName") || wrong_name.contains("not valid"),
        "{wrong_name}"
    );

    let other_ca = CertificateAuthority::generate("other CA", DAY).unwrap();
    let untrusted = connect(server.addr, other_ca.cert_pem(), "proxy.test.sni")
        .await
        .unwrap_err();
    assert!(
        untrusted.contains("UnknownIssuer") || untrusted.contains("issuer"),
        "{untrusted}"
    );
}

#[tokio::test]
async fn resolver_follows_rotated_files_and_keeps_serving_on_bad_pairs() {
    let ca = CertificateAuthority::generate("test CA", DAY).unwrap();
    let first = ca
        .issue_server_cert(&["proxy.test.sni".into()], &[], DAY)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &first);
    let resolver = Arc::new(
        ReloadingCertResolver::new(dir.path().join("tls.crt"), dir.path().join("tls.key"))
            .unwrap()
            .with_check_interval(Duration::ZERO),
    );
    let server = serve(server_config_with_resolver(resolver.clone()).unwrap()).await;
    let (_, leaf1) = connect(server.addr, ca.cert_pem(), "proxy.test.sni")
        .await
        .unwrap();

    let second = ca
        .issue_server_cert(&["proxy.test.sni".into()], &[], DAY)
        .unwrap();
    write_pair(dir.path(), &second);
    let (_, leaf2) = connect(server.addr, ca.cert_pem(), "proxy.test.sni")
        .await
        .unwrap();
    assert_ne!(leaf1, leaf2, "a new handshake must see the rotated certificate");
    assert_eq!(resolver.reloads(), 1);

    // Half-rotated: a new certificate with the old key. The old pair stays in use.
    let third = ca
        .issue_server_cert(&["proxy.test.sni".into()], &[], DAY)
        .unwrap();
    std::fs::write(dir.path().join("tls.crt"), &third.cert_pem).unwrap();
    let (_, leaf3) = connect(server.addr, ca.cert_pem(), "proxy.test.sni")
        .await
        .unwrap();
    assert_eq!(leaf3, leaf2);
    assert!(resolver.reload().is_err());

    // Garbage is refused the same way.
    std::fs::write(dir.path().join("tls.crt"), "not a certificate").unwrap();
    assert!(
        connect(server.addr, ca.cert_pem(), "proxy.test.sni")
            .await
            .is_ok()
    );
}

#[test]
fn ca_round_trips_through_pem_and_bad_input_is_an_error() {
    let ca = CertificateAuthority::generate("test CA", DAY).unwrap();
    let again = CertificateAuthority::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
    let leaf = again.issue_server_cert(&["a.example".into()], &[], DAY).unwrap();
    assert!(idbind_tls::certified_key(&leaf.cert_pem, &leaf.key_pem).is_ok());
    let expiry = idbind_tls::not_after(&leaf.cert_pem).unwrap();
    let left = expiry.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(left <= DAY && left > DAY - Duration::from_secs(3600));

    assert!(CertificateAuthority::from_pem("junk", ca.key_pem()).is_err());
    assert!(idbind_tls::client_config_with_roots("").is_err());
    assert!(matches!(
        ca.issue_server_cert(&[], &[], DAY),
        Err(idbind_tls::Error::NoSubjectNames)
    ));
    assert!(ca.issue_server_cert(&["bad name!".into()], &[], DAY).is_err());
    let other = ca.issue_server_cert(&["b.example".into()], &[], DAY).unwrap();
    let mismatch = idbind_tls::certified_key(&leaf.cert_pem, &other.key_pem)
        .unwrap_err()
        .to_string();
    assert!(mismatch.contains("do not match"), "{mismatch}");
}
