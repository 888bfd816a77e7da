//! This cluster's signing keys, read from the mounted key Secret and followed as it changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use idbind_issuer::KeySet;
use parking_lot::{Mutex, RwLock};

use crate::metrics::ReloadLabels;
use crate::{Error, Metrics, Result};

type Digest = [u8; 32];

/// The signing keys in a directory holding a key Secret's entries as files (one file per `data`
/// key, as a Secret volume mounts them; names starting with `.` are the volume's own and are
/// skipped). [`KeyFiles::reload`] re-reads it; a set that is half written or invalid is refused
/// and the previous keys stay in use.
pub struct KeyFiles {
    dir: PathBuf,
    keys: RwLock<Option<(Arc<KeySet>, Digest)>>,
    /// Content digest of the last set refused, so a bad set is reported once, not every poll.
    refused: Mutex<Option<Digest>>,
    metrics: Metrics,
}

impl std::fmt::Debug for KeyFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFiles")
            .field("dir", &self.dir)
            .field("kid", &self.signing_kid())
            .finish()
    }
}

impl KeyFiles {
    /// Keys to be read from `dir` (nothing is read until [`KeyFiles::reload`]).
    pub fn new(dir: impl Into<PathBuf>, metrics: Metrics) -> Self {
        Self {
            dir: dir.into(),
            keys: RwLock::new(None),
            refused: Mutex::new(None),
            metrics,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key set in use, if one was loaded.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.read().as_ref().map(|(k, _)| Arc::clone(k))
    }

    /// The `kid` assertions are signed with now.
    pub fn signing_kid(&self) -> Option<String> {
        self.current().map(|k| k.signing_key().kid().to_owned())
    }

    /// Re-reads the directory. Returns whether the keys changed. On error the previous keys (if
    /// any) stay in use.
    pub fn reload(&self) -> Result<bool> {
        let data = read_dir(&self.dir)?;
        let digest = digest(&data);
        if self.keys.read().as_ref().is_some_and(|(_, d)| *d == digest) {
            return Ok(false);
        }
        match KeySet::from_secret_data(&data) {
            Ok(set) => {
                let kid = set.signing_key().kid().to_owned();
                *self.keys.write() = Some((Arc::new(set), digest));
                *self.refused.lock() = None;
                self.metrics
                    .key_reloads
                    .get_or_create(&ReloadLabels { result: "ok" })
                    .inc();
                tracing::info!(dir = %self.dir.display(), %kid, "loaded signing keys");
                Ok(true)
            }
            Err(e) => {
                self.metrics
                    .key_reloads
                    .get_or_create(&ReloadLabels { result: "error" })
                    .inc();
                Err(Error::KeysInvalid {
                    path: self.dir.clone(),
                    reason: e.to_string(),
                })
            }
        }
    }

    /// Reloads every `interval` until the future is dropped, logging refused sets once each.
    pub async fn follow(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.reload_logged();
        }
    }

    /// [`KeyFiles::reload`], logging a refused set once per distinct content.
    pub(crate) fn reload_logged(&self) {
        if let Err(e) = self.reload() {
            let fingerprint = read_dir(&self.dir).map(|d| digest(&d)).ok();
            let mut refused = self.refused.lock();
            if fingerprint.is_none() || *refused != fingerprint {
                *refused = fingerprint;
                if let Some(kid) = self.signing_kid() {
                    tracing::warn!(error = %e, %kid, "signing keys not reloaded; still using the previous keys");
                } else {
                    tracing::warn!(error = %e, "no usable signing keys yet");
                }
            }
        }
    }
}

fn read_dir(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let io = |path: &Path, source| Error::KeysRead {
        path: path.to_owned(),
        source,
    };
    let mut data = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows the volume's symlinks; a directory is not a Secret entry.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => continue,
            // Vanished between listing and reading: the volume is being swapped.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&path, e)),
        }
        match std::fs::read(&path) {
            Ok(bytes) => {
                data.insert(name.to_owned(), bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path, e)),
        }
    }
    Ok(data)
}

fn digest(data: &BTreeMap<String, Vec<u8>>) -> Digest {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for (name, bytes) in data {
        ctx.update(&(name.len() as u64).to_be_bytes());
        ctx.update(name.as_bytes());
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(bytes);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Writes a key set's Secret data into `dir`, one file per entry, and removes other entries
/// (tests and tooling). Each file is written whole under a temporary name and renamed; readers
/// may still see a mix of old and new files in between, which [`KeyFiles::reload`] refuses.
pub fn write_key_dir(dir: &Path, keys: &KeySet) -> std::io::Result<()> {
    let data = keys.to_secret_data();
    for (name, bytes) in &data {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, dir.join(name))?;
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with('.') && !data.contains_key(name.as_ref()) && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use idbind_issuer::{ClusterName, RotationStep, SECRET_CURRENT_KEY, SECRET_STATE_KEY};

    use super::*;

    fn keyset() -> KeySet {
        KeySet::generate(ClusterName::parse("east").unwrap(), jiff::Timestamp::now()).unwrap()
    }

    #[test]
    fn loads_reloads_and_keeps_the_previous_set_on_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let files = KeyFiles::new(dir.path(), Metrics::default());
        assert!(files.reload().is_err(), "empty directory");
        assert!(files.current().is_none());

        let first = keyset();
        write_key_dir(dir.path(), &first).unwrap();
        std::fs::create_dir(dir.path().join("..data")).unwrap();
        assert!(files.reload().unwrap());
        assert_eq!(files.signing_kid().as_deref(), Some(first.signing_key().kid()));
        assert!(!files.reload().unwrap(), "unchanged");

        // Half written: a new current key whose id the state file does not list.
        let second = keyset();
        std::fs::write(
            dir.path().join(SECRET_CURRENT_KEY),
            second.signing_key().to_pkcs8_pem(),
        )
        .unwrap();
        let err = files.reload().unwrap_err().to_string();
        assert!(err.contains(SECRET_CURRENT_KEY), "{err}");
        assert_eq!(files.signing_kid().as_deref(), Some(first.signing_key().kid()));
        files.reload_logged();

        std::fs::write(dir.path().join(SECRET_STATE_KEY), b"{not json").unwrap();
        assert!(files.reload().is_err());

        write_key_dir(dir.path(), &second).unwrap();
        assert!(files.reload().unwrap());
        assert_eq!(files.signing_kid().as_deref(), Some(second.signing_key().kid()));
        assert_eq!(
            files
                .metrics
                .key_reloads
                .get_or_create(&ReloadLabels { result: "ok" })
                .get(),
            2
        );
    }

    #[test]
    fn follows_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let mut keys = keyset();
        write_key_dir(dir.path(), &keys).unwrap();
        let files = KeyFiles::new(dir.path(), Metrics::default());
        files.reload().unwrap();
        let old = keys.signing_key().kid().to_owned();
        keys.apply(RotationStep::PublishNext, jiff::Timestamp::now())
            .unwrap();
        write_key_dir(dir.path(), &keys).unwrap();
        assert!(files.reload().unwrap());
        assert_eq!(
            files.signing_kid().as_deref(),
            Some(old.as_str()),
            "next is published, not used"
        );
        keys.apply(RotationStep::Activate, jiff::Timestamp::now())
            .unwrap();
        write_key_dir(dir.path(), &keys).unwrap();
        assert!(files.reload().unwrap());
        assert_ne!(files.signing_kid().as_deref(), Some(old.as_str()));
    }
}
