//! ARM: identities and federated identity credentials, one test per rule, over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use idbind_emulator::{
    ARM_SCOPE, EmulatorConfig, FIC_API_VERSIONS, FIC_LIMIT_CODE, FicInfo, IDENTITY_API_VERSIONS, ManualClock,
    Route, ServicePrincipalSpec, ThrottleConfig,
};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn q(path: &str) -> String {
    format!("{path}?api-version={API}")
}

#[tokio::test]
async fn identity_put_get_list_delete() {
    let emu = start().await;
    let token = arm_token(&emu).await;
    let sub = emu.default_subscription();
    let path = identity_path(&sub, "rg-1", "payments");
    let created = arm(
        &emu,
        &token,
        Method::PUT,
        &q(&path),
        Some(json!({"location": "westeurope", "tags": {"a": "b"}})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let props = &created.body["properties"];
    for f in ["clientId", "principalId", "tenantId"] {
        assert_eq!(props[f].as_str().unwrap().len(), 36, "{f}");
    }
    assert_eq!(props["tenantId"], emu.default_tenant().to_string());
    assert_eq!(created.body["id"], path);
    assert_eq!(
        created.body["type"],
        "Microsoft.ManagedIdentity/userAssignedIdentities"
    );
    let updated = arm(
        &emu,
        &token,
        Method::PUT,
        &q(&path),
        Some(json!({"location": "westeurope", "tags": {"a": "c"}})),
    )
    .await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(
        updated.body["properties"], created.body["properties"],
        "update keeps the ids"
    );
    assert_eq!(updated.body["tags"]["a"], "c");
    // Case-insensitive paths.
    let got = arm(&emu, &token, Method::GET, &q(&path.to_lowercase()), None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["properties"]["clientId"], props["clientId"]);
    arm(
        &emu,
        &token,
        Method::PUT,
        &q(&identity_path(&sub, "rg-1", "other")),
        Some(json!({"location": "x"})),
    )
    .await;
    arm(
        &emu,
        &token,
        Method::PUT,
        &q(&identity_path(&sub, "rg-2", "third")),
        Some(json!({"location": "x"})),
    )
    .await;
    let list = arm(
        &emu,
        &token,
        Method::GET,
        &q(&format!("/subscriptions/{sub}/resourceGroups/rg-1/providers/Microsoft.ManagedIdentity/userAssignedIdentities")),
        None,
    )
    .await;
    assert_eq!(list.body["value"].as_array().unwrap().len(), 2);
    let all = arm(
        &emu,
        &token,
        Method::GET,
        &q(&format!(
            "/subscriptions/{sub}/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
        )),
        None,
    )
    .await;
    assert_eq!(all.body["value"].as_array().unwrap().len(), 3);
    assert_eq!(
        arm(&emu, &token, Method::DELETE, &q(&path), None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        arm(&emu, &token, Method::DELETE, &q(&path), None).await.status,
        StatusCode::NO_CONTENT
    );
    let gone = arm(&emu, &token, Method::GET, &q(&path), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.code(), "ResourceNotFound");
    assert!(gone.header("x-ms-request-id").is_some());
}

#[tokio::test]
async fn identity_put_requires_location_and_a_valid_name() {
    let emu = start().await;
    let token = arm_token(&emu).await;
    let sub = emu.default_subscription();
    let r = arm(
        &emu,
        &token,
        Method::PUT,
        &q(&identity_path(&sub, "rg", "idx1")),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "LocationRequired")
    );
    let r = arm(
        &emu,
        &token,
        Method::PUT,
        &q(&identity_path(&sub, "rg", "a.b")),
        Some(json!({"location": "x"})),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "InvalidResourceName")
    );
}

#[tokio::test]
async fn deleting_an_identity_deletes_its_fics() {
    let emu = start().await;
    let token = arm_token(&emu).await;
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "uami")
        .unwrap();
    let r = arm(
        &emu,
        &token,
        Method::PUT,
        &fic_path(&identity, "fic1"),
        Some(fic_body("https://i.example/a", "s")),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let path = q(identity.resource_id.as_str());
    assert_eq!(
        arm(&emu, &token, Method::DELETE, &path, None).await.status,
        StatusCode::OK
    );
    let again = arm(
        &emu,
        &token,
        Method::PUT,
        &path,
        Some(json!({"location": "westeurope"})),
    )
    .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_ne!(
        again.body["properties"]["clientId"],
        identity.client_id.to_string(),
        "a new identity gets new ids"
    );
    assert_eq!(emu.fics(&identity.resource_id).unwrap().len(), 0);
}

#[tokio::test]
async fn arm_requires_a_valid_bearer_token_from_its_entra() {
    let emu = start().await;
    let sub = emu.default_subscription();
    let path = q(&identity_path(&sub, "rg", "x"));
    let resp = http()
        .get(format!("{}{path}", emu.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let www = resp.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(www.starts_with("Bearer authorization_uri="), "{www}");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "AuthenticationFailed");
    let r = arm(&emu, "not-a-token", Method::GET, &path, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken")
    );
    // A token for another resource.
    let sp = emu.default_principal();
    let storage = secret_token(
        &emu,
        &sp.tenant_id.to_string(),
        &sp.client_id.to_string(),
        &sp.client_secret,
        "https://storage.azure.com/.default",
    )
    .await;
    let r = arm(&emu, &storage, Method::GET, &path, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "InvalidAuthenticationTokenAudience")
    );
    // A token signed by someone else.
    let issuer = TestIssuer::start().await;
    let forged = issuer.assertion_with(&issuer.key(), &json!({"aud": "https://management.azure.com/", "tid": sp.tenant_id.to_string(), "oid": sp.object_id.to_string()}));
    let r = arm(&emu, &forged, Method::GET, &path, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken")
    );
}

#[tokio::test]
async fn expired_arm_token_is_rejected() {
    let clock = ManualClock::starting_now();
    let emu = idbind_emulator::start(EmulatorConfig {
        clock: Arc::new(clock.clone()),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let token = arm_token(&emu).await;
    let path = q(&identity_path(&emu.default_subscription(), "rg", "x"));
    assert_eq!(
        arm(&emu, &token, Method::GET, &path, None).await.status,
        StatusCode::NOT_FOUND
    );
    clock.advance(Duration::from_secs(25 * 3600));
    let r = arm(&emu, &token, Method::GET, &path, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "ExpiredAuthenticationToken")
    );
}

#[tokio::test]
async fn token_of_another_tenant_is_rejected_for_the_subscription() {
    let emu = start().await;
    let other = emu.create_tenant().unwrap();
    let sp = emu.create_service_principal(&other).unwrap();
    let token = secret_token(
        &emu,
        &other.to_string(),
        &sp.client_id.to_string(),
        &sp.client_secret,
        ARM_SCOPE,
    )
    .await;
    let r = arm(
        &emu,
        &token,
        Method::GET,
        &q(&identity_path(&emu.default_subscription(), "rg", "x")),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "InvalidAuthenticationTokenTenant")
    );
}

#[tokio::test]
async fn principal_outside_its_scopes_gets_403() {
    let emu = start().await;
    let sub = emu.default_subscription();
    let sp = emu
        .create_service_principal_with(&ServicePrincipalSpec {
            arm_scopes: Some(vec![format!("/subscriptions/{sub}/resourceGroups/allowed")]),
            ..ServicePrincipalSpec::default()
        })
        .unwrap();
    let token = secret_token(
        &emu,
        &sp.tenant_id.to_string(),
        &sp.client_id.to_string(),
        &sp.client_secret,
        ARM_SCOPE,
    )
    .await;
    let ok = arm(
        &emu,
        &token,
        Method::PUT,
        &q(&identity_path(&sub, "allowed", "idx1")),
        Some(json!({"location": "x"})),
    )
    .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let denied = arm(
        &emu,
        &token,
        Method::PUT,
        &q(&identity_path(&sub, "other", "idx1")),
        Some(json!({"location": "x"})),
    )
    .await;
    assert_eq!(
        (denied.status, denied.code()),
        (StatusCode::FORBIDDEN, "AuthorizationFailed")
    );
    assert!(
        denied
            .message()
            .contains("Microsoft.ManagedIdentity/userAssignedIdentities/write")
    );
}

#[tokio::test]
async fn api_version_is_checked() {
    let emu = start().await;
    let token = arm_token(&emu).await;
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "uami")
        .unwrap();
    let id = identity.resource_id.as_str();
    let r = arm(&emu, &token, Method::GET, id, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "MissingApiVersionParameter")
    );
    let r = arm(
        &emu,
        &token,
        Method::GET,
        &format!("{id}?api-version=latest"),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "InvalidApiVersionParameter")
    );
    let r = arm(
        &emu,
        &token,
        Method::GET,
        &format!("{id}?api-version=2099-01-01"),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "NoRegisteredProviderFound")
    );
    let r = arm(
        &emu,
        &token,
        Method::GET,
        &format!("{id}/federatedIdentityCredentials?api-version=2018-11-30"),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "NoRegisteredProviderFound"),
        "FICs need 2022-01-31-preview or later"
    );
    for v in IDENTITY_API_VERSIONS {
        assert_eq!(
            arm(&emu, &token, Method::GET, &format!("{id}?api-version={v}"), None)
                .await
                .status,
            StatusCode::OK,
            "{v}"
        );
    }
    for v in FIC_API_VERSIONS {
        let r = arm(
            &emu,
            &token,
            Method::GET,
            &format!("{id}/federatedIdentityCredentials?api-version={v}"),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{v}");
    }
}

