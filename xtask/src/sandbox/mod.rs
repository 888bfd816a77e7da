//! `cargo xtask sandbox [--once] [--check] [--dir DIR]`: idbind on this machine, with the Azure
//! and Kubernetes emulators, as a newcomer's first command.
//!
//! It builds the binaries, starts the Azure emulator, one Kubernetes API emulator,
//! `idbind-controller` (serving a directory issuer on loopback), kubelet-lite and `idbind-proxy`
//! as separate processes; creates a managed identity, an IdentityBinding allowing `apps/workload`
//! and a pod of that service account (mutated by the webhook); gets a token through the proxy as
//! the pod's SDK would; and prints what it did. It leaves in DIR (default `target/sandbox`) a
//! `kubeconfig`, an `env.sh` with the pod's `AZURE_*` variables (the token file is kept fresh
//! while the sandbox runs) and the logs. Without `--once` it runs until Ctrl-C.

mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;

use crate::stack::azure::{AzureEmulator, Identity};
use crate::stack::client::{self, PodEnv, PythonOutcome, TokenOutcome};
use crate::stack::cluster::{Cluster, ClusterOptions, IssuerRole};
use crate::stack::{Binaries, workdir};
use crate::util;

/// The cluster's name (prefix of its key ids).
const CLUSTER: &str = "sandbox";
const RESOURCE_GROUP: &str = "sandbox";
const IDENTITY: &str = "sandbox-app";
const BINDING: &str = "sandbox-app";
const NAMESPACE: &str = "apps";
const SERVICE_ACCOUNT: &str = "workload";
const POD: &str = "workload";
/// The scope of the demonstration token.
pub const SCOPE: &str = "https://management.azure.com/.default";

