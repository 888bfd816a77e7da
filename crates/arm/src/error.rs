//! The error type of `idbind-arm`.

use std::fmt;

/// A boxed error used as the source of transport and callback failures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`enum@Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to ARM or Entra.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// ARM answered with an error status (after retries, if the status was retryable).
    #[error(transparent)]
    Arm(Box<ArmError>),
    /// A credential could not produce a token.
    #[error(transparent)]
    Credential(Box<CredentialError>),
    /// The request could not be sent or its response not read (connection refused, reset,
    /// timeout), after retries.
    #[error("{operation}: request to {url} failed after {attempts} attempt(s): {source}")]
    Transport {
        /// The operation that was attempted, e.g. `list_fics`.
        operation: &'static str,
        /// The URL, without query string.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last transport error.
        #[source]
        source: BoxError,
    },
    /// A response body did not have the expected shape.
    #[error("{operation}: could not decode the response from {url}: {reason}")]
    Decode {
        /// The operation that was attempted.
        operation: &'static str,
        /// The URL, without query string.
        url: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// A configuration value (URL, option) was not acceptable.
    #[error("invalid {what}: {reason}")]
    Config {
        /// Which setting.
        what: &'static str,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// A long-running operation reached the terminal state `Failed` or `Canceled`.
    #[error(
        "{operation}: long-running operation ended {status}{}",
        fmt_code_message(code, message)
    )]
    OperationFailed {
        /// The operation that was attempted.
        operation: &'static str,
        /// `Failed` or `Canceled` (as ARM spelled it).
        status: String,
        /// The error code from the operation-status body, if any.
        code: Option<String>,
        /// The error message from the operation-status body, if any.
        message: Option<String>,
    },
    /// A long-running operation did not reach a terminal state within the configured time.
    #[error("{operation}: long-running operation still running after {polls} poll(s) of {url}")]
    OperationTimeout {
        /// The operation that was attempted.
        operation: &'static str,
        /// The status URL that was polled.
        url: String,
        /// How many polls were made.
        polls: u32,
    },
}

fn fmt_code_message(code: &Option<String>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(c), Some(m)) => format!(" ({c}: {m})"),
        (Some(c), None) => format!(" ({c})"),
        (None, Some(m)) => format!(" ({m})"),
        (None, None) => String::new(),
    }
}

impl Error {
    /// The ARM error, if ARM answered with an error status.
    pub fn arm(&self) -> Option<&ArmError> {
        match self {
            Error::Arm(e) => Some(e),
            _ => None,
        }
    }

    /// The credential error, if a token could not be obtained.
    pub fn credential(&self) -> Option<&CredentialError> {
        match self {
            Error::Credential(e) => Some(e),
            _ => None,
        }
    }

    /// The HTTP status ARM answered with, if this is an ARM error.
    pub fn status(&self) -> Option<u16> {
        self.arm().map(|e| e.status)
    }

    /// ARM answered 404 Not Found.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// ARM answered 409 Conflict (for FICs: a concurrent write to the same identity).
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// ARM answered 429 Too Many Requests (still, after retries).
    pub fn is_throttled(&self) -> bool {
        self.status() == Some(429)
    }

    /// ARM answered with a server error (5xx), after retries.
    pub fn is_server_error(&self) -> bool {
        self.status().is_some_and(|s| (500..600).contains(&s))
    }

    /// The request may or may not have reached ARM (transport failure, timeout, 5xx): the caller
    /// cannot tell whether a write took effect and should read back before writing again.
    pub fn is_uncertain(&self) -> bool {
        matches!(self, Error::Transport { .. }) || self.is_server_error() || self.status() == Some(408)
    }

    /// The error came from a credential (no token), not from ARM.
    pub fn is_credential(&self) -> bool {
        matches!(self, Error::Credential(_))
    }

    pub(crate) fn config(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Config {
            what,
            reason: reason.into(),
        }
    }
}

impl From<ArmError> for Error {
    fn from(e: ArmError) -> Self {
        Error::Arm(Box::new(e))
    }
}

impl From<CredentialError> for Error {
    fn from(e: CredentialError) -> Self {
        Error::Credential(Box::new(e))
    }
}

