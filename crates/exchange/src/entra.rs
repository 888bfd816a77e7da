//! The Entra token endpoint client: the client-credentials grant with a client assertion, with
//! timeouts and bounded retries.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use idbind_issuer::MintedAssertion;
use idbind_model::{ClientId, TenantId};
use serde::Deserialize;

use crate::{Error, ExchangeError, Metrics, Result, UpstreamResponse};

const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest Entra body read (success or error).
const MAX_BODY: usize = 1024 * 1024;

/// Settings of the [`EntraClient`].
#[derive(Clone)]
pub struct EntraConfig {
    /// Authority host, e.g. `https://login.microsoftonline.com` or an emulator's base URL; a path
    /// is kept as a prefix. `http` is accepted for loopback hosts only.
    pub authority: url::Url,
    /// Timeout of one HTTP attempt (default 10 s).
    pub attempt_timeout: Duration,
    /// Connect timeout (default 3 s).
    pub connect_timeout: Duration,
    /// Most attempts per exchange, the first included (default 3).
    pub max_attempts: u32,
    /// First retry delay; doubles each retry (default 200 ms), randomized by up to half.
    pub backoff_base: Duration,
    /// Longest retry delay (default 2 s).
    pub backoff_max: Duration,
    /// Longest `Retry-After` honoured; asking for more ends the retries (default 10 s).
    pub max_retry_after: Duration,
    /// Extra trust roots (PEM bundle) for the authority, e.g. a test CA.
    pub extra_roots_pem: Option<Vec<u8>>,
    /// Trust only `extra_roots_pem`, not the system roots.
    pub only_extra_roots: bool,
}

impl EntraConfig {
    /// Defaults for `authority`.
    pub fn new(authority: url::Url) -> Self {
        Self {
            authority,
            attempt_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            max_attempts: 3,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
            extra_roots_pem: None,
            only_extra_roots: false,
        }
    }
}

impl fmt::Debug for EntraConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraConfig")
            .field("authority", &self.authority.as_str())
            .field("attempt_timeout", &self.attempt_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("extra_roots", &self.extra_roots_pem.is_some())
            .field("only_extra_roots", &self.only_extra_roots)
            .finish_non_exhaustive()
    }
}

/// One client-credentials request, minus the assertion (minted per attempt).
#[derive(Clone, Copy, Debug)]
pub struct TokenRequest<'a> {
    /// Tenant the identity lives in.
    pub tenant: &'a TenantId,
    /// The identity's client id.
    pub client_id: &'a ClientId,
    /// Normalized scope.
    pub scope: &'a str,
    /// `claims`, passed through.
    pub claims: Option<&'a str>,
    /// Sent as `client-request-id`.
    pub correlation_id: &'a str,
}

/// Entra's successful answer.
#[derive(Clone, PartialEq, Eq)]
pub struct EntraToken {
    /// The access token.
    pub access_token: String,
    /// Lifetime in seconds at the time of the answer.
    pub expires_in: u64,
    /// Extended lifetime in seconds (defaults to `expires_in`).
    pub ext_expires_in: u64,
    /// Entra's own refresh hint in seconds, if any.
    pub refresh_in: Option<u64>,
}

impl fmt::Debug for EntraToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraToken")
            .field("expires_in", &self.expires_in)
            .field("ext_expires_in", &self.ext_expires_in)
            .field("refresh_in", &self.refresh_in)
            .finish_non_exhaustive()
    }
}

/// Client of Entra's v2 token endpoint `POST {authority}/{tenant}/oauth2/v2.0/token`.
#[derive(Clone)]
pub struct EntraClient {
    http: reqwest::Client,
    config: EntraConfig,
    metrics: Metrics,
}

impl fmt::Debug for EntraClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A number Entra may send as a JSON number or a numeric string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(u64),
    Float(f64),
    Text(String),
}

impl Seconds {
    fn get(&self) -> Option<u64> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Float(f) if *f >= 0.0 => Some(*f as u64),
            Self::Float(_) => None,
            Self::Text(s) => s.trim().parse().ok(),
        }
    }
}

#[derive(Deserialize)]
struct SuccessBody {
    access_token: Option<String>,
    expires_in: Option<Seconds>,
    ext_expires_in: Option<Seconds>,
    refresh_in: Option<Seconds>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    error: Option<String>,
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u32>,
}

/// Why one attempt failed.
enum Attempt {
    /// Worth retrying; keep the last answer in case it is the final one.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
        pass_through: Option<ExchangeError>,
    },
    /// Final.
    Fail(ExchangeError),
}