#[tokio::test]
async fn fic_put_creates_201_updates_200_get_and_delete() {
    let emu = start().await;
    let token = arm_token(&emu).await;
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "uami")
        .unwrap();
    let path = fic_path(&identity, "idbind");
    let r = arm(
        &emu,
        &token,
        Method::PUT,
        &path,
        Some(fic_body("https://i.example/a", "s1")),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["name"], "idbind");
    assert_eq!(
        r.body["type"],
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"
    );
    assert_eq!(
        r.body["id"],
        format!("{}/federatedIdentityCredentials/idbind", identity.resource_id)
    );
    assert_eq!(r.body["properties"]["audiences"], json!([AUD]));
    let r = arm(
        &emu,
        &token,
        Method::PUT,
        &path,
        Some(fic_body("https://i.example/a", "s2")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = arm(&emu, &token, Method::GET, &path, None).await;
    assert_eq!(r.body["properties"]["subject"], "s2");
    assert_eq!(
        arm(&emu, &token, Method::DELETE, &path, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        arm(&emu, &token, Method::DELETE, &path, None).await.status,
        StatusCode::NO_CONTENT
    );
    let r = arm(&emu, &token, Method::GET, &path, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(emu.counters().get(Route::ArmFicPut, 201), 1);
    assert_eq!(emu.counters().get(Route::ArmFicPut, 200), 1);
}

#[tokio::test]
async fn fic_name_pattern_is_enforced() {
    let emu = start().await;
    let token = arm_token(&emu).await;
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "uami")
        .unwrap();
    for bad in ["ab", "-abc", "a.bc", &"x".repeat(121)] {
        let r = arm(
            &emu,
            &token,
            Method::PUT,
            &fic_path(&identity, bad),
            Some(fic_body("https://i.example/a", bad)),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            r.message()
                .contains(&format!("Federated Identity Credential name '{bad}' is invalid")),
            "{}",
            r.message()
        );
    }
    let r = arm(
        &emu,
        &token,
        Method::PUT,
        &fic_path(&identity, "A1_b-2"),
        Some(fic_body("https://i.example/a", "s")),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn fic_needs_exactly_one_audience_which_must_be_token_exchange() {
    let emu = start().await;
    let token = arm_token(&emu).await;
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "uami")
        .unwrap();
    let path = fic_path(&identity, "fic1");
    for auds in [json!([]), json!([AUD, "api://other"])] {
        let body = json!({"properties": {"issuer": "https://i.example", "subject": "s", "audiences": auds}});
        let r = arm(&emu, &token, Method::PUT, &path, Some(body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(
            r.message().contains("must have exactly one audience"),
            "{}",
            r.message()
        );
    }
    let body =
        json!({"properties": {"issuer": "https://i.example", "subject": "s", "audiences": ["api://other"]}});
    let r = arm(&emu, &token, Method::PUT, &path, Some(body)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains(AUD));
}

#[tokio::test]
async fn fic_with_empty_properties_is_rejected() {
    let emu = start().await;
    let token = arm_token(&emu).await;
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "uami")
        .unwrap();
    for body in [json!({}), json!({"properties": {}})] {
        let r = arm(
            &emu,
            &token,
            Method::PUT,
            &fic_path(&identity, "fic1"),
            Some(body),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.message().contains("empty properties"), "{}", r.message());
    }
    let r = arm(
        &emu,
        &token,
        Method::PUT,
        &fic_path(&identity, "fic1"),
        Some(fic_body("http://example.com/x", "s")),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "plain http issuers only on loopback"
    );
}

#[tokio::test]
async fn fic_duplicate_issuer_and_subject_is_rejected() {
    let emu = start().await;
    let token = arm_token(&emu).await;
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "uami")
        .unwrap();
    let body = fic_body("https://i.example/a", "s");
    assert_eq!(
        arm(
            &emu,
            &token,
            Method::PUT,
            &fic_path(&identity, "fic1"),
            Some(body.clone())
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let r = arm(
        &emu,
        &token,
        Method::PUT,
        &fic_path(&identity, "fic2"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.message()
            .contains("Issuer and subject combination already exists"),
        "{}",
        r.message()
    );
    // Re-putting the same credential under its own name is an update.
    assert_eq!(
        arm(
            &emu,
            &token,
            Method::PUT,
            &fic_path(&identity, "FIC1"),
            Some(body)
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn fic_parent_identity_must_exist() {
    let emu = start().await;
    let token = arm_token(&emu).await;
    let sub = emu.default_subscription();
    let missing = format!(
        "{}/federatedIdentityCredentials",
        identity_path(&sub, "rg", "ghost")
    );
    for (method, path, body) in [
        (
            Method::PUT,
            format!("{missing}/fic1?api-version={API}"),
            Some(fic_body("https://i.example/a", "s")),
        ),
        (Method::GET, format!("{missing}/fic1?api-version={API}"), None),
        (Method::DELETE, format!("{missing}/fic1?api-version={API}"), None),
        (Method::GET, format!("{missing}?api-version={API}"), None),
    ] {
        let r = arm(&emu, &token, method.clone(), &path, body).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(r.code(), "ParentResourceNotFound");
        assert!(
            r.message()
                .contains("The parent user-assigned identity doesn't exist.")
        );
    }
}

#[tokio::test]
async fn at_most_twenty_fics_per_identity() {
    let emu = start().await;
    let token = arm_token(&emu).await;
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "uami")
        .unwrap();
    for i in 0..20 {
        let r = arm(
            &emu,
            &token,
            Method::PUT,
            &fic_path(&identity, &format!("fic{i:02}")),
            Some(fic_body("https://i.example/a", &format!("s{i}"))),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{i}: {}", r.body);
    }
    let r = arm(
        &emu,
        &token,
        Method::PUT,
        &fic_path(&identity, "fic20"),
        Some(fic_body("https://i.example/a", "s20")),
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, FIC_LIMIT_CODE));
    assert!(r.message().contains("at most 20"), "{}", r.message());
    // Updating one of the twenty still works.
    let r = arm(
        &emu,
        &token,
        Method::PUT,
        &fic_path(&identity, "fic00"),
        Some(fic_body("https://i.example/b", "s0")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // The seeding helper applies the same rule.
    let err = emu
        .put_fic(
            &identity.resource_id,
            &FicInfo::new("fic21", "https://i.example/a", "s21"),
        )
        .unwrap_err();
    assert!(err.to_string().contains(FIC_LIMIT_CODE), "{err}");
}

#[tokio::test]
async fn concurrent_fic_writes_to_one_identity_get_409() {
    let emu = Arc::new(start().await);
    emu.set_fic_write_hold(Duration::from_millis(800));
    let token = arm_token(&emu).await;
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "uami")
        .unwrap();
    let other = emu
        .create_identity(&emu.default_subscription(), "rg", "other")
        .unwrap();
    let first = {
        let (emu, token, path) = (emu.clone(), token.clone(), fic_path(&identity, "fic1"));
        tokio::spawn(async move {
            arm(
                &emu,
                &token,
                Method::PUT,
                &path,
                Some(fic_body("https://i.example/a", "s1")),
            )
            .await
        })
    };
    // The first write has been applied and is now holding the identity.
    let id = identity.resource_id.clone();
    eventually(|| emu.fics(&id).is_some_and(|f| f.len() == 1)).await;
    let second = arm(
        &emu,
        &token,
        Method::PUT,
        &fic_path(&identity, "fic2"),
        Some(fic_body("https://i.example/a", "s2")),
    )
    .await;
    assert_eq!(
        (second.status, second.code()),
        (
            StatusCode::CONFLICT,
            "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"
        )
    );
    assert!(second.message().contains(&identity.resource_id.to_lowercase()));
    let delete = arm(&emu, &token, Method::DELETE, &fic_path(&identity, "fic1"), None).await;
    assert_eq!(delete.status, StatusCode::CONFLICT, "deletes are writes too");
    // Another identity is not affected, and reads are not blocked.
    emu.set_fic_write_hold(Duration::ZERO);
    let r = arm(
        &emu,
        &token,
        Method::PUT,
        &fic_path(&other, "fic1"),
        Some(fic_body("https://i.example/a", "s1")),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        arm(&emu, &token, Method::GET, &fic_path(&identity, "fic1"), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(first.await.unwrap().status, StatusCode::CREATED);
    // Once the hold is over, the retried write succeeds.
    let retry = arm(
        &emu,
        &token,
        Method::PUT,
        &fic_path(&identity, "fic2"),
        Some(fic_body("https://i.example/a", "s2")),
    )
    .await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(emu.counters().get(Route::ArmFicPut, 409), 1);
}

#[tokio::test]
async fn throttle_per_caller_answers_429_with_retry_after_and_headers() {
    let clock = ManualClock::starting_now();
    let config = EmulatorConfig {
        clock: Arc::new(clock.clone()),
        throttle: ThrottleConfig::uniform(2, 0.5),
        ..EmulatorConfig::default()
    };
    let emu = idbind_emulator::start(config).await.unwrap();
    let token = arm_token(&emu).await;
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "uami")
        .unwrap();
    let put = |name: &str| {
        (
            fic_path(&identity, name),
            Some(fic_body("https://i.example/a", name)),
        )
    };
    let (p, b) = put("fic1");
    let r = arm(&emu, &token, Method::PUT, &p, b).await;
    assert_eq!(
        r.header("x-ms-ratelimit-remaining-subscription-writes"),
        Some("1")
    );
    let (p, b) = put("fic2");
    let r = arm(&emu, &token, Method::PUT, &p, b).await;
    assert_eq!(
        r.header("x-ms-ratelimit-remaining-subscription-writes"),
        Some("0")
    );
    let (p, b) = put("fic3");
    let r = arm(&emu, &token, Method::PUT, &p, b).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests")
    );
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(
        r.header("x-ms-ratelimit-remaining-subscription-writes"),
        Some("0")
    );
    // Reads have their own bucket; other callers their own buckets.
    let r = arm(&emu, &token, Method::GET, &fic_path(&identity, "fic1"), None).await;
    assert_eq!(
        (r.status, r.header("x-ms-ratelimit-remaining-subscription-reads")),
        (StatusCode::OK, Some("1"))
    );
    let sp = emu.create_service_principal(&emu.default_tenant()).unwrap();
    let other = secret_token(
        &emu,
        &sp.tenant_id.to_string(),
        &sp.client_id.to_string(),
        &sp.client_secret,
        ARM_SCOPE,
    )
    .await;
    let (p, b) = put("fic3");
    assert_eq!(
        arm(&emu, &other, Method::PUT, &p, b).await.status,
        StatusCode::CREATED
    );
    // After Retry-After seconds the bucket has refilled.
    clock.advance(Duration::from_secs(2));
    let (p, b) = put("fic4");
    assert_eq!(
        arm(&emu, &token, Method::PUT, &p, b).await.status,
        StatusCode::CREATED
    );
    assert_eq!(emu.counters().get(Route::ArmFicPut, 429), 1);
}

#[tokio::test]
async fn fic_list_pages_with_top_and_skiptoken() {
    let emu = start().await;
    let token = arm_token(&emu).await;
    let identity = emu
        .create_identity(&emu.default_subscription(), "rg", "uami")
        .unwrap();
    for i in 0..5 {
        emu.put_fic(
            &identity.resource_id,
            &FicInfo::new(&format!("fic{i}"), "https://i.example/a", &format!("s{i}")),
        )
        .unwrap();
    }
    let base = format!("{}/federatedIdentityCredentials", identity.resource_id);
    let all = arm(&emu, &token, Method::GET, &q(&base), None).await;
    assert_eq!(all.body["value"].as_array().unwrap().len(), 5);
    assert!(all.body.get("nextLink").is_none());
    let mut names = Vec::new();
    let mut next = Some(format!("{}{base}?api-version={API}&$top=2", emu.base_url()));
    let mut pages = 0;
    while let Some(url) = next {
        let path = url.strip_prefix(emu.base_url()).unwrap().to_owned();
        let page = arm(&emu, &token, Method::GET, &path, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        names.extend(
            page.body["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["name"].as_str().unwrap().to_owned()),
        );
        next = page.body["nextLink"].as_str().map(str::to_owned);
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["fic0", "fic1", "fic2", "fic3", "fic4"]);
    let r = arm(
        &emu,
        &token,
        Method::GET,
        &format!("{base}?api-version={API}&$top=0"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = arm(
        &emu,
        &token,
        Method::GET,
        &format!("{base}?api-version={API}&$skiptoken=%25%25"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn arm_answers_carry_request_ids_and_echo_correlation() {
    let emu = start().await;
    let token = arm_token(&emu).await;
    let resp = http()
        .get(format!(
            "{}{}",
            emu.base_url(),
            q(&identity_path(&emu.default_subscription(), "rg", "x"))
        ))
        .bearer_auth(&token)
        .header("x-ms-correlation-request-id", "corr-1")
        .header("x-ms-client-request-id", "client-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-ms-correlation-request-id"], "corr-1");
    assert_eq!(resp.headers()["x-ms-client-request-id"], "client-1");
    assert_eq!(resp.headers()["x-ms-request-id"].len(), 36);
}

#[tokio::test]
async fn without_auto_create_unknown_subscriptions_and_groups_are_404() {
    let emu = idbind_emulator::start(EmulatorConfig {
        auto_create_containers: false,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let token = arm_token(&emu).await;
    let r = arm(
        &emu,
        &token,
        Method::GET,
        &q(&identity_path("00000000-0000-0000-0000-00000000dead", "rg", "x")),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "SubscriptionNotFound")
    );
    let r = arm(
        &emu,
        &token,
        Method::PUT,
        &q(&identity_path(&emu.default_subscription(), "nope", "idx1")),
        Some(json!({"location": "x"})),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "ResourceGroupNotFound")
    );
    emu.create_identity(&emu.default_subscription(), "made", "idx1")
        .unwrap();
    let r = arm(
        &emu,
        &token,
        Method::PUT,
        &q(&identity_path(&emu.default_subscription(), "made", "idx2")),
        Some(json!({"location": "x"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
}
