//! The `IdentityBinding` custom resource (`idbind.dev/v1alpha1`, cluster-scoped, short name `ib`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::{ClientId, Error, IdentityResourceId, naming};

/// Condition types set on an IdentityBinding's status.
pub mod condition {
    /// The managed identity was found through ARM and its ids are in the status.
    pub const IDENTITY_RESOLVED: &str = "IdentityResolved";
    /// idbind's federated identity credential exists on the identity.
    pub const FEDERATED_CREDENTIAL_READY: &str = "FederatedCredentialReady";
    /// This cluster's keys are in the identity's published JWKS.
    pub const ISSUER_PUBLISHED: &str = "IssuerPublished";
    /// The generated ClusterRole and ClusterRoleBinding are in place.
    pub const RBAC_READY: &str = "RbacReady";
    /// All of the above: pods may exchange tokens for this identity.
    pub const READY: &str = "Ready";
    /// Every condition type, in the order a reconcile establishes them.
    pub const ALL: [&str; 5] = [
        IDENTITY_RESOLVED,
        FEDERATED_CREDENTIAL_READY,
        ISSUER_PUBLISHED,
        RBAC_READY,
        READY,
    ];
}

/// Binds a user-assigned managed identity to this cluster: idbind publishes this cluster's signing
/// keys in the identity's OIDC issuer, ensures the identity's single federated identity credential,
/// and generates the RBAC that lets the allowed service accounts use the identity.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "idbind.dev",
    version = "v1alpha1",
    kind = "IdentityBinding",
    plural = "identitybindings",
    singular = "identitybinding",
    shortname = "ib",
    status = "IdentityBindingStatus",
    category = "idbind",
    doc = "An IdentityBinding lets service accounts of this cluster get Entra tokens for a user-assigned managed identity, through the idbind token proxy.",
    printcolumn = r#"{"name":"Identity","type":"string","description":"Name of the managed identity","jsonPath":".status.identityName"}"#,
    printcolumn = r#"{"name":"Client ID","type":"string","description":"Client id of the managed identity","jsonPath":".status.clientId"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","description":"Whether pods can use the identity","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Issuer","type":"string","priority":1,"description":"OIDC issuer of the identity","jsonPath":".status.oidcIssuerUrl"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IdentityBindingSpec {
    /// The user-assigned managed identity to bind to this cluster.
    pub managed_identity: ManagedIdentityRef,

    /// Who may use the identity. Each entry allows every service account of a namespace, or one
    /// service account when `serviceAccount` is set. idbind generates the ClusterRole and
    /// ClusterRoleBinding `use-mi-<clientId>` from this list. Leave it empty to manage that RBAC
    /// yourself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub allowed_subjects: Vec<AllowedSubject>,
}

/// Reference to a user-assigned managed identity.
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedIdentityRef {
    /// ARM resource ID of the identity:
    /// /subscriptions/<subscription>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>.
    /// Immutable: create a new binding to bind another identity.
    #[schemars(regex(
        pattern = r"^/(?i:subscriptions)/[^/]+/(?i:resourceGroups)/[^/]+/(?i:providers)/(?i:Microsoft\.ManagedIdentity)/(?i:userAssignedIdentities)/[^/]+$"
    ))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("resourceId is immutable; create a new IdentityBinding to bind another identity"))]
    pub resource_id: String,
}

/// A namespace, or one service account in it, allowed to use the identity.
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedSubject {
    /// Namespace of the allowed service accounts.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: String,
    /// One service account in the namespace; all service accounts of the namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub service_account: Option<String>,
}

impl AllowedSubject {
    /// Parses `namespace` or `namespace/serviceAccount`, as the CLI's `--allow` takes it.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let (ns, sa) = match input.split_once('/') {
            Some((ns, sa)) => (ns, Some(sa)),
            None => (input, None),
        };
        naming::validate_dns_label("namespace", ns)?;
        if let Some(sa) = sa {
            naming::validate_dns_subdomain("service account", sa)?;
        }
        Ok(Self {
            namespace: ns.to_owned(),
            service_account: sa.map(str::to_owned),
        })
    }

    /// Checks the names in a subject that came from the API.
    pub fn validate(&self) -> Result<(), Error> {
        naming::validate_dns_label("namespace", &self.namespace)?;
        if let Some(sa) = &self.service_account {
            naming::validate_dns_subdomain("service account", sa)?;
        }
        Ok(())
    }
}

