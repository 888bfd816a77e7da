//! The crate's error type.

use std::path::PathBuf;

/// Errors starting, configuring or stopping the emulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding or serving the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address we tried to bind.
        addr: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Writing a file (kubeconfig, certificates) failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file we tried to write.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Creating a temporary directory failed.
    #[error("cannot create a temporary directory: {0}")]
    TempDir(std::io::Error),
    /// TLS setup failed (certificate authority, server certificate or rustls configuration).
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The service-account issuer could not be created or could not mint a token.
    #[error("service-account issuer: {0}")]
    Issuer(String),
    /// Building a kube client for the emulator failed.
    #[error("cannot build a kube client for the emulator: {0}")]
    Client(String),
    /// A seed object or CRD given to the emulator was rejected.
    #[error("the emulator rejected {what}: {message}")]
    Rejected {
        /// What was rejected (kind and name).
        what: String,
        /// The API server's message.
        message: String,
    },
    /// A value given to the emulator could not be serialized or parsed.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// What was invalid.
        what: String,
        /// Why.
        message: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
