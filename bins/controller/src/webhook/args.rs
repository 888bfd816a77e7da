//! Flags of the admission webhook (flattened into [`crate::args::Args`]).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args as ClapArgs;

use super::configuration::{ClientTarget, WebhookConfigSettings};
use super::mutate::InjectionSettings;
use crate::args::{Args, Cloud};
use crate::certs::args::{dedup, duration, split_names};
use crate::certs::state::{CertPolicy, Subject};
use crate::{Error, Result};

/// Path the webhook serves AdmissionReviews on.
pub const MUTATE_PATH: &str = "/mutate-v1-pod";

/// The mutating admission webhook: server, certificate, MutatingWebhookConfiguration and what it
/// injects into pods.
#[derive(Clone, Debug, ClapArgs)]
pub struct WebhookArgs {
    /// Run the admission webhook (server on every replica; certificate and configuration managed
    /// by the leader).
    #[arg(long = "webhook", env = "IDBIND_WEBHOOK", default_value_t = true, action = clap::ArgAction::Set)]
    pub webhook_enabled: bool,
    /// Address of the webhook's HTTPS server.
    #[arg(long, env = "IDBIND_WEBHOOK_LISTEN", default_value = "0.0.0.0:9443")]
    pub webhook_listen: SocketAddr,
    /// Call the webhook at this `https://` URL (`clientConfig.url`) instead of through its
    /// Service; an empty path means `/mutate-v1-pod`, and port 0 means the port
    /// `--webhook-listen` bound (local runs).
    #[arg(long, env = "IDBIND_WEBHOOK_URL")]
    pub webhook_url: Option<url::Url>,
    /// The webhook's Service (in `--namespace`), used in `clientConfig.service` and the
    /// certificate.
    #[arg(long, env = "IDBIND_WEBHOOK_SERVICE", default_value = "idbind-webhook")]
    pub webhook_service: String,
    /// Port of the webhook's Service.
    #[arg(long, env = "IDBIND_WEBHOOK_SERVICE_PORT", default_value_t = 443)]
    pub webhook_service_port: u16,
    /// Name of the MutatingWebhookConfiguration (created if missing; its idbind webhook's
    /// `clientConfig` is kept in sync).
    #[arg(long, env = "IDBIND_WEBHOOK_CONFIGURATION", default_value = "idbind")]
    pub webhook_configuration: String,
    /// Secret (in `--namespace`) holding the webhook's CAs, rotation state and serving
    /// certificate; every replica serves the certificate it holds.
    #[arg(long, env = "IDBIND_WEBHOOK_SECRET", default_value = "idbind-webhook-tls")]
    pub webhook_secret: String,
    /// More names (DNS names or IP addresses, comma-separated) for the webhook certificate.
    #[arg(long, env = "IDBIND_WEBHOOK_TLS_EXTRA_NAMES", value_delimiter = ',')]
    pub webhook_tls_extra_names: Vec<String>,
    /// Lifetime of a webhook CA.
    #[arg(long, env = "IDBIND_WEBHOOK_CA_VALIDITY", value_parser = duration, default_value = "365d")]
    pub webhook_ca_validity: Duration,
    /// Start renewing the webhook CA this long before it expires.
    #[arg(long, env = "IDBIND_WEBHOOK_CA_RENEW_BEFORE", value_parser = duration, default_value = "30d")]
    pub webhook_ca_renew_before: Duration,
    /// Lifetime of the webhook serving certificate.
    #[arg(long, env = "IDBIND_WEBHOOK_CERT_VALIDITY", value_parser = duration, default_value = "30d")]
    pub webhook_cert_validity: Duration,
    /// Re-issue the webhook serving certificate this long before it expires.
    #[arg(long, env = "IDBIND_WEBHOOK_CERT_RENEW_BEFORE", value_parser = duration, default_value = "10d")]
    pub webhook_cert_renew_before: Duration,
    /// How long a new webhook CA is in `caBundle` before it signs (the API server's informer and
    /// every replica's Secret watch must have seen it).
    #[arg(long, env = "IDBIND_WEBHOOK_CA_PROPAGATION_DELAY", value_parser = duration, default_value = "5m")]
    pub webhook_ca_propagation_delay: Duration,
    /// How long the old webhook CA stays in `caBundle` after the switch.
    #[arg(long, env = "IDBIND_WEBHOOK_CA_RETIRE_DELAY", value_parser = duration, default_value = "5m")]
    pub webhook_ca_retire_delay: Duration,
    /// `AZURE_TENANT_ID` for pods whose service account has no tenant annotation (default:
    /// `--azure-tenant-id`).
    #[arg(long, env = "IDBIND_DEFAULT_TENANT_ID")]
    pub default_tenant_id: Option<String>,
    /// `AZURE_AUTHORITY_HOST` injected into pods (default: the `--azure-cloud`'s Entra host, or
    /// `--azure-authority-host` for a custom cloud).
    #[arg(long, env = "IDBIND_POD_AUTHORITY_HOST")]
    pub pod_authority_host: Option<url::Url>,
    /// `AZURE_KUBERNETES_TOKEN_PROXY` injected into pods: an `https://host[:port]` URL without a
    /// path (default `https://<proxy-service>.<namespace>.svc`).
    #[arg(long, env = "IDBIND_TOKEN_PROXY_URL")]
    pub token_proxy_url: Option<url::Url>,
    /// Audience of the service-account token projected into pods.
    #[arg(long, env = "IDBIND_SA_TOKEN_AUDIENCE", default_value = idbind_model::DEFAULT_SA_TOKEN_AUDIENCE)]
    pub sa_token_audience: String,
}

