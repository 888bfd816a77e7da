//! Authentication and authorization of requests, wired to [`crate::auth`]: bearer tokens (the
//! admin token, static user tokens, service-account tokens) and the RBAC authorizer over the
//! stored RBAC objects (rebuilt when they change).

use std::collections::BTreeMap;
use std::sync::Arc;

use idbind_rbac::RbacSnapshot;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;

use crate::auth::{
    AccessReviewer, BearerAuthenticator, ObjectInfo, ObjectKind, ObjectLookup, RequestAttributes,
    ResourceAttributes, ServiceAccountIssuer, UserInfo,
};
use crate::cluster::Cluster;
use crate::registry::GroupResource;
use crate::status::{ApiError, Gr};

/// Object lookups for token validation, over the cluster's storage.
pub struct ClusterObjects<'a>(pub &'a Cluster);

impl ObjectLookup for ClusterObjects<'_> {
    fn lookup(&self, kind: ObjectKind, namespace: &str, name: &str) -> Option<ObjectInfo> {
        let gr = GroupResource::new("", kind.resource());
        let ns = if kind == ObjectKind::Node { "" } else { namespace };
        self.0
            .stored_one(&gr, ns, name)
            .as_ref()
            .and_then(ObjectInfo::from_object)
    }
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Authentication and authorization state of a server.
pub struct Access {
    authenticator: RwLock<BearerAuthenticator>,
    issuer: ServiceAccountIssuer,
    reviewer: Mutex<Option<(u64, Arc<AccessReviewer>)>>,
}

fn parse_all<T: serde::de::DeserializeOwned>(objects: Vec<Value>) -> Vec<T> {
    objects
        .into_iter()
        .filter_map(|o| serde_json::from_value(o).ok())
        .collect()
}

impl Access {
    /// Accepts `admin_token` and service-account tokens of `issuer`; anonymous requests are
    /// rejected with 401.
    pub fn new(issuer: ServiceAccountIssuer, admin_token: &str) -> Self {
        let authenticator = BearerAuthenticator::new(issuer.clone(), admin_token).with_anonymous(false);
        Self {
            authenticator: RwLock::new(authenticator),
            issuer,
            reviewer: Mutex::new(None),
        }
    }

    /// The service-account issuer.
    pub fn issuer(&self) -> &ServiceAccountIssuer {
        &self.issuer
    }

    /// Accepts `token` as `user` from now on.
    pub fn add_static_token(&self, token: &str, user: UserInfo) {
        let mut auth = self.authenticator.write();
        *auth = auth.clone().with_static_token(token, user);
    }

    /// Who sent a request, from its `Authorization` header.
    pub fn authenticate(&self, cluster: &Cluster, authorization: Option<&str>) -> Result<UserInfo, ApiError> {
        let auth = self.authenticator.read().clone();
        auth.authenticate(authorization, &ClusterObjects(cluster))
            .map_err(|e| {
                tracing::debug!(error = %e, "request not authenticated");
                ApiError::unauthorized()
            })
    }

