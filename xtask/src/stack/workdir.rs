//! The work directory of `cargo xtask sandbox` and `cargo xtask e2e`: safe to wipe (it carries a
//! marker), and a record of the processes a run started, so a second run stops what an earlier
//! one left running (a killed terminal, a second start while the first still runs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use rustix::process::Signal;
use serde::{Deserialize, Serialize};

use crate::stack::process::{is_alive, signal_group};

const MARKER: &str = ".idbind-workdir";
const PIDS: &str = "processes.json";

/// One recorded process.
#[derive(Debug, Serialize, Deserialize)]
struct Recorded {
    name: String,
    pid: u32,
    exe: PathBuf,
}

/// The processes of the running command, written to `DIR/processes.json`.
pub struct Pids {
    path: PathBuf,
    list: Vec<Recorded>,
}

impl Pids {
    /// A record for `dir`, listing this process (`cargo xtask <command>`) first.
    pub fn new(dir: &Path, command: &str) -> Self {
        let mut list = Vec::new();
        if let Ok(exe) = std::env::current_exe() {
            list.push(Recorded {
                name: format!("cargo xtask {command}"),
                pid: std::process::id(),
                exe,
            });
        }
        Self {
            path: dir.join(PIDS),
            list,
        }
    }

    /// Adds a child.
    pub fn add(&mut self, name: &str, pid: u32, exe: &Path) {
        self.list.push(Recorded {
            name: name.to_owned(),
            pid,
            exe: exe.to_path_buf(),
        });
    }

    /// Writes the record.
    pub fn write(&self) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.list)?;
        std::fs::write(&self.path, text).with_context(|| format!("writing {}", self.path.display()))
    }

    /// Removes the record (everything was stopped).
    pub fn clear(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether `pid` still runs `exe` (a recycled pid runs something else).
fn runs(pid: u32, exe: &Path) -> bool {
    is_alive(pid) && std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == exe)
}

/// Makes `dir` an empty work directory for `cargo xtask <command>`: stops a run still going on
/// in it (the xtask process first, so it cleans up itself; then any child it left), then removes
/// its contents. Refuses a non-empty directory that is not one of ours.
pub fn prepare(dir: &Path, command: &str) -> Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !empty && !dir.join(MARKER).exists() {
            bail!(
                "{} is not empty and was not made by `cargo xtask {command}`; choose another --dir",
                dir.display()
            );
        }
        stop_previous(dir, command);
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.with_context(|| format!("removing {} from the previous run", path.display()))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        format!("made by `cargo xtask {command}`; replaced on every run\n"),
    )
    .with_context(|| format!("writing {}", dir.join(MARKER).display()))?;
    Ok(())
}

fn stop_previous(dir: &Path, command: &str) {
    let Ok(text) = std::fs::read_to_string(dir.join(PIDS)) else {
        return;
    };
    let Ok(list) = serde_json::from_str::<Vec<Recorded>>(&text) else {
        return;
    };
    let alive: Vec<&Recorded> = list
        .iter()
        .filter(|r| r.pid != std::process::id() && runs(r.pid, &r.exe))
        .collect();
    if alive.is_empty() {
        return;
    }
    eprintln!(
        "{command}: stopping what an earlier run left running in {}",
        dir.display()
    );
    for r in &alive {
        eprintln!("{command}:   - {} (pid {})", r.name, r.pid);
        if let Some(pid) = i32::try_from(r.pid).ok().and_then(rustix::process::Pid::from_raw) {
            // The xtask process is not a group leader of its own; the children are.
            if rustix::process::kill_process(pid, Signal::TERM).is_err() {
                signal_group(r.pid, Signal::TERM);
            }
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline && alive.iter().any(|r| runs(r.pid, &r.exe)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for r in alive.iter().filter(|r| runs(r.pid, &r.exe)) {
        signal_group(r.pid, Signal::KILL);
        if let Some(pid) = i32::try_from(r.pid).ok().and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_empty_or_marked_directories_are_wiped() {
        let dir = std::env::temp_dir().join(format!("idbind-workdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("precious.txt"), "keep").unwrap();
        let err = prepare(&dir, "sandbox").unwrap_err().to_string();
        assert!(err.contains("was not made by `cargo xtask sandbox`"), "{err}");
        assert!(dir.join("precious.txt").exists());

        std::fs::remove_file(dir.join("precious.txt")).unwrap();
        prepare(&dir, "sandbox").unwrap();
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        std::fs::write(dir.join("logs/old.log"), "old").unwrap();
        // A record of processes that are gone is ignored.
        std::fs::write(
            dir.join(PIDS),
            r#"[{"name":"x","pid":999999999,"exe":"/nonexistent"}]"#,
        )
        .unwrap();
        prepare(&dir, "sandbox").unwrap();
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from(MARKER)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
