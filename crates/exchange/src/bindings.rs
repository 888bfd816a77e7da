//! The binding index: which client ids this cluster serves, and for each the tenant, issuer and
//! subject its assertions carry. Fed by a reflector over IdentityBindings.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use futures::StreamExt as _;
use idbind_model::{ClientId, IdentityBinding, TenantId, condition};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use parking_lot::RwLock;
use tokio::sync::watch;

/// What a served client id's assertions carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingTarget {
    /// The identity's client id.
    pub client_id: ClientId,
    /// The identity's tenant: where the token is requested.
    pub tenant_id: TenantId,
    /// The identity's issuer (`status.oidcIssuerUrl`): the assertion's `iss`.
    pub issuer: String,
    /// The FIC subject (`status.federatedCredential.subject`): the assertion's `sub`.
    pub subject: String,
}

/// The index's answer for a client id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindingLookup {
    /// A Ready binding serves the client id.
    Served(Arc<BindingTarget>),
    /// Bindings exist for the client id but none is Ready (or a Ready one lacks status fields).
    NotReady {
        /// Names of the bindings.
        bindings: Vec<String>,
        /// Why, from the `Ready` condition.
        reason: String,
    },
    /// Ready bindings for the client id disagree on tenant, issuer or subject.
    Conflict {
        /// Names of the bindings.
        bindings: Vec<String>,
    },
    /// No binding has this client id.
    Unbound,
}

/// The binding index. [`BindingIndex::update`] replaces its contents; [`BindingIndex::watch`]
/// keeps it in sync with the API server.
pub struct BindingIndex {
    entries: RwLock<Arc<HashMap<ClientId, BindingLookup>>>,
    synced: watch::Sender<bool>,
}

impl Default for BindingIndex {
    fn default() -> Self {
        Self {
            entries: RwLock::new(Arc::new(HashMap::new())),
            synced: watch::Sender::new(false),
        }
    }
}

impl std::fmt::Debug for BindingIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindingIndex")
            .field("client_ids", &self.entries.read().len())
            .field("synced", &self.is_synced())
            .finish()
    }
}

impl BindingIndex {
    /// An empty index, not yet synced.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the index says about `client_id`.
    pub fn lookup(&self, client_id: &ClientId) -> BindingLookup {
        self.entries
            .read()
            .get(client_id)
            .cloned()
            .unwrap_or(BindingLookup::Unbound)
    }

    /// Whether the index has been filled from a complete list of bindings.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the index is synced.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|synced| *synced).await;
    }

    /// Replaces the index with what `bindings` say and marks it synced. Returns the client ids
    /// whose target changed or that are no longer served: their cached tokens must go.
    pub fn update<'a>(&self, bindings: impl IntoIterator<Item = &'a IdentityBinding>) -> Vec<ClientId> {
        let next = build(bindings);
        let mut entries = self.entries.write();
        let previous = std::mem::replace(&mut *entries, Arc::new(next));
        let mut gone = Vec::new();
        for (client_id, before) in previous.iter() {
            if let BindingLookup::Served(before) = before {
                match entries.get(client_id) {
                    Some(BindingLookup::Served(now)) if now == before => {}
                    _ => gone.push(*client_id),
                }
            }
        }
        drop(entries);
        self.synced.send_replace(true);
        gone
    }

    /// Follows IdentityBindings through `client` until the returned future is dropped, calling
    /// `on_gone` with the client ids that stop being served (or change target). Watch errors are
    /// logged and retried with backoff; meanwhile the last known bindings keep being served.
    pub async fn watch(self: Arc<Self>, client: kube::Client, on_gone: impl Fn(&[ClientId])) {
        let api = kube::Api::<IdentityBinding>::all(client);
        let (store, writer) = reflector::store();
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff());
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => {
                    self.refresh_from(&store, &on_gone);
                }
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Err(e) => tracing::warn!(error = %e, "watching IdentityBindings failed; retrying"),
            }
        }
    }

    fn refresh_from(&self, store: &Store<IdentityBinding>, on_gone: &impl Fn(&[ClientId])) {
        let state = store.state();
        let gone = self.update(state.iter().map(AsRef::as_ref));
        if !gone.is_empty() {
            tracing::info!(client_ids = ?gone.iter().map(ToString::to_string).collect::<Vec<_>>(), "client ids no longer served");
            on_gone(&gone);
        }
    }
}

