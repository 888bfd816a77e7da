//! Fault injection and counters, in-process and through the admin endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use idbind_emulator::{ARM_SCOPE, EmulatorConfig, Fault, Route, RouteSelector, STATUS_CONNECTION_RESET};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn fail_next_n_fails_exactly_n_requests() {
    let emu = start().await;
    let token = arm_token(&emu).await;
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "uami")
        .unwrap();
    emu.set_fault(Route::ArmIdentityGet, Fault::fail_next_with(2, 503));
    let path = format!("{}?api-version={API}", identity.resource_id);
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(arm(&emu, &token, Method::GET, &path, None).await.status.as_u16());
        }
        v
    };
    assert_eq!(statuses, [503, 503, 200]);
    let c = emu.counters();
    assert_eq!(c.get(Route::ArmIdentityGet, 503), 2);
    assert_eq!(c.get(Route::ArmIdentityGet, 200), 1);
    assert_eq!(c.total(Route::ArmIdentityGet), 3);
    assert_eq!(c.successes(Route::ArmIdentityGet), 1);
    emu.reset_counters();
    assert_eq!(emu.counters().total(Route::ArmIdentityGet), 0);
}

#[tokio::test]
async fn throttle_burst_answers_429_with_retry_after_then_recovers() {
    let emu = start().await;
    let token = arm_token(&emu).await;
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "uami")
        .unwrap();
    emu.set_fault(Route::ArmFicPut, Fault::throttle_next(2, 7));
    let path = fic_path(&identity, "fic1");
    for _ in 0..2 {
        let r = arm(
            &emu,
            &token,
            Method::PUT,
            &path,
            Some(fic_body("https://i.example/a", "s")),
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests")
        );
        assert_eq!(r.header("retry-after"), Some("7"));
        assert!(r.header("x-ms-request-id").is_some());
    }
    let r = arm(
        &emu,
        &token,
        Method::PUT,
        &path,
        Some(fic_body("https://i.example/a", "s")),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(emu.counters().get(Route::ArmFicPut, 429), 2);
}

