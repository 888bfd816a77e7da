//! The emulated directory and resources: tenants, service principals, subscriptions, resource
//! groups, user-assigned identities and their federated identity credentials. Pure data and the ARM
//! rules that apply to it; no I/O.

use std::collections::BTreeMap;

use idbind_model::{
    ClientId, ENTRA_FIC_AUDIENCE, IdentityResourceId, MANAGED_IDENTITY_PROVIDER, PrincipalId, TenantId,
    USER_ASSIGNED_IDENTITY_TYPE,
};
use serde::{Deserialize, Serialize};

/// The version of the state file format.
pub(crate) const STATE_FORMAT: u32 = 1;

/// Everything the emulator knows; this is what the state file holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct State {
    pub format: u32,
    /// The token-signing key, PKCS#8 DER in base64 (kept so tokens survive restarts).
    pub signing_key: String,
    pub default_tenant: TenantId,
    pub default_principal: ClientId,
    pub default_subscription: String,
    pub tenants: BTreeMap<TenantId, Tenant>,
    pub principals: BTreeMap<ClientId, Principal>,
    /// Keyed by lower-cased subscription id.
    pub subscriptions: BTreeMap<String, Subscription>,
    /// Keyed by lower-cased identity resource id.
    pub identities: BTreeMap<String, Identity>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Tenant {
    pub id: TenantId,
}

/// A service principal that authenticates with a client secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Principal {
    pub tenant: TenantId,
    pub client_id: ClientId,
    pub object_id: PrincipalId,
    pub secret: String,
    /// ARM scopes (resource id prefixes) it may act on; `None` means everything.
    pub arm_scopes: Option<Vec<String>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Subscription {
    pub id: String,
    pub tenant: TenantId,
    /// Lower-cased name → name as first written.
    pub resource_groups: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Identity {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub tenant_id: TenantId,
    pub client_id: ClientId,
    pub principal_id: PrincipalId,
    /// ARM scopes a token of this identity may act on (none by default).
    #[serde(default)]
    pub arm_scopes: Vec<String>,
    pub created_at: String,
    pub created_by: String,
    pub last_modified_at: String,
    /// Lower-cased name → credential.
    #[serde(default)]
    pub fics: BTreeMap<String, Fic>,
}

impl Identity {
    pub(crate) fn resource_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{MANAGED_IDENTITY_PROVIDER}/{USER_ASSIGNED_IDENTITY_TYPE}/{}",
            self.subscription, self.resource_group, self.name
        )
    }

    pub(crate) fn typed_id(&self) -> Option<IdentityResourceId> {
        IdentityResourceId::parse(&self.resource_id()).ok()
    }
}

/// A federated identity credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Fic {
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
    pub created_at: String,
    pub created_by: String,
    pub last_modified_at: String,
}

/// An ARM rule was broken: the HTTP status, ARM error code and message to answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Violation {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Violation {
    pub(crate) fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
}

impl From<Violation> for crate::Error {
    fn from(v: Violation) -> Self {
        crate::Error::Rejected {
            code: v.code,
            message: v.message,
        }
    }
}

/// The properties of a FIC write, already shape-checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FicInput {
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
}

/// Who the caller is (for `systemData`).
pub(crate) type Actor<'a> = &'a str;

pub(crate) fn identity_key(subscription: &str, resource_group: &str, name: &str) -> String {
    format!(
        "/subscriptions/{subscription}/resourcegroups/{resource_group}/providers/microsoft.managedidentity/userassignedidentities/{name}"
    )
    .to_ascii_lowercase()
}

