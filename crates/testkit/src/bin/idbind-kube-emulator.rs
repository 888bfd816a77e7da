//! `idbind-kube-emulator`: runs the Kubernetes API emulator as a process (for the sandbox and for
//! tools that need a kubeconfig). Prints one JSON line on stdout when ready:
//! `{"ready":true,"base_url":...,"kubeconfig":...}`, then serves until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use idbind_testkit::KubeEmulator;

/// Kubernetes API emulator for idbind tests and the sandbox.
#[derive(Debug, Parser)]
#[command(name = "idbind-kube-emulator", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "IDBIND_KUBE_EMULATOR_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where to write the admin kubeconfig.
    #[arg(long, env = "IDBIND_KUBE_EMULATOR_KUBECONFIG_OUT")]
    kubeconfig_out: PathBuf,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long, env = "IDBIND_KUBE_EMULATOR_PLAIN_HTTP")]
    plain_http: bool,
    /// Admin bearer token (random when unset).
    #[arg(long, env = "IDBIND_KUBE_EMULATOR_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// YAML or JSON files with objects to create at start (CRDs first), one object per document.
    #[arg(long = "seed", env = "IDBIND_KUBE_EMULATOR_SEED", value_delimiter = ',')]
    seeds: Vec<PathBuf>,
    /// Number of changes kept for watches (older resourceVersions get 410 Gone).
    #[arg(long, env = "IDBIND_KUBE_EMULATOR_HISTORY_LIMIT", default_value_t = 10_000)]
    history_limit: usize,
    /// Seconds between watch bookmarks.
    #[arg(
        long,
        env = "IDBIND_KUBE_EMULATOR_BOOKMARK_INTERVAL_SECONDS",
        default_value_t = 5
    )]
    bookmark_interval_seconds: u64,
    /// Log filter (tracing env-filter syntax).
    #[arg(long, env = "IDBIND_KUBE_EMULATOR_LOG", default_value = "info")]
    log: String,
}

fn documents(text: &str) -> Vec<&str> {
    text.split("\n---")
        .map(str::trim)
        .filter(|d| !d.is_empty() && d.lines().any(|l| !l.trim_start().starts_with('#')))
        .collect()
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut builder = KubeEmulator::builder()
        .listen(args.listen)
        .history_limit(args.history_limit)
        .bookmark_interval(Duration::from_secs(args.bookmark_interval_seconds.max(1)))
        .kubeconfig_path(&args.kubeconfig_out);
    if args.plain_http {
        builder = builder.plain_http();
    }
    if let Some(token) = args.admin_token {
        builder = builder.admin_token(token);
    }
    for path in &args.seeds {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading seed file {}", path.display()))?;
        for doc in documents(&text) {
            let value: serde_json::Value = serde_saphyr::from_str(doc)
                .with_context(|| format!("parsing a YAML document of {}", path.display()))?;
            builder = builder.seed(value)?;
        }
    }
    let emulator = builder.start().await.context("starting the emulator")?;
    let ready = serde_json::json!({
        "ready": true,
        "base_url": emulator.base_url(),
        "kubeconfig": emulator.kubeconfig_path(),
    });
    println!("{ready}");
    wait_for_signal().await?;
    emulator.shutdown();
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log).context("parsing --log")?)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(run(args))
}