impl std::fmt::Display for AllowedSubject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.service_account {
            Some(sa) => write!(f, "{}/{sa}", self.namespace),
            None => f.write_str(&self.namespace),
        }
    }
}

/// Observed state of an IdentityBinding.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityBindingStatus {
    /// Name of the managed identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_name: Option<String>,
    /// Client (application) id of the managed identity: the value of AZURE_CLIENT_ID and the RBAC resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Object (principal) id of the managed identity's service principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// Entra tenant of the managed identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// OIDC issuer URL of the identity, shared by every cluster bound to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_issuer_url: Option<String>,
    /// The federated identity credential that trusts the issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated_credential: Option<FederatedCredentialStatus>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// IdentityResolved, FederatedCredentialReady, IssuerPublished, RbacReady and Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The federated identity credential idbind uses on the identity.
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederatedCredentialStatus {
    /// Name of the federated identity credential.
    pub name: String,
    /// Issuer it trusts: the identity's OIDC issuer URL.
    pub issuer: String,
    /// Subject it expects: the identity's resource ID in lower case.
    pub subject: String,
}

impl IdentityBinding {
    /// The identity's resource ID, parsed and checked.
    pub fn identity_id(&self) -> Result<IdentityResourceId, Error> {
        IdentityResourceId::parse(&self.spec.managed_identity.resource_id)
    }

    /// The resolved client id, once the status has one.
    pub fn client_id(&self) -> Option<ClientId> {
        self.status
            .as_ref()?
            .client_id
            .as_deref()
            .and_then(|c| ClientId::parse(c).ok())
    }

    /// Looks up a status condition by type.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the `Ready` condition is `True` for the current generation.
    pub fn is_ready(&self) -> bool {
        let current = match (
            self.metadata.generation,
            self.status.as_ref().and_then(|s| s.observed_generation),
        ) {
            (Some(g), Some(o)) => g == o,
            _ => true,
        };
        current
            && self
                .condition(condition::READY)
                .is_some_and(|c| c.status == "True")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_has_the_fixed_names() {
        let crd = IdentityBinding::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("identitybindings.idbind.dev"));
        assert_eq!(crd.spec.group, "idbind.dev");
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.names.kind, "IdentityBinding");
        assert_eq!(crd.spec.names.short_names, Some(vec!["ib".to_owned()]));
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().unwrap().status.is_some());
        let cols: Vec<_> = v
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(cols, ["Identity", "Client ID", "Ready", "Issuer", "Age"]);
        let json = serde_json::to_string(&crd).unwrap();
        assert!(
            json.contains(r#""rule":"self == oldSelf""#),
            "immutability rule missing"
        );
        assert!(json.contains("x-kubernetes-list-map-keys"));
    }

    #[test]
    fn allowed_subject_parsing() {
        let ns = AllowedSubject::parse("team-a").unwrap();
        assert_eq!(
            ns,
            AllowedSubject {
                namespace: "team-a".into(),
                service_account: None
            }
        );
        assert_eq!(ns.to_string(), "team-a");
        let sa = AllowedSubject::parse("team-a/app").unwrap();
        assert_eq!(sa.service_account.as_deref(), Some("app"));
        assert_eq!(sa.to_string(), "team-a/app");
        for bad in ["", "Team", "a/", "a/B", "a/b/c"] {
            assert!(AllowedSubject::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn readiness_requires_the_current_generation() {
        let mut ib = IdentityBinding::new(
            "b",
            IdentityBindingSpec {
                managed_identity: ManagedIdentityRef {
                    resource_id: "/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i".into(),
                },
                allowed_subjects: vec![],
            },
        );
        assert!(!ib.is_ready());
        ib.metadata.generation = Some(2);
        ib.status = Some(IdentityBindingStatus {
            observed_generation: Some(1),
            conditions: vec![Condition {
                type_: condition::READY.into(),
                status: "True".into(),
                reason: "Bound".into(),
                message: String::new(),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff_now()),
                observed_generation: Some(1),
            }],
            ..Default::default()
        });
        assert!(!ib.is_ready());
        ib.status.as_mut().unwrap().observed_generation = Some(2);
        assert!(ib.is_ready());
        assert_eq!(ib.identity_id().unwrap().name(), "i");
    }

    fn jiff_now() -> k8s_openapi::jiff::Timestamp {
        k8s_openapi::jiff::Timestamp::now()
    }
}
