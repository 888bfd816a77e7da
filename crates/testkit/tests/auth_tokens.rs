#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The service-account issuer at the function level: discovery documents, TokenRequest minting
//! and TokenReview validation with kube-apiserver's checks and messages.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use idbind_testkit::auth::{
    BearerAuthenticator, Clock, Error, ManualClock, MemoryObjects, ObjectInfo, ObjectKind,
    ServiceAccountIssuer, TokenError, Unauthorized, UserInfo,
};
use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use serde_json::{Value, json};

const ISSUER: &str = "https://127.0.0.1:6443";
const AUDIENCE: &str = "api://AKSIdentityBinding";
const NS: &str = "apps";
const SA: &str = "web";
const SA_UID: &str = "11111111-0000-0000-0000-000000000001";
const POD: &str = "web-0";
const POD_UID: &str = "22222222-0000-0000-0000-000000000002";

struct Fixture {
    clock: ManualClock,
    issuer: ServiceAccountIssuer,
    objects: MemoryObjects,
}

fn fixture() -> Fixture {
    let clock = ManualClock::new(jiff::Timestamp::from_second(1_750_000_000).unwrap());
    let issuer = ServiceAccountIssuer::builder(ISSUER)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let objects = MemoryObjects::new();
    objects.insert(ObjectKind::ServiceAccount, NS, SA, ObjectInfo::new(SA_UID));
    objects.insert(ObjectKind::Pod, NS, POD, ObjectInfo::pod(POD_UID, SA));
    Fixture {
        clock,
        issuer,
        objects,
    }
}

fn token_request(
    audiences: &[&str],
    expiration: Option<i64>,
    bound: Option<(&str, &str, Option<&str>)>,
) -> TokenRequest {
    TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: (!audiences.is_empty()).then(|| audiences.iter().map(|a| (*a).to_owned()).collect()),
            expiration_seconds: expiration,
            bound_object_ref: bound.map(|(kind, name, uid)| BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some(kind.into()),
                name: Some(name.into()),
                uid: uid.map(str::to_owned),
            }),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    }
}

impl Fixture {
    /// A pod-bound token for [`AUDIENCE`], one hour.
    fn pod_token(&self) -> String {
        let request = token_request(&[AUDIENCE], None, Some(("Pod", POD, Some(POD_UID))));
        let response = self
            .issuer
            .request_token(NS, SA, &request, &self.objects)
            .unwrap();
        response.status.unwrap().token.unwrap()
    }

    fn review(
        &self,
        token: &str,
        audiences: &[&str],
    ) -> Result<idbind_testkit::auth::Authenticated, TokenError> {
        let audiences: Vec<String> = audiences.iter().map(|a| (*a).to_owned()).collect();
        self.issuer.authenticate_token(token, &audiences, &self.objects)
    }

    fn review_error(&self, token: &str, audiences: &[&str]) -> String {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: (!audiences.is_empty())
                    .then(|| audiences.iter().map(|a| (*a).to_owned()).collect()),
            },
            ..TokenReview::default()
        };
        let status = self
            .issuer
            .review_token(&review, &self.objects)
            .unwrap()
            .status
            .unwrap();
        assert_eq!(
            status.authenticated, None,
            "an unauthenticated review omits `authenticated`"
        );
        status.error.unwrap()
    }
}

