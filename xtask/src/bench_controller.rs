//! `cargo xtask bench controller`: how the real `idbind-controller` binary copes with many bindings.
//!
//! Starts the Azure emulator, the Kubernetes API emulator (CRD installed) and the controller as
//! release binaries, creates `--identities` UAMIs and `--bindings-per-identity` IdentityBindings
//! for each, polls until every binding is Ready for its current generation, then prints the time
//! taken, the ARM requests the emulator saw, the controller's reconcile and write counters, and the
//! peak RSS and CPU time of each process. It prints figures and asserts nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use idbind_model::{AllowedSubject, IdentityBinding, IdentityBindingSpec, ManagedIdentityRef};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

use crate::bench::process::{Proc, ProcStats};
use crate::util::{self, cargo, root};

/// Flags of `cargo xtask bench controller`.
#[derive(Debug, clap::Args)]
pub struct BenchControllerArgs {
    /// User-assigned identities to create in the Azure emulator.
    #[arg(long, default_value_t = 200)]
    identities: usize,
    /// IdentityBindings per identity.
    #[arg(long, default_value_t = 10)]
    bindings_per_identity: usize,
    /// ARM throttling in the Azure emulator: ARM's published per-caller limits, none, or one run of each.
    #[arg(long, value_enum, default_value = "arm")]
    throttle: Throttle,
    /// Bindings created at once.
    #[arg(long, default_value_t = 32)]
    create_concurrency: usize,
    /// Milliseconds between two lists of the bindings while waiting for Ready.
    #[arg(long, default_value_t = 2000)]
    poll_ms: u64,
    /// Give up when not all bindings are Ready after this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout_secs: u64,
    /// Use the binaries already built (skip `cargo build --release`).
    #[arg(long)]
    no_build: bool,
    /// Extra flag for idbind-controller (repeatable), e.g. `--controller-arg=--concurrency=32`.
    #[arg(long = "controller-arg", allow_hyphen_values = true)]
    controller_args: Vec<String>,
}

/// ARM throttling in the Azure emulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Throttle {
    /// ARM's published limits per caller: reads 250 then 25/s, writes 200 then 10/s.
    Arm,
    /// No throttling.
    Off,
    /// One run with ARM's limits, then one without.
    Both,
}

