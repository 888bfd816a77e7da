//! The HTTP surface (PROTOCOL.md §1.10): routes, parameter parsing, limits and Entra-shaped
//! answers. Independent of the transport, so it can be driven in-process.

use std::error::Error as StdError;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use idbind_exchange::{ExchangeError, ExchangeRequest, TokenResponse};
use tokio::time::Instant as TokioInstant;

use crate::discovery;
use crate::exchange::TokenExchange;
use crate::fingerprint::{token_fingerprint, token_jti};
use crate::metrics::ProxyMetrics;
use crate::params::{FormError, RawParams, TokenParams, parse_form, shorten, usable_correlation_id};

/// Default cap on a token request body (SA tokens are 1–2 KiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Default time from a request's head to its answer.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const X_MS_CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-client-request-id");
const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("client-request-id");
const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");

/// Settings of the HTTP surface.
#[derive(Clone, Debug)]
pub struct SurfaceConfig {
    /// The Entra authority named in the discovery documents (e.g.
    /// `https://login.microsoftonline.com`): the host clients are configured with
    /// (`AZURE_AUTHORITY_HOST`), which MSAL Go checks the `issuer` against.
    pub advertised_authority: url::Url,
    /// Largest accepted request body; larger ones get 413 (default 64 KiB).
    pub max_body_bytes: usize,
    /// Longest time from a request's head to its answer, body and exchange included (default
    /// 30 s). A body still arriving gets 408; an exchange still running gets 503.
    pub request_timeout: Duration,
}

impl SurfaceConfig {
    /// Defaults, advertising `authority` in discovery documents.
    pub fn new(advertised_authority: url::Url) -> Self {
        Self {
            advertised_authority,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// What a request is, from its method and path. The `Host` header never matters.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    /// A POST on any path; the tenant of `/{tenant}/oauth2/v2.0/token` is kept as a hint.
    Token { tenant_hint: Option<&'a str> },
    /// `GET {prefix}/{tenant}/v2.0/.well-known/openid-configuration`.
    OpenIdConfiguration { tenant: &'a str },
    /// `GET {prefix}/common/discovery/instance`.
    InstanceDiscovery,
    /// Any other method, with the methods its path allows.
    NotAllowed { allow: &'static str },
}

impl Route<'_> {
    fn label(&self) -> &'static str {
        match self {
            Route::Token { .. } => "token",
            Route::OpenIdConfiguration { .. } => "openid_configuration",
            Route::InstanceDiscovery => "instance_discovery",
            Route::NotAllowed { .. } => "other",
        }
    }
}

fn classify<'a>(method: &Method, path: &'a str) -> Route<'a> {
    let trimmed = path.trim_end_matches('/');
    let discovery = if trimmed.ends_with("/common/discovery/instance") {
        Some(Route::InstanceDiscovery)
    } else {
        trimmed
            .strip_suffix("/v2.0/.well-known/openid-configuration")
            .and_then(|rest| rest.rsplit('/').next())
            .map(|tenant| Route::OpenIdConfiguration { tenant })
    };
    match (method, discovery) {
        (&Method::POST, _) => {
            let tenant_hint = trimmed
                .strip_suffix("/oauth2/v2.0/token")
                .and_then(|rest| rest.rsplit('/').next())
                .filter(|t| discovery::valid_tenant(t));
            Route::Token { tenant_hint }
        }
        (&Method::GET | &Method::HEAD, Some(route)) => route,
        (_, Some(_)) => Route::NotAllowed {
            allow: "GET, HEAD, POST",
        },
        (_, None) => Route::NotAllowed { allow: "POST" },
    }
}

/// What the access log says about a token request (never the token).
#[derive(Default)]
struct TokenLog {
    client_id: Option<String>,
    token_sha256: Option<String>,
    jti: Option<String>,
}

/// The outcome of one request, for metrics and logs.
struct Answer {
    response: Response<Full<Bytes>>,
    outcome: &'static str,
    log: TokenLog,
}

impl Answer {
    fn new(response: Response<Full<Bytes>>, outcome: &'static str) -> Self {
        Self {
            response,
            outcome,
            log: TokenLog::default(),
        }
    }
}

/// The proxy's HTTP surface over a [`TokenExchange`].
pub struct Surface<E> {
    exchange: E,
    config: SurfaceConfig,
    metrics: ProxyMetrics,
}

impl<E> std::fmt::Debug for Surface<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Surface")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<E: TokenExchange> Surface<E> {
    /// A surface answering with `exchange`.
    pub fn new(exchange: E, config: SurfaceConfig, metrics: ProxyMetrics) -> Self {
        Self {
            exchange,
            config,
            metrics,
        }
    }

    /// The exchanger.
    pub fn exchange(&self) -> &E {
        &self.exchange
    }

    /// The metrics requests are counted in.
    pub fn metrics(&self) -> &ProxyMetrics {
        &self.metrics
    }

    /// The settings.
    pub fn config(&self) -> &SurfaceConfig {
        &self.config
    }

