//! An issuer store in an Azure Blob Storage container (or Azurite).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use url::Url;

use super::{ETag, IssuerStore, Precondition, validate_path};
use crate::{Error, Result};

/// OAuth scope of Azure Storage, for bearer tokens.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
/// Blob REST API version sent with every request (bearer authorization needs 2017-11-09 or later).
const API_VERSION: &str = "2021-08-06";
/// `Cache-Control` stored with each blob and served by Blob Storage to Entra.
const BLOB_CACHE_CONTROL: &str = "public, max-age=60";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How requests to the container are authorized.
#[derive(Clone)]
pub enum BlobAuth {
    /// A shared access signature: the query string of a SAS URL, with or without the leading `?`.
    /// It needs read, create, write and delete permissions on blobs of the container.
    Sas(String),
    /// An Entra bearer token for [`STORAGE_SCOPE`], from an `idbind-arm` credential (workload
    /// identity, managed identity, client secret). The identity needs the `Storage Blob Data
    /// Contributor` role on the container.
    Bearer(Arc<dyn idbind_arm::Credential>),
}

impl fmt::Debug for BlobAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobAuth::Sas(_) => f.write_str("Sas(<redacted>)"),
            BlobAuth::Bearer(_) => f.write_str("Bearer(<credential>)"),
        }
    }
}

/// An [`IssuerStore`] in one Blob Storage container, addressed by URL:
/// `https://<account>.blob.core.windows.net/<container>` or, for Azurite,
/// `http://127.0.0.1:<port>/<account>/<container>`. Store paths become blob names.
///
/// Writes are Put Blob (block blob, `Content-Type: application/json`, a short `Cache-Control`)
/// with `If-Match`/`If-None-Match: *`; `412 ConditionNotMet` and `409 BlobAlreadyExists` become
/// [`Error::PreconditionFailed`]. Other failures are [`Error::Storage`] with the storage error code.
#[derive(Clone)]
pub struct BlobStore {
    http: reqwest::Client,
    container: Url,
    auth: BlobAuth,
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStore")
            .field("container", &self.container.as_str())
            .field("auth", &self.auth)
            .finish()
    }
}

