//! Calling one webhook: resolve `clientConfig` to an address and a TLS server name, trust only
//! `clientConfig.caBundle` (rustls with the aws-lc-rs provider, via `idbind-tls`), POST the
//! AdmissionReview over HTTP/2 or HTTP/1.1 (whatever ALPN picks) and read the answer, all within
//! the webhook's timeout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::admissionregistration::v1::WebhookClientConfig;
use parking_lot::RwLock;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Largest webhook response read (kube-apiserver's limit is in the same range).
const MAX_RESPONSE_BYTES: usize = 3 * 1024 * 1024;

/// Where the emulator reaches in-cluster Services named by `clientConfig.service`: a table from
/// (namespace, name, port) to a local socket address. The TLS server name stays
/// `<name>.<namespace>.svc`, as for the real API server.
#[derive(Debug, Default)]
pub struct ServiceMap {
    entries: RwLock<HashMap<(String, String, u16), SocketAddr>>,
}

impl ServiceMap {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps Service `namespace/name` port `port` to `addr`.
    pub fn insert(&self, namespace: &str, name: &str, port: u16, addr: SocketAddr) {
        self.entries
            .write()
            .insert((namespace.to_owned(), name.to_owned(), port), addr);
    }

    /// Removes a mapping.
    pub fn remove(&self, namespace: &str, name: &str, port: u16) -> Option<SocketAddr> {
        self.entries
            .write()
            .remove(&(namespace.to_owned(), name.to_owned(), port))
    }

    /// The address of Service `namespace/name` port `port`, if mapped.
    pub fn get(&self, namespace: &str, name: &str, port: u16) -> Option<SocketAddr> {
        self.entries
            .read()
            .get(&(namespace.to_owned(), name.to_owned(), port))
            .copied()
    }
}

/// A webhook endpoint resolved from its `clientConfig`.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The URL as the API server reports it in errors, with `?timeout=<n>s`.
    pub(crate) url: String,
    authority: String,
    path_and_query: String,
    server_name: String,
    address: Address,
}

#[derive(Debug)]
enum Address {
    Fixed(SocketAddr),
    Lookup(String, u16),
    Unmapped(String),
}

