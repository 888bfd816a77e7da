//! Test harness shared by the integration tests: Azurite, temporary directories, fake keys.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod azurite;
pub mod concurrency;

use std::path::{Path, PathBuf};

use idbind_issuer::Jwk;
use idbind_model::{ClientId, TenantId};

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn ids() -> (TenantId, ClientId) {
    (
        TenantId::parse("11111111-1111-1111-1111-111111111111").unwrap(),
        ClientId::parse("22222222-2222-2222-2222-222222222222").unwrap(),
    )
}

/// A syntactically valid public key with a chosen id (no RSA key generation: fast).
pub fn fake_jwk(kid: &str) -> Jwk {
    Jwk::rsa(kid, kid.as_bytes(), &[1, 0, 1])
}
