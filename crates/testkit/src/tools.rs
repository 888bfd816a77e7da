//! Locating the external tools tests drive (Python with azure-identity, npm packages such as
//! Azurite and @azure/identity). `cargo xtask test` installs them and exports their locations;
//! running `cargo nextest` directly finds them in their default places after one
//! `cargo xtask tools`.
//!
//! A missing tool skips the test with a message, except under CI (`CI` set), where a missing tool
//! fails the test: CI must never pass by skipping.

use std::path::{Path, PathBuf};

/// The workspace root, from this crate's location.
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}

/// Whether we run under CI.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The Python interpreter of the test virtualenv (`IDBIND_PYTHON`, default `.tools/venv/bin/python`).
pub fn python() -> Option<PathBuf> {
    let path = std::env::var_os("IDBIND_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools/venv/bin/python"));
    path.exists().then_some(path)
}

/// The test `node_modules` directory (`IDBIND_NODE_MODULES`, default `tests/js/node_modules`).
pub fn node_modules() -> Option<PathBuf> {
    let path = std::env::var_os("IDBIND_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("tests/js/node_modules"));
    path.is_dir().then_some(path)
}

/// An executable from `node_modules/.bin`.
pub fn node_bin(name: &str) -> Option<PathBuf> {
    let path = node_modules()?.join(".bin").join(name);
    path.exists().then_some(path)
}

/// Returns the tool, or decides what a test does without it: under CI it panics (the test fails),
/// elsewhere it prints a SKIP line and returns `None` so the test can return early.
pub fn require(what: &str, tool: Option<PathBuf>) -> Option<PathBuf> {
    if tool.is_some() {
        return tool;
    }
    let msg = format!("{what} is not installed; run `cargo xtask tools` (or `cargo xtask test`)");
    if in_ci() {
        panic!("{msg}");
    }
    eprintln!("SKIP: {msg}");
    None
}
