//! [`ArmClient`]: typed ARM operations over an authenticated, retrying pipeline.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use idbind_model::{ArmResourceId, IdentityResourceId, validate_fic_name};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::field::Empty;
use url::Url;

use crate::cloud::same_origin;
use crate::http::{RawResponse, arm_error, display_url};
use crate::lro::LroKind;
use crate::retry::{Attempt, is_retryable_status};
use crate::{
    CloudConfig, Credential, Error, FederatedCredential, FicProperties, HttpOptions, Identity, Result,
    RetryPolicy,
};

/// API version used for user-assigned identities and federated identity credentials.
pub const MANAGED_IDENTITY_API_VERSION: &str = "2024-11-30";

/// A list is followed through at most this many `nextLink` pages.
const MAX_PAGES: usize = 1000;

/// Settings of an [`ArmClient`] beyond the cloud, credential and retry policy.
///
/// ```
/// use std::time::Duration;
/// use idbind_arm::ArmOptions;
///
/// let options = ArmOptions::default().api_version("2023-01-31").lro_poll_interval(Duration::from_secs(1));
/// assert_eq!(options.get_api_version(), "2023-01-31");
/// ```
#[derive(Clone, Debug)]
pub struct ArmOptions {
    api_version: String,
    http: HttpOptions,
    lro_poll_interval: Duration,
    lro_timeout: Duration,
    page_size: Option<u32>,
}

impl Default for ArmOptions {
    /// API version [`MANAGED_IDENTITY_API_VERSION`], default transport, long-running operations
    /// polled every 5 s (unless ARM says otherwise) for at most 10 minutes.
    fn default() -> Self {
        Self {
            api_version: MANAGED_IDENTITY_API_VERSION.to_owned(),
            http: HttpOptions::default(),
            lro_poll_interval: Duration::from_secs(5),
            lro_timeout: Duration::from_secs(600),
            page_size: None,
        }
    }
}

impl ArmOptions {
    /// The `api-version` of identity and FIC operations.
    pub fn api_version(mut self, v: impl Into<String>) -> Self {
        self.api_version = v.into();
        self
    }

    /// Transport settings.
    pub fn http(mut self, http: HttpOptions) -> Self {
        self.http = http;
        self
    }

    /// Wait between polls of a long-running operation when ARM sends no `Retry-After`.
    pub fn lro_poll_interval(mut self, d: Duration) -> Self {
        self.lro_poll_interval = d;
        self
    }

    /// Longest time to poll a long-running operation.
    pub fn lro_timeout(mut self, d: Duration) -> Self {
        self.lro_timeout = d;
        self
    }

    /// Ask for at most this many items per list page (`$top`); by default ARM chooses.
    pub fn page_size(mut self, n: u32) -> Self {
        self.page_size = Some(n.max(1));
        self
    }

    /// The `api-version` of identity and FIC operations.
    pub fn get_api_version(&self) -> &str {
        &self.api_version
    }
}

/// A client for the ARM operations idbind needs. Cheap to clone (clones share connections).
///
/// Every operation authenticates with the credential's token for the cloud's ARM scope, retries
/// per the [`RetryPolicy`], and runs in a `tracing` span named `arm` with the operation, the
/// resource ID and the last `x-ms-request-id`.
#[derive(Clone)]
pub struct ArmClient {
    inner: Arc<Inner>,
}

struct Inner {
    cloud: CloudConfig,
    credential: Arc<dyn Credential>,
    retry: RetryPolicy,
    options: ArmOptions,
    http: reqwest::Client,
}

impl fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArmClient")
            .field("cloud", &self.inner.cloud)
            .field("retry", &self.inner.retry)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<Value>,
    #[serde(rename = "nextLink")]
    next_link: Option<String>,
}

impl ArmClient {
    /// A client for `cloud` authenticating with `credential`.
    pub fn new(cloud: CloudConfig, credential: Arc<dyn Credential>, retry: RetryPolicy) -> Result<Self> {
        Self::with_options(cloud, credential, retry, ArmOptions::default())
    }

