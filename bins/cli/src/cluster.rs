//! Reaching the Kubernetes API as kubectl does: `--kubeconfig` (else `KUBECONFIG`, else
//! `~/.kube/config`, else the in-cluster service account), `--context`, and errors that say which
//! cluster could not be reached and what to check.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::exit::Failure;

/// Which cluster to talk to.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Cluster")]
pub struct KubeArgs {
    /// Kubeconfig file (default: `KUBECONFIG`, which may list several files, else ~/.kube/config,
    /// else the in-cluster service account).
    #[arg(long, env = "IDBIND_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, env = "IDBIND_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// Give up on a Kubernetes API request after this long (e.g. `30s`, `2m`).
    #[arg(long, env = "IDBIND_REQUEST_TIMEOUT", default_value = "30s", value_parser = idbind_model::duration::parse_duration_or_seconds, value_name = "DURATION")]
    pub request_timeout: Duration,
}

/// A connected client and where it points.
#[derive(Clone)]
pub struct Cluster {
    /// The client.
    pub client: kube::Client,
    /// The API server URL.
    pub server: String,
    /// The context name, when a kubeconfig was used.
    pub context: Option<String>,
    /// The context's default namespace.
    pub namespace: String,
}

impl KubeArgs {
    /// Builds a client; nothing is sent yet.
    pub async fn connect(&self) -> anyhow::Result<Cluster> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        let (mut config, context) = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                    Failure::usage(format!("cannot read kubeconfig {}: {e}", path.display()))
                        .hint("pass --kubeconfig with a readable kubeconfig file")
                })?;
                let context = self
                    .context
                    .clone()
                    .or_else(|| kubeconfig.current_context.clone());
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| bad_kubeconfig(&path.display().to_string(), self.context.as_deref(), &e))?;
                (config, context)
            }
            None => match Kubeconfig::read() {
                Ok(kubeconfig) => {
                    let context = self
                        .context
                        .clone()
                        .or_else(|| kubeconfig.current_context.clone());
                    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                        .await
                        .map_err(|e| {
                            bad_kubeconfig("KUBECONFIG / ~/.kube/config", self.context.as_deref(), &e)
                        })?;
                    (config, context)
                }
                Err(kubeconfig_error) => {
                    if self.context.is_some() {
                        return Err(Failure::usage(format!(
                            "--context needs a kubeconfig, and none could be read: {kubeconfig_error}"
                        ))
                        .hint("pass --kubeconfig FILE or set KUBECONFIG")
                        .into());
                    }
                    let config = kube::Config::incluster().map_err(|in_cluster| {
                        Failure::usage(format!(
                            "no cluster configured: no kubeconfig ({kubeconfig_error}) and not running in a \
                             cluster ({in_cluster})"
                        ))
                        .hint("pass --kubeconfig FILE, set KUBECONFIG, or run inside a pod")
                    })?;
                    (config, None)
                }
            },
        };
        config.connect_timeout = Some(self.request_timeout);
        config.read_timeout = Some(self.request_timeout);
        config.write_timeout = Some(self.request_timeout);
        let server = config.cluster_url.to_string();
        let namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config).map_err(|e| {
            Failure::usage(format!("cannot build a Kubernetes client for {server}: {e}")).hint(
                "check the cluster's certificate-authority and the user's credentials in the kubeconfig",
            )
        })?;
        Ok(Cluster {
            client,
            server: server.trim_end_matches('/').to_owned(),
            context,
            namespace,
        })
    }
}

fn bad_kubeconfig(source: &str, context: Option<&str>, e: &kube::config::KubeconfigError) -> Failure {
    let hint = match context {
        Some(c) => format!("check that context '{c}' exists: kubectl config get-contexts"),
        None => "check the kubeconfig: kubectl config view".to_owned(),
    };
    Failure::usage(format!("cannot use kubeconfig {source}: {e}")).hint(hint)
}

impl Cluster {
    /// Turns a Kubernetes API error into a failure naming what was attempted; unreachable API
    /// servers get status 4 and a hint.
    #[allow(clippy::needless_pass_by_value)] // callers hand over the error, as `map_err` does
    pub fn error(&self, action: &str, e: kube::Error) -> anyhow::Error {
        let failure = match &e {
            kube::Error::Api(status) => {
                let message = format!("{action}: the Kubernetes API answered {} {}: {}", status.code, status.reason, status.message);
                match status.code {
                    401 => Failure::failed(message)
                        .hint("the kubeconfig's credentials were not accepted: log in again or pick another --context"),
                    403 => Failure::failed(message).hint(
                        "your Kubernetes user lacks the permission named above: ask a cluster admin, or use another --context",
                    ),
                    _ => Failure::failed(message),
                }
            }
            kube::Error::Auth(_) => Failure::failed(format!("{action}: cannot authenticate to {}: {e}", self.server))
                .hint("check the kubeconfig's user credentials (kubectl config view --minify)"),
            _ => Failure::unreachable(format!("{action}: cannot reach the Kubernetes API at {}{}: {}", self.server, self.context_note(), error_chain(&e)))
                .hint("check that the cluster is running and that --kubeconfig / --context (or KUBECONFIG) point at it"),
        };
        failure.into()
    }

    fn context_note(&self) -> String {
        self.context
            .as_ref()
            .map(|c| format!(" (context {c})"))
            .unwrap_or_default()
    }
}

/// An error and its sources on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
