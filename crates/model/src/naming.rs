//! The fixed names of idbind (DESIGN.md, "Names that are fixed") and what is derived from them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{ClientId, Error, IdentityResourceId, TenantId};

/// API group of the RBAC resource that grants use of a managed identity (AKS-compatible).
pub const RBAC_API_GROUP: &str = "cid.wi.aks.azure.com";
/// The RBAC verb that grants use of a managed identity.
pub const RBAC_VERB: &str = "use-managed-identity";
/// Prefix of generated ClusterRole and ClusterRoleBinding names.
pub const RBAC_NAME_PREFIX: &str = "use-mi-";

/// Audience of the projected service-account token pods present to the proxy.
pub const DEFAULT_SA_TOKEN_AUDIENCE: &str = "api://AKSIdentityBinding";
/// The only audience Entra accepts on a user-assigned identity's FIC.
pub const ENTRA_FIC_AUDIENCE: &str = "api://AzureADTokenExchange";
/// Default name of idbind's federated identity credential.
pub const DEFAULT_FIC_NAME: &str = "idbind";
/// At most this many federated identity credentials can exist on one identity.
pub const MAX_FICS_PER_IDENTITY: usize = 20;
/// Entra reads only this many keys of a JWKS.
pub const MAX_JWKS_KEYS: usize = 100;

/// Pod label that opts a pod in to workload identity (azure-workload-identity).
pub const POD_USE_LABEL: &str = "azure.workload.identity/use";
/// Pod annotation that selects identity-binding mode.
pub const POD_USE_IDENTITY_BINDING_ANNOTATION: &str = "azure.workload.identity/use-identity-binding";
/// Service-account annotation naming the client id of the identity to use.
pub const SA_CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
/// Service-account annotation naming the tenant id (default: the webhook's tenant).
pub const SA_TENANT_ID_ANNOTATION: &str = "azure.workload.identity/tenant-id";
/// Service-account or pod annotation for the projected token lifetime in seconds.
pub const TOKEN_EXPIRATION_ANNOTATION: &str = "azure.workload.identity/service-account-token-expiration";
/// Pod annotation listing `;`-separated container names to leave alone.
pub const SKIP_CONTAINERS_ANNOTATION: &str = "azure.workload.identity/skip-containers";

/// Environment variables injected into pods.
pub mod env {
    /// Client id of the identity.
    pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
    /// Tenant of the identity.
    pub const AZURE_TENANT_ID: &str = "AZURE_TENANT_ID";
    /// Path of the projected service-account token.
    pub const AZURE_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
    /// Entra authority (only its path survives in proxy mode).
    pub const AZURE_AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
    /// `https://` URL of the proxy, no path.
    pub const AZURE_KUBERNETES_TOKEN_PROXY: &str = "AZURE_KUBERNETES_TOKEN_PROXY";
    /// TLS SNI name of the proxy.
    pub const AZURE_KUBERNETES_SNI_NAME: &str = "AZURE_KUBERNETES_SNI_NAME";
    /// PEM file with the proxy's CA.
    pub const AZURE_KUBERNETES_CA_FILE: &str = "AZURE_KUBERNETES_CA_FILE";
}

/// Where the webhook mounts the projected volume in pods.
pub const WI_MOUNT_PATH: &str = "/var/run/secrets/azure/wi";
/// Path of the projected token inside the mount.
pub const WI_TOKEN_PATH: &str = "token/azure-identity-token";
/// Path of the proxy CA inside the mount.
pub const WI_CA_PATH: &str = "ca-cert/ca.crt";

/// Kubernetes recommended label marking objects idbind manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "idbind";
/// Label carrying the client id on generated objects.
pub const CLIENT_ID_LABEL: &str = "idbind.dev/client-id";

/// Name of the ClusterRole (and ClusterRoleBinding) granting use of `client_id`: `use-mi-<clientId>`.
pub fn rbac_object_name(client_id: &ClientId) -> String {
    format!("{RBAC_NAME_PREFIX}{client_id}")
}

/// The base URL under which per-identity issuers live (`https://issuer.example.com/path`).
///
/// Normalised once, here: the scheme must be `https` (or `http` for loopback hosts, for tests and
/// the sandbox), there is no query or fragment, and trailing slashes are removed.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IssuerBaseUrl(String);