/// What one run measured.
struct Figures {
    throttled: bool,
    created: Duration,
    first_ready: Duration,
    all_ready: Duration,
    arm: BTreeMap<String, BTreeMap<String, u64>>,
    metrics: String,
    issuer_files: usize,
    procs: Vec<(&'static str, ProcStats)>,
}

/// Runs the benchmark and prints its figures.
pub fn run(args: &BenchControllerArgs) -> Result<()> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), |d| root().join(d));
    if !args.no_build {
        util::run(cargo().args([
            "build",
            "--release",
            "-p",
            "idbind-controller",
            "-p",
            "idbind-emulator",
            "-p",
            "idbind-testkit",
            "--bins",
        ]))?;
    }
    let bins = target.join("release");
    let load_before = loadavg();
    let modes: &[bool] = match args.throttle {
        Throttle::Arm => &[true],
        Throttle::Off => &[false],
        Throttle::Both => &[true, false],
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let flags: Vec<String> = std::env::args()
        .skip_while(|a| a != "controller")
        .skip(1)
        .collect();
    println!("\n$ cargo xtask bench controller {}", flags.join(" "));
    println!(
        "{} bindings over {} identities; commit {}; load average before {load_before}",
        args.identities * args.bindings_per_identity,
        args.identities,
        git_commit(),
    );
    // Each run's figures are printed when it ends, so a long second run cannot lose the first.
    for &throttled in modes {
        let stamp = jiff::Timestamp::now().as_second();
        let dir = target.join(format!(
            "bench-controller/{stamp}-{}",
            if throttled { "arm" } else { "off" }
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        eprintln!(
            "bench controller: run directory (logs, issuer store) {}",
            dir.display()
        );
        let figures = runtime.block_on(run_once(args, &bins, &dir, throttled))?;
        print_figures(&figures, args.identities);
        println!("load average after the run: {}", loadavg());
    }
    Ok(())
}

async fn run_once(args: &BenchControllerArgs, bins: &Path, dir: &Path, throttled: bool) -> Result<Figures> {
    let mut azure_cmd = Command::new(bins.join("idbind-emulator"));
    azure_cmd.args(["--listen", "127.0.0.1:0"]);
    if !throttled {
        azure_cmd.arg("--no-throttle");
    }
    let mut azure = Proc::start("azure-emulator", &mut azure_cmd, dir)?;
    let info: Value = azure.wait_line(false, Duration::from_secs(30), |l| serde_json::from_str(l).ok())?;
    let field = |name: &str| {
        info[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("the Azure emulator's ready line has no {name}: {info}"))
    };
    let (base, admin) = (field("baseUrl")?, field("adminUrl")?);
    let http = reqwest::Client::new();
    let identities = create_identities(&http, &admin, args.identities).await?;
    post(&http, &format!("{admin}/counters/reset"), None).await?;

    let namespace = dir.join("namespace.yaml");
    std::fs::write(
        &namespace,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: idbind\n",
    )?;
    let kubeconfig = dir.join("kubeconfig");
    let crd = root().join("deploy/crds/identitybindings.idbind.dev.yaml");
    let mut kube_cmd = Command::new(bins.join("idbind-kube-emulator"));
    kube_cmd.args(["--listen", "127.0.0.1:0", "--log", "warn", "--kubeconfig-out"]);
    kube_cmd
        .arg(&kubeconfig)
        .arg("--seed")
        .arg(&crd)
        .arg("--seed")
        .arg(&namespace);
    let mut kube = Proc::start("kube-emulator", &mut kube_cmd, dir)?;
    kube.wait_line(false, Duration::from_secs(30), |l| {
        l.contains("\"ready\":true").then_some(())
    })?;

    let mut ctl_cmd = Command::new(bins.join("idbind-controller"));
    ctl_cmd
        .env("KUBECONFIG", &kubeconfig)
        .env("IDBIND_AZURE_CLIENT_SECRET", field("clientSecret")?)
        .args([
            "--cluster-name",
            "bench",
            "--namespace",
            "idbind",
            "--azure-cloud",
            "custom",
        ])
        .args(["--azure-authority-host", &base, "--arm-endpoint", &base])
        .args([
            "--azure-tenant-id",
            &field("tenantId")?,
            "--azure-client-id",
            &field("clientId")?,
        ])
        .args([
            "--issuer-base-url",
            "https://issuer.bench.example/idbind",
            "--issuer-dir",
        ])
        .arg(dir.join("issuer"))
        .args([
            "--admin-listen",
            "127.0.0.1:0",
            "--webhook=false",
            "--proxy-tls-managed=false",
        ])
        .args(["--log-format", "json"])
        .args(&args.controller_args);
    eprintln!(
        "$ KUBECONFIG=... IDBIND_AZURE_CLIENT_SECRET=... {}",
        shown(&ctl_cmd)
    );
    let mut controller = Proc::start("controller", &mut ctl_cmd, dir)?;
    let admin_addr = controller.wait_line(true, Duration::from_secs(60), |l| {
        let v: Value = serde_json::from_str(l).ok()?;
        v["admin_addr"].as_str().map(str::to_owned)
    })?;
    let metrics_url = format!("http://{admin_addr}/metrics");
    wait_leader(&http, &metrics_url, &mut controller).await?;

    let client = kube_client(&kubeconfig).await?;
    let api: Api<IdentityBinding> = Api::all(client);
    let total = identities.len() * args.bindings_per_identity;
    eprintln!(
        "creating {total} IdentityBindings over {} identities",
        identities.len()
    );
    let t0 = Instant::now();
    futures::stream::iter(bindings(&identities, args.bindings_per_identity))
        .map(|b| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &b).await.map(|_| ()) }
        })
        .buffer_unordered(args.create_concurrency.max(1))
        .try_collect::<()>()
        .await
        .context("creating the IdentityBindings")?;
    let created = t0.elapsed();

    let (mut first_ready, mut last_progress) = (None, Instant::now());
    let all_ready = loop {
        controller.check_running()?;
        let list = api
            .list(&ListParams::default())
            .await
            .context("listing IdentityBindings")?;
        let ready = list.items.iter().filter(|b| ready_now(b)).count();
        if ready > 0 && first_ready.is_none() {
            first_ready = Some(t0.elapsed());
        }
        if ready == total {
            break t0.elapsed();
        }
        if last_progress.elapsed() > Duration::from_secs(10) {
            eprintln!("  {:>6.1} s: {ready}/{total} Ready", t0.elapsed().as_secs_f64());
            last_progress = Instant::now();
        }
        if t0.elapsed() > Duration::from_secs(args.timeout_secs) {
            bail!(
                "only {ready} of {total} bindings Ready after {} s; Ready reasons of the rest: {:?}",
                args.timeout_secs,
                not_ready_reasons(&list.items)
            );
        }
        tokio::time::sleep(Duration::from_millis(args.poll_ms)).await;
    };

    let arm = http
        .get(format!("{admin}/counters"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
        .context("reading the Azure emulator's counters")?;
    let metrics = http
        .get(&metrics_url)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(Figures {
        throttled,
        created,
        first_ready: first_ready.unwrap_or(all_ready),
        all_ready,
        arm,
        metrics,
        issuer_files: count_files(&dir.join("issuer")),
        procs: vec![
            ("idbind-controller", controller.stats()?),
            ("idbind-emulator (Azure)", azure.stats()?),
            ("idbind-kube-emulator", kube.stats()?),
        ],
    })
}

async fn create_identities(http: &reqwest::Client, admin: &str, n: usize) -> Result<Vec<String>> {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let body = json!({"resourceGroup": "bench", "name": format!("uami-{i:03}")});
            let v = post(http, &format!("{admin}/identities"), Some(body)).await?;
            v["resourceId"]
                .as_str()
                .map(str::to_owned)
                .context("no resourceId in the identity")
        })
        .buffered(16)
        .try_collect()
        .await
}

