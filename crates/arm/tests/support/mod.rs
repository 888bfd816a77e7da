//! Shared helpers of the integration tests: an emulator with an ARM client, retry recorders, a
//! loopback HTTP server for mocks, and an OIDC issuer that signs assertions.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use axum::Router;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use idbind_arm::{
    ArmClient, ArmOptions, ClientSecretCredential, CloudConfig, PUBLIC_ARM_SCOPE, RetryEvent, RetryPolicy,
};
use idbind_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

/// The emulator as a cloud: both hosts are its base URL.
pub fn cloud(emu: &Emulator) -> CloudConfig {
    CloudConfig::custom(emu.base_url(), emu.base_url(), PUBLIC_ARM_SCOPE).unwrap()
}

/// A client-secret credential for the emulator's default principal.
pub fn principal_credential(emu: &Emulator) -> Arc<ClientSecretCredential> {
    let sp = emu.default_principal();
    Arc::new(
        ClientSecretCredential::new(
            &cloud(emu).authority_host,
            sp.tenant_id,
            sp.client_id,
            sp.client_secret,
        )
        .unwrap(),
    )
}

/// Retry events seen by a policy.
#[derive(Clone, Default)]
pub struct Retries(Arc<Mutex<Vec<RetryEvent>>>);

impl Retries {
    /// `policy` with a hook recording into this.
    pub fn hook(&self, policy: RetryPolicy) -> RetryPolicy {
        let events = self.0.clone();
        policy.on_retry(move |e| events.lock().unwrap().push(e.clone()))
    }

    pub fn events(&self) -> Vec<RetryEvent> {
        self.0.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// Retries with a 1 ms base delay so tests do not wait on backoff.
pub fn fast_policy() -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(5)
        .base_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(5))
}

/// An emulator and an ARM client for its default principal.
pub struct Env {
    pub emu: Emulator,
    pub arm: ArmClient,
    pub retries: Retries,
}

impl Env {
    pub async fn start() -> Self {
        Self::with(EmulatorConfig::default(), fast_policy(), ArmOptions::default()).await
    }

    pub async fn with(config: EmulatorConfig, policy: RetryPolicy, options: ArmOptions) -> Self {
        let emu = idbind_emulator::start(config).await.unwrap();
        let retries = Retries::default();
        let arm = ArmClient::with_options(
            cloud(&emu),
            principal_credential(&emu),
            retries.hook(policy),
            options,
        )
        .unwrap();
        Self { emu, arm, retries }
    }

    pub fn identity_id(&self, name: &str) -> idbind_model::IdentityResourceId {
        idbind_model::IdentityResourceId::new(&self.emu.default_subscription(), "rg", name).unwrap()
    }
}

/// Polls `f` until it is true (tests wait on conditions, not on time).
pub async fn eventually(mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached");
}

/// A router served on a loopback port until dropped.
pub struct MockServer {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl MockServer {
    pub async fn start(router: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { url, task }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An OIDC issuer on loopback (discovery + JWKS) that signs RS256 assertions.
pub struct TestIssuer {
    pub url: String,
    key: KeyPair,
    kid: String,
    _server: MockServer,
}

impl TestIssuer {
    pub async fn start() -> Self {
        let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let comps = PublicKeyComponents::<Vec<u8>>::from(key.public_key());
        let kid = "test-key-1".to_owned();
        let jwk = json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": B64.encode(&comps.n), "e": B64.encode(&comps.e)});
        let issuer_url = Arc::new(Mutex::new(String::new()));
        let u = issuer_url.clone();
        let router = Router::new()
            .route(
                "/issuer/.well-known/openid-configuration",
                axum::routing::get(move || {
                    let u = u.lock().unwrap().clone();
                    async move {
                        axum::Json(json!({"issuer": u, "jwks_uri": format!("{u}/openid/v1/jwks"),
                            "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
                            "id_token_signing_alg_values_supported": ["RS256"]}))
                    }
                }),
            )
            .route(
                "/issuer/openid/v1/jwks",
                axum::routing::get(move || {
                    let jwk = jwk.clone();
                    async move { axum::Json(json!({"keys": [jwk]})) }
                }),
            );
        let server = MockServer::start(router).await;
        let url = format!("{}/issuer", server.url);
        *issuer_url.lock().unwrap() = url.clone();
        Self {
            url,
            key,
            kid,
            _server: server,
        }
    }

    /// An assertion with `sub` for Entra (`aud` api://AzureADTokenExchange), valid 10 minutes.
    pub fn assertion(&self, sub: &str) -> String {
        let now = jiff::Timestamp::now().as_second();
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let claims = json!({"iss": self.url, "sub": sub, "aud": ["api://AzureADTokenExchange"],
            "iat": now, "nbf": now, "exp": now + 600, "jti": uuid::Uuid::new_v4().to_string()});
        sign(&self.key, &header, &claims)
    }
}

fn sign(key: &KeyPair, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &rng,
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", B64.encode(sig))
}