    /// A client with explicit [`ArmOptions`].
    pub fn with_options(
        cloud: CloudConfig,
        credential: Arc<dyn Credential>,
        retry: RetryPolicy,
        options: ArmOptions,
    ) -> Result<Self> {
        if options.api_version.trim().is_empty() {
            return Err(Error::config("api-version", "it is empty"));
        }
        let http = options.http.build(false)?;
        Ok(Self {
            inner: Arc::new(Inner {
                cloud,
                credential,
                retry,
                options,
                http,
            }),
        })
    }

    /// The cloud this client talks to.
    pub fn cloud(&self) -> &CloudConfig {
        &self.inner.cloud
    }

    /// The `api-version` of identity and FIC operations.
    pub fn api_version(&self) -> &str {
        &self.inner.options.api_version
    }

    /// Reads a user-assigned identity: its client, principal and tenant ids.
    #[tracing::instrument(name = "arm", skip_all, fields(op = "get_identity", resource = %id, request_id = Empty))]
    pub async fn get_identity(&self, id: &IdentityResourceId) -> Result<Identity> {
        let url = self.resource_url(id.as_str(), self.api_version())?;
        let response = self.send("get_identity", Method::GET, &url, None).await?;
        let body = decode_json("get_identity", &url, &response)?;
        Identity::from_json(body).map_err(|reason| decode_error("get_identity", &url, reason))
    }

    /// Creates (or updates) a user-assigned identity in `location` (tests and the sandbox).
    #[tracing::instrument(name = "arm", skip_all, fields(op = "create_identity", resource = %id, request_id = Empty))]
    pub async fn create_identity(&self, id: &IdentityResourceId, location: &str) -> Result<Identity> {
        let body = json!({ "location": location, "properties": {} });
        let value = self
            .put_json("create_identity", id.as_str(), self.api_version(), &body)
            .await?;
        let url = self.resource_url(id.as_str(), self.api_version())?;
        Identity::from_json(value).map_err(|reason| decode_error("create_identity", &url, reason))
    }

    /// Lists every federated identity credential of an identity, following `nextLink` pages.
    #[tracing::instrument(name = "arm", skip_all, fields(op = "list_fics", resource = %id, request_id = Empty))]
    pub async fn list_fics(&self, id: &IdentityResourceId) -> Result<Vec<FederatedCredential>> {
        let mut url = self.resource_url(&format!("{id}/federatedIdentityCredentials"), self.api_version())?;
        if let Some(top) = self.inner.options.page_size {
            url.query_pairs_mut().append_pair("$top", &top.to_string());
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let response = self.send("list_fics", Method::GET, &url, None).await?;
            let page: Page = serde_json::from_slice(&response.body)
                .map_err(|e| decode_error("list_fics", &url, format!("not a list page: {e}")))?;
            for item in page.value {
                out.push(
                    FederatedCredential::from_json(item).map_err(|r| decode_error("list_fics", &url, r))?,
                );
            }
            let Some(next) = page.next_link.filter(|n| !n.is_empty()) else {
                return Ok(out);
            };
            let next = self.follow_url("list_fics", &url, &next)?;
            if !seen.insert(next.to_string()) {
                return Err(decode_error(
                    "list_fics",
                    &next,
                    "nextLink points at a page already read".into(),
                ));
            }
            url = next;
        }
        Err(decode_error(
            "list_fics",
            &url,
            format!("more than {MAX_PAGES} pages"),
        ))
    }