impl BlobStore {
    /// A store for the container at `container_url` (no query string; pass a SAS in `auth`).
    /// Plain `http` is accepted only for loopback hosts (Azurite).
    pub fn new(container_url: &str, auth: BlobAuth) -> Result<Self> {
        let container = parse_container_url(container_url)?;
        if container.query().is_some() {
            return Err(Error::InvalidContainerUrl {
                url: redact(&container),
                reason: "it has a query string; pass a SAS as BlobAuth::Sas or use BlobStore::from_sas_url"
                    .to_owned(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Self {
            http,
            container,
            auth,
        })
    }

    /// A store from a container SAS URL (`https://<account>.blob.core.windows.net/<container>?sv=…&sig=…`).
    pub fn from_sas_url(sas_url: &str) -> Result<Self> {
        let mut url = parse_container_url(sas_url)?;
        let sas = url
            .query()
            .filter(|q| !q.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| Error::InvalidContainerUrl {
                url: redact(&url),
                reason: "it has no SAS query string (expected '?sv=...&sig=...')".to_owned(),
            })?;
        url.set_query(None);
        Self::new(url.as_str(), BlobAuth::Sas(sas))
    }

    /// Uses `client` for requests (custom TLS roots, proxies, timeouts).
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// The container URL, without credentials.
    pub fn container_url(&self) -> &str {
        self.container.as_str()
    }

    fn blob_url(&self, path: &str) -> Result<Url> {
        validate_path(path)?;
        let mut url = self.container.clone();
        url.set_path(&format!("{}/{path}", self.container.path().trim_end_matches('/')));
        if let BlobAuth::Sas(sas) = &self.auth {
            url.set_query(Some(sas.trim_start_matches('?')));
        }
        Ok(url)
    }

    async fn send(
        &self,
        operation: &'static str,
        path: &str,
        method: Method,
        precondition: &Precondition,
        body: Option<&[u8]>,
    ) -> Result<Response> {
        let url = self.blob_url(path)?;
        let mut request = self
            .http
            .request(method, url)
            .header("x-ms-version", API_VERSION)
            .header(
                "x-ms-date",
                jiff::fmt::rfc2822::DateTimePrinter::new()
                    .timestamp_to_rfc9110_string(&jiff::Timestamp::now())
                    .unwrap_or_default(),
            );
        if let BlobAuth::Bearer(credential) = &self.auth {
            let token = credential.token(STORAGE_SCOPE).await.map_err(Error::Credential)?;
            request = request.bearer_auth(token.secret.expose());
        }
        request = match precondition {
            Precondition::Any => request,
            Precondition::IfMatch(etag) => request.header("If-Match", etag.as_str()),
            Precondition::IfNoneMatch => request.header("If-None-Match", "*"),
        };
        if let Some(body) = body {
            request = request
                .header("x-ms-blob-type", "BlockBlob")
                .header("Content-Type", "application/json")
                .header("x-ms-blob-content-type", "application/json")
                .header("x-ms-blob-cache-control", BLOB_CACHE_CONTROL)
                .body(body.to_vec());
        }
        let response = request.send().await.map_err(|source| Error::Transport {
            operation,
            path: path.to_owned(),
            source: source.without_url(),
        })?;
        tracing::debug!(
            operation,
            path,
            status = response.status().as_u16(),
            "blob request"
        );
        Ok(response)
    }
}

fn parse_container_url(input: &str) -> Result<Url> {
    let err = |url: String, reason: &str| Error::InvalidContainerUrl {
        url,
        reason: reason.to_owned(),
    };
    let url =
        Url::parse(input.trim()).map_err(|e| err("<unparsable>".to_owned(), &format!("not a URL ({e})")))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(err(redact(&url), "it has no host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(err(
                redact(&url),
                "it must be https (plain http only for loopback emulators)",
            ));
        }
    }
    if url.path().trim_matches('/').is_empty() {
        return Err(err(
            redact(&url),
            "it names no container (expected https://<account>.blob.core.windows.net/<container>)",
        ));
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(err(
            redact(&url),
            "it must not have a fragment or user information",
        ));
    }
    Ok(url)
}

/// A URL for messages: no query (it may carry a SAS signature).
fn redact(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

fn etag_of(response: &Response, operation: &'static str, path: &str) -> Result<ETag> {
    response
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(ETag::new)
        .ok_or_else(|| Error::Storage {
            operation,
            path: path.to_owned(),
            status: response.status().as_u16(),
            code: "MissingETag".to_owned(),
            message: "the response carried no ETag header".to_owned(),
            request_id: request_id(response),
        })
}

fn request_id(response: &Response) -> Option<String> {
    response
        .headers()
        .get("x-ms-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The storage error of a failed response: code from `x-ms-error-code` or the XML `<Code>`.
async fn storage_error(response: Response, operation: &'static str, path: &str) -> Error {
    let status = response.status().as_u16();
    let request_id = request_id(&response);
    let header_code = response
        .headers()
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await.unwrap_or_default();
    let code = header_code
        .or_else(|| xml_element(&body, "Code"))
        .unwrap_or_else(|| "Unknown".to_owned());
    let message = xml_element(&body, "Message")
        .map(|m| m.lines().next().unwrap_or_default().to_owned())
        .unwrap_or_else(|| body.chars().take(200).collect());
    Error::Storage {
        operation,
        path: path.to_owned(),
        status,
        code,
        message,
        request_id,
    }
}

fn xml_element(body: &str, name: &str) -> Option<String> {
    let start = body.find(&format!("<{name}>"))? + name.len() + 2;
    let len = body[start..].find(&format!("</{name}>"))?;
    Some(body[start..start + len].trim().to_owned())
}

fn error_code(response: &Response) -> Option<&str> {
    response
        .headers()
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
}

#[async_trait::async_trait]
impl IssuerStore for BlobStore {
    async fn read(&self, path: &str) -> Result<Option<(Vec<u8>, ETag)>> {
        const OP: &str = "Get Blob";
        let response = self.send(OP, path, Method::GET, &Precondition::Any, None).await?;
        match response.status() {
            StatusCode::OK => {
                let etag = etag_of(&response, OP, path)?;
                let bytes = response.bytes().await.map_err(|source| Error::Transport {
                    operation: OP,
                    path: path.to_owned(),
                    source: source.without_url(),
                })?;
                Ok(Some((bytes.to_vec(), etag)))
            }
            StatusCode::NOT_FOUND if error_code(&response).is_none_or(|c| c == "BlobNotFound") => Ok(None),
            _ => Err(storage_error(response, OP, path).await),
        }
    }

    async fn write(&self, path: &str, bytes: &[u8], precondition: Precondition) -> Result<ETag> {
        const OP: &str = "Put Blob";
        let response = self
            .send(OP, path, Method::PUT, &precondition, Some(bytes))
            .await?;
        let status = response.status();
        let code = error_code(&response);
        let lost = status == StatusCode::PRECONDITION_FAILED
            || (status == StatusCode::CONFLICT && code == Some("BlobAlreadyExists"))
            || (status == StatusCode::NOT_FOUND
                && code == Some("BlobNotFound")
                && matches!(precondition, Precondition::IfMatch(_)));
        if lost {
            return Err(Error::PreconditionFailed {
                path: path.to_owned(),
            });
        }
        if status.is_success() {
            return etag_of(&response, OP, path);
        }
        Err(storage_error(response, OP, path).await)
    }

    async fn delete(&self, path: &str, precondition: Precondition) -> Result<()> {
        const OP: &str = "Delete Blob";
        let response = self.send(OP, path, Method::DELETE, &precondition, None).await?;
        let status = response.status();
        let blob_missing =
            status == StatusCode::NOT_FOUND && error_code(&response).is_none_or(|c| c == "BlobNotFound");
        if status.is_success() || (blob_missing && !matches!(precondition, Precondition::IfMatch(_))) {
            return Ok(());
        }
        if status == StatusCode::PRECONDITION_FAILED || blob_missing {
            return Err(Error::PreconditionFailed {
                path: path.to_owned(),
            });
        }
        Err(storage_error(response, OP, path).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_urls() {
        let store = BlobStore::new(
            "https://acct.blob.core.windows.net/issuer/",
            BlobAuth::Sas("?sv=1&sig=s".into()),
        )
        .unwrap();
        assert_eq!(
            store.blob_url("t/c/openid/v1/jwks").unwrap().as_str(),
            "https://acct.blob.core.windows.net/issuer/t/c/openid/v1/jwks?sv=1&sig=s"
        );
        let azurite =
            BlobStore::from_sas_url("http://127.0.0.1:10000/devstoreaccount1/issuer?sv=2&sig=x%2By").unwrap();
        assert_eq!(
            azurite.container_url(),
            "http://127.0.0.1:10000/devstoreaccount1/issuer"
        );
        assert_eq!(
            azurite.blob_url("a/b").unwrap().as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/issuer/a/b?sv=2&sig=x%2By"
        );
        assert!(!format!("{azurite:?}").contains("sig"));
        assert!(azurite.blob_url("../x").is_err());

        for (bad, want) in [
            ("http://acct.blob.core.windows.net/c", "must be https"),
            ("https://acct.blob.core.windows.net/", "names no container"),
            ("https://acct.blob.core.windows.net/c?sig=secret", "query string"),
            ("not a url", "not a URL"),
        ] {
            let err = BlobStore::new(bad, BlobAuth::Sas(String::new()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{bad}: {err}");
            assert!(!err.contains("secret"), "{err}");
        }
        let err = BlobStore::from_sas_url("https://acct.blob.core.windows.net/c")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no SAS"), "{err}");
    }

    #[test]
    fn xml_error_parsing() {
        let body = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthorizationFailure</Code>\
                    <Message>This request is not authorized.\nRequestId:x</Message></Error>";
        assert_eq!(xml_element(body, "Code").as_deref(), Some("AuthorizationFailure"));
        assert_eq!(
            xml_element(body, "Message").as_deref(),
            Some("This request is not authorized.\nRequestId:x")
        );
        assert_eq!(xml_element("<a>", "Code"), None);
    }
}