fn decode_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn encode_part(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

#[test]
fn discovery_documents_are_shaped_like_kube_apiservers() {
    let f = fixture();
    assert_eq!(
        f.issuer.openid_configuration(),
        json!({
            "issuer": ISSUER,
            "jwks_uri": format!("{ISSUER}/openid/v1/jwks"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
    );
    let jwks = f.issuer.jwks();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kid"], f.issuer.key_id());
    assert_eq!(key["e"], "AQAB");
    assert_eq!(
        URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap().len(),
        256,
        "RSA-2048 modulus"
    );
    // The key id is a SHA-256 thumbprint of the SPKI: 32 bytes, base64url.
    assert_eq!(URL_SAFE_NO_PAD.decode(f.issuer.key_id()).unwrap().len(), 32);
    // Two instances have two keys.
    assert_ne!(
        ServiceAccountIssuer::new(ISSUER).unwrap().key_id(),
        f.issuer.key_id()
    );
}

#[test]
fn minted_tokens_verify_against_the_published_jwks_with_an_independent_library() {
    let f = fixture();
    let token = f.pod_token();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(f.issuer.jwks()["keys"][0].clone()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[ISSUER]);
    validation.validate_exp = false; // the manual clock is in the past
    let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
    assert_eq!(data.header.kid.as_deref(), Some(f.issuer.key_id()));
    assert_eq!(data.claims["sub"], "system:serviceaccount:apps:web");
}

#[test]
fn token_request_mints_a_projected_style_token_and_token_review_accepts_it() {
    let f = fixture();
    let request = token_request(&[AUDIENCE], Some(7200), Some(("Pod", POD, Some(POD_UID))));
    let response = f.issuer.request_token(NS, SA, &request, &f.objects).unwrap();
    let spec = response.spec.as_ref().unwrap();
    assert_eq!(spec.expiration_seconds, Some(7200));
    assert_eq!(spec.audiences.as_deref(), Some(&[AUDIENCE.to_owned()][..]));
    assert_eq!(response.metadata.name.as_deref(), Some(SA));
    assert_eq!(response.metadata.namespace.as_deref(), Some(NS));
    let status = response.status.unwrap();
    let token = status.token.unwrap();

    let header = decode_part(&token, 0);
    assert_eq!(header, json!({ "alg": "RS256", "kid": f.issuer.key_id() }));
    let claims = decode_part(&token, 1);
    let now = 1_750_000_000_i64;
    let jti = claims["jti"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&jti).unwrap().get_version_num(), 4);
    assert_eq!(
        claims,
        json!({
            "aud": [AUDIENCE],
            "exp": now + 7200,
            "iat": now,
            "iss": ISSUER,
            "jti": jti,
            "kubernetes.io": {
                "namespace": NS,
                "pod": { "name": POD, "uid": POD_UID },
                "serviceaccount": { "name": SA, "uid": SA_UID },
            },
            "nbf": now,
            "sub": "system:serviceaccount:apps:web",
        })
    );
    // Claims are in kube-apiserver's (alphabetical) order, on the wire.
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let order: Vec<usize> = [
        "\"aud\"",
        "\"exp\"",
        "\"iat\"",
        "\"iss\"",
        "\"jti\"",
        "\"kubernetes.io\"",
        "\"nbf\"",
        "\"sub\"",
    ]
    .iter()
    .map(|k| raw.find(k).unwrap())
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "claims out of order: {raw}"
    );
    assert_eq!(status.expiration_timestamp.unwrap().0.as_second(), now + 7200);

    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.clone(),
            audiences: Some(vec![AUDIENCE.into(), "other".into()]),
        },
        ..TokenReview::default()
    };
    let reviewed = f.issuer.review_token(&review, &f.objects).unwrap();
    assert_eq!(reviewed.spec.token, token, "the spec is echoed");
    let status = reviewed.status.unwrap();
    assert_eq!(status.authenticated, Some(true));
    assert_eq!(status.error, None);
    assert_eq!(status.audiences, Some(vec![AUDIENCE.to_owned()]));
    let user = status.user.unwrap();
    assert_eq!(user.username.as_deref(), Some("system:serviceaccount:apps:web"));
    assert_eq!(user.uid.as_deref(), Some(SA_UID));
    assert_eq!(
        user.groups.unwrap(),
        [
            "system:serviceaccounts",
            "system:serviceaccounts:apps",
            "system:authenticated"
        ]
    );
    let extra = user.extra.unwrap();
    assert_eq!(
        serde_json::to_value(&extra).unwrap(),
        json!({
            "authentication.kubernetes.io/credential-id": [format!("JTI={jti}")],
            "authentication.kubernetes.io/pod-name": [POD],
            "authentication.kubernetes.io/pod-uid": [POD_UID],
        })
    );
}

#[test]
fn pod_on_a_node_adds_node_claims_and_extra() {
    let f = fixture();
    f.objects.insert(
        ObjectKind::Pod,
        NS,
        "scheduled",
        ObjectInfo {
            node_name: Some("node-a".into()),
            ..ObjectInfo::pod("pod-uid-s", SA)
        },
    );
    f.objects
        .insert(ObjectKind::Node, "", "node-a", ObjectInfo::new("node-uid-a"));
    let request = token_request(&[AUDIENCE], None, Some(("Pod", "scheduled", None)));
    let token = f
        .issuer
        .request_token(NS, SA, &request, &f.objects)
        .unwrap()
        .status
        .unwrap()
        .token
        .unwrap();
    assert_eq!(
        decode_part(&token, 1)["kubernetes.io"]["node"],
        json!({ "name": "node-a", "uid": "node-uid-a" })
    );
    let user = f.review(&token, &[AUDIENCE]).unwrap().user;
    assert_eq!(user.extra["authentication.kubernetes.io/node-name"], ["node-a"]);
    assert_eq!(
        user.extra["authentication.kubernetes.io/node-uid"],
        ["node-uid-a"]
    );
    // The node of a pod-bound token is informational: its deletion does not invalidate the token.
    f.objects.remove(ObjectKind::Node, "", "node-a");
    assert!(f.review(&token, &[AUDIENCE]).is_ok());
}