    /// Reads one federated identity credential; `None` if the identity has none of that name.
    /// A missing identity is an error (404 whose message names the parent).
    #[tracing::instrument(name = "arm", skip_all, fields(op = "get_fic", resource = %id, fic = name, request_id = Empty))]
    pub async fn get_fic(&self, id: &IdentityResourceId, name: &str) -> Result<Option<FederatedCredential>> {
        let url = self.resource_url(&fic_path(id, name)?, self.api_version())?;
        match self.send("get_fic", Method::GET, &url, None).await {
            Ok(response) => {
                let body = decode_json("get_fic", &url, &response)?;
                FederatedCredential::from_json(body)
                    .map(Some)
                    .map_err(|r| decode_error("get_fic", &url, r))
            }
            Err(e) if e.is_not_found() && !is_parent_missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates or replaces a federated identity credential.
    #[tracing::instrument(name = "arm", skip_all, fields(op = "put_fic", resource = %id, fic = name, request_id = Empty))]
    pub async fn put_fic(
        &self,
        id: &IdentityResourceId,
        name: &str,
        properties: &FicProperties,
    ) -> Result<FederatedCredential> {
        let path = fic_path(id, name)?;
        let body = json!({ "properties": properties });
        let value = self.put_json("put_fic", &path, self.api_version(), &body).await?;
        let url = self.resource_url(&path, self.api_version())?;
        FederatedCredential::from_json(value).map_err(|r| decode_error("put_fic", &url, r))
    }

    /// Deletes a federated identity credential; `false` if it did not exist.
    #[tracing::instrument(name = "arm", skip_all, fields(op = "delete_fic", resource = %id, fic = name, request_id = Empty))]
    pub async fn delete_fic(&self, id: &IdentityResourceId, name: &str) -> Result<bool> {
        let path = fic_path(id, name)?;
        self.delete_path("delete_fic", &path, self.api_version()).await
    }

    /// Creates or replaces any ARM resource with a JSON body, waiting for a long-running operation
    /// (201/202 with `Azure-AsyncOperation` or `Location`) to finish; returns the final resource.
    #[tracing::instrument(name = "arm", skip_all, fields(op = "put_resource", resource = %id, request_id = Empty))]
    pub async fn put_resource(&self, id: &ArmResourceId, api_version: &str, body: &Value) -> Result<Value> {
        self.put_json("put_resource", id.as_str(), api_version, body)
            .await
    }

    /// Deletes any ARM resource, waiting for a long-running operation to finish; `false` if it
    /// did not exist (204 or 404).
    #[tracing::instrument(name = "arm", skip_all, fields(op = "delete_resource", resource = %id, request_id = Empty))]
    pub async fn delete_resource(&self, id: &ArmResourceId, api_version: &str) -> Result<bool> {
        self.delete_path("delete_resource", id.as_str(), api_version)
            .await
    }

    /// Reads any ARM resource as JSON; `None` on 404.
    #[tracing::instrument(name = "arm", skip_all, fields(op = "get_resource", resource = %id, request_id = Empty))]
    pub async fn get_resource(&self, id: &ArmResourceId, api_version: &str) -> Result<Option<Value>> {
        let url = self.resource_url(id.as_str(), api_version)?;
        match self.send("get_resource", Method::GET, &url, None).await {
            Ok(response) => decode_json("get_resource", &url, &response).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn put_json(
        &self,
        operation: &'static str,
        path: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<Value> {
        let url = self.resource_url(path, api_version)?;
        let initial = self.send(operation, Method::PUT, &url, Some(body)).await?;
        let last = self.finish_lro(operation, LroKind::Put, &url, initial).await?;
        match last {
            Some(response) if !response.body.is_empty() => decode_json(operation, &url, &response),
            _ => {
                let response = self.send(operation, Method::GET, &url, None).await?;
                decode_json(operation, &url, &response)
            }
        }
    }

    async fn delete_path(&self, operation: &'static str, path: &str, api_version: &str) -> Result<bool> {
        let url = self.resource_url(path, api_version)?;
        match self.send(operation, Method::DELETE, &url, None).await {
            Ok(response) if response.status == 204 => Ok(false),
            Ok(response) => {
                self.finish_lro(operation, LroKind::Delete, &url, response)
                    .await?;
                Ok(true)
            }
            Err(e) if e.is_not_found() && !is_parent_missing(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `{arm_endpoint}{path}?api-version={api_version}`.
    fn resource_url(&self, path: &str, api_version: &str) -> Result<Url> {
        let base = self.inner.cloud.arm_endpoint.as_str().trim_end_matches('/');
        let mut url = Url::parse(&format!("{base}/{}", path.trim_start_matches('/')))
            .map_err(|e| Error::config("resource path", format!("{path:?}: {e}")))?;
        url.query_pairs_mut().append_pair("api-version", api_version);
        Ok(url)
    }

    /// Resolves a URL ARM handed back (`nextLink`, `Azure-AsyncOperation`, `Location`) and checks
    /// it points at the ARM endpoint, where the bearer token may go.
    pub(crate) fn follow_url(&self, operation: &'static str, current: &Url, link: &str) -> Result<Url> {
        let next = current.join(link).map_err(|e| {
            decode_error(
                operation,
                current,
                format!("ARM sent an invalid URL {link:?}: {e}"),
            )
        })?;
        if !same_origin(&self.inner.cloud.arm_endpoint, &next) {
            return Err(decode_error(
                operation,
                current,
                format!(
                    "ARM sent a URL on another host ({}); not sending the token there",
                    display_url(&next)
                ),
            ));
        }
        Ok(next)
    }

    pub(crate) fn lro_settings(&self) -> (Duration, Duration) {
        (
            self.inner.options.lro_poll_interval,
            self.inner.options.lro_timeout,
        )
    }

    /// Sends one request with retries; `Ok` only for 2xx answers.
    pub(crate) async fn send(
        &self,
        operation: &'static str,
        method: Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<RawResponse> {
        self.inner
            .retry
            .run(operation, |attempt| {
                self.attempt(operation, method.clone(), url, body, attempt)
            })
            .await
    }

    async fn attempt(
        &self,
        operation: &'static str,
        method: Method,
        url: &Url,
        body: Option<&Value>,
        attempt: u32,
    ) -> Result<RawResponse, Attempt> {
        let token = self
            .inner
            .credential
            .token(&self.inner.cloud.arm_scope)
            .await
            .map_err(Attempt::Fatal)?;
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let mut request = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(token.secret.expose())
            .header("x-ms-client-request-id", &client_request_id)
            .header("accept", "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport = |e: reqwest::Error| {
            tracing::debug!(operation, attempt, %method, url = %display_url(url), error = %e, "transport failure");
            Attempt::Retry {
                error: Error::Transport {
                    operation,
                    url: display_url(url),
                    attempts: attempt,
                    source: Box::new(e.without_url()),
                },
                status: None,
                retry_after: None,
            }
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(transport)?;
        let raw = RawResponse {
            status,
            headers,
            body,
        };
        let request_id = raw.request_id().unwrap_or_default();
        tracing::Span::current().record("request_id", tracing::field::display(request_id));
        tracing::debug!(operation, attempt, %method, url = %display_url(url), status, request_id, client_request_id, "ARM answered");
        if (200..300).contains(&status) {
            return Ok(raw);
        }
        let error = arm_error(operation, &raw, attempt);
        if is_retryable_status(status) {
            Err(Attempt::Retry {
                status: Some(status),
                retry_after: raw.retry_after(),
                error: error.into(),
            })
        } else {
            Err(Attempt::Fatal(error.into()))
        }
    }
}

fn fic_path(id: &IdentityResourceId, name: &str) -> Result<String> {
    validate_fic_name(name)
        .map_err(|e| Error::config("federated identity credential name", e.to_string()))?;
    Ok(format!("{id}/federatedIdentityCredentials/{name}"))
}

/// A 404 that says the parent (the identity) is missing, rather than the child.
fn is_parent_missing(e: &Error) -> bool {
    e.arm().is_some_and(|a| {
        a.code
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case("ParentResourceNotFound"))
            || a.message.to_ascii_lowercase().contains("parent")
    })
}

pub(crate) fn decode_error(operation: &'static str, url: &Url, reason: String) -> Error {
    Error::Decode {
        operation,
        url: display_url(url),
        reason,
    }
}

pub(crate) fn decode_json(operation: &'static str, url: &Url, response: &RawResponse) -> Result<Value> {
    serde_json::from_slice(&response.body)
        .map_err(|e| decode_error(operation, url, format!("the body is not JSON ({e})")))
}
