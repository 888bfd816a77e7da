#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Authentication and authorization through the running emulator with kube-rs: TokenRequest and
//! TokenReview over HTTPS, the issuer documents, service-account tokens as API credentials, and
//! access reviews answered from RBAC objects stored through the API.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use idbind_model::{AllowedSubject, ClientId};
use idbind_testkit::KubeEmulator;
use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec, SubjectAccessReview,
    SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use serde_json::{Value, json};

const AUDIENCE: &str = "api://AKSIdentityBinding";
const NS: &str = "apps";

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

fn pod(name: &str, service_account: &str) -> Pod {
    Pod {
        metadata: meta(name),
        spec: Some(PodSpec {
            service_account_name: Some(service_account.into()),
            containers: vec![Container {
                name: "app".into(),
                image: Some("app:1".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// An emulator with namespace `apps`, service account `web` and pod `web-0` running as it.
async fn emulator() -> (KubeEmulator, kube::Client) {
    let emulator = KubeEmulator::start().await.unwrap();
    let client = emulator.client().unwrap();
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta(NS),
                ..Namespace::default()
            },
        )
        .await
        .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: meta("web"),
                ..ServiceAccount::default()
            },
        )
        .await
        .unwrap();
    Api::<Pod>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &pod("web-0", "web"))
        .await
        .unwrap();
    (emulator, client)
}

async fn request_token(
    client: &kube::Client,
    audiences: &[&str],
    pod: Option<&Pod>,
) -> Result<TokenRequest, kube::Error> {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(audiences.iter().map(|a| (*a).to_owned()).collect()),
            bound_object_ref: pod.map(|p| BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: p.metadata.name.clone(),
                uid: p.metadata.uid.clone(),
            }),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .create_subresource("token", "web", &PostParams::default(), &request)
        .await
}

async fn review(client: &kube::Client, token: &str, audiences: &[&str]) -> Value {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.into(),
            audiences: Some(audiences.iter().map(|a| (*a).to_owned()).collect()),
        },
        ..TokenReview::default()
    };
    let reviewed = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    serde_json::to_value(reviewed.status.unwrap()).unwrap()
}

fn api_status<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn token_request_and_token_review_round_trip_over_https() {
    let (emulator, client) = emulator().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let web = pods.get("web-0").await.unwrap();
    let minted = request_token(&client, &[AUDIENCE], Some(&web)).await.unwrap();
    let token = minted.status.unwrap().token.unwrap();
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["iss"], emulator.base_url());
    assert_eq!(
        claims["kubernetes.io"]["pod"]["uid"].as_str(),
        web.metadata.uid.as_deref()
    );

    let status = review(&client, &token, &[AUDIENCE]).await;
    assert_eq!(status["authenticated"], true);
    assert_eq!(status["audiences"], json!([AUDIENCE]));
    assert_eq!(status["user"]["username"], "system:serviceaccount:apps:web");
    assert_eq!(
        status["user"]["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:apps",
            "system:authenticated"
        ])
    );
    assert_eq!(
        status["user"]["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["web-0"])
    );
    assert_eq!(
        status["user"]["extra"]["authentication.kubernetes.io/credential-id"],
        json!([format!("JTI={}", claims["jti"].as_str().unwrap())])
    );

    // Wrong audience.
    let status = review(&client, &token, &["api://AzureADTokenExchange"]).await;
    assert_eq!(
        status["error"],
        r#"[invalid bearer token, token audiences ["api://AKSIdentityBinding"] is invalid for the target audiences ["api://AzureADTokenExchange"]]"#
    );
    assert!(status.get("authenticated").is_none());

    // The pod is deleted, then re-created with the same name (a new uid).
    pods.delete("web-0", &DeleteParams::default()).await.unwrap();
    let status = review(&client, &token, &[AUDIENCE]).await;
    assert_eq!(
        status["error"],
        "[invalid bearer token, service account token has been invalidated]"
    );
    let recreated = pods
        .create(&PostParams::default(), &pod("web-0", "web"))
        .await
        .unwrap();
    let status = review(&client, &token, &[AUDIENCE]).await;
    assert_eq!(
        status["error"],
        format!(
            "[invalid bearer token, pod UID ({}) does not match service account pod ref claim ({})]",
            recreated.metadata.uid.unwrap(),
            web.metadata.uid.unwrap()
        )
    );

    // A token bound to a stale pod uid cannot even be requested.
    let err = api_status(request_token(&client, &[AUDIENCE], Some(&web_with_uid("stale"))).await);
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));

    // The service account is deleted.
    let fresh = request_token(&client, &[AUDIENCE], None)
        .await
        .unwrap()
        .status
        .unwrap()
        .token
        .unwrap();
    assert_eq!(review(&client, &fresh, &[AUDIENCE]).await["authenticated"], true);
    Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        review(&client, &fresh, &[AUDIENCE]).await["error"],
        r#"[invalid bearer token, serviceaccounts "web" not found]"#
    );
    let err = api_status(request_token(&client, &[AUDIENCE], None).await);
    assert_eq!(
        (err.code, err.message.as_str()),
        (404, r#"serviceaccounts "web" not found"#)
    );
}