impl IssuerBaseUrl {
    /// Parses and normalises a base URL.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let err = |reason: &str| Error::InvalidIssuerUrl {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(input.trim()).map_err(|e| err(&format!("it is not a URL ({e})")))?;
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => return Err(err("it has no host")),
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => return Err(err("plain http is allowed only for loopback hosts; use https")),
            other => return Err(err(&format!("scheme '{other}' is not https"))),
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(err("it must not have a query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(err("it must not carry credentials"));
        }
        let s = url.as_str().trim_end_matches('/').to_owned();
        Ok(Self(s))
    }

    /// The normalised URL, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The issuer of one identity: `{base}/{tenantId}/{clientId}`.
    pub fn issuer_for(&self, tenant: &TenantId, client: &ClientId) -> String {
        format!("{}/{tenant}/{client}", self.0)
    }
}

impl fmt::Display for IssuerBaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for IssuerBaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IssuerBaseUrl({})", self.0)
    }
}

impl FromStr for IssuerBaseUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl TryFrom<String> for IssuerBaseUrl {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::parse(&s)
    }
}

impl From<IssuerBaseUrl> for String {
    fn from(u: IssuerBaseUrl) -> String {
        u.0
    }
}

/// Discovery document URL of an issuer.
pub fn discovery_url(issuer: &str) -> String {
    format!("{issuer}/.well-known/openid-configuration")
}

/// JWKS URL of an issuer.
pub fn jwks_url(issuer: &str) -> String {
    format!("{issuer}/openid/v1/jwks")
}

/// Checks a federated identity credential name as Entra does: 3–120 characters, alphanumeric,
/// `-` or `_`, first character alphanumeric.
pub fn validate_fic_name(name: &str) -> Result<(), Error> {
    let err = |reason: &str| Error::InvalidFicName {
        input: name.to_owned(),
        reason: reason.to_owned(),
    };
    if !(3..=120).contains(&name.len()) {
        return Err(err("it must be 3 to 120 characters long"));
    }
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return Err(err("the first character must be a letter or digit"));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(err("only letters, digits, '-' and '_' are allowed"));
    }
    Ok(())
}

/// The federated identity credential idbind keeps on one identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FicSpec {
    /// FIC name (default [`DEFAULT_FIC_NAME`]).
    pub name: String,
    /// The per-identity issuer URL.
    pub issuer: String,
    /// The identity's resource ID in lower case.
    pub subject: String,
    /// Always [`ENTRA_FIC_AUDIENCE`].
    pub audience: String,
}

impl FicSpec {
    /// Derives the FIC for an identity.
    pub fn derive(
        name: &str,
        base: &IssuerBaseUrl,
        identity: &IdentityResourceId,
        tenant: &TenantId,
        client: &ClientId,
    ) -> Result<Self, Error> {
        validate_fic_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            issuer: base.issuer_for(tenant, client),
            subject: identity.to_lowercase(),
            audience: ENTRA_FIC_AUDIENCE.to_owned(),
        })
    }

    /// Whether an existing FIC (any name) serves the same purpose: same issuer and subject, exactly.
    pub fn matches(&self, issuer: &str, subject: &str) -> bool {
        self.issuer == issuer && self.subject == subject
    }
}

/// Checks a Kubernetes DNS-1123 label (namespace names): lower-case alphanumerics and `-`,
/// starting and ending alphanumeric, at most 63 characters.
pub fn validate_dns_label(what: &'static str, input: &str) -> Result<(), Error> {
    let err = |reason: &str| Error::InvalidName {
        what,
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    if input.is_empty() || input.len() > 63 {
        return Err(err("it must be 1 to 63 characters long"));
    }
    if !input
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(err("only lower-case letters, digits and '-' are allowed"));
    }
    if input.starts_with('-') || input.ends_with('-') {
        return Err(err("it must start and end with a letter or digit"));
    }
    Ok(())
}

