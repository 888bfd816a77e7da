//! An in-memory issuer store for tests and examples.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{ETag, IssuerStore, Precondition, check, validate_path};
use crate::Result;

/// An in-memory [`IssuerStore`]. ETags are version counters, as in Azure Blob Storage: rewriting
/// the same bytes still yields a new ETag.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    docs: BTreeMap<String, (Vec<u8>, ETag)>,
    version: u64,
    writes: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many writes and deletes succeeded so far.
    pub fn mutation_count(&self) -> u64 {
        self.lock().writes
    }

    /// The stored paths, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.lock().docs.keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated: every update is a
        // single insert or remove.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl IssuerStore for MemoryStore {
    async fn read(&self, path: &str) -> Result<Option<(Vec<u8>, ETag)>> {
        validate_path(path)?;
        Ok(self.lock().docs.get(path).cloned())
    }

    async fn write(&self, path: &str, bytes: &[u8], precondition: Precondition) -> Result<ETag> {
        validate_path(path)?;
        let mut inner = self.lock();
        check(path, &precondition, inner.docs.get(path).map(|(_, e)| e))?;
        inner.version += 1;
        inner.writes += 1;
        let etag = ETag::new(format!("\"m{}\"", inner.version));
        inner.docs.insert(path.to_owned(), (bytes.to_vec(), etag.clone()));
        Ok(etag)
    }

    async fn delete(&self, path: &str, precondition: Precondition) -> Result<()> {
        validate_path(path)?;
        let mut inner = self.lock();
        check(path, &precondition, inner.docs.get(path).map(|(_, e)| e))?;
        if inner.docs.remove(path).is_some() {
            inner.writes += 1;
        }
        Ok(())
    }
}
