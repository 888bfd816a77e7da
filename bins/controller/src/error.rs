//! The controller library's error type.

/// Everything that can go wrong in the controller library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is missing or inconsistent.
    #[error("invalid configuration of {what}: {reason}")]
    Config {
        /// The setting.
        what: String,
        /// What was wrong and what is expected.
        reason: String,
    },
    /// A Kubernetes API call failed.
    #[error("{context}: {source}")]
    Kube {
        /// What the controller was doing.
        context: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// Stored data (a Secret, a status) did not hold what was expected.
    #[error("invalid {what}: {reason}")]
    InvalidData {
        /// What was read.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// A binding is not ready yet; the reconcile is retried with backoff.
    #[error("{condition} is not ready ({reason}): {message}")]
    NotReady {
        /// The condition that failed.
        condition: String,
        /// Its reason.
        reason: String,
        /// Its message.
        message: String,
    },
    /// A concurrent writer won; the operation is retried.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A network listener could not be set up.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A closure wrapping a `kube::Error` with what the controller was doing.
    pub fn kube(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let context = context.into();
        move |source| Self::Kube { context, source }
    }

    /// A configuration error.
    pub fn config(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Config {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// A short, stable label of the error class for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Config { .. } => "config",
            Self::Kube { .. } => "kube",
            Self::InvalidData { .. } => "invalid_data",
            Self::Listen { .. } => "listen",
            Self::NotReady { .. } => "not_ready",
            Self::Conflict(_) => "conflict",
        }
    }
}