fn build<'a>(bindings: impl IntoIterator<Item = &'a IdentityBinding>) -> HashMap<ClientId, BindingLookup> {
    let mut ready: HashMap<ClientId, Vec<(String, BindingTarget)>> = HashMap::new();
    let mut not_ready: HashMap<ClientId, Vec<(String, String)>> = HashMap::new();
    for b in bindings {
        let Some(client_id) = b.client_id() else { continue };
        let name = b.metadata.name.clone().unwrap_or_default();
        if b.metadata.deletion_timestamp.is_some() {
            not_ready
                .entry(client_id)
                .or_default()
                .push((name, "the binding is being deleted".to_owned()));
            continue;
        }
        if !b.is_ready() {
            let reason = b
                .condition(condition::READY)
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_else(|| "no Ready condition for the current generation".to_owned());
            not_ready.entry(client_id).or_default().push((name, reason));
            continue;
        }
        match target(b, client_id) {
            Ok(t) => ready.entry(client_id).or_default().push((name, t)),
            Err(missing) => {
                tracing::warn!(binding = %name, %missing, "Ready IdentityBinding lacks status fields");
                not_ready
                    .entry(client_id)
                    .or_default()
                    .push((name, format!("status has no {missing}")));
            }
        }
    }
    let mut out = HashMap::new();
    for (client_id, targets) in ready {
        let first = &targets[0].1;
        let lookup = if targets.iter().all(|(_, t)| t == first) {
            BindingLookup::Served(Arc::new(first.clone()))
        } else {
            let bindings: Vec<String> = targets.iter().map(|(n, _)| n.clone()).collect();
            tracing::warn!(%client_id, ?bindings, "Ready IdentityBindings disagree on tenant, issuer or subject");
            BindingLookup::Conflict { bindings }
        };
        out.insert(client_id, lookup);
    }
    for (client_id, list) in not_ready {
        if let Entry::Vacant(v) = out.entry(client_id) {
            let reason = list
                .iter()
                .map(|(n, r)| format!("{n}: {r}"))
                .collect::<Vec<_>>()
                .join("; ");
            v.insert(BindingLookup::NotReady {
                bindings: list.into_iter().map(|(n, _)| n).collect(),
                reason,
            });
        }
    }
    out
}