/// A client known to the token endpoint.
pub(crate) enum Client<'a> {
    Principal(&'a Principal),
    Identity(&'a Identity),
}

impl State {
    pub(crate) fn new(
        signing_key: String,
        tenant: TenantId,
        principal: Principal,
        subscription: &str,
    ) -> Self {
        let mut state = State {
            format: STATE_FORMAT,
            signing_key,
            default_tenant: tenant,
            default_principal: principal.client_id,
            default_subscription: subscription.to_owned(),
            tenants: BTreeMap::new(),
            principals: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            identities: BTreeMap::new(),
        };
        state.tenants.insert(tenant, Tenant { id: tenant });
        state.principals.insert(principal.client_id, principal);
        state.ensure_subscription(subscription, tenant);
        state
    }

    pub(crate) fn tenant(&self, id: &str) -> Option<&Tenant> {
        let id = TenantId::parse(id).ok()?;
        self.tenants.get(&id)
    }

    pub(crate) fn subscription(&self, id: &str) -> Option<&Subscription> {
        self.subscriptions.get(&id.to_ascii_lowercase())
    }

    /// The subscription, created in `tenant` if missing.
    pub(crate) fn ensure_subscription(&mut self, id: &str, tenant: TenantId) -> &mut Subscription {
        self.subscriptions
            .entry(id.to_ascii_lowercase())
            .or_insert_with(|| Subscription {
                id: id.to_owned(),
                tenant,
                resource_groups: BTreeMap::new(),
            })
    }

    pub(crate) fn ensure_resource_group(&mut self, subscription: &str, tenant: TenantId, rg: &str) {
        self.ensure_subscription(subscription, tenant)
            .resource_groups
            .entry(rg.to_ascii_lowercase())
            .or_insert_with(|| rg.to_owned());
    }

    pub(crate) fn resource_group_exists(&self, subscription: &str, rg: &str) -> bool {
        self.subscription(subscription)
            .is_some_and(|s| s.resource_groups.contains_key(&rg.to_ascii_lowercase()))
    }

    /// A client of `tenant` by client id: a service principal or an identity.
    pub(crate) fn client(&self, tenant: TenantId, client_id: &str) -> Option<Client<'_>> {
        let id = ClientId::parse(client_id).ok()?;
        if let Some(p) = self.principals.get(&id).filter(|p| p.tenant == tenant) {
            return Some(Client::Principal(p));
        }
        self.identities
            .values()
            .find(|i| i.client_id == id && i.tenant_id == tenant)
            .map(Client::Identity)
    }

    /// The ARM scopes an object id (principal or identity) may act on; `None` means everything.
    pub(crate) fn arm_scopes_of(&self, object_id: &str) -> Option<Option<Vec<String>>> {
        let oid = PrincipalId::parse(object_id).ok()?;
        if let Some(p) = self.principals.values().find(|p| p.object_id == oid) {
            return Some(p.arm_scopes.clone());
        }
        self.identities
            .values()
            .find(|i| i.principal_id == oid)
            .map(|i| Some(i.arm_scopes.clone()))
    }

    pub(crate) fn identity(&self, key: &str) -> Option<&Identity> {
        self.identities.get(key)
    }

    /// Creates or updates an identity; ids are generated on create and kept on update.
    /// Returns whether it was created.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn put_identity(
        &mut self,
        subscription: &str,
        resource_group: &str,
        name: &str,
        location: &str,
        tags: BTreeMap<String, String>,
        tenant: TenantId,
        actor: Actor<'_>,
        now: &str,
    ) -> (bool, &Identity) {
        self.ensure_resource_group(subscription, tenant, resource_group);
        let sub_tenant = self
            .subscription(subscription)
            .map(|s| s.tenant)
            .unwrap_or(tenant);
        let key = identity_key(subscription, resource_group, name);
        let created = !self.identities.contains_key(&key);
        let entry = self.identities.entry(key).or_insert_with(|| Identity {
            subscription: subscription.to_owned(),
            resource_group: resource_group.to_owned(),
            name: name.to_owned(),
            location: location.to_owned(),
            tags: BTreeMap::new(),
            tenant_id: sub_tenant,
            client_id: ClientId::new_random(),
            principal_id: PrincipalId::new_random(),
            arm_scopes: Vec::new(),
            created_at: now.to_owned(),
            created_by: actor.to_owned(),
            last_modified_at: now.to_owned(),
            fics: BTreeMap::new(),
        });
        entry.location = location.to_owned();
        entry.tags = tags;
        entry.last_modified_at = now.to_owned();
        (created, entry)
    }

    /// Deletes an identity and its credentials. Returns whether it existed.
    pub(crate) fn delete_identity(&mut self, key: &str) -> bool {
        self.identities.remove(key).is_some()
    }

    /// Creates or replaces a FIC after checking the per-identity rules (parent exists, the
    /// issuer+subject pair is unique, at most `max` credentials). Returns whether it was created.
    pub(crate) fn put_fic(
        &mut self,
        key: &str,
        name: &str,
        input: FicInput,
        max: usize,
        actor: Actor<'_>,
        now: &str,
    ) -> Result<bool, Violation> {
        let identity = self
            .identities
            .get_mut(key)
            .ok_or_else(|| parent_not_found(key))?;
        let lname = name.to_ascii_lowercase();
        if let Some(other) = identity.fics.values().find(|f| {
            f.name.to_ascii_lowercase() != lname && f.issuer == input.issuer && f.subject == input.subject
        }) {
            return Err(Violation::bad_request(format!(
                "Issuer and subject combination already exists for this Managed Identity. \
                 (Federated identity credential '{}' has the same issuer and subject.)",
                other.name
            )));
        }
        let created = !identity.fics.contains_key(&lname);
        if created && identity.fics.len() >= max {
            return Err(Violation::new(
                400,
                FIC_LIMIT_CODE,
                format!(
                    "Too many federated identity credentials on the managed identity '{}': it already has {} \
                     and at most {max} are allowed per user-assigned managed identity.",
                    identity.resource_id().to_ascii_lowercase(),
                    identity.fics.len()
                ),
            ));
        }
        let entry = identity.fics.entry(lname).or_insert_with(|| Fic {
            name: name.to_owned(),
            issuer: String::new(),
            subject: String::new(),
            audiences: Vec::new(),
            created_at: now.to_owned(),
            created_by: actor.to_owned(),
            last_modified_at: now.to_owned(),
        });
        entry.issuer = input.issuer;
        entry.subject = input.subject;
        entry.audiences = input.audiences;
        entry.last_modified_at = now.to_owned();
        Ok(created)
    }

    /// Deletes a FIC. `Ok(false)` if the identity exists but the credential does not.
    pub(crate) fn delete_fic(&mut self, key: &str, name: &str) -> Result<bool, Violation> {
        let identity = self
            .identities
            .get_mut(key)
            .ok_or_else(|| parent_not_found(key))?;
        Ok(identity.fics.remove(&name.to_ascii_lowercase()).is_some())
    }
}

