//! `idbind`, the command-line tool of idbind: create and inspect IdentityBindings, audit who may
//! use an identity, manage the one federated identity credential per identity, inspect and verify
//! issuers, request a token through the proxy as an SDK would, and diagnose the whole chain with
//! `idbind doctor`.
//!
//! The binary is a thin shell over this library: [`command`] is the clap definition (also used to
//! generate `docs/cli.md` and shell completions) and [`run`] executes parsed arguments and returns
//! the process exit status ([`exit`] documents the codes).
//!
//! ```
//! let cmd = idbind_cli::command();
//! assert_eq!(cmd.get_name(), "idbind");
//! let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
//! for expected in ["binding", "rbac", "fic", "issuer", "token", "doctor", "emulator", "completions"] {
//!     assert!(names.contains(&expected), "{expected}");
//! }
//! ```

mod azure;
mod cluster;
mod cmd;
mod documents;
mod duration;
pub mod exit;
mod jwt;
mod output;
mod progress;
mod proxy_client;
mod report;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

pub use exit::Failure;

const EXAMPLES: &str = "\
Examples:
  # Bind a managed identity and let one service account use it
  ID=/subscriptions/<sub>/resourceGroups/prod/providers/Microsoft.ManagedIdentity/userAssignedIdentities/payments
  idbind binding create payments --identity $ID --allow apps/api --wait

  # Why does my pod not get a token?
  idbind doctor -n apps --service-account api

  # Who may use this identity in this cluster?
  idbind rbac who-can 22222222-2222-2222-2222-222222222222

Exit status:
  0  success
  1  the operation failed (the message names the input and the fix)
  2  usage error: a flag, argument or environment value is not valid
  3  checks found problems (doctor, issuer verify)
  4  a service could not be reached (Kubernetes API, ARM, Entra, an issuer, the proxy)
  5  timed out waiting (--wait)";

/// idbind: AKS-style identity bindings for any Kubernetes cluster.
///
/// Many clusters share one user-assigned managed identity through one federated identity
/// credential; Kubernetes RBAC decides which service accounts may use it, and the in-cluster
/// token proxy exchanges service-account tokens for Entra access tokens.
#[derive(Debug, Parser)]
#[command(
    name = "idbind",
    version,
    about,
    long_about,
    after_help = EXAMPLES,
    max_term_width = 110,
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Diagnostic log filter for stderr (`tracing` EnvFilter syntax, e.g. `debug`).
    #[arg(
        long,
        global = true,
        env = "IDBIND_LOG",
        default_value = "warn",
        value_name = "FILTER",
        display_order = 1000
    )]
    pub log: String,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, inspect and delete IdentityBindings.
    #[command(subcommand, visible_alias = "ib")]
    Binding(cmd::binding::BindingCommand),
    /// Generate the RBAC that lets service accounts use an identity, and audit who may use one.
    #[command(subcommand)]
    Rbac(cmd::rbac::RbacCommand),
    /// List an identity's federated identity credentials and remove idbind's when unused.
    #[command(subcommand)]
    Fic(cmd::fic::FicCommand),
    /// Show an identity's issuer documents and verify them the way Entra reads them.
    #[command(subcommand)]
    Issuer(cmd::issuer::IssuerCommand),
    /// Request an access token through the idbind proxy exactly as an Azure Identity SDK does.
    Token(cmd::token::TokenArgs),
    /// Walk the whole chain for a service account and report every broken link with a fix.
    Doctor(Box<cmd::doctor::DoctorArgs>),
    /// Run the Azure emulator (Entra token endpoint and ARM managed identities) in the foreground.
    Emulator(cmd::emulator::EmulatorArgs),
    /// Print a shell completion script.
    Completions(cmd::completions::CompletionsArgs),
}

/// The clap definition of `idbind` (for documentation, completions and tests).
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs parsed arguments; returns the exit status. Errors are printed to stderr here.
pub async fn run(cli: Cli) -> ExitCode {
    init_logging(&cli.log);
    let result = match cli.command {
        Command::Binding(c) => cmd::binding::run(c).await,
        Command::Rbac(c) => cmd::rbac::run(c).await,
        Command::Fic(c) => cmd::fic::run(c).await,
        Command::Issuer(c) => cmd::issuer::run(c).await,
        Command::Token(a) => cmd::token::run(a).await,
        Command::Doctor(a) => cmd::doctor::run(*a).await,
        Command::Emulator(a) => cmd::emulator::run(a).await,
        Command::Completions(a) => cmd::completions::run(&a),
    };
    match result {
        Ok(code) => code.into(),
        Err(error) => exit::report(&error),
    }
}

/// Parses the process arguments and runs them: what `main` does.
pub async fn main_entry() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with status 0; usage errors to stderr with status 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(exit::USAGE));
        }
    };
    run(cli).await
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // A second initialisation (tests calling `run` twice) is harmless: the first one stays.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}
