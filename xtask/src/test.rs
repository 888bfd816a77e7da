//! `cargo xtask test`: the one test command, run by CI through `.ci/run`.

use std::time::Instant;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};

use crate::util::{self, cargo};
use crate::{codegen, tools};

/// The steps of `cargo xtask test`, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Step {
    /// `cargo fmt --check`.
    Fmt,
    /// `cargo clippy --workspace --all-targets -- -D warnings`.
    Clippy,
    /// `cargo deny check licenses bans sources`.
    Deny,
    /// `cargo xtask codegen --check`.
    Codegen,
    /// Install the Python and npm test tools into .tools/.
    Tools,
    /// kubernetes-validate and CRD-schema checks of deploy/.
    Manifests,
    /// `cargo nextest run --workspace`.
    Nextest,
    /// Documentation examples (`cargo test --doc`), which nextest does not run.
    Doctest,
    /// `cargo xtask e2e` (two clusters as real processes), then `cargo xtask sandbox --check`.
    E2e,
}

/// Arguments of `cargo xtask test`.
#[derive(Args)]
pub struct TestArgs {
    /// Run only these steps (repeatable); default: all.
    #[arg(long, value_enum)]
    only: Vec<Step>,
    /// Skip these steps (repeatable).
    #[arg(long, value_enum)]
    skip: Vec<Step>,
    /// Extra arguments passed to `cargo nextest run` (e.g. a test filter).
    #[arg(last = true)]
    nextest_args: Vec<String>,
}

pub fn run_step(step: Step, args: &TestArgs) -> Result<()> {
    match step {
        Step::Fmt => util::run(cargo().args(["fmt", "--all", "--check"])),
        Step::Clippy => {
            util::run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))
        }
        Step::Deny => {
            tools::ensure_cargo_deny()?;
            eprintln!(
                "note: `cargo deny check advisories` is not run: its RustSec database cannot be fetched on this network"
            );
            util::run(cargo().args(["deny", "check", "licenses", "bans", "sources"]))
        }
        Step::Codegen => codegen::run(true),
        Step::Tools => tools::install_all().map(|_| ()),
        Step::Manifests => tools::validate_manifests(),
        Step::Nextest => {
            let mut cmd = cargo();
            cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"])
                .args(&args.nextest_args);
            tools::export_env(&mut cmd);
            util::run(&mut cmd)
        }
        Step::Doctest => util::run(cargo().args(["test", "--workspace", "--doc", "--quiet"])),
        Step::E2e => crate::e2e::test_step(),
    }
}

pub fn run(args: &TestArgs) -> Result<()> {
    let steps: Vec<Step> = Step::value_variants()
        .iter()
        .copied()
        .filter(|s| args.only.is_empty() || args.only.contains(s))
        .filter(|s| !args.skip.contains(s))
        .collect();
    let started = Instant::now();
    let mut failed = Vec::new();
    for step in steps {
        let name = format!("{step:?}").to_lowercase();
        eprintln!("\n==> {name}");
        let t = Instant::now();
        let result = run_step(step, args);
        let took = t.elapsed().as_secs_f32();
        match result {
            Ok(()) => eprintln!("==> {name} passed in {took:.1}s"),
            Err(e) => {
                eprintln!("==> {name} FAILED in {took:.1}s: {e:#}");
                failed.push(name);
                // Formatting and lint failures are worth reporting together with test results;
                // a failed tool installation makes later steps meaningless.
                if step == Step::Tools {
                    break;
                }
            }
        }
    }
    eprintln!("\ncargo xtask test took {:.0}s", started.elapsed().as_secs_f32());
    if !failed.is_empty() {
        bail!("failed steps: {}", failed.join(", "));
    }
    eprintln!("all steps passed");
    Ok(())
}
