//! A small certificate authority: idbind's proxy CA, the webhook CA, and the emulators' CAs.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use crate::{Error, Result};

/// Certificates are back-dated by this much so small clock differences between hosts never make
/// a fresh certificate "not yet valid".
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// A PEM-encoded certificate (chain) and its private key.
#[derive(Clone)]
pub struct CertifiedKeyPem {
    /// The leaf certificate in PEM.
    pub cert_pem: String,
    /// The leaf's PKCS#8 private key in PEM. Secret: never log it.
    pub key_pem: String,
}

impl std::fmt::Debug for CertifiedKeyPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedKeyPem")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// A certificate authority that can issue server certificates.
pub struct CertificateAuthority {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Generates a self-signed CA (ECDSA P-256) valid for `validity` from now.
    pub fn generate(common_name: &str, validity: Duration) -> Result<Self> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "idbind");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, validity)?;
        params.serial_number = Some(random_serial()?);
        let key = KeyPair::generate().map_err(|e| Error::Generate(e.to_string()))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| Error::Generate(e.to_string()))?;
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        let issuer = Issuer::new(params, key);
        Ok(Self {
            cert_pem,
            key_pem,
            issuer,
        })
    }

    /// Loads a CA from its certificate and private key (PEM), e.g. from a Kubernetes Secret.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| Error::InvalidPem {
            what: "CA private key",
            reason: e.to_string(),
        })?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| Error::InvalidPem {
            what: "CA certificate",
            reason: e.to_string(),
        })?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            issuer,
        })
    }

    /// The CA certificate in PEM: what clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key in PEM. Secret: store it in a Secret, never log it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a server certificate (ECDSA P-256) for the DNS names and IP addresses, valid for
    /// `validity` from now. The first DNS name (or IP) is also the subject's common name.
    pub fn issue_server_cert(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: Duration,
    ) -> Result<CertifiedKeyPem> {
        if dns_names.is_empty() && ips.is_empty() {
            return Err(Error::NoSubjectNames);
        }
        let mut params = CertificateParams::default();
        let mut sans = Vec::new();
        for name in dns_names {
            rustls_pki_types::DnsName::try_from(name.as_str())
                .map_err(|_| Error::InvalidName(name.clone()))?;
            let dns = name
                .as_str()
                .try_into()
                .map_err(|_| Error::InvalidName(name.clone()))?;
            sans.push(SanType::DnsName(dns));
        }
        sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.subject_alt_names = sans;
        let mut dn = DistinguishedName::new();
        let cn = dns_names
            .first()
            .cloned()
            .or_else(|| ips.first().map(ToString::to_string))
            .unwrap_or_default();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, validity)?;
        params.serial_number = Some(random_serial()?);
        let key = KeyPair::generate().map_err(|e| Error::Generate(e.to_string()))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| Error::Generate(e.to_string()))?;
        Ok(CertifiedKeyPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn set_validity(params: &mut CertificateParams, validity: Duration) -> Result<()> {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now
        .checked_add(
            time::Duration::try_from(validity).map_err(|_| Error::Generate("validity too long".into()))?,
        )
        .ok_or_else(|| Error::Generate("validity too long".into()))?;
    Ok(())
}

fn random_serial() -> Result<rcgen::SerialNumber> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| Error::Generate("no randomness for a serial number".into()))?;
    // A positive serial, as RFC 5280 requires.
    bytes[0] &= 0x7f;
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}
