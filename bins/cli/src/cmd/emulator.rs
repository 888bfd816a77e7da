//! `idbind emulator`: the Azure emulator in the foreground, with the `idbind-emulator` binary's
//! flags. Prints one JSON line (URLs and default credentials) on stdout when ready; stops on
//! ctrl-c or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use idbind_emulator::{EmulatorConfig, Seed, ThrottleConfig};

use crate::exit::{Failure, Outcome};

/// Arguments of `idbind emulator` (the same as `idbind-emulator`'s).
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    idbind emulator --listen 127.0.0.1:8443 --seed seed.yaml\n\n\
    The first line on stdout is JSON: baseUrl, authorityHost, armEndpoint, adminUrl, tenantId,\n\
    subscriptionId, clientId, clientSecret, jwksUrl, openidConfigurationUrl. Use baseUrl as both\n\
    --azure-authority-host and --arm-endpoint of the other commands.")]
pub struct EmulatorArgs {
    /// Address to listen on.
    #[arg(long, env = "IDBIND_EMULATOR_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM); serve HTTPS with --tls-key.
    #[arg(
        long,
        env = "IDBIND_EMULATOR_TLS_CERT",
        requires = "tls_key",
        value_name = "FILE"
    )]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(
        long,
        env = "IDBIND_EMULATOR_TLS_KEY",
        requires = "tls_cert",
        value_name = "FILE"
    )]
    pub tls_key: Option<PathBuf>,
    /// Host name to use in URLs instead of the listen IP (e.g. the name in the TLS certificate).
    #[arg(long, env = "IDBIND_EMULATOR_ADVERTISED_HOST", value_name = "NAME")]
    pub advertised_host: Option<String>,
    /// Seed file (YAML or JSON): tenants, principals, subscriptions, identities.
    #[arg(long, env = "IDBIND_EMULATOR_SEED", value_name = "FILE")]
    pub seed: Option<PathBuf>,
    /// State file: loaded at start, rewritten atomically after every change.
    #[arg(long, env = "IDBIND_EMULATOR_STATE", value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Cache issuer documents for this many seconds (real Entra: up to ~3600).
    #[arg(long, env = "IDBIND_EMULATOR_JWKS_CACHE_SECS", default_value_t = 0)]
    pub jwks_cache_secs: u64,
    /// Extra trust roots (PEM file) for https issuer fetches.
    #[arg(long, env = "IDBIND_EMULATOR_ISSUER_CA", value_name = "FILE")]
    pub issuer_ca: Option<PathBuf>,
    /// How long a FIC write holds its identity (409 for concurrent writes), in milliseconds.
    #[arg(long, env = "IDBIND_EMULATOR_FIC_WRITE_HOLD_MS", default_value_t = 25)]
    pub fic_write_hold_ms: u64,
    /// Access token lifetime in seconds.
    #[arg(long, env = "IDBIND_EMULATOR_TOKEN_LIFETIME_SECS", default_value_t = 24 * 3600 - 300)]
    pub token_lifetime_secs: u64,
    /// Disable ARM throttling.
    #[arg(long, env = "IDBIND_EMULATOR_NO_THROTTLE")]
    pub no_throttle: bool,
}

fn read(flag: &str, path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read {flag} {}: {e}", path.display())).into())
}

/// Runs the emulator until ctrl-c or SIGTERM.
pub async fn run(args: EmulatorArgs) -> anyhow::Result<Outcome> {
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
        config.seed = Some(
            Seed::from_file(path).map_err(|e| Failure::usage(format!("--seed {}: {e}", path.display())))?,
        );
    }
    if let Some(path) = &args.issuer_ca {
        config.issuer_trust_roots_pem.push(read("--issuer-ca", path)?);
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let tls =
            idbind_tls::server_config(&read("--tls-cert", cert)?, &read("--tls-key", key)?).map_err(|e| {
                Failure::usage(format!(
                    "loading TLS certificate {} and key {}: {e}",
                    cert.display(),
                    key.display()
                ))
            })?;
        config.tls = Some(Arc::new(tls));
    }
    let emulator = idbind_emulator::start_and_announce(config)
        .await
        .map_err(|e| Failure::failed(format!("starting the emulator on {}: {e}", args.listen)))?;
    wait_for_signal().await?;
    emulator.shutdown().await;
    Ok(Outcome::Ok)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Failure::failed(format!("installing the SIGTERM handler: {e}")))?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map_err(|e| Failure::failed(format!("waiting for ctrl-c: {e}")))?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| Failure::failed(format!("waiting for ctrl-c: {e}")))?;
    Ok(())
}
