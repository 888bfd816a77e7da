//! The error type of `idbind-rbac`.

/// Everything that can be wrong with the RBAC data idbind evaluates.
///
/// Evaluation itself never fails: like the Kubernetes authorizer, an [`Authorizer`](crate::Authorizer)
/// skips what it cannot use and reports it through [`Authorizer::problems`](crate::Authorizer::problems)
/// and in the reason of a denial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A label selector requirement is not valid Kubernetes label selector syntax.
    #[error("invalid label selector requirement for key {key:?}: {reason}")]
    InvalidLabelSelector {
        /// The label key of the requirement.
        key: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// A ClusterRole's `aggregationRule` has an invalid selector. As in kube-controller-manager,
    /// the ClusterRole is not aggregated and keeps the rules it has.
    #[error("ClusterRole {cluster_role:?}: aggregationRule ignored, its own rules are kept: {source}")]
    InvalidAggregationRule {
        /// Name of the aggregated ClusterRole.
        cluster_role: String,
        /// The selector error.
        source: Box<Error>,
    },
    /// A binding's `roleRef` names a role that does not exist; the binding grants nothing.
    #[error("{binding}: {kind} {name:?} not found")]
    RoleNotFound {
        /// The binding, described as Kubernetes does (`ClusterRoleBinding "x"`, `RoleBinding "x/ns"`).
        binding: String,
        /// `ClusterRole` or `Role`.
        kind: String,
        /// The missing role's name.
        name: String,
    },
    /// A binding's `roleRef.kind` is neither `ClusterRole` nor (in a RoleBinding) `Role`.
    #[error("{binding}: unsupported role reference kind {kind:?}, expected {expected}")]
    UnsupportedRoleRef {
        /// The binding, described as Kubernetes does.
        binding: String,
        /// The kind given.
        kind: String,
        /// The kinds this binding may reference.
        expected: &'static str,
    },
    /// A SubjectAccessReview spec did not set exactly one of `resourceAttributes` and
    /// `nonResourceAttributes`.
    #[error(
        "SubjectAccessReview spec: exactly one of resourceAttributes and nonResourceAttributes must be set"
    )]
    InvalidReview,
}

/// The result type of `idbind-rbac`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
