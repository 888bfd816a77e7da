//! Fetching an issuer's documents the way Entra does: `{issuer}/.well-known/openid-configuration`,
//! then its `jwks_uri`; https only (plain http for loopback hosts, as the emulator allows), no
//! redirects, documents up to 1 MiB.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use idbind_model::IssuerBaseUrl;
use serde_json::Value;

use crate::cluster::error_chain;
use crate::exit::Failure;

const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Where issuer documents are served.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Issuer")]
pub struct IssuerArgs {
    /// Public URL under which the per-identity issuers live (as the controller's
    /// `--issuer-base-url`); default: taken from idbind's federated identity credential.
    #[arg(long, env = "IDBIND_ISSUER_BASE_URL", value_name = "URL")]
    pub issuer_base_url: Option<IssuerBaseUrl>,
    /// Name of idbind's federated identity credential (as the controller's `--fic-name`).
    #[arg(long, env = "IDBIND_FIC_NAME", default_value = idbind_model::DEFAULT_FIC_NAME, value_name = "NAME")]
    pub fic_name: String,
    /// Extra trust roots (PEM file) for https issuers with a private CA.
    #[arg(long, env = "IDBIND_ISSUER_CA_FILE", value_name = "FILE")]
    pub issuer_ca_file: Option<PathBuf>,
}

/// Why a document could not be had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchError {
    /// Entra would not fetch this URL (scheme, host).
    Refused(String),
    /// No HTTP answer.
    Unreachable(String),
    /// An HTTP answer other than 200.
    Status(u16),
    /// Not a JSON document, or too large.
    Invalid(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(r) => write!(f, "Entra would not fetch it: {r}"),
            Self::Unreachable(r) => write!(f, "unreachable: {r}"),
            Self::Status(s) => write!(f, "HTTP {s}"),
            Self::Invalid(r) => write!(f, "{r}"),
        }
    }
}

/// Fetches issuer documents.
#[derive(Clone, Debug)]
pub struct Fetcher {
    http: reqwest::Client,
}

impl Fetcher {
    /// A fetcher trusting the system roots plus `extra_ca` (PEM file).
    pub fn new(extra_ca: Option<&PathBuf>) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("idbind-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = extra_ca {
            let pem = std::fs::read(path).map_err(|e| {
                Failure::usage(format!("cannot read --issuer-ca-file {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Failure::usage(format!(
                    "--issuer-ca-file {} holds no PEM certificates: {e}",
                    path.display()
                ))
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| Failure::failed(format!("building an HTTP client: {e}")))?;
        Ok(Self { http })
    }

    /// GETs a JSON document as Entra would.
    pub async fn get_json(&self, url: &str) -> Result<Value, FetchError> {
        check_fetchable(url).map_err(FetchError::Refused)?;
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| FetchError::Unreachable(error_chain(&e)))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status(status));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| FetchError::Unreachable(error_chain(&e)))?;
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(FetchError::Invalid(format!(
                "larger than {MAX_DOCUMENT_BYTES} bytes"
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| FetchError::Invalid(format!("not JSON: {e}")))
    }
}

/// Whether Entra would fetch a URL: `https`, or `http` only on loopback (emulators).
pub fn check_fetchable(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL ({e})"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(format!("{url} has no host")),
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!(
            "{url} is plain http; Entra fetches issuer documents over https only"
        )),
        other => Err(format!(
            "{url} has scheme {other}; Entra fetches issuer documents over https only"
        )),
    }
}

/// The issuer documents of one issuer, as far as they could be read.
#[derive(Clone, Debug)]
pub struct IssuerDocuments {
    /// The discovery document URL.
    pub discovery_url: String,
    /// The discovery document, or why not.
    pub discovery: Result<Value, FetchError>,
    /// The `jwks_uri` it names, if any.
    pub jwks_uri: Option<String>,
    /// The JWKS, or why not (`None` when there was no `jwks_uri` to fetch).
    pub jwks: Option<Result<Value, FetchError>>,
}

impl IssuerDocuments {
    /// Fetches discovery, then the JWKS it points at.
    pub async fn fetch(fetcher: &Fetcher, issuer: &str) -> Self {
        let discovery_url = idbind_model::discovery_url(issuer);
        let discovery = fetcher.get_json(&discovery_url).await;
        let jwks_uri = discovery
            .as_ref()
            .ok()
            .and_then(|d| d.get("jwks_uri"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let jwks = match &jwks_uri {
            Some(uri) => Some(fetcher.get_json(uri).await),
            None => None,
        };
        Self {
            discovery_url,
            discovery,
            jwks_uri,
            jwks,
        }
    }

    /// The JWKS keys, when the JWKS was read and has a `keys` array.
    pub fn keys(&self) -> Option<&Vec<Value>> {
        self.jwks.as_ref()?.as_ref().ok()?.get("keys")?.as_array()
    }

    /// The key ids in the JWKS.
    pub fn kids(&self) -> Vec<String> {
        self.keys()
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.get("kid").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One line on why the JWKS could not be read, if it could not.
    pub fn jwks_problem(&self) -> Option<String> {
        match (&self.discovery, &self.jwks) {
            (Err(e), _) => Some(format!("discovery document {}: {e}", self.discovery_url)),
            (Ok(_), None) => Some(format!(
                "discovery document {} has no jwks_uri",
                self.discovery_url
            )),
            (Ok(_), Some(Err(e))) => Some(format!(
                "JWKS {}: {e}",
                self.jwks_uri.as_deref().unwrap_or_default()
            )),
            (Ok(_), Some(Ok(_))) if self.keys().is_none() => Some(format!(
                "JWKS {} has no \"keys\" array",
                self.jwks_uri.as_deref().unwrap_or_default()
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetchable_urls() {
        assert!(check_fetchable("https://issuer.example.com/t/c").is_ok());
        assert!(check_fetchable("http://127.0.0.1:8080/t/c").is_ok());
        assert!(check_fetchable("http://localhost/t").is_ok());
        assert!(
            check_fetchable("http://issuer.example.com/t")
                .unwrap_err()
                .contains("https only")
        );
        assert!(check_fetchable("ftp://x/").unwrap_err().contains("scheme ftp"));
    }
}