#[test]
fn defaults_audiences_to_the_api_server_and_expiration_to_one_hour() {
    let f = fixture();
    let response = f
        .issuer
        .request_token(NS, SA, &token_request(&[], None, None), &f.objects)
        .unwrap();
    let spec = response.spec.unwrap();
    assert_eq!(spec.audiences, Some(vec![ISSUER.to_owned()]));
    assert_eq!(spec.expiration_seconds, Some(3600));
    let token = response.status.unwrap().token.unwrap();
    let claims = decode_part(&token, 1);
    assert_eq!(claims["aud"], json!([ISSUER]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    assert!(claims["kubernetes.io"].get("pod").is_none());

    // A review without audiences checks the API server's own audience.
    let authenticated = f.review(&token, &[]).unwrap();
    assert_eq!(authenticated.audiences, [ISSUER]);
    assert!(
        !authenticated
            .user
            .extra
            .contains_key("authentication.kubernetes.io/pod-name")
    );
    // ... and a token for another audience is not valid for the API server.
    let pod_token = f.pod_token();
    assert_eq!(
        f.review_error(&pod_token, &[]),
        format!(
            r#"[invalid bearer token, token audiences ["{AUDIENCE}"] is invalid for the target audiences ["{ISSUER}"]]"#
        )
    );
}

#[test]
fn expiration_seconds_is_validated_and_capped() {
    let f = fixture();
    let err = f
        .issuer
        .request_token(NS, SA, &token_request(&[AUDIENCE], Some(599), None), &f.objects)
        .unwrap_err();
    assert_eq!(err.code(), 422);
    assert_eq!(
        err.to_string(),
        r#"TokenRequest.authentication.k8s.io "web" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"#
    );
    let status = serde_json::to_value(err.to_status()).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["causes"][0]["field"], "spec.expirationSeconds");

    let err = f
        .issuer
        .request_token(
            NS,
            SA,
            &token_request(&[AUDIENCE], Some((1 << 32) + 1), None),
            &f.objects,
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("may not specify a duration larger than 2^32 seconds"),
        "{err}"
    );

    assert!(
        f.issuer
            .request_token(NS, SA, &token_request(&[AUDIENCE], Some(600), None), &f.objects)
            .is_ok()
    );

    let capped = ServiceAccountIssuer::builder(ISSUER)
        .max_expiration(Duration::from_secs(1800))
        .build()
        .unwrap();
    let response = capped
        .request_token(NS, SA, &token_request(&[AUDIENCE], Some(7200), None), &f.objects)
        .unwrap();
    assert_eq!(response.spec.unwrap().expiration_seconds, Some(1800));
}

#[test]
fn bound_object_references_are_checked_like_kube_apiserver() {
    let f = fixture();
    let request = |bound| token_request(&[AUDIENCE], None, Some(bound));

    let err = f
        .issuer
        .request_token(NS, SA, &request(("Deployment", "web", None)), &f.objects)
        .unwrap_err();
    assert_eq!(
        (err.code(), err.to_string()),
        (
            400,
            "cannot bind token to object of type /v1, Kind=Deployment".into()
        )
    );

    let err = f
        .issuer
        .request_token(NS, SA, &request(("Pod", "missing", None)), &f.objects)
        .unwrap_err();
    assert_eq!(
        (err.code(), err.to_string()),
        (404, r#"pods "missing" not found"#.into())
    );

    let err = f
        .issuer
        .request_token(NS, SA, &request(("Pod", POD, Some("stale-uid"))), &f.objects)
        .unwrap_err();
    assert_eq!(err.code(), 409);
    assert_eq!(
        err.to_string(),
        r#"Operation cannot be fulfilled on Pod "web-0": the UID in the bound object reference (stale-uid) does not match the UID in record. The object might have been deleted and then recreated"#
    );

    f.objects.insert(
        ObjectKind::Pod,
        NS,
        "other-sa-pod",
        ObjectInfo::pod("uid-x", "builder"),
    );
    let err = f
        .issuer
        .request_token(NS, SA, &request(("Pod", "other-sa-pod", None)), &f.objects)
        .unwrap_err();
    assert_eq!(err.code(), 400);
    assert_eq!(
        err.to_string(),
        r#"cannot bind token for serviceaccount "web" to pod running with different serviceaccount name."#
    );

    let err = f
        .issuer
        .request_token(NS, "nobody", &request(("Pod", POD, None)), &f.objects)
        .unwrap_err();
    assert_eq!(
        (err.code(), err.to_string()),
        (404, r#"serviceaccounts "nobody" not found"#.into())
    );
    assert!(matches!(err, Error::NotFound { .. }));
}

#[test]
fn expired_and_not_yet_valid_tokens_are_rejected_with_one_minute_of_leeway() {
    let f = fixture();
    let token = f.pod_token(); // exp = now + 3600
    f.clock.advance(Duration::from_secs(3600 + 60));
    assert!(f.review(&token, &[AUDIENCE]).is_ok(), "within the leeway");
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(f.review(&token, &[AUDIENCE]).unwrap_err(), TokenError::Expired);
    assert_eq!(
        f.review_error(&token, &[AUDIENCE]),
        "[invalid bearer token, service account token has expired]"
    );

    let f = fixture();
    let token = f.pod_token();
    f.clock
        .set(jiff::Timestamp::from_second(1_750_000_000 - 61).unwrap());
    assert_eq!(
        f.review(&token, &[AUDIENCE]).unwrap_err(),
        TokenError::NotYetValid
    );
    assert_eq!(
        f.review_error(&token, &[AUDIENCE]),
        "[invalid bearer token, service account token is not valid yet]"
    );
}

#[test]
fn wrong_audience_is_rejected_with_both_audience_lists() {
    let f = fixture();
    let token = f.pod_token();
    assert_eq!(
        f.review(&token, &["api://AzureADTokenExchange", "x"])
            .unwrap_err(),
        TokenError::WrongAudience {
            token: vec![AUDIENCE.into()],
            requested: vec!["api://AzureADTokenExchange".into(), "x".into()]
        }
    );
    assert_eq!(
        f.review_error(&token, &["api://AzureADTokenExchange", "x"]),
        r#"[invalid bearer token, token audiences ["api://AKSIdentityBinding"] is invalid for the target audiences ["api://AzureADTokenExchange" "x"]]"#
    );
}

#[test]
fn deleting_the_bound_pod_invalidates_the_token_and_a_recreated_pod_does_not_revive_it() {
    let f = fixture();
    let token = f.pod_token();
    assert!(f.review(&token, &[AUDIENCE]).is_ok());

    // Being deleted for less than the leeway: still valid; longer: invalidated.
    let now = f.clock.now();
    f.objects.insert(
        ObjectKind::Pod,
        NS,
        POD,
        ObjectInfo {
            deletion_timestamp: Some(now),
            ..ObjectInfo::pod(POD_UID, SA)
        },
    );
    assert!(f.review(&token, &[AUDIENCE]).is_ok());
    f.clock.advance(Duration::from_secs(61));
    assert_eq!(
        f.review(&token, &[AUDIENCE]).unwrap_err(),
        TokenError::Invalidated
    );

    f.objects.remove(ObjectKind::Pod, NS, POD);
    assert_eq!(
        f.review(&token, &[AUDIENCE]).unwrap_err(),
        TokenError::Invalidated
    );
    assert_eq!(
        f.review_error(&token, &[AUDIENCE]),
        "[invalid bearer token, service account token has been invalidated]"
    );

    f.objects.insert(
        ObjectKind::Pod,
        NS,
        POD,
        ObjectInfo::pod("33333333-0000-0000-0000-000000000003", SA),
    );
    assert_eq!(
        f.review_error(&token, &[AUDIENCE]),
        format!(
            "[invalid bearer token, pod UID (33333333-0000-0000-0000-000000000003) does not match service account pod ref claim ({POD_UID})]"
        )
    );
}

#[test]
fn deleting_the_service_account_invalidates_its_tokens() {
    let f = fixture();
    let token = f.pod_token();
    f.objects.remove(ObjectKind::ServiceAccount, NS, SA);
    assert_eq!(
        f.review(&token, &[AUDIENCE]).unwrap_err(),
        TokenError::ServiceAccountNotFound(SA.into())
    );
    assert_eq!(
        f.review_error(&token, &[AUDIENCE]),
        r#"[invalid bearer token, serviceaccounts "web" not found]"#
    );

    f.objects.insert(
        ObjectKind::ServiceAccount,
        NS,
        SA,
        ObjectInfo::new("recreated-uid"),
    );
    assert_eq!(
        f.review_error(&token, &[AUDIENCE]),
        format!(
            "[invalid bearer token, service account UID (recreated-uid) does not match claim ({SA_UID})]"
        )
    );
}

#[test]
fn secret_bound_tokens_die_with_their_secret() {
    let f = fixture();
    f.objects
        .insert(ObjectKind::Secret, NS, "creds", ObjectInfo::new("secret-uid"));
    let request = token_request(&[AUDIENCE], None, Some(("Secret", "creds", Some("secret-uid"))));
    let token = f
        .issuer
        .request_token(NS, SA, &request, &f.objects)
        .unwrap()
        .status
        .unwrap()
        .token
        .unwrap();
    assert_eq!(
        decode_part(&token, 1)["kubernetes.io"]["secret"],
        json!({ "name": "creds", "uid": "secret-uid" })
    );
    assert!(f.review(&token, &[AUDIENCE]).is_ok());
    f.objects
        .insert(ObjectKind::Secret, NS, "creds", ObjectInfo::new("new-secret-uid"));
    assert!(matches!(
        f.review(&token, &[AUDIENCE]).unwrap_err(),
        TokenError::SecretUidMismatch { .. }
    ));
    f.objects.remove(ObjectKind::Secret, NS, "creds");
    assert_eq!(
        f.review(&token, &[AUDIENCE]).unwrap_err(),
        TokenError::Invalidated
    );
}

#[test]
fn a_token_signed_by_another_key_with_the_same_claims_is_rejected() {
    let f = fixture();
    let token = f.pod_token();
    let claims = decode_part(&token, 1);

    // Another issuer with the same URL signs the same claims.
    let impostor = ServiceAccountIssuer::new(ISSUER).unwrap();
    let forged = impostor.sign_claims(&claims).unwrap();
    assert_eq!(
        f.review(&forged, &[AUDIENCE]).unwrap_err(),
        TokenError::BadSignature
    );
    assert_eq!(
        f.review_error(&forged, &[AUDIENCE]),
        "[invalid bearer token, go-jose/go-jose: error in cryptographic primitive]"
    );

    // Same again, but claiming this issuer's key id.
    let key = aws_lc_rs::signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let input = format!(
        "{}.{}",
        encode_part(&json!({"alg": "RS256", "kid": f.issuer.key_id()})),
        encode_part(&claims)
    );
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(
        f.review(&forged, &[AUDIENCE]).unwrap_err(),
        TokenError::BadSignature
    );

    // A genuine signature over other claims (tampered payload) fails too.
    let mut tampered_claims = claims;
    tampered_claims["sub"] = json!("system:serviceaccount:kube-system:admin");
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], encode_part(&tampered_claims), parts[2]);
    assert_eq!(
        f.review(&tampered, &[AUDIENCE]).unwrap_err(),
        TokenError::BadSignature
    );
}

#[test]
fn unsigned_hmac_malformed_and_foreign_issuer_tokens_are_not_recognized() {
    let f = fixture();
    let token = f.pod_token();
    let claims = decode_part(&token, 1);

    let none = format!(
        "{}.{}.",
        encode_part(&json!({"alg": "none"})),
        encode_part(&claims)
    );
    assert_eq!(
        f.review(&none, &[AUDIENCE]).unwrap_err(),
        TokenError::NotRecognized
    );
    assert_eq!(f.review_error(&none, &[AUDIENCE]), "invalid bearer token");
    let none_kid = format!(
        "{}.{}.",
        encode_part(&json!({"alg": "none", "kid": f.issuer.key_id()})),
        encode_part(&claims)
    );
    assert_eq!(
        f.review(&none_kid, &[AUDIENCE]).unwrap_err(),
        TokenError::NotRecognized
    );

    let hmac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"secret");
    let input = format!(
        "{}.{}",
        encode_part(&json!({"alg": "HS256"})),
        encode_part(&claims)
    );
    let sig = aws_lc_rs::hmac::sign(&hmac_key, input.as_bytes());
    let hs256 = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    assert_eq!(
        f.review(&hs256, &[AUDIENCE]).unwrap_err(),
        TokenError::NotRecognized
    );

    let mut other_issuer = claims;
    other_issuer["iss"] = json!("https://elsewhere.example");
    let foreign = ServiceAccountIssuer::new("https://elsewhere.example")
        .unwrap()
        .sign_claims(&other_issuer)
        .unwrap();
    assert_eq!(
        f.review(&foreign, &[AUDIENCE]).unwrap_err(),
        TokenError::NotRecognized
    );

    let parts: Vec<&str> = token.split('.').collect();
    for malformed in [
        "garbage".to_owned(),
        "a.b.c".to_owned(),
        format!("{token}.extra"),
        format!("{}.{}", parts[0], parts[1]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], encode_part(&json!("a string")), parts[2]),
    ] {
        assert_eq!(
            f.review(&malformed, &[AUDIENCE]).unwrap_err(),
            TokenError::NotRecognized,
            "{malformed}"
        );
    }

    let err = f
        .issuer
        .review_token(
            &TokenReview {
                spec: TokenReviewSpec::default(),
                ..TokenReview::default()
            },
            &f.objects,
        )
        .unwrap_err();
    assert_eq!(
        (err.code(), err.to_string()),
        (400, "token is required for TokenReview in authentication".into())
    );
}

