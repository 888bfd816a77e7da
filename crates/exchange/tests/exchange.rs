//! The exchanger against the Kubernetes API emulator, the Azure emulator and an issuer served from
//! a directory store, all on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use idbind_emulator::{Fault, Route};
use idbind_exchange::{ExchangeRequest, Rejection};
use idbind_issuer::{AssertionClaims, ClusterName, SigningKey, mint_assertion};
use idbind_model::{AllowedSubject, DEFAULT_SA_TOKEN_AUDIENCE, IdentityBinding};
use idbind_testkit::auth::{ObjectRef, TokenBinding};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams};
use support::{INTRUDER, NS, Options, SA, SCOPE, World, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_service_account_gets_a_token_of_the_identity() {
    let world = World::start().await;
    let token = world.app_token().await;
    let response = world.exchanger.exchange(world.request(&token)).await.unwrap();
    assert_eq!(response.token_type, "Bearer");
    assert!(
        (2990..=3000).contains(&response.expires_in),
        "{}",
        response.expires_in
    );
    assert_eq!(response.ext_expires_in, response.expires_in);
    assert!(response.refresh_in.is_some_and(|r| r < response.expires_in));

    let claims = world.verify(&response).await;
    let identity = &world.bound.identity;
    assert_eq!(claims["oid"], identity.principal_id.to_string());
    assert_eq!(claims["appid"], identity.client_id.to_string());
    assert_eq!(claims["tid"], identity.tenant_id.to_string());
    assert_eq!(world.entra_calls(), 1);

    // The JSON the proxy will send is Entra's shape with an integer expires_in.
    let json = serde_json::to_value(&response).unwrap();
    assert!(json["expires_in"].is_u64());

    // Ten minutes later: the same token, from the cache, with its remaining lifetime; MSAL Go's
    // extra scopes do not make a new cache entry.
    world.clock.advance(Duration::from_secs(600));
    let mut request = world.request(&token);
    request.scope = format!(" {SCOPE} openid offline_access profile");
    let again = world.exchanger.exchange(request).await.unwrap();
    assert_eq!(again.access_token, response.access_token);
    assert_eq!(again.expires_in, response.expires_in - 600);
    assert_eq!(world.entra_calls(), 1);
    assert_eq!(world.exchanger.metrics().cache_count("token", "hit"), 1);
    assert_eq!(world.exchanger.metrics().exchange_count("ok"), 2);

    // The metrics are in the caller's registry.
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &world.registry).unwrap();
    assert!(
        text.contains(r#"cache_requests_total{cache="token",result="hit"} 1"#),
        "{text}"
    );
    assert!(text.contains("token_cache_entries 1"), "{text}");
}

/// An SA token the API server never issued: same claims, another key.
fn foreign_token(world: &World, audience: &str) -> String {
    let key = SigningKey::generate(&ClusterName::parse("elsewhere").unwrap()).unwrap();
    let claims = AssertionClaims {
        issuer: world.kube.issuer().issuer().to_owned(),
        subject: format!("system:serviceaccount:{NS}:{SA}"),
        audience: audience.to_owned(),
        lifetime: Duration::from_secs(600),
    };
    mint_assertion(&key, &claims, jiff::Timestamp::now())
        .unwrap()
        .token
}

fn unsigned_token(world: &World) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let now = jiff::Timestamp::now().as_second();
    let payload = serde_json::json!({
        "iss": world.kube.issuer().issuer(),
        "sub": format!("system:serviceaccount:{NS}:{SA}"),
        "aud": [DEFAULT_SA_TOKEN_AUDIENCE],
        "iat": now, "nbf": now, "exp": now + 600,
    });
    format!("{header}.{}.", URL_SAFE_NO_PAD.encode(payload.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_have_their_documented_status_and_never_reach_entra() {
    let world = World::start().await;
    let app = world.app_token().await;
    let not_ready = world
        .bind("pending", false, &[AllowedSubject::parse(NS).unwrap()])
        .await;
    let intruder = world.sa_token(INTRUDER, DEFAULT_SA_TOKEN_AUDIENCE, 3600).await;
    let wrong_audience = world.sa_token(SA, "api://AzureADTokenExchange", 3600).await;
    let sa_uid = Api::<ServiceAccount>::namespaced(world.admin.clone(), NS)
        .get(SA)
        .await
        .unwrap()
        .metadata
        .uid;
    let binding = TokenBinding {
        namespace: NS.into(),
        service_account: ObjectRef::new(SA, sa_uid.as_deref().unwrap()),
        ..Default::default()
    };
    let expired = world
        .kube
        .issuer()
        .mint(&binding, &[DEFAULT_SA_TOKEN_AUDIENCE.to_owned()], -120)
        .unwrap()
        .token;
    let foreign = foreign_token(&world, DEFAULT_SA_TOKEN_AUDIENCE);
    let unsigned = unsigned_token(&world);

    let with = |assertion: &str, f: &dyn Fn(&mut ExchangeRequest)| {
        let mut r = world.request(assertion);
        f(&mut r);
        r
    };
    let unbound_id = idbind_model::ClientId::new_random().to_string();
    let pending_id = not_ready.identity.client_id.to_string();
    let cases: Vec<(&str, ExchangeRequest, StatusCode, &str, Rejection)> = vec![
        (
            "RBAC denies the service account",
            world.request(&intruder),
            StatusCode::FORBIDDEN,
            "unauthorized_client",
            Rejection::Forbidden,
        ),
        (
            "unbound client id",
            with(&app, &|r| r.client_id.clone_from(&unbound_id)),
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            Rejection::Unbound,
        ),
        (
            "binding not Ready",
            with(&app, &|r| r.client_id.clone_from(&pending_id)),
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            Rejection::Unbound,
        ),
        (
            "expired token",
            world.request(&expired),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            Rejection::Unauthenticated,
        ),
        (
            "wrong audience",
            world.request(&wrong_audience),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            Rejection::Unauthenticated,
        ),
        (
            "token signed by another issuer",
            world.request(&foreign),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            Rejection::Unauthenticated,
        ),
        (
            "alg none",
            world.request(&unsigned),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            Rejection::Unauthenticated,
        ),
        (
            "not a JWT",
            world.request("not-a-jwt"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            Rejection::Unauthenticated,
        ),
        (
            "missing assertion",
            world.request(""),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Rejection::InvalidRequest,
        ),
        (
            "client id not a GUID",
            with(&app, &|r| r.client_id = "payments".into()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Rejection::InvalidRequest,
        ),
        (
            "missing scope",
            with(&app, &|r| r.scope = " ".into()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Rejection::InvalidRequest,
        ),
        (
            "only OIDC scopes",
            with(&app, &|r| r.scope = "openid profile".into()),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            Rejection::InvalidScope,
        ),
    ];
    for (what, request, status, error, rejection) in cases {
        let err = world.exchanger.exchange(request).await.expect_err(what);
        assert_eq!(
            (err.status(), err.error_code(), err.rejection()),
            (status, error, rejection),
            "{what}: {err}"
        );
        let rendered = err.to_response("corr");
        let body: serde_json::Value = serde_json::from_slice(&rendered.body).unwrap();
        assert_eq!(body["error"], error, "{what}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .starts_with("idbind: "),
            "{what}"
        );
        assert_eq!(
            rendered.retry_after_secs, None,
            "{what}: permanent failures carry no Retry-After"
        );
    }
    assert_eq!(world.entra_calls(), 0, "no rejection reached Entra");

    // The messages say what is wrong.
    let err = world
        .exchanger
        .exchange(world.request(&intruder))
        .await
        .unwrap_err();
    assert!(
        err.description()
            .contains(&format!("system:serviceaccount:{NS}:{INTRUDER}")),
        "{err}"
    );
    assert!(err.description().contains("use-managed-identity"), "{err}");
    let err = world
        .exchanger
        .exchange(with(&app, &|r| r.client_id.clone_from(&pending_id)))
        .await
        .unwrap_err();
    assert!(
        err.description().contains("not Ready") && err.description().contains("IssuerNotPublished"),
        "{err}"
    );

    // And the allowed service account still works.
    world.exchanger.exchange(world.request(&app)).await.unwrap();
    assert_eq!(world.entra_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_cold_requests_make_one_entra_call() {
    let world = Arc::new(World::start().await);
    let token = world.app_token().await;
    // Slow Entra down so every request arrives while the first exchange is in flight.
    world
        .azure
        .set_fault(Route::EntraToken, Fault::latency(Duration::from_millis(300)));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let world = Arc::clone(&world);
            let request = world.request(&token);
            tokio::spawn(async move { world.exchanger.exchange(request).await })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        tokens.insert(t.await.unwrap().unwrap().access_token);
    }
    assert_eq!(tokens.len(), 1);
    assert_eq!(world.entra_calls(), 1);
    assert_eq!(world.calls.token_reviews(), 1, "one TokenReview for one token");
    assert_eq!(
        world.calls.access_reviews(),
        1,
        "one SubjectAccessReview for one user and identity"
    );
    let m = world.exchanger.metrics();
    assert_eq!(m.cache_count("token", "miss"), 1);
    assert_eq!(
        m.cache_count("token", "joined") + m.cache_count("token", "hit"),
        199
    );
    assert_eq!(m.exchange_count("ok"), 200);
    assert_eq!(m.upstream_in_flight.get(), 0);
    assert_eq!(m.token_cache_entries.get(), 1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &world.registry).unwrap();
    assert!(
        text.contains("upstream_request_duration_seconds_count 1\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_an_entra_outage_cached_tokens_are_served_and_others_get_503() {
    let world = World::start().await;
    let token = world.app_token().await;
    let cached = world.exchanger.exchange(world.request(&token)).await.unwrap();

    world
        .azure
        .set_fault(Route::EntraToken, Fault::outage().with_retry_after(1));
    let before = world.entra_calls();
    let served = world.exchanger.exchange(world.request(&token)).await.unwrap();
    assert_eq!(served.access_token, cached.access_token);
    assert_eq!(
        world.entra_calls(),
        before,
        "a fresh cached token needs no upstream call"
    );

    let mut other = world.request(&token);
    other.scope = "https://vault.azure.net/.default".into();
    let err = world.exchanger.exchange(other.clone()).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(err.error_code(), "temporarily_unavailable");
    assert_eq!(err.rejection(), Rejection::Unavailable);
    assert_eq!(
        err.retry_after(),
        Some(Duration::from_secs(1)),
        "Entra's Retry-After is passed on"
    );
    assert_eq!(world.entra_calls(), before + 3, "three attempts");

    // Connection resets are transient too.
    world
        .azure
        .set_fault(Route::EntraToken, Fault::connection_reset());
    let err = world.exchanger.exchange(other.clone()).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Past the refresh point the cached token is still served while refreshes fail...
    world
        .clock
        .advance(Duration::from_secs(cached.refresh_in.unwrap() + 1));
    let served = world.exchanger.exchange(world.request(&token)).await.unwrap();
    assert_eq!(served.access_token, cached.access_token);
    // ...and until it expires, even when it is too close to expiry to be served without asking.
    world.clock.advance(Duration::from_secs(served.expires_in - 60));
    let served = world.exchanger.exchange(world.request(&token)).await.unwrap();
    assert_eq!(
        (served.access_token.as_str(), served.expires_in),
        (cached.access_token.as_str(), 60)
    );

    // Entra back: a new token, and the other scope works again.
    world.azure.clear_faults();
    let fresh = world.exchanger.exchange(world.request(&token)).await.unwrap();
    assert_ne!(fresh.access_token, cached.access_token);
    world.exchanger.exchange(other).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_errors_are_retried_or_passed_through() {
    let world = World::start().await;
    let token = world.app_token().await;

    // One 503 then success: retried transparently.
    world
        .azure
        .set_fault(Route::EntraToken, Fault::fail_next_with(1, 503));
    world.exchanger.exchange(world.request(&token)).await.unwrap();
    assert_eq!(world.azure.counters().get(Route::EntraToken, 503), 1);
    assert_eq!(world.azure.counters().get(Route::EntraToken, 200), 1);

    // A binding whose subject does not match the FIC: Entra's 4xx is passed through verbatim.
    let mut status = {
        let b: IdentityBinding = Api::all(world.admin.clone())
            .get(&world.bound.binding_name)
            .await
            .unwrap();
        b.status.unwrap()
    };
    status.federated_credential.as_mut().unwrap().subject = "/subscriptions/wrong".into();
    world.set_status(&world.bound.binding_name, &status).await;
    let client_id = world.bound.identity.client_id;
    eventually("the token cache drops the identity whose subject changed", || {
        world.exchanger.token_cache().cached_for(&client_id) == 0
    })
    .await;
    let before = world.entra_calls();
    let err = world.exchanger.exchange(world.request(&token)).await.unwrap_err();
    assert_eq!(world.entra_calls(), before + 1, "4xx is not retried");
    assert_eq!(err.rejection(), Rejection::UpstreamRejected);
    let upstream = err.upstream_response().unwrap();
    assert!(upstream.status.is_client_error());
    let body: serde_json::Value = serde_json::from_slice(&upstream.body).unwrap();
    assert!(
        body["error_codes"].as_array().is_some_and(|c| !c.is_empty()),
        "{body}"
    );
    let rendered = err.to_response("ignored");
    assert_eq!(rendered.body, upstream.body, "passed through unchanged");
    assert_eq!(rendered.status, upstream.status);
    assert_eq!(
        err.error_codes().first().copied(),
        body["error_codes"][0].as_u64().map(|c| c as u32)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_authorization_caches_follow_their_ttls() {
    let world = World::start().await;
    let token = world.app_token().await;
    let calls = &world.calls;
    let exchange = |t: &str| world.exchanger.exchange(world.request(t));

    exchange(&token).await.unwrap();
    assert_eq!((calls.token_reviews(), calls.access_reviews()), (1, 1));

    // TokenReview: 2 minutes.
    world.clock.advance(Duration::from_secs(119));
    exchange(&token).await.unwrap();
    assert_eq!((calls.token_reviews(), calls.access_reviews()), (1, 1));
    world.clock.advance(Duration::from_secs(2));
    exchange(&token).await.unwrap();
    assert_eq!((calls.token_reviews(), calls.access_reviews()), (2, 1));

    // SubjectAccessReview allow: 5 minutes (the first decision was at t=0).
    world.clock.advance(Duration::from_secs(299 - 121));
    exchange(&token).await.unwrap();
    assert_eq!(calls.access_reviews(), 1);
    world.clock.advance(Duration::from_secs(2));
    exchange(&token).await.unwrap();
    assert_eq!(calls.access_reviews(), 2);

    // Deny: 30 seconds, and a grant made meanwhile takes effect after them.
    let intruder = world.sa_token(INTRUDER, DEFAULT_SA_TOKEN_AUDIENCE, 3600).await;
    let sars = calls.access_reviews();
    assert_eq!(
        exchange(&intruder).await.unwrap_err().rejection(),
        Rejection::Forbidden
    );
    assert_eq!(calls.access_reviews(), sars + 1);
    grant(&world, INTRUDER).await;
    world.clock.advance(Duration::from_secs(29));
    assert_eq!(
        exchange(&intruder).await.unwrap_err().rejection(),
        Rejection::Forbidden
    );
    assert_eq!(calls.access_reviews(), sars + 1, "deny cached");
    world.clock.advance(Duration::from_secs(2));
    exchange(&intruder).await.unwrap();
    assert_eq!(calls.access_reviews(), sars + 2);

    // TokenReview results never outlive the token's exp.
    let short = world.sa_token(SA, DEFAULT_SA_TOKEN_AUDIENCE, 600).await;
    let exp = token_exp(&short);
    world
        .clock
        .set(std::time::UNIX_EPOCH + Duration::from_secs(exp - 30));
    let reviews = calls.token_reviews();
    exchange(&short).await.unwrap();
    assert_eq!(calls.token_reviews(), reviews + 1);
    world.clock.advance(Duration::from_secs(29));
    exchange(&short).await.unwrap();
    assert_eq!(calls.token_reviews(), reviews + 1, "cached until exp");
    world.clock.advance(Duration::from_secs(2));
    let err = exchange(&short).await.unwrap_err();
    assert_eq!(err.rejection(), Rejection::Unauthenticated);
    assert_eq!(
        calls.token_reviews(),
        reviews + 1,
        "an expired token is refused without a review"
    );
    let m = world.exchanger.metrics();
    assert!(m.cache_count("authn", "hit") >= 3 && m.cache_count("authz", "hit") >= 3);
}

fn token_exp(token: &str) -> u64 {
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["exp"].as_u64().unwrap()
}

async fn grant(world: &World, sa: &str) {
    use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
    let client_id = world.bound.identity.client_id;
    let binding = ClusterRoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("grant-{sa}")),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: idbind_model::rbac_object_name(&client_id),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: sa.into(),
            namespace: Some(NS.into()),
            ..Default::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(world.admin.clone())
        .create(&Default::default(), &binding)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_binding_drops_its_tokens_and_refuses_requests() {
    let world = World::start().await;
    let token = world.app_token().await;
    world.exchanger.exchange(world.request(&token)).await.unwrap();
    let mut vault = world.request(&token);
    vault.scope = "https://vault.azure.net/.default".into();
    world.exchanger.exchange(vault).await.unwrap();
    let client_id = world.bound.identity.client_id;
    assert_eq!(world.exchanger.token_cache().cached_for(&client_id), 2);

    Api::<IdentityBinding>::all(world.admin.clone())
        .delete(&world.bound.binding_name, &DeleteParams::default())
        .await
        .unwrap();
    eventually("the cached tokens are dropped", || {
        world.exchanger.token_cache().cached_for(&client_id) == 0
    })
    .await;
    let calls = world.entra_calls();
    let err = world.exchanger.exchange(world.request(&token)).await.unwrap_err();
    assert_eq!(
        (err.status(), err.rejection()),
        (StatusCode::BAD_REQUEST, Rejection::Unbound)
    );
    assert_eq!(world.entra_calls(), calls);
    assert!(world.exchanger.readiness().is_ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_authority_is_trusted_through_extra_roots() {
    let world = World::start_with(Options {
        entra_tls: true,
        trust_entra_ca: true,
        ..Options::default()
    })
    .await;
    assert!(world.azure.base_url().starts_with("https://"));
    let token = world.app_token().await;
    let response = world.exchanger.exchange(world.request(&token)).await.unwrap();
    assert_eq!(
        world.verify(&response).await["appid"],
        world.bound.identity.client_id.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_https_authority_is_unavailable() {
    let world = World::start_with(Options {
        entra_tls: true,
        ..Options::default()
    })
    .await;
    let token = world.app_token().await;
    let err = world.exchanger.exchange(world.request(&token)).await.unwrap_err();
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_eq!(
        world.azure.counters().total(Route::EntraToken),
        0,
        "no request got through"
    );
}
