//! Authorization as kube-apiserver's authorizer chain decides it: members of `system:masters`
//! are always allowed (the privileged-group authorizer runs first), everything else is decided
//! by RBAC through [`idbind_rbac::Authorizer`]. Serves SubjectAccessReview,
//! LocalSubjectAccessReview and SelfSubjectAccessReview, and authorizes every API request.

use idbind_rbac::{Authorizer, Decision, NonResourceAttributes, RbacSnapshot, ResourceAttributes};
use k8s_openapi::api::authorization::v1::{
    self as authz, LocalSubjectAccessReview, SelfSubjectAccessReview, SubjectAccessReview,
    SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};

use super::error::{Error, FieldError, Result};
use super::user::{SYSTEM_MASTERS, UserInfo};

const GROUP: &str = "authorization.k8s.io";

/// What a request asks to do: on a resource, or on a non-resource URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestAttributes {
    /// A request on a resource (`get` `pods` in `default`, ...).
    Resource(ResourceAttributes),
    /// A request on a non-resource URL (`get` `/healthz`, ...).
    NonResource(NonResourceAttributes),
}

impl From<ResourceAttributes> for RequestAttributes {
    fn from(attributes: ResourceAttributes) -> Self {
        Self::Resource(attributes)
    }
}

impl From<NonResourceAttributes> for RequestAttributes {
    fn from(attributes: NonResourceAttributes) -> Self {
        Self::NonResource(attributes)
    }
}

/// The authorizer chain over one snapshot of the RBAC objects. Immutable: build a new one when
/// Roles, ClusterRoles or their bindings change.
///
/// ```
/// use idbind_rbac::{RbacSnapshot, ResourceAttributes};
/// use idbind_testkit::auth::{AccessReviewer, UserInfo};
///
/// let reviewer = AccessReviewer::new(&RbacSnapshot::default());
/// let delete_nodes = ResourceAttributes::new("delete", "", "nodes").into();
/// assert!(reviewer.authorize(&UserInfo::new("admin", ["system:masters"]), &delete_nodes).allowed);
/// assert!(!reviewer.authorize(&UserInfo::new("jane", ["system:authenticated"]), &delete_nodes).allowed);
/// ```
#[derive(Clone, Debug)]
pub struct AccessReviewer {
    rbac: Authorizer,
}

impl AccessReviewer {
    /// The chain over `snapshot` (all ClusterRoles, ClusterRoleBindings, Roles, RoleBindings).
    pub fn new(snapshot: &RbacSnapshot) -> Self {
        let rbac = snapshot.authorizer();
        for problem in rbac.problems() {
            tracing::debug!(%problem, "RBAC object ignored");
        }
        Self { rbac }
    }

    /// The RBAC authorizer behind the chain.
    pub fn rbac(&self) -> &Authorizer {
        &self.rbac
    }

    /// Decides one request of `user`. `system:masters` is allowed with an empty reason; otherwise
    /// RBAC decides (a denial is "no opinion": `allowed: false`, never `denied`).
    pub fn authorize(&self, user: &UserInfo, request: &RequestAttributes) -> Decision {
        if user.in_group(SYSTEM_MASTERS) {
            return Decision {
                allowed: true,
                reason: String::new(),
            };
        }
        let rbac_user = to_rbac_user(user);
        match request {
            RequestAttributes::Resource(attributes) => self.rbac.can(&rbac_user, attributes),
            RequestAttributes::NonResource(attributes) => self.rbac.can_non_resource(&rbac_user, attributes),
        }
    }

    /// Serves `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`.
    pub fn subject_access_review(&self, review: &SubjectAccessReview) -> Result<SubjectAccessReview> {
        let spec = &review.spec;
        let mut causes = attribute_causes(
            spec.resource_attributes.as_ref(),
            spec.non_resource_attributes.as_ref(),
        );
        if spec.user.as_deref().unwrap_or_default().is_empty()
            && spec.groups.as_ref().is_none_or(Vec::is_empty)
        {
            causes.push(FieldError {
                field: "spec.user".into(),
                value: "\"\"".into(),
                detail: "at least one of user or group must be specified".into(),
            });
        }
        invalid_if_any("SubjectAccessReview", review.metadata.name.as_deref(), causes)?;
        let mut out = review.clone();
        out.status = Some(self.review_status(&spec_user(spec), spec));
        Ok(out)
    }