/// Checks a Kubernetes DNS-1123 subdomain (service account names): dot-separated labels, at most
/// 253 characters.
pub fn validate_dns_subdomain(what: &'static str, input: &str) -> Result<(), Error> {
    let err = |reason: &str| Error::InvalidName {
        what,
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    if input.is_empty() || input.len() > 253 {
        return Err(err("it must be 1 to 253 characters long"));
    }
    for part in input.split('.') {
        validate_dns_label(what, part)
            .map_err(|_| err("each '.'-separated part must be lower-case letters, digits and '-', starting and ending alphanumeric"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (IdentityResourceId, TenantId, ClientId) {
        (
            IdentityResourceId::parse(
                "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/MyId",
            )
            .unwrap(),
            TenantId::parse("11111111-1111-1111-1111-111111111111").unwrap(),
            ClientId::parse("22222222-2222-2222-2222-222222222222").unwrap(),
        )
    }

    #[test]
    fn issuer_base_trailing_slashes_are_removed_once() {
        let (_, t, c) = ids();
        for input in [
            "https://issuer.example.com/ib",
            "https://issuer.example.com/ib/",
            "https://issuer.example.com/ib//",
        ] {
            let base = IssuerBaseUrl::parse(input).unwrap();
            assert_eq!(base.as_str(), "https://issuer.example.com/ib");
            assert_eq!(
                base.issuer_for(&t, &c),
                "https://issuer.example.com/ib/11111111-1111-1111-1111-111111111111/22222222-2222-2222-2222-222222222222"
            );
        }
        let root = IssuerBaseUrl::parse("https://issuer.example.com/").unwrap();
        assert_eq!(root.as_str(), "https://issuer.example.com");
        assert_eq!(
            IssuerBaseUrl::parse("http://127.0.0.1:8080/x").unwrap().as_str(),
            "http://127.0.0.1:8080/x"
        );
        assert_eq!(
            IssuerBaseUrl::parse("http://localhost:1").unwrap().as_str(),
            "http://localhost:1"
        );
    }

    #[test]
    fn issuer_base_rejections() {
        for (input, want) in [
            ("issuer.example.com", "not a URL"),
            ("http://issuer.example.com", "only for loopback"),
            ("ftp://issuer.example.com", "not https"),
            ("https://issuer.example.com/?a=b", "query or fragment"),
            ("https://issuer.example.com/#f", "query or fragment"),
            ("https://u:p@issuer.example.com/", "credentials"),
        ] {
            let err = IssuerBaseUrl::parse(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn fic_spec_derivation_lower_cases_the_subject() {
        let (id, t, c) = ids();
        let base = IssuerBaseUrl::parse("https://issuer.example.com/").unwrap();
        let fic = FicSpec::derive(DEFAULT_FIC_NAME, &base, &id, &t, &c).unwrap();
        assert_eq!(fic.name, "idbind");
        assert_eq!(fic.issuer, format!("https://issuer.example.com/{t}/{c}"));
        assert_eq!(
            fic.subject,
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourcegroups/rg/providers/microsoft.managedidentity/userassignedidentities/myid"
        );
        assert_eq!(fic.audience, "api://AzureADTokenExchange");
        assert!(fic.matches(&fic.issuer.clone(), &fic.subject.clone()));
        assert!(!fic.matches(&format!("{}/", fic.issuer), &fic.subject));
        assert!(!fic.matches(&fic.issuer, id.as_str()));
        assert!(FicSpec::derive("x", &base, &id, &t, &c).is_err());
    }

    #[test]
    fn fic_names() {
        for ok in ["idbind", "aks-identity-binding", "a_b", "A1-", &"a".repeat(120)] {
            validate_fic_name(ok).unwrap();
        }
        for (bad, want) in [
            ("ab", "3 to 120"),
            (&*"a".repeat(121), "3 to 120"),
            ("-ab", "first character"),
            ("a.b", "only letters"),
        ] {
            let err = validate_fic_name(bad).unwrap_err().to_string();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn rbac_names_and_urls() {
        let (_, _, c) = ids();
        assert_eq!(
            rbac_object_name(&c),
            "use-mi-22222222-2222-2222-2222-222222222222"
        );
        assert_eq!(
            discovery_url("https://i/x"),
            "https://i/x/.well-known/openid-configuration"
        );
        assert_eq!(jwks_url("https://i/x"), "https://i/x/openid/v1/jwks");
    }

    #[test]
    fn kubernetes_names() {
        validate_dns_label("namespace", "team-a").unwrap();
        validate_dns_subdomain("service account", "app.v1").unwrap();
        for bad in ["", "Team", "-a", "a-", "a_b", &"a".repeat(64)] {
            assert!(validate_dns_label("namespace", bad).is_err(), "{bad}");
        }
        assert!(validate_dns_subdomain("service account", "a..b").is_err());
        let err = validate_dns_label("namespace", "Team").unwrap_err().to_string();
        assert!(err.contains("namespace") && err.contains("Team"), "{err}");
    }
}
