//! The `idbind-emulator` binary: ready line, seed, TLS, state file and clean shutdown on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use idbind_tls::CertificateAuthority;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const API: &str = "2024-11-30";

/// Kills the child if the test fails before it exits.
struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

#[tokio::test]
async fn binary_serves_https_from_a_seed_and_persists_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate("emulator test CA", Duration::from_secs(3600)).unwrap();
    let leaf = ca
        .issue_server_cert(
            &["localhost".to_owned()],
            &["127.0.0.1".parse().unwrap()],
            Duration::from_secs(3600),
        )
        .unwrap();
    let (cert, key, state) = (
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
        dir.path().join("state.json"),
    );
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/seed.yaml");

    let mut child = Child(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_idbind-emulator"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--advertised-host",
                "localhost",
                "--seed",
                seed,
            ])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg("--state")
            .arg(&state)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let info: Value = serde_json::from_str(&line).unwrap();
    let base = info["baseUrl"].as_str().unwrap().to_owned();
    assert!(base.starts_with("https://localhost:"), "{base}");
    assert_eq!(info["armEndpoint"], base);
    assert_eq!(info["authorityHost"], base);
    assert_eq!(info["adminUrl"], format!("{base}/_emulator"));
    assert_eq!(info["tenantId"], "72f988bf-86f1-41af-91ab-2d7cd011db47");
    assert_eq!(info["clientSecret"], "emulator-secret-change-me");

    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let token: Value = client
        .post(format!(
            "{base}/{}/oauth2/v2.0/token",
            info["tenantId"].as_str().unwrap()
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", info["clientId"].as_str().unwrap()),
            ("client_secret", info["clientSecret"].as_str().unwrap()),
            ("scope", "https://management.azure.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let sub = info["subscriptionId"].as_str().unwrap();
    let path = format!(
        "{base}/subscriptions/{sub}/resourceGroups/workloads/providers/Microsoft.ManagedIdentity/userAssignedIdentities/created-by-test?api-version={API}"
    );
    let resp = client
        .put(&path)
        .bearer_auth(&token)
        .json(&serde_json::json!({"location": "westeurope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
    let counters: Value = client
        .get(format!("{base}/_emulator/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["arm.identity.put"]["201"], 1);

    let pid = child.0.id().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let ids: Vec<&String> = saved["identities"].as_object().unwrap().keys().collect();
    assert!(ids.iter().any(|k| k.ends_with("/created-by-test")), "{ids:?}");
    assert!(ids.iter().any(|k| k.ends_with("/payments")), "{ids:?}");
}

#[tokio::test]
async fn binary_rejects_a_bad_seed_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.yaml");
    std::fs::write(&seed, "tenants:\n  - id: not-a-guid\n").unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_idbind-emulator"))
        .args(["--listen", "127.0.0.1:0", "--seed"])
        .arg(&seed)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("seed.yaml") && stderr.contains("tenant id"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
