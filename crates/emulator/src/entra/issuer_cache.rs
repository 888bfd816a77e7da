//! Fetching and caching an assertion issuer's signing keys, as Entra does: `{iss}/.well-known/
//! openid-configuration`, then its `jwks_uri`; only the first 100 keys count.

use std::collections::HashMap;
use std::time::Duration;

use idbind_model::MAX_JWKS_KEYS;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::time::Instant;

use crate::urls::check_issuer_url;
use crate::{Error, Result};

/// Largest issuer document the emulator reads.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
struct Entry {
    keys: Vec<Value>,
    fetched: Instant,
}

#[derive(Debug)]
pub(crate) struct IssuerCache {
    http: reqwest::Client,
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
    fetches: Mutex<u64>,
}

impl IssuerCache {
    pub(crate) fn new(ttl: Duration, timeout: Duration, extra_roots_pem: &[String]) -> Result<Self> {
        let mut roots = Vec::new();
        for pem in extra_roots_pem {
            let certs =
                reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| Error::InvalidInput {
                    what: "issuer trust roots",
                    input: format!("{} bytes of PEM", pem.len()),
                    reason: format!("expected PEM certificates: {e}"),
                })?;
            roots.extend(certs);
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .tls_certs_merge(roots)
            .build()
            .map_err(|e| Error::HttpClient(e.to_string()))?;
        Ok(Self {
            http,
            ttl,
            entries: Mutex::new(HashMap::new()),
            fetches: Mutex::new(0),
        })
    }

    pub(crate) fn flush(&self) {
        self.entries.lock().clear();
    }

    /// Number of document sets fetched so far (tests observe caching with it).
    pub(crate) fn fetches(&self) -> u64 {
        *self.fetches.lock()
    }

    /// The issuer's keys, from the cache when fresh unless `refresh`.
    pub(crate) async fn keys(&self, issuer: &str, refresh: bool) -> Result<Vec<Value>, String> {
        if !refresh
            && !self.ttl.is_zero()
            && let Some(e) = self.entries.lock().get(issuer)
            && e.fetched.elapsed() < self.ttl
        {
            return Ok(e.keys.clone());
        }
        *self.fetches.lock() += 1;
        let keys = self.fetch(issuer).await?;
        self.entries.lock().insert(
            issuer.to_owned(),
            Entry {
                keys: keys.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(keys)
    }

    async fn fetch(&self, issuer: &str) -> Result<Vec<Value>, String> {
        check_issuer_url(issuer).map_err(|e| format!("The issuer '{issuer}' cannot be fetched: {e}."))?;
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let discovery = self.get_json(&discovery_url).await?;
        let doc_issuer = discovery
            .get("issuer")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if doc_issuer != issuer {
            return Err(format!(
                "The discovery document at {discovery_url} names issuer '{doc_issuer}', expected '{issuer}'."
            ));
        }
        let jwks_uri = discovery
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("The discovery document at {discovery_url} has no 'jwks_uri'."))?;
        check_issuer_url(jwks_uri)
            .map_err(|e| format!("The jwks_uri '{jwks_uri}' cannot be fetched: {e}."))?;
        let jwks = self.get_json(jwks_uri).await?;
        let keys = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("The JWKS at {jwks_uri} has no 'keys' array."))?;
        Ok(keys.iter().take(MAX_JWKS_KEYS).cloned().collect())
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url} failed: {e}."))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("GET {url} answered HTTP {}.", status.as_u16()));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(format!(
                "GET {url}: the document is larger than {MAX_DOCUMENT_BYTES} bytes."
            ));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("GET {url}: reading the body failed: {e}."))?;
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(format!(
                "GET {url}: the document is larger than {MAX_DOCUMENT_BYTES} bytes."
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("GET {url}: the body is not JSON ({e})."))
    }
}
