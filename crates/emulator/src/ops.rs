//! Seeding and inspection operations shared by the in-process API and the admin endpoint.

use idbind_model::{ClientId, ENTRA_FIC_AUDIENCE, IdentityResourceId, PrincipalId, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::seed::Seed;
use crate::server::Shared;
use crate::state::{FicInput, Principal, Tenant, check_fic_body, check_fic_name, identity_key};
use crate::{Error, Result};

/// What is needed to authenticate as a service principal with a client secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipalCredentials {
    /// The principal's tenant.
    pub tenant_id: TenantId,
    /// Application (client) id.
    pub client_id: ClientId,
    /// The client secret.
    pub client_secret: String,
    /// Object id (the `oid` of its tokens).
    pub object_id: PrincipalId,
}

/// Options for a new service principal; every field has a default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ServicePrincipalSpec {
    /// Tenant (default: the default tenant).
    pub tenant_id: Option<TenantId>,
    /// Client id (default: random).
    pub client_id: Option<ClientId>,
    /// Secret (default: random).
    pub secret: Option<String>,
    /// Object id (default: random).
    pub object_id: Option<PrincipalId>,
    /// ARM scopes it may act on (default: everything; `Some(vec![])`: nothing).
    pub arm_scopes: Option<Vec<String>>,
}

/// A user-assigned identity as ARM reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityInfo {
    /// The ARM resource id.
    pub resource_id: IdentityResourceId,
    /// `properties.clientId`.
    pub client_id: ClientId,
    /// `properties.principalId`.
    pub principal_id: PrincipalId,
    /// `properties.tenantId`.
    pub tenant_id: TenantId,
}

/// A federated identity credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FicInfo {
    /// Name.
    pub name: String,
    /// Issuer URL.
    pub issuer: String,
    /// Subject.
    pub subject: String,
    /// Audiences.
    pub audiences: Vec<String>,
}

impl FicInfo {
    /// A credential with the one audience Entra accepts on identities.
    pub fn new(name: &str, issuer: &str, subject: &str) -> Self {
        Self {
            name: name.to_owned(),
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
            audiences: vec![ENTRA_FIC_AUDIENCE.to_owned()],
        }
    }
}

/// Body of `POST /_emulator/identities`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct IdentityRequest {
    #[serde(default)]
    pub subscription: Option<String>,
    pub resource_group: String,
    pub name: String,
    #[serde(default)]
    pub location: Option<String>,
}

const DEFAULT_LOCATION: &str = "westeurope";
const SEED_ACTOR: &str = "idbind-emulator";

fn random_secret() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 30];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn new_principal(spec: &ServicePrincipalSpec, tenant: TenantId) -> Principal {
    Principal {
        tenant,
        client_id: spec.client_id.unwrap_or_else(ClientId::new_random),
        object_id: spec.object_id.unwrap_or_else(PrincipalId::new_random),
        secret: spec.secret.clone().unwrap_or_else(random_secret),
        arm_scopes: spec.arm_scopes.clone(),
    }
}

fn credentials(p: &Principal) -> ServicePrincipalCredentials {
    ServicePrincipalCredentials {
        tenant_id: p.tenant,
        client_id: p.client_id,
        client_secret: p.secret.clone(),
        object_id: p.object_id,
    }
}

impl Shared {
    pub(crate) fn create_tenant(&self) -> Result<TenantId> {
        let id = TenantId::new_random();
        self.mutate(|s| {
            s.tenants.insert(id, Tenant { id });
        })?;
        Ok(id)
    }

    pub(crate) fn create_service_principal(
        &self,
        spec: &ServicePrincipalSpec,
    ) -> Result<ServicePrincipalCredentials> {
        let tenant = spec.tenant_id.unwrap_or_else(|| self.state.read().default_tenant);
        if !self.state.read().tenants.contains_key(&tenant) {
            return Err(Error::NotFound {
                what: "tenant",
                id: tenant.to_string(),
            });
        }
        let p = new_principal(spec, tenant);
        let creds = credentials(&p);
        self.mutate(|s| {
            s.principals.insert(p.client_id, p);
        })?;
        Ok(creds)
    }

    pub(crate) fn default_principal(&self) -> Option<ServicePrincipalCredentials> {
        let s = self.state.read();
        s.principals.get(&s.default_principal).map(credentials)
    }

    pub(crate) fn create_identity(
        &self,
        subscription: &str,
        resource_group: &str,
        name: &str,
        location: Option<&str>,
    ) -> Result<IdentityInfo> {
        let id = IdentityResourceId::new(subscription, resource_group, name)?;
        let now = crate::clock::rfc3339(self.now());
        let tenant = {
            let s = self.state.read();
            s.subscription(subscription)
                .map(|x| x.tenant)
                .unwrap_or(s.default_tenant)
        };
        self.mutate(|s| {
            s.put_identity(
                subscription,
                resource_group,
                name,
                location.unwrap_or(DEFAULT_LOCATION),
                Default::default(),
                tenant,
                SEED_ACTOR,
                &now,
            );
        })?;
        self.identity_info(&id).ok_or_else(|| Error::NotFound {
            what: "identity",
            id: id.to_string(),
        })
    }

