//! Which Azure cloud to talk to: the Entra authority host, the ARM endpoint and the ARM scope.

use std::fmt;
use std::str::FromStr;

use url::Url;

use crate::{Error, Result};

/// The scope of ARM tokens in the public cloud (also what the idbind emulator expects).
pub const PUBLIC_ARM_SCOPE: &str = "https://management.azure.com/.default";

/// Endpoints of one Azure cloud.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloudConfig {
    /// Entra authority host, e.g. `https://login.microsoftonline.com/`.
    pub authority_host: Url,
    /// ARM endpoint, e.g. `https://management.azure.com/`.
    pub arm_endpoint: Url,
    /// Scope of ARM tokens, e.g. `https://management.azure.com/.default`.
    pub arm_scope: String,
}

impl CloudConfig {
    /// Azure public cloud.
    pub fn public() -> Self {
        Self::known(
            "https://login.microsoftonline.com/",
            "https://management.azure.com/",
            PUBLIC_ARM_SCOPE,
        )
    }

    /// Azure US Government.
    pub fn us_government() -> Self {
        Self::known(
            "https://login.microsoftonline.us/",
            "https://management.usgovcloudapi.net/",
            "https://management.usgovcloudapi.net/.default",
        )
    }

    /// Azure operated by 21Vianet (China).
    pub fn china() -> Self {
        Self::known(
            "https://login.chinacloudapi.cn/",
            "https://management.chinacloudapi.cn/",
            "https://management.chinacloudapi.cn/.default",
        )
    }

    /// Any other cloud, or an emulator (`custom(base, base, PUBLIC_ARM_SCOPE)`).
    ///
    /// Both URLs must be `https`, or `http` on a loopback host (emulators); they must not carry a
    /// query, a fragment or credentials. A path is kept (a trailing `/` is added).
    pub fn custom(authority_host: &str, arm_endpoint: &str, arm_scope: &str) -> Result<Self> {
        if arm_scope.trim().is_empty() || arm_scope.trim() != arm_scope {
            return Err(Error::config(
                "ARM scope",
                format!("{arm_scope:?} must be a non-empty scope like {PUBLIC_ARM_SCOPE:?}"),
            ));
        }
        Ok(Self {
            authority_host: endpoint_url("authority host", authority_host)?,
            arm_endpoint: endpoint_url("ARM endpoint", arm_endpoint)?,
            arm_scope: arm_scope.to_owned(),
        })
    }

    /// A cloud by name: `public` (`AzurePublicCloud`, `AzureCloud`), `usgovernment`
    /// (`AzureUSGovernment`, `AzureUSGovernmentCloud`) or `china` (`AzureChinaCloud`), any case.
    pub fn by_name(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "public" | "azurepubliccloud" | "azurecloud" => Ok(Self::public()),
            "usgovernment" | "usgov" | "azureusgovernment" | "azureusgovernmentcloud" => {
                Ok(Self::us_government())
            }
            "china" | "azurechinacloud" => Ok(Self::china()),
            _ => Err(Error::config(
                "cloud name",
                format!("{name:?} is not one of public, usgovernment, china"),
            )),
        }
    }

    fn known(authority: &str, arm: &str, scope: &str) -> Self {
        let parse = |s: &str| Url::parse(s).unwrap_or_else(|_| unreachable!("constant URL {s} parses"));
        Self {
            authority_host: parse(authority),
            arm_endpoint: parse(arm),
            arm_scope: scope.to_owned(),
        }
    }
}

impl FromStr for CloudConfig {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::by_name(s)
    }
}

impl fmt::Debug for CloudConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudConfig")
            .field("authority_host", &self.authority_host.as_str())
            .field("arm_endpoint", &self.arm_endpoint.as_str())
            .field("arm_scope", &self.arm_scope)
            .finish()
    }
}

