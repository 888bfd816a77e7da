//! Issuer stores: where the OIDC documents live, with ETag compare-and-swap.
//!
//! Paths are relative to the issuer base URL (`{tenant}/{client}/openid/v1/jwks`); see
//! [`crate::jwks_path`] and [`crate::discovery_path`].

mod blob;
mod directory;
mod memory;

use std::fmt;

pub use blob::{BlobAuth, BlobStore, STORAGE_SCOPE};
pub use directory::DirectoryStore;
pub use memory::MemoryStore;

use crate::{Error, Result};

/// An entity tag identifying one version of a stored document (kept exactly as the store gave
/// it, quotes included).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ETag(String);

impl ETag {
    /// Wraps an entity tag as the store returned it.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The tag, for `ETag`/`If-Match` headers.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ETag({})", self.0)
    }
}

/// The condition under which a write or delete happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Unconditionally.
    Any,
    /// Only if the document is still at this version.
    IfMatch(ETag),
    /// Only if the document does not exist.
    IfNoneMatch,
}

/// A place that holds issuer documents. Writes and deletes are compare-and-swap: when the
/// [`Precondition`] does not hold they fail with [`Error::PreconditionFailed`] and change nothing.
#[async_trait::async_trait]
pub trait IssuerStore: Send + Sync + fmt::Debug {
    /// The document at `path` and its ETag, or `None` if there is none.
    async fn read(&self, path: &str) -> Result<Option<(Vec<u8>, ETag)>>;

    /// Writes `bytes` at `path` if `precondition` holds; returns the new ETag.
    async fn write(&self, path: &str, bytes: &[u8], precondition: Precondition) -> Result<ETag>;

    /// Deletes the document at `path` if `precondition` holds. Deleting a missing document with
    /// [`Precondition::Any`] succeeds.
    async fn delete(&self, path: &str, precondition: Precondition) -> Result<()>;
}

/// Checks that `path` is a clean relative path: `/`-separated segments of ASCII letters, digits,
/// `.`, `-` and `_`; no empty, `.` or `..` segments; nothing starting with `.idbind` (reserved for
/// the directory store's own files).
pub fn validate_path(path: &str) -> Result<()> {
    let err = |reason: &str| Error::InvalidPath {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if path.is_empty() || path.len() > 1024 {
        return Err(err("it must be 1 to 1024 characters long"));
    }
    if path.starts_with('/') {
        return Err(err("it must be relative (no leading '/')"));
    }
    for segment in path.split('/') {
        if segment.is_empty() {
            return Err(err("it has an empty segment ('//' or a trailing '/')"));
        }
        if segment == "." || segment == ".." {
            return Err(err("'.' and '..' segments are not allowed"));
        }
        if segment.starts_with(".idbind") {
            return Err(err("names starting with '.idbind' are reserved"));
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(err(
                "only ASCII letters, digits, '.', '-' and '_' are allowed in segments",
            ));
        }
    }
    Ok(())
}

/// The strong ETag of content: a quoted hex SHA-256 prefix.
pub(crate) fn content_etag(bytes: &[u8]) -> ETag {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let hex: String = digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
    ETag(format!("\"{hex}\""))
}

/// Whether `precondition` holds for a document currently at `current`.
pub(crate) fn check(path: &str, precondition: &Precondition, current: Option<&ETag>) -> Result<()> {
    let holds = match (precondition, current) {
        (Precondition::Any, _) => true,
        (Precondition::IfMatch(want), Some(have)) => want == have,
        (Precondition::IfMatch(_), None) => false,
        (Precondition::IfNoneMatch, current) => current.is_none(),
    };
    if holds {
        Ok(())
    } else {
        Err(Error::PreconditionFailed {
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for ok in [
            "a",
            "t/c/.well-known/openid-configuration",
            "t/c/openid/v1/jwks",
            "a_b-c.json",
        ] {
            validate_path(ok).unwrap();
        }
        for (bad, want) in [
            ("", "1 to 1024"),
            ("/etc/passwd", "relative"),
            ("a//b", "empty segment"),
            ("a/", "empty segment"),
            ("../x", "'..'"),
            ("a/./b", "'.'"),
            ("a/.idbind.lock", "reserved"),
            ("a\\b", "only ASCII"),
            ("a/b c", "only ASCII"),
            ("a/%2e%2e", "only ASCII"),
        ] {
            let err = validate_path(bad).unwrap_err().to_string();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn preconditions() {
        let e1 = ETag::new("\"1\"");
        let e2 = ETag::new("\"2\"");
        check("p", &Precondition::Any, None).unwrap();
        check("p", &Precondition::Any, Some(&e1)).unwrap();
        check("p", &Precondition::IfMatch(e1.clone()), Some(&e1)).unwrap();
        check("p", &Precondition::IfMatch(e1.clone()), Some(&e2)).unwrap_err();
        check("p", &Precondition::IfMatch(e1), None).unwrap_err();
        check("p", &Precondition::IfNoneMatch, None).unwrap();
        assert!(matches!(
            check("p", &Precondition::IfNoneMatch, Some(&e2)),
            Err(Error::PreconditionFailed { .. })
        ));
        assert_ne!(content_etag(b"a"), content_etag(b"b"));
        assert_eq!(content_etag(b"a"), content_etag(b"a"));
    }
}
