//! Every credential type: client secret and workload identity against the emulator's Entra, the
//! token-file re-read with a mock token endpoint, IMDS against a mock, and the static token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use idbind_arm::{
    ArmClient, ClientSecretCredential, Credential, HttpOptions, ManagedIdentityCredential, PUBLIC_ARM_SCOPE,
    RetryPolicy, StaticTokenCredential, WorkloadIdentityCredential,
};
use idbind_emulator::{EmulatorConfig, FicInfo, Route};
use idbind_model::{ClientId, TenantId};
use serde_json::json;
use std::collections::HashMap;
use support::{MockServer, TestIssuer, cloud, fast_policy};
use url::Url;

#[tokio::test]
async fn client_secret_tokens_come_from_entra_and_are_cached() {
    let emu = idbind_emulator::start(EmulatorConfig::default()).await.unwrap();
    let sp = emu.default_principal();
    let cred = ClientSecretCredential::new(
        &cloud(&emu).authority_host,
        sp.tenant_id,
        sp.client_id,
        sp.client_secret,
    )
    .unwrap();
    let first = cred.token(PUBLIC_ARM_SCOPE).await.unwrap();
    assert_eq!(first.secret.expose().split('.').count(), 3, "a JWT");
    assert!(first.expires_at > jiff::Timestamp::now() + jiff::SignedDuration::from_hours(23));
    let again = cred.token(PUBLIC_ARM_SCOPE).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(
        emu.counters().get(Route::EntraToken, 200),
        1,
        "the second call is served from the cache"
    );

    // Concurrent callers for a new scope share one request.
    let cred = Arc::new(cred);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let cred = cred.clone();
            tokio::spawn(async move { cred.token("https://vault.azure.net/.default").await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(emu.counters().get(Route::EntraToken, 200), 2);
}

#[tokio::test]
async fn a_wrong_secret_is_a_credential_error_with_entra_codes() {
    let emu = idbind_emulator::start(EmulatorConfig::default()).await.unwrap();
    let sp = emu.default_principal();
    let cred = ClientSecretCredential::new(&cloud(&emu).authority_host, sp.tenant_id, sp.client_id, "wrong")
        .unwrap();
    let err = cred.token(PUBLIC_ARM_SCOPE).await.unwrap_err();
    let c = err.credential().unwrap();
    assert_eq!(c.credential, "ClientSecretCredential");
    assert_eq!(c.code.as_deref(), Some("invalid_client"));
    assert!(c.status.is_some_and(|s| s == 400 || s == 401), "{err}");
    assert!(
        !c.error_codes.is_empty() && c.message.starts_with("AADSTS"),
        "{err}"
    );
    assert!(
        !err.to_string().contains("wrong"),
        "the secret never appears in errors: {err}"
    );

    // Through the ARM client: a credential error, and ARM is never called.
    let arm = ArmClient::new(cloud(&emu), Arc::new(cred), fast_policy()).unwrap();
    let id = idbind_model::IdentityResourceId::new(&emu.default_subscription(), "rg", "x").unwrap();
    assert!(arm.get_identity(&id).await.unwrap_err().is_credential());
    assert_eq!(emu.counters().total(Route::ArmIdentityGet), 0);
}

#[tokio::test]
async fn workload_identity_exchanges_the_token_file_for_an_identity_token() {
    let emu = idbind_emulator::start(EmulatorConfig::default()).await.unwrap();
    let issuer = TestIssuer::start().await;
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "workload")
        .unwrap();
    let id = identity.resource_id.clone();
    let subject = "system:serviceaccount:default:app";
    emu.put_fic(&id, &FicInfo::new("k8s", &issuer.url, subject))
        .unwrap();
    emu.set_identity_arm_scopes(&id, vec![id.to_string()]).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, issuer.assertion(subject)).unwrap();
    let cred = WorkloadIdentityCredential::new(
        &cloud(&emu).authority_host,
        identity.tenant_id,
        identity.client_id,
        &file,
    )
    .unwrap();

    // The identity's own token reads the identity through ARM.
    let arm = ArmClient::new(cloud(&emu), Arc::new(cred), fast_policy()).unwrap();
    let read = arm.get_identity(&id).await.unwrap();
    assert_eq!(read.client_id, identity.client_id);

    // An assertion for another subject is refused with Entra's code, as a credential error.
    std::fs::write(&file, issuer.assertion("system:serviceaccount:default:other")).unwrap();
    let cred = WorkloadIdentityCredential::new(
        &cloud(&emu).authority_host,
        identity.tenant_id,
        identity.client_id,
        &file,
    )
    .unwrap();
    let err = cred.token(PUBLIC_ARM_SCOPE).await.unwrap_err();
    let c = err.credential().unwrap();
    assert!(
        c.error_codes
            .iter()
            .any(|code| code.to_string().starts_with("70021")),
        "{err}"
    );
}

#[derive(Default)]
struct Seen {
    assertions: Vec<String>,
    forms: Vec<HashMap<String, String>>,
}

