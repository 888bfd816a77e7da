//! Signing keys rotated under a client that keeps requesting tokens: no request fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use idbind_exchange::{ReloadLabels, write_key_dir};
use idbind_issuer::{KeySet, RotationStep, SECRET_STATE_KEY};
use support::{Options, World, eventually};

/// Applies a rotation step, publishes the resulting keys to the identity's JWKS, and returns them.
async fn step(world: &World, step: RotationStep) -> KeySet {
    let keys = {
        let mut keys = world.keys.lock();
        keys.apply(step, jiff::Timestamp::now()).unwrap();
        keys.clone()
    };
    let id = &world.bound.identity;
    world
        .publisher
        .publish(
            &id.tenant_id,
            &id.client_id,
            keys.cluster(),
            &keys.published_keys(),
        )
        .await
        .unwrap();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_files_replaced_while_a_client_loops_fail_no_request() {
    let world = Arc::new(
        World::start_with(Options {
            key_reload_interval: Duration::from_millis(10),
            ..Options::default()
        })
        .await,
    );
    let token = world.app_token().await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));

    // Requests with `claims` bypass the token cache: each one mints an assertion and calls Entra.
    let client = tokio::spawn({
        let (world, stop, done) = (Arc::clone(&world), Arc::clone(&stop), Arc::clone(&done));
        async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let mut request = world.request(&token);
                request.claims = Some(r#"{"access_token":{"xms_cc":{"values":["CP1"]}}}"#.into());
                if let Err(e) = world.exchanger.exchange(request).await {
                    failures.push(e.to_string());
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
            failures
        }
    });
    let progress = |n: u64| {
        let target = done.load(Ordering::SeqCst) + n;
        let done = Arc::clone(&done);
        async move {
            eventually("the client makes progress", || {
                done.load(Ordering::SeqCst) >= target
            })
            .await;
        }
    };
    let kid = || world.exchanger.keys().signing_kid().unwrap();
    let first = kid();
    progress(3).await;

    // Publish a next key, then write it into the Secret files one by one (a reader can see a mix).
    let keys = step(&world, RotationStep::PublishNext).await;
    write_key_dir(world.keys_dir.path(), &keys).unwrap();
    progress(3).await;
    assert_eq!(kid(), first, "a published next key is not used yet");

    // Activate it.
    let keys = step(&world, RotationStep::Activate).await;
    write_key_dir(world.keys_dir.path(), &keys).unwrap();
    let second = keys.signing_key().kid().to_owned();
    eventually("the new key is in use", || kid() == second).await;
    progress(3).await;

    // Retire the old key from the JWKS and the files.
    let keys = step(&world, RotationStep::Retire).await;
    write_key_dir(world.keys_dir.path(), &keys).unwrap();
    progress(3).await;

    // A torn write of the state file is refused and the keys in use stay.
    let reload_errors = || {
        world
            .exchanger
            .metrics()
            .key_reloads
            .get_or_create(&ReloadLabels { result: "error" })
            .get()
    };
    let errors = reload_errors();
    std::fs::write(world.keys_dir.path().join(SECRET_STATE_KEY), b"{\"version\":").unwrap();
    eventually("the torn set is refused", || reload_errors() > errors).await;
    progress(3).await;
    assert_eq!(kid(), second);
    write_key_dir(world.keys_dir.path(), &keys).unwrap();
    progress(3).await;

    stop.store(true, Ordering::SeqCst);
    let failures = client.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} failed requests: {failures:?}",
        failures.len()
    );
    assert!(done.load(Ordering::SeqCst) >= 18);
    let ok = world
        .exchanger
        .metrics()
        .key_reloads
        .get_or_create(&ReloadLabels { result: "ok" })
        .get();
    assert!(ok >= 3, "initial load, next, activation (and retirement): {ok}");
    assert_eq!(
        world.exchanger.metrics().cache_count("token", "bypass"),
        done.load(Ordering::SeqCst)
    );
}