/// The ARM error code the emulator uses when a 21st FIC is created. Entra's real text for this case
/// is not documented; the code and message are the emulator's choice (HTTP 400).
pub const FIC_LIMIT_CODE: &str = "FederatedIdentityCredentialsLimitExceeded";

pub(crate) fn parent_not_found(key: &str) -> Violation {
    let name = key.rsplit('/').next().unwrap_or(key);
    Violation::new(
        404,
        "ParentResourceNotFound",
        format!(
            "Failed to perform 'write' on resource(s) of type 'userAssignedIdentities/federatedIdentityCredentials', \
             because the parent resource '{name}' could not be found. The parent user-assigned identity doesn't exist."
        ),
    )
}

/// Checks a FIC name: 3–120 characters, letters, digits, `-`, `_`, first alphanumeric.
pub(crate) fn check_fic_name(name: &str) -> Result<(), Violation> {
    idbind_model::validate_fic_name(name).map_err(|e| {
        Violation::new(
            400,
            "InvalidFederatedIdentityCredentialName",
            format!(
                "Federated Identity Credential name '{name}' is invalid. ({e}) The name must be 3 to 120 characters \
                 long, start with a letter or digit and contain only letters, digits, '-' and '_'."
            ),
        )
    })
}

/// Checks the `properties` of a FIC PUT body as the managed-identity provider does.
pub(crate) fn check_fic_body(body: &serde_json::Value) -> Result<FicInput, Violation> {
    let empty = || {
        Violation::bad_request(
            "The federated identity credential has empty properties. \
             'properties.issuer', 'properties.subject' and 'properties.audiences' are required.",
        )
    };
    let props = body
        .get("properties")
        .and_then(|p| p.as_object())
        .ok_or_else(empty)?;
    if props.is_empty() {
        return Err(empty());
    }
    let string = |field: &str| -> Result<String, Violation> {
        match props.get(field) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(serde_json::Value::String(_)) | None | Some(serde_json::Value::Null) => {
                Err(Violation::bad_request(format!(
                    "The federated identity credential property '{field}' is required and must not be empty."
                )))
            }
            Some(_) => Err(Violation::bad_request(format!(
                "The federated identity credential property '{field}' must be a string."
            ))),
        }
    };
    let issuer = string("issuer")?;
    let subject = string("subject")?;
    let audiences: Vec<String> = match props.get("audiences") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Violation::bad_request("'properties.audiences' must be an array of strings."))?,
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(_) => {
            return Err(Violation::bad_request(
                "'properties.audiences' must be an array of strings.",
            ));
        }
    };
    if audiences.len() != 1 {
        return Err(Violation::bad_request(format!(
            "Federated identity credentials must have exactly one audience (found {}).",
            audiences.len()
        )));
    }
    if audiences[0] != ENTRA_FIC_AUDIENCE {
        return Err(Violation::bad_request(format!(
            "The audience '{}' is not supported. Federated identity credentials on user-assigned managed \
             identities must have the audience '{ENTRA_FIC_AUDIENCE}'.",
            audiences[0]
        )));
    }
    for (field, value) in [("issuer", &issuer), ("subject", &subject)] {
        if value.len() > 600 {
            return Err(Violation::bad_request(format!(
                "The federated identity credential {field} must be at most 600 characters long (found {}).",
                value.len()
            )));
        }
        if value.trim() != value {
            return Err(Violation::bad_request(format!(
                "The federated identity credential {field} must not have leading or trailing whitespace."
            )));
        }
        if value.contains('*') {
            return Err(Violation::bad_request(format!(
                "The federated identity credential {field} must not contain wildcards ('*')."
            )));
        }
    }
    crate::urls::check_issuer_url(&issuer).map_err(|reason| {
        Violation::bad_request(format!(
            "The federated identity credential issuer '{issuer}' is invalid: {reason}."
        ))
    })?;
    Ok(FicInput {
        issuer,
        subject,
        audiences,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(aud: &serde_json::Value) -> serde_json::Value {
        json!({"properties": {"issuer": "https://issuer.example/x", "subject": "s", "audiences": aud}})
    }

    #[test]
    fn fic_body_rules() {
        assert!(check_fic_body(&body(&json!(["api://AzureADTokenExchange"]))).is_ok());
        assert!(
            check_fic_body(&body(&json!([])))
                .unwrap_err()
                .message
                .contains("exactly one audience")
        );
        assert!(
            check_fic_body(&body(&json!(["a", "b"])))
                .unwrap_err()
                .message
                .contains("exactly one audience")
        );
        assert!(
            check_fic_body(&body(&json!(["api://other"])))
                .unwrap_err()
                .message
                .contains("not supported")
        );
        assert!(
            check_fic_body(&json!({"properties": {}}))
                .unwrap_err()
                .message
                .contains("empty properties")
        );
        assert!(
            check_fic_body(&json!({}))
                .unwrap_err()
                .message
                .contains("empty properties")
        );
        let http = json!({"properties": {"issuer": "http://example.com/x", "subject": "s", "audiences": ["api://AzureADTokenExchange"]}});
        assert!(check_fic_body(&http).is_err());
        let local = json!({"properties": {"issuer": "http://127.0.0.1:9/x", "subject": "s", "audiences": ["api://AzureADTokenExchange"]}});
        assert!(check_fic_body(&local).is_ok());
        let wild = json!({"properties": {"issuer": "https://e/x", "subject": "s*", "audiences": ["api://AzureADTokenExchange"]}});
        assert!(check_fic_body(&wild).unwrap_err().message.contains("wildcards"));
    }

    #[test]
    fn fic_names() {
        assert!(check_fic_name("idbind").is_ok());
        assert!(check_fic_name("a_b-c").is_ok());
        for bad in ["ab", "-abc", "a b c", &"x".repeat(121)] {
            assert_eq!(
                check_fic_name(bad).unwrap_err().code,
                "InvalidFederatedIdentityCredentialName"
            );
        }
    }
}
