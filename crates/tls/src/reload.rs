//! A server certificate resolver that follows certificate and key files as they are replaced
//! (Kubernetes updates mounted Secrets by swapping a symlink), without dropping connections:
//! established connections keep their session, new handshakes get the new certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::{Error, Result, certified_key};

/// How often, at most, the files are looked at again during handshakes.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Serves the certificate in `cert_path`/`key_path`, re-reading them when they change.
///
/// A pair that does not parse or whose key does not match the certificate (say, the certificate
/// was replaced and the key not yet) is ignored and the previous pair stays in use.
pub struct ReloadingCertResolver {
    cert_path: PathBuf,
    key_path: PathBuf,
    check_interval: Duration,
    state: Mutex<State>,
}

struct State {
    current: Arc<CertifiedKey>,
    loaded_bytes: (Vec<u8>, Vec<u8>),
    last_check: Instant,
    reloads: u64,
}

impl std::fmt::Debug for ReloadingCertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCertResolver")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ReloadingCertResolver {
    /// Loads the pair now; fails if it cannot be used.
    pub fn new(cert_path: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> Result<Self> {
        let cert_path = cert_path.into();
        let key_path = key_path.into();
        let (cert, key) = read_pair(&cert_path, &key_path)?;
        let current = Arc::new(pair_to_key(&cert, &key)?);
        Ok(Self {
            cert_path,
            key_path,
            check_interval: DEFAULT_CHECK_INTERVAL,
            state: Mutex::new(State {
                current,
                loaded_bytes: (cert, key),
                last_check: Instant::now(),
                reloads: 0,
            }),
        })
    }

    /// Changes how often the files are checked (zero: on every handshake).
    pub fn with_check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval;
        self
    }

    /// Re-reads the files now; returns whether a new certificate was taken into use.
    pub fn reload(&self) -> Result<bool> {
        let (cert, key) = read_pair(&self.cert_path, &self.key_path)?;
        let mut state = self.state.lock();
        state.last_check = Instant::now();
        if state.loaded_bytes.0 == cert && state.loaded_bytes.1 == key {
            return Ok(false);
        }
        let fresh = pair_to_key(&cert, &key)?;
        state.current = Arc::new(fresh);
        state.loaded_bytes = (cert, key);
        state.reloads += 1;
        tracing::info!(cert = %self.cert_path.display(), "serving certificate reloaded");
        Ok(true)
    }

    /// How many times a new certificate was taken into use.
    pub fn reloads(&self) -> u64 {
        self.state.lock().reloads
    }

    /// The certificate in use.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.state.lock().current.clone()
    }

    fn maybe_reload(&self) {
        let due = self.state.lock().last_check.elapsed() >= self.check_interval;
        if due && let Err(e) = self.reload() {
            tracing::warn!(error = %e, cert = %self.cert_path.display(), "keeping the previous certificate");
        }
    }
}

impl ResolvesServerCert for ReloadingCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.maybe_reload();
        Some(self.current())
    }
}

fn read_pair(cert_path: &Path, key_path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| Error::Read {
            path: p.to_path_buf(),
            source: e,
        })
    };
    Ok((read(cert_path)?, read(key_path)?))
}

fn pair_to_key(cert: &[u8], key: &[u8]) -> Result<CertifiedKey> {
    let text = |b: &[u8], what: &'static str| {
        std::str::from_utf8(b)
            .map_err(|_| Error::InvalidPem {
                what,
                reason: "not UTF-8 text".into(),
            })
            .map(str::to_owned)
    };
    certified_key(&text(cert, "certificate")?, &text(key, "private key")?)
}
