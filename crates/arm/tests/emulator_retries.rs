//! Retries driven by the emulator's fault injection: attempts are counted by the client's retry
//! hook and by the emulator's counters, never by time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use idbind_arm::{ArmOptions, RetryPolicy};
use idbind_emulator::{EmulatorConfig, Fault, Route, RouteSelector, STATUS_CONNECTION_RESET};
use support::{Env, eventually, fast_policy};

async fn env_with_identity(policy: RetryPolicy) -> (Env, idbind_model::IdentityResourceId) {
    let env = Env::with(EmulatorConfig::default(), policy, ArmOptions::default()).await;
    let id = env.identity_id("retry");
    env.emu
        .create_identity(id.subscription(), id.resource_group(), id.name())
        .unwrap();
    // Get the (cached) token first so that only ARM requests are counted below.
    env.arm.get_identity(&id).await.unwrap();
    env.emu.reset_counters();
    (env, id)
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let (env, id) = env_with_identity(fast_policy()).await;
    env.emu
        .set_fault(Route::ArmIdentityGet, Fault::fail_next_with(2, 503));
    env.arm.get_identity(&id).await.unwrap();
    let c = env.emu.counters();
    assert_eq!(
        (
            c.get(Route::ArmIdentityGet, 503),
            c.get(Route::ArmIdentityGet, 200)
        ),
        (2, 1)
    );
    let events = env.retries.events();
    assert_eq!(
        events.iter().map(|e| (e.attempt, e.status)).collect::<Vec<_>>(),
        [(1, Some(503)), (2, Some(503))]
    );
    assert!(
        events
            .iter()
            .all(|e| e.operation == "get_identity" && e.retry_after.is_none())
    );
}

#[tokio::test]
async fn throttling_is_retried_after_the_wait_the_server_asked_for() {
    let (env, id) = env_with_identity(fast_policy()).await;
    env.emu.set_fault(Route::ArmFicList, Fault::throttle_next(2, 1));
    env.arm.list_fics(&id).await.unwrap();
    let c = env.emu.counters();
    assert_eq!(
        (c.get(Route::ArmFicList, 429), c.get(Route::ArmFicList, 200)),
        (2, 1)
    );
    let events = env.retries.events();
    assert_eq!(events.len(), 2);
    for e in events {
        assert_eq!(e.status, Some(429));
        assert_eq!(e.retry_after, Some(Duration::from_secs(1)));
        assert_eq!(
            e.delay,
            Duration::from_secs(1),
            "Retry-After wins over the 1 ms backoff"
        );
    }
}

#[tokio::test]
async fn retries_stop_at_max_attempts_with_the_last_error() {
    let (env, id) = env_with_identity(fast_policy().max_attempts(3)).await;
    env.emu
        .set_fault(Route::ArmIdentityGet, Fault::error_rate(1.0).with_status(502));
    let err = env.arm.get_identity(&id).await.unwrap_err();
    assert!(err.is_server_error(), "{err}");
    assert_eq!(err.arm().unwrap().attempts, 3);
    assert_eq!(env.emu.counters().get(Route::ArmIdentityGet, 502), 3);
    assert_eq!(env.retries.count(), 2);
}

#[tokio::test]
async fn retries_stop_when_the_next_wait_would_pass_max_elapsed() {
    let (env, id) = env_with_identity(
        fast_policy()
            .max_attempts(10)
            .max_elapsed(Duration::from_millis(500)),
    )
    .await;
    env.emu
        .set_fault(Route::ArmIdentityGet, Fault::throttle_next(5, 1));
    let err = env.arm.get_identity(&id).await.unwrap_err();
    assert!(err.is_throttled(), "{err}");
    assert_eq!(
        env.emu.counters().get(Route::ArmIdentityGet, 429),
        1,
        "a 1 s wait does not fit in 500 ms"
    );
    assert_eq!(env.retries.count(), 0);
}

#[tokio::test]
async fn not_implemented_and_conflicts_are_not_retried() {
    let (env, id) = env_with_identity(fast_policy()).await;
    env.emu
        .set_fault(Route::ArmIdentityGet, Fault::fail_next_with(1, 501));
    assert_eq!(env.arm.get_identity(&id).await.unwrap_err().status(), Some(501));
    env.emu
        .set_fault(Route::ArmFicList, Fault::fail_next_with(1, 409));
    assert!(env.arm.list_fics(&id).await.unwrap_err().is_conflict());
    assert_eq!(env.retries.count(), 0);
    let c = env.emu.counters();
    assert_eq!(
        (c.total(Route::ArmIdentityGet), c.total(Route::ArmFicList)),
        (1, 1)
    );
}

#[tokio::test]
async fn an_outage_is_ridden_out_until_recovery() {
    let policy = fast_policy()
        .max_attempts(1000)
        .max_elapsed(Duration::from_secs(300));
    let (env, id) = env_with_identity(policy).await;
    env.emu
        .set_fault(RouteSelector::All, Fault::outage().with_retry_after(0));
    let arm = env.arm.clone();
    let id2 = id.clone();
    let call = tokio::spawn(async move { arm.get_identity(&id2).await });
    eventually(|| env.emu.counters().get(Route::ArmIdentityGet, 503) >= 3).await;
    env.emu.clear_faults();
    let identity = call.await.unwrap().unwrap();
    assert_eq!(identity.id, id);
    let c = env.emu.counters();
    let failures = c.get(Route::ArmIdentityGet, 503);
    assert_eq!(c.get(Route::ArmIdentityGet, 200), 1);
    assert_eq!(
        env.retries.count() as u64,
        failures,
        "one retry per failed attempt"
    );
}

#[tokio::test]
async fn connection_resets_are_retried_as_transport_failures() {
    let policy = fast_policy()
        .max_attempts(1000)
        .max_elapsed(Duration::from_secs(300));
    let (env, id) = env_with_identity(policy).await;
    env.emu
        .set_fault(Route::ArmIdentityGet, Fault::connection_reset());
    let arm = env.arm.clone();
    let id2 = id.clone();
    let call = tokio::spawn(async move { arm.get_identity(&id2).await });
    eventually(|| {
        env.emu
            .counters()
            .get(Route::ArmIdentityGet, STATUS_CONNECTION_RESET)
            >= 2
    })
    .await;
    env.emu.clear_faults();
    call.await.unwrap().unwrap();
    let resets = env
        .emu
        .counters()
        .get(Route::ArmIdentityGet, STATUS_CONNECTION_RESET);
    let events = env.retries.events();
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e.status.is_none()),
        "transport failures carry no status"
    );
    // The HTTP stack may itself resend on a connection that died before the request was written,
    // so the emulator can see more resets than the client counted failed attempts.
    assert!(
        resets >= events.len() as u64,
        "{resets} resets, {} retries",
        events.len()
    );
}

#[tokio::test]
async fn token_endpoint_failures_are_retried_by_the_credential() {
    let env = Env::start().await;
    let id = env.identity_id("cred");
    env.emu
        .create_identity(id.subscription(), id.resource_group(), id.name())
        .unwrap();
    env.emu.set_fault(
        Route::EntraToken,
        Fault::fail_next_with(1, 503).with_retry_after(0),
    );
    // The credential's own default policy retries (first backoff < 1 s).
    env.arm.get_identity(&id).await.unwrap();
    let c = env.emu.counters();
    assert_eq!(
        (c.get(Route::EntraToken, 503), c.get(Route::EntraToken, 200)),
        (1, 1)
    );
}
