//! `cargo xtask e2e`: the mission end to end, as real processes on this machine.
//!
//! One Azure emulator (Entra caching issuer documents for [`ENTRA_JWKS_CACHE_SECS`] s, so "once
//! caches expire" is observable), and two member clusters `cluster-a` and `cluster-b`, each a
//! Kubernetes API emulator with its own `idbind-controller` (`--fic-gc=delete`), `idbind-proxy`
//! and kubelet-lite. Both controllers publish into **one** issuer directory store (the directory
//! store locks across processes); cluster A's controller serves it over HTTP on loopback and B's
//! uses the same base URL — one fleet, one issuer per identity.
//!
//! The scenario, one PASS/FAIL line per step (the first failure stops it):
//! 1. one identity bound in both clusters at once → exactly one FIC, and its JWKS holds one key
//!    of each cluster;
//! 2. a pod in each cluster gets a token through its own proxy with the Python SDK
//!    (azure-identity, configured only by the injected environment); `appid`/`oid` are the
//!    identity's;
//! 3. a service account outside `allowedSubjects` is refused (403, Entra-shaped error);
//! 4. cluster B cannot get a token for an identity bound only to A: a malicious B admin stops B's
//!    controller and forges a Ready binding (through the status subresource) and the RBAC, so B's
//!    proxy signs an assertion with B's key — and Entra refuses it (AADSTS700027) because B's key
//!    is not in that identity's JWKS;
//! 5. unbinding A withdraws A's key: the JWKS lists only B's key, A's pod is refused, an
//!    assertion signed with A's key is refused by Entra once its JWKS cache expires, and B still
//!    gets new tokens;
//! 6. with `--fic-gc=delete`, removing the last binding (B's) removes the FIC.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use clap::Args;
use idbind_model::IdentityBinding;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};

use crate::sandbox::check_claims;
use crate::stack::azure::{AzureEmulator, Identity};
use crate::stack::client::{self, PodEnv, PythonOutcome, TokenOutcome};
use crate::stack::cluster::{Cluster, ClusterOptions, IssuerRole, TIMEOUT};
use crate::stack::{Binaries, eventually, workdir};
use crate::util;

/// How long the emulated Entra caches issuer documents (real Entra: up to about an hour).
pub const ENTRA_JWKS_CACHE_SECS: u64 = 3;
const SCOPE: &str = "https://management.azure.com/.default";
/// A second resource, so a token request cannot be served from a proxy's cache.
const FRESH_SCOPE: &str = "https://vault.azure.net/.default";
const APPS: &str = "apps";

/// Arguments of `cargo xtask e2e`.
#[derive(Args, Debug)]
pub struct E2eArgs {
    /// Directory for logs and cluster files (default: target/e2e).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Run the scenario on a kind cluster instead (needs a Docker engine, kind and kubectl;
    /// prints one SKIP line and succeeds when they are missing).
    #[arg(long)]
    pub kind: bool,
    /// Flags of the kind run.
    #[command(flatten)]
    pub kind_args: crate::e2e_kind::KindArgs,
}

/// The `E2e` step of `cargo xtask test`: this scenario, then what a new user does with the
/// sandbox (`cargo xtask sandbox --check`, in `target/sandbox-check` so that a sandbox running in
/// `target/sandbox` is left alone).
pub fn test_step() -> Result<()> {
    run(&E2eArgs {
        dir: None,
        kind: false,
        kind_args: crate::e2e_kind::KindArgs::default(),
    })?;
    crate::sandbox::run(&crate::sandbox::SandboxArgs {
        once: false,
        check: true,
        dir: Some(util::root().join("target/sandbox-check")),
    })
}