/// Arguments of `cargo xtask sandbox`.
#[derive(Args, Debug)]
pub struct SandboxArgs {
    /// Stop after the first token exchange: exit 0 if it worked, non-zero otherwise.
    #[arg(long)]
    pub once: bool,
    /// Like --once, and also check what the report tells a new user to try: `source env.sh` and
    /// the Python azure-identity snippet get a token, `kubectl get identitybindings` lists the
    /// binding as Ready.
    #[arg(long)]
    pub check: bool,
    /// Directory for the kubeconfig, env.sh, logs and pod volumes (default: target/sandbox).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Runs the command.
pub fn run(args: &SandboxArgs) -> Result<()> {
    let dir = match &args.dir {
        Some(d) => std::path::absolute(d).with_context(|| format!("resolving {}", d.display()))?,
        None => util::root().join("target/sandbox"),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(sandbox(args, &dir))
}

fn progress(what: &str) {
    eprintln!("sandbox: {what}");
}

/// A step that names itself and its time; errors name the step.
async fn step<T>(what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    let started = Instant::now();
    eprintln!("sandbox: {what} ...");
    let result = fut.await.with_context(|| format!("sandbox step failed: {what}"));
    if result.is_ok() {
        eprintln!("sandbox: {what}: done in {:.1}s", started.elapsed().as_secs_f32());
    }
    result
}

async fn sandbox(args: &SandboxArgs, dir: &Path) -> Result<()> {
    let started = Instant::now();
    workdir::prepare(dir, "sandbox")?;
    let logs = dir.join("logs");
    progress("building the binaries (cargo build)");
    let binaries = tokio::task::block_in_place(Binaries::build)?;
    let build = started.elapsed();
    let started = Instant::now();

    let mut azure = step(
        "starting the Azure emulator (Entra + ARM)",
        AzureEmulator::start(&binaries.emulator, &logs, 0),
    )
    .await?;
    let mut pids = workdir::Pids::new(dir, "sandbox");
    pids.add("azure-emulator", azure.process().pid(), &binaries.emulator);
    let options = ClusterOptions {
        name: CLUSTER.into(),
        dir: dir.to_path_buf(),
        logs: logs.clone(),
        issuer_dir: dir.join("issuer"),
        issuer: IssuerRole::Serve,
        fic_gc: "retain".into(),
    };
    let cluster = step(
        "starting the cluster",
        Cluster::start(options, &binaries, azure.info(), &|what| {
            eprintln!("sandbox:   - {what}");
        }),
    )
    .await;
    let mut cluster = match cluster {
        Ok(c) => c,
        Err(e) => {
            azure.stop().await;
            return Err(e);
        }
    };
    for p in cluster.processes() {
        pids.add(p.name(), p.pid(), p.program());
    }
    pids.write()?;

    let outcome = demonstrate(&cluster, &azure).await;
    let result = match outcome {
        Ok(demo) => {
            std::fs::write(
                dir.join("env.sh"),
                report::env_sh(&demo.env, &format!("{NAMESPACE}/{POD}")),
            )
            .with_context(|| format!("writing {}", dir.join("env.sh").display()))?;
            let text = report::render(&report::Facts {
                dir,
                azure: azure.info(),
                cluster: &cluster,
                demo: &demo,
                running: !(args.once || args.check),
                started,
                build,
            });
            std::fs::write(dir.join("report.txt"), &text).ok();
            println!("{text}");
            if args.check {
                check_like_a_user(dir, &demo).await
            } else if args.once {
                Ok(())
            } else {
                wait_for_stop(&mut cluster, &mut azure).await
            }
        }
        Err(e) => Err(e),
    };
    eprintln!("sandbox: stopping");
    cluster.stop().await;
    azure.stop().await;
    pids.clear();
    result.map_err(|e| e.context(format!("logs are in {}", logs.display())))
}

/// What the demonstration produced.
pub struct Demo {
    /// The identity.
    pub identity: Identity,
    /// The binding's status when Ready.
    pub binding: idbind_model::IdentityBinding,
    /// The identity's FICs (one).
    pub fics: Vec<crate::stack::azure::Fic>,
    /// Key ids in the identity's JWKS.
    pub kids: Vec<String>,
    /// The pod's environment on this host.
    pub env: PodEnv,
    /// The token's claims (Rust client).
    pub claims: serde_json::Value,
    /// The Entra key that signed the token.
    pub signed_by: String,
    /// `expires_in` the proxy answered.
    pub expires_in: i64,
    /// What the Python SDK said, or why it did not run.
    pub python: Result<PythonOutcome, String>,
}

async fn demonstrate(cluster: &Cluster, azure: &AzureEmulator) -> Result<Demo> {
    let identity = step(
        "creating managed identity sandbox/sandbox-app",
        azure.create_identity(RESOURCE_GROUP, IDENTITY),
    )
    .await?;
    let subject = format!("{NAMESPACE}/{SERVICE_ACCOUNT}");
    let binding = step(
        &format!("binding it (IdentityBinding {BINDING}, allowing {subject}) and waiting for Ready"),
        async {
            cluster.bind(BINDING, &identity.resource_id, &[&subject]).await?;
            cluster.wait_ready(BINDING).await
        },
    )
    .await?;
    let fics = azure.list_fics(&identity).await?;
    let issuer = binding
        .status
        .as_ref()
        .and_then(|s| s.oidc_issuer_url.clone())
        .unwrap_or_default();
    let jwks = azure
        .get_json(&idbind_model::jwks_url(&issuer))
        .await?
        .ok_or_else(|| anyhow!("the issuer {issuer} has no JWKS"))?;
    let kids = jwks["keys"]
        .as_array()
        .map(|k| {
            k.iter()
                .filter_map(|k| k["kid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();

    let env = step(
        &format!("creating pod {NAMESPACE}/{POD} (mutated by the webhook; volumes by kubelet-lite)"),
        async {
            cluster
                .run_workload(NAMESPACE, SERVICE_ACCOUNT, POD, &identity.client_id)
                .await
        },
    )
    .await?;

    let (claims, expires_in, signed_by) = step("getting a token through the proxy, as the pod's SDK would", async {
        match client::request_token(&env, SCOPE).await? {
            TokenOutcome::Token { claims, expires_in, token } => {
                let entra_jwks = azure
                    .get_json(&azure.info().jwks_url)
                    .await?
                    .ok_or_else(|| anyhow!("the Azure emulator serves no JWKS"))?;
                let kid = client::verify_signature(&token.0, &entra_jwks)?;
                check_claims(&claims, &identity)?;
                Ok((claims, expires_in, kid))
            }
            TokenOutcome::Refused { status, body } => Err(anyhow!(
                "the proxy answered {status}: {body}; see {} (docs/troubleshooting.md explains the error codes)",
                cluster.proxy_log().display()
            )),
        }
    })
    .await?;

    let python = match tokio::task::block_in_place(client::python) {
        Ok(python) => step(
            "getting a token with Python azure-identity and the pod's environment",
            async { client::python_token(&python, &env, SCOPE).await },
        )
        .await
        .map_err(|e| format!("{e:#}")),
        Err(e) => {
            eprintln!(
                "sandbox: note: Python azure-identity is not available ({e:#}); the Rust client's token stands"
            );
            Err(format!("{e:#}"))
        }
    };
    Ok(Demo {
        identity,
        binding,
        fics,
        kids,
        env,
        claims,
        signed_by,
        expires_in,
        python,
    })
}

/// The token must be the identity's: `appid` = client id, `oid` = principal id, `tid`, and
/// `xms_mirid` = the resource id.
pub fn check_claims(claims: &serde_json::Value, identity: &Identity) -> Result<()> {
    let field = |name: &str| claims[name].as_str().unwrap_or_default().to_owned();
    let expect = [
        ("appid", identity.client_id.as_str()),
        ("oid", identity.principal_id.as_str()),
        ("tid", identity.tenant_id.as_str()),
    ];
    for (name, want) in expect {
        if !field(name).eq_ignore_ascii_case(want) {
            bail!("the token's {name} is {:?}, expected {want}", field(name));
        }
    }
    if !field("xms_mirid").eq_ignore_ascii_case(&identity.resource_id) {
        bail!(
            "the token's xms_mirid is {:?}, expected {}",
            field("xms_mirid"),
            identity.resource_id
        );
    }
    Ok(())
}

/// `--check`: what the report tells a new user to try, done the same way.
async fn check_like_a_user(dir: &Path, demo: &Demo) -> Result<()> {
    let snippet = report::python_snippet(dir)?;
    step(
        "checking: `source env.sh` + the Python snippet get a token",
        async {
            let out = tokio::process::Command::new("bash")
                .arg("-c")
                .arg(&snippet)
                .current_dir(std::env::current_dir().context("the current directory")?)
                .env("NO_PROXY", "127.0.0.1,localhost")
                .output()
                .await
                .context("running bash")?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() || !stdout.contains(report::SNIPPET_SUCCESS) {
                bail!(
                    "the snippet failed ({}):\n{stdout}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            eprint!("{stdout}");
            Ok(())
        },
    )
    .await?;
    step(
        "checking: kubectl get identitybindings lists the binding as Ready",
        async {
            let kubeconfig = dir.join("kubeconfig");
            let out = tokio::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["get", "identitybindings"])
                .output()
                .await
                .context("running kubectl (is it installed?)")?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let ready = stdout.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.first() == Some(&BINDING)
                    && cols.contains(&"True")
                    && cols.contains(&demo.identity.client_id.as_str())
            });
            if !out.status.success() || !ready {
                bail!(
                    "kubectl did not list {BINDING} as Ready ({}):\n{stdout}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            eprint!("{stdout}");
            Ok(())
        },
    )
    .await
}

/// Runs until SIGINT/SIGTERM, or until a process dies.
async fn wait_for_stop(cluster: &mut Cluster, azure: &mut AzureEmulator) -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                r.context("waiting for Ctrl-C")?;
                eprintln!();
                return Ok(());
            }
            _ = term.recv() => return Ok(()),
            _ = tick.tick() => {
                if let Some(why) = cluster.exited() {
                    bail!("{why}");
                }
                if let Some(status) = azure.process().exited() {
                    bail!("the Azure emulator exited ({status}); see {}", azure.process().log().display());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_token_must_be_the_identitys() {
        let identity = Identity {
            resource_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id".into(),
            client_id: "c".into(),
            principal_id: "p".into(),
            tenant_id: "t".into(),
        };
        let mut claims = serde_json::json!({
            "appid": "c", "oid": "p", "tid": "t",
            "xms_mirid": "/subscriptions/s/resourcegroups/rg/providers/microsoft.managedidentity/userassignedidentities/id",
        });
        check_claims(&claims, &identity).unwrap();
        claims["oid"] = "someone-else".into();
        let err = check_claims(&claims, &identity).unwrap_err().to_string();
        assert!(err.contains("oid"), "{err}");
    }
}