async fn post(http: &reqwest::Client, url: &str, body: Option<Value>) -> Result<Value> {
    let req = http.post(url);
    let req = if let Some(b) = body { req.json(&b) } else { req };
    let resp = req.send().await.with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("POST {url}: {status}: {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `--bindings-per-identity` bindings per identity: a third without allowedSubjects, a third
/// allowing a namespace, a third allowing one service account.
fn bindings(identities: &[String], per_identity: usize) -> Vec<IdentityBinding> {
    let mut out = Vec::new();
    for (i, resource_id) in identities.iter().enumerate() {
        for j in 0..per_identity {
            let allowed_subjects = match j % 3 {
                0 => vec![],
                1 => vec![AllowedSubject {
                    namespace: format!("team-{j}"),
                    service_account: None,
                }],
                _ => vec![AllowedSubject {
                    namespace: format!("team-{j}"),
                    service_account: Some(format!("sa-{i}")),
                }],
            };
            let spec = IdentityBindingSpec {
                managed_identity: ManagedIdentityRef {
                    resource_id: resource_id.clone(),
                },
                allowed_subjects,
            };
            out.push(IdentityBinding::new(&format!("bench-{i:03}-{j:02}"), spec));
        }
    }
    out
}

/// Ready for the generation the binding has now.
fn ready_now(b: &IdentityBinding) -> bool {
    let observed = b.status.as_ref().and_then(|s| s.observed_generation);
    observed.is_some() && observed == b.metadata.generation && b.is_ready()
}

fn not_ready_reasons(items: &[IdentityBinding]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for b in items.iter().filter(|b| !ready_now(b)) {
        let reason = b
            .condition("Ready")
            .map_or("no status yet", |c| c.reason.as_str());
        *out.entry(reason.to_owned()).or_insert(0) += 1;
    }
    out
}

async fn wait_leader(http: &reqwest::Client, url: &str, controller: &mut Proc) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        controller.check_running()?;
        if let Ok(resp) = http.get(url).send().await
            && let Ok(text) = resp.text().await
            && sample_sums(&text, "idbind_controller_leader")
                .values()
                .sum::<f64>()
                >= 1.0
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the controller did not become leader within 60 s (see its log)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn kube_client(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
    kube::Client::try_from(config).context("building the Kubernetes client")
}

/// Samples of the Prometheus metric `name`, keyed by their label values joined with `/`.
fn sample_sums(text: &str, name: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, labels) = key.split_once('{').unwrap_or((key, ""));
        if metric != name {
            continue;
        }
        let labels: Vec<&str> = labels
            .trim_end_matches('}')
            .split(',')
            .filter_map(|kv| kv.split_once('=').map(|(_, v)| v.trim_matches('"')))
            .collect();
        if let Ok(v) = value.parse::<f64>() {
            *out.entry(labels.join("/")).or_insert(0.0) += v;
        }
    }
    out
}

