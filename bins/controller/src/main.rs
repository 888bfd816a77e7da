//! `idbind-controller`: see `idbind-controller --help`.

use anyhow::Context as _;
use clap::Parser;
use idbind_controller::args::{Args, LogFormat};
use idbind_controller::runtime::RuntimeBuilder;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(&args)?;
    let builder = idbind_controller::webhook::install(RuntimeBuilder::new(args.clone()), &args)
        .await
        .context("setting up the admission webhook and certificates")?;
    let running = builder.start().await.context("starting idbind-controller")?;
    let token = running.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested; releasing the Lease");
        token.cancel();
    });
    running
        .wait()
        .await
        .context("idbind-controller stopped with an error")?;
    tracing::info!("stopped");
    Ok(())
}

fn init_logging(args: &Args) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log.log)
        .with_context(|| format!("invalid --log filter {:?}", args.log.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Plain => builder.init(),
    }
    Ok(())
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
