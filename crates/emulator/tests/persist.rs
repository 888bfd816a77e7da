//! The state file: everything survives a restart; interrupted writes never corrupt it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use idbind_emulator::{EmulatorConfig, Error, FicInfo, Seed};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn config(path: &std::path::Path) -> EmulatorConfig {
    EmulatorConfig {
        state_file: Some(path.to_path_buf()),
        ..EmulatorConfig::default()
    }
}

#[tokio::test]
async fn state_survives_restart_including_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let emu = idbind_emulator::start(config(&file)).await.unwrap();
    let token = arm_token(&emu).await;
    let sub = emu.default_subscription();
    let sp = emu.default_principal();
    let other_tenant = emu.create_tenant().unwrap();
    let r = arm(
        &emu,
        &token,
        Method::PUT,
        &format!("{}?api-version={API}", identity_path(&sub, "rg", "kept")),
        Some(json!({"location": "westeurope"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let client_id = r.body["properties"]["clientId"].clone();
    let id = idbind_model::IdentityResourceId::new(&sub, "rg", "kept").unwrap();
    let identity = emu.identity(&id).unwrap();
    let r = arm(
        &emu,
        &token,
        Method::PUT,
        &fic_path(&identity, "idbind"),
        Some(fic_body("https://i.example/a", "s")),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Written after each change, before the answer.
    let on_disk = std::fs::read_to_string(&file).unwrap();
    assert!(on_disk.contains("https://i.example/a"));
    emu.shutdown().await;

    let emu = idbind_emulator::start(config(&file)).await.unwrap();
    assert_eq!(emu.default_subscription(), sub);
    assert_eq!(emu.default_principal(), sp);
    let r = arm(
        &emu,
        &token,
        Method::GET,
        &format!("{id}?api-version={API}"),
        None,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the old token still works: the signing key persisted"
    );
    assert_eq!(r.body["properties"]["clientId"], client_id);
    assert_eq!(
        emu.fics(&id).unwrap(),
        vec![FicInfo::new("idbind", "https://i.example/a", "s")]
    );
    assert!(
        emu.create_service_principal(&other_tenant).is_ok(),
        "tenants persisted"
    );
}

#[tokio::test]
async fn a_torn_temp_file_does_not_corrupt_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let emu = idbind_emulator::start(config(&file)).await.unwrap();
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "survivor")
        .unwrap();
    emu.shutdown().await;
    // A crash in the middle of a later write leaves a partial temp file beside the state file.
    let temp = dir.path().join("state.json.tmp");
    let full = std::fs::read(&file).unwrap();
    std::fs::write(&temp, &full[..full.len() / 2]).unwrap();
    let emu = idbind_emulator::start(config(&file)).await.unwrap();
    assert_eq!(emu.identity(&identity.resource_id).unwrap(), identity);
    assert!(!temp.exists(), "the leftover temp file is removed");
    emu.create_identity(&emu.default_subscription(), "rg", "after")
        .unwrap();
    assert!(serde_json::from_slice::<serde_json::Value>(&std::fs::read(&file).unwrap()).is_ok());
}

#[tokio::test]
async fn a_corrupt_state_file_is_an_error_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    std::fs::write(&file, b"{\"format\": 1, \"signingKey\": ").unwrap();
    let err = idbind_emulator::start(config(&file)).await.unwrap_err();
    assert!(matches!(err, Error::StateParse { .. }), "{err}");
    assert!(err.to_string().contains("state.json"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"{\"format\": 1, \"signingKey\": ");
}

#[tokio::test]
async fn seed_is_applied_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let seed: Seed = include_str!("../examples/seed.yaml").parse().unwrap();
    let emu = idbind_emulator::start(EmulatorConfig {
        seed: Some(seed),
        ..config(&file)
    })
    .await
    .unwrap();
    let info = emu.info();
    assert_eq!(info.tenant_id.to_string(), "72f988bf-86f1-41af-91ab-2d7cd011db47");
    assert_eq!(info.client_id.to_string(), "0b5f8e4c-7a39-4f5e-9d7e-3c1f2a6b8d90");
    assert_eq!(info.client_secret, "emulator-secret-change-me");
    assert_eq!(info.subscription_id, "00000000-0000-0000-0000-000000000001");
    let id = idbind_model::IdentityResourceId::new(
        "00000000-0000-0000-0000-000000000001",
        "workloads",
        "payments",
    )
    .unwrap();
    let payments = emu.identity(&id).unwrap();
    assert_eq!(
        payments.client_id.to_string(),
        "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
    );
    assert_eq!(emu.fics(&id).unwrap().len(), 1);
    // The seeded principal authenticates; the restricted one is limited to its resource group.
    let token = arm_token(&emu).await;
    let r = arm(
        &emu,
        &token,
        Method::GET,
        &format!("{id}?api-version={API}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let limited = secret_token(
        &emu,
        "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "5c3e1f20-1b2a-4c3d-8e9f-0a1b2c3d4e5f",
        "another-secret",
        idbind_emulator::ARM_SCOPE,
    )
    .await;
    assert_eq!(
        arm(
            &emu,
            &limited,
            Method::GET,
            &format!("{id}?api-version={API}"),
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    let elsewhere = identity_path("00000000-0000-0000-0000-000000000001", "other", "x");
    assert_eq!(
        arm(
            &emu,
            &limited,
            Method::GET,
            &format!("{elsewhere}?api-version={API}"),
            None
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    emu.shutdown().await;
    // Re-applying the same seed on restart changes nothing.
    let seed: Seed = include_str!("../examples/seed.yaml").parse().unwrap();
    let emu = idbind_emulator::start(EmulatorConfig {
        seed: Some(seed),
        ..config(&file)
    })
    .await
    .unwrap();
    assert_eq!(emu.identity(&id).unwrap(), payments);
    assert_eq!(emu.fics(&id).unwrap().len(), 1);
}