/// An error status from ARM, with what ARM said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArmError {
    /// The operation that was attempted, e.g. `put_fic`.
    pub operation: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// `error.code` of the ARM error body (absent when the body was not ARM-shaped).
    pub code: Option<String>,
    /// `error.message` of the ARM error body, or the start of the body text.
    pub message: String,
    /// `error.target`, when ARM set it.
    pub target: Option<String>,
    /// The `x-ms-request-id` response header.
    pub request_id: Option<String>,
    /// The `x-ms-correlation-request-id` response header.
    pub correlation_id: Option<String>,
    /// How many attempts were made before giving up.
    pub attempts: u32,
}

impl ArmError {
    /// Whether the ARM code or message says that a FIC with the same issuer and subject already
    /// exists on the identity (Entra's 400 "Issuer and subject combination already exists").
    pub fn is_duplicate_issuer_subject(&self) -> bool {
        let message = self.message.to_ascii_lowercase();
        self.status == 400 && message.contains("issuer and subject combination already exists")
    }
}

impl fmt::Display for ArmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ARM answered {}", self.operation, self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (x-ms-request-id {id}")?;
            if let Some(c) = &self.correlation_id {
                write!(f, ", x-ms-correlation-request-id {c}")?;
            }
            f.write_str(")")?;
        } else if let Some(c) = &self.correlation_id {
            write!(f, " (x-ms-correlation-request-id {c})")?;
        }
        if self.attempts > 1 {
            write!(f, " after {} attempts", self.attempts)?;
        }
        Ok(())
    }
}

impl std::error::Error for ArmError {}

/// A credential could not produce a token.
#[derive(Debug, thiserror::Error)]
#[error("{credential}: {message}{}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
#[non_exhaustive]
pub struct CredentialError {
    /// Which credential failed, e.g. `ClientSecretCredential`.
    pub credential: &'static str,
    /// HTTP status of the token endpoint's answer, if there was one.
    pub status: Option<u16>,
    /// The OAuth `error` value (e.g. `invalid_client`), if the endpoint sent one.
    pub code: Option<String>,
    /// Entra's `error_codes` (AADSTS numbers), if sent.
    pub error_codes: Vec<i64>,
    /// What went wrong: the endpoint's `error_description`, or a description of the local failure.
    pub message: String,
    /// The underlying error (I/O, transport), if any.
    #[source]
    pub source: Option<BoxError>,
}

impl CredentialError {
    pub(crate) fn local(credential: &'static str, message: impl Into<String>) -> Self {
        Self {
            credential,
            status: None,
            code: None,
            error_codes: Vec::new(),
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(status: u16, message: &str) -> Error {
        ArmError {
            operation: "put_fic",
            status,
            code: Some("Code".into()),
            message: message.into(),
            target: None,
            request_id: Some("req-1".into()),
            correlation_id: Some("corr-1".into()),
            attempts: 3,
        }
        .into()
    }

    #[test]
    fn helpers_classify_statuses() {
        assert!(arm(404, "x").is_not_found());
        assert!(arm(409, "x").is_conflict());
        assert!(arm(429, "x").is_throttled());
        assert!(arm(503, "x").is_uncertain());
        assert!(!arm(400, "x").is_uncertain());
        let e = arm(
            400,
            "Issuer and subject combination already exists for this Managed Identity.",
        );
        assert!(e.arm().unwrap().is_duplicate_issuer_subject());
        assert!(
            !arm(409, "Issuer and subject combination already exists")
                .arm()
                .unwrap()
                .is_duplicate_issuer_subject()
        );
    }

    #[test]
    fn display_carries_status_code_message_and_request_ids() {
        let text = arm(409, "Concurrent write").to_string();
        for want in [
            "put_fic",
            "409",
            "Code",
            "Concurrent write",
            "req-1",
            "corr-1",
            "3 attempts",
        ] {
            assert!(text.contains(want), "{want} missing from {text}");
        }
        let cred = Error::from(CredentialError {
            status: Some(401),
            code: Some("invalid_client".into()),
            ..CredentialError::local("ClientSecretCredential", "AADSTS7000215: Invalid client secret")
        });
        assert!(cred.is_credential());
        assert!(cred.to_string().contains("AADSTS7000215"), "{cred}");
        assert!(cred.to_string().contains("HTTP 401"), "{cred}");
    }
}
