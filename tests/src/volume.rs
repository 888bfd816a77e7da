//! Secret and ConfigMap volumes as kubelet mounts them, for components under test that follow
//! mounted files (the proxy's keys and certificate, a pod's CA bundle).
//!
//! [`write_volume`] is kubelet's atomic writer (`pkg/volume/util/atomic_writer.go`), for flat
//! payloads:
//!
//! ```text
//! <dir>/..2026_01_02_15_04_05.123456789/<files>   the payload of one update
//! <dir>/..data -> ..2026_01_02_15_04_05.123456789  swapped atomically (rename of a new symlink)
//! <dir>/<name> -> ..data/<name>                    one per payload entry
//! ```
//!
//! A reader that opens `<dir>/<name>` sees either the old or the new payload, never a mix, and
//! an entry that leaves the payload leaves the directory. [`MountedVolume`] keeps such a
//! directory in step with a Secret or ConfigMap by reading it through the API every `period`
//! (kubelet's periodic volume sync, much shortened).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;

use crate::error::{Error, Result, Step as _};

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file of a volume payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileData {
    /// Contents.
    pub data: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// Relative path (may contain `/`) → file, as a volume plugin computes it.
pub type Payload = BTreeMap<String, FileData>;

/// Writes `files` (entry name → contents, with permission bits `mode`) into `dir` the way kubelet
/// updates a Secret or ConfigMap volume. Returns whether anything changed.
pub fn write_volume(dir: &Path, files: &BTreeMap<String, Vec<u8>>, mode: u32) -> Result<bool> {
    let payload = files
        .iter()
        .map(|(name, data)| {
            (
                name.clone(),
                FileData {
                    data: data.clone(),
                    mode,
                },
            )
        })
        .collect();
    write_payload(dir, &payload)
}

/// Writes `payload` into `dir` with kubelet's scheme (nested paths allowed, as in projected
/// volumes); returns whether anything changed.
pub fn write_payload(dir: &Path, payload: &Payload) -> Result<bool> {
    for path in payload.keys() {
        validate(path).map_err(|reason| Error {
            step: format!("writing a volume into {}", dir.display()),
            reason,
        })?;
    }
    std::fs::create_dir_all(dir).step(format!("creating {}", dir.display()))?;
    if current_payload(dir).as_ref() == Some(payload) {
        return Ok(false);
    }
    let old = std::fs::read_link(dir.join(DATA)).ok();

    let stamp = jiff::Timestamp::now()
        .strftime("..%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let mut name = stamp.clone();
    let mut n = 0;
    while dir.join(&name).exists() {
        n += 1;
        name = format!("{stamp}{n}");
    }
    let payload_dir = dir.join(&name);
    std::fs::create_dir(&payload_dir).step(format!("creating {}", payload_dir.display()))?;
    for (file, content) in payload {
        let path = payload_dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).step(format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, &content.data).step(format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(content.mode))
            .step(format!("setting the mode of {}", path.display()))?;
    }

    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    symlink(&name, &tmp).step(format!("creating {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(DATA)).step(format!("swapping {}/{DATA}", dir.display()))?;

    let tops: BTreeSet<String> = payload.keys().filter_map(|p| top(p)).collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA).join(top), &link).step(format!("creating {}", link.display()))?;
        }
    }
    for entry in std::fs::read_dir(dir).step(format!("reading {}", dir.display()))? {
        let entry = entry.step(format!("reading {}", dir.display()))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if !file.starts_with("..") && !tops.contains(&file) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old.filter(|o| o != Path::new(&name)) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

/// The payload visible in `dir` now, if it holds a volume.
fn current_payload(dir: &Path) -> Option<Payload> {
    let data = dir.join(DATA);
    std::fs::read_link(&data).ok()?;
    let mut out = Payload::new();
    collect(&data, &data, &mut out).ok()?;
    Some(out)
}

fn collect(root: &Path, dir: &Path, out: &mut Payload) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::metadata(&path)?;
        if meta.is_dir() {
            collect(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            let data = std::fs::read(&path)?;
            let mode = meta.permissions().mode() & 0o7777;
            out.insert(rel.to_string_lossy().into_owned(), FileData { data, mode });
        }
    }
    Ok(())
}

fn top(path: &str) -> Option<String> {
    PathBuf::from(path)
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
}

/// A payload path must be relative, without `..`, and not start with `..` (kubelet's rules).
fn validate(path: &str) -> std::result::Result<(), String> {
    let p = Path::new(path);
    if path.is_empty() || p.is_absolute() || path.starts_with("..") {
        return Err(format!("{path:?} is not a relative file path"));
    }
    if p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!("{path:?}: only plain path segments are allowed"));
    }
    Ok(())
}

/// What a [`MountedVolume`] mirrors.
#[derive(Clone)]
enum Source {
    Secret(Api<Secret>),
    ConfigMap(Api<ConfigMap>),
}