impl EntraClient {
    /// A client for `config`; fails on an unusable authority or CA bundle.
    pub fn new(config: EntraConfig, metrics: Metrics) -> Result<Self> {
        let authority = &config.authority;
        let loopback = match authority.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => {
                return Err(Error::Config {
                    what: "authority",
                    reason: format!("'{authority}' has no host"),
                });
            }
        };
        match authority.scheme() {
            "https" => {}
            "http" if loopback => {}
            other => {
                return Err(Error::Config {
                    what: "authority",
                    reason: format!(
                        "scheme '{other}' of '{authority}': expected https (http only for loopback)"
                    ),
                });
            }
        }
        if config.max_attempts == 0 {
            return Err(Error::Config {
                what: "max_attempts",
                reason: "must be at least 1".to_owned(),
            });
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.attempt_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("idbind-exchange/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &config.extra_roots_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(Error::HttpClient)?;
            if certs.is_empty() {
                return Err(Error::Config {
                    what: "extra_roots_pem",
                    reason: "no certificate in the PEM bundle".to_owned(),
                });
            }
            builder = if config.only_extra_roots {
                builder.tls_certs_only(certs)
            } else {
                builder.tls_certs_merge(certs)
            };
        }
        let http = builder.build().map_err(Error::HttpClient)?;
        Ok(Self {
            http,
            config,
            metrics,
        })
    }

    fn endpoint(&self, tenant: &TenantId) -> String {
        format!(
            "{}/{tenant}/oauth2/v2.0/token",
            self.config.authority.as_str().trim_end_matches('/')
        )
    }

    /// Requests a token, minting a fresh assertion for each attempt. Retries connection errors,
    /// timeouts, 408, 429 and 5xx with backoff, honouring `Retry-After`; passes Entra's other 4xx
    /// answers through unchanged.
    pub async fn request_token(
        &self,
        req: TokenRequest<'_>,
        mint: &(dyn Fn() -> Result<MintedAssertion, ExchangeError> + Send + Sync),
    ) -> Result<EntraToken, ExchangeError> {
        let _in_flight = InFlight::new(&self.metrics);
        self.attempts(req, mint).await
    }

    async fn attempts(
        &self,
        req: TokenRequest<'_>,
        mint: &(dyn Fn() -> Result<MintedAssertion, ExchangeError> + Send + Sync),
    ) -> Result<EntraToken, ExchangeError> {
        let url = self.endpoint(req.tenant);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let assertion = mint()?;
            tracing::debug!(
                client_id = %req.client_id, tenant = %req.tenant, jti = %assertion.jti,
                correlation_id = req.correlation_id, attempt, "requesting an Entra token"
            );
            let (reason, retry_after, pass_through) = match self.once(&url, req, &assertion).await {
                Ok(token) => return Ok(token),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry {
                    reason,
                    retry_after,
                    pass_through,
                }) => (reason, retry_after, pass_through),
            };
            let delay = match retry_after {
                Some(d) if d > self.config.max_retry_after => None,
                Some(d) => Some(d),
                None => Some(self.backoff(attempt)),
            };
            match delay {
                Some(delay) if attempt < self.config.max_attempts => {
                    tracing::info!(
                        client_id = %req.client_id, jti = %assertion.jti, correlation_id = req.correlation_id,
                        attempt, ?delay, %reason, "Entra attempt failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                _ => {
                    tracing::warn!(
                        client_id = %req.client_id, jti = %assertion.jti, correlation_id = req.correlation_id,
                        attempt, %reason, "Entra token request failed"
                    );
                    return Err(pass_through.unwrap_or_else(|| {
                        ExchangeError::unavailable(
                            format!("Entra is unavailable ({reason}, after {attempt} attempts)"),
                            retry_after.or(Some(Duration::from_secs(5))),
                        )
                    }));
                }
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .config
            .backoff_base
            .saturating_mul(1 << (attempt - 1).min(16));
        let capped = exp.min(self.config.backoff_max);
        capped.mul_f64(rand::random_range(0.5..=1.0))
    }

    async fn once(
        &self,
        url: &str,
        req: TokenRequest<'_>,
        assertion: &MintedAssertion,
    ) -> Result<EntraToken, Attempt> {
        let client_id = req.client_id.to_string();
        let mut form: Vec<(&str, &str)> = vec![
            ("client_id", &client_id),
            ("scope", req.scope),
            ("grant_type", "client_credentials"),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", &assertion.token),
        ];
        if let Some(claims) = req.claims {
            form.push(("claims", claims));
        }
        let started = Instant::now();
        let sent = self
            .http
            .post(url)
            .header("client-request-id", req.correlation_id)
            .header("return-client-request-id", "true")
            .header(http::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                self.metrics
                    .upstream_duration
                    .observe(started.elapsed().as_secs_f64());
                let label = if e.is_timeout() { "timeout" } else { "connect" };
                self.count_error(label, None);
                return Err(Attempt::Retry {
                    reason: format!("{label} error: {}", error_chain(&e)),
                    retry_after: None,
                    pass_through: None,
                });
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_body(response).await;
        self.metrics
            .upstream_duration
            .observe(started.elapsed().as_secs_f64());
        let body = match body {
            Ok(b) => b,
            Err(reason) => {
                self.count_error("body", None);
                return Err(Attempt::Retry {
                    reason,
                    retry_after: None,
                    pass_through: None,
                });
            }
        };
        if status.is_success() {
            return parse_success(&body).map_err(|reason| {
                self.count_error(status.as_str(), None);
                Attempt::Retry {
                    reason,
                    retry_after: None,
                    pass_through: None,
                }
            });
        }
        let parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        self.count_error(status.as_str(), parsed.error_codes.first().copied());
        let retry_after = retry_after(&headers);
        let retryable = status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error();
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let pass_through = (status.is_client_error() && status != StatusCode::REQUEST_TIMEOUT).then(|| {
            ExchangeError::upstream(
                UpstreamResponse {
                    status,
                    content_type,
                    body,
                },
                parsed.error.clone(),
                parsed.error_description.clone(),
                parsed.error_codes.clone(),
                retry_after,
            )
        });
        if retryable {
            let code = parsed
                .error_codes
                .first()
                .map(|c| format!(" AADSTS{c}"))
                .unwrap_or_default();
            return Err(Attempt::Retry {
                reason: format!("HTTP {status}{code}"),
                retry_after,
                pass_through,
            });
        }
        match pass_through {
            Some(e) => {
                tracing::info!(
                    client_id = %req.client_id, jti = %assertion.jti, correlation_id = req.correlation_id,
                    status = status.as_u16(), error = ?parsed.error, codes = ?parsed.error_codes,
                    "Entra refused the exchange"
                );
                Err(Attempt::Fail(e))
            }
            // 1xx/3xx: redirects are not followed; nothing sensible to pass on.
            None => Err(Attempt::Fail(ExchangeError::unavailable(
                format!("Entra answered with unexpected status {status}"),
                None,
            ))),
        }
    }

    fn count_error(&self, status: &str, code: Option<u32>) {
        self.metrics
            .upstream_errors
            .get_or_create(&crate::metrics::UpstreamErrorLabels {
                status: status.to_owned(),
                code: code.map(|c| c.to_string()).unwrap_or_default(),
            })
            .inc();
    }
}

/// Counts an exchange in `upstream_in_flight` while alive, also if its future is dropped.
struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.upstream_in_flight.inc();
        Self(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.upstream_in_flight.dec();
    }
}

async fn read_body(mut response: reqwest::Response) -> std::result::Result<Bytes, String> {
    let mut buf = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > MAX_BODY {
                    return Err(format!("Entra's answer is larger than {MAX_BODY} bytes"));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(Bytes::from(buf)),
            Err(e) => return Err(format!("reading Entra's answer: {}", error_chain(&e))),
        }
    }
}