    pub(crate) fn identity_info(&self, id: &IdentityResourceId) -> Option<IdentityInfo> {
        let s = self.state.read();
        let i = s.identity(&id.to_lowercase())?;
        Some(IdentityInfo {
            resource_id: i.typed_id().unwrap_or_else(|| id.clone()),
            client_id: i.client_id,
            principal_id: i.principal_id,
            tenant_id: i.tenant_id,
        })
    }

    pub(crate) fn fics(&self, id: &IdentityResourceId) -> Option<Vec<FicInfo>> {
        let s = self.state.read();
        let i = s.identity(&id.to_lowercase())?;
        Some(
            i.fics
                .values()
                .map(|f| FicInfo {
                    name: f.name.clone(),
                    issuer: f.issuer.clone(),
                    subject: f.subject.clone(),
                    audiences: f.audiences.clone(),
                })
                .collect(),
        )
    }

    /// Creates or replaces a FIC with the same rules as ARM (except throttling and the write hold).
    pub(crate) fn put_fic(&self, id: &IdentityResourceId, fic: &FicInfo) -> Result<bool> {
        let input = check_fic(fic)?;
        let now = crate::clock::rfc3339(self.now());
        let max = self.settings.max_fics_per_identity;
        Ok(self.mutate(|s| s.put_fic(&id.to_lowercase(), &fic.name, input, max, SEED_ACTOR, &now))??)
    }

    pub(crate) fn set_identity_arm_scopes(&self, id: &IdentityResourceId, scopes: Vec<String>) -> Result<()> {
        self.mutate(|s| match s.identities.get_mut(&id.to_lowercase()) {
            Some(i) => {
                i.arm_scopes = scopes;
                Ok(())
            }
            None => Err(Error::NotFound {
                what: "identity",
                id: id.to_string(),
            }),
        })?
    }

    pub(crate) fn apply_seed(&self, seed: &Seed) -> Result<()> {
        // Check every FIC before changing anything.
        for t in &seed.tenants {
            for sub in &t.subscriptions {
                for rg in &sub.resource_groups {
                    for i in &rg.identities {
                        IdentityResourceId::new(&sub.id, &rg.name, &i.name)?;
                        for f in &i.federated_identity_credentials {
                            check_fic(&FicInfo {
                                name: f.name.clone(),
                                issuer: f.issuer.clone(),
                                subject: f.subject.clone(),
                                audiences: f.audiences.clone(),
                            })?;
                        }
                    }
                }
            }
        }
        let now = crate::clock::rfc3339(self.now());
        let max = self.settings.max_fics_per_identity;
        self.mutate(|s| -> Result<()> {
            for t in &seed.tenants {
                s.tenants.insert(t.id, Tenant { id: t.id });
                if t.default {
                    s.default_tenant = t.id;
                }
                for p in &t.service_principals {
                    let existing_oid = s.principals.get(&p.client_id).map(|x| x.object_id);
                    let spec = ServicePrincipalSpec {
                        tenant_id: Some(t.id),
                        client_id: Some(p.client_id),
                        secret: Some(p.secret.clone()),
                        object_id: p.object_id.or(existing_oid),
                        arm_scopes: p.arm_scopes.clone(),
                    };
                    s.principals.insert(p.client_id, new_principal(&spec, t.id));
                    if p.default {
                        s.default_principal = p.client_id;
                    }
                }
                for sub in &t.subscriptions {
                    s.ensure_subscription(&sub.id, t.id).tenant = t.id;
                    if sub.default {
                        s.default_subscription = sub.id.clone();
                    }
                    for rg in &sub.resource_groups {
                        s.ensure_resource_group(&sub.id, t.id, &rg.name);
                        for i in &rg.identities {
                            let location = i.location.as_deref().unwrap_or(DEFAULT_LOCATION);
                            s.put_identity(
                                &sub.id,
                                &rg.name,
                                &i.name,
                                location,
                                i.tags.clone(),
                                t.id,
                                SEED_ACTOR,
                                &now,
                            );
                            let key = identity_key(&sub.id, &rg.name, &i.name);
                            if let Some(entry) = s.identities.get_mut(&key) {
                                entry.tenant_id = t.id;
                                if let Some(c) = i.client_id {
                                    entry.client_id = c;
                                }
                                if let Some(p) = i.principal_id {
                                    entry.principal_id = p;
                                }
                                entry.arm_scopes = i.arm_scopes.clone();
                            }
                            for f in &i.federated_identity_credentials {
                                let input = FicInput {
                                    issuer: f.issuer.clone(),
                                    subject: f.subject.clone(),
                                    audiences: f.audiences.clone(),
                                };
                                s.put_fic(&key, &f.name, input, max, SEED_ACTOR, &now)?;
                            }
                        }
                    }
                }
            }
            Ok(())
        })?
    }
}

fn check_fic(fic: &FicInfo) -> Result<FicInput> {
    check_fic_name(&fic.name)?;
    Ok(check_fic_body(&json!({"properties": {
        "issuer": fic.issuer, "subject": fic.subject, "audiences": fic.audiences
    }}))?)
}
