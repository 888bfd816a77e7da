//! Flags of the proxy's TLS management (flattened into [`crate::args::Args`]).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args as ClapArgs;

use super::state::{CertPolicy, Subject};
use crate::{Error, Result};

/// The proxy's CA, serving certificate and trust bundle.
#[derive(Clone, Debug, ClapArgs)]
pub struct ProxyTlsArgs {
    /// Manage the proxy's CA, serving certificate and bundle (turn off to bring your own Secret
    /// and ConfigMaps, e.g. from cert-manager and trust-manager).
    #[arg(long, env = "IDBIND_PROXY_TLS_MANAGED", default_value_t = true, action = clap::ArgAction::Set)]
    pub proxy_tls_managed: bool,
    /// Name of the proxy's Service (in `--namespace`); its DNS names go into the certificate.
    #[arg(long, env = "IDBIND_PROXY_SERVICE", default_value = "idbind-proxy")]
    pub proxy_service: String,
    /// The cluster's DNS domain.
    #[arg(long, env = "IDBIND_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// TLS name clients send and check (`AZURE_KUBERNETES_SNI_NAME`); default
    /// `<proxy-service>.<namespace>.svc`.
    #[arg(long, env = "IDBIND_SNI_NAME")]
    pub sni_name: Option<String>,
    /// More names (DNS names or IP addresses, comma-separated) for the proxy certificate.
    #[arg(long, env = "IDBIND_PROXY_TLS_EXTRA_NAMES", value_delimiter = ',')]
    pub proxy_tls_extra_names: Vec<String>,
    /// Secret (in `--namespace`) holding the proxy CAs, their rotation state and the serving
    /// certificate. Only the controller reads it.
    #[arg(long, env = "IDBIND_PROXY_CA_SECRET", default_value = "idbind-proxy-ca-key")]
    pub proxy_ca_secret: String,
    /// Secret (in `--namespace`, type `kubernetes.io/tls`) the proxies mount: `tls.crt`, `tls.key`,
    /// and `ca.crt` (the bundle).
    #[arg(long, env = "IDBIND_PROXY_TLS_SECRET", default_value = "idbind-proxy-tls")]
    pub proxy_tls_secret: String,
    /// ConfigMap published in every namespace with the trust bundle under `ca.crt`; the webhook
    /// projects it into pods.
    #[arg(long, env = "IDBIND_PROXY_CA_CONFIGMAP", default_value = "idbind-proxy-ca")]
    pub proxy_ca_configmap: String,
    /// Lifetime of a proxy CA.
    #[arg(long, env = "IDBIND_PROXY_CA_VALIDITY", value_parser = duration, default_value = "365d")]
    pub proxy_ca_validity: Duration,
    /// Start renewing the proxy CA this long before it expires.
    #[arg(long, env = "IDBIND_PROXY_CA_RENEW_BEFORE", value_parser = duration, default_value = "60d")]
    pub proxy_ca_renew_before: Duration,
    /// Lifetime of the proxy serving certificate.
    #[arg(long, env = "IDBIND_PROXY_CERT_VALIDITY", value_parser = duration, default_value = "30d")]
    pub proxy_cert_validity: Duration,
    /// Re-issue the proxy serving certificate this long before it expires.
    #[arg(long, env = "IDBIND_PROXY_CERT_RENEW_BEFORE", value_parser = duration, default_value = "10d")]
    pub proxy_cert_renew_before: Duration,
    /// How long a new proxy CA is in the bundle before it signs: kubelet's ConfigMap sync (about
    /// a minute) plus the slowest SDK's CA file re-read (the Rust SDK: 10 minutes), with margin.
    #[arg(long, env = "IDBIND_PROXY_CA_PROPAGATION_DELAY", value_parser = duration, default_value = "1h")]
    pub proxy_ca_propagation_delay: Duration,
    /// How long the old proxy CA stays in the bundle after the switch: until every proxy serves
    /// the new certificate (kubelet's Secret sync plus the proxy's reload), with margin.
    #[arg(long, env = "IDBIND_PROXY_CA_RETIRE_DELAY", value_parser = duration, default_value = "1h")]
    pub proxy_ca_retire_delay: Duration,
    /// Mirror the TLS Secret into this directory (`tls.crt`, `tls.key`, `ca.crt`), as kubelet
    /// would mount it: for a proxy running outside Kubernetes (sandbox).
    #[arg(long, env = "IDBIND_PROXY_TLS_EXPORT_DIR")]
    pub proxy_tls_export_dir: Option<PathBuf>,
}

impl ProxyTlsArgs {
    /// The SNI name: `--sni-name`, or `<proxy-service>.<namespace>.svc`.
    pub fn sni_name(&self, namespace: &str) -> String {
        self.sni_name
            .clone()
            .unwrap_or_else(|| format!("{}.{namespace}.svc", self.proxy_service))
    }

    /// Names of the proxy serving certificate: the SNI name, the Service's DNS names and
    /// `--proxy-tls-extra-names`, without duplicates, in that order.
    pub fn subject(&self, namespace: &str) -> Result<Subject> {
        let svc = &self.proxy_service;
        let mut names = vec![
            self.sni_name(namespace),
            svc.clone(),
            format!("{svc}.{namespace}"),
            format!("{svc}.{namespace}.svc"),
            format!("{svc}.{namespace}.svc.{}", self.cluster_domain),
        ];
        let (dns, ips) = split_names(&self.proxy_tls_extra_names, "--proxy-tls-extra-names")?;
        names.extend(dns);
        Ok(Subject {
            ca_name: "idbind proxy CA".to_owned(),
            dns_names: dedup(names),
            ips,
        })
    }

    /// The rotation policy, validated.
    pub fn policy(&self) -> Result<CertPolicy> {
        let policy = CertPolicy {
            ca_validity: self.proxy_ca_validity,
            ca_renew_before: self.proxy_ca_renew_before,
            cert_validity: self.proxy_cert_validity,
            cert_renew_before: self.proxy_cert_renew_before,
            propagation_delay: self.proxy_ca_propagation_delay,
            retire_delay: self.proxy_ca_retire_delay,
        };
        policy.validate("--proxy-")?;
        Ok(policy)
    }
}

/// Splits names into DNS names and IP addresses; a DNS name must be usable in a certificate.
pub fn split_names(names: &[String], flag: &str) -> Result<(Vec<String>, Vec<IpAddr>)> {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if let Ok(ip) = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            ips.push(ip);
        } else if rustls::pki_types::DnsName::try_from(name).is_ok() {
            dns.push(name.to_owned());
        } else {
            return Err(Error::config(
                flag,
                format!("{name:?} is neither a DNS name nor an IP address"),
            ));
        }
    }
    Ok((dns, ips))
}

/// Keeps the first of each name.
pub fn dedup(names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    names.into_iter().filter(|n| seen.insert(n.clone())).collect()
}

/// Parses a duration flag (`90s`, `10m`, `1h`, `30d`).
pub fn duration(s: &str) -> std::result::Result<Duration, String> {
    idbind_model::duration::parse_duration(s).map_err(|e| e.to_string())
}
