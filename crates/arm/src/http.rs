//! HTTP plumbing shared by the ARM client and the credentials. Nothing here is public except
//! [`HttpOptions`].

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde::Deserialize;

use crate::retry::parse_retry_after;
use crate::{ArmError, Error, Result};

/// Transport settings for the HTTP clients this crate builds.
///
/// ```
/// use std::time::Duration;
/// use idbind_arm::HttpOptions;
///
/// let options = HttpOptions::default().request_timeout(Duration::from_secs(10));
/// assert_eq!(options.get_request_timeout(), Duration::from_secs(10));
/// ```
#[derive(Clone, Debug)]
pub struct HttpOptions {
    request_timeout: Duration,
    connect_timeout: Duration,
    root_certificates_pem: Option<String>,
    user_agent: String,
}

impl Default for HttpOptions {
    /// 30 s per request, 10 s to connect, the platform's roots, user agent `idbind/<version>`.
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            root_certificates_pem: None,
            user_agent: format!("idbind/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl HttpOptions {
    /// Time limit of one request (connect, send, receive the whole body).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// Time limit to establish a connection.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Extra trusted root certificates (PEM bundle), e.g. the CA of an emulator served over TLS.
    pub fn root_certificates_pem(mut self, pem: impl Into<String>) -> Self {
        self.root_certificates_pem = Some(pem.into());
        self
    }

    /// The `User-Agent` header.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    /// Time limit of one request.
    pub fn get_request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Builds a client. `direct` disables proxies (IMDS must never go through one).
    pub(crate) fn build(&self, direct: bool) -> Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .timeout(self.request_timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(self.user_agent.clone())
            // Bearer tokens must not follow redirects to other hosts; ARM and Entra do not redirect.
            .redirect(reqwest::redirect::Policy::none());
        if direct {
            builder = builder.no_proxy();
        }
        if let Some(pem) = &self.root_certificates_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| {
                Error::config("root certificates", format!("not a PEM certificate bundle: {e}"))
            })?;
            if certs.is_empty() {
                return Err(Error::config(
                    "root certificates",
                    "the PEM bundle holds no certificate",
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        builder
            .build()
            .map_err(|e| Error::config("HTTP client", e.to_string()))
    }
}

/// A response read completely.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers)
    }

    pub fn request_id(&self) -> Option<&str> {
        self.header("x-ms-request-id")
    }
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    parse_retry_after(
        header(headers, "retry-after-ms"),
        header(headers, "x-ms-retry-after-ms"),
        header(headers, "retry-after"),
        jiff::Timestamp::now(),
    )
}

/// A URL without its query string, for errors and logs (queries can carry secrets elsewhere).
pub(crate) fn display_url(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

/// The start of a body as text, for error messages.
pub(crate) fn body_snippet(body: &[u8]) -> String {
    const MAX: usize = 512;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[derive(Deserialize)]
struct ArmErrorBody {
    error: Option<ArmErrorDetail>,
    code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct ArmErrorDetail {
    code: Option<String>,
    message: Option<String>,
    target: Option<String>,
}

/// Decodes an ARM error response (`{"error":{"code","message","target"}}`, or the flat
/// `{"code","message"}` some providers send); any other body becomes the message text.
pub(crate) fn arm_error(operation: &'static str, response: &RawResponse, attempts: u32) -> ArmError {
    let parsed = serde_json::from_slice::<ArmErrorBody>(&response.body).ok();
    let (code, message, target) = match parsed {
        Some(ArmErrorBody { error: Some(d), .. }) => (d.code, d.message, d.target),
        Some(ArmErrorBody {
            error: None,
            code,
            message,
        }) => (code, message, None),
        None => (None, None, None),
    };
    ArmError {
        operation,
        status: response.status,
        code,
        message: message.unwrap_or_else(|| body_snippet(&response.body)),
        target,
        request_id: response.request_id().map(str::to_owned),
        correlation_id: response.header("x-ms-correlation-request-id").map(str::to_owned),
        attempts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn response(status: u16, body: &str, headers: &[(&'static str, &str)]) -> RawResponse {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        RawResponse {
            status,
            headers: map,
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn arm_errors_decode_code_message_target_and_ids() {
        let r = response(
            409,
            r#"{"error":{"code":"ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity","message":"Too many writes","target":"x"}}"#,
            &[("x-ms-request-id", "r1"), ("x-ms-correlation-request-id", "c1")],
        );
        let e = arm_error("put_fic", &r, 2);
        assert_eq!(e.status, 409);
        assert_eq!(
            e.code.as_deref(),
            Some("ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity")
        );
        assert_eq!(e.message, "Too many writes");
        assert_eq!(e.target.as_deref(), Some("x"));
        assert_eq!(e.request_id.as_deref(), Some("r1"));
        assert_eq!(e.correlation_id.as_deref(), Some("c1"));
        assert_eq!(e.attempts, 2);
    }

    #[test]
    fn flat_and_foreign_error_bodies_still_give_a_message() {
        let flat = arm_error(
            "op",
            &response(400, r#"{"code":"BadRequest","message":"no"}"#, &[]),
            1,
        );
        assert_eq!(
            (flat.code.as_deref(), flat.message.as_str()),
            (Some("BadRequest"), "no")
        );
        let html = arm_error("op", &response(502, "<html>Bad Gateway</html>", &[]), 1);
        assert_eq!(html.code, None);
        assert_eq!(html.message, "<html>Bad Gateway</html>");
        let empty = arm_error("op", &response(503, "", &[]), 1);
        assert_eq!(empty.message, "(empty body)");
        let long = body_snippet("é".repeat(600).as_bytes());
        assert_eq!(long.chars().count(), 513);
    }

    #[test]
    fn retry_after_headers_are_read() {
        let r = response(429, "", &[("retry-after", "2")]);
        assert_eq!(r.retry_after(), Some(Duration::from_secs(2)));
        let r = response(429, "", &[("x-ms-retry-after-ms", "150"), ("retry-after", "2")]);
        assert_eq!(r.retry_after(), Some(Duration::from_millis(150)));
    }

    #[test]
    fn bad_root_certificates_are_rejected_with_the_setting_named() {
        let err = HttpOptions::default()
            .root_certificates_pem("not pem")
            .build(false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("root certificates"), "{err}");
    }
}