fn print_figures(f: &Figures, identities: usize) {
    let arm = |route: &str| f.arm.get(route).cloned().unwrap_or_default();
    let sum = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
    let by_status = |m: &BTreeMap<String, u64>| {
        m.iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let metric = |name: &str| {
        let s = sample_sums(&f.metrics, name);
        s.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let throttle = if f.throttled {
        "ARM limits (reads 250 + 25/s, writes 200 + 10/s per caller)"
    } else {
        "off"
    };
    println!("\n## ARM throttling: {throttle}");
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    let rows = [
        ("all bindings created", secs(f.created)),
        ("first binding Ready", secs(f.first_ready)),
        ("all bindings Ready", secs(f.all_ready)),
        (
            "FIC PUTs",
            format!(
                "{} ({}) — floor {identities}",
                sum(&arm("arm.fic.put")),
                by_status(&arm("arm.fic.put"))
            ),
        ),
    ];
    for (k, v) in rows {
        println!("| {k:<28} | {v}");
    }
    for (route, counts) in &f.arm {
        println!(
            "| {:<28} | {} ({})",
            format!("ARM/Entra {route}"),
            sum(counts),
            by_status(counts)
        );
    }
    let dur_sum = sample_sums(&f.metrics, "idbind_controller_reconcile_duration_seconds_sum");
    let dur_count = sample_sums(&f.metrics, "idbind_controller_reconcile_duration_seconds_count");
    let mean = dur_sum.values().sum::<f64>() / dur_count.values().sum::<f64>().max(1.0);
    let rows = [
        ("reconciles", metric("idbind_controller_reconciles_total")),
        (
            "reconcile errors",
            metric("idbind_controller_reconcile_errors_total"),
        ),
        ("mean reconcile duration", format!("{:.0} ms", mean * 1000.0)),
        (
            "controller ARM calls",
            metric("idbind_controller_arm_requests_total"),
        ),
        (
            "FIC writes (controller)",
            metric("idbind_controller_fic_writes_total"),
        ),
        (
            "issuer writes (JWKS+disc.)",
            metric("idbind_controller_jwks_writes_total"),
        ),
        ("issuer store files", f.issuer_files.to_string()),
    ];
    for (k, v) in rows {
        println!("| {k:<28} | {v}");
    }
    for (name, s) in &f.procs {
        println!(
            "| {:<28} | peak RSS {:.1} MiB, CPU {:.1} s",
            name,
            s.peak_rss_kib as f64 / 1024.0,
            s.cpu.as_secs_f64()
        );
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn git_commit() -> String {
    crate::util::output(
        Command::new("git")
            .current_dir(root())
            .args(["rev-parse", "--short", "HEAD"]),
    )
    .map(|s| s.trim().to_owned())
    .unwrap_or_else(|_| "unknown".to_owned())
}

fn shown(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
