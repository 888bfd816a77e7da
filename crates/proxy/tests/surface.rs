//! The HTTP surface driven in-process with a fake exchanger: what each client sends is accepted,
//! everything else is refused with the documented status and Entra-shaped error, and refusals of
//! the surface never reach the exchanger.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{CLIENT_ID, Fake, JWT_BEARER, TENANT, form, python_body};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use idbind_exchange::{ExchangeError, TokenResponse};
use idbind_proxy::{ProxyMetrics, Surface, SurfaceConfig};
use serde_json::Value;

/// Name, request, expected (status, error), a word the description must contain.
type Case = (
    &'static str,
    Request<Full<Bytes>>,
    (u16, &'static str),
    &'static str,
);

fn surface(fake: Arc<Fake>) -> Surface<Arc<Fake>> {
    surface_with(fake, |_| {})
}

fn surface_with(fake: Arc<Fake>, tweak: impl FnOnce(&mut SurfaceConfig)) -> Surface<Arc<Fake>> {
    let mut config = SurfaceConfig::new(url::Url::parse("https://login.microsoftonline.com/").unwrap());
    tweak(&mut config);
    Surface::new(fake, config, ProxyMetrics::default())
}

fn post(path: &str, content_type: Option<&str>, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let mut b = Request::post(path);
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(Full::new(body.into())).unwrap()
}

const FORM: &str = "application/x-www-form-urlencoded";

async fn json(response: Response<Full<Bytes>>) -> (StatusCode, http::HeaderMap, Value) {
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
    (parts.status, parts.headers, value)
}

/// Checks an Entra-shaped error (PROTOCOL.md §3.4) and returns its `error`.
fn assert_entra_error(status: StatusCode, headers: &http::HeaderMap, body: &Value, want: (u16, &str)) {
    assert_eq!((status.as_u16(), body["error"].as_str().unwrap()), want, "{body}");
    for field in ["error_description", "timestamp", "trace_id", "correlation_id"] {
        assert!(
            body[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field} missing in {body}"
        );
    }
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("idbind: "),
        "{body}"
    );
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
        assert!(
            headers.get("retry-after").is_none(),
            "4xx must not carry Retry-After"
        );
    }
}

#[tokio::test]
async fn python_request_to_the_tenant_token_path() {
    let fake = Fake::ok();
    let s = surface(fake.clone());
    let mut req = post(&format!("/{TENANT}/oauth2/v2.0/token"), Some(FORM), python_body());
    req.headers_mut().insert(
        "x-ms-client-request-id",
        "5e0c6b6e-0d52-4d3f-9d1a-7d2b3c4e5f60".parse().unwrap(),
    );
    req.headers_mut()
        .insert("host", "attacker.example".parse().unwrap());
    let (status, headers, body) = json(s.handle(req).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599, "expires_in is a JSON integer");
    assert_eq!(body["access_token"], "entra-access-token");
    assert_eq!(
        headers["client-request-id"],
        "5e0c6b6e-0d52-4d3f-9d1a-7d2b3c4e5f60"
    );
    assert_eq!(headers["cache-control"], "no-store, no-cache");

    let r = fake.last();
    assert_eq!(r.client_id, CLIENT_ID);
    assert_eq!(r.scope, "https://management.azure.com/.default");
    assert_eq!(
        r.assertion, "eyJhbGciOiJSUzI1NiJ9.eyJqdGkiOiJqdGktMSJ9.c2ln",
        "trailing newline trimmed"
    );
    assert_eq!(r.tenant_hint.as_deref(), Some(TENANT));
    assert_eq!(r.correlation_id, "5e0c6b6e-0d52-4d3f-9d1a-7d2b3c4e5f60");
    assert_eq!(r.claims, None);
    assert_eq!(s.metrics().request_count("token", 200, "ok"), 1);
}

