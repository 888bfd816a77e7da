//! `cargo xtask`: the project's development tasks, in Rust so they run wherever cargo does.
//!
//! See `cargo xtask --help`. The two commands a newcomer needs are `cargo xtask sandbox` and
//! `cargo xtask test`.

mod bench;
mod bench_controller;
mod bench_proxy;
mod cli_docs;
mod codegen;
mod e2e;
mod e2e_kind;
mod manifests;
mod sandbox;
mod stack;
mod test;
mod tools;
mod util;

use clap::{Parser, Subcommand};

/// Development tasks for idbind.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Xtask {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every check CI runs: format, lints, licenses, generated files, manifests, all tests.
    Test(test::TestArgs),
    /// Write generated artefacts (CRD, manifests, docs) from the Rust sources.
    Codegen {
        /// Do not write; fail if a committed file is stale.
        #[arg(long)]
        check: bool,
    },
    /// Validate every manifest under deploy/ with kubernetes-validate and the CRD's schema.
    ValidateManifests,
    /// Install the external test tools (Python and npm packages) into .tools/.
    Tools,
    /// Run idbind on this machine with the Azure and Kubernetes emulators, get a token as a pod
    /// would, and print what happened (the first command to try).
    Sandbox(sandbox::SandboxArgs),
    /// The mission end to end as real processes: one Azure emulator, two clusters, one identity.
    E2e(e2e::E2eArgs),
    /// Benchmarks: run the real binaries against the emulators and print figures (no assertions).
    Bench {
        #[command(subcommand)]
        which: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// 2,000 IdentityBindings over 200 identities through the controller: time to Ready, ARM and
    /// issuer writes, peak RSS.
    Controller(bench_controller::BenchControllerArgs),
    /// The token proxy: cached-path requests/s and latency next to nginx, cold-path overhead,
    /// memory with 10,000 cached tokens.
    Proxy(bench_proxy::Args),
}

fn main() -> anyhow::Result<()> {
    let args = Xtask::parse();
    match args.cmd {
        Cmd::Test(a) => test::run(&a),
        Cmd::Codegen { check } => codegen::run(check),
        Cmd::ValidateManifests => tools::validate_manifests(),
        Cmd::Tools => tools::install_all().map(|_| ()),
        Cmd::Sandbox(a) => sandbox::run(&a),
        Cmd::E2e(a) => e2e::run(&a),
        Cmd::Bench { which } => match which {
            BenchCmd::Controller(a) => bench_controller::run(&a),
            BenchCmd::Proxy(a) => bench_proxy::run(&a),
        },
    }
}
