//! The `idbind-proxy` binary against a whole stack (Kubernetes API and Azure emulators, issuer):
//! it serves tokens, exposes metrics and readiness, and drains on SIGTERM; it refuses to start
//! without its keys or certificate, naming what is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use idbind_tests::{ProxyMode, ProxyProcess, SCOPE, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_idbind-proxy");

#[tokio::test]
async fn serves_a_stack_reports_metrics_and_drains_on_sigterm() {
    let stack = Stack::builder()
        .proxy_mode(ProxyMode::External)
        .start()
        .await
        .unwrap();
    let proxy = ProxyProcess::start(&stack, Path::new(BIN), &["--log-format", "plain"])
        .await
        .unwrap();
    proxy.wait_ready().await.unwrap();

    let assertion = std::fs::read_to_string(stack.token_file()).unwrap();
    let response = stack
        .https_client()
        .unwrap()
        .post(stack.token_url(&format!("/{}/oauth2/v2.0/token", stack.tenant_id())))
        .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
        .body(stack.token_form(&format!("{assertion}\n"), SCOPE))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    stack
        .assert_identity_token(body["access_token"].as_str().unwrap())
        .await
        .unwrap();

    let admin = proxy.admin_url();
    assert_eq!(
        reqwest::get(format!("{admin}/healthz")).await.unwrap().status(),
        200
    );
    let metrics = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"idbind_proxy_requests_total{route="token",status="200",outcome="ok"} 1"#,
        r#"idbind_exchanges_total{outcome="ok"} 1"#,
        r#"idbind_cache_requests_total{cache="token",result="miss"} 1"#,
        "idbind_upstream_request_duration_seconds_count 1",
        "idbind_token_cache_entries 1",
        "idbind_proxy_request_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(needle), "{needle} missing in\n{metrics}");
    }

    let listen = proxy.listen;
    let status = proxy.terminate().await.unwrap();
    assert!(status.success(), "exits cleanly on SIGTERM: {status}");
    assert!(
        tokio::net::TcpStream::connect(listen).await.is_err(),
        "no longer listening"
    );
}

fn run(args: &[&str]) -> (bool, String) {
    let output = Command::new(BIN)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn refuses_to_start_without_keys_or_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).display().to_string();
    let common = [
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--log-format",
        "plain",
    ];

    let (ok, stderr) = run(&[
        &common[..],
        &[
            "--keys-dir",
            &d("no-keys"),
            "--tls-cert",
            &d("c"),
            "--tls-key",
            &d("k"),
        ],
    ]
    .concat());
    assert!(!ok);
    assert!(
        stderr.contains("--keys-dir") && stderr.contains("no-keys"),
        "{stderr}"
    );

    std::fs::create_dir(dir.path().join("keys")).unwrap();
    let keys = idbind_issuer::KeySet::generate(
        idbind_issuer::ClusterName::parse("east").unwrap(),
        jiff::Timestamp::now(),
    )
    .unwrap();
    idbind_exchange::write_key_dir(&dir.path().join("keys"), &keys).unwrap();
    let (ok, stderr) = run(&[
        &common[..],
        &[
            "--keys-dir",
            &d("keys"),
            "--tls-cert",
            &d("missing.crt"),
            "--tls-key",
            &d("k"),
        ],
    ]
    .concat());
    assert!(!ok);
    assert!(
        stderr.contains("--tls-cert") && stderr.contains("missing.crt"),
        "{stderr}"
    );

    let (ok, stderr) = run(&[
        &common[..],
        &[
            "--keys-dir",
            &d("keys"),
            "--tls-cert",
            &d("c"),
            "--tls-key",
            &d("k"),
            "--request-timeout",
            "5",
        ],
    ]
    .concat());
    assert!(!ok);
    assert!(stderr.contains("unit is missing"), "{stderr}");
}