fn web_with_uid(uid: &str) -> Pod {
    let mut p = pod("web-0", "web");
    p.metadata.uid = Some(uid.into());
    p
}

#[tokio::test]
async fn forged_unsigned_and_invalid_requests_are_rejected_over_https() {
    let (emulator, client) = emulator().await;
    let token = request_token(&client, &[AUDIENCE], None)
        .await
        .unwrap()
        .status
        .unwrap()
        .token
        .unwrap();
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();

    let impostor = idbind_testkit::auth::ServiceAccountIssuer::new(emulator.base_url()).unwrap();
    let forged = impostor.sign_claims(&claims).unwrap();
    assert_eq!(
        review(&client, &forged, &[AUDIENCE]).await["error"],
        "[invalid bearer token, go-jose/go-jose: error in cryptographic primitive]"
    );
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let unsigned = format!("{}.{}.", encode(&json!({"alg": "none"})), encode(&claims));
    assert_eq!(
        review(&client, &unsigned, &[AUDIENCE]).await["error"],
        "invalid bearer token"
    );

    let empty = TokenReview {
        spec: TokenReviewSpec::default(),
        ..TokenReview::default()
    };
    let err = api_status(
        Api::<TokenReview>::all(client.clone())
            .create(&PostParams::default(), &empty)
            .await,
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (400, "token is required for TokenReview in authentication")
    );

    let short = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(60),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let err = api_status(
        Api::<ServiceAccount>::namespaced(client.clone(), NS)
            .create_subresource::<_, TokenRequest>("token", "web", &PostParams::default(), &short)
            .await,
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message
            .ends_with("may not specify a duration less than 10 minutes"),
        "{}",
        err.message
    );

    // Forged tokens are not API credentials either.
    let forged_api = impostor
        .sign_claims(&json!({
            "aud": [emulator.base_url()], "iss": emulator.base_url(), "sub": "system:serviceaccount:apps:web",
            "kubernetes.io": claims["kubernetes.io"].clone(),
        }))
        .unwrap();
    let err = api_status(
        Api::<Pod>::namespaced(emulator.client_for_token(&forged_api).unwrap(), NS)
            .list(&Default::default())
            .await,
    );
    assert_eq!((err.code, err.reason.as_str()), (401, "Unauthorized"));
}

#[tokio::test]
async fn the_issuer_documents_are_served_and_verify_minted_tokens() {
    let (emulator, client) = emulator().await;
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            let request = http::Request::get(path).body(Vec::new()).unwrap();
            serde_json::from_str::<Value>(&client.request_text(request).await.unwrap()).unwrap()
        }
    };
    let discovery = get("/.well-known/openid-configuration").await;
    assert_eq!(discovery, emulator.issuer().openid_configuration());
    assert_eq!(discovery["issuer"], emulator.base_url());
    let jwks = get("/openid/v1/jwks").await;
    assert_eq!(jwks, emulator.issuer().jwks());

    let token = request_token(&client, &[AUDIENCE], None)
        .await
        .unwrap()
        .status
        .unwrap()
        .token
        .unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[emulator.base_url()]);
    jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
        &validation,
    )
    .unwrap();
}

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| (*s).to_owned()).collect())
}

