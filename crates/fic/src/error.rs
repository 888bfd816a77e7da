//! The error type of `idbind-fic`.

use std::fmt;

/// `Result` with [`enum@Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One federated identity credential as listed on an identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FicSummary {
    /// Its name.
    pub name: String,
    /// Its issuer.
    pub issuer: String,
    /// Its subject.
    pub subject: String,
}

impl fmt::Display for FicSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (issuer {}, subject {})",
            self.name, self.issuer, self.subject
        )
    }
}

/// Why a FIC could not be ensured or collected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// ARM or a credential failed in a way retrying here cannot fix.
    #[error(transparent)]
    Arm(#[from] idbind_arm::Error),
    /// The identity already has the maximum number of FICs and none has idbind's issuer and
    /// subject. Nothing was written; someone must delete one of `existing`.
    #[error(
        "identity {identity} already has {} federated identity credentials (the limit is {limit}) and none has \
         issuer {issuer} and subject {subject}; delete one of them to let idbind add its own: {}",
        existing.len(),
        list(existing)
    )]
    LimitReached {
        /// The identity.
        identity: String,
        /// Entra's limit.
        limit: usize,
        /// The issuer idbind needs.
        issuer: String,
        /// The subject idbind needs.
        subject: String,
        /// What is there now.
        existing: Vec<FicSummary>,
    },
    /// A FIC with idbind's name exists on the identity with another issuer or subject (another
    /// installation, or a hand-made credential). idbind does not overwrite it.
    #[error(
        "identity {identity} already has a federated identity credential named {:?} with issuer {} and subject {}, \
         not the issuer {wanted_issuer} and subject {wanted_subject} idbind needs; choose another FIC name or \
         remove that credential",
        existing.name,
        existing.issuer,
        existing.subject
    )]
    NameTaken {
        /// The identity.
        identity: String,
        /// The credential holding the name.
        existing: FicSummary,
        /// The issuer idbind needs.
        wanted_issuer: String,
        /// The subject idbind needs.
        wanted_subject: String,
    },
    /// Conflicts, throttling or uncertain writes persisted past the retry budget.
    #[error("gave up on identity {identity} after {attempts} attempts: {last}")]
    GaveUp {
        /// The identity.
        identity: String,
        /// Attempts made (one list and at most one write each).
        attempts: u32,
        /// The last error.
        #[source]
        last: idbind_arm::Error,
    },
    /// The FIC specification is not valid.
    #[error("invalid federated identity credential specification: {0}")]
    InvalidSpec(#[from] idbind_model::Error),
    /// The caller's "is it unused?" check failed; nothing was deleted.
    #[error(
        "could not establish whether the federated identity credential of {identity} is unused: {source}"
    )]
    UnusedCheck {
        /// The identity.
        identity: String,
        /// The caller's error.
        #[source]
        source: idbind_arm::BoxError,
    },
}

fn list(existing: &[FicSummary]) -> String {
    existing
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// The FICs on the identity when the limit was reached.
    pub fn existing_fics(&self) -> Option<&[FicSummary]> {
        match self {
            Error::LimitReached { existing, .. } => Some(existing),
            _ => None,
        }
    }
}