impl Source {
    /// The object's entries, or `None` while it does not exist.
    async fn read(&self, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
        match self {
            Self::Secret(api) => Ok(api
                .get_opt(name)
                .await
                .step(format!("reading Secret {name}"))?
                .map(|s| {
                    s.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect()
                })),
            Self::ConfigMap(api) => Ok(api
                .get_opt(name)
                .await
                .step(format!("reading ConfigMap {name}"))?
                .map(|cm| {
                    let text = cm
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()));
                    let binary = cm
                        .binary_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0));
                    text.chain(binary).collect()
                })),
        }
    }
}

/// A directory kept in step with a Secret or ConfigMap, as kubelet keeps a mounted volume; the
/// sync stops when this is dropped. A deleted object leaves the files as they were.
pub struct MountedVolume {
    dir: PathBuf,
    updates: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MountedVolume {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MountedVolume {
    /// Mounts Secret `namespace/name` into `dir` (files mode 0644, kubelet's default), re-read
    /// every `period`. Returns once the first payload is written (kubelet does not start a pod
    /// before its volumes are mounted), waiting up to 30 s for the Secret to exist.
    pub async fn secret(
        client: kube::Client,
        namespace: &str,
        name: &str,
        dir: impl Into<PathBuf>,
        period: Duration,
    ) -> Result<Self> {
        let source = Source::Secret(Api::namespaced(client, namespace));
        Self::start(source, name, dir.into(), period).await
    }

    /// Mounts ConfigMap `namespace/name` into `dir`, like [`MountedVolume::secret`].
    pub async fn config_map(
        client: kube::Client,
        namespace: &str,
        name: &str,
        dir: impl Into<PathBuf>,
        period: Duration,
    ) -> Result<Self> {
        let source = Source::ConfigMap(Api::namespaced(client, namespace));
        Self::start(source, name, dir.into(), period).await
    }

    async fn start(source: Source, name: &str, dir: PathBuf, period: Duration) -> Result<Self> {
        const MODE: u32 = 0o644;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let first = loop {
            if let Some(files) = source.read(name).await? {
                break files;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error {
                    step: format!("mounting {name}"),
                    reason: "it did not appear within 30 s".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        write_volume(&dir, &first, MODE)?;
        let updates = Arc::new(AtomicU64::new(1));
        let task = {
            let (dir, updates, name) = (dir.clone(), updates.clone(), name.to_owned());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    match source.read(&name).await {
                        Ok(Some(files)) => match write_volume(&dir, &files, MODE) {
                            Ok(true) => {
                                updates.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(false) => {}
                            Err(e) => tracing::warn!(error = %e, "updating a mounted volume failed"),
                        },
                        Ok(None) => {}
                        Err(e) => tracing::debug!(error = %e, "reading a mounted object failed; retrying"),
                    }
                }
            })
        };
        Ok(Self { dir, updates, task })
    }

    /// The mount directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of entry `key`.
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// How many payloads were written (1 after the mount, one more per change).
    pub fn updates(&self) -> u64 {
        self.updates.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn swaps_the_payload_and_prunes_entries_like_kubelet() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().join("vol");
        assert!(write_volume(&dir, &files(&[("a", "1"), ("b", "2")]), 0o644).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_link(dir.join("a")).unwrap(), Path::new("..data/a"));
        let first = std::fs::read_link(dir.join(DATA)).unwrap();
        assert!(!write_volume(&dir, &files(&[("a", "1"), ("b", "2")]), 0o644).unwrap());
        assert_eq!(std::fs::read_link(dir.join(DATA)).unwrap(), first);

        assert!(write_volume(&dir, &files(&[("a", "3")]), 0o644).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "3");
        assert!(std::fs::symlink_metadata(dir.join("b")).is_err());
        assert!(!dir.join(&first).exists());
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("..2"))
            .collect();
        names.sort();
        assert_eq!(names, ["..data", "a"]);
        assert!(write_volume(&dir, &files(&[("../x", "")]), 0o644).is_err());
    }

    #[test]
    fn nested_paths_and_modes_as_in_projected_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().join("vol");
        let payload = |token: &str| -> Payload {
            [
                (
                    "token/t".to_owned(),
                    FileData {
                        data: token.into(),
                        mode: 0o600,
                    },
                ),
                (
                    "ca.crt".to_owned(),
                    FileData {
                        data: b"ca".to_vec(),
                        mode: 0o644,
                    },
                ),
            ]
            .into()
        };
        assert!(write_payload(&dir, &payload("1")).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("token/t")).unwrap(), "1");
        assert_eq!(
            std::fs::read_link(dir.join("token")).unwrap(),
            Path::new("..data/token")
        );
        let mode = std::fs::metadata(dir.join("token/t"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!write_payload(&dir, &payload("1")).unwrap());
        assert!(write_payload(&dir, &payload("2")).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("token/t")).unwrap(), "2");
        for bad in ["../x", "/etc/x", "a/../b", "..data", ""] {
            let p: Payload = [(
                bad.to_owned(),
                FileData {
                    data: vec![],
                    mode: 0o644,
                },
            )]
            .into();
            assert!(write_payload(&dir, &p).is_err(), "{bad}");
        }
    }
}