impl WebhookArgs {
    /// What the webhook injects, from all flags; every bad value is named.
    pub fn injection(args: &Args) -> Result<InjectionSettings> {
        let w = &args.webhook;
        let ns = &args.cluster.namespace;
        let token_proxy = match &w.token_proxy_url {
            Some(url) => proxy_url(url)?,
            None => format!("https://{}.{ns}.svc", args.proxy_tls.proxy_service),
        };
        if w.sa_token_audience.trim().is_empty() {
            return Err(Error::config("--sa-token-audience", "it is empty"));
        }
        if w.sa_token_audience
            .eq_ignore_ascii_case(idbind_model::ENTRA_FIC_AUDIENCE)
        {
            return Err(Error::config(
                "--sa-token-audience",
                format!(
                    "{} is the audience of plain workload identity; identity-binding tokens need their \
                     own (default {})",
                    idbind_model::ENTRA_FIC_AUDIENCE,
                    idbind_model::DEFAULT_SA_TOKEN_AUDIENCE
                ),
            ));
        }
        Ok(InjectionSettings {
            default_tenant_id: w
                .default_tenant_id
                .clone()
                .or_else(|| args.azure.azure_tenant_id.clone()),
            authority_host: authority_host(args)?,
            token_proxy,
            sni_name: args.proxy_tls.sni_name(ns),
            audience: w.sa_token_audience.clone(),
            ca_configmap: args.proxy_tls.proxy_ca_configmap.clone(),
        })
    }

