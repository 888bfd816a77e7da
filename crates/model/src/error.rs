//! The error type of `idbind-model`.

/// Everything that can be wrong with an identifier, name or duration idbind parses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An ARM resource ID did not parse, or named the wrong kind of resource.
    #[error("invalid Azure resource ID {input:?}: {reason}")]
    InvalidResourceId {
        /// The text given.
        input: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// A GUID (client, tenant, principal or subscription id) did not parse.
    #[error("invalid {what} {input:?}: {reason}")]
    InvalidGuid {
        /// Which kind of id.
        what: &'static str,
        /// The text given.
        input: String,
        /// What was expected.
        reason: String,
    },
    /// An issuer base URL was not acceptable.
    #[error("invalid issuer URL {input:?}: {reason}")]
    InvalidIssuerUrl {
        /// The text given.
        input: String,
        /// What was wrong.
        reason: String,
    },
    /// A federated identity credential name broke Entra's naming rule.
    #[error("invalid federated identity credential name {input:?}: {reason}")]
    InvalidFicName {
        /// The text given.
        input: String,
        /// What was wrong.
        reason: String,
    },
    /// A duration (a flag value like `30s`, `5m` or `1h30m`) did not parse; see
    /// [`duration`](crate::duration).
    #[error("invalid duration {input:?}: {reason}")]
    InvalidDuration {
        /// The text given.
        input: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// A Kubernetes name (namespace, service account) was not valid.
    #[error("invalid {what} name {input:?}: {reason}")]
    InvalidName {
        /// Which kind of name.
        what: &'static str,
        /// The text given.
        input: String,
        /// What was wrong.
        reason: String,
    },
}
