//! rustls configurations with the aws-lc-rs provider, passed explicitly (no process default).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Error, Result};

/// The one crypto provider idbind uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// ALPN protocols servers offer: HTTP/2 first, then HTTP/1.1.
pub const ALPN_H2_HTTP11: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Parses every certificate in a PEM bundle; an empty bundle is an error.
pub fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidPem {
            what: "certificate",
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::InvalidPem {
            what: "certificate",
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// Parses a private key (PKCS#8, PKCS#1 or SEC1) from PEM.
pub fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| Error::InvalidPem {
        what: "private key",
        reason: e.to_string(),
    })
}

/// Builds a signing certificate from PEM, checking that the key matches the certificate.
pub fn certified_key(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey> {
    let certs = parse_certs(cert_pem)?;
    let key = parse_key(key_pem)?;
    let mismatch = |e: rustls::Error| match e {
        rustls::Error::InconsistentKeys(_) => Error::Rustls(format!("certificate and key do not match: {e}")),
        other => Error::Rustls(other.to_string()),
    };
    let certified = CertifiedKey::from_der(certs, key, &provider()).map_err(mismatch)?;
    certified.keys_match().map_err(mismatch)?;
    Ok(certified)
}

/// A TLS 1.2+ server configuration with one certificate and ALPN h2 + http/1.1.
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<ServerConfig> {
    let key = Arc::new(certified_key(cert_pem, key_pem)?);
    server_config_with_resolver(Arc::new(FixedCert(key)))
}

/// A TLS 1.2+ server configuration whose certificate comes from a resolver (e.g.
/// [`crate::ReloadingCertResolver`]), with ALPN h2 + http/1.1.
pub fn server_config_with_resolver(resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Rustls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN_H2_HTTP11.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client configuration trusting only the certificates in `ca_pem` (all of them, so an
/// overlapping bundle during CA rotation works).
pub fn client_config_with_roots(ca_pem: &str) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(ca_pem)? {
        roots.add(cert).map_err(|e| Error::InvalidPem {
            what: "CA certificate",
            reason: e.to_string(),
        })?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Rustls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = ALPN_H2_HTTP11.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}