#[tokio::test]
async fn msal_node_request_with_charset_query_and_extra_fields() {
    let fake = Fake::ok();
    let s = surface(fake.clone());
    let body = form(&[
        ("client_id", CLIENT_ID),
        ("scope", "https://vault.azure.net/.default"),
        ("grant_type", "client_credentials"),
        ("client_assertion", "eyJ.node.token"),
        ("client_assertion_type", JWT_BEARER),
        ("x-client-SKU", "msal.js.node"),
        ("x-client-VER", "7.2.3"),
        ("x-ms-lib-capability", "retry-after, h429"),
        ("x-client-current-telemetry", "5|771,2,,,|,"),
        ("client-request-id", "node-corr-1"),
        ("claims", r#"{"access_token":{"xms_cc":{"values":["CP1"]}}}"#),
    ]);
    let req = post(
        &format!("/{TENANT}/oauth2/v2.0/token?client-request-id=node-corr-1"),
        Some("application/x-www-form-urlencoded;charset=utf-8"),
        body,
    );
    let (status, headers, _) = json(s.handle(req).await).await;
    assert_eq!(status, 200);
    assert_eq!(headers["client-request-id"], "node-corr-1");
    let r = fake.last();
    assert_eq!(r.scope, "https://vault.azure.net/.default");
    assert_eq!(
        r.claims.as_deref(),
        Some(r#"{"access_token":{"xms_cc":{"values":["CP1"]}}}"#)
    );
    assert_eq!(r.correlation_id, "node-corr-1");
}

#[tokio::test]
async fn curl_post_to_root_and_query_string_parameters() {
    let fake = Fake::ok();
    let s = surface(fake.clone());
    // The AKS docs' curl: POST / with a form body, no tenant anywhere.
    let (status, _, _) = json(s.handle(post("/", Some(FORM), python_body())).await).await;
    assert_eq!(status, 200);
    assert_eq!(fake.last().tenant_hint, None);

    // The msal-go sample: parameters in the query string, empty body, no Content-Type.
    let req = post(&format!("/?{}", python_body()), None, Bytes::new());
    let (status, _, body) = json(s.handle(req).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.calls(), 2);

    // A path prefix is fine too.
    let req = post(
        &format!("/prefix/{TENANT}/oauth2/v2.0/token"),
        Some(FORM),
        python_body(),
    );
    assert_eq!(s.handle(req).await.status(), 200);
    assert_eq!(fake.last().tenant_hint.as_deref(), Some(TENANT));
}

#[tokio::test]
async fn msal_go_discovers_then_posts_to_the_advertised_token_endpoint() {
    let fake = Fake::ok();
    let s = surface(fake.clone());
    let get = |path: String| Request::get(path).body(Full::new(Bytes::new())).unwrap();

    let (status, headers, doc) = json(
        s.handle(get(format!("/{TENANT}/v2.0/.well-known/openid-configuration")))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert!(headers["cache-control"].to_str().unwrap().contains("max-age"));
    assert_eq!(
        doc["issuer"],
        format!("https://login.microsoftonline.com/{TENANT}/v2.0")
    );
    for field in ["authorization_endpoint", "token_endpoint", "jwks_uri"] {
        assert!(
            doc[field]
                .as_str()
                .unwrap()
                .starts_with("https://login.microsoftonline.com/"),
            "{field}"
        );
    }
    // MSAL Go swaps the host for the proxy's and keeps the path.
    let token_endpoint = url::Url::parse(doc["token_endpoint"].as_str().unwrap()).unwrap();
    let go_body = format!(
        "{}&client_info=1",
        python_body().replace(".default", ".default+openid+offline_access+profile")
    );
    let mut req = post(token_endpoint.path(), Some(FORM), go_body);
    req.headers_mut()
        .insert("client-request-id", "go-corr".parse().unwrap());
    let (status, headers, _) = json(s.handle(req).await).await;
    assert_eq!(status, 200);
    assert_eq!(headers["client-request-id"], "go-corr");
    assert_eq!(
        fake.last().scope,
        "https://management.azure.com/.default",
        "OIDC scopes dropped"
    );

    let q = "api-version=1.1&authorization_endpoint=https%3A%2F%2Flogin.microsoftonline.com%2Fcommon%2Foauth2%2Fv2.0%2Fauthorize";
    let (status, _, doc) = json(s.handle(get(format!("/common/discovery/instance?{q}"))).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        doc["tenant_discovery_endpoint"],
        "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration"
    );
    assert_eq!(
        doc["metadata"][0]["preferred_network"],
        "login.microsoftonline.com"
    );
    assert_eq!(s.metrics().request_count("openid_configuration", 200, "ok"), 1);
    assert_eq!(s.metrics().request_count("instance_discovery", 200, "ok"), 1);
}

#[tokio::test]
async fn surface_refusals_never_reach_the_exchanger() {
    let fake = Fake::ok();
    let s = surface_with(fake.clone(), |c| c.max_body_bytes = 4096);
    let without = |name: &str| {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(python_body().as_bytes())
            .filter(|(k, _)| k != name)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    };
    let cases: Vec<Case> = vec![
        (
            "missing client_assertion",
            post("/", Some(FORM), without("client_assertion")),
            (400, "invalid_request"),
            "client_assertion",
        ),
        (
            "missing scope",
            post("/", Some(FORM), without("scope")),
            (400, "invalid_request"),
            "scope",
        ),
        (
            "missing client_id",
            post("/", Some(FORM), without("client_id")),
            (400, "invalid_request"),
            "client_id",
        ),
        (
            "missing grant_type",
            post("/", Some(FORM), without("grant_type")),
            (400, "invalid_request"),
            "grant_type",
        ),
        (
            "empty request",
            post("/", None, Bytes::new()),
            (400, "invalid_request"),
            "grant_type, client_id, scope",
        ),
        (
            "password grant",
            post(
                "/",
                Some(FORM),
                python_body().replace("client_credentials", "password"),
            ),
            (400, "unsupported_grant_type"),
            "password",
        ),
        (
            "secret instead of assertion type",
            post(
                "/",
                Some(FORM),
                python_body().replace("jwt-bearer", "saml2-bearer"),
            ),
            (400, "invalid_request"),
            "client_assertion_type",
        ),
        (
            "malformed form",
            post("/", Some(FORM), "grant_type=client%ZZcredentials&scope=%"),
            (400, "invalid_request"),
            "percent-escape",
        ),
        (
            "JSON body",
            post(
                "/",
                Some("application/json"),
                r#"{"grant_type":"client_credentials"}"#,
            ),
            (400, "invalid_request"),
            "Content-Type",
        ),
        (
            "OIDC scopes only",
            post(
                "/",
                Some(FORM),
                python_body().replace("https%3A%2F%2Fmanagement.azure.com%2F.default", "openid+profile"),
            ),
            (400, "invalid_scope"),
            "names no resource",
        ),
        (
            "oversized body",
            post(
                "/",
                Some(FORM),
                format!("{}&pad={}", python_body(), "x".repeat(5000)),
            ),
            (413, "invalid_request"),
            "larger than 4096",
        ),
    ];
    for (name, req, want, needle) in cases {
        let (status, headers, body) = json(s.handle(req).await).await;
        assert_entra_error(status, &headers, &body, want);
        assert!(
            body["error_description"].as_str().unwrap().contains(needle),
            "{name}: {body}"
        );
    }
    assert_eq!(fake.calls(), 0, "no refusal reached the exchanger");
    assert_eq!(s.metrics().request_count("token", 413, "payload_too_large"), 1);
    assert_eq!(
        s.metrics().request_count("token", 400, "unsupported_grant_type"),
        1
    );
}

#[tokio::test]
async fn oversized_chunked_body_without_length_is_refused() {
    let fake = Fake::ok();
    let s = surface_with(fake.clone(), |c| c.max_body_bytes = 1024);
    let chunks =
        (0..100).map(|_| Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(vec![b'a'; 100]))));
    let body = StreamBody::new(tokio_stream::iter(chunks));
    let req = Request::post("/")
        .header("content-type", FORM)
        .body(body)
        .unwrap();
    let response = s.handle(req).await;
    assert_eq!(response.status(), 413);
    assert_eq!(fake.calls(), 0);
}

#[tokio::test]
async fn methods_other_than_post_get_405_with_allow() {
    let s = surface(Fake::ok());
    for (method, path, allow) in [
        ("GET", "/", "POST"),
        ("GET", "/t/oauth2/v2.0/token", "POST"),
        ("PUT", "/", "POST"),
        ("DELETE", "/common/discovery/instance", "GET, HEAD, POST"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, headers, body) = json(s.handle(req).await).await;
        assert_entra_error(status, &headers, &body, (405, "invalid_request"));
        assert_eq!(headers["allow"], allow, "{method} {path}");
    }
}

#[tokio::test]
async fn exchange_errors_render_with_their_status_and_retry_policy() {
    let cases: Vec<(ExchangeError, u16, &str, Option<&str>)> = vec![
        (
            ExchangeError::unauthenticated("token expired"),
            401,
            "invalid_client",
            None,
        ),
        (
            ExchangeError::forbidden("RBAC says no"),
            403,
            "unauthorized_client",
            None,
        ),
        (
            ExchangeError::unbound("no binding"),
            400,
            "unauthorized_client",
            None,
        ),
        (
            ExchangeError::unavailable("Entra is down", Some(Duration::from_secs(7))),
            503,
            "temporarily_unavailable",
            Some("7"),
        ),
        (ExchangeError::internal("oops"), 500, "server_error", None),
    ];
    for (error, status, code, retry_after) in cases {
        let fake = Fake::answering(move |_| Err(error.clone()));
        let s = surface(fake.clone());
        let (got, headers, body) = json(s.handle(post("/", Some(FORM), python_body())).await).await;
        assert_entra_error(got, &headers, &body, (status, code));
        assert_eq!(
            headers.get("retry-after").map(|v| v.to_str().unwrap()),
            retry_after,
            "{code}"
        );
        assert_eq!(fake.calls(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn slow_exchange_gets_503_and_slow_body_gets_408() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let fake = Fake::gated(gate.clone());
    let s = surface_with(fake.clone(), |c| c.request_timeout = Duration::from_secs(5));
    let (status, headers, body) = json(s.handle(post("/", Some(FORM), python_body())).await).await;
    assert_entra_error(status, &headers, &body, (503, "temporarily_unavailable"));
    assert!(headers.get("retry-after").is_some());
    assert_eq!(s.metrics().request_count("token", 503, "timeout"), 1);

    // A body that never finishes.
    let body = StreamBody::new(tokio_stream::pending::<
        Result<http_body::Frame<Bytes>, std::io::Error>,
    >());
    let req = Request::post("/")
        .header("content-type", FORM)
        .body(body)
        .unwrap();
    let response = s.handle(req).await;
    assert_eq!(response.status(), 408);
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn garbage_correlation_ids_are_replaced() {
    let fake = Fake::ok();
    let s = surface(fake.clone());
    let mut req = post("/", Some(FORM), python_body());
    req.headers_mut()
        .insert("x-ms-client-request-id", "has space".parse().unwrap());
    let (_, headers, _) = json(s.handle(req).await).await;
    let echoed = headers["client-request-id"].to_str().unwrap();
    assert_ne!(echoed, "has space");
    assert!(uuid::Uuid::parse_str(echoed).is_ok());
    assert_eq!(fake.last().correlation_id, echoed);
}

#[tokio::test]
async fn success_body_is_passed_as_the_exchanger_shaped_it() {
    let fake = Fake::answering(|_| {
        Ok(TokenResponse {
            refresh_in: Some(1700),
            expires_in: 1800,
            ..common::token("t")
        })
    });
    let s = surface(fake);
    let (_, _, body) = json(s.handle(post("/", Some(FORM), python_body())).await).await;
    assert_eq!(body["expires_in"], 1800);
    assert_eq!(body["refresh_in"], 1700);
    assert_eq!(body["ext_expires_in"], 3599);
}

/// Captures log output in memory.
#[derive(Clone, Default)]
struct Captured(Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_name_the_token_by_hash_and_jti_never_by_value() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fake = Fake::answering(|_| Err(ExchangeError::forbidden("RBAC says no")));
    let s = surface(fake);
    let assertion = "eyJhbGciOiJSUzI1NiJ9.eyJqdGkiOiJqdGktMSJ9.c2ln";
    let response = s.handle(post("/", Some(FORM), python_body())).await;
    assert_eq!(response.status(), 403);
    let ok = surface(Fake::ok());
    assert_eq!(
        ok.handle(post("/", Some(FORM), python_body())).await.status(),
        200
    );

    let logs = String::from_utf8(captured.0.lock().clone()).unwrap();
    let lines: Vec<Value> = logs.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let token_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "token request")
        .collect();
    assert_eq!(token_lines.len(), 2, "{logs}");
    for line in &token_lines {
        let f = &line["fields"];
        assert_eq!(f["jti"], "jti-1");
        assert_eq!(f["client_id"], CLIENT_ID);
        assert_eq!(f["token_sha256"].as_str().unwrap().len(), 16);
        assert!(f["latency_ms"].is_number());
    }
    assert_eq!(token_lines[0]["fields"]["outcome"], "forbidden");
    assert_eq!(token_lines[1]["fields"]["outcome"], "ok");
    assert!(!logs.contains(assertion), "a token is in the logs:\n{logs}");
    assert!(!logs.contains("c2ln"), "a signature is in the logs:\n{logs}");
    assert!(
        !logs.contains("entra-access-token"),
        "an access token is in the logs:\n{logs}"
    );
}