    /// Serves `POST /apis/authorization.k8s.io/v1/namespaces/{namespace}/localsubjectaccessreviews`.
    pub fn local_subject_access_review(
        &self,
        namespace: &str,
        review: &LocalSubjectAccessReview,
    ) -> Result<LocalSubjectAccessReview> {
        let spec = &review.spec;
        let mut causes = Vec::new();
        if spec.non_resource_attributes.is_some() {
            causes.push(FieldError {
                field: "spec.nonResourceAttributes".into(),
                value: "{...}".into(),
                detail: "disallowed on this kind of request".into(),
            });
        }
        if let Some(attributes) = &spec.resource_attributes
            && attributes.namespace.as_deref().unwrap_or_default() != namespace
        {
            causes.push(FieldError {
                field: "spec.resourceAttributes.namespace".into(),
                value: format!("{:?}", attributes.namespace.as_deref().unwrap_or_default()),
                detail: "must match metadata.namespace".into(),
            });
        }
        causes.extend(attribute_causes(
            spec.resource_attributes.as_ref(),
            spec.non_resource_attributes.as_ref(),
        ));
        if spec.user.as_deref().unwrap_or_default().is_empty()
            && spec.groups.as_ref().is_none_or(Vec::is_empty)
        {
            causes.push(FieldError {
                field: "spec.user".into(),
                value: "\"\"".into(),
                detail: "at least one of user or group must be specified".into(),
            });
        }
        invalid_if_any(
            "LocalSubjectAccessReview",
            review.metadata.name.as_deref(),
            causes,
        )?;
        let mut out = review.clone();
        out.status = Some(self.review_status(&spec_user(spec), spec));
        Ok(out)
    }

    /// Serves `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews` for the requesting
    /// `user` (what `kubectl auth can-i` sends).
    pub fn self_subject_access_review(
        &self,
        user: &UserInfo,
        review: &SelfSubjectAccessReview,
    ) -> Result<SelfSubjectAccessReview> {
        let spec = &review.spec;
        let causes = attribute_causes(
            spec.resource_attributes.as_ref(),
            spec.non_resource_attributes.as_ref(),
        );
        invalid_if_any("SelfSubjectAccessReview", review.metadata.name.as_deref(), causes)?;
        let as_subject = SubjectAccessReviewSpec {
            resource_attributes: spec.resource_attributes.clone(),
            non_resource_attributes: spec.non_resource_attributes.clone(),
            ..SubjectAccessReviewSpec::default()
        };
        let mut out = review.clone();
        out.status = Some(self.review_status(user, &as_subject));
        Ok(out)
    }

    fn review_status(&self, user: &UserInfo, spec: &SubjectAccessReviewSpec) -> SubjectAccessReviewStatus {
        let request = match (&spec.resource_attributes, &spec.non_resource_attributes) {
            (Some(resource), _) => RequestAttributes::Resource(resource.into()),
            (None, Some(non_resource)) => RequestAttributes::NonResource(non_resource.into()),
            (None, None) => RequestAttributes::NonResource(NonResourceAttributes::default()),
        };
        let decision = self.authorize(user, &request);
        SubjectAccessReviewStatus {
            allowed: decision.allowed,
            denied: None,
            evaluation_error: None,
            reason: (!decision.reason.is_empty()).then_some(decision.reason),
        }
    }
}

fn spec_user(spec: &SubjectAccessReviewSpec) -> UserInfo {
    UserInfo {
        username: spec.user.clone().unwrap_or_default(),
        uid: spec.uid.clone(),
        groups: spec.groups.clone().unwrap_or_default(),
        extra: spec.extra.clone().unwrap_or_default(),
    }
}

fn to_rbac_user(user: &UserInfo) -> idbind_rbac::UserInfo {
    idbind_rbac::UserInfo {
        name: user.username.clone(),
        uid: user.uid.clone().unwrap_or_default(),
        groups: user.groups.clone(),
        extra: user.extra.clone(),
    }
}

fn attribute_causes(
    resource: Option<&authz::ResourceAttributes>,
    non_resource: Option<&authz::NonResourceAttributes>,
) -> Vec<FieldError> {
    match (resource, non_resource) {
        (Some(_), Some(n)) => vec![FieldError {
            field: "spec.nonResourceAttributes".into(),
            value: format!("{n:?}"),
            detail: "cannot be specified in combination with resourceAttributes".into(),
        }],
        (None, None) => vec![FieldError {
            field: "spec.resourceAttributes".into(),
            value: "null".into(),
            detail: "exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
        }],
        _ => Vec::new(),
    }
}

fn invalid_if_any(kind: &'static str, name: Option<&str>, causes: Vec<FieldError>) -> Result<()> {
    if causes.is_empty() {
        return Ok(());
    }
    Err(Error::Invalid {
        kind,
        group: GROUP,
        name: name.unwrap_or_default().to_owned(),
        causes,
    })
}
