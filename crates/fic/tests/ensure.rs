//! `FicManager` against the emulator over real HTTP: concurrency across "clusters", throttling,
//! the 20-FIC limit, reuse, crash recovery and the opt-in garbage collection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use idbind_arm::{ArmClient, BoxError, ClientSecretCredential, CloudConfig, PUBLIC_ARM_SCOPE, RetryPolicy};
use idbind_emulator::{
    Emulator, EmulatorConfig, Fault, FicInfo, Route, ServicePrincipalCredentials, ThrottleConfig,
};
use idbind_fic::{EnsureOutcome, Error, FicManager, GcOutcome};
use idbind_model::{DEFAULT_FIC_NAME, FicSpec, IdentityResourceId, IssuerBaseUrl};
use tokio::task::JoinSet;

const ISSUER_BASE: &str = "https://issuer.example.com/fleet";

async fn emulator(config: EmulatorConfig) -> Emulator {
    idbind_emulator::start(config).await.unwrap()
}

fn policy() -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(30)
        .base_delay(Duration::from_millis(2))
        .max_delay(Duration::from_millis(50))
        .max_elapsed(Duration::from_secs(300))
}

/// A manager for one "cluster": its own principal, credential, HTTP client and locks.
fn cluster(emu: &Emulator, sp: &ServicePrincipalCredentials, policy: RetryPolicy) -> FicManager {
    let cloud = CloudConfig::custom(emu.base_url(), emu.base_url(), PUBLIC_ARM_SCOPE).unwrap();
    let cred = ClientSecretCredential::new(
        &cloud.authority_host,
        sp.tenant_id,
        sp.client_id,
        sp.client_secret.clone(),
    )
    .unwrap();
    let arm = ArmClient::new(cloud, Arc::new(cred), policy.clone()).unwrap();
    FicManager::new(arm).with_conflict_policy(policy)
}