/// Parses an endpoint base URL: https (or http on loopback), no query, fragment or userinfo,
/// always ending in `/` so that relative paths join under it.
pub(crate) fn endpoint_url(what: &'static str, input: &str) -> Result<Url> {
    let err = |reason: String| Error::config(what, format!("{input:?}: {reason}"));
    let mut url = Url::parse(input.trim()).map_err(|e| err(format!("not a URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(err(
                "plain http is allowed only for loopback hosts; use https".into()
            ));
        }
        other => return Err(err(format!("scheme {other:?} is not https"))),
    }
    if url.host().is_none() {
        return Err(err("it has no host".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(err("it must not have a query or fragment".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(err("it must not carry credentials".into()));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Whether `candidate` points at the same scheme, host and port as `base` (bearer tokens are only
/// sent there).
pub(crate) fn same_origin(base: &Url, candidate: &Url) -> bool {
    base.scheme() == candidate.scheme()
        && base.host_str().map(str::to_ascii_lowercase) == candidate.host_str().map(str::to_ascii_lowercase)
        && base.port_or_known_default() == candidate.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_point_at_their_clouds() {
        let p = CloudConfig::public();
        assert_eq!(p.authority_host.as_str(), "https://login.microsoftonline.com/");
        assert_eq!(p.arm_endpoint.as_str(), "https://management.azure.com/");
        assert_eq!(p.arm_scope, PUBLIC_ARM_SCOPE);
        assert_eq!(
            CloudConfig::us_government().authority_host.host_str(),
            Some("login.microsoftonline.us")
        );
        assert_eq!(
            CloudConfig::china().arm_scope,
            "https://management.chinacloudapi.cn/.default"
        );
        assert_eq!(
            "AzureUSGovernment".parse::<CloudConfig>().unwrap(),
            CloudConfig::us_government()
        );
        assert_eq!(
            CloudConfig::by_name("AZURECHINACLOUD").unwrap(),
            CloudConfig::china()
        );
        let err = CloudConfig::by_name("mars").unwrap_err().to_string();
        assert!(err.contains("mars") && err.contains("public"), "{err}");
    }

    #[test]
    fn custom_accepts_loopback_http_and_normalises_paths() {
        let c = CloudConfig::custom(
            "http://127.0.0.1:8080",
            "http://localhost:8080/arm",
            PUBLIC_ARM_SCOPE,
        )
        .unwrap();
        assert_eq!(c.authority_host.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(c.arm_endpoint.as_str(), "http://localhost:8080/arm/");
    }

    #[test]
    fn custom_rejections_name_the_setting() {
        let cases = [
            (
                "http://example.com",
                "https://ok/",
                PUBLIC_ARM_SCOPE,
                "authority host",
            ),
            ("https://ok/", "ftp://x/", PUBLIC_ARM_SCOPE, "ARM endpoint"),
            ("https://ok/", "https://x/?a=b", PUBLIC_ARM_SCOPE, "query"),
            ("https://u:p@ok/", "https://x/", PUBLIC_ARM_SCOPE, "credentials"),
            ("not a url", "https://x/", PUBLIC_ARM_SCOPE, "not a URL"),
            ("https://ok/", "https://x/", "", "ARM scope"),
        ];
        for (a, b, s, want) in cases {
            let err = CloudConfig::custom(a, b, s).unwrap_err().to_string();
            assert!(err.contains(want), "{a} {b} {s}: {err}");
        }
    }

    #[test]
    fn same_origin_compares_scheme_host_and_port() {
        let base = Url::parse("https://management.azure.com/").unwrap();
        assert!(same_origin(
            &base,
            &Url::parse("https://MANAGEMENT.azure.com:443/x?y").unwrap()
        ));
        assert!(!same_origin(
            &base,
            &Url::parse("http://management.azure.com/").unwrap()
        ));
        assert!(!same_origin(&base, &Url::parse("https://evil.example/").unwrap()));
        assert!(!same_origin(
            &base,
            &Url::parse("https://management.azure.com:8443/").unwrap()
        ));
    }
}
