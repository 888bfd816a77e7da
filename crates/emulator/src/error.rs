//! The error type of the emulator library.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong while starting, seeding or persisting the emulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state file exists but could not be read.
    #[error("cannot read state file {path}: {source}")]
    StateRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state file is not a valid emulator state document.
    #[error(
        "state file {path} is not valid emulator state (expected the JSON the emulator writes): {reason}"
    )]
    StateParse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The state file could not be written.
    #[error("cannot write state file {path}: {source}")]
    StateWrite {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A seed document could not be read or applied.
    #[error("seed {source_name}: {reason}")]
    Seed {
        /// Where the seed came from (a file name or `inline`).
        source_name: String,
        /// What was wrong.
        reason: String,
    },
    /// An input (an id, a name, a URL) was not acceptable.
    #[error("invalid {what} {input:?}: {reason}")]
    InvalidInput {
        /// What the input is.
        what: &'static str,
        /// The input as given.
        input: String,
        /// What was expected.
        reason: String,
    },
    /// A seeding helper referred to something that does not exist.
    #[error("{what} {id:?} does not exist")]
    NotFound {
        /// What kind of thing.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// A seeding helper broke an ARM rule (for example a 21st federated credential).
    #[error("rejected: {code}: {message}")]
    Rejected {
        /// The ARM error code the HTTP API would answer with.
        code: String,
        /// The ARM error message.
        message: String,
    },
    /// Key generation or signing failed.
    #[error("crypto: {0}")]
    Crypto(String),
    /// TLS configuration failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The HTTP client used for issuer fetches could not be built.
    #[error("HTTP client: {0}")]
    HttpClient(String),
    /// The ready line ([`start_and_announce`](crate::start_and_announce)) could not be written.
    #[error("writing the ready line: {0}")]
    ReadyLine(String),
    /// An identifier from `idbind-model` was invalid.
    #[error(transparent)]
    Model(#[from] idbind_model::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
