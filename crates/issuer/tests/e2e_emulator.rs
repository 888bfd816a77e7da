//! End to end with the Azure emulator: idbind's FIC created through `idbind-fic`, this cluster's
//! keys published to a directory store served over HTTP on loopback, an assertion minted here
//! exchanged at the emulator's Entra for an access token; after `withdraw` the same exchange fails
//! signature validation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use idbind_arm::{ArmClient, ClientSecretCredential, CloudConfig, PUBLIC_ARM_SCOPE, RetryPolicy};
use idbind_emulator::EmulatorConfig;
use idbind_fic::FicManager;
use idbind_issuer::{AssertionClaims, ClusterName, DirectoryStore, KeySet, Publisher, mint_assertion};
use idbind_model::{DEFAULT_FIC_NAME, FicSpec, IssuerBaseUrl, TenantId};

/// Serves a router on a loopback port until dropped.
struct Server {
    base: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(router: axum::Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            base,
            shutdown: Some(tx),
            task,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

/// Exchanges an assertion at the emulator's Entra; returns the status and the JSON body.
async fn exchange(token_url: &str, client_id: &str, assertion: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("scope", "https://storage.azure.com/.default"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assertions_work_while_published_and_fail_after_withdraw() {
    let emulator = idbind_emulator::start(EmulatorConfig::default()).await.unwrap();
    let identity = emulator
        .create_identity(&emulator.default_subscription(), "rg", "payments")
        .unwrap();

    // The issuer: a directory store served on loopback.
    let dir = support::TempDir::new("idbind-e2e-issuer");
    let store = Arc::new(DirectoryStore::new(dir.path()).unwrap());
    let server = Server::start(idbind_issuer::router(store.clone())).await;
    let base = IssuerBaseUrl::parse(&server.base).unwrap();
    let tenant: TenantId = identity.tenant_id;
    let client = identity.client_id;

    // idbind's one FIC on the identity, through idbind-fic.
    let principal = emulator.default_principal();
    let cloud = CloudConfig::custom(emulator.base_url(), emulator.base_url(), PUBLIC_ARM_SCOPE).unwrap();
    let credential = ClientSecretCredential::new(
        &cloud.authority_host,
        principal.tenant_id,
        principal.client_id,
        principal.client_secret.clone(),
    )
    .unwrap();
    let fics = FicManager::new(ArmClient::new(cloud, Arc::new(credential), RetryPolicy::default()).unwrap());
    let spec = FicSpec::derive(DEFAULT_FIC_NAME, &base, &identity.resource_id, &tenant, &client).unwrap();
    fics.ensure(&identity.resource_id, &spec).await.unwrap();

    // This cluster's keys, published.
    let keys = KeySet::generate(ClusterName::parse("east").unwrap(), jiff::Timestamp::now()).unwrap();
    let publisher = Publisher::new(store, base.clone());
    let outcome = publisher
        .publish(&tenant, &client, keys.cluster(), &keys.published_keys())
        .await
        .unwrap();
    assert_eq!(outcome.issuer, spec.issuer);
    // Another cluster bound to the same identity stays bound after this one withdraws.
    let west = KeySet::generate(ClusterName::parse("west").unwrap(), jiff::Timestamp::now()).unwrap();
    publisher
        .publish(&tenant, &client, west.cluster(), &west.published_keys())
        .await
        .unwrap();

    let claims = AssertionClaims::for_fic(&spec);
    let token_url = emulator.token_url(&tenant);
    let assertion = mint_assertion(keys.signing_key(), &claims, jiff::Timestamp::now()).unwrap();
    let (status, body) = exchange(&token_url, &client.to_string(), &assertion.token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));

    let withdrawn = publisher
        .withdraw(&tenant, &client, keys.cluster())
        .await
        .unwrap();
    assert!(withdrawn.jwks_written);
    assert_eq!(withdrawn.remaining_keys, 1);

    for token in [
        assertion.token,
        mint_assertion(keys.signing_key(), &claims, jiff::Timestamp::now())
            .unwrap()
            .token,
    ] {
        let (status, body) = exchange(&token_url, &client.to_string(), &token).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "invalid_client", "{body}");
        assert_eq!(body["error_codes"][0], 700027, "{body}");
    }

    // The cluster still bound keeps working.
    let west_assertion = mint_assertion(west.signing_key(), &claims, jiff::Timestamp::now()).unwrap();
    let (status, body) = exchange(&token_url, &client.to_string(), &west_assertion.token).await;
    assert_eq!(status, 200, "{body}");

    drop(server);
    emulator.shutdown().await;
}
