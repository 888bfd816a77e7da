//! Typed ARM operations against the emulator over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use idbind_arm::{ArmOptions, FicProperties};
use idbind_emulator::{EmulatorConfig, FicInfo, Route};
use idbind_model::ENTRA_FIC_AUDIENCE;
use support::{Env, fast_policy};

fn props(issuer: &str, subject: &str) -> FicProperties {
    FicProperties {
        issuer: issuer.into(),
        subject: subject.into(),
        audiences: vec![ENTRA_FIC_AUDIENCE.into()],
    }
}

#[tokio::test]
async fn identities_are_created_and_read_with_their_ids() {
    let env = Env::start().await;
    let id = env.identity_id("payments");
    let created = env.arm.create_identity(&id, "westeurope").await.unwrap();
    assert_eq!(created.id, id);
    assert_eq!(created.name, "payments");
    assert_eq!(created.location, "westeurope");

    let read = env.arm.get_identity(&id).await.unwrap();
    assert_eq!(read, created);
    let truth = env.emu.identity(&id).unwrap();
    assert_eq!(read.client_id, truth.client_id);
    assert_eq!(read.principal_id, truth.principal_id);
    assert_eq!(read.tenant_id, truth.tenant_id);
}

#[tokio::test]
async fn a_missing_identity_is_a_typed_not_found_with_request_ids() {
    let env = Env::start().await;
    let err = env.arm.get_identity(&env.identity_id("nope")).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let arm = err.arm().unwrap();
    assert_eq!(arm.code.as_deref(), Some("ResourceNotFound"));
    assert!(arm.message.contains("nope"), "{}", arm.message);
    assert!(arm.request_id.is_some() && arm.correlation_id.is_some());
    assert_eq!(arm.attempts, 1, "404 is not retried");
    assert_eq!(env.emu.counters().get(Route::ArmIdentityGet, 404), 1);
}

#[tokio::test]
async fn fics_are_created_read_listed_and_deleted() {
    let env = Env::start().await;
    let id = env.identity_id("app");
    env.emu
        .create_identity(id.subscription(), id.resource_group(), id.name())
        .unwrap();

    let p = props("https://issuer.example/t/c", &id.to_lowercase());
    let fic = env.arm.put_fic(&id, "idbind", &p).await.unwrap();
    assert_eq!(fic.name, "idbind");
    assert_eq!(fic.properties, p);
    assert_eq!(fic.id.parent().unwrap(), *id.as_arm());

    assert_eq!(env.arm.get_fic(&id, "idbind").await.unwrap(), Some(fic.clone()));
    assert_eq!(env.arm.get_fic(&id, "other").await.unwrap(), None);
    assert_eq!(env.arm.list_fics(&id).await.unwrap(), vec![fic]);

    assert!(env.arm.delete_fic(&id, "idbind").await.unwrap());
    assert!(
        !env.arm.delete_fic(&id, "idbind").await.unwrap(),
        "a second delete finds nothing"
    );
    assert!(env.arm.list_fics(&id).await.unwrap().is_empty());
    assert_eq!(env.emu.fics(&id).unwrap(), vec![]);
}

#[tokio::test]
async fn fic_operations_on_a_missing_identity_are_errors_not_absences() {
    let env = Env::start().await;
    let id = env.identity_id("ghost");
    let err = env.arm.get_fic(&id, "idbind").await.unwrap_err();
    assert_eq!(err.arm().unwrap().code.as_deref(), Some("ParentResourceNotFound"));
    let err = env
        .arm
        .put_fic(&id, "idbind", &props("https://i", "s"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(env.arm.delete_fic(&id, "idbind").await.is_err());
}

#[tokio::test]
async fn arm_rule_violations_surface_code_and_message() {
    let env = Env::start().await;
    let id = env.identity_id("rules");
    env.emu
        .create_identity(id.subscription(), id.resource_group(), id.name())
        .unwrap();
    env.arm
        .put_fic(&id, "first", &props("https://i", "s"))
        .await
        .unwrap();

    let err = env
        .arm
        .put_fic(&id, "second", &props("https://i", "s"))
        .await
        .unwrap_err();
    let arm = err.arm().unwrap();
    assert_eq!(arm.status, 400);
    assert!(arm.is_duplicate_issuer_subject(), "{arm}");

    let two_audiences = FicProperties {
        audiences: vec!["a".into(), "b".into()],
        ..props("https://j", "t")
    };
    let err = env.arm.put_fic(&id, "third", &two_audiences).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("audience"), "{err}");

    // Names are checked before anything is sent.
    let err = env
        .arm
        .put_fic(&id, "../x", &props("https://k", "u"))
        .await
        .unwrap_err();
    assert!(matches!(err, idbind_arm::Error::Config { .. }), "{err}");
}

#[tokio::test]
async fn lists_follow_next_link_pages() {
    let env = Env::with(
        EmulatorConfig::default(),
        fast_policy(),
        ArmOptions::default().page_size(3),
    )
    .await;
    let id = env.identity_id("paged");
    env.emu
        .create_identity(id.subscription(), id.resource_group(), id.name())
        .unwrap();
    for i in 0..10 {
        env.emu
            .put_fic(
                &id,
                &FicInfo::new(&format!("fic-{i:02}"), "https://i", &format!("s{i}")),
            )
            .unwrap();
    }
    let fics = env.arm.list_fics(&id).await.unwrap();
    let names: Vec<_> = fics.iter().map(|f| f.name.as_str()).collect();
    let want: Vec<String> = (0..10).map(|i| format!("fic-{i:02}")).collect();
    assert_eq!(names, want);
    assert_eq!(
        env.emu.counters().get(Route::ArmFicList, 200),
        4,
        "pages of 3, 3, 3 and 1"
    );
}

#[tokio::test]
async fn api_version_is_configurable() {
    let env = Env::with(
        EmulatorConfig::default(),
        fast_policy(),
        ArmOptions::default().api_version("1999-01-01"),
    )
    .await;
    let err = env.arm.get_identity(&env.identity_id("x")).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(
        err.arm().unwrap().code.as_deref(),
        Some("NoRegisteredProviderFound")
    );
}