    /// Applies `Impersonate-*` headers: the requester must be allowed to `impersonate` the user
    /// (or service account), each group, the uid and each extra, as kube-apiserver checks.
    pub fn impersonate(
        &self,
        cluster: &Cluster,
        requester: UserInfo,
        headers: &http::HeaderMap,
    ) -> Result<UserInfo, ApiError> {
        let value = |v: &http::HeaderValue| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::bad_request("impersonation headers must be ASCII"))
        };
        let user = headers.get("impersonate-user").map(value).transpose()?;
        let groups: Vec<String> = headers
            .get_all("impersonate-group")
            .iter()
            .map(value)
            .collect::<Result<_, _>>()?;
        let uid = headers.get("impersonate-uid").map(value).transpose()?;
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, v) in headers {
            if let Some(key) = name.as_str().strip_prefix("impersonate-extra-") {
                extra.entry(key.to_string()).or_default().push(value(v)?);
            }
        }
        let Some(username) = user else {
            if !groups.is_empty() || uid.is_some() || !extra.is_empty() {
                return Err(ApiError::internal(
                    "requested [impersonation of groups, uid or extra] without impersonating a user",
                ));
            }
            return Ok(requester);
        };
        let mut checks = Vec::new();
        let service_account = username
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
            .map(|(ns, name)| (ns.to_string(), name.to_string()));
        match &service_account {
            Some((ns, name)) => checks.push(
                ResourceAttributes::new("impersonate", "", "serviceaccounts")
                    .in_namespace(ns.clone())
                    .named(name.clone()),
            ),
            None => checks.push(ResourceAttributes::new("impersonate", "", "users").named(username.clone())),
        }
        for group in &groups {
            checks.push(ResourceAttributes::new("impersonate", "", "groups").named(group.clone()));
        }
        if let Some(uid) = &uid {
            checks.push(
                ResourceAttributes::new("impersonate", "authentication.k8s.io", "uids").named(uid.clone()),
            );
        }
        for (key, values) in &extra {
            for v in values {
                checks.push(
                    ResourceAttributes::new("impersonate", "authentication.k8s.io", "userextras")
                        .with_subresource(key.clone())
                        .named(v.clone()),
                );
            }
        }
        for check in checks {
            self.authorize(cluster, &requester, &RequestAttributes::Resource(check))?;
        }
        let mut groups = groups;
        if let Some((ns, _)) = &service_account
            && groups.is_empty()
        {
            groups = vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{ns}"),
            ];
        }
        let mut user = UserInfo::new(username, groups);
        if user.username != crate::auth::ANONYMOUS_USER {
            user = user.with_authenticated_group();
        }
        user.uid = uid;
        user.extra = extra;
        Ok(user)
    }

    /// The authorizer over the current RBAC objects.
    pub fn reviewer(&self, cluster: &Cluster) -> Arc<AccessReviewer> {
        let version = ["clusterroles", "clusterrolebindings", "roles", "rolebindings"]
            .iter()
            .map(|r| cluster.bucket_version(&GroupResource::new(RBAC_GROUP, r)))
            .max()
            .unwrap_or(0);
        let mut cached = self.reviewer.lock();
        if let Some((v, reviewer)) = cached.as_ref()
            && *v == version
        {
            return reviewer.clone();
        }
        let snapshot = RbacSnapshot {
            cluster_roles: parse_all(cluster.stored(&GroupResource::new(RBAC_GROUP, "clusterroles"))),
            cluster_role_bindings: parse_all(
                cluster.stored(&GroupResource::new(RBAC_GROUP, "clusterrolebindings")),
            ),
            roles: parse_all(cluster.stored(&GroupResource::new(RBAC_GROUP, "roles"))),
            role_bindings: parse_all(cluster.stored(&GroupResource::new(RBAC_GROUP, "rolebindings"))),
        };
        let reviewer = Arc::new(AccessReviewer::new(&snapshot));
        *cached = Some((version, reviewer.clone()));
        reviewer
    }

    /// Authorizes a request; a denial is a 403 worded like kube-apiserver's.
    pub fn authorize(
        &self,
        cluster: &Cluster,
        user: &UserInfo,
        request: &RequestAttributes,
    ) -> Result<(), ApiError> {
        let decision = self.reviewer(cluster).authorize(user, request);
        if decision.allowed {
            return Ok(());
        }
        let suffix = if decision.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", decision.reason)
        };
        Err(match request {
            RequestAttributes::Resource(a) => {
                let resource = if a.subresource.is_empty() {
                    a.resource.clone()
                } else {
                    format!("{}/{}", a.resource, a.subresource)
                };
                let scope = if a.namespace.is_empty() {
                    "at the cluster scope".to_string()
                } else {
                    format!("in the namespace {:?}", a.namespace)
                };
                ApiError::forbidden(
                    Gr {
                        group: &a.api_group,
                        resource: &resource,
                    },
                    &a.name,
                    format!(
                        "User {:?} cannot {} resource {resource:?} in API group {:?} {scope}{suffix}",
                        user.username, a.verb, a.api_group
                    ),
                )
            }
            RequestAttributes::NonResource(a) => ApiError::custom(
                403,
                "Forbidden",
                format!(
                    "forbidden: User {:?} cannot {} path {:?}{suffix}",
                    user.username, a.verb, a.path
                ),
            ),
        })
    }
}
