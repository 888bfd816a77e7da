//! The subjects of bindings (User, Group, ServiceAccount) and whether a user is one of them.

use std::fmt;

use k8s_openapi::api::rbac::v1 as rbacv1;

use crate::{UserInfo, request::service_account_user_name};

/// A subject a binding grants its role to, with a service account's namespace resolved.
///
/// Ordered by kind (Group, ServiceAccount, User), then namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    /// A group of users, e.g. `system:serviceaccounts:team-a`.
    Group(String),
    /// A service account.
    ServiceAccount {
        /// Namespace of the service account.
        namespace: String,
        /// Name of the service account.
        name: String,
    },
    /// A user by name.
    User(String),
}

impl Subject {
    /// Reads a binding's subject. A ServiceAccount without namespace gets `binding_namespace` (the
    /// RoleBinding's namespace, `None` for a ClusterRoleBinding, where it matches nobody). Unknown
    /// kinds give `None`, as Kubernetes ignores them.
    pub fn from_binding(subject: &rbacv1::Subject, binding_namespace: Option<&str>) -> Option<Self> {
        match subject.kind.as_str() {
            "User" => Some(Self::User(subject.name.clone())),
            "Group" => Some(Self::Group(subject.name.clone())),
            "ServiceAccount" => {
                let namespace = subject
                    .namespace
                    .as_deref()
                    .filter(|ns| !ns.is_empty())
                    .or(binding_namespace)?;
                (!namespace.is_empty()).then(|| Self::ServiceAccount {
                    namespace: namespace.to_owned(),
                    name: subject.name.clone(),
                })
            }
            _ => None,
        }
    }

    /// The kind, as written in a binding.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Group(_) => "Group",
            Self::ServiceAccount { .. } => "ServiceAccount",
            Self::User(_) => "User",
        }
    }

    /// Whether `user` is this subject: same user name, member of the group, or the service
    /// account's user `system:serviceaccount:<namespace>:<name>`.
    pub fn matches(&self, user: &UserInfo) -> bool {
        match self {
            Self::User(name) => user.name == *name,
            Self::Group(group) => user.groups.iter().any(|g| g == group),
            Self::ServiceAccount { namespace, name } => {
                user.name == service_account_user_name(namespace, name)
            }
        }
    }

    /// How the Kubernetes authorizer names the subject in a reason: `User "jane"`, and for a
    /// service account `ServiceAccount "name/namespace"` (in that order).
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Group(name) | Self::User(name) => format!("{} {name:?}", self.kind()),
            Self::ServiceAccount { namespace, name } => format!("ServiceAccount \"{name}/{namespace}\""),
        }
    }
}

/// `User jane`, `Group system:authenticated`, `ServiceAccount team-a/api`.
impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Group(name) | Self::User(name) => write!(f, "{} {name}", self.kind()),
            Self::ServiceAccount { namespace, name } => write!(f, "ServiceAccount {namespace}/{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(kind: &str, name: &str, namespace: Option<&str>) -> rbacv1::Subject {
        rbacv1::Subject {
            kind: kind.to_owned(),
            name: name.to_owned(),
            namespace: namespace.map(str::to_owned),
            api_group: None,
        }
    }

    #[test]
    fn service_account_namespace_defaults_to_the_binding_namespace() {
        let sa = subject("ServiceAccount", "api", None);
        assert_eq!(
            Subject::from_binding(&sa, Some("team-a")),
            Some(Subject::ServiceAccount {
                namespace: "team-a".into(),
                name: "api".into()
            })
        );
        assert_eq!(Subject::from_binding(&sa, None), None);
        assert_eq!(
            Subject::from_binding(&subject("ServiceAccount", "api", Some("")), None),
            None
        );
        let explicit = subject("ServiceAccount", "api", Some("team-b"));
        assert_eq!(
            Subject::from_binding(&explicit, Some("team-a")),
            Some(Subject::ServiceAccount {
                namespace: "team-b".into(),
                name: "api".into()
            })
        );
        assert_eq!(Subject::from_binding(&subject("Robot", "x", None), None), None);
    }

    #[test]
    fn display_and_describe() {
        let sa = Subject::ServiceAccount {
            namespace: "team-a".into(),
            name: "api".into(),
        };
        assert_eq!(sa.to_string(), "ServiceAccount team-a/api");
        assert_eq!(sa.describe(), "ServiceAccount \"api/team-a\"");
        assert_eq!(Subject::User("jane".into()).describe(), "User \"jane\"");
        assert_eq!(Subject::Group("g".into()).to_string(), "Group g");
    }

    #[test]
    fn service_account_matches_its_user_name_only() {
        let sa = Subject::ServiceAccount {
            namespace: "team-a".into(),
            name: "api".into(),
        };
        assert!(sa.matches(&UserInfo::new("system:serviceaccount:team-a:api")));
        assert!(!sa.matches(&UserInfo::new("system:serviceaccount:team-a:api2")));
        assert!(!sa.matches(&UserInfo::new("system:serviceaccount:team-ab:api")));
        assert!(!sa.matches(&UserInfo::new("api").with_groups(["system:serviceaccounts:team-a"])));
    }
}
