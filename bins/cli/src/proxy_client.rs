//! Speaking to the idbind token proxy exactly like an Azure Identity SDK in proxy mode
//! (PROTOCOL.md §1.2–1.4, 1.8): `POST {proxy}/{tenant}/oauth2/v2.0/token` with the standard
//! client-credentials form; TLS SNI and certificate name = `AZURE_KUBERNETES_SNI_NAME` (the
//! connection still goes to the proxy URL's address); trust = only the given CA.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::error_chain;

/// `client_assertion_type` of a federated client assertion.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Where the proxy is and how to trust it.
#[derive(Clone, Debug)]
pub struct ProxyTarget {
    /// `https://host[:port]`, no path.
    pub url: url::Url,
    /// TLS name, when it differs from the URL host.
    pub sni: Option<String>,
    /// Trust roots (PEM); the system roots when `None`.
    pub ca_pem: Option<String>,
}

/// Why a proxy request failed.
#[derive(Clone, Debug)]
pub enum ProxyError {
    /// The proxy URL or CA is unusable.
    Config(String),
    /// No TCP connection (refused, unresolvable, timeout).
    Unreachable(String),
    /// The TLS handshake failed (unknown CA, wrong name).
    Tls(String),
    /// The proxy answered with an error.
    Refused {
        /// HTTP status.
        status: u16,
        /// The body (Entra-shaped JSON when it is the proxy).
        body: Value,
    },
    /// The answer was not a token response.
    Invalid(String),
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(m) | Self::Unreachable(m) | Self::Tls(m) | Self::Invalid(m) => f.write_str(m),
            Self::Refused { status, body } => {
                let error = body.get("error").and_then(Value::as_str).unwrap_or("?");
                let description = body
                    .get("error_description")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                write!(f, "HTTP {status} {error}: {description}")
            }
        }
    }
}

/// A successful token response.
#[derive(Clone, Debug)]
pub struct TokenReply {
    /// The whole JSON body.
    pub body: Value,
    /// `access_token`.
    pub access_token: String,
    /// `expires_in` (seconds).
    pub expires_in: i64,
}

impl ProxyTarget {
    /// Checks the URL as the SDKs do: https, no userinfo, query or fragment, and no path.
    pub fn new(url: &str, sni: Option<String>, ca_pem: Option<String>) -> Result<Self, ProxyError> {
        let parsed = url::Url::parse(url.trim())
            .map_err(|e| ProxyError::Config(format!("proxy URL {url:?} is not a URL ({e})")))?;
        if parsed.scheme() != "https" {
            return Err(ProxyError::Config(format!(
                "proxy URL {url:?} must use https, as the SDKs require"
            )));
        }
        if !parsed.username().is_empty() || parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(ProxyError::Config(format!(
                "proxy URL {url:?} must not carry credentials, a query or a fragment"
            )));
        }
        if parsed.path() != "/" && !parsed.path().is_empty() {
            return Err(ProxyError::Config(format!(
                "proxy URL {url:?} must have no path (SDK retries repeat a path prefix)"
            )));
        }
        if parsed.host_str().is_none() {
            return Err(ProxyError::Config(format!("proxy URL {url:?} has no host")));
        }
        Ok(Self {
            url: parsed,
            sni: sni.filter(|s| !s.trim().is_empty()),
            ca_pem,
        })
    }

    async fn client_and_base(&self) -> Result<(reqwest::Client, String), ProxyError> {
        let host = self.url.host_str().unwrap_or_default().to_owned();
        let port = self.url.port_or_known_default().unwrap_or(443);
        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .no_proxy()
            .user_agent(concat!("idbind-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &self.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| ProxyError::Config(format!("the proxy CA is not PEM certificates: {e}")))?;
            if certs.is_empty() {
                return Err(ProxyError::Config("the proxy CA holds no certificate".to_owned()));
            }
            builder = builder.tls_certs_only(certs);
        }
        let base_host = match &self.sni {
            Some(sni) if !sni.eq_ignore_ascii_case(&host) => {
                // Connect to the URL's address, but present and check the SNI name, as the Rust
                // SDK does (the URL host is replaced by the SNI name).
                let lookup = host.trim_start_matches('[').trim_end_matches(']').to_owned();
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((lookup.as_str(), port))
                    .await
                    .map_err(|e| {
                        ProxyError::Unreachable(format!("cannot resolve the proxy host {host}: {e}"))
                    })?
                    .collect();
                builder = builder.resolve_to_addrs(sni, &addrs);
                sni.clone()
            }
            _ => host.clone(),
        };
        let client = builder
            .build()
            .map_err(|e| ProxyError::Config(format!("building the HTTPS client: {e}")))?;
        let authority = if base_host.contains(':') {
            format!("[{base_host}]")
        } else {
            base_host
        };
        Ok((client, format!("https://{authority}:{port}")))
    }

    /// Sends one client-credentials request with a federated assertion, as the SDKs do.
    pub async fn request_token(
        &self,
        tenant: Option<&str>,
        client_id: &str,
        scope: &str,
        assertion: &str,
    ) -> Result<TokenReply, ProxyError> {
        let (client, base) = self.client_and_base().await?;
        let path = match tenant {
            Some(t) if !t.is_empty() => format!("/{t}/oauth2/v2.0/token"),
            _ => "/".to_owned(),
        };
        let form = [
            ("client_assertion", assertion),
            ("client_assertion_type", JWT_BEARER),
            ("client_id", client_id),
            ("grant_type", "client_credentials"),
            ("scope", scope),
        ];
        let response = client
            .post(format!("{base}{path}"))
            .form(&form)
            .send()
            .await
            .map_err(classify)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(classify)?;
        let body: Value = serde_json::from_str(&text).map_err(|_| {
            let shown: String = text.chars().take(200).collect();
            ProxyError::Invalid(format!("HTTP {status} with a body that is not JSON: {shown:?}"))
        })?;
        if status != 200 {
            return Err(ProxyError::Refused { status, body });
        }
        let access_token = body
            .get("access_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                ProxyError::Invalid("HTTP 200 without access_token: not a token response".to_owned())
            })?;
        let expires_in = body.get("expires_in").and_then(Value::as_i64).ok_or_else(|| {
            ProxyError::Invalid("HTTP 200 without an integer expires_in: SDKs would misread it".to_owned())
        })?;
        Ok(TokenReply {
            body,
            access_token,
            expires_in,
        })
    }

    /// Makes one TLS connection and HTTP request (`GET /`); any HTTP answer means reachable.
    pub async fn probe(&self) -> Result<u16, ProxyError> {
        let (client, base) = self.client_and_base().await?;
        let response = client.get(format!("{base}/")).send().await.map_err(classify)?;
        Ok(response.status().as_u16())
    }
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(classify)`
fn classify(e: reqwest::Error) -> ProxyError {
    let text = error_chain(&e);
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        ProxyError::Tls(text)
    } else {
        ProxyError::Unreachable(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_sdk_rules() {
        assert!(ProxyTarget::new("https://proxy.example:8443", None, None).is_ok());
        assert!(ProxyTarget::new("https://proxy.example/", None, None).is_ok());
        for (bad, want) in [
            ("http://proxy.example", "https"),
            ("https://proxy.example/p", "no path"),
            ("https://u:p@proxy.example", "credentials"),
            ("nope", "not a URL"),
        ] {
            let e = ProxyTarget::new(bad, None, None).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
