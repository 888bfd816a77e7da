//! The errors of the authentication and authorization APIs, shaped like the API server's `Status`
//! errors so the server can return them as they are.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

/// An API error from TokenRequest, TokenReview or an access review, or a failure to set up the
/// service-account issuer.
///
/// [`Error::to_status`] turns it into the `Status` body the API server would send;
/// [`Error::code`] is the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request object failed validation (HTTP 422, reason `Invalid`).
    #[error("{kind}.{group} {name:?} is invalid: {}", join_causes(causes))]
    Invalid {
        /// Kind of the object, e.g. `TokenRequest`.
        kind: &'static str,
        /// API group of the object, e.g. `authentication.k8s.io`.
        group: &'static str,
        /// Name of the object (for TokenRequest: the service account).
        name: String,
        /// Each failed field: path and what was wrong, as `field.Invalid` prints it.
        causes: Vec<FieldError>,
    },
    /// The request cannot be served as asked (HTTP 400, reason `BadRequest`).
    #[error("{0}")]
    BadRequest(String),
    /// An object the request depends on does not exist (HTTP 404, reason `NotFound`).
    #[error("{resource} {name:?} not found")]
    NotFound {
        /// Plural resource name, e.g. `serviceaccounts`, with its group when not core.
        resource: String,
        /// Name of the missing object.
        name: String,
    },
    /// The request conflicts with the stored state (HTTP 409, reason `Conflict`).
    #[error("Operation cannot be fulfilled on {resource} {name:?}: {message}")]
    Conflict {
        /// The resource as the API server names it in this message (e.g. `Pod`).
        resource: String,
        /// Name of the object.
        name: String,
        /// What conflicts.
        message: String,
    },
    /// The issuer's signing key could not be generated or used (HTTP 500).
    #[error("service-account signing key: {0}")]
    Key(String),
}

/// One invalid field of a request, as `field.Invalid` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, e.g. `spec.expirationSeconds`.
    pub field: String,
    /// The rejected value, printed as the API server prints it.
    pub value: String,
    /// What was expected.
    pub detail: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: Invalid value: {}: {}",
            self.field, self.value, self.detail
        )
    }
}

fn join_causes(causes: &[FieldError]) -> String {
    match causes {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The result type of the auth modules.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The HTTP status code the API server answers with.
    pub fn code(&self) -> u16 {
        match self {
            Error::Invalid { .. } => 422,
            Error::BadRequest(_) => 400,
            Error::NotFound { .. } => 404,
            Error::Conflict { .. } => 409,
            Error::Key(_) => 500,
        }
    }

    /// The `Status.reason` the API server uses.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Invalid { .. } => "Invalid",
            Error::BadRequest(_) => "BadRequest",
            Error::NotFound { .. } => "NotFound",
            Error::Conflict { .. } => "Conflict",
            Error::Key(_) => "InternalError",
        }
    }

    /// The `Status` body (`kind: Status`, `status: Failure`) the API server would send.
    pub fn to_status(&self) -> Status {
        let details = match self {
            Error::Invalid {
                kind,
                group,
                name,
                causes,
            } => Some(StatusDetails {
                name: Some(name.clone()),
                group: Some((*group).to_owned()),
                kind: Some((*kind).to_owned()),
                causes: Some(
                    causes
                        .iter()
                        .map(|c| StatusCause {
                            reason: Some("FieldValueInvalid".into()),
                            message: Some(format!("Invalid value: {}: {}", c.value, c.detail)),
                            field: Some(c.field.clone()),
                        })
                        .collect(),
                ),
                ..StatusDetails::default()
            }),
            Error::NotFound { resource, name } => {
                let (kind, group) = resource.split_once('.').unwrap_or((resource.as_str(), ""));
                Some(StatusDetails {
                    name: Some(name.clone()),
                    group: (!group.is_empty()).then(|| group.to_owned()),
                    kind: Some(kind.to_owned()),
                    ..StatusDetails::default()
                })
            }
            Error::Conflict { resource, name, .. } => Some(StatusDetails {
                name: Some(name.clone()),
                kind: Some(resource.clone()),
                ..StatusDetails::default()
            }),
            Error::BadRequest(_) | Error::Key(_) => None,
        };
        Status {
            code: Some(i32::from(self.code())),
            details,
            message: Some(match self {
                Error::Key(_) => format!("Internal error occurred: {self}"),
                _ => self.to_string(),
            }),
            reason: Some(self.reason().to_owned()),
            status: Some("Failure".to_owned()),
            ..Status::default()
        }
    }
}