fn target(b: &IdentityBinding, client_id: ClientId) -> Result<BindingTarget, &'static str> {
    let status = b.status.as_ref().ok_or("status")?;
    let tenant = status.tenant_id.as_deref().ok_or("tenantId")?;
    let tenant_id = TenantId::parse(tenant).map_err(|_| "valid tenantId")?;
    let issuer = status
        .oidc_issuer_url
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or("oidcIssuerUrl")?;
    let subject = status
        .federated_credential
        .as_ref()
        .map(|f| f.subject.clone())
        .filter(|s| !s.is_empty())
        .ok_or("federatedCredential.subject")?;
    Ok(BindingTarget {
        client_id,
        tenant_id,
        issuer,
        subject,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use idbind_model::{
        FederatedCredentialStatus, IdentityBindingSpec, IdentityBindingStatus, ManagedIdentityRef,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::*;

    pub(crate) fn binding(name: &str, client_id: &str, ready: bool, issuer: &str) -> IdentityBinding {
        let mut b = IdentityBinding::new(
            name,
            IdentityBindingSpec {
                managed_identity: ManagedIdentityRef {
                    resource_id: format!(
                        "/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
                    ),
                },
                allowed_subjects: vec![],
            },
        );
        b.status = Some(IdentityBindingStatus {
            client_id: Some(client_id.to_owned()),
            tenant_id: Some("11111111-1111-1111-1111-111111111111".to_owned()),
            oidc_issuer_url: Some(issuer.to_owned()),
            federated_credential: Some(FederatedCredentialStatus {
                name: "idbind".into(),
                issuer: issuer.to_owned(),
                subject: format!(
                    "/subscriptions/s/resourcegroups/r/providers/microsoft.managedidentity/userassignedidentities/{name}"
                ),
            }),
            conditions: vec![Condition {
                type_: condition::READY.into(),
                status: if ready { "True" } else { "False" }.into(),
                reason: if ready { "Bound" } else { "IssuerNotPublished" }.into(),
                message: String::new(),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                observed_generation: None,
            }],
            ..Default::default()
        });
        b
    }

    const C1: &str = "22222222-2222-2222-2222-222222222222";
    const C2: &str = "33333333-3333-3333-3333-333333333333";

    #[test]
    fn only_ready_bindings_serve_and_changes_are_reported() {
        let index = BindingIndex::new();
        assert!(!index.is_synced());
        let c1 = ClientId::parse(C1).unwrap();
        let c2 = ClientId::parse(C2).unwrap();
        let gone = index.update([
            &binding("a", C1, true, "https://i/x"),
            &binding("b", C2, false, "https://i/y"),
        ]);
        assert!(gone.is_empty());
        assert!(index.is_synced());
        let BindingLookup::Served(t) = index.lookup(&c1) else {
            panic!("{:?}", index.lookup(&c1))
        };
        assert_eq!(t.issuer, "https://i/x");
        assert_eq!(t.tenant_id.to_string(), "11111111-1111-1111-1111-111111111111");
        assert!(t.subject.ends_with("/a"));
        assert!(
            matches!(index.lookup(&c2), BindingLookup::NotReady { ref reason, .. } if reason.contains("IssuerNotPublished"))
        );
        assert_eq!(index.lookup(&ClientId::new_random()), BindingLookup::Unbound);

        // A second Ready binding that agrees keeps serving; one that disagrees is a conflict.
        let mut twin = binding("a", C1, true, "https://i/x");
        twin.metadata.name = Some("a2".into());
        assert!(
            index
                .update([&binding("a", C1, true, "https://i/x"), &twin])
                .is_empty()
        );
        assert!(matches!(index.lookup(&c1), BindingLookup::Served(_)));
        twin.status.as_mut().unwrap().oidc_issuer_url = Some("https://other".into());
        assert_eq!(
            index.update([&binding("a", C1, true, "https://i/x"), &twin]),
            vec![c1]
        );
        assert!(matches!(index.lookup(&c1), BindingLookup::Conflict { .. }));

        // Back to one, then the binding loses Ready, then it is deleted.
        assert!(index.update([&binding("a", C1, true, "https://i/x")]).is_empty());
        assert_eq!(index.update([&binding("a", C1, false, "https://i/x")]), vec![c1]);
        assert!(index.update([&binding("a", C1, true, "https://i/x")]).is_empty());
        assert_eq!(index.update(std::iter::empty()), vec![c1]);
        assert_eq!(index.lookup(&c1), BindingLookup::Unbound);
    }

    #[test]
    fn ready_binding_without_status_fields_is_not_served() {
        let index = BindingIndex::new();
        let mut b = binding("a", C1, true, "https://i/x");
        b.status.as_mut().unwrap().federated_credential = None;
        index.update([&b]);
        let c1 = ClientId::parse(C1).unwrap();
        assert!(
            matches!(index.lookup(&c1), BindingLookup::NotReady { ref reason, .. } if reason.contains("federatedCredential.subject"))
        );
    }
}
