//! An issuer store in a local directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::{ETag, IssuerStore, Precondition, check, content_etag, validate_path};
use crate::{Error, Result};

/// Name of the advisory lock file in the store root.
const LOCK_FILE: &str = ".idbind.lock";
/// Prefix of temporary files (reserved by [`validate_path`]).
const TMP_PREFIX: &str = ".idbind-tmp-";

/// An [`IssuerStore`] in a local directory.
///
/// Writes replace files atomically (temporary file, `fsync`, `rename` in the same directory), so
/// readers — including the HTTP handler of [`crate::router`] — see the old or the new document,
/// never a mix. ETags are content hashes. Compare-and-swap holds an exclusive advisory lock on
/// `<root>/.idbind.lock` around read-compare-write, so it is correct across threads and processes
/// on the same host (not on network file systems without `flock`).
#[derive(Clone, Debug)]
pub struct DirectoryStore {
    root: PathBuf,
}

impl DirectoryStore {
    /// A store rooted at `root`, created if missing.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_err("creating directory", &root))?;
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file(&self, path: &str) -> Result<PathBuf> {
        validate_path(path)?;
        Ok(self.root.join(path))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Path) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || f(&root))
            .await
            .map_err(|e| Error::Io {
                op: "running a file operation in",
                path: self.root.clone(),
                source: io::Error::other(e.to_string()),
            })?
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { op, path, source }
}

fn read_file(file: &Path) -> Result<Option<(Vec<u8>, ETag)>> {
    match fs::read(file) {
        Ok(bytes) => {
            let etag = content_etag(&bytes);
            Ok(Some((bytes, etag)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("reading", file)(e)),
    }
}

/// Holds the store's exclusive lock until dropped.
struct StoreLock(File);

impl StoreLock {
    fn acquire(root: &Path) -> Result<Self> {
        let path = root.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("opening lock file", &path))?;
        file.lock().map_err(io_err("locking", &path))?;
        Ok(Self(file))
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        // Closing the file releases the lock as well; unlocking first just does it sooner.
        let _ = self.0.unlock();
    }
}

fn replace_atomically(file: &Path, bytes: &[u8]) -> Result<()> {
    let dir = file.parent().ok_or_else(|| Error::InvalidPath {
        path: file.display().to_string(),
        reason: "it has no parent directory".to_owned(),
    })?;
    fs::create_dir_all(dir).map_err(io_err("creating directory", dir))?;
    let tmp = dir.join(format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = File::create_new(&tmp).map_err(io_err("creating", &tmp))?;
        f.write_all(bytes).map_err(io_err("writing", &tmp))?;
        f.sync_all().map_err(io_err("syncing", &tmp))?;
        fs::rename(&tmp, file).map_err(io_err("renaming into place", file))?;
        // Make the rename itself durable.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing directory", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[async_trait::async_trait]
impl IssuerStore for DirectoryStore {
    async fn read(&self, path: &str) -> Result<Option<(Vec<u8>, ETag)>> {
        let file = self.file(path)?;
        self.blocking(move |_| read_file(&file)).await
    }

    async fn write(&self, path: &str, bytes: &[u8], precondition: Precondition) -> Result<ETag> {
        let file = self.file(path)?;
        let (path, bytes) = (path.to_owned(), bytes.to_vec());
        self.blocking(move |root| {
            let _lock = StoreLock::acquire(root)?;
            let current = read_file(&file)?;
            check(&path, &precondition, current.as_ref().map(|(_, e)| e))?;
            replace_atomically(&file, &bytes)?;
            Ok(content_etag(&bytes))
        })
        .await
    }

    async fn delete(&self, path: &str, precondition: Precondition) -> Result<()> {
        let file = self.file(path)?;
        let path = path.to_owned();
        self.blocking(move |root| {
            let _lock = StoreLock::acquire(root)?;
            let current = read_file(&file)?;
            check(&path, &precondition, current.as_ref().map(|(_, e)| e))?;
            match fs::remove_file(&file) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err("deleting", &file)(e)),
            }
        })
        .await
    }
}
