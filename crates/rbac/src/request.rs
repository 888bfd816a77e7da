//! What an authorization request is made of: the user, the attributes of the request, and the
//! decision. The shapes follow `SubjectAccessReviewSpec`, where an empty string means "not set".

use std::collections::BTreeMap;

use idbind_model::{ClientId, RBAC_API_GROUP, RBAC_VERB};
use k8s_openapi::api::authorization::v1 as authorizationv1;

/// Group of every authenticated user.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// Group of every service account.
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// Prefix of service-account user names: `system:serviceaccount:<namespace>:<name>`.
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";

/// The user name Kubernetes gives a service account: `system:serviceaccount:<namespace>:<name>`.
pub fn service_account_user_name(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}")
}

/// The group holding every service account of a namespace: `system:serviceaccounts:<namespace>`.
pub fn service_accounts_group(namespace: &str) -> String {
    format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}")
}

/// An authenticated user, as a TokenReview returns it and a SubjectAccessReview carries it.
///
/// RBAC looks only at `name` and `groups`; groups are taken exactly as given (use
/// [`UserInfo::service_account`] for the groups Kubernetes gives a service account).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// The user name, e.g. `jane` or `system:serviceaccount:team-a:api`.
    pub name: String,
    /// The user's uid, if known (not used by RBAC).
    pub uid: String,
    /// The groups the user belongs to.
    pub groups: Vec<String>,
    /// Extra attributes from the authenticator (not used by RBAC).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user with a name and no groups.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// The same user with these groups.
    #[must_use]
    pub fn with_groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// A service account as the API server authenticates it: user
    /// `system:serviceaccount:<namespace>:<name>` in the groups `system:serviceaccounts`,
    /// `system:serviceaccounts:<namespace>` and `system:authenticated`.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self::new(service_account_user_name(namespace, name)).with_groups([
            SERVICE_ACCOUNTS_GROUP.to_owned(),
            service_accounts_group(namespace),
            AUTHENTICATED_GROUP.to_owned(),
        ])
    }

    /// The user of a SubjectAccessReview spec.
    pub fn from_review(spec: &authorizationv1::SubjectAccessReviewSpec) -> Self {
        Self {
            name: spec.user.clone().unwrap_or_default(),
            uid: spec.uid.clone().unwrap_or_default(),
            groups: spec.groups.clone().unwrap_or_default(),
            extra: spec.extra.clone().unwrap_or_default(),
        }
    }
}

/// The attributes of a request on a resource. Empty strings mean "not set": an empty `namespace`
/// is a cluster-wide request, an empty `name` a request without a name (`list`, `create`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    /// The verb: `get`, `list`, `create`, ..., or a custom verb like `use-managed-identity`.
    pub verb: String,
    /// The API group; empty for the core group.
    pub api_group: String,
    /// The resource, e.g. `pods`.
    pub resource: String,
    /// The subresource, e.g. `log` for `pods/log`.
    pub subresource: String,
    /// The object's name.
    pub name: String,
    /// The namespace.
    pub namespace: String,
}

impl ResourceAttributes {
    /// A cluster-wide request without name or subresource.
    pub fn new(verb: impl Into<String>, api_group: impl Into<String>, resource: impl Into<String>) -> Self {
        Self {
            verb: verb.into(),
            api_group: api_group.into(),
            resource: resource.into(),
            ..Self::default()
        }
    }

    /// The check idbind's token proxy makes before exchanging a token for `client_id`: verb
    /// `use-managed-identity` on resource `<client_id>` in group `cid.wi.aks.azure.com`, cluster-wide.
    pub fn use_managed_identity(client_id: &ClientId) -> Self {
        Self::new(RBAC_VERB, RBAC_API_GROUP, client_id.to_string())
    }

    /// The same request in a namespace.
    #[must_use]
    pub fn in_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The same request on a named object.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The same request on a subresource.
    #[must_use]
    pub fn with_subresource(mut self, subresource: impl Into<String>) -> Self {
        self.subresource = subresource.into();
        self
    }
}

impl From<&authorizationv1::ResourceAttributes> for ResourceAttributes {
    fn from(attributes: &authorizationv1::ResourceAttributes) -> Self {
        let text = |field: &Option<String>| field.clone().unwrap_or_default();
        Self {
            verb: text(&attributes.verb),
            api_group: text(&attributes.group),
            resource: text(&attributes.resource),
            subresource: text(&attributes.subresource),
            name: text(&attributes.name),
            namespace: text(&attributes.namespace),
        }
    }
}

/// The attributes of a request on a non-resource URL such as `/healthz` or `/apis`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NonResourceAttributes {
    /// The URL path.
    pub path: String,
    /// The HTTP verb in lower case (`get`, `post`, ...).
    pub verb: String,
}

impl NonResourceAttributes {
    /// A request for `verb` on `path`.
    pub fn new(verb: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            verb: verb.into(),
        }
    }
}

impl From<&authorizationv1::NonResourceAttributes> for NonResourceAttributes {
    fn from(attributes: &authorizationv1::NonResourceAttributes) -> Self {
        Self {
            path: attributes.path.clone().unwrap_or_default(),
            verb: attributes.verb.clone().unwrap_or_default(),
        }
    }
}

/// The outcome of an authorization check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether some binding grants the request.
    pub allowed: bool,
    /// Why, in the Kubernetes RBAC authorizer's words: `RBAC: allowed by ClusterRoleBinding "x" of
    /// ClusterRole "y" to User "z"` when allowed. When denied: empty, as Kubernetes leaves it, or
    /// the problems met on the way, `RBAC: [...]` (bindings of this user whose role is missing).
    pub reason: String,
}

impl Decision {
    pub(crate) fn allow(reason: String) -> Self {
        Self {
            allowed: true,
            reason,
        }
    }

    pub(crate) fn deny(problems: &[String]) -> Self {
        let reason = match problems {
            [] => String::new(),
            [one] => format!("RBAC: {one}"),
            many => format!("RBAC: [{}]", many.join(", ")),
        };
        Self {
            allowed: false,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_user_has_the_implicit_groups() {
        let user = UserInfo::service_account("team-a", "api");
        assert_eq!(user.name, "system:serviceaccount:team-a:api");
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:team-a",
                "system:authenticated"
            ]
        );
    }

    #[test]
    fn review_attributes_convert_with_unset_fields_empty() {
        let spec = authorizationv1::SubjectAccessReviewSpec {
            user: Some("jane".into()),
            groups: Some(vec!["dev".into()]),
            resource_attributes: Some(authorizationv1::ResourceAttributes {
                verb: Some("get".into()),
                resource: Some("pods".into()),
                namespace: Some("default".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let user = UserInfo::from_review(&spec);
        assert_eq!(user, UserInfo::new("jane").with_groups(["dev"]));
        let attributes = spec.resource_attributes.as_ref().map(ResourceAttributes::from);
        assert_eq!(
            attributes,
            Some(ResourceAttributes::new("get", "", "pods").in_namespace("default"))
        );
    }

    #[test]
    fn denial_reasons_are_formatted_like_kubernetes() {
        assert_eq!(Decision::deny(&[]).reason, "");
        assert_eq!(Decision::deny(&["a".into()]).reason, "RBAC: a");
        assert_eq!(Decision::deny(&["a".into(), "b".into()]).reason, "RBAC: [a, b]");
    }
}