fn parse_success(body: &[u8]) -> std::result::Result<EntraToken, String> {
    let parsed: SuccessBody = serde_json::from_slice(body)
        .map_err(|e| format!("Entra's 200 answer is not the expected JSON ({e})"))?;
    let access_token = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "Entra's 200 answer has no access_token".to_owned())?;
    let expires_in = parsed
        .expires_in
        .as_ref()
        .and_then(Seconds::get)
        .ok_or_else(|| "Entra's 200 answer has no numeric expires_in".to_owned())?;
    let ext_expires_in = parsed
        .ext_expires_in
        .as_ref()
        .and_then(Seconds::get)
        .unwrap_or(expires_in);
    let refresh_in = parsed.refresh_in.as_ref().and_then(Seconds::get);
    Ok(EntraToken {
        access_token,
        expires_in,
        ext_expires_in,
        refresh_in,
    })
}

/// `retry-after-ms`, `x-ms-retry-after-ms` (milliseconds) or `Retry-After` (seconds).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = get(name).and_then(|v| v.parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    get("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_bodies_accept_numbers_and_numeric_strings() {
        let t = parse_success(
            br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":"7199","access_token":"a"}"#,
        )
        .unwrap();
        assert_eq!((t.expires_in, t.ext_expires_in, t.refresh_in), (3599, 7199, None));
        let t = parse_success(br#"{"expires_in":"86399","refresh_in":43199,"access_token":"a"}"#).unwrap();
        assert_eq!(
            (t.expires_in, t.ext_expires_in, t.refresh_in),
            (86399, 86399, Some(43199))
        );
        assert!(
            parse_success(br#"{"expires_in":1}"#)
                .unwrap_err()
                .contains("access_token")
        );
        assert!(
            parse_success(br#"{"access_token":"a"}"#)
                .unwrap_err()
                .contains("expires_in")
        );
        assert!(
            parse_success(b"<html>")
                .unwrap_err()
                .contains("not the expected JSON")
        );
    }

    #[test]
    fn retry_after_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("x-ms-retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
    }

    #[test]
    fn authority_must_be_https_or_loopback() {
        let ok = |u: &str| EntraClient::new(EntraConfig::new(u.parse().unwrap()), Metrics::default()).is_ok();
        assert!(ok("https://login.microsoftonline.com"));
        assert!(ok("http://127.0.0.1:8080"));
        assert!(ok("http://localhost:1/prefix/"));
        assert!(!ok("http://login.microsoftonline.com"));
        let c = EntraClient::new(
            EntraConfig::new("http://127.0.0.1:1/p/".parse().unwrap()),
            Metrics::default(),
        )
        .unwrap();
        let tenant = TenantId::parse("11111111-1111-1111-1111-111111111111").unwrap();
        assert_eq!(
            c.endpoint(&tenant),
            "http://127.0.0.1:1/p/11111111-1111-1111-1111-111111111111/oauth2/v2.0/token"
        );
    }
}
