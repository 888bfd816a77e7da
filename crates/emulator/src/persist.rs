//! The state file: loaded at start, rewritten atomically (temp file, fsync, rename, fsync of the
//! directory) after every change, so a crash loses at most the change being written and never
//! leaves a torn file behind.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::state::{STATE_FORMAT, State};
use crate::{Error, Result};

#[derive(Debug)]
pub(crate) struct Persister {
    path: PathBuf,
    /// Serializes writers so a later snapshot is never overwritten by an earlier one.
    lock: Mutex<()>,
}

impl Persister {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: Mutex::new(()),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn temp_path(&self) -> PathBuf {
        let mut name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(".tmp");
        self.path.with_file_name(name)
    }

    /// Loads the state file if it exists. A leftover temp file (a write interrupted by a crash) is
    /// removed: the state file itself is always complete.
    pub(crate) fn load(&self) -> Result<Option<State>> {
        let temp = self.temp_path();
        if temp.exists() {
            tracing::warn!(path = %temp.display(), "removing a temp state file left by an interrupted write");
            let _ = fs::remove_file(&temp);
        }
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::StateRead {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let state: State = serde_json::from_slice(&bytes).map_err(|e| Error::StateParse {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        if state.format != STATE_FORMAT {
            return Err(Error::StateParse {
                path: self.path.clone(),
                reason: format!(
                    "format version {} is not supported (expected {STATE_FORMAT})",
                    state.format
                ),
            });
        }
        Ok(Some(state))
    }

    /// Writes a snapshot taken by `snapshot` while holding the writer lock.
    pub(crate) fn save_with(&self, snapshot: impl FnOnce() -> Result<Vec<u8>>) -> Result<()> {
        let _guard = self.lock.lock();
        let bytes = snapshot()?;
        self.write_atomically(&bytes)
    }

    fn write_atomically(&self, bytes: &[u8]) -> Result<()> {
        let err = |source| Error::StateWrite {
            path: self.path.clone(),
            source,
        };
        let temp = self.temp_path();
        {
            let mut options = fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            let mut file = options.open(&temp).map_err(err)?;
            file.write_all(bytes).map_err(err)?;
            file.sync_all().map_err(err)?;
        }
        fs::rename(&temp, &self.path).map_err(err)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}
