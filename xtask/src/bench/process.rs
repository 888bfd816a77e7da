//! Child processes of a benchmark: output to log files, readiness read from those logs,
//! CPU time and memory read from `/proc`, and stopped (SIGTERM, then SIGKILL) when dropped, so
//! a failing benchmark leaves nothing running.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::process::{Pid, Signal};

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux ABI we run on).
const USER_HZ: u64 = 100;

/// A running child process, stopped when dropped.
pub struct Proc {
    name: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// CPU time and memory of a process, from `/proc`.
#[derive(Clone, Copy, Debug)]
pub struct ProcStats {
    /// Peak resident set size (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
    /// User plus system CPU time.
    pub cpu: Duration,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr written to `<dir>/<name>.out` and `<dir>/<name>.err`.
    pub fn start(name: &str, cmd: &mut Command, dir: &Path) -> Result<Self> {
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.err"));
        let create = |p: &Path| File::create(p).with_context(|| format!("creating {}", p.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(create(&stdout)?)
            .stderr(create(&stderr)?)
            .spawn()
            .with_context(|| format!("starting {name} ({})", cmd.get_program().to_string_lossy()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
        })
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until a line of stdout (or stderr, with `stderr`) makes `pick` return `Some`;
    /// fails when the process exits first or after `timeout`, quoting the end of its stderr.
    pub fn wait_line<T>(
        &mut self,
        stderr: bool,
        timeout: Duration,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> Result<T> {
        let path = if stderr { &self.stderr } else { &self.stdout };
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            // Only complete lines: the last one may still be being written.
            let complete = text.rfind('\n').map_or("", |end| &text[..end]);
            if let Some(found) = complete.lines().find_map(&mut pick) {
                return Ok(found);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited with {status} before it was ready:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} was not ready after {timeout:?}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails when the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("{} exited with {status}:\n{}", self.name, self.log_tail()),
        }
    }

    /// Peak RSS and CPU time so far (the process must still run).
    pub fn stats(&self) -> Result<ProcStats> {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status of {}", self.name))?;
        let peak_rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no VmHWM in /proc/{pid}/status"))?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat of {}", self.name))?;
        // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        let (Some(utime), Some(stime)) = (tick(11), tick(12)) else {
            bail!("unexpected /proc/{pid}/stat: {stat}");
        };
        Ok(ProcStats {
            peak_rss_kib,
            cpu: Duration::from_millis((utime + stime) * 1000 / USER_HZ),
        })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        if let Some(pid) = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
