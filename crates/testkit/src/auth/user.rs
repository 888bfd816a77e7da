//! Authenticated users, as the API server's authenticators produce them, and the well-known user
//! and group names.

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1 as authn;

/// Group every authenticated user belongs to.
pub const SYSTEM_AUTHENTICATED: &str = "system:authenticated";
/// Group of requests without credentials.
pub const SYSTEM_UNAUTHENTICATED: &str = "system:unauthenticated";
/// Group the API server always allows (the privileged-group authorizer runs before RBAC).
pub const SYSTEM_MASTERS: &str = "system:masters";
/// User name of requests without credentials.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// Group of all service accounts.
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// Prefix of service-account user names (`system:serviceaccount:<namespace>:<name>`).
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";

/// `user.extra` key: name of the pod a service-account token is bound to.
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
/// `user.extra` key: UID of the pod a service-account token is bound to.
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
/// `user.extra` key: name of the node of the bound pod (or the bound node).
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
/// `user.extra` key: UID of the node of the bound pod (or the bound node).
pub const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";
/// `user.extra` key: the credential id, `JTI=<jti>` for service-account tokens.
pub const EXTRA_CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

/// An authenticated (or anonymous) user: what authenticators produce and authorizers consume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// User name, e.g. `admin` or `system:serviceaccount:ns:sa`.
    pub username: String,
    /// Stable user id (a service account's UID), if any.
    pub uid: Option<String>,
    /// Groups in the order the authenticator chain adds them.
    pub groups: Vec<String>,
    /// Additional attributes (e.g. bound pod name and UID).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user with a name and groups, no uid and no extra.
    pub fn new(username: impl Into<String>, groups: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            username: username.into(),
            uid: None,
            groups: groups.into_iter().map(Into::into).collect(),
            extra: BTreeMap::new(),
        }
    }

    /// The anonymous user (`system:anonymous` in `system:unauthenticated`).
    pub fn anonymous() -> Self {
        Self::new(ANONYMOUS_USER, [SYSTEM_UNAUTHENTICATED])
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Adds `system:authenticated` unless present, as the API server's group adder does for every
    /// authenticated user.
    pub fn with_authenticated_group(mut self) -> Self {
        if !self.in_group(SYSTEM_AUTHENTICATED) {
            self.groups.push(SYSTEM_AUTHENTICATED.to_owned());
        }
        self
    }

    /// The namespace and name if this is a service-account user.
    pub fn service_account(&self) -> Option<(&str, &str)> {
        self.username
            .strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)?
            .split_once(':')
    }
}

impl From<UserInfo> for authn::UserInfo {
    fn from(user: UserInfo) -> Self {
        authn::UserInfo {
            username: Some(user.username),
            uid: user.uid.filter(|u| !u.is_empty()),
            groups: (!user.groups.is_empty()).then_some(user.groups),
            extra: (!user.extra.is_empty()).then_some(user.extra),
        }
    }
}

impl From<&authn::UserInfo> for UserInfo {
    fn from(user: &authn::UserInfo) -> Self {
        Self {
            username: user.username.clone().unwrap_or_default(),
            uid: user.uid.clone().filter(|u| !u.is_empty()),
            groups: user.groups.clone().unwrap_or_default(),
            extra: user.extra.clone().unwrap_or_default(),
        }
    }
}

/// The user name of a service account: `system:serviceaccount:<namespace>:<name>`.
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}")
}
