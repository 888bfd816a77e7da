//! A child process of the stack: its own process group, logs in a file, a readiness check, and
//! an orderly stop (SIGTERM to the group, then SIGKILL) that also runs when it is dropped.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use rustix::process::{Pid, Signal};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::oneshot;

/// How a process says it is ready.
#[derive(Clone, Debug)]
pub enum Readiness {
    /// It prints one JSON object on stdout (the idbind binaries' ready line).
    JsonLine,
    /// This URL answers 2xx.
    Url(String),
}

/// What to start.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    /// Short name, used in messages and as the log file name.
    pub name: String,
    /// The executable.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<OsString>,
    /// Extra environment variables.
    pub env: Vec<(String, OsString)>,
    /// Where stdout and stderr go (appended).
    pub log: PathBuf,
    /// How readiness is detected.
    pub readiness: Readiness,
    /// How long it may take to become ready.
    pub timeout: Duration,
}

impl ProcessSpec {
    /// A spec for `program`, logging to `logs/<name>.log`, ready when it prints its JSON line
    /// within 60 s.
    pub fn new(name: &str, program: &Path, logs: &Path) -> Self {
        Self {
            name: name.to_owned(),
            program: program.to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            log: logs.join(format!("{name}.log")),
            readiness: Readiness::JsonLine,
            timeout: Duration::from_secs(60),
        }
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: impl Into<OsString>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// Sets the readiness check.
    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }
}

/// A running child process. Dropping it kills its process group.
#[derive(Debug)]
pub struct Process {
    name: String,
    program: PathBuf,
    log: PathBuf,
    child: tokio::process::Child,
    pid: u32,
    ready_line: Option<serde_json::Value>,
    stopped: bool,
}

impl Process {
    /// Starts the process and waits until it is ready; fails naming the process, its log and
    /// the log's last lines.
    pub async fn start(spec: ProcessSpec) -> Result<Self> {
        if let Some(parent) = spec.log.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .with_context(|| format!("opening {}", spec.log.display()))?;
        let shown = std::iter::once(spec.program.display().to_string())
            .chain(spec.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ");
        writeln!(log, "### {} $ {shown}", jiff::Timestamp::now()).context("writing the log")?;
        let stderr = log.try_clone().context("duplicating the log file handle")?;
        let mut cmd = tokio::process::Command::new(&spec.program);
        cmd.args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            // Its own group: a Ctrl-C in the terminal reaches us, and we stop the children in order.
            .process_group(0);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} ({})", spec.name, spec.program.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("{} exited at once", spec.name))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe for {}", spec.name))?;
        let (line_tx, line_rx) = oneshot::channel();
        tokio::spawn(copy_stdout(stdout, log, line_tx));
        let mut process = Self {
            name: spec.name.clone(),
            program: spec.program.clone(),
            log: spec.log.clone(),
            child,
            pid,
            ready_line: None,
            stopped: false,
        };
        let waited = tokio::time::timeout(spec.timeout, process.wait_ready(&spec.readiness, line_rx)).await;
        match waited {
            Ok(Ok(())) => Ok(process),
            Ok(Err(e)) => Err(process.failure(&format!("{e:#}")).await),
            Err(_) => {
                let secs = spec.timeout.as_secs();
                Err(process.failure(&format!("not ready within {secs} s")).await)
            }
        }
    }

    async fn wait_ready(
        &mut self,
        readiness: &Readiness,
        line: oneshot::Receiver<serde_json::Value>,
    ) -> Result<()> {
        match readiness {
            Readiness::JsonLine => tokio::select! {
                line = line => {
                    self.ready_line = Some(line.map_err(|_| anyhow!("it closed stdout without printing its ready line"))?);
                    Ok(())
                }
                status = self.child.wait() => bail!("it exited ({}) before it was ready", describe(status)),
            },
            Readiness::Url(url) => {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(2))
                    .build()
                    .context("building an HTTP client")?;
                loop {
                    if http.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
                        return Ok(());
                    }
                    if let Some(status) = self.child.try_wait().context("checking the process")? {
                        bail!("it exited ({status}) before {url} answered");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Stops the process and builds an error naming it, its log and the log's last lines.
    async fn failure(&mut self, reason: &str) -> anyhow::Error {
        self.stop().await;
        anyhow!(
            "{} failed to start: {reason}\n{}",
            self.name,
            log_tail(&self.log, 15)
        )
    }

    /// The JSON line it printed when ready ([`Readiness::JsonLine`]).
    pub fn ready_line(&self) -> Option<&serde_json::Value> {
        self.ready_line.as_ref()
    }

    /// A string field of the ready line.
    pub fn ready_field(&self, field: &str) -> Result<String> {
        self.ready_line
            .as_ref()
            .and_then(|l| l.get(field))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                anyhow!(
                    "{} printed no {field:?} in its ready line {:?}",
                    self.name,
                    self.ready_line
                )
            })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The executable.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The short name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.stopped {
            return None;
        }
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM to the process group, up to 10 s for it to exit, then SIGKILL.
    pub async fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        signal_group(self.pid, Signal::TERM);
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            signal_group(self.pid, Signal::KILL);
            let _ = self.child.wait().await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if !self.stopped && self.child.try_wait().ok().flatten().is_none() {
            signal_group(self.pid, Signal::KILL);
        }
    }
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("status unknown: {e}"),
    }
}

/// Sends `signal` to the process group `pid` leads (ours: every child is a group leader).
pub fn signal_group(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// Whether a process with this id exists.
pub fn is_alive(pid: u32) -> bool {
    i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

async fn copy_stdout(
    stdout: tokio::process::ChildStdout,
    mut log: std::fs::File,
    ready: oneshot::Sender<serde_json::Value>,
) {
    let mut ready = Some(ready);
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let parsed = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .filter(serde_json::Value::is_object);
        match &parsed {
            // The Azure emulator's ready line holds its (local, fake) client secret: keep it out.
            Some(value) if value.get("clientSecret").is_some() => {
                let mut shown = value.clone();
                shown["clientSecret"] = serde_json::Value::from("<redacted>");
                let _ = writeln!(log, "{shown}");
            }
            _ => {
                let _ = writeln!(log, "{line}");
            }
        }
        if let Some(value) = parsed
            && let Some(tx) = ready.take()
        {
            let _ = tx.send(value);
        }
    }
}

/// The last `n` lines of a log file, indented, with a header naming the file.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(n)..];
    let mut out = format!("  last lines of {}:", path.display());
    for line in tail {
        out.push_str("\n    ");
        out.push_str(line);
    }
    out
}
