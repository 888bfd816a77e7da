//! `idbind-proxy`: see `idbind-proxy --help`.
//!
//! Start-up order: signing keys and serving certificate are loaded first (a missing or invalid one
//! stops the process with a message naming the file), then the Kubernetes client and the
//! IdentityBinding reflector, then the listeners. Once both listen, one JSON line with their
//! addresses is printed on stdout. SIGTERM or Ctrl-C: stop accepting, let requests in flight
//! finish (bounded by `--shutdown-grace`), exit.

mod args;

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use idbind_exchange::{EntraConfig, Exchanger, ExchangerConfig, KeyFiles, Metrics};
use idbind_proxy::{
    AdminServer, ProxyMetrics, ProxyServer, ReadinessReport, ServerOptions, ServerTls, Surface, SurfaceConfig,
};
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::args::{Args, LogFormat};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(&args)?;
    // One crypto provider for every rustls user in the process (the kube client among them).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    run(args).await
}

fn init_logging(args: &Args) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(&args.log).with_context(|| format!("invalid --log filter {:?}", args.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Plain => builder.init(),
    }
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Fail fast on what the proxy cannot work without.
    let keys = KeyFiles::new(&args.keys_dir, Metrics::default());
    keys.reload().with_context(|| {
        format!(
            "loading the signing keys from --keys-dir {} (the mounted key Secret)",
            args.keys_dir.display()
        )
    })?;
    tracing::info!(kid = keys.signing_kid().unwrap_or_default(), "signing keys found");
    let tls = ServerTls::from_files(&args.tls_cert, &args.tls_key, args.tls_reload_interval).with_context(
        || {
            format!(
                "loading the serving certificate --tls-cert {} and key --tls-key {}",
                args.tls_cert.display(),
                args.tls_key.display()
            )
        },
    )?;
    let extra_roots = match &args.authority_ca_file {
        Some(path) => Some(
            std::fs::read(path).with_context(|| format!("reading --authority-ca-file {}", path.display()))?,
        ),
        None => None,
    };

    let client = kube_client(&args).await?;
    let mut registry = Registry::default();
    let exchanger = Exchanger::start(
        client,
        exchanger_config(&args, extra_roots),
        registry.sub_registry_with_prefix("idbind"),
    )
    .context("starting the token exchanger")?;
    let metrics = ProxyMetrics::register(registry.sub_registry_with_prefix("idbind"));

    let mut surface_config = SurfaceConfig::new(
        args.advertised_authority
            .clone()
            .unwrap_or_else(|| args.authority_host.clone()),
    );
    surface_config.max_body_bytes = args.max_body_bytes;
    surface_config.request_timeout = args.request_timeout;
    let surface = Arc::new(Surface::new(exchanger.clone(), surface_config, metrics));

    let mut options = ServerOptions::new(args.listen);
    options.max_connections = args.max_connections;
    options.handshake_timeout = args.handshake_timeout;
    options.header_read_timeout = args.header_read_timeout;
    options.max_concurrent_streams = args.max_concurrent_streams;
    options.shutdown_grace = args.shutdown_grace;
    let server = ProxyServer::start(surface, &tls, options)
        .await
        .context("starting the HTTPS listener")?;

    let readiness = {
        let exchanger = exchanger.clone();
        move || {
            let r = exchanger.readiness();
            ReadinessReport {
                bindings_synced: r.bindings_synced,
                keys_loaded: r.keys_loaded,
                certificate_loaded: true,
            }
        }
    };
    let admin = AdminServer::start(args.admin_listen, Arc::new(registry), readiness)
        .await
        .context("starting the admin listener")?;

    println!(
        "{}",
        serde_json::json!({ "listen": server.local_addr().to_string(), "admin": admin.local_addr().to_string() })
    );
    shutdown_signal().await;
    tracing::info!("shutdown requested; draining");
    let outcome = server.shutdown().await;
    admin.shutdown().await;
    if !outcome.drained {
        tracing::warn!("some requests were cut after the shutdown grace period");
    }
    Ok(())
}

fn exchanger_config(args: &Args, extra_roots: Option<Vec<u8>>) -> ExchangerConfig {
    let mut config = ExchangerConfig::new(args.authority_host.clone(), &args.keys_dir);
    config.authn.audience.clone_from(&args.audience);
    config.authn.ttl = args.authn_cache_ttl;
    config.authn.capacity = args.authn_cache_capacity;
    config.authz.allow_ttl = args.authz_allow_ttl;
    config.authz.deny_ttl = args.authz_deny_ttl;
    config.authz.capacity = args.authz_cache_capacity;
    config.token_cache.capacity = args.token_cache_capacity;
    config.key_reload_interval = args.key_reload_interval;
    let mut entra = EntraConfig::new(args.authority_host.clone());
    entra.attempt_timeout = args.upstream_timeout;
    entra.max_attempts = args.upstream_attempts;
    entra.extra_roots_pem = extra_roots;
    config.entra = entra;
    config
}

async fn kube_client(args: &Args) -> anyhow::Result<kube::Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading --kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("using --kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("finding Kubernetes credentials (KUBECONFIG, ~/.kube/config or in-cluster)")?,
    };
    kube::Client::try_from(config).context("building the Kubernetes client")
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
