//! External tools the tests use, installed into the workspace (never globally):
//! a Python virtualenv in `.tools/venv` (kubernetes-validate, azure-identity) and npm packages in
//! `tests/js/node_modules` (azurite, @azure/identity).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{have, in_ci, output, root, run};

/// Python packages, pinned; the file is hashed so a change reinstalls.
const PY_REQUIREMENTS: &str = "tests/python/requirements.txt";
const JS_DIR: &str = "tests/js";

/// The virtualenv directory.
pub fn venv() -> PathBuf {
    root().join(".tools/venv")
}

/// The virtualenv's python.
pub fn venv_python() -> PathBuf {
    venv().join("bin/python")
}

/// Sets the variables tests read to find the tools.
pub fn export_env(cmd: &mut Command) {
    cmd.env("IDBIND_PYTHON", venv_python());
    cmd.env("IDBIND_NODE_MODULES", root().join(JS_DIR).join("node_modules"));
}

fn stamp_matches(stamp: &Path, contents: &str) -> bool {
    std::fs::read_to_string(stamp).is_ok_and(|s| s == contents)
}

/// Creates the virtualenv and installs the pinned requirements when they changed.
pub fn ensure_python() -> Result<()> {
    let req_path = root().join(PY_REQUIREMENTS);
    let req =
        std::fs::read_to_string(&req_path).with_context(|| format!("reading {}", req_path.display()))?;
    let stamp = venv().join(".requirements.installed");
    if venv_python().exists() && stamp_matches(&stamp, &req) {
        return Ok(());
    }
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| have(p))
        .context("python3 is not installed")?;
    if !venv_python().exists() {
        run(Command::new(python).args(["-m", "venv"]).arg(venv()))?;
    }
    run(Command::new(venv_python())
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&req_path))?;
    std::fs::write(&stamp, req)?;
    Ok(())
}

/// Installs the npm packages from the committed lock file when it changed.
pub fn ensure_node() -> Result<()> {
    let dir = root().join(JS_DIR);
    let lock = std::fs::read_to_string(dir.join("package-lock.json"))
        .context("reading tests/js/package-lock.json")?;
    let stamp = dir.join("node_modules/.idbind-installed");
    if stamp_matches(&stamp, &lock) {
        return Ok(());
    }
    if !have("npm") {
        bail!("npm is not installed; install Node.js 20 (Debian: apt-get install nodejs npm)");
    }
    run(Command::new("npm")
        .current_dir(&dir)
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]))?;
    std::fs::write(&stamp, lock)?;
    Ok(())
}

/// Installs cargo-deny with `cargo install --locked` when it is missing.
pub fn ensure_cargo_deny() -> Result<()> {
    if crate::util::cargo()
        .args(["deny", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    eprintln!("cargo-deny is missing; installing it with `cargo install --locked cargo-deny`");
    run(crate::util::cargo().args(["install", "--locked", "cargo-deny"]))
}

/// Everything the tests need.
pub fn install_all() -> Result<PathBuf> {
    ensure_python()?;
    ensure_node()?;
    Ok(venv())
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            yaml_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    out.sort();
    Ok(())
}

/// Validates deploy/: built-in kinds with `kubernetes-validate --strict`, IdentityBindings in
/// deploy/examples against the generated CRD's schema; files under `examples/invalid/` must fail.
pub fn validate_manifests() -> Result<()> {
    ensure_python()?;
    let deploy = root().join("deploy");
    let mut files = Vec::new();
    yaml_files(&deploy, &mut files)?;
    let (invalid, valid): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|p| p.components().any(|c| c.as_os_str() == "invalid"));
    if in_ci() || std::env::var_os("IDBIND_VERBOSE").is_some() {
        eprintln!(
            "validating {} manifests, {} expected to be rejected",
            valid.len(),
            invalid.len()
        );
    }
    let script = root().join("xtask/validate_manifests.py");
    let mut cmd = Command::new(venv_python());
    cmd.arg(&script).arg("--crd-dir").arg(deploy.join("crds"));
    for f in &valid {
        cmd.arg("--valid").arg(f);
    }
    for f in &invalid {
        cmd.arg("--invalid").arg(f);
    }
    let out = output(&mut cmd)?;
    eprint!("{out}");
    Ok(())
}