/// Runs the command.
pub fn run(args: &E2eArgs) -> Result<()> {
    if args.kind {
        return crate::e2e_kind::run(&args.kind_args);
    }
    let dir = match &args.dir {
        Some(d) => std::path::absolute(d).with_context(|| format!("resolving {}", d.display()))?,
        None => util::root().join("target/e2e"),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(e2e(&dir))
}

/// The running world of the scenario.
struct World {
    azure: AzureEmulator,
    a: Cluster,
    b: Cluster,
    python: Option<PathBuf>,
    logs: PathBuf,
}

async fn e2e(dir: &std::path::Path) -> Result<()> {
    let started = Instant::now();
    workdir::prepare(dir, "e2e")?;
    let logs = dir.join("logs");
    eprintln!("e2e: building the binaries (cargo build)");
    let binaries = tokio::task::block_in_place(Binaries::build)?;
    let setup = Instant::now();
    let python = match tokio::task::block_in_place(client::python) {
        Ok(p) => Some(p),
        Err(e) if util::in_ci() => return Err(e.context("the Python SDK is required under CI")),
        Err(e) => {
            eprintln!("e2e: SKIP Python azure-identity ({e:#}); pods use the Rust client instead");
            None
        }
    };
    let mut world = start_world(dir, &binaries, python).await?;
    let mut pids = workdir::Pids::new(dir, "e2e");
    pids.add("azure-emulator", world.azure.process().pid(), &binaries.emulator);
    for p in world.a.processes().into_iter().chain(world.b.processes()) {
        pids.add(p.name(), p.pid(), p.program());
    }
    pids.write()?;
    eprintln!(
        "e2e: setup done in {:.1}s (logs in {})",
        setup.elapsed().as_secs_f32(),
        world.logs.display()
    );

    let result = Box::pin(scenario(&mut world)).await;
    eprintln!("e2e: stopping");
    let World { mut azure, a, b, .. } = world;
    b.stop().await;
    a.stop().await;
    azure.stop().await;
    pids.clear();
    match result {
        Ok(()) => {
            eprintln!(
                "e2e: all steps passed in {:.0}s ({:.0}s after the build)",
                started.elapsed().as_secs_f32(),
                setup.elapsed().as_secs_f32()
            );
            Ok(())
        }
        Err(e) => Err(e.context(format!("logs are in {}", logs.display()))),
    }
}

async fn start_world(dir: &std::path::Path, binaries: &Binaries, python: Option<PathBuf>) -> Result<World> {
    let logs = dir.join("logs");
    let issuer_dir = dir.join("issuer");
    let mut azure = AzureEmulator::start(&binaries.emulator, &logs, ENTRA_JWKS_CACHE_SECS).await?;
    let options = |name: &str, issuer: IssuerRole| ClusterOptions {
        name: name.to_owned(),
        dir: dir.join(name),
        logs: logs.clone(),
        issuer_dir: issuer_dir.clone(),
        issuer,
        fic_gc: "delete".into(),
    };
    let progress = |what: &str| eprintln!("e2e: setup: {what}");
    let a = match Cluster::start(
        options("cluster-a", IssuerRole::Serve),
        binaries,
        azure.info(),
        &progress,
    )
    .await
    {
        Ok(a) => a,
        Err(e) => {
            azure.stop().await;
            return Err(e.context("starting cluster A"));
        }
    };
    let base_url = a.endpoints().issuer_base_url.clone();
    let b = match Cluster::start(
        options("cluster-b", IssuerRole::Publish { base_url }),
        binaries,
        azure.info(),
        &progress,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => {
            a.stop().await;
            azure.stop().await;
            return Err(e.context("starting cluster B"));
        }
    };
    Ok(World {
        azure,
        a,
        b,
        python,
        logs,
    })
}

/// Runs numbered steps, printing PASS/FAIL lines with their evidence.
struct Steps {
    n: usize,
}

impl Steps {
    async fn run<T>(
        &mut self,
        title: &str,
        fut: impl Future<Output = Result<(T, Vec<String>)>>,
    ) -> Result<T> {
        self.n += 1;
        let started = Instant::now();
        match Box::pin(fut).await {
            Ok((value, evidence)) => {
                println!(
                    "e2e: PASS {}. {title} ({:.1}s)",
                    self.n,
                    started.elapsed().as_secs_f32()
                );
                for line in evidence {
                    println!("e2e:        {line}");
                }
                Ok(value)
            }
            Err(e) => {
                println!(
                    "e2e: FAIL {}. {title} ({:.1}s)",
                    self.n,
                    started.elapsed().as_secs_f32()
                );
                println!("e2e:        {e:#}");
                Err(e.context(format!("step {} failed: {title}", self.n)))
            }
        }
    }
}

fn kids(jwks: Option<&serde_json::Value>) -> Vec<String> {
    jwks.and_then(|j| j["keys"].as_array())
        .map(|k| {
            k.iter()
                .filter_map(|k| k["kid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn issuer_of(binding: &IdentityBinding) -> Result<String> {
    binding
        .status
        .as_ref()
        .and_then(|s| s.oidc_issuer_url.clone())
        .ok_or_else(|| anyhow!("binding {:?} has no oidcIssuerUrl", binding.metadata.name))
}

/// A token for the pod: with the Python SDK when available, else the Rust client.
async fn pod_token(world: &World, env: &PodEnv, scope: &str) -> Result<(serde_json::Value, &'static str)> {
    match &world.python {
        Some(python) => match client::python_token(python, env, scope).await? {
            PythonOutcome::Token(claims) => Ok((claims, "Python azure-identity")),
            PythonOutcome::Error(e) => Err(anyhow!("azure-identity failed: {e}")),
        },
        None => Ok((
            client::request_token(env, scope).await?.claims()?.clone(),
            "Rust client",
        )),
    }
}

/// [`pod_token`], checked to be the identity's.
async fn checked_token(
    world: &World,
    env: &PodEnv,
    scope: &str,
    identity: &Identity,
    cluster: &str,
) -> Result<(serde_json::Value, &'static str)> {
    let (claims, how) = pod_token(world, env, scope)
        .await
        .with_context(|| format!("cluster {cluster}"))?;
    check_claims(&claims, identity).with_context(|| format!("cluster {cluster}"))?;
    Ok((claims, how))
}

async fn scenario(world: &mut World) -> Result<()> {
    let mut steps = Steps { n: 0 };
    let shared = world.azure.create_identity("fleet", "shared").await?;
    let only_a = world.azure.create_identity("fleet", "only-a").await?;
    let subject = format!("{APPS}/workload");
    let subjects = [subject.as_str()];

    // 1. Bind one identity in both clusters at once.
    let issuer = steps
        .run(
            "bind one identity in both clusters → exactly one FIC, one key of each cluster in its JWKS",
            async {
                let (a, b) = (&world.a, &world.b);
                tokio::try_join!(
                    a.bind("shared", &shared.resource_id, &subjects),
                    b.bind("shared", &shared.resource_id, &subjects)
                )?;
                let (ba, bb) = tokio::try_join!(a.wait_ready("shared"), b.wait_ready("shared"))?;
                let issuer = issuer_of(&ba)?;
                ensure!(
                    issuer_of(&bb)? == issuer,
                    "the clusters disagree on the issuer: {issuer} vs {}",
                    issuer_of(&bb)?
                );
                let fics = world.azure.list_fics(&shared).await?;
                ensure!(
                    fics.len() == 1,
                    "expected exactly one FIC on {}, found {fics:?}",
                    shared.name()
                );
                let fic = &fics[0];
                ensure!(
                    fic.issuer == issuer,
                    "the FIC trusts {}, the bindings say {issuer}",
                    fic.issuer
                );
                ensure!(
                    fic.subject == shared.resource_id.to_lowercase(),
                    "the FIC's subject is {}",
                    fic.subject
                );
                ensure!(
                    fic.audiences == ["api://AzureADTokenExchange"],
                    "the FIC's audiences are {:?}",
                    fic.audiences
                );
                let jwks = world.azure.get_json(&idbind_model::jwks_url(&issuer)).await?;
                let kids = kids(jwks.as_ref());
                let count = |prefix: &str| kids.iter().filter(|k| k.starts_with(prefix)).count();
                ensure!(
                    kids.len() == 2 && count("cluster-a.") == 1 && count("cluster-b.") == 1,
                    "JWKS key ids: {kids:?}"
                );
                Ok((
                    issuer.clone(),
                    vec![
                        format!("FIC {} issuer {} subject {}", fic.name, fic.issuer, fic.subject),
                        format!("JWKS key ids: {}", kids.join(", ")),
                    ],
                ))
            },
        )
        .await?;

    // 2. A pod in each cluster gets a token through its own proxy.
    let (env_a, env_b) = steps
        .run(
            "a pod in each cluster gets a token through its own proxy (appid/oid = the identity)",
            async {
                let (env_a, env_b) = tokio::try_join!(
                    world
                        .a
                        .run_workload(APPS, "workload", "workload", &shared.client_id),
                    world
                        .b
                        .run_workload(APPS, "workload", "workload", &shared.client_id)
                )?;
                let w: &World = world;
                let (ta, tb) = tokio::try_join!(
                    checked_token(w, &env_a, SCOPE, &shared, "A"),
                    checked_token(w, &env_b, SCOPE, &shared, "B")
                )?;
                let mut evidence = Vec::new();
                for (name, (claims, how), cluster) in [("A", ta, &world.a), ("B", tb, &world.b)] {
                    evidence.push(format!(
                        "cluster {name}: {how} via proxy {} → appid {} oid {}",
                        cluster.endpoints().proxy,
                        claims["appid"].as_str().unwrap_or_default(),
                        claims["oid"].as_str().unwrap_or_default()
                    ));
                }
                Ok(((env_a, env_b), evidence))
            },
        )
        .await?;

    // 3. A service account outside allowedSubjects.
    steps
        .run(
            "a service account outside allowedSubjects is refused (403, Entra-shaped)",
            async {
                let env = world
                    .a
                    .run_workload(APPS, "intruder", "intruder", &shared.client_id)
                    .await?;
                let outcome = client::request_token(&env, SCOPE).await?;
                let TokenOutcome::Refused { status, body } = outcome else {
                    bail!("apps/intruder got a token");
                };
                ensure!(
                    status == 403 && body["error"] == "unauthorized_client",
                    "expected 403 unauthorized_client, got {status} {body}"
                );
                ensure!(
                    body["error_description"].is_string() && body["correlation_id"].is_string(),
                    "not Entra-shaped: {body}"
                );
                Ok((
                    (),
                    vec![format!(
                        "{status} {}: {}",
                        body["error"],
                        first_line(&body["error_description"])
                    )],
                ))
            },
        )
        .await?;

    // 4. Cluster B cannot use an identity bound only to A, even with a forged binding.
    steps
        .run(
            "cluster B cannot get a token for an identity bound only to A (Entra refuses B's key)",
            async {
                world.a.bind("only-a", &only_a.resource_id, &subjects).await?;
                let bound = world.a.wait_ready("only-a").await?;
                let issuer = issuer_of(&bound)?;
                let jwks_kids = kids(
                    world
                        .azure
                        .get_json(&idbind_model::jwks_url(&issuer))
                        .await?
                        .as_ref(),
                );
                ensure!(
                    jwks_kids.iter().all(|k| k.starts_with("cluster-a.")),
                    "only-a's JWKS: {jwks_kids:?}"
                );
                // The pod is admitted while B's webhook still runs; then B's admin turns rogue.
                let env = world
                    .b
                    .run_workload(APPS, "mallory", "mallory", &only_a.client_id)
                    .await?;
                world.b.stop_controller().await;
                forge_binding(&world.b, "only-a", &bound).await?;
                let b_proxy = world.b.proxy_log();
                let (status, body) = eventually(
                    "B's proxy to sign for only-a and Entra to answer",
                    TIMEOUT,
                    || {
                        let env = env.clone();
                        async move {
                            match client::request_token(&env, SCOPE).await? {
                                TokenOutcome::Token { .. } => {
                                    Err(anyhow!("cluster B got a token for only-a"))
                                }
                                TokenOutcome::Refused { status, body } => {
                                    let from_entra = body["error_description"]
                                        .as_str()
                                        .is_some_and(|d| d.starts_with("AADSTS"));
                                    Ok(from_entra.then_some((status, body)))
                                }
                            }
                        }
                    },
                )
                .await
                .with_context(|| format!("see {}", b_proxy.display()))?;
                let codes = body["error_codes"].as_array().cloned().unwrap_or_default();
                ensure!(
                    codes.contains(&700027.into()),
                    "expected AADSTS700027, got {status} {body}"
                );
                // The rogue admin gives up; B's controller comes back for the next steps.
                unforge(&world.b, "only-a", &only_a.client_id).await?;
                world.b.restart_controller().await?;
                Ok((
                    (),
                    vec![
                        format!("only-a's JWKS key ids: {}", jwks_kids.join(", ")),
                        format!(
                            "B's proxy → Entra: {status} {}: {}",
                            body["error"],
                            first_line(&body["error_description"])
                        ),
                    ],
                ))
            },
        )
        .await?;

    // 5. Unbinding A withdraws A's key.
    let keys_a = world.a.signing_keys().await?;
    steps
        .run("unbinding A withdraws A's key; A is refused once caches expire; B keeps working", async {
            world.a.unbind("shared").await?;
            let jwks_kids = kids(world.azure.get_json(&idbind_model::jwks_url(&issuer)).await?.as_ref());
            ensure!(jwks_kids.len() == 1 && jwks_kids[0].starts_with("cluster-b."), "shared's JWKS after unbinding A: {jwks_kids:?}");
            let fics = world.azure.list_fics(&shared).await?;
            ensure!(fics.len() == 1, "the FIC must stay while B is bound: {fics:?}");
            let refused = eventually("A's proxy to refuse the unbound identity", TIMEOUT, || {
                let env = env_a.clone();
                async move {
                    Ok(match client::request_token(&env, SCOPE).await? {
                        TokenOutcome::Refused { status, body } => Some(format!("{status} {}", body["error"])),
                        TokenOutcome::Token { .. } => None,
                    })
                }
            })
            .await?;
            // Even a cluster that kept its key (and ignored the unbinding) is refused by Entra
            // once Entra's cached copy of the JWKS expires.
            let withdrawn = Instant::now();
            let accepted = std::sync::atomic::AtomicUsize::new(0);
            let entra = eventually("Entra to refuse an assertion signed with A's key", TIMEOUT, || async {
                let refused = replay(&world.azure, &keys_a, &issuer, &shared).await?;
                if refused.is_none() {
                    accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(refused)
            })
            .await?;
            let waited = withdrawn.elapsed().as_secs_f32();
            let accepted = accepted.into_inner();
            let (claims, how) =
                pod_token(world, &env_b, FRESH_SCOPE).await.context("cluster B after A's unbinding")?;
            check_claims(&claims, &shared)?;
            let evidence = vec![
                format!("shared's JWKS key ids: {}", jwks_kids.join(", ")),
                format!("A's pod: {refused}"),
                format!("an assertion signed with A's key {}:", keys_a.signing_key().kid()),
                format!(
                    "  accepted {accepted} time(s) from Entra's cached JWKS (cache {ENTRA_JWKS_CACHE_SECS}s), then refused after {waited:.1}s:"
                ),
                format!("  {entra}"),
                format!(
                    "cluster B ({how}, new scope {FRESH_SCOPE}): token for appid {}",
                    claims["appid"].as_str().unwrap_or_default()
                ),
            ];
            Ok(((), evidence))
        })
        .await?;

    // 6. FIC garbage collection.
    steps
        .run(
            "with --fic-gc=delete, removing the last binding removes the FIC",
            async {
                world.b.unbind("shared").await?;
                eventually("the FIC to be deleted", TIMEOUT, || async {
                    Ok(world.azure.list_fics(&shared).await?.is_empty().then_some(()))
                })
                .await?;
                let jwks_kids = kids(
                    world
                        .azure
                        .get_json(&idbind_model::jwks_url(&issuer))
                        .await?
                        .as_ref(),
                );
                ensure!(jwks_kids.is_empty(), "shared's JWKS still lists {jwks_kids:?}");
                let only_a_fics = world.azure.list_fics(&only_a).await?;
                ensure!(only_a_fics.len() == 1, "only-a's FIC must stay: {only_a_fics:?}");
                Ok((
                    (),
                    vec![format!(
                        "{}: no FIC left, JWKS empty; only-a keeps its FIC",
                        shared.name()
                    )],
                ))
            },
        )
        .await?;
    Ok(())
}

fn first_line(v: &serde_json::Value) -> String {
    v.as_str()
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Mints an assertion with `keys` for the identity's issuer and posts it to Entra directly;
/// `Some(error)` once Entra refuses it.
async fn replay(
    azure: &AzureEmulator,
    keys: &idbind_issuer::KeySet,
    issuer: &str,
    identity: &Identity,
) -> Result<Option<String>> {
    let claims = idbind_issuer::AssertionClaims::new(issuer, identity.resource_id.to_lowercase());
    let assertion = idbind_issuer::mint_assertion(keys.signing_key(), &claims, jiff::Timestamp::now())?;
    let answer = azure
        .post_token(
            &identity.tenant_id,
            &[
                ("client_assertion", &assertion.token),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_id", &identity.client_id),
                ("grant_type", "client_credentials"),
                ("scope", SCOPE),
            ],
        )
        .await?;
    Ok((answer.status != 200).then(|| {
        format!(
            "{} {}",
            answer.status,
            first_line(&answer.body["error_description"])
        )
    }))
}

/// What a rogue admin of `cluster` can do without idbind's help: a binding for the identity with
/// a status copied from the legitimate cluster's (written through the status subresource), and
/// the RBAC letting `apps/mallory` use it.
async fn forge_binding(cluster: &Cluster, name: &str, genuine: &IdentityBinding) -> Result<()> {
    let api: Api<IdentityBinding> = Api::all(cluster.client());
    let created = api
        .create(
            &PostParams::default(),
            &IdentityBinding::new(name, genuine.spec.clone()),
        )
        .await
        .context("creating the forged binding")?;
    let mut status = genuine.status.clone().unwrap_or_default();
    status.observed_generation = created.metadata.generation;
    for c in &mut status.conditions {
        c.observed_generation = created.metadata.generation;
    }
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await
    .context("writing the forged status")?;
    let client_id = status.client_id.clone().unwrap_or_default();
    let rbac_name = format!("{}{client_id}", idbind_model::RBAC_NAME_PREFIX);
    let role = ClusterRole {
        metadata: ObjectMeta {
            name: Some(rbac_name.clone()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![idbind_model::RBAC_API_GROUP.into()]),
            resources: Some(vec![client_id]),
            verbs: vec![idbind_model::RBAC_VERB.into()],
            ..PolicyRule::default()
        }]),
        ..ClusterRole::default()
    };
    Api::<ClusterRole>::all(cluster.client())
        .create(&PostParams::default(), &role)
        .await
        .context("forging the ClusterRole")?;
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(rbac_name.clone()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: rbac_name,
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "mallory".into(),
            namespace: Some(APPS.into()),
            ..Subject::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(cluster.client())
        .create(&PostParams::default(), &binding)
        .await
        .context("forging the ClusterRoleBinding")?;
    Ok(())
}

/// Removes what [`forge_binding`] created.
async fn unforge(cluster: &Cluster, name: &str, client_id: &str) -> Result<()> {
    let rbac_name = format!("{}{client_id}", idbind_model::RBAC_NAME_PREFIX);
    Api::<IdentityBinding>::all(cluster.client())
        .delete(name, &DeleteParams::default())
        .await?;
    Api::<ClusterRoleBinding>::all(cluster.client())
        .delete(&rbac_name, &DeleteParams::default())
        .await?;
    Api::<ClusterRole>::all(cluster.client())
        .delete(&rbac_name, &DeleteParams::default())
        .await?;
    Ok(())
}