    /// Answers one request. Never fails: every refusal is an Entra-shaped JSON error.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let started = Instant::now();
        let deadline = TokioInstant::now() + self.config.request_timeout;
        let (parts, body) = request.into_parts();
        let header_correlation = correlation_from_headers(&parts.headers);
        let route = classify(&parts.method, parts.uri.path());
        let label = route.label();
        let answer = match route {
            Route::Token { tenant_hint } => {
                self.token(
                    &parts.headers,
                    parts.uri.query(),
                    body,
                    tenant_hint,
                    header_correlation,
                    deadline,
                )
                .await
            }
            Route::OpenIdConfiguration { tenant } => {
                let correlation = header_correlation.unwrap_or_else(new_correlation_id);
                if discovery::valid_tenant(tenant) {
                    let doc = discovery::openid_configuration(&self.config.advertised_authority, tenant);
                    Answer::new(json_response(StatusCode::OK, &doc, &correlation, true), "ok")
                } else {
                    let e = ExchangeError::invalid_request(format!(
                        "tenant '{}' in the path is not a tenant id or domain",
                        shorten(tenant)
                    ));
                    Answer::new(error_response(&e, &correlation), "invalid_request")
                }
            }
            Route::InstanceDiscovery => {
                let correlation = header_correlation.unwrap_or_else(new_correlation_id);
                let doc = discovery::instance_discovery(&self.config.advertised_authority, parts.uri.query());
                Answer::new(json_response(StatusCode::OK, &doc, &correlation, true), "ok")
            }
            Route::NotAllowed { allow } => {
                let correlation = header_correlation.unwrap_or_else(new_correlation_id);
                let e = ExchangeError::custom(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "invalid_request",
                    format!(
                        "method {} is not allowed on {}; token requests are POSTs",
                        parts.method,
                        shorten(parts.uri.path())
                    ),
                );
                let mut response = error_response(&e, &correlation);
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
                Answer::new(response, "method_not_allowed")
            }
        };
        let status = answer.response.status().as_u16();
        let elapsed = started.elapsed();
        self.metrics
            .record(label, status, answer.outcome, elapsed.as_secs_f64());
        let correlation_id = answer
            .response
            .headers()
            .get(&CLIENT_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        if label == "token" {
            let log = &answer.log;
            tracing::info!(
                route = label,
                status,
                outcome = answer.outcome,
                correlation_id,
                client_id = log.client_id.as_deref().unwrap_or(""),
                token_sha256 = log.token_sha256.as_deref().unwrap_or(""),
                jti = log.jti.as_deref().unwrap_or(""),
                latency_ms,
                "token request"
            );
        } else {
            tracing::debug!(
                route = label,
                status,
                outcome = answer.outcome,
                correlation_id,
                latency_ms,
                "request"
            );
        }
        answer.response
    }

    async fn token<B>(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        body: B,
        tenant_hint: Option<&str>,
        header_correlation: Option<String>,
        deadline: TokioInstant,
    ) -> Answer
    where
        B: Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let max = self.config.max_body_bytes;
        let early_correlation = || header_correlation.clone().unwrap_or_else(new_correlation_id);
        let too_large = || {
            ExchangeError::custom(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                format!("the request body is larger than {max} bytes"),
            )
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max as u64) {
            return Answer::new(
                error_response(&too_large(), &early_correlation()),
                "payload_too_large",
            );
        }
        let bytes = match tokio::time::timeout_at(deadline, Limited::new(body, max).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return Answer::new(
                    error_response(&too_large(), &early_correlation()),
                    "payload_too_large",
                );
            }
            Ok(Err(e)) => {
                let e = ExchangeError::invalid_request(format!("reading the request body failed: {e}"));
                return Answer::new(error_response(&e, &early_correlation()), "invalid_request");
            }
            Err(_) => {
                let e = ExchangeError::custom(
                    StatusCode::REQUEST_TIMEOUT,
                    "invalid_request",
                    format!(
                        "the request body did not arrive within {:?}",
                        self.config.request_timeout
                    ),
                );
                return Answer::new(error_response(&e, &early_correlation()), "timeout");
            }
        };

        let raw = match read_params(headers, query, &bytes) {
            Ok(raw) => raw,
            Err(e) => return Answer::new(error_response(&e, &early_correlation()), "invalid_request"),
        };
        let correlation = header_correlation
            .or_else(|| {
                raw.client_request_id
                    .as_deref()
                    .and_then(usable_correlation_id)
                    .map(str::to_owned)
            })
            .or_else(|| query_correlation(query))
            .unwrap_or_else(new_correlation_id);
        let params = match raw.into_token_params() {
            Ok(p) => p,
            Err(e) => {
                let outcome = e.rejection().as_str();
                return Answer::new(error_response(&e, &correlation), outcome);
            }
        };
        let mut log = TokenLog {
            client_id: Some(shorten(&params.client_id)),
            ..TokenLog::default()
        };
        if tracing::enabled!(tracing::Level::INFO) {
            log.token_sha256 = Some(token_fingerprint(&params.assertion));
            log.jti = token_jti(&params.assertion);
        }
        let TokenParams {
            client_id,
            scope,
            assertion,
            claims,
        } = params;
        let request = ExchangeRequest {
            client_id,
            scope,
            assertion,
            claims,
            tenant_hint: tenant_hint.map(str::to_owned),
            correlation_id: correlation.clone(),
        };
        let (response, outcome) =
            match tokio::time::timeout_at(deadline, self.exchange.exchange(request)).await {
                Ok(Ok(token)) => (token_response(&token, &correlation), "ok"),
                Ok(Err(e)) => (error_response(&e, &correlation), e.rejection().as_str()),
                Err(_) => {
                    let e = ExchangeError::unavailable(
                        format!(
                            "the exchange did not finish within {:?}",
                            self.config.request_timeout
                        ),
                        Some(Duration::from_secs(1)),
                    );
                    (error_response(&e, &correlation), "timeout")
                }
            };
        Answer {
            response,
            outcome,
            log,
        }
    }
}