impl Endpoint {
    /// Resolves `clientConfig` (`url`, or `service` through `services`). `Err` when the config
    /// names neither or its URL is not `https://host[:port][/path]`.
    pub(crate) fn resolve(
        config: &WebhookClientConfig,
        services: &ServiceMap,
        timeout: Duration,
    ) -> Result<Self, String> {
        let timeout_param = format!("timeout={}s", timeout.as_secs());
        if let Some(url) = config.url.as_deref() {
            let uri: http::Uri = url
                .parse()
                .map_err(|e| format!("invalid clientConfig.url {url:?}: {e}"))?;
            if uri.scheme_str() != Some("https") {
                return Err(format!(
                    "invalid clientConfig.url {url:?}: the scheme must be https"
                ));
            }
            let host = uri
                .host()
                .ok_or_else(|| format!("invalid clientConfig.url {url:?}: no host"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let authority = uri.authority().map(ToString::to_string).unwrap_or_default();
            let path = uri.path();
            let path_and_query = match uri.query() {
                Some(query) => format!("{path}?{query}&{timeout_param}"),
                None => format!("{path}?{timeout_param}"),
            };
            let address = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => Address::Fixed(SocketAddr::new(ip, port)),
                Err(_) => Address::Lookup(host.clone(), port),
            };
            return Ok(Self {
                url: format!("https://{authority}{path_and_query}"),
                authority,
                path_and_query,
                server_name: host,
                address,
            });
        }
        if let Some(service) = &config.service {
            let port = u16::try_from(service.port.unwrap_or(443))
                .map_err(|_| format!("invalid clientConfig.service.port {:?}", service.port))?;
            let host = format!("{}.{}.svc", service.name, service.namespace);
            let path = service.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
            let path_and_query = format!("{path}?{timeout_param}");
            let authority = format!("{host}:{port}");
            let address = match services.get(&service.namespace, &service.name, port) {
                Some(addr) => Address::Fixed(addr),
                None => Address::Unmapped(format!(
                    "service \"{}/{}\" port {port} is not mapped to a local address",
                    service.namespace, service.name
                )),
            };
            return Ok(Self {
                url: format!("https://{authority}{path_and_query}"),
                authority,
                path_and_query,
                server_name: host,
                address,
            });
        }
        Err("clientConfig has neither url nor service".into())
    }
}

/// A failed call, worded like kube-apiserver's webhook client errors.
#[derive(Debug)]
pub(crate) struct CallFailure(pub(crate) String);

/// POSTs `body` to `endpoint`, trusting only `ca_bundle`. Returns the response body of a 2xx
/// answer.
pub(crate) async fn post(
    endpoint: &Endpoint,
    ca_bundle: Option<&[u8]>,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Bytes, CallFailure> {
    let post = |reason: String| {
        CallFailure(format!(
            "failed to call webhook: Post {:?}: {reason}",
            endpoint.url
        ))
    };
    let ca = ca_bundle.filter(|b| !b.is_empty()).ok_or_else(|| {
        post("no clientConfig.caBundle: the emulator trusts only the webhook's caBundle".into())
    })?;
    let ca = std::str::from_utf8(ca).map_err(|_| post("clientConfig.caBundle is not PEM text".into()))?;
    let tls =
        idbind_tls::client_config_with_roots(ca).map_err(|e| post(format!("clientConfig.caBundle: {e}")))?;
    match tokio::time::timeout(timeout, exchange(endpoint, Arc::new(tls), Bytes::from(body))).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(reason)) => Err(post(reason)),
        Err(_) => Err(post("context deadline exceeded".into())),
    }
}

async fn exchange(endpoint: &Endpoint, tls: Arc<rustls::ClientConfig>, body: Bytes) -> Result<Bytes, String> {
    let candidates: Vec<SocketAddr> = match &endpoint.address {
        Address::Fixed(addr) => vec![*addr],
        Address::Lookup(host, port) => tokio::net::lookup_host((host.as_str(), *port))
            .await
            .map_err(|e| format!("dial tcp: lookup {host}: {e}"))?
            .collect(),
        Address::Unmapped(reason) => return Err(format!("dial tcp: {reason}")),
    };
    let mut last_error = format!("dial tcp: lookup {}: no addresses", endpoint.server_name);
    let mut stream = None;
    for addr in candidates {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = format!("dial tcp {addr}: connect: {e}"),
        }
    }
    let stream = stream.ok_or(last_error)?;
    let server_name = ServerName::try_from(endpoint.server_name.clone())
        .map_err(|e| format!("invalid TLS server name {:?}: {e}", endpoint.server_name))?;
    let tls = TlsConnector::from(tls)
        .connect(server_name, stream)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let io = TokioIo::new(tls);

    let uri = if h2 {
        format!("https://{}{}", endpoint.authority, endpoint.path_and_query)
    } else {
        endpoint.path_and_query.clone()
    };
    let mut request = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, */*")
        .header(http::header::USER_AGENT, "kube-apiserver-admission");
    if !h2 {
        request = request.header(http::header::HOST, &endpoint.authority);
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| format!("building the request: {e}"))?;

    let response = if h2 {
        let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("http2 handshake: {e}"))?;
        tokio::spawn(connection);
        sender.send_request(request).await.map_err(|e| e.to_string())?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("http1 handshake: {e}"))?;
        tokio::spawn(connection);
        sender.send_request(request).await.map_err(|e| e.to_string())?
    };
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading the response: {e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "the server responded with the status code {} but did not return more information",
            status.as_u16()
        ));
    }
    Ok(body)
}
