//! kubelet's atomic volume update scheme (`pkg/volume/util/atomic_writer.go`), so programs that
//! follow mounted Secrets and ConfigMaps see exactly what they would see in a pod:
//!
//! ```text
//! <dir>/..2026_01_02_15_04_05.123456789/<files>   the payload of one update
//! <dir>/..data -> ..2026_01_02_15_04_05.123456789  swapped atomically (rename of a new symlink)
//! <dir>/<name> -> ..data/<name>                    one per top-level payload entry
//! ```
//!
//! A reader that opens `<dir>/<name>` sees either the old or the new payload, never a mix.

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result, bail};

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file of a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileData {
    /// Contents.
    pub data: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// Relative path → file, as a volume plugin computes it.
pub type Payload = BTreeMap<String, FileData>;

/// Writes `payload` into `dir` with kubelet's scheme; returns whether anything changed.
pub fn write(dir: &Path, payload: &Payload) -> Result<bool> {
    for path in payload.keys() {
        validate(path)?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if current(dir).as_ref() == Some(payload) {
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
    let ts_dir = dir.join(&name);
    std::fs::create_dir(&ts_dir).with_context(|| format!("creating {}", ts_dir.display()))?;
    for (path, file) in payload {
        let target = ts_dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, &file.data).with_context(|| format!("writing {}", target.display()))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(file.mode))
            .with_context(|| format!("setting the mode of {}", target.display()))?;
    }

    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    symlink(&name, &tmp).with_context(|| format!("creating {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(DATA)).with_context(|| format!("swapping {}/{DATA}", dir.display()))?;

    let tops: std::collections::BTreeSet<String> = payload.keys().filter_map(|p| top(p)).collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA).join(top), &link)
                .with_context(|| format!("creating {}", link.display()))?;
        }
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !tops.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old.filter(|o| o != Path::new(&name)) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

/// The payload currently visible in `dir`, if any.
fn current(dir: &Path) -> Option<Payload> {
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
            out.insert(
                rel.to_string_lossy().into_owned(),
                FileData {
                    data,
                    mode: meta.permissions().mode() & 0o7777,
                },
            );
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
fn validate(path: &str) -> Result<()> {
    let p = Path::new(path);
    if path.is_empty() || p.is_absolute() || path.starts_with("..") {
        bail!("invalid volume file path {path:?}");
    }
    if p.components().any(|c| !matches!(c, Component::Normal(_))) {
        bail!("invalid volume file path {path:?}: only plain names are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn payload(entries: &[(&str, &str)]) -> Payload {
        entries
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    FileData {
                        data: v.as_bytes().to_vec(),
                        mode: 0o644,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn writes_swaps_and_prunes_like_kubelet() {
        let dir = std::env::temp_dir().join(format!("idbind-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(write(&dir, &payload(&[("a", "1"), ("sub/b", "2")])).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        assert_eq!(std::fs::read_link(dir.join("a")).unwrap(), Path::new("..data/a"));
        let first = std::fs::read_link(dir.join(DATA)).unwrap();

        // Same payload: nothing changes.
        assert!(!write(&dir, &payload(&[("a", "1"), ("sub/b", "2")])).unwrap());
        assert_eq!(std::fs::read_link(dir.join(DATA)).unwrap(), first);

        // New payload: new timestamped directory, old one and stale links removed.
        assert!(write(&dir, &payload(&[("a", "3")])).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "3");
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err());
        assert!(!dir.join(&first).exists());
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_escaping_paths() {
        for bad in ["../x", "/etc/x", "a/../b", "..data", ""] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }
}
