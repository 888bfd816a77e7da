//! Process orchestration shared by `cargo xtask sandbox` and `cargo xtask e2e`: the real binaries
//! started as separate processes on loopback, wired the way they would be in clusters.
//!
//! - [`Binaries`]: `cargo build` of the four binaries, and where they are.
//! - [`process::Process`]: a child in its own process group, logging to `<dir>/logs/<name>.log`,
//!   ready when it prints its JSON ready line (or a URL answers), stopped with SIGTERM then
//!   SIGKILL, killed when dropped.
//! - [`azure::AzureEmulator`]: the `idbind-emulator` process and the Azure operations the
//!   scenarios need (create an identity, list its FICs through ARM, post an assertion to Entra).
//! - [`cluster::Cluster`]: one member cluster — the Kubernetes API emulator, `idbind-controller`
//!   (webhook, keys, certificates, issuer publishing), `idbind-proxy` and [`kubelet::Kubelet`]
//!   (kubelet-lite: pod volumes on this host).
//! - [`client`]: token requests as the SDKs make them (Rust, and Python `azure-identity` when
//!   available) and JWT claim decoding.

pub mod azure;
pub mod client;
pub mod cluster;
pub mod kubelet;
pub mod process;
pub mod workdir;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::util;

/// Aborts a spawned task when dropped.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    /// Spawns `fut` on the current runtime.
    pub fn spawn(fut: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(tokio::spawn(fut))
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The executables the stacks run.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `idbind-emulator` (Azure).
    pub emulator: PathBuf,
    /// `idbind-kube-emulator` (Kubernetes API).
    pub kube_emulator: PathBuf,
    /// `idbind-controller`.
    pub controller: PathBuf,
    /// `idbind-proxy`.
    pub proxy: PathBuf,
}

impl Binaries {
    /// Builds them with `cargo build` (progress on stderr) and finds them in cargo's output.
    pub fn build() -> Result<Self> {
        let mut cmd = util::cargo();
        cmd.args([
            "build",
            "-p",
            "idbind-emulator",
            "-p",
            "idbind-testkit",
            "-p",
            "idbind-controller",
            "-p",
            "idbind-proxy-bin",
            "--bins",
            "--message-format=json-render-diagnostics",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
        let out = cmd.output().context("running cargo build")?;
        if !out.status.success() {
            bail!(
                "cargo build of the idbind binaries failed ({}); the errors are above",
                out.status
            );
        }
        let mut found = std::collections::BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if msg["reason"] == "compiler-artifact"
                && let Some(exe) = msg["executable"].as_str()
                && let Some(name) = msg["target"]["name"].as_str()
            {
                found.insert(name.to_owned(), PathBuf::from(exe));
            }
        }
        let mut take = |name: &str| {
            found
                .remove(name)
                .ok_or_else(|| anyhow!("cargo build did not report the {name} executable"))
        };
        Ok(Self {
            emulator: take("idbind-emulator")?,
            kube_emulator: take("idbind-kube-emulator")?,
            controller: take("idbind-controller")?,
            proxy: take("idbind-proxy")?,
        })
    }
}

/// Polls `check` every 100 ms until it returns `Some`; fails after `timeout` naming `what` and
/// the last error `check` returned.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let started = Instant::now();
    let mut last: Option<anyhow::Error> = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = Some(e),
        }
        if started.elapsed() >= timeout {
            let secs = timeout.as_secs();
            return Err(match last {
                Some(e) => e.context(format!("timed out after {secs} s waiting for {what}")),
                None => anyhow!("timed out after {secs} s waiting for {what}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free loopback port, for the one listener whose address must be known before its process
/// starts (the issuer server: its URL is part of the controller's flags). The process binds it
/// a moment later; [`cluster::Cluster`] retries with another port if it lost the race.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(listener.local_addr().context("reading the bound port")?.port())
}

/// An HTTP client for the emulators and admin ports (plain HTTP on loopback).
pub fn http() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .context("building an HTTP client")
}
