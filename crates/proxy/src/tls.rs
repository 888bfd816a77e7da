//! The serving certificate: TLS 1.2+, ALPN h2 and http/1.1, read from files and followed as they
//! are replaced (new handshakes get the new certificate; open connections keep theirs).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use idbind_tls::ReloadingCertResolver;

use crate::{Error, Result};

/// The TLS side of the proxy listener.
#[derive(Clone, Debug)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    resolver: Option<Arc<ReloadingCertResolver>>,
}

impl ServerTls {
    /// Serves the certificate and key in these PEM files, checking them for changes at most every
    /// `check_interval` (zero: on every handshake). Fails if the pair cannot be used now.
    pub fn from_files(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        check_interval: Duration,
    ) -> Result<Self> {
        let cert = cert.into();
        let resolver = ReloadingCertResolver::new(&cert, key.into())
            .map_err(|source| Error::Certificate { path: cert, source })?
            .with_check_interval(check_interval);
        let resolver = Arc::new(resolver);
        let config = idbind_tls::server_config_with_resolver(resolver.clone())
            .map_err(|source| Error::Tls { source })?;
        Ok(Self {
            config: Arc::new(config),
            resolver: Some(resolver),
        })
    }

    /// Serves with a ready-made rustls configuration (it should offer ALPN `h2` and `http/1.1`).
    pub fn from_config(config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            config,
            resolver: None,
        }
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<rustls::ServerConfig> {
        &self.config
    }

    /// How many times a replaced certificate was taken into use (0 without files).
    pub fn certificate_reloads(&self) -> u64 {
        self.resolver.as_ref().map_or(0, |r| r.reloads())
    }

    /// Re-reads the certificate files now (no-op without files); returns whether they changed.
    pub fn reload(&self) -> Result<bool> {
        match &self.resolver {
            Some(r) => r.reload().map_err(|source| Error::Tls { source }),
            None => Ok(false),
        }
    }
}