/// Parameters from a form body, or from the query string when the body is empty.
fn read_params(headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> Result<RawParams, ExchangeError> {
    let form_error = |e: FormError, source: &str| {
        ExchangeError::invalid_request(format!(
            "the {source} is not valid application/x-www-form-urlencoded: {}",
            e.0
        ))
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        let pairs =
            parse_form(query.unwrap_or_default().as_bytes()).map_err(|e| form_error(e, "query string"))?;
        return RawParams::from_pairs(pairs);
    }
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let essence = content_type
            .to_str()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(ExchangeError::invalid_request(format!(
                "Content-Type '{}' is not supported; send application/x-www-form-urlencoded",
                shorten(essence)
            )));
        }
    }
    let pairs = parse_form(body).map_err(|e| form_error(e, "request body"))?;
    RawParams::from_pairs(pairs)
}

fn correlation_from_headers(headers: &HeaderMap) -> Option<String> {
    [X_MS_CLIENT_REQUEST_ID, CLIENT_REQUEST_ID]
        .iter()
        .filter_map(|name| headers.get(name)?.to_str().ok())
        .find_map(usable_correlation_id)
        .map(str::to_owned)
}

fn query_correlation(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "client-request-id")
        .and_then(|(_, v)| usable_correlation_id(&v).map(str::to_owned))
}

fn new_correlation_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn base_response(status: StatusCode, correlation: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(correlation) {
        headers.insert(CLIENT_REQUEST_ID, value.clone());
        headers.insert(X_MS_CLIENT_REQUEST_ID, value);
    }
    response
}

fn json_response(
    status: StatusCode,
    doc: &serde_json::Value,
    correlation: &str,
    cacheable: bool,
) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(doc).unwrap_or_default();
    let mut response = base_response(status, correlation, Bytes::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, JSON);
    let cache = if cacheable {
        "max-age=86400, private"
    } else {
        "no-store, no-cache"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

fn token_response(token: &TokenResponse, correlation: &str) -> Response<Full<Bytes>> {
    // A struct of strings and integers always serializes.
    let body = serde_json::to_vec(token).unwrap_or_default();
    let mut response = base_response(StatusCode::OK, correlation, Bytes::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, JSON);
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Renders a refusal. `Retry-After` is sent only with 429 and 5xx: SDKs retry any status that
/// carries it (PROTOCOL.md §1.7), and permanent failures must not be retried.
pub(crate) fn error_response(error: &ExchangeError, correlation: &str) -> Response<Full<Bytes>> {
    let rendered = error.to_response(correlation);
    let mut response = base_response(rendered.status, correlation, rendered.body);
    let headers = response.headers_mut();
    if let Some(value) = rendered
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    let transient = rendered.status == StatusCode::TOO_MANY_REQUESTS || rendered.status.is_server_error();
    if transient && let Some(secs) = rendered.retry_after_secs {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_ignore_host_and_prefixes() {
        let t = "11111111-1111-1111-1111-111111111111";
        assert_eq!(classify(&Method::POST, "/"), Route::Token { tenant_hint: None });
        assert_eq!(
            classify(&Method::POST, &format!("/{t}/oauth2/v2.0/token")),
            Route::Token { tenant_hint: Some(t) }
        );
        assert_eq!(
            classify(&Method::POST, &format!("/p/q/{t}/oauth2/v2.0/token/")),
            Route::Token { tenant_hint: Some(t) }
        );
        assert_eq!(
            classify(&Method::POST, "/token"),
            Route::Token { tenant_hint: None }
        );
        assert_eq!(
            classify(
                &Method::GET,
                &format!("/{t}/v2.0/.well-known/openid-configuration")
            ),
            Route::OpenIdConfiguration { tenant: t }
        );
        assert_eq!(
            classify(&Method::GET, "/p/common/discovery/instance"),
            Route::InstanceDiscovery
        );
        assert_eq!(classify(&Method::GET, "/"), Route::NotAllowed { allow: "POST" });
        assert_eq!(
            classify(&Method::PUT, "/common/discovery/instance"),
            Route::NotAllowed {
                allow: "GET, HEAD, POST"
            }
        );
        // A POST to a discovery path is a token request too (any path).
        assert_eq!(
            classify(&Method::POST, "/common/discovery/instance"),
            Route::Token { tenant_hint: None }
        );
    }
}
