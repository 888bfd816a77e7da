//! The token cache seen through the proxy (issue 6, "Must show"): 200 concurrent requests for one
//! identity and scope on a cold cache make exactly one Entra call; with Entra in outage, cached
//! tokens are still served and uncached ones get 503 `temporarily_unavailable`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::future::join_all;
use idbind_emulator::{Fault, Route};
use idbind_tests::{SCOPE, Stack};
use serde_json::Value;

const FORM: &str = "application/x-www-form-urlencoded";

async fn post(client: &reqwest::Client, stack: &Stack, form: &str) -> (u16, Option<String>, Value) {
    let response = client
        .post(stack.token_url(&format!("/{}/oauth2/v2.0/token", stack.tenant_id())))
        .header("content-type", FORM)
        .body(form.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry_after, response.json().await.unwrap())
}

#[tokio::test]
async fn two_hundred_concurrent_requests_on_a_cold_cache_make_one_entra_call() {
    let stack = Stack::start().await.unwrap();
    let assertion = std::fs::read_to_string(stack.token_file()).unwrap();
    let form = stack.token_form(&assertion, SCOPE);
    // HTTP/2 clients multiplex on one connection each; HTTP/1.1 clients open a connection per
    // request in flight.
    let clients = [
        stack.https_client().unwrap(),
        stack.https_client().unwrap(),
        stack
            .https_client_builder()
            .unwrap()
            .http1_only()
            .build()
            .unwrap(),
        stack
            .https_client_builder()
            .unwrap()
            .http1_only()
            .build()
            .unwrap(),
    ];
    stack.azure().reset_counters();

    let answers = join_all((0..200).map(|i| post(&clients[i % clients.len()], &stack, &form))).await;

    let first = answers[0].2["access_token"].as_str().unwrap().to_owned();
    for (status, _, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(
            body["access_token"],
            first.as_str(),
            "everyone got the same token"
        );
    }
    assert_eq!(
        stack.azure().counters().total(Route::EntraToken),
        1,
        "exactly one Entra call"
    );
    stack.assert_identity_token(&first).await.unwrap();
    let metrics = &stack.proxy().unwrap().exchanger.metrics();
    assert_eq!(metrics.exchange_count("ok"), 200);
    assert_eq!(
        metrics.cache_count("token", "miss")
            + metrics.cache_count("token", "joined")
            + metrics.cache_count("token", "hit"),
        200
    );
}

#[tokio::test]
async fn entra_outage_serves_cached_tokens_and_503s_the_rest() {
    let stack = Stack::builder()
        .exchanger(|c| {
            c.entra.backoff_base = Duration::from_millis(10);
            c.entra.backoff_max = Duration::from_millis(50);
        })
        .start()
        .await
        .unwrap();
    let assertion = std::fs::read_to_string(stack.token_file()).unwrap();
    let client = stack.https_client().unwrap();
    let (status, _, cached) = post(&client, &stack, &stack.token_form(&assertion, SCOPE)).await;
    assert_eq!(status, 200);

    for outage in [Fault::outage(), Fault::connection_reset()] {
        stack.azure().set_fault(Route::EntraToken, outage.clone());
        let (status, _, body) = post(&client, &stack, &stack.token_form(&assertion, SCOPE)).await;
        assert_eq!(
            status, 200,
            "the cached token is served during {outage:?}: {body}"
        );
        assert_eq!(body["access_token"], cached["access_token"]);
        assert!(body["expires_in"].as_u64().unwrap() <= cached["expires_in"].as_u64().unwrap());

        let (status, retry_after, body) = post(
            &client,
            &stack,
            &stack.token_form(&assertion, "https://vault.azure.net/.default"),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str().unwrap()),
            (503, "temporarily_unavailable"),
            "{body}"
        );
        assert!(retry_after.is_some(), "a 503 says when to retry");
    }

    // Entra is back: the uncached scope works.
    stack.azure().clear_faults();
    let (status, _, body) = post(
        &client,
        &stack,
        &stack.token_form(&assertion, "https://vault.azure.net/.default"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
