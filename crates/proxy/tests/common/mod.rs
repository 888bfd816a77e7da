//! A fake exchanger and TLS material shared by the proxy's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use idbind_exchange::{ExchangeError, ExchangeRequest, Readiness, TokenResponse};
use idbind_proxy::TokenExchange;
use idbind_tls::CertificateAuthority;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

pub const CLIENT_ID: &str = "22222222-2222-2222-2222-222222222222";
pub const TENANT: &str = "11111111-1111-1111-1111-111111111111";
pub const SNI: &str = "ib-proxy.idbind.test";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

type Answer = dyn Fn(&ExchangeRequest) -> Result<TokenResponse, ExchangeError> + Send + Sync;

/// Records requests and answers them with a function; can hold answers until released.
pub struct Fake {
    pub calls: Mutex<Vec<ExchangeRequest>>,
    answer: Box<Answer>,
    /// When set, each exchange waits for a permit (released by the test) before answering.
    gate: Option<Arc<Semaphore>>,
    ready: AtomicBool,
}

pub fn token(access_token: &str) -> TokenResponse {
    TokenResponse {
        token_type: "Bearer",
        expires_in: 3599,
        ext_expires_in: 3599,
        access_token: access_token.to_owned(),
        refresh_in: None,
    }
}

impl Fake {
    pub fn ok() -> Arc<Self> {
        Self::answering(|_| Ok(token("entra-access-token")))
    }

    pub fn answering(
        answer: impl Fn(&ExchangeRequest) -> Result<TokenResponse, ExchangeError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            calls: Mutex::new(Vec::new()),
            answer: Box::new(answer),
            gate: None,
            ready: AtomicBool::new(true),
        })
    }

    /// Exchanges wait until `gate` gets permits.
    pub fn gated(gate: Arc<Semaphore>) -> Arc<Self> {
        Arc::new(Self {
            calls: Mutex::new(Vec::new()),
            answer: Box::new(|_| Ok(token("entra-access-token"))),
            gate: Some(gate),
            ready: AtomicBool::new(true),
        })
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn calls(&self) -> usize {
        self.calls.lock().len()
    }

    pub fn last(&self) -> ExchangeRequest {
        self.calls.lock().last().cloned().expect("an exchange was made")
    }
}

impl TokenExchange for Fake {
    async fn exchange(&self, request: ExchangeRequest) -> Result<TokenResponse, ExchangeError> {
        self.calls.lock().push(request.clone());
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate open").forget();
        }
        (self.answer)(&request)
    }

    fn readiness(&self) -> Readiness {
        let ready = self.ready.load(Ordering::SeqCst);
        Readiness {
            bindings_synced: ready,
            keys_loaded: ready,
        }
    }
}

/// A CA and a serving certificate for [`SNI`] (and 127.0.0.1) in files.
pub struct Certs {
    pub dir: tempfile::TempDir,
    pub ca: CertificateAuthority,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::generate("idbind test CA", Duration::from_secs(86400)).unwrap();
        let certs = Self {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            dir,
            ca,
        };
        certs.rotate();
        certs
    }

    /// Writes a freshly issued certificate and key.
    pub fn rotate(&self) {
        let leaf = self
            .ca
            .issue_server_cert(
                &[SNI.into()],
                &["127.0.0.1".parse().unwrap()],
                Duration::from_secs(3600),
            )
            .unwrap();
        std::fs::write(&self.cert, &leaf.cert_pem).unwrap();
        std::fs::write(&self.key, &leaf.key_pem).unwrap();
    }

    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }
}

/// A form body for a client-credentials token request.
pub fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The body Python azure-identity 1.27.0 sends (PROTOCOL.md §1.3), token file newline included.
pub fn python_body() -> String {
    form(&[
        (
            "client_assertion",
            "eyJhbGciOiJSUzI1NiJ9.eyJqdGkiOiJqdGktMSJ9.c2ln\n",
        ),
        ("client_assertion_type", JWT_BEARER),
        ("client_id", CLIENT_ID),
        ("grant_type", "client_credentials"),
        ("scope", "https://management.azure.com/.default"),
    ])
}
