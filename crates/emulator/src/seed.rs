//! Seed documents: tenants, service principals, subscriptions, resource groups, identities and
//! their federated credentials to create at start (YAML or JSON). See `examples/seed.yaml`.
//!
//! Applying a seed is idempotent: what exists is updated to match (ids given in the seed win),
//! nothing is deleted.

use std::collections::BTreeMap;
use std::path::Path;

use idbind_model::{ClientId, ENTRA_FIC_AUDIENCE, PrincipalId, TenantId};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A seed document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed {
    /// The tenants (directories).
    #[serde(default)]
    pub tenants: Vec<SeedTenant>,
}

/// A tenant and what lives in it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedTenant {
    /// Tenant id.
    pub id: TenantId,
    /// Make this the default tenant (the one printed at start).
    #[serde(default)]
    pub default: bool,
    /// Service principals with client secrets.
    #[serde(default)]
    pub service_principals: Vec<SeedServicePrincipal>,
    /// Subscriptions owned by this tenant.
    #[serde(default)]
    pub subscriptions: Vec<SeedSubscription>,
}

/// A service principal that authenticates with a client secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedServicePrincipal {
    /// Application (client) id.
    pub client_id: ClientId,
    /// The client secret.
    pub secret: String,
    /// Object id (generated when absent).
    #[serde(default)]
    pub object_id: Option<PrincipalId>,
    /// ARM scopes (resource id prefixes such as `/subscriptions/<id>/resourceGroups/<rg>`) it may
    /// act on; absent means everything, `[]` means nothing.
    #[serde(default)]
    pub arm_scopes: Option<Vec<String>>,
    /// Make this the default principal (the one printed at start).
    #[serde(default)]
    pub default: bool,
}

/// A subscription.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedSubscription {
    /// Subscription id.
    pub id: String,
    /// Make this the default subscription.
    #[serde(default)]
    pub default: bool,
    /// Resource groups.
    #[serde(default)]
    pub resource_groups: Vec<SeedResourceGroup>,
}

/// A resource group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedResourceGroup {
    /// Name.
    pub name: String,
    /// User-assigned identities in it.
    #[serde(default)]
    pub identities: Vec<SeedIdentity>,
}

/// A user-assigned managed identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedIdentity {
    /// Name.
    pub name: String,
    /// Location (default `westeurope`).
    #[serde(default)]
    pub location: Option<String>,
    /// Client id (generated when absent).
    #[serde(default)]
    pub client_id: Option<ClientId>,
    /// Principal (object) id (generated when absent).
    #[serde(default)]
    pub principal_id: Option<PrincipalId>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// ARM scopes the identity's own tokens may act on (default none).
    #[serde(default)]
    pub arm_scopes: Vec<String>,
    /// Federated identity credentials (checked by the same rules as ARM PUTs).
    #[serde(default)]
    pub federated_identity_credentials: Vec<SeedFic>,
}

/// A federated identity credential.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedFic {
    /// Name.
    pub name: String,
    /// Issuer URL.
    pub issuer: String,
    /// Subject.
    pub subject: String,
    /// Audiences (default `["api://AzureADTokenExchange"]`).
    #[serde(default = "default_audiences")]
    pub audiences: Vec<String>,
}

fn default_audiences() -> Vec<String> {
    vec![ENTRA_FIC_AUDIENCE.to_owned()]
}

impl Seed {
    /// Parses a seed from YAML (JSON is accepted too, being YAML).
    pub fn from_str_named(text: &str, source_name: &str) -> Result<Seed> {
        let err = |reason: String| Error::Seed {
            source_name: source_name.to_owned(),
            reason,
        };
        if text.trim_start().starts_with('{') {
            return serde_json::from_str(text).map_err(|e| err(e.to_string()));
        }
        serde_saphyr::from_str(text).map_err(|e| err(e.to_string()))
    }

    /// Reads a seed file (YAML or JSON).
    pub fn from_file(path: &Path) -> Result<Seed> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Seed {
            source_name: name.clone(),
            reason: format!("cannot read it: {e}"),
        })?;
        Self::from_str_named(&text, &name)
    }
}

impl std::str::FromStr for Seed {
    type Err = Error;
    fn from_str(s: &str) -> Result<Seed> {
        Self::from_str_named(s, "inline seed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_seed_parses() {
        let text = include_str!("../examples/seed.yaml");
        let seed: Seed = text.parse().unwrap();
        assert_eq!(seed.tenants.len(), 1);
        let t = &seed.tenants[0];
        assert!(t.default);
        assert_eq!(t.service_principals.len(), 2);
        let id = &t.subscriptions[0].resource_groups[0].identities[0];
        assert_eq!(
            id.federated_identity_credentials[0].audiences,
            default_audiences()
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_the_source_name() {
        let err = Seed::from_str_named(
            "tenants:\n  - id: 11111111-1111-1111-1111-111111111111\n    nope: 1\n",
            "x.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("x.yaml") && err.contains("nope"), "{err}");
        let err = Seed::from_str_named("{\"tenants\": [{\"id\": \"bad\"}]}", "y.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("y.json") && err.contains("tenant id"), "{err}");
    }
}