    /// Where the API server calls the webhook; `bound` is the address the server listens on
    /// (fills in port 0 of `--webhook-url`).
    pub fn target(&self, namespace: &str, bound: Option<SocketAddr>) -> Result<ClientTarget> {
        let Some(url) = &self.webhook_url else {
            return Ok(ClientTarget::Service {
                namespace: namespace.to_owned(),
                name: self.webhook_service.clone(),
                port: self.webhook_service_port,
                path: MUTATE_PATH.to_owned(),
            });
        };
        let bad = |reason: &str| Error::config("--webhook-url", format!("{url}: {reason}"));
        if url.scheme() != "https" {
            return Err(bad("the API server calls webhooks over https only"));
        }
        if url.host_str().is_none_or(str::is_empty) || !url.username().is_empty() || url.password().is_some()
        {
            return Err(bad(
                "expected https://host[:port][/path] without user information",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a webhook URL may not have a query or fragment"));
        }
        let mut url = url.clone();
        if url.port() == Some(0) {
            let port = bound
                .map(|a| a.port())
                .ok_or_else(|| bad("port 0 needs a bound --webhook-listen"))?;
            url.set_port(Some(port))
                .map_err(|()| bad("cannot set the port"))?;
        }
        if url.path().is_empty() || url.path() == "/" {
            url.set_path(MUTATE_PATH);
        }
        Ok(ClientTarget::Url(url.to_string()))
    }

    /// Names of the webhook serving certificate: the URL's host, or the Service's DNS names; plus
    /// `--webhook-tls-extra-names`.
    pub fn subject(&self, namespace: &str, cluster_domain: &str) -> Result<Subject> {
        let mut names = Vec::new();
        match &self.webhook_url {
            Some(url) => names.push(url.host_str().unwrap_or_default().to_owned()),
            None => {
                let svc = &self.webhook_service;
                names.push(format!("{svc}.{namespace}.svc"));
                names.push(format!("{svc}.{namespace}.svc.{cluster_domain}"));
            }
        }
        names.extend(self.webhook_tls_extra_names.iter().cloned());
        let (dns, ips) = split_names(&names, "--webhook-url/--webhook-tls-extra-names")?;
        Ok(Subject {
            ca_name: "idbind webhook CA".to_owned(),
            dns_names: dedup(dns),
            ips,
        })
    }

    /// The rotation policy of the webhook's certificates, validated.
    pub fn policy(&self) -> Result<CertPolicy> {
        let policy = CertPolicy {
            ca_validity: self.webhook_ca_validity,
            ca_renew_before: self.webhook_ca_renew_before,
            cert_validity: self.webhook_cert_validity,
            cert_renew_before: self.webhook_cert_renew_before,
            propagation_delay: self.webhook_ca_propagation_delay,
            retire_delay: self.webhook_ca_retire_delay,
        };
        policy.validate("--webhook-")?;
        Ok(policy)
    }

    /// Settings of the MutatingWebhookConfiguration.
    pub fn configuration(&self, namespace: &str, target: ClientTarget) -> WebhookConfigSettings {
        WebhookConfigSettings {
            name: self.webhook_configuration.clone(),
            target,
            exclude_namespace: namespace.to_owned(),
        }
    }
}

/// `AZURE_KUBERNETES_TOKEN_PROXY` must be `https://host[:port]` with no path: the JS and
/// Python-beta SDKs re-apply a path prefix on every retry (PROTOCOL.md §1.3).
fn proxy_url(url: &url::Url) -> Result<String> {
    let bad = |reason: &str| Error::config("--token-proxy-url", format!("{url}: {reason}"));
    if url.scheme() != "https" {
        return Err(bad("the SDKs accept only https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(bad("no user information, query or fragment allowed"));
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err(bad(
            "no path allowed (SDKs re-apply a path prefix on every retry)",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn authority_host(args: &Args) -> Result<String> {
    let with_slash = |s: &str| {
        if s.ends_with('/') {
            s.to_owned()
        } else {
            format!("{s}/")
        }
    };
    if let Some(url) = &args.webhook.pod_authority_host {
        if url.scheme() != "https" {
            return Err(Error::config(
                "--pod-authority-host",
                format!("{url}: expected an https URL"),
            ));
        }
        return Ok(with_slash(url.as_str()));
    }
    Ok(match args.azure.azure_cloud {
        Cloud::Public => "https://login.microsoftonline.com/".to_owned(),
        Cloud::Usgov => "https://login.microsoftonline.us/".to_owned(),
        Cloud::China => "https://login.chinacloudapi.cn/".to_owned(),
        Cloud::Custom => match &args.azure.azure_authority_host {
            Some(host) => with_slash(host),
            None => {
                return Err(Error::config(
                    "--pod-authority-host",
                    "with --azure-cloud custom, set --pod-authority-host or --azure-authority-host",
                ));
            }
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::{IpAddr, Ipv4Addr};

    use clap::Parser as _;

    use super::*;

    fn parse(extra: &[&str]) -> Args {
        let mut argv = vec![
            "idbind-controller",
            "--cluster-name",
            "east",
            "--issuer-base-url",
            "https://issuer.example.com/ib",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    #[test]
    fn defaults_work_in_cluster() {
        let args = parse(&["--azure-tenant-id", "t-1"]);
        assert!(args.webhook.webhook_enabled && args.proxy_tls.proxy_tls_managed);
        let injection = WebhookArgs::injection(&args).unwrap();
        assert_eq!(injection.token_proxy, "https://idbind-proxy.idbind.svc");
        assert_eq!(injection.sni_name, "idbind-proxy.idbind.svc");
        assert_eq!(injection.default_tenant_id.as_deref(), Some("t-1"));
        assert_eq!(injection.authority_host, "https://login.microsoftonline.com/");
        assert_eq!(injection.audience, "api://AKSIdentityBinding");
        assert_eq!(injection.ca_configmap, "idbind-proxy-ca");
        let target = args.webhook.target("idbind", None).unwrap();
        assert_eq!(
            target,
            ClientTarget::Service {
                namespace: "idbind".into(),
                name: "idbind-webhook".into(),
                port: 443,
                path: "/mutate-v1-pod".into()
            }
        );
        let subject = args.webhook.subject("idbind", "cluster.local").unwrap();
        assert_eq!(
            subject.dns_names,
            [
                "idbind-webhook.idbind.svc",
                "idbind-webhook.idbind.svc.cluster.local"
            ]
        );
        args.webhook.policy().unwrap();
        let proxy = args.proxy_tls.subject("idbind").unwrap();
        assert_eq!(
            proxy.dns_names,
            [
                "idbind-proxy.idbind.svc",
                "idbind-proxy",
                "idbind-proxy.idbind",
                "idbind-proxy.idbind.svc.cluster.local"
            ]
        );
        args.proxy_tls.policy().unwrap();
    }

    #[test]
    fn local_url_takes_the_bound_port_and_the_default_path() {
        let args = parse(&[
            "--webhook-url",
            "https://127.0.0.1:0",
            "--webhook-tls-extra-names",
            "localhost",
        ]);
        let bound = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9443);
        let target = args.webhook.target("idbind", Some(bound)).unwrap();
        assert_eq!(
            target,
            ClientTarget::Url("https://127.0.0.1:9443/mutate-v1-pod".into())
        );
        let subject = args.webhook.subject("idbind", "cluster.local").unwrap();
        assert_eq!(subject.ips, [IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        assert_eq!(subject.dns_names, ["localhost"]);
        let e = args.webhook.target("idbind", None).unwrap_err().to_string();
        assert!(e.contains("port 0"), "{e}");
        let e = parse(&["--webhook-url", "http://127.0.0.1:9443"])
            .webhook
            .target("idbind", None)
            .unwrap_err();
        assert!(e.to_string().contains("https only"), "{e}");
    }

    #[test]
    fn bad_injection_settings_are_named() {
        let e =
            WebhookArgs::injection(&parse(&["--token-proxy-url", "https://proxy.example/p"])).unwrap_err();
        assert!(
            e.to_string().contains("--token-proxy-url") && e.to_string().contains("no path"),
            "{e}"
        );
        let e = WebhookArgs::injection(&parse(&["--token-proxy-url", "http://proxy.example"])).unwrap_err();
        assert!(e.to_string().contains("only https"), "{e}");
        let ok =
            WebhookArgs::injection(&parse(&["--token-proxy-url", "https://proxy.example:8443/"])).unwrap();
        assert_eq!(ok.token_proxy, "https://proxy.example:8443");
        let e = WebhookArgs::injection(&parse(&["--sa-token-audience", "api://AzureADTokenExchange"]))
            .unwrap_err();
        assert!(e.to_string().contains("--sa-token-audience"), "{e}");
        let e = WebhookArgs::injection(&parse(&["--azure-cloud", "custom"])).unwrap_err();
        assert!(e.to_string().contains("--pod-authority-host"), "{e}");
        let custom = parse(&[
            "--azure-cloud",
            "custom",
            "--azure-authority-host",
            "https://login.example",
        ]);
        assert_eq!(
            WebhookArgs::injection(&custom).unwrap().authority_host,
            "https://login.example/"
        );
        let e = parse(&["--webhook-ca-renew-before", "1m"])
            .webhook
            .policy()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--webhook-ca-renew-before"), "{e}");
        let e = parse(&["--proxy-tls-extra-names", "not a name"])
            .proxy_tls
            .subject("idbind")
            .unwrap_err();
        assert!(e.to_string().contains("--proxy-tls-extra-names"), "{e}");
    }
}
