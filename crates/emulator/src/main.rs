//! `idbind-emulator`: the Azure emulator as a process. Prints one JSON line with its URLs and
//! default credentials on stdout when ready; logs go to stderr.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use idbind_emulator::{EmulatorConfig, Seed, ThrottleConfig};

/// Azure emulator: Entra token endpoint and the ARM managed-identity subset, with faults.
#[derive(Debug, Parser)]
#[command(name = "idbind-emulator", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "IDBIND_EMULATOR_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// TLS certificate chain (PEM); serve HTTPS with --tls-key.
    #[arg(long, env = "IDBIND_EMULATOR_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "IDBIND_EMULATOR_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Host name to use in URLs instead of the listen IP (e.g. the name in the TLS certificate).
    #[arg(long, env = "IDBIND_EMULATOR_ADVERTISED_HOST")]
    advertised_host: Option<String>,
    /// Seed file (YAML or JSON): tenants, principals, subscriptions, identities.
    #[arg(long, env = "IDBIND_EMULATOR_SEED")]
    seed: Option<PathBuf>,
    /// State file: loaded at start, rewritten atomically after every change.
    #[arg(long, env = "IDBIND_EMULATOR_STATE")]
    state: Option<PathBuf>,
    /// Cache issuer documents for this many seconds (real Entra: up to ~3600).
    #[arg(long, env = "IDBIND_EMULATOR_JWKS_CACHE_SECS", default_value_t = 0)]
    jwks_cache_secs: u64,
    /// Extra trust roots (PEM file) for https issuer fetches.
    #[arg(long, env = "IDBIND_EMULATOR_ISSUER_CA")]
    issuer_ca: Option<PathBuf>,
    /// How long a FIC write holds its identity (409 for concurrent writes), in milliseconds.
    #[arg(long, env = "IDBIND_EMULATOR_FIC_WRITE_HOLD_MS", default_value_t = 25)]
    fic_write_hold_ms: u64,
    /// Access token lifetime in seconds.
    #[arg(long, env = "IDBIND_EMULATOR_TOKEN_LIFETIME_SECS", default_value_t = 24 * 3600 - 300)]
    token_lifetime_secs: u64,
    /// Disable ARM throttling.
    #[arg(long, env = "IDBIND_EMULATOR_NO_THROTTLE")]
    no_throttle: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();

    let mut config = EmulatorConfig {
        listen: args.listen,
        advertised_host: args.advertised_host.clone(),
        state_file: args.state.clone(),
        jwks_cache_ttl: Duration::from_secs(args.jwks_cache_secs),
        fic_write_hold: Duration::from_millis(args.fic_write_hold_ms),
        token_lifetime: Duration::from_secs(args.token_lifetime_secs),
        ..EmulatorConfig::default()
    };
    if args.no_throttle {
        config.throttle = ThrottleConfig::unlimited();
    }
    if let Some(path) = &args.seed {
        config.seed = Some(Seed::from_file(path)?);
    }
    if let Some(path) = &args.issuer_ca {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading --issuer-ca {}", path.display()))?;
        config.issuer_trust_roots_pem.push(pem);
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let cert_pem = std::fs::read_to_string(cert)
            .with_context(|| format!("reading --tls-cert {}", cert.display()))?;
        let key_pem =
            std::fs::read_to_string(key).with_context(|| format!("reading --tls-key {}", key.display()))?;
        let tls = idbind_tls::server_config(&cert_pem, &key_pem).with_context(|| {
            format!(
                "loading TLS certificate {} and key {}",
                cert.display(),
                key.display()
            )
        })?;
        config.tls = Some(Arc::new(tls));
    }

    let emulator = idbind_emulator::start_and_announce(config).await?;

    wait_for_signal().await?;
    tracing::info!("shutting down");
    emulator.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for ctrl-c")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.context("waiting for ctrl-c")?;
    Ok(())
}
