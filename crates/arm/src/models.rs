//! Typed ARM resources: user-assigned identities and their federated identity credentials.

use idbind_model::{ArmResourceId, ClientId, FicSpec, IdentityResourceId, PrincipalId, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A user-assigned managed identity as ARM describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// Its resource ID (as ARM spelled it).
    pub id: IdentityResourceId,
    /// Its name.
    pub name: String,
    /// Its Azure region.
    pub location: String,
    /// `properties.clientId`: what pods put in `AZURE_CLIENT_ID`.
    pub client_id: ClientId,
    /// `properties.principalId`: the object id of its service principal.
    pub principal_id: PrincipalId,
    /// `properties.tenantId`.
    pub tenant_id: TenantId,
}

/// The settable properties of a federated identity credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FicProperties {
    /// Issuer URL the presented token's `iss` must equal.
    pub issuer: String,
    /// Value the presented token's `sub` must equal (case-sensitive).
    pub subject: String,
    /// Audiences; Entra accepts exactly one, `api://AzureADTokenExchange`, on managed identities.
    pub audiences: Vec<String>,
}

impl From<&FicSpec> for FicProperties {
    fn from(spec: &FicSpec) -> Self {
        Self {
            issuer: spec.issuer.clone(),
            subject: spec.subject.clone(),
            audiences: vec![spec.audience.clone()],
        }
    }
}

/// A federated identity credential on a user-assigned identity.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FederatedCredential {
    /// Its resource ID (`<identity>/federatedIdentityCredentials/<name>`).
    pub id: ArmResourceId,
    /// Its name.
    pub name: String,
    /// Issuer, subject and audiences.
    pub properties: FicProperties,
}

#[derive(Deserialize)]
struct IdentityWire {
    id: Option<String>,
    name: Option<String>,
    location: Option<String>,
    properties: Option<IdentityPropertiesWire>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityPropertiesWire {
    client_id: Option<String>,
    principal_id: Option<String>,
    tenant_id: Option<String>,
}

impl Identity {
    pub(crate) fn from_json(value: Value) -> Result<Self, String> {
        let wire: IdentityWire =
            serde_json::from_value(value).map_err(|e| format!("not an identity object: {e}"))?;
        let id = wire.id.ok_or("`id` is missing")?;
        let id = IdentityResourceId::parse(&id).map_err(|e| format!("`id`: {e}"))?;
        let props = wire.properties.ok_or("`properties` is missing")?;
        let guid =
            |field: &str, v: Option<String>| v.ok_or_else(|| format!("`properties.{field}` is missing"));
        Ok(Self {
            name: wire.name.unwrap_or_else(|| id.name().to_owned()),
            location: wire.location.unwrap_or_default(),
            client_id: ClientId::parse(&guid("clientId", props.client_id)?).map_err(|e| e.to_string())?,
            principal_id: PrincipalId::parse(&guid("principalId", props.principal_id)?)
                .map_err(|e| e.to_string())?,
            tenant_id: TenantId::parse(&guid("tenantId", props.tenant_id)?).map_err(|e| e.to_string())?,
            id,
        })
    }
}

#[derive(Deserialize)]
struct FicWire {
    id: Option<String>,
    name: Option<String>,
    properties: Option<FicPropertiesWire>,
}

#[derive(Deserialize)]
struct FicPropertiesWire {
    issuer: Option<String>,
    subject: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
}

impl FederatedCredential {
    pub(crate) fn from_json(value: Value) -> Result<Self, String> {
        let wire: FicWire = serde_json::from_value(value)
            .map_err(|e| format!("not a federated identity credential object: {e}"))?;
        let id = wire.id.ok_or("`id` is missing")?;
        let id = ArmResourceId::parse(&id).map_err(|e| format!("`id`: {e}"))?;
        let props = wire.properties.ok_or("`properties` is missing")?;
        Ok(Self {
            name: wire.name.unwrap_or_else(|| id.name().to_owned()),
            properties: FicProperties {
                issuer: props.issuer.ok_or("`properties.issuer` is missing")?,
                subject: props.subject.ok_or("`properties.subject` is missing")?,
                audiences: props.audiences,
            },
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1";

    #[test]
    fn identities_decode() {
        let i = Identity::from_json(json!({
            "id": ID, "name": "id1", "location": "westeurope", "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
            "properties": {"tenantId": "11111111-1111-1111-1111-111111111111", "principalId": "22222222-2222-2222-2222-222222222222",
                           "clientId": "33333333-3333-3333-3333-333333333333", "isolationScope": "None"}
        }))
        .unwrap();
        assert_eq!(i.id.as_str(), ID);
        assert_eq!(i.location, "westeurope");
        assert_eq!(i.client_id.to_string(), "33333333-3333-3333-3333-333333333333");
        let err = Identity::from_json(json!({"id": ID, "properties": {"tenantId": "x"}})).unwrap_err();
        assert!(err.contains("clientId"), "{err}");
        let err = Identity::from_json(json!({"id": ID, "properties": {"tenantId": "x", "clientId": "33333333-3333-3333-3333-333333333333", "principalId": "22222222-2222-2222-2222-222222222222"}})).unwrap_err();
        assert!(err.contains("tenant id"), "{err}");
    }

    #[test]
    fn fics_decode_and_derive_from_the_spec() {
        let f = FederatedCredential::from_json(json!({
            "id": format!("{ID}/federatedIdentityCredentials/idbind"), "name": "idbind",
            "properties": {"issuer": "https://i/t/c", "subject": "s", "audiences": ["api://AzureADTokenExchange"]}
        }))
        .unwrap();
        assert_eq!(f.name, "idbind");
        assert_eq!(f.properties.audiences, ["api://AzureADTokenExchange"]);
        let err =
            FederatedCredential::from_json(json!({"id": ID, "properties": {"issuer": "i"}})).unwrap_err();
        assert!(err.contains("subject"), "{err}");
        let spec = FicSpec {
            name: "idbind".into(),
            issuer: "https://i".into(),
            subject: "s".into(),
            audience: "api://AzureADTokenExchange".into(),
        };
        let p = FicProperties::from(&spec);
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"issuer": "https://i", "subject": "s", "audiences": ["api://AzureADTokenExchange"]})
        );
    }
}