#[tokio::test]
async fn the_token_file_is_read_again_for_every_token_request() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let router = Router::new()
        .route(
            "/{tenant}/oauth2/v2.0/token",
            post(|State(seen): State<Arc<Mutex<Seen>>>, Form(form): Form<HashMap<String, String>>| async move {
                let mut s = seen.lock().unwrap();
                s.assertions.push(form.get("client_assertion").cloned().unwrap_or_default());
                s.forms.push(form);
                // Already expired: every call goes back to the endpoint.
                Json(json!({"token_type": "Bearer", "expires_in": 0, "access_token": format!("t{}", s.assertions.len())}))
            }),
        )
        .with_state(seen.clone());
    let server = MockServer::start(router).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let tenant = TenantId::new_random();
    let client = ClientId::new_random();
    let cred =
        WorkloadIdentityCredential::new(&Url::parse(&server.url).unwrap(), tenant, client, &file).unwrap();

    std::fs::write(&file, "first.jwt.value\n").unwrap();
    assert_eq!(
        cred.token("api://x/.default").await.unwrap().secret.expose(),
        "t1"
    );
    std::fs::write(&file, "rotated.jwt.value").unwrap();
    assert_eq!(
        cred.token("api://x/.default").await.unwrap().secret.expose(),
        "t2"
    );

    let s = seen.lock().unwrap();
    assert_eq!(s.assertions, ["first.jwt.value", "rotated.jwt.value"]);
    let form = &s.forms[0];
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], client.to_string());
    assert_eq!(form["scope"], "api://x/.default");
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
}

#[derive(Default)]
struct Imds {
    queries: Vec<HashMap<String, String>>,
    metadata_headers: Vec<Option<String>>,
    /// Statuses to answer before succeeding.
    failures: Vec<u16>,
}

async fn imds(
    State(state): State<Arc<Mutex<Imds>>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> axum::response::Response {
    let mut s = state.lock().unwrap();
    s.queries.push(q);
    s.metadata_headers.push(
        headers
            .get("metadata")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    );
    if !s.failures.is_empty() {
        let status = s.failures.remove(0);
        let body = json!({"error": "identity_unavailable", "error_description": "not yet"});
        return (StatusCode::from_u16(status).unwrap(), Json(body)).into_response();
    }
    let expires_on = (jiff::Timestamp::now().as_second() + 3600).to_string();
    Json(
        json!({"access_token": "imds-token", "expires_on": expires_on, "expires_in": "3600",
        "resource": "https://management.azure.com/", "token_type": "Bearer"}),
    )
    .into_response()
}

#[tokio::test]
async fn managed_identity_asks_imds_with_the_metadata_header_and_retries_its_transient_answers() {
    let state = Arc::new(Mutex::new(Imds {
        failures: vec![404, 410, 429, 500],
        ..Imds::default()
    }));
    let server = MockServer::start(
        Router::new()
            .route("/metadata/identity/oauth2/token", get(imds))
            .with_state(state.clone()),
    )
    .await;
    let endpoint = Url::parse(&format!("{}/metadata/identity/oauth2/token", server.url)).unwrap();
    let client = ClientId::new_random();
    let retries = support::Retries::default();
    let policy = retries.hook(RetryPolicy::default().base_delay(Duration::from_millis(1)));
    let cred = ManagedIdentityCredential::with_options(
        endpoint.clone(),
        Some(client),
        &HttpOptions::default(),
        policy,
    )
    .unwrap();

    let token = cred.token(PUBLIC_ARM_SCOPE).await.unwrap();
    assert_eq!(token.secret.expose(), "imds-token");
    assert!(token.expires_at > jiff::Timestamp::now() + jiff::SignedDuration::from_mins(59));
    assert_eq!(
        retries.events().iter().map(|e| e.status).collect::<Vec<_>>(),
        [Some(404), Some(410), Some(429), Some(500)]
    );
    cred.token(PUBLIC_ARM_SCOPE).await.unwrap();

    {
        let s = state.lock().unwrap();
        assert_eq!(s.queries.len(), 5, "four failures, one success, then the cache");
        let q = &s.queries[4];
        assert_eq!(q["api-version"], "2018-02-01");
        assert_eq!(
            q["resource"], "https://management.azure.com",
            "the scope without /.default"
        );
        assert_eq!(q["client_id"], client.to_string());
        assert!(s.metadata_headers.iter().all(|h| h.as_deref() == Some("true")));
    }
    // System-assigned: no client_id parameter; a permanent error is not retried.
    state.lock().unwrap().failures = vec![400];
    let system =
        ManagedIdentityCredential::with_options(endpoint, None, &HttpOptions::default(), fast_policy())
            .unwrap();
    let err = system
        .token("https://vault.azure.net/.default")
        .await
        .unwrap_err();
    assert_eq!(err.credential().unwrap().status, Some(400));
    let s = state.lock().unwrap();
    assert_eq!(s.queries.len(), 6);
    assert!(!s.queries[5].contains_key("client_id"));
    assert_eq!(s.queries[5]["resource"], "https://vault.azure.net");
}

#[tokio::test]
async fn static_tokens_are_returned_as_given() {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(5);
    let cred = StaticTokenCredential::with_expiry("fixed", at);
    for scope in [PUBLIC_ARM_SCOPE, "https://storage.azure.com/.default"] {
        let t = cred.token(scope).await.unwrap();
        assert_eq!((t.secret.expose(), t.expires_at), ("fixed", at));
    }
    assert!(!format!("{cred:?}").contains("fixed"));
}
