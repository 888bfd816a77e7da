//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in `idbind-issuer`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A cluster name is not a DNS-1123 label (it becomes the `kid` prefix `<cluster>.`).
    #[error("invalid cluster name '{input}': {reason}")]
    InvalidClusterName {
        /// The rejected input.
        input: String,
        /// What was expected.
        reason: String,
    },

    /// Generating or using key material failed inside the crypto library.
    #[error("key operation failed: {0}")]
    Crypto(String),

    /// A PEM key could not be parsed.
    #[error("invalid {what}: {reason}")]
    InvalidKey {
        /// Which key (for example `Secret data key 'current.pem'`).
        what: String,
        /// What was wrong and what was expected.
        reason: String,
    },

    /// The key set stored in a Secret is malformed.
    #[error("malformed signing-key Secret data at '{key}': {reason}")]
    SecretData {
        /// The `data` entry at fault.
        key: String,
        /// What was wrong and what was expected.
        reason: String,
    },

    /// A rotation step was applied in a phase where it does not apply.
    #[error("rotation step {step} cannot be applied in phase {phase}")]
    RotationStep {
        /// The requested step.
        step: crate::RotationStep,
        /// The phase the key set is in.
        phase: crate::RotationPhase,
    },

    /// An assertion lifetime outside the accepted range.
    #[error("invalid assertion lifetime {seconds}s: it must be between 1 s and {max} s")]
    InvalidLifetime {
        /// The requested lifetime in seconds.
        seconds: u64,
        /// The maximum in seconds.
        max: u64,
    },

    /// Signing an assertion failed.
    #[error("signing the assertion with key '{kid}' failed: {source}")]
    Signing {
        /// The key used.
        kid: String,
        /// The signer's error.
        source: jsonwebtoken::errors::Error,
    },

    /// A stored document is not what it should be.
    #[error("malformed document at '{path}': {reason}")]
    MalformedDocument {
        /// Store path of the document.
        path: String,
        /// What was wrong.
        reason: String,
    },

    /// A JWKS would carry more keys than Entra reads.
    #[error(
        "the JWKS would hold {count} keys but Entra reads only the first {max}; \
         unbind clusters from this identity or shard it"
    )]
    TooManyKeys {
        /// Keys the JWKS would hold.
        count: usize,
        /// [`idbind_model::MAX_JWKS_KEYS`].
        max: usize,
    },

    /// A key handed to a cluster operation does not belong to that cluster.
    #[error("key '{kid}' does not belong to cluster '{cluster}' (its kid must start with '{cluster}.')")]
    ForeignKey {
        /// The cluster.
        cluster: String,
        /// The offending key id.
        kid: String,
    },

    /// The same key id was given twice.
    #[error("duplicate key id '{kid}'")]
    DuplicateKid {
        /// The duplicated key id.
        kid: String,
    },

    /// A store path that is not a clean relative path.
    #[error("invalid store path '{path}': {reason}")]
    InvalidPath {
        /// The rejected path.
        path: String,
        /// What was expected.
        reason: String,
    },

    /// A compare-and-swap write or delete lost: the document changed (or appeared, or vanished).
    #[error("precondition failed for '{path}': the document was changed by someone else")]
    PreconditionFailed {
        /// Store path of the document.
        path: String,
    },

    /// Compare-and-swap kept losing to concurrent writers.
    #[error("gave up updating '{path}' after {attempts} attempts: concurrent writers kept changing it")]
    Contended {
        /// Store path of the document.
        path: String,
        /// Attempts made.
        attempts: u32,
    },

    /// A file-system operation of the directory store failed.
    #[error("{op} '{}': {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },

    /// An invalid Blob container URL.
    #[error("invalid Blob container URL '{url}': {reason}")]
    InvalidContainerUrl {
        /// The rejected URL (without any SAS query).
        url: String,
        /// What was expected.
        reason: String,
    },

    /// Azure Storage answered with an error.
    #[error("Azure Storage {operation} '{path}' failed with HTTP {status} {code}: {message}")]
    Storage {
        /// `Get Blob`, `Put Blob`, `Delete Blob`.
        operation: &'static str,
        /// Store path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The storage error code (`x-ms-error-code` or `<Code>` of the XML body).
        code: String,
        /// The service's message.
        message: String,
        /// `x-ms-request-id`, when present.
        request_id: Option<String>,
    },

    /// Talking to Azure Storage failed below HTTP (connection, TLS, timeout).
    #[error("Azure Storage {operation} '{path}': {source}")]
    Transport {
        /// `Get Blob`, `Put Blob`, `Delete Blob`.
        operation: &'static str,
        /// Store path.
        path: String,
        /// The HTTP client's error.
        source: reqwest::Error,
    },

    /// The HTTP client could not be built.
    #[error("building the HTTP client failed: {0}")]
    HttpClient(#[source] reqwest::Error),

    /// Obtaining a bearer token for Azure Storage failed.
    #[error("getting an Azure Storage token failed: {0}")]
    Credential(#[source] idbind_arm::Error),
}

impl Error {
    /// Whether retrying the same operation later may succeed (contention, throttling, outages).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::PreconditionFailed { .. } | Error::Contended { .. } | Error::Transport { .. } => true,
            Error::Storage { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