#[tokio::test]
async fn entra_faults_use_the_entra_error_shape() {
    let emu = start().await;
    emu.set_fault(Route::EntraToken, Fault::fail_next(1));
    let sp = emu.default_principal();
    let client = sp.client_id.to_string();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client.as_str()),
        ("client_secret", sp.client_secret.as_str()),
        ("scope", ARM_SCOPE),
    ];
    let (status, body) = token_request(&emu, &sp.tenant_id.to_string(), &form).await;
    assert_entra_error(status, &body, 500, 90033);
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(
        token_request(&emu, &sp.tenant_id.to_string(), &form).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn outage_on_all_routes_until_cleared() {
    let emu = start().await;
    let token = arm_token(&emu).await;
    emu.set_fault(RouteSelector::All, Fault::outage().with_retry_after(3));
    let path = format!(
        "{}?api-version={API}",
        identity_path(&emu.default_subscription(), "rg", "x")
    );
    let r = arm(&emu, &token, Method::GET, &path, None).await;
    assert_eq!(
        (r.status, r.header("retry-after")),
        (StatusCode::SERVICE_UNAVAILABLE, Some("3"))
    );
    let sp = emu.default_principal();
    let (status, _) = token_request(
        &emu,
        &sp.tenant_id.to_string(),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // The admin surface is never faulted.
    let c: Value = http()
        .get(format!("{}/counters", emu.admin_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["arm.identity.get"]["503"], 1);
    emu.clear_faults();
    assert_eq!(
        arm(&emu, &token, Method::GET, &path, None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn connection_reset_outage_is_a_connection_error() {
    let emu = start().await;
    let token = arm_token(&emu).await;
    emu.set_fault(Route::ArmIdentityGet, Fault::connection_reset());
    let url = format!(
        "{}{}?api-version={API}",
        emu.base_url(),
        identity_path(&emu.default_subscription(), "rg", "x")
    );
    let err = http().get(&url).bearer_auth(&token).send().await.unwrap_err();
    assert!(!err.is_status(), "{err}");
    assert_eq!(
        emu.counters().get(Route::ArmIdentityGet, STATUS_CONNECTION_RESET),
        1
    );
    emu.clear_fault(Route::ArmIdentityGet);
    assert_eq!(
        http()
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn latency_and_random_errors_are_configurable_and_start_time_faults_apply() {
    let config = EmulatorConfig {
        faults: vec![(Route::EntraJwks.into(), Fault::error_rate(1.0).with_status(502))],
        ..EmulatorConfig::default()
    };
    let emu = idbind_emulator::start(config).await.unwrap();
    assert_eq!(
        http().get(emu.jwks_url()).send().await.unwrap().status(),
        StatusCode::BAD_GATEWAY
    );
    emu.set_fault(Route::EntraJwks, Fault::latency(Duration::from_millis(1)));
    assert_eq!(
        http().get(emu.jwks_url()).send().await.unwrap().status(),
        StatusCode::OK
    );
    emu.set_fault(Route::EntraJwks, Fault::error_rate(0.0));
    assert_eq!(
        http().get(emu.jwks_url()).send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn admin_endpoint_sets_faults_reads_and_resets_counters() {
    let emu = start().await;
    let admin = emu.admin_url();
    let c = http();
    let r = c
        .put(format!("{admin}/faults/entra.jwks"))
        .json(&json!({"failNext": 1, "errorStatus": 500}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let faults: Value = c
        .get(format!("{admin}/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["entra.jwks"]["failNext"], 1);
    assert_eq!(
        c.get(emu.jwks_url()).send().await.unwrap().status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        c.get(emu.jwks_url()).send().await.unwrap().status(),
        StatusCode::OK
    );
    let counters: Value = c
        .get(format!("{admin}/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["entra.jwks"], json!({"200": 1, "500": 1}));
    assert!(counters.get("admin").is_none(), "admin requests are not counted");
    assert_eq!(
        c.post(format!("{admin}/counters/reset"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    let counters: Value = c
        .get(format!("{admin}/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters, json!({}));
    // Bad input is a clear 400.
    let r = c
        .put(format!("{admin}/faults/arm.nope"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let msg = r.text().await.unwrap();
    assert!(msg.contains("arm.fic.put"), "{msg}");
    let r = c
        .put(format!("{admin}/faults/*"))
        .json(&json!({"outage": "serviceUnavailable"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        c.get(emu.jwks_url()).send().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        c.delete(format!("{admin}/faults")).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.get(emu.jwks_url()).send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn admin_endpoint_seeds_tenants_principals_identities_and_throttle() {
    let emu = start().await;
    let admin = emu.admin_url();
    let c = http();
    let tenant: Value = c
        .post(format!("{admin}/tenants"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tenant = tenant["tenantId"].as_str().unwrap().to_owned();
    let sp: Value = c
        .post(format!("{admin}/service-principals"))
        .json(&json!({"tenantId": tenant}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = secret_token(
        &emu,
        &tenant,
        sp["clientId"].as_str().unwrap(),
        sp["clientSecret"].as_str().unwrap(),
        ARM_SCOPE,
    )
    .await;
    assert!(!token.is_empty());
    let identity: Value = c
        .post(format!("{admin}/identities"))
        .json(&json!({"resourceGroup": "rg", "name": "made-by-admin"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        identity["resourceId"]
            .as_str()
            .unwrap()
            .ends_with("/userAssignedIdentities/made-by-admin")
    );
    assert_eq!(identity["tenantId"], emu.default_tenant().to_string());
    let seed = format!(
        "tenants:\n  - id: {tenant}\n    subscriptions:\n      - id: 00000000-0000-0000-0000-0000000000b1\n        resourceGroups:\n          - name: g\n            identities:\n              - name: seeded\n"
    );
    assert_eq!(
        c.post(format!("{admin}/seed"))
            .body(seed)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    let id =
        idbind_model::IdentityResourceId::new("00000000-0000-0000-0000-0000000000b1", "g", "seeded").unwrap();
    assert_eq!(emu.identity(&id).unwrap().tenant_id.to_string(), tenant);
    let r = c.put(format!("{admin}/throttle")).json(&json!({"enabled": true, "reads": {"capacity": 1, "refillPerSecond": 0.0}, "writes": {"capacity": 1, "refillPerSecond": 0.0}, "deletes": {"capacity": 1, "refillPerSecond": 0.0}})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(emu.throttle().reads.capacity, 1);
    let r = c
        .put(format!("{admin}/fic-write-hold"))
        .json(&json!({"millis": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let info: Value = c
        .get(format!("{admin}/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["baseUrl"], emu.base_url());
    assert_eq!(
        c.get(format!("{admin}/nothing")).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn admin_metrics_expose_request_counters_in_prometheus_format() {
    let emu = start().await;
    assert_eq!(
        http().get(emu.jwks_url()).send().await.unwrap().status(),
        StatusCode::OK
    );
    let text = http()
        .get(format!("{}/metrics", emu.admin_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"idbind_emulator_requests_total{route="entra.jwks",status="200"} 1"#),
        "{text}"
    );
    assert_eq!(
        http()
            .get(format!("{}/readyz", emu.admin_url()))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}