fn identity(emu: &Emulator, name: &str) -> (IdentityResourceId, FicSpec) {
    let info = emu
        .create_identity(&emu.default_subscription(), "rg", name)
        .unwrap();
    let spec = FicSpec::derive(
        DEFAULT_FIC_NAME,
        &IssuerBaseUrl::parse(ISSUER_BASE).unwrap(),
        &info.resource_id,
        &info.tenant_id,
        &info.client_id,
    )
    .unwrap();
    (info.resource_id, spec)
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_with_fifty_tasks_each_make_exactly_one_fic() {
    // A write holds the identity for 200 ms: a concurrent write from the other cluster gets 409.
    let config = EmulatorConfig {
        fic_write_hold: Duration::from_millis(200),
        ..EmulatorConfig::default()
    };
    let emu = emulator(config).await;
    let (id, spec) = identity(&emu, "shared");
    let other_sp = emu.create_service_principal(&emu.default_tenant()).unwrap();
    let clusters = [
        cluster(&emu, &emu.default_principal(), policy()),
        cluster(&emu, &other_sp, policy()),
    ];
    // Slow lists and writes until the first write is answered, so that both clusters' first
    // rounds overlap: both list before either write lands.
    emu.set_fault(Route::ArmFicList, Fault::latency(Duration::from_millis(300)));
    emu.set_fault(Route::ArmFicPut, Fault::latency(Duration::from_millis(300)));

    let mut tasks = JoinSet::new();
    for _ in 0..50 {
        for manager in &clusters {
            let (manager, id, spec) = (manager.clone(), id.clone(), spec.clone());
            tasks.spawn(async move { manager.ensure(&id, &spec).await });
        }
    }
    wait_for(|| emu.counters().total(Route::ArmFicPut) >= 1).await;
    emu.clear_faults();
    let mut outcomes = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let ensured = result
            .unwrap()
            .unwrap_or_else(|e| panic!("a caller saw an error: {e}"));
        assert_eq!(ensured.fic.properties.issuer, spec.issuer);
        outcomes.push(ensured.outcome);
    }
    assert_eq!(outcomes.len(), 100);
    assert!(outcomes.contains(&EnsureOutcome::Created));
    let fics = emu.fics(&id).unwrap();
    assert_eq!(fics.len(), 1, "{fics:?}");
    assert_eq!(
        (fics[0].name.as_str(), fics[0].subject.as_str()),
        (DEFAULT_FIC_NAME, spec.subject.as_str())
    );
    let counters = emu.counters();
    assert!(
        counters.get(Route::ArmFicPut, 409) >= 1,
        "the clusters' writes collided: {counters:?}"
    );
    // Within a cluster writes are serialized: at most one PUT per cluster reached ARM successfully.
    assert!(counters.successes(Route::ArmFicPut) <= 2, "{counters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_identities_converge_under_throttling() {
    let config = EmulatorConfig {
        throttle: ThrottleConfig::uniform(40, 40.0),
        ..EmulatorConfig::default()
    };
    let emu = emulator(config).await;
    let ids: Vec<_> = (0..200)
        .map(|i| identity(&emu, &format!("uami-{i:03}")))
        .collect();
    let manager = cluster(&emu, &emu.default_principal(), policy());

    let mut tasks = JoinSet::new();
    for (id, spec) in ids.clone() {
        let manager = manager.clone();
        tasks.spawn(async move { manager.ensure(&id, &spec).await });
    }
    while let Some(result) = tasks.join_next().await {
        let ensured = result.unwrap().unwrap();
        assert_eq!(ensured.outcome, EnsureOutcome::Created);
    }
    let counters = emu.counters();
    assert_eq!(counters.successes(Route::ArmFicPut), 200);
    assert!(
        counters.get(Route::ArmFicList, 429) + counters.get(Route::ArmFicPut, 429) > 0,
        "the throttle forced 429s: {counters:?}"
    );
    for (id, spec) in &ids {
        let fics = emu.fics(id).unwrap();
        assert_eq!(fics.len(), 1);
        assert!(spec.matches(&fics[0].issuer, &fics[0].subject));
    }
}

#[tokio::test]
async fn at_the_limit_nothing_is_written_and_the_error_lists_what_is_there() {
    let emu = emulator(EmulatorConfig::default()).await;
    let (id, spec) = identity(&emu, "full");
    for i in 0..20 {
        emu.put_fic(
            &id,
            &FicInfo::new(
                &format!("other-{i:02}"),
                "https://elsewhere.example",
                &format!("sub-{i}"),
            ),
        )
        .unwrap();
    }
    let manager = cluster(&emu, &emu.default_principal(), policy());
    let err = manager.ensure(&id, &spec).await.unwrap_err();
    let Error::LimitReached { existing, limit, .. } = &err else {
        panic!("unexpected {err}")
    };
    assert_eq!(*limit, 20);
    assert_eq!(existing.len(), 20);
    assert_eq!(existing[3].name, "other-03");
    assert_eq!(existing[3].issuer, "https://elsewhere.example");
    assert_eq!(existing[3].subject, "sub-3");
    let text = err.to_string();
    assert!(text.contains("other-19") && text.contains(&spec.issuer), "{text}");
    assert_eq!(emu.counters().total(Route::ArmFicPut), 0, "never a blind PUT");
}

#[tokio::test]
async fn a_differently_named_fic_with_the_same_issuer_and_subject_is_reused() {
    let emu = emulator(EmulatorConfig::default()).await;
    let (id, spec) = identity(&emu, "reuse");
    emu.put_fic(
        &id,
        &FicInfo::new("aks-identity-binding", &spec.issuer, &spec.subject),
    )
    .unwrap();
    let manager = cluster(&emu, &emu.default_principal(), policy());
    let ensured = manager.ensure(&id, &spec).await.unwrap();
    assert_eq!(ensured.outcome, EnsureOutcome::Reused);
    assert_eq!(ensured.fic.name, "aks-identity-binding");
    assert_eq!(emu.counters().total(Route::ArmFicPut), 0);
    assert_eq!(emu.fics(&id).unwrap().len(), 1);
}

#[tokio::test]
async fn our_name_held_by_a_different_credential_is_not_overwritten() {
    let emu = emulator(EmulatorConfig::default()).await;
    let (id, spec) = identity(&emu, "taken");
    emu.put_fic(
        &id,
        &FicInfo::new(DEFAULT_FIC_NAME, "https://other-install.example", &spec.subject),
    )
    .unwrap();
    let manager = cluster(&emu, &emu.default_principal(), policy());
    let err = manager.ensure(&id, &spec).await.unwrap_err();
    assert!(
        matches!(&err, Error::NameTaken { existing, .. } if existing.issuer == "https://other-install.example")
    );
    assert_eq!(emu.counters().total(Route::ArmFicPut), 0);
    assert_eq!(emu.fics(&id).unwrap()[0].issuer, "https://other-install.example");
}

#[tokio::test]
async fn ensure_is_idempotent_and_picks_up_after_a_crash() {
    let emu = emulator(EmulatorConfig::default()).await;
    let manager = cluster(&emu, &emu.default_principal(), policy());

    // First run creates, second run finds it.
    let (id, spec) = identity(&emu, "again");
    assert_eq!(
        manager.ensure(&id, &spec).await.unwrap().outcome,
        EnsureOutcome::Created
    );
    assert_eq!(
        manager.ensure(&id, &spec).await.unwrap().outcome,
        EnsureOutcome::Present
    );
    assert_eq!(emu.counters().successes(Route::ArmFicPut), 1);

    // A process that crashed after its PUT reached ARM left the FIC behind: found, not rewritten.
    let (id, spec) = identity(&emu, "crashed");
    emu.put_fic(&id, &FicInfo::new(&spec.name, &spec.issuer, &spec.subject))
        .unwrap();
    let ensured = manager.ensure(&id, &spec).await.unwrap();
    assert_eq!((ensured.outcome, ensured.attempts), (EnsureOutcome::Present, 1));
    assert_eq!(emu.counters().successes(Route::ArmFicPut), 1);
}

#[tokio::test]
async fn conflicts_and_uncertain_writes_are_retried_after_listing_again() {
    let emu = emulator(EmulatorConfig::default()).await;
    // No retries in the ARM client: every failure reaches the manager.
    let manager = cluster(&emu, &emu.default_principal(), RetryPolicy::none()).with_conflict_policy(policy());
    let (id, spec) = identity(&emu, "conflicted");
    emu.set_fault(Route::ArmFicPut, Fault::fail_next_with(2, 409));
    let ensured = manager.ensure(&id, &spec).await.unwrap();
    assert_eq!((ensured.outcome, ensured.attempts), (EnsureOutcome::Created, 3));
    let c = emu.counters();
    assert_eq!(
        (c.get(Route::ArmFicPut, 409), c.successes(Route::ArmFicPut)),
        (2, 1)
    );
    assert_eq!(c.successes(Route::ArmFicList), 3, "a list before every write");

    let (id, spec) = identity(&emu, "uncertain");
    emu.reset_counters();
    emu.set_fault(Route::ArmFicPut, Fault::fail_next_with(1, 503));
    let ensured = manager.ensure(&id, &spec).await.unwrap();
    assert_eq!((ensured.outcome, ensured.attempts), (EnsureOutcome::Created, 2));

    // Conflicts that never end: a typed give-up with the last error.
    let (id, spec) = identity(&emu, "stuck");
    emu.set_fault(Route::ArmFicPut, Fault::error_rate(1.0).with_status(409));
    let manager = manager.with_conflict_policy(policy().max_attempts(4));
    let err = manager.ensure(&id, &spec).await.unwrap_err();
    assert!(
        matches!(&err, Error::GaveUp { attempts: 4, last, .. } if last.is_conflict()),
        "{err}"
    );
}

#[tokio::test]
async fn a_fic_created_elsewhere_between_list_and_put_is_reused() {
    let emu = emulator(EmulatorConfig::default()).await;
    let manager = cluster(&emu, &emu.default_principal(), policy());
    let (id, spec) = identity(&emu, "raced");
    // Our PUT is held up in ARM long enough for "another cluster" to create its own FIC.
    emu.set_fault(Route::ArmFicPut, Fault::latency(Duration::from_millis(500)));
    let task = {
        let (manager, id, spec) = (manager.clone(), id.clone(), spec.clone());
        tokio::spawn(async move { manager.ensure(&id, &spec).await })
    };
    wait_for(|| emu.counters().successes(Route::ArmFicList) == 1).await;
    emu.put_fic(
        &id,
        &FicInfo::new("from-another-cluster", &spec.issuer, &spec.subject),
    )
    .unwrap();
    let ensured = task.await.unwrap().unwrap();
    assert_eq!(
        (ensured.outcome, ensured.fic.name.as_str()),
        (EnsureOutcome::Reused, "from-another-cluster")
    );
    assert_eq!(
        emu.counters().get(Route::ArmFicPut, 400),
        1,
        "ARM refused the duplicate"
    );
    assert_eq!(emu.fics(&id).unwrap().len(), 1);
}

#[tokio::test]
async fn the_limit_reached_between_list_and_put_is_reported_as_the_limit() {
    let emu = emulator(EmulatorConfig::default()).await;
    let manager = cluster(&emu, &emu.default_principal(), policy());
    let (id, spec) = identity(&emu, "filling");
    for i in 0..19 {
        emu.put_fic(
            &id,
            &FicInfo::new(&format!("f{i:02}"), "https://x.example", &format!("s{i}")),
        )
        .unwrap();
    }
    emu.set_fault(Route::ArmFicPut, Fault::latency(Duration::from_millis(500)));
    let task = {
        let (manager, id, spec) = (manager.clone(), id.clone(), spec.clone());
        tokio::spawn(async move { manager.ensure(&id, &spec).await })
    };
    wait_for(|| emu.counters().successes(Route::ArmFicList) == 1).await;
    emu.put_fic(&id, &FicInfo::new("the-20th", "https://x.example", "late"))
        .unwrap();
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err.existing_fics().map(<[_]>::len), Some(20), "{err}");
}

