//! Shared helpers for the emulator's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use idbind_emulator::{ARM_SCOPE, Emulator, EmulatorConfig, IdentityInfo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

pub const API: &str = "2024-11-30";
pub const AUD: &str = "api://AzureADTokenExchange";

pub async fn start() -> Emulator {
    idbind_emulator::start(EmulatorConfig::default()).await.unwrap()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// POSTs a token request form; returns status and JSON body.
pub async fn token_request(emu: &Emulator, tenant: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let resp = http()
        .post(format!("{}/{tenant}/oauth2/v2.0/token", emu.base_url()))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

/// An ARM token for the default principal.
pub async fn arm_token(emu: &Emulator) -> String {
    let sp = emu.default_principal();
    secret_token(
        emu,
        &sp.tenant_id.to_string(),
        &sp.client_id.to_string(),
        &sp.client_secret,
        ARM_SCOPE,
    )
    .await
}

pub async fn secret_token(emu: &Emulator, tenant: &str, client: &str, secret: &str, scope: &str) -> String {
    let (status, body) = token_request(
        emu,
        tenant,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", secret),
            ("scope", scope),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

pub struct ArmResponse {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl ArmResponse {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One ARM request with a bearer token; `path_and_query` starts with `/subscriptions`.
pub async fn arm(
    emu: &Emulator,
    token: &str,
    method: Method,
    path_and_query: &str,
    body: Option<Value>,
) -> ArmResponse {
    let mut req = http()
        .request(method, format!("{}{path_and_query}", emu.base_url()))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    ArmResponse {
        status,
        headers,
        body,
    }
}

pub fn identity_path(sub: &str, rg: &str, name: &str) -> String {
    format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )
}

pub fn fic_path(identity: &IdentityInfo, name: &str) -> String {
    format!(
        "{}/federatedIdentityCredentials/{name}?api-version={API}",
        identity.resource_id
    )
}

pub fn fic_body(issuer: &str, subject: &str) -> Value {
    json!({"properties": {"issuer": issuer, "subject": subject, "audiences": [AUD]}})
}

/// A test OIDC issuer on loopback: serves discovery and JWKS, signs assertions with RS256.
pub struct TestIssuer {
    pub url: String,
    keys: Arc<Mutex<Vec<TestKey>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    pub fn generate(kid: &str) -> Self {
        let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let der = kp.as_der().unwrap();
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        let comps = PublicKeyComponents::<Vec<u8>>::from(kp.public_key());
        let jwk = json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": B64.encode(&comps.n), "e": B64.encode(&comps.e)});
        Self {
            kid: kid.to_owned(),
            encoding,
            jwk,
        }
    }
}

impl TestIssuer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/issuer", listener.local_addr().unwrap());
        let keys = Arc::new(Mutex::new(vec![TestKey::generate("k1")]));
        let (k, u) = (keys.clone(), url.clone());
        let app = Router::new()
            .route(
                "/issuer/.well-known/openid-configuration",
                get(move || {
                    let u = u.clone();
                    async move {
                        Json(json!({"issuer": u, "jwks_uri": format!("{u}/openid/v1/jwks"),
                            "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
                            "id_token_signing_alg_values_supported": ["RS256"]}))
                    }
                }),
            )
            .route(
                "/issuer/openid/v1/jwks",
                get(move || {
                    let k = k.clone();
                    async move {
                        Json(json!({"keys": k.lock().iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}))
                    }
                }),
            );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, keys, task }
    }

    pub fn key(&self) -> TestKey {
        self.keys.lock()[0].clone()
    }

    /// Replaces the published keys.
    pub fn set_keys(&self, keys: Vec<TestKey>) {
        *self.keys.lock() = keys;
    }

    /// An assertion signed with the first key.
    pub fn assertion(&self, sub: &str) -> String {
        self.assertion_with(&self.key(), &json!({"sub": sub}))
    }

    /// An assertion with default claims (iss, aud, iat, nbf, exp, jti) overridden by `claims`.
    pub fn assertion_with(&self, key: &TestKey, claims: &Value) -> String {
        let now = now_secs();
        let mut all = json!({"iss": self.url, "aud": [AUD], "iat": now, "nbf": now, "exp": now + 600,
            "jti": uuid::Uuid::new_v4().to_string()});
        for (k, v) in claims.as_object().unwrap() {
            all[k] = v.clone();
        }
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &all, &key.encoding).unwrap()
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Exchanges an assertion for a token of `identity`.
pub async fn exchange(emu: &Emulator, identity: &IdentityInfo, assertion: &str) -> (StatusCode, Value) {
    token_request(
        emu,
        &identity.tenant_id.to_string(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &identity.client_id.to_string()),
            ("scope", ARM_SCOPE),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ],
    )
    .await
}

/// Asserts an Entra error with the given status and AADSTS code, checking the whole shape.
pub fn assert_entra_error(status: StatusCode, body: &Value, want_status: u16, code: u64) {
    assert_eq!(status.as_u16(), want_status, "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let desc = body["error_description"].as_str().unwrap();
    assert!(desc.starts_with(&format!("AADSTS{code}: ")), "{desc}");
    assert!(
        desc.contains("\r\nTrace ID: ")
            && desc.contains("\r\nCorrelation ID: ")
            && desc.contains("\r\nTimestamp: "),
        "{desc}"
    );
    for field in ["error", "timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(body[field].is_string(), "missing {field}: {body}");
    }
    assert!(
        body["error_uri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("code={code}"))
    );
}

/// Waits (polling, bounded) until `f` is true.
pub async fn eventually(mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached");
}
