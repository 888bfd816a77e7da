//! The `idbind-proxy` binary as a child process serving a [`Stack`](crate::Stack).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::Stack;
use crate::error::{Error, Result, Step as _};

/// A running `idbind-proxy` process; killed when dropped.
#[derive(Debug)]
pub struct ProxyProcess {
    child: Child,
    /// The HTTPS listener's address.
    pub listen: SocketAddr,
    /// The admin listener's address.
    pub admin: SocketAddr,
}

impl ProxyProcess {
    /// Starts `binary` with the stack's [`Stack::proxy_args`] plus `extra_args`, waits for its
    /// ready line, and points the stack at it ([`Stack::use_external_proxy`]). Its logs go to
    /// this process's stderr.
    pub async fn start(stack: &Stack, binary: &Path, extra_args: &[&str]) -> Result<Self> {
        let mut child = Command::new(binary)
            .args(stack.proxy_args())
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .step(format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().step("the proxy's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .step("waiting for the proxy's ready line")?
            .step("reading the proxy's stdout")?;
        let Some(line) = line else {
            let status = child.wait().await.step("waiting for the failed proxy")?;
            return Err(Error {
                step: "starting the proxy".into(),
                reason: format!("it exited ({status})"),
            });
        };
        let ready: serde_json::Value =
            serde_json::from_str(&line).step(format!("the ready line {line:?}"))?;
        let addr = |field: &str| -> Result<SocketAddr> {
            ready[field]
                .as_str()
                .step(format!("{field} in the ready line"))?
                .parse()
                .step(format!("{field} address"))
        };
        let process = Self {
            listen: addr("listen")?,
            admin: addr("admin")?,
            child,
        };
        stack.use_external_proxy(process.listen);
        Ok(process)
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The admin base URL.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) -> Result<()> {
        let url = format!("{}/readyz", self.admin_url());
        for _ in 0..1500 {
            if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error {
            step: "waiting for /readyz".into(),
            reason: "not ready within 30 s".into(),
        })
    }

    /// Resident set size in KiB, from `/proc/<pid>/status`.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status.lines().find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
    }

    /// Sends SIGTERM (via `kill`) and waits for the exit status.
    pub async fn terminate(mut self) -> Result<std::process::ExitStatus> {
        let pid = self.pid().step("the proxy's pid")?;
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .step("kill -TERM")?;
        if !sent.success() {
            return Err(Error {
                step: "kill -TERM".into(),
                reason: format!("{sent}"),
            });
        }
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .step("waiting for the proxy to exit")?
            .step("the proxy's exit status")
    }
}