#[tokio::test]
async fn gc_deletes_only_when_the_caller_says_unused() {
    let emu = emulator(EmulatorConfig::default()).await;
    let manager = cluster(&emu, &emu.default_principal(), policy());
    let (id, spec) = identity(&emu, "gc");

    // Nothing to collect: the check is not even asked.
    let asked = AtomicBool::new(false);
    let out = manager
        .delete_if_unused(&id, &spec, || async {
            asked.store(true, Ordering::SeqCst);
            Ok(true)
        })
        .await
        .unwrap();
    assert_eq!(out, GcOutcome::Absent);
    assert!(!asked.load(Ordering::SeqCst));

    manager.ensure(&id, &spec).await.unwrap();
    let out = manager
        .delete_if_unused(&id, &spec, || async { Ok(false) })
        .await
        .unwrap();
    assert_eq!(
        out,
        GcOutcome::InUse {
            name: DEFAULT_FIC_NAME.into()
        }
    );
    assert_eq!(emu.fics(&id).unwrap().len(), 1);

    let err = manager
        .delete_if_unused(&id, &spec, || async {
            Err::<bool, BoxError>("JWKS unreadable".into())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UnusedCheck { .. }) && err.to_string().contains("JWKS unreadable"),
        "{err}"
    );
    assert_eq!(emu.fics(&id).unwrap().len(), 1);
    assert_eq!(emu.counters().total(Route::ArmFicDelete), 0);

    // A 409 on the delete is retried; a reused, differently named FIC is idbind's too.
    emu.put_fic(&id, &FicInfo::new("unrelated", "https://x.example", "keep-me"))
        .unwrap();
    emu.set_fault(Route::ArmFicDelete, Fault::fail_next_with(1, 409));
    let out = manager
        .delete_if_unused(&id, &spec, || async { Ok(true) })
        .await
        .unwrap();
    assert_eq!(
        out,
        GcOutcome::Deleted {
            name: DEFAULT_FIC_NAME.into()
        }
    );
    let left = emu.fics(&id).unwrap();
    assert_eq!(
        left.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["unrelated"]
    );
    assert_eq!(emu.counters().get(Route::ArmFicDelete, 409), 1);

    emu.put_fic(&id, &FicInfo::new("renamed", &spec.issuer, &spec.subject))
        .unwrap();
    let out = manager
        .delete_if_unused(&id, &spec, || async { Ok(true) })
        .await
        .unwrap();
    assert_eq!(
        out,
        GcOutcome::Deleted {
            name: "renamed".into()
        }
    );
}