#[test]
fn an_unauthenticated_review_serializes_like_kube_apiservers() {
    let f = fixture();
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: "garbage".into(),
            audiences: None,
        },
        ..TokenReview::default()
    };
    let out = serde_json::to_value(f.issuer.review_token(&review, &f.objects).unwrap()).unwrap();
    assert_eq!(
        out["status"],
        json!({ "user": {}, "error": "invalid bearer token" })
    );
    assert_eq!(out["kind"], "TokenReview");
    assert_eq!(out["apiVersion"], "authentication.k8s.io/v1");
}

#[test]
fn bearer_authenticator_accepts_the_admin_token_api_audience_tokens_and_anonymous() {
    let f = fixture();
    let auth = BearerAuthenticator::new(f.issuer.clone(), "admin-token")
        .with_static_token("jane-token", UserInfo::new("jane", ["dev"]));

    let admin = auth.authenticate(Some("Bearer admin-token"), &f.objects).unwrap();
    assert_eq!(admin.username, "admin");
    assert_eq!(admin.groups, ["system:masters", "system:authenticated"]);
    let jane = auth.authenticate(Some("bearer jane-token"), &f.objects).unwrap();
    assert_eq!(jane.groups, ["dev", "system:authenticated"]);

    let api_token = f
        .issuer
        .request_token(NS, SA, &token_request(&[], None, None), &f.objects)
        .unwrap();
    let api_token = api_token.status.unwrap().token.unwrap();
    let sa = auth
        .authenticate(Some(&format!("Bearer {api_token}")), &f.objects)
        .unwrap();
    assert_eq!(sa.username, "system:serviceaccount:apps:web");
    assert_eq!(sa.service_account(), Some((NS, SA)));

    // A token minted for another audience is not an API credential.
    let pod_token = f.pod_token();
    let err = auth
        .authenticate(Some(&format!("Bearer {pod_token}")), &f.objects)
        .unwrap_err();
    assert!(
        matches!(err, Unauthorized::InvalidToken(TokenError::WrongAudience { .. })),
        "{err:?}"
    );

    assert_eq!(
        auth.authenticate(Some("Bearer wrong"), &f.objects)
            .unwrap_err()
            .to_string(),
        "invalid bearer token"
    );
    assert_eq!(
        auth.authenticate(Some("Basic YWRtaW46YWRtaW4="), &f.objects)
            .unwrap_err(),
        Unauthorized::MalformedHeader
    );
    assert_eq!(
        auth.authenticate(Some("Bearer "), &f.objects).unwrap_err(),
        Unauthorized::MalformedHeader
    );

    let anonymous = auth.authenticate(None, &f.objects).unwrap();
    assert_eq!(
        (anonymous.username.as_str(), anonymous.groups.as_slice()),
        ("system:anonymous", &["system:unauthenticated".to_owned()][..])
    );
    let strict = auth.with_anonymous(false);
    assert_eq!(
        strict.authenticate(None, &f.objects).unwrap_err(),
        Unauthorized::NoCredentials
    );
}
