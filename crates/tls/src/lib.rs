//! TLS for idbind: a small certificate authority (proxy, webhook and emulator certificates),
//! rustls server and client configurations built on the aws-lc-rs provider (passed explicitly; no
//! process-wide default is installed), and a server certificate resolver that follows
//! certificate files as they are rotated.
//!
//! ```
//! use std::time::Duration;
//! use idbind_tls::{CertificateAuthority, client_config_with_roots, server_config};
//!
//! let ca = CertificateAuthority::generate("idbind proxy CA", Duration::from_secs(86400))?;
//! let leaf = ca.issue_server_cert(&["proxy.idbind.svc".into()], &[], Duration::from_secs(3600))?;
//! let server = server_config(&leaf.cert_pem, &leaf.key_pem)?;
//! assert_eq!(server.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
//! let _client = client_config_with_roots(ca.cert_pem())?;
//! assert!(idbind_tls::not_after(&leaf.cert_pem)? > std::time::SystemTime::now());
//! # Ok::<(), idbind_tls::Error>(())
//! ```

mod ca;
mod config;
mod reload;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub use ca::{CertificateAuthority, CertifiedKeyPem};
pub use config::{
    ALPN_H2_HTTP11, certified_key, client_config_with_roots, parse_certs, parse_key, provider, server_config,
    server_config_with_resolver,
};
pub use reload::{DEFAULT_CHECK_INTERVAL, ReloadingCertResolver};

/// Everything that can go wrong with certificates and TLS configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A PEM input did not hold what was expected.
    #[error("invalid {what} PEM: {reason}")]
    InvalidPem {
        /// What the PEM should have held.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A DNS name could not go into a certificate.
    #[error("invalid DNS name for a certificate: {0:?}")]
    InvalidName(String),
    /// A certificate was requested without any DNS name or IP address.
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoSubjectNames,
    /// Key or certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// rustls refused a configuration.
    #[error("TLS configuration: {0}")]
    Rustls(String),
    /// A certificate or key file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The expiry (`notAfter`) of the first certificate in a PEM bundle.
pub fn not_after(cert_pem: &str) -> Result<SystemTime> {
    let certs = parse_certs(cert_pem)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(certs[0].as_ref()).map_err(|e| Error::InvalidPem {
            what: "certificate",
            reason: e.to_string(),
        })?;
    let secs = cert.validity().not_after.timestamp();
    let secs = u64::try_from(secs).map_err(|_| Error::InvalidPem {
        what: "certificate",
        reason: "expiry before 1970".into(),
    })?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}
