//! Signing keys and the serving certificate replaced while clients keep asking (issue 6, "Must
//! show"): no request fails. Every request asks for a scope not asked before, so each one is a
//! real exchange with Entra signed with the key in use at that moment; some clients keep one
//! connection (opened before the rotation), others open a new one each time (new handshakes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use idbind_tests::Stack;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    next_scope: AtomicU64,
}

async fn client_loop(stack: Arc<Stack>, tally: Arc<Tally>, stop: Arc<AtomicBool>, fresh_connections: bool) {
    let assertion = std::fs::read_to_string(stack.token_file()).unwrap();
    let mut client = stack.https_client().unwrap();
    while !stop.load(Ordering::SeqCst) {
        if fresh_connections {
            client = stack
                .https_client_builder()
                .unwrap()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
        }
        let n = tally.next_scope.fetch_add(1, Ordering::SeqCst);
        let form = stack.token_form(&assertion, &format!("api://rotation-{n}/.default"));
        let result = client
            .post(stack.token_url("/"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await;
        match result {
            Ok(r) if r.status() == 200 => {
                tally.ok.fetch_add(1, Ordering::SeqCst);
            }
            Ok(r) => {
                let status = r.status();
                eprintln!(
                    "request {n} failed: {status} {}",
                    r.text().await.unwrap_or_default()
                );
                tally.failed.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                eprintln!("request {n} failed: {e}");
                tally.failed.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

async fn wait_for(what: &str, check: impl Fn() -> bool) {
    for _ in 0..1500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_certificate_replaced_while_clients_loop() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_test_writer()
        .try_init();
    let stack = Arc::new(
        Stack::builder()
            .exchanger(|c| c.key_reload_interval = Duration::from_millis(50))
            .start()
            .await
            .unwrap(),
    );
    let proxy = stack.proxy().unwrap();
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = [false, false, true]
        .into_iter()
        .map(|fresh| tokio::spawn(client_loop(stack.clone(), tally.clone(), stop.clone(), fresh)))
        .collect();
    let ok_after = |at_least: u64| {
        let tally = tally.clone();
        move || tally.ok.load(Ordering::SeqCst) >= at_least
    };
    wait_for("requests before the rotations", ok_after(10)).await;

    // Key rotation: published to the JWKS first, then swapped into the key files.
    let old_kid = proxy.exchanger.keys().signing_kid().unwrap();
    let new_kid = stack.rotate_signing_key().await.unwrap();
    assert_ne!(old_kid, new_kid);
    wait_for("the proxy to sign with the new key", || {
        proxy.exchanger.keys().signing_kid().as_deref() == Some(new_kid.as_str())
    })
    .await;
    let after_keys = tally.ok.load(Ordering::SeqCst);
    wait_for("exchanges signed with the new key", ok_after(after_keys + 10)).await;

    // Certificate rotation.
    stack.rotate_certificate().unwrap();
    wait_for("new handshakes to get the new certificate", || {
        proxy.tls.certificate_reloads() >= 1
    })
    .await;
    let after_cert = tally.ok.load(Ordering::SeqCst);
    wait_for(
        "requests after the certificate rotation",
        ok_after(after_cert + 10),
    )
    .await;

    stop.store(true, Ordering::SeqCst);
    for l in loops {
        l.await.unwrap();
    }
    assert_eq!(tally.failed.load(Ordering::SeqCst), 0, "no request failed");
    let ok = tally.ok.load(Ordering::SeqCst);
    assert_eq!(stack.entra_calls(), ok, "every request was a fresh exchange");

    // A brand-new client sees the new certificate.
    let certs = idbind_tls::parse_certs(&std::fs::read_to_string(stack.tls_cert_file()).unwrap()).unwrap();
    let response = stack
        .https_client_builder()
        .unwrap()
        .tls_info(true)
        .build()
        .unwrap()
        .post(stack.token_url("/"))
        .body(stack.token_form(
            &std::fs::read_to_string(stack.token_file()).unwrap(),
            "api://last/.default",
        ))
        .send()
        .await
        .unwrap();
    let info = response.extensions().get::<reqwest::tls::TlsInfo>().unwrap();
    assert_eq!(info.peer_certificate(), Some(certs[0].as_ref()));
    assert_eq!(response.status(), 200);
}