#[tokio::test]
async fn service_account_tokens_are_api_credentials_authorized_by_rbac() {
    let (emulator, client) = emulator().await;
    let token = request_token(&client, &[], None)
        .await
        .unwrap()
        .status
        .unwrap()
        .token
        .unwrap();
    let as_web = emulator.client_for_token(&token).unwrap();

    let err = api_status(
        Api::<Pod>::namespaced(as_web.clone(), NS)
            .list(&Default::default())
            .await,
    );
    assert_eq!((err.code, err.reason.as_str()), (403, "Forbidden"));
    assert!(
        err.message
            .contains(r#"User "system:serviceaccount:apps:web" cannot list resource "pods""#),
        "{}",
        err.message
    );

    let can_i = |client: kube::Client| async move {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some("list".into()),
                    resource: Some("pods".into()),
                    namespace: Some(NS.into()),
                    ..ResourceAttributes::default()
                }),
                non_resource_attributes: None,
            },
            ..SelfSubjectAccessReview::default()
        };
        Api::<SelfSubjectAccessReview>::all(client)
            .create(&PostParams::default(), &review)
            .await
            .unwrap()
            .status
            .unwrap()
    };
    assert!(!can_i(as_web.clone()).await.allowed);

    Api::<Role>::namespaced(client.clone(), NS)
        .create(
            &PostParams::default(),
            &Role {
                metadata: meta("pod-reader"),
                rules: Some(vec![PolicyRule {
                    api_groups: strings(&[""]),
                    resources: strings(&["pods"]),
                    verbs: vec!["get".into(), "list".into()],
                    ..PolicyRule::default()
                }]),
            },
        )
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), NS)
        .create(
            &PostParams::default(),
            &RoleBinding {
                metadata: meta("web-reads-pods"),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: "pod-reader".into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: "web".into(),
                    namespace: Some(NS.into()),
                    api_group: None,
                }]),
            },
        )
        .await
        .unwrap();
    let status = can_i(as_web.clone()).await;
    assert!(status.allowed);
    assert_eq!(
        status.reason.as_deref(),
        Some(
            r#"RBAC: allowed by RoleBinding "web-reads-pods/apps" of Role "pod-reader" to ServiceAccount "web/apps""#
        )
    );
    assert_eq!(
        Api::<Pod>::namespaced(as_web, NS)
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn subject_access_reviews_for_use_managed_identity_follow_the_stored_rbac() {
    let (_emulator, client) = emulator().await;
    let client_id = ClientId::parse("22222222-2222-2222-2222-222222222222").unwrap();
    let generated = idbind_rbac::generate(&client_id, &[AllowedSubject::parse("apps/web").unwrap()]);
    let sar = |namespace: &str, name: &str| SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{namespace}:{name}")),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                group: Some("cid.wi.aks.azure.com".into()),
                resource: Some(client_id.to_string()),
                verb: Some("use-managed-identity".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let allowed = |namespace: &'static str, name: &'static str| {
        let reviews = reviews.clone();
        let review = sar(namespace, name);
        async move {
            reviews
                .create(&PostParams::default(), &review)
                .await
                .unwrap()
                .status
                .unwrap()
        }
    };
    assert!(!allowed("apps", "web").await.allowed, "no RBAC yet");

    Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &generated.cluster_role)
        .await
        .unwrap();
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &generated.cluster_role_binding)
        .await
        .unwrap();
    let status = allowed("apps", "web").await;
    assert!(status.allowed, "{status:?}");
    assert!(
        status.reason.unwrap().starts_with(
            "RBAC: allowed by ClusterRoleBinding \"use-mi-22222222-2222-2222-2222-222222222222\""
        )
    );
    assert!(!allowed("apps", "other").await.allowed);
    assert!(!allowed("batch", "web").await.allowed);

    Api::<ClusterRoleBinding>::all(client.clone())
        .delete(
            "use-mi-22222222-2222-2222-2222-222222222222",
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    assert!(
        !allowed("apps", "web").await.allowed,
        "a deleted binding no longer grants"
    );

    let mut invalid = sar("apps", "web");
    invalid.spec.user = None;
    invalid.spec.groups = None;
    let err = api_status(reviews.create(&PostParams::default(), &invalid).await);
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
}
