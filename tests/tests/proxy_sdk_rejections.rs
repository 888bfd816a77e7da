//! Everything the proxy refuses, over HTTPS against the full stack (issue 6, "Must show"): each
//! refusal has the status and OAuth error code `docs/proxy.md` documents, Entra's JSON error
//! shape, no `Retry-After`, and never causes a request to Entra (Azure emulator counters).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use idbind_model::{ClientId, DEFAULT_SA_TOKEN_AUDIENCE};
use idbind_testkit::auth::ServiceAccountIssuer;
use idbind_tests::{ALLOWED_SA, DENIED_SA, SCOPE, Stack};
use serde_json::Value;

struct Case {
    name: &'static str,
    body: String,
    content_type: &'static str,
    status: u16,
    error: &'static str,
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn refusals_have_documented_statuses_and_never_reach_entra() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_test_writer()
        .try_init();
    let stack = Stack::start().await.unwrap();
    let allowed = std::fs::read_to_string(stack.token_file()).unwrap();
    let denied = stack
        .sa_token(DENIED_SA, DEFAULT_SA_TOKEN_AUDIENCE, 3600)
        .await
        .unwrap();
    let wrong_audience = stack
        .sa_token(ALLOWED_SA, "https://kubernetes.default.svc", 3600)
        .await
        .unwrap();

    // Same claims as a valid token, but: expired; signed by another issuer; not signed at all.
    let mut claims = claims_of(&allowed);
    let now = jiff::Timestamp::now().as_second();
    claims["iat"] = (now - 7200).into();
    claims["nbf"] = (now - 7200).into();
    claims["exp"] = (now - 3600).into();
    let expired = stack.kube().issuer().sign_claims(&claims).unwrap();
    let mut foreign_claims = claims_of(&allowed);
    foreign_claims["iss"] = "https://other-cluster.example".into();
    let foreign = ServiceAccountIssuer::new("https://other-cluster.example")
        .unwrap()
        .sign_claims(&foreign_claims)
        .unwrap();
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        allowed.split('.').nth(1).unwrap()
    );

    let form = |assertion: &str| stack.token_form(assertion, SCOPE);
    let unbound = form(&allowed).replace(
        &stack.client_id().to_string(),
        &ClientId::new_random().to_string(),
    );
    let missing: String = form(&allowed)
        .split('&')
        .filter(|p| !p.starts_with("client_assertion="))
        .collect::<Vec<_>>()
        .join("&");
    let cases = [
        Case {
            name: "RBAC-denied service account",
            body: form(&denied),
            content_type: FORM,
            status: 403,
            error: "unauthorized_client",
        },
        Case {
            name: "unbound client id",
            body: unbound,
            content_type: FORM,
            status: 400,
            error: "unauthorized_client",
        },
        Case {
            name: "expired token",
            body: form(&expired),
            content_type: FORM,
            status: 401,
            error: "invalid_client",
        },
        Case {
            name: "wrong audience",
            body: form(&wrong_audience),
            content_type: FORM,
            status: 401,
            error: "invalid_client",
        },
        Case {
            name: "token of another issuer",
            body: form(&foreign),
            content_type: FORM,
            status: 401,
            error: "invalid_client",
        },
        Case {
            name: "alg none",
            body: form(&unsigned),
            content_type: FORM,
            status: 401,
            error: "invalid_client",
        },
        Case {
            name: "malformed form",
            body: "grant_type=client_credentials&scope=%E2%28".into(),
            content_type: FORM,
            status: 400,
            error: "invalid_request",
        },
        Case {
            name: "missing client_assertion",
            body: missing,
            content_type: FORM,
            status: 400,
            error: "invalid_request",
        },
        Case {
            name: "JSON instead of a form",
            body: r#"{"grant_type":"client_credentials"}"#.into(),
            content_type: "application/json",
            status: 400,
            error: "invalid_request",
        },
        Case {
            name: "oversized body",
            body: format!("{}&padding={}", form(&allowed), "x".repeat(70 * 1024)),
            content_type: FORM,
            status: 413,
            error: "invalid_request",
        },
    ];

    stack.azure().reset_counters();
    let client = stack.https_client().unwrap();
    for case in &cases {
        let correlation = uuid::Uuid::new_v4().to_string();
        let response = client
            .post(stack.token_url(&format!("/{}/oauth2/v2.0/token", stack.tenant_id())))
            .header("content-type", case.content_type)
            .header("x-ms-client-request-id", &correlation)
            .body(case.body.clone())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(
            response.headers().get("retry-after").is_none(),
            "{}: no Retry-After on a 4xx",
            case.name
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (status, body["error"].as_str().unwrap()),
            (case.status, case.error),
            "{}: {body}",
            case.name
        );
        assert_eq!(body["correlation_id"], correlation.as_str(), "{}", case.name);
        for field in ["error_description", "timestamp", "trace_id"] {
            assert!(
                body[field].as_str().is_some_and(|s| !s.is_empty()),
                "{}: {field} in {body}",
                case.name
            );
        }
        let description = body["error_description"].as_str().unwrap();
        for secret in [&allowed, &denied, &expired] {
            assert!(
                !description.contains(secret.as_str()),
                "{}: the description echoes a token",
                case.name
            );
        }
    }
    assert_eq!(stack.entra_calls(), 0, "no refusal reached Entra");

    // The same request with the allowed token works: the refusals were about what was changed.
    let response = client
        .post(stack.token_url("/"))
        .header("content-type", FORM)
        .body(form(&allowed))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    stack
        .assert_identity_token(body["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(stack.entra_calls(), 1);

    let metrics = stack.metrics_text().await.unwrap();
    for line in [
        r#"idbind_proxy_requests_total{route="token",status="403",outcome="forbidden"} 1"#,
        r#"idbind_proxy_requests_total{route="token",status="400",outcome="unbound"} 1"#,
        r#"idbind_proxy_requests_total{route="token",status="401",outcome="unauthenticated"} 4"#,
        r#"idbind_proxy_requests_total{route="token",status="413",outcome="payload_too_large"} 1"#,
        r#"idbind_proxy_requests_total{route="token",status="200",outcome="ok"} 1"#,
        r#"idbind_exchanges_total{outcome="forbidden"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
}
