//! Authorization by SubjectAccessReview: may this user use this managed identity?

use std::sync::Arc;
use std::time::Duration;

use idbind_model::{ClientId, RBAC_API_GROUP, RBAC_VERB};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};

use crate::authn::{Identity, lookup_label};
use crate::clock::Clock;
use crate::flight_cache::FlightCache;
use crate::kube_error::classify;
use crate::{ExchangeError, Metrics};

/// Settings of the [`Authorizer`].
#[derive(Clone, Debug)]
pub struct AuthzConfig {
    /// How long an allow is cached (default 5 min, as kube-apiserver's webhook authorizer).
    pub allow_ttl: Duration,
    /// How long a deny is cached (default 30 s).
    pub deny_ttl: Duration,
    /// Most decisions cached (default 10,000).
    pub capacity: usize,
}

impl Default for AuthzConfig {
    fn default() -> Self {
        Self {
            allow_ttl: Duration::from_secs(300),
            deny_ttl: Duration::from_secs(30),
            capacity: 10_000,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    username: String,
    groups: Vec<String>,
    client_id: ClientId,
}

/// A decision: `Ok(())` allowed, `Err` denied (or the review failed).
type Decision = Result<(), ExchangeError>;

/// Asks the API server whether a user may `use-managed-identity` on `cid.wi.aks.azure.com/<client
/// id>` (cluster-scoped), exactly as AKS does, so RBAC written for AKS works unchanged. Decisions
/// are cached per (user, groups, client id).
pub struct Authorizer {
    api: Api<SubjectAccessReview>,
    config: AuthzConfig,
    cache: Arc<FlightCache<Key, Decision>>,
    metrics: Metrics,
}

impl Authorizer {
    /// An authorizer calling the API server behind `client`.
    pub fn new(client: kube::Client, config: AuthzConfig, clock: Arc<dyn Clock>, metrics: Metrics) -> Self {
        let cache = Arc::new(FlightCache::new(config.capacity, clock, || {
            Err(ExchangeError::unavailable("shutting down", None))
        }));
        Self {
            api: Api::all(client),
            config,
            cache,
            metrics,
        }
    }

    /// Whether `identity` may use the managed identity `client_id`.
    pub async fn authorize(&self, identity: &Identity, client_id: &ClientId) -> Result<(), ExchangeError> {
        let mut groups = identity.groups.clone();
        groups.sort();
        groups.dedup();
        let key = Key {
            username: identity.username.clone(),
            groups,
            client_id: *client_id,
        };
        let (allow, deny) = (self.config.allow_ttl, self.config.deny_ttl);
        let (decision, lookup) = self
            .cache
            .get_or_fetch(
                key,
                review(self.api.clone(), identity.clone(), *client_id),
                move |d, now| match d {
                    Ok(()) => Some(now + allow),
                    Err(e) if e.rejection() == crate::Rejection::Forbidden => Some(now + deny),
                    Err(_) => None,
                },
            )
            .await;
        self.metrics.cache("authz", lookup_label(lookup));
        decision
    }

    /// Forgets every decision about `client_id`.
    pub fn forget_client(&self, client_id: &ClientId) {
        self.cache.remove_where(|k| k.client_id == *client_id);
    }
}

async fn review(api: Api<SubjectAccessReview>, identity: Identity, client_id: ClientId) -> Decision {
    let resource = client_id.to_string();
    let request = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(identity.username.clone()),
            groups: Some(identity.groups.clone()),
            uid: identity.uid.clone(),
            extra: (!identity.extra.is_empty()).then(|| identity.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(RBAC_API_GROUP.to_owned()),
                resource: Some(resource.clone()),
                verb: Some(RBAC_VERB.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let response = api
        .create(&PostParams::default(), &request)
        .await
        .map_err(|e| classify(&e, "SubjectAccessReview"))?;
    let status = response.status.unwrap_or_default();
    if status.allowed {
        tracing::debug!(user = %identity.username, client_id = %client_id, "use of the identity allowed");
        return Ok(());
    }
    let reason = status.reason.filter(|r| !r.is_empty());
    if let Some(err) = status.evaluation_error.filter(|e| !e.is_empty()) {
        tracing::warn!(user = %identity.username, client_id = %client_id, error = %err, "RBAC evaluation error");
    }
    tracing::info!(user = %identity.username, client_id = %client_id, reason = ?reason, "use of the identity denied");
    Err(ExchangeError::forbidden(format!(
        "'{}' may not use managed identity {client_id}: Kubernetes RBAC does not grant verb '{RBAC_VERB}' \
         on resource '{resource}' of API group '{RBAC_API_GROUP}' (see ClusterRole '{}'){}",
        identity.username,
        idbind_model::rbac_object_name(&client_id),
        reason.map(|r| format!("; {r}")).unwrap_or_default(),
    )))
}
