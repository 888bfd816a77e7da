//! A CA, its serving certificate, and the CA renewal state machine with an overlapping trust
//! bundle.
//!
//! ```text
//!            IntroduceCa               SwitchCa                  RetireCa
//!   Stable ─────────────▶ Introduced ─────────────▶ Switched ─────────────▶ Stable
//!   bundle [A]            bundle [A, B]             bundle [B, A]            bundle [B]
//!   serves A-signed       serves A-signed           serves B-signed          serves B-signed
//! ```
//!
//! - **IntroduceCa** is due `ca_renew_before` ahead of the current CA's expiry: a new CA joins the
//!   bundle; nothing signs with it yet.
//! - **SwitchCa** is due `propagation_delay` after that: long enough for every client to have
//!   re-read the bundle (kubelet's ConfigMap sync plus the slowest SDK's CA file re-read). The
//!   serving certificate is re-issued by the new CA, which becomes current.
//! - **RetireCa** is due `retire_delay` after the switch: long enough for every server to have
//!   picked up the new serving certificate. The old CA leaves the bundle.
//! - **IssueServing** re-issues the serving certificate from the current CA, without touching the
//!   bundle, when it nears expiry or its names changed. A certificate never outlives its CA; one
//!   cut short by its CA's expiry is renewed by the CA switch instead.
//! - **Regenerate** replaces everything at once when the current CA has already expired (the
//!   controller was down for too long): nothing verifies anyway, so there is nothing to overlap.
//!
//! Every moment is recorded as it happened on the caller's clock, and the whole state round-trips
//! through a Secret's `data` ([`CertState::to_secret_data`], [`CertState::from_secret_data`]). The
//! functions here are pure apart from key generation; the manager decides when to call them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use idbind_tls::CertificateAuthority;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Secret entry: rotation metadata (JSON).
pub const STATE_KEY: &str = "state.json";
/// Secret entry: the current CA certificate (PEM).
pub const CA_CERT_KEY: &str = "ca.crt";
/// Secret entry: the current CA private key (PEM).
pub const CA_KEY_KEY: &str = "ca.key";
/// Secret entry: the next CA certificate, while one is being introduced.
pub const NEXT_CA_CERT_KEY: &str = "next-ca.crt";
/// Secret entry: the next CA private key, while one is being introduced.
pub const NEXT_CA_KEY_KEY: &str = "next-ca.key";
/// Secret entry: the previous CA certificate, until it is retired (its key is dropped).
pub const PREVIOUS_CA_CERT_KEY: &str = "previous-ca.crt";
/// Secret entry: the serving certificate (PEM).
pub const TLS_CERT_KEY: &str = "tls.crt";
/// Secret entry: the serving certificate's private key (PEM).
pub const TLS_KEY_KEY: &str = "tls.key";

const STATE_VERSION: u32 = 1;

/// Validity periods and the delays of a CA renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertPolicy {
    /// Lifetime of a CA.
    pub ca_validity: Duration,
    /// Start a CA renewal this long before the current CA expires.
    pub ca_renew_before: Duration,
    /// Lifetime of a serving certificate (cut short to its CA's expiry).
    pub cert_validity: Duration,
    /// Re-issue the serving certificate this long before it expires.
    pub cert_renew_before: Duration,
    /// How long a new CA sits in the bundle before it signs the serving certificate.
    pub propagation_delay: Duration,
    /// How long the old CA stays in the bundle after the serving certificate was switched.
    pub retire_delay: Duration,
}

impl CertPolicy {
    /// Checks that the periods fit together; the message names the flags (`prefix` is the flag
    /// prefix, like `--proxy-`).
    pub fn validate(&self, prefix: &str) -> Result<()> {
        let bad = |reason: String| Err(Error::config(format!("{prefix}* certificate timing"), reason));
        if self.ca_renew_before >= self.ca_validity {
            return bad(format!(
                "{prefix}ca-renew-before ({}) must be shorter than {prefix}ca-validity ({})",
                human(self.ca_renew_before),
                human(self.ca_validity)
            ));
        }
        if self.cert_renew_before >= self.cert_validity {
            return bad(format!(
                "{prefix}cert-renew-before ({}) must be shorter than {prefix}cert-validity ({})",
                human(self.cert_renew_before),
                human(self.cert_validity)
            ));
        }
        let overlap = self.propagation_delay.saturating_add(self.retire_delay);
        if self.ca_renew_before <= overlap {
            return bad(format!(
                "{prefix}ca-renew-before ({}) must be longer than {prefix}ca-propagation-delay plus \
                 {prefix}ca-retire-delay ({}), or the old CA expires before the renewal completes",
                human(self.ca_renew_before),
                human(overlap)
            ));
        }
        Ok(())
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s > 0 && s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s > 0 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s > 0 && s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// Who the certificates are for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// Common name of the CAs (a timestamp is appended so successive CAs differ).
    pub ca_name: String,
    /// DNS names of the serving certificate.
    pub dns_names: Vec<String>,
    /// IP addresses of the serving certificate.
    pub ips: Vec<IpAddr>,
}

/// Where a CA renewal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertPhase {
    /// One CA.
    Stable,
    /// A next CA is in the bundle but signs nothing yet.
    Introduced,
    /// The new CA signs; the old one is still in the bundle.
    Switched,
}

/// A transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertStep {
    /// Re-issue the serving certificate from the current CA.
    IssueServing,
    /// Add a new CA to the bundle.
    IntroduceCa,
    /// Serve a certificate of the new CA, which becomes current.
    SwitchCa,
    /// Drop the old CA from the bundle.
    RetireCa,
    /// Replace an expired CA and everything it signed at once.
    Regenerate,
}

impl fmt::Display for CertPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl fmt::Display for CertStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Clone, PartialEq, Eq)]
struct CaSlot {
    cert_pem: String,
    /// `None` for a retired-to-be previous CA, which signs nothing any more.
    key_pem: Option<String>,
    fingerprint: String,
    since: Timestamp,
    expires: Timestamp,
}

#[derive(Clone, PartialEq, Eq)]
struct Serving {
    cert_pem: String,
    key_pem: String,
    issuer: String,
    issued: Timestamp,
    expires: Timestamp,
    dns_names: Vec<String>,
    ips: Vec<IpAddr>,
}

/// CAs and serving certificate, with the times the state machine needs.
#[derive(Clone, PartialEq, Eq)]
pub struct CertState {
    current: CaSlot,
    next: Option<CaSlot>,
    previous: Option<CaSlot>,
    serving: Serving,
}

impl fmt::Debug for CertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertState")
            .field("phase", &self.phase())
            .field("current", &self.current.fingerprint)
            .field("next", &self.next.as_ref().map(|s| &s.fingerprint))
            .field("previous", &self.previous.as_ref().map(|s| &s.fingerprint))
            .field("serving_issuer", &self.serving.issuer)
            .field("serving_expires", &self.serving.expires)
            .finish_non_exhaustive()
    }
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add(d).unwrap_or(Timestamp::MAX)
}

fn before(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_sub(d).unwrap_or(Timestamp::MIN)
}

fn tls_error(what: &str) -> impl FnOnce(idbind_tls::Error) -> Error + '_ {
    move |e| Error::InvalidData {
        what: what.to_owned(),
        reason: e.to_string(),
    }
}

/// SHA-256 of the first certificate's DER, in lower-case hex.
pub fn fingerprint(cert_pem: &str) -> Result<String> {
    let certs = idbind_tls::parse_certs(cert_pem).map_err(tls_error("certificate"))?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, certs[0].as_ref());
    Ok(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

impl CaSlot {
    fn generate(subject: &Subject, policy: &CertPolicy, now: Timestamp) -> Result<Self> {
        let name = format!("{} {}", subject.ca_name, now.as_second());
        let ca = CertificateAuthority::generate(&name, policy.ca_validity).map_err(tls_error("new CA"))?;
        Ok(Self {
            cert_pem: ca.cert_pem().to_owned(),
            key_pem: Some(ca.key_pem().to_owned()),
            fingerprint: fingerprint(ca.cert_pem())?,
            since: now,
            expires: after(now, policy.ca_validity),
        })
    }

    fn issue(&self, subject: &Subject, policy: &CertPolicy, now: Timestamp) -> Result<Serving> {
        let key = self.key_pem.as_deref().ok_or_else(|| Error::InvalidData {
            what: "CA".into(),
            reason: "the CA has no private key; it cannot sign".into(),
        })?;
        let left = Duration::try_from(self.expires.duration_since(now)).unwrap_or(Duration::ZERO);
        let validity = policy.cert_validity.min(left);
        if validity.is_zero() {
            return Err(Error::InvalidData {
                what: "CA".into(),
                reason: format!("it expired at {}; it cannot sign", self.expires),
            });
        }
        let ca = CertificateAuthority::from_pem(&self.cert_pem, key).map_err(tls_error("CA"))?;
        let leaf = ca
            .issue_server_cert(&subject.dns_names, &subject.ips, validity)
            .map_err(tls_error("serving certificate"))?;
        Ok(Serving {
            cert_pem: leaf.cert_pem,
            key_pem: leaf.key_pem,
            issuer: self.fingerprint.clone(),
            issued: now,
            expires: after(now, validity),
            dns_names: subject.dns_names.clone(),
            ips: subject.ips.clone(),
        })
    }
}

impl CertState {
    /// A new CA and a serving certificate it signed.
    pub fn generate(subject: &Subject, policy: &CertPolicy, now: Timestamp) -> Result<Self> {
        let current = CaSlot::generate(subject, policy, now)?;
        let serving = current.issue(subject, policy, now)?;
        Ok(Self {
            current,
            next: None,
            previous: None,
            serving,
        })
    }

    /// The renewal phase.
    pub fn phase(&self) -> CertPhase {
        match (&self.next, &self.previous) {
            (Some(_), _) => CertPhase::Introduced,
            (None, Some(_)) => CertPhase::Switched,
            (None, None) => CertPhase::Stable,
        }
    }

    /// The trust bundle: the current CA first (clients that read only the first certificate of a
    /// bundle, like .NET, then trust the CA that signs), then the next, then the previous.
    pub fn bundle_pem(&self) -> String {
        [Some(&self.current), self.next.as_ref(), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .map(|slot| {
                let pem = slot.cert_pem.trim_end();
                format!("{pem}\n")
            })
            .collect()
    }

    /// Fingerprints of the CAs in the bundle, in bundle order.
    pub fn bundle_fingerprints(&self) -> Vec<&str> {
        [Some(&self.current), self.next.as_ref(), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .map(|slot| slot.fingerprint.as_str())
            .collect()
    }

    /// Fingerprint of the CA that signs now.
    pub fn current_fingerprint(&self) -> &str {
        &self.current.fingerprint
    }

    /// The current CA's certificate (PEM).
    pub fn current_ca_pem(&self) -> &str {
        &self.current.cert_pem
    }

    /// When the current CA expires (on the state machine's clock).
    pub fn current_ca_expires(&self) -> Timestamp {
        self.current.expires
    }

    /// The serving certificate (PEM).
    pub fn serving_cert_pem(&self) -> &str {
        &self.serving.cert_pem
    }

    /// The serving certificate's private key (PEM). Secret: never log it.
    pub fn serving_key_pem(&self) -> &str {
        &self.serving.key_pem
    }

    /// Fingerprint of the CA that signed the serving certificate.
    pub fn serving_issuer(&self) -> &str {
        &self.serving.issuer
    }

    /// When the serving certificate expires (on the state machine's clock).
    pub fn serving_expires(&self) -> Timestamp {
        self.serving.expires
    }

    /// The step to take at `now`, if one is due.
    pub fn next_step_due(&self, now: Timestamp, policy: &CertPolicy, subject: &Subject) -> Option<CertStep> {
        if now >= self.current.expires {
            return Some(CertStep::Regenerate);
        }
        let (step, at) = self.next_step_at(policy, subject);
        (now >= at).then_some(step)
    }

    /// The next step and when it becomes due (a manager sleeps until then).
    pub fn next_step_at(&self, policy: &CertPolicy, subject: &Subject) -> (CertStep, Timestamp) {
        let ca = match (&self.next, &self.previous) {
            (Some(next), _) => (CertStep::SwitchCa, after(next.since, policy.propagation_delay)),
            (None, Some(previous)) => (CertStep::RetireCa, after(previous.since, policy.retire_delay)),
            (None, None) => (
                CertStep::IntroduceCa,
                before(self.current.expires, policy.ca_renew_before),
            ),
        };
        let serving = (CertStep::IssueServing, self.serving_renewal_at(policy, subject));
        let regenerate = (CertStep::Regenerate, self.current.expires);
        [ca, serving, regenerate]
            .into_iter()
            .min_by_key(|(_, at)| *at)
            .unwrap_or(ca)
    }

    fn serving_renewal_at(&self, policy: &CertPolicy, subject: &Subject) -> Timestamp {
        let s = &self.serving;
        if s.issuer != self.current.fingerprint || s.dns_names != subject.dns_names || s.ips != subject.ips {
            return Timestamp::MIN;
        }
        if s.expires >= self.current.expires {
            // Cut short by its CA's expiry: the CA renewal re-issues it in time.
            return Timestamp::MAX;
        }
        before(s.expires, policy.cert_renew_before)
    }

    /// Applies `step` at `now`, due or not. Fails if the step does not fit the phase.
    pub fn apply(
        &mut self,
        step: CertStep,
        now: Timestamp,
        policy: &CertPolicy,
        subject: &Subject,
    ) -> Result<()> {
        let phase = self.phase();
        let wrong = || Error::InvalidData {
            what: "certificate rotation".into(),
            reason: format!("step {step} does not apply in phase {phase}"),
        };
        match (step, phase) {
            (CertStep::IssueServing, _) => {
                self.serving = self.current.issue(subject, policy, now)?;
            }
            (CertStep::IntroduceCa, CertPhase::Stable) => {
                self.next = Some(CaSlot::generate(subject, policy, now)?);
            }
            (CertStep::SwitchCa, CertPhase::Introduced) => {
                let next = self.next.take().ok_or_else(wrong)?;
                let serving = next.issue(subject, policy, now)?;
                let mut old = std::mem::replace(&mut self.current, next);
                old.key_pem = None;
                old.since = now;
                self.previous = Some(old);
                self.serving = serving;
            }
            (CertStep::RetireCa, CertPhase::Switched) => {
                self.previous = None;
            }
            (CertStep::Regenerate, _) => {
                *self = Self::generate(subject, policy, now)?;
            }
            _ => return Err(wrong()),
        }
        Ok(())
    }

    /// The Secret `data` holding this state.
    pub fn to_secret_data(&self) -> BTreeMap<String, Vec<u8>> {
        let meta = |slot: &CaSlot| SlotMeta {
            fingerprint: slot.fingerprint.clone(),
            since: slot.since,
            expires: slot.expires,
        };
        let state = StateMeta {
            version: STATE_VERSION,
            current: meta(&self.current),
            next: self.next.as_ref().map(meta),
            previous: self.previous.as_ref().map(meta),
            serving: ServingMeta {
                issuer: self.serving.issuer.clone(),
                issued: self.serving.issued,
                expires: self.serving.expires,
                dns_names: self.serving.dns_names.clone(),
                ip_addresses: self.serving.ips.clone(),
            },
        };
        let mut data = BTreeMap::new();
        // Strings, addresses and timestamps always serialize.
        data.insert(
            STATE_KEY.to_owned(),
            serde_json::to_vec_pretty(&state).unwrap_or_default(),
        );
        data.insert(CA_CERT_KEY.to_owned(), self.current.cert_pem.clone().into_bytes());
        if let Some(key) = &self.current.key_pem {
            data.insert(CA_KEY_KEY.to_owned(), key.clone().into_bytes());
        }
        if let Some(next) = &self.next {
            data.insert(NEXT_CA_CERT_KEY.to_owned(), next.cert_pem.clone().into_bytes());
            if let Some(key) = &next.key_pem {
                data.insert(NEXT_CA_KEY_KEY.to_owned(), key.clone().into_bytes());
            }
        }
        if let Some(previous) = &self.previous {
            data.insert(
                PREVIOUS_CA_CERT_KEY.to_owned(),
                previous.cert_pem.clone().into_bytes(),
            );
        }
        data.insert(
            TLS_CERT_KEY.to_owned(),
            self.serving.cert_pem.clone().into_bytes(),
        );
        data.insert(TLS_KEY_KEY.to_owned(), self.serving.key_pem.clone().into_bytes());
        data
    }

    /// Parses what [`CertState::to_secret_data`] wrote; every inconsistency is an error naming
    /// the entry (`what` names the Secret).
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>, what: &str) -> Result<Self> {
        let bad = |entry: &str, reason: String| Error::InvalidData {
            what: format!("{what} entry {entry}"),
            reason,
        };
        let text = |entry: &str| -> Result<Option<String>> {
            data.get(entry)
                .map(|b| String::from_utf8(b.clone()).map_err(|_| bad(entry, "not UTF-8 text".into())))
                .transpose()
        };
        let required =
            |entry: &str| -> Result<String> { text(entry)?.ok_or_else(|| bad(entry, "missing".into())) };
        let raw = data
            .get(STATE_KEY)
            .ok_or_else(|| bad(STATE_KEY, "missing".into()))?;
        let state: StateMeta =
            serde_json::from_slice(raw).map_err(|e| bad(STATE_KEY, format!("not the expected JSON: {e}")))?;
        if state.version != STATE_VERSION {
            return Err(bad(
                STATE_KEY,
                format!(
                    "version {} is not supported (expected {STATE_VERSION})",
                    state.version
                ),
            ));
        }
        if state.next.is_some() && state.previous.is_some() {
            return Err(bad(STATE_KEY, "it lists both a next and a previous CA".into()));
        }
        let slot = |meta: SlotMeta, cert_entry: &str, key_entry: Option<&str>| -> Result<CaSlot> {
            let cert_pem = required(cert_entry)?;
            let found = fingerprint(&cert_pem).map_err(|e| bad(cert_entry, e.to_string()))?;
            if found != meta.fingerprint {
                return Err(bad(
                    cert_entry,
                    format!(
                        "its fingerprint is {found} but {STATE_KEY} says {}",
                        meta.fingerprint
                    ),
                ));
            }
            let key_pem = match key_entry {
                Some(entry) => {
                    let key = required(entry)?;
                    CertificateAuthority::from_pem(&cert_pem, &key).map_err(|e| bad(entry, e.to_string()))?;
                    Some(key)
                }
                None => None,
            };
            Ok(CaSlot {
                cert_pem,
                key_pem,
                fingerprint: meta.fingerprint,
                since: meta.since,
                expires: meta.expires,
            })
        };
        let current = slot(state.current, CA_CERT_KEY, Some(CA_KEY_KEY))?;
        let next = state
            .next
            .map(|m| slot(m, NEXT_CA_CERT_KEY, Some(NEXT_CA_KEY_KEY)))
            .transpose()?;
        let previous = state
            .previous
            .map(|m| slot(m, PREVIOUS_CA_CERT_KEY, None))
            .transpose()?;
        let cert_pem = required(TLS_CERT_KEY)?;
        let key_pem = required(TLS_KEY_KEY)?;
        idbind_tls::certified_key(&cert_pem, &key_pem).map_err(|e| bad(TLS_CERT_KEY, e.to_string()))?;
        let serving = Serving {
            cert_pem,
            key_pem,
            issuer: state.serving.issuer,
            issued: state.serving.issued,
            expires: state.serving.expires,
            dns_names: state.serving.dns_names,
            ips: state.serving.ip_addresses,
        };
        Ok(Self {
            current,
            next,
            previous,
            serving,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateMeta {
    version: u32,
    current: SlotMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<SlotMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<SlotMeta>,
    serving: ServingMeta,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlotMeta {
    fingerprint: String,
    since: Timestamp,
    expires: Timestamp,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServingMeta {
    issuer: String,
    issued: Timestamp,
    expires: Timestamp,
    #[serde(default)]
    dns_names: Vec<String>,
    #[serde(default)]
    ip_addresses: Vec<IpAddr>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

    use super::*;

    const HOUR: u64 = 3600;
    const DAY: u64 = 24 * HOUR;

    fn policy() -> CertPolicy {
        CertPolicy {
            ca_validity: Duration::from_secs(20 * DAY),
            ca_renew_before: Duration::from_secs(5 * DAY),
            cert_validity: Duration::from_secs(3 * DAY),
            cert_renew_before: Duration::from_secs(DAY),
            propagation_delay: Duration::from_secs(2 * HOUR),
            retire_delay: Duration::from_secs(HOUR),
        }
    }

    fn subject() -> Subject {
        Subject {
            ca_name: "test CA".into(),
            dns_names: vec!["proxy.idbind.test".into()],
            ips: vec![],
        }
    }

    fn t0() -> Timestamp {
        Timestamp::now()
    }

    /// Whether a client trusting `bundle` accepts `leaf` for `name`.
    fn verifies(bundle: &str, leaf: &str, name: &str) -> bool {
        let mut roots = rustls::RootCertStore::empty();
        for c in idbind_tls::parse_certs(bundle).unwrap() {
            roots.add(c).unwrap();
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), idbind_tls::provider())
            .build()
            .unwrap();
        let leaf = idbind_tls::parse_certs(leaf).unwrap().remove(0);
        let name = ServerName::try_from(name.to_owned()).unwrap();
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn policy_validation_names_the_flags() {
        policy().validate("--proxy-").unwrap();
        let e = CertPolicy {
            ca_renew_before: Duration::from_secs(2 * HOUR),
            ..policy()
        }
        .validate("--proxy-");
        let e = e.unwrap_err().to_string();
        assert!(
            e.contains("--proxy-ca-renew-before (2h)") && e.contains("3h"),
            "{e}"
        );
        let e = CertPolicy {
            cert_renew_before: Duration::from_secs(3 * DAY),
            ..policy()
        }
        .validate("--webhook-");
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("--webhook-cert-renew-before (3d)")
        );
    }

    #[test]
    fn full_renewal_walks_the_phases() {
        let (p, s) = (policy(), subject());
        let start = t0();
        let mut state = CertState::generate(&s, &p, start).unwrap();
        assert_eq!(state.phase(), CertPhase::Stable);
        assert!(verifies(
            &state.bundle_pem(),
            state.serving_cert_pem(),
            "proxy.idbind.test"
        ));
        assert!(!verifies(
            &state.bundle_pem(),
            state.serving_cert_pem(),
            "other.test"
        ));
        assert_eq!(state.next_step_due(start, &p, &s), None);
        // The serving certificate renews first (3 d validity, 1 d ahead).
        let (step, at) = state.next_step_at(&p, &s);
        assert_eq!(
            (step, at),
            (CertStep::IssueServing, after(start, Duration::from_secs(2 * DAY)))
        );
        let a = state.current_fingerprint().to_owned();

        let mut now = start;
        let mut steps = Vec::new();
        while steps.iter().filter(|s| **s == CertStep::RetireCa).count() < 1 {
            let (step, at) = state.next_step_at(&p, &s);
            now = at.max(now);
            state.apply(step, now, &p, &s).unwrap();
            steps.push(step);
        }
        let ca_steps: Vec<CertStep> = steps
            .iter()
            .copied()
            .filter(|s| *s != CertStep::IssueServing)
            .collect();
        assert_eq!(
            ca_steps,
            [CertStep::IntroduceCa, CertStep::SwitchCa, CertStep::RetireCa]
        );
        assert_ne!(state.current_fingerprint(), a);
        assert_eq!(state.bundle_fingerprints(), [state.current_fingerprint()]);
        // The renewal started 5 days before the first CA's 20 days were up.
        assert_eq!(now, after(start, Duration::from_secs(15 * DAY + 3 * HOUR)));
    }

    #[test]
    fn steps_in_the_wrong_phase_fail_and_names_changes_reissue_at_once() {
        let (p, s) = (policy(), subject());
        let now = t0();
        let mut state = CertState::generate(&s, &p, now).unwrap();
        let e = state
            .clone()
            .apply(CertStep::SwitchCa, now, &p, &s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("SwitchCa") && e.contains("Stable"), "{e}");
        assert!(state.clone().apply(CertStep::RetireCa, now, &p, &s).is_err());
        let renamed = Subject {
            dns_names: vec!["new.idbind.test".into()],
            ..s
        };
        assert_eq!(
            state.next_step_due(now, &p, &renamed),
            Some(CertStep::IssueServing)
        );
        state.apply(CertStep::IssueServing, now, &p, &renamed).unwrap();
        assert!(verifies(
            &state.bundle_pem(),
            state.serving_cert_pem(),
            "new.idbind.test"
        ));
        assert_eq!(state.next_step_due(now, &p, &renamed), None);
    }

    #[test]
    fn an_expired_ca_is_regenerated_at_once() {
        let (p, s) = (policy(), subject());
        let start = t0();
        let state = CertState::generate(&s, &p, start).unwrap();
        let late = after(start, Duration::from_secs(30 * DAY));
        assert_eq!(state.next_step_due(late, &p, &s), Some(CertStep::Regenerate));
        let mut fresh = state.clone();
        fresh.apply(CertStep::Regenerate, late, &p, &s).unwrap();
        assert_ne!(fresh.current_fingerprint(), state.current_fingerprint());
        assert_eq!(fresh.phase(), CertPhase::Stable);
        assert_eq!(fresh.next_step_due(late, &p, &s), None);
    }

    #[test]
    fn serving_certificates_never_outlive_their_ca() {
        let (p, s) = (
            CertPolicy {
                cert_validity: Duration::from_secs(30 * DAY),
                cert_renew_before: Duration::from_secs(DAY),
                ..policy()
            },
            subject(),
        );
        let start = t0();
        let state = CertState::generate(&s, &p, start).unwrap();
        assert_eq!(state.serving_expires(), state.current_ca_expires());
        // Not renewed on its own: the CA renewal takes care of it.
        assert_eq!(state.next_step_at(&p, &s).0, CertStep::IntroduceCa);
    }

    /// The safety property, over many renewals: a client whose bundle lags by up to the
    /// propagation delay, talking to a server whose certificate lags by up to the retire delay,
    /// always verifies.
    #[test]
    fn lagging_clients_and_servers_always_verify() {
        let (p, s) = (policy(), subject());
        let start = t0();
        let mut state = CertState::generate(&s, &p, start).unwrap();
        // (time, bundle) and (time, serving cert) histories.
        let mut history = vec![(start, state.bundle_pem(), state.serving_cert_pem().to_owned())];
        let mut now = start;
        let end = after(start, Duration::from_secs(50 * DAY));
        let mut renewals = 0;
        while now < end {
            let (step, at) = state.next_step_at(&p, &s);
            now = at.max(now);
            state.apply(step, now, &p, &s).unwrap();
            renewals += usize::from(step == CertStep::RetireCa);
            history.push((now, state.bundle_pem(), state.serving_cert_pem().to_owned()));
        }
        assert!(renewals >= 2, "only {renewals} CA renewals");
        let at = |t: Timestamp| {
            history
                .iter()
                .rev()
                .find(|(when, _, _)| *when <= t)
                .unwrap_or(&history[0])
        };
        // Check every change point, just before and just after, with the worst lags.
        let eps = Duration::from_secs(1);
        let client_lag = p.propagation_delay - eps;
        let server_lag = p.retire_delay - eps;
        let mut checked = 0;
        for (when, _, _) in &history {
            for t in [before(*when, eps), *when, after(*when, eps)] {
                for cl in [Duration::ZERO, client_lag] {
                    for sl in [Duration::ZERO, server_lag] {
                        let bundle = &at(before(t, cl)).1;
                        let leaf = &at(before(t, sl)).2;
                        assert!(
                            verifies(bundle, leaf, "proxy.idbind.test"),
                            "at {t} with client lag {cl:?} and server lag {sl:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 100);
        // And the check would catch a too-slow client: one lagging past the propagation delay
        // fails right after a switch.
        let (switch_at, _, _) = history
            .iter()
            .find(|(_, _, leaf)| !verifies(&history[0].1, leaf, "proxy.idbind.test"))
            .unwrap();
        let stale = &at(before(*switch_at, p.propagation_delay + eps)).1;
        assert!(!verifies(stale, &at(*switch_at).2, "proxy.idbind.test"));
    }

    #[test]
    fn secret_data_round_trips_in_every_phase_and_names_bad_entries() {
        let (p, s) = (policy(), subject());
        let now = t0();
        let mut state = CertState::generate(&s, &p, now).unwrap();
        for step in [CertStep::IntroduceCa, CertStep::SwitchCa, CertStep::RetireCa] {
            let data = state.to_secret_data();
            assert_eq!(
                CertState::from_secret_data(&data, "Secret idbind/x").unwrap(),
                state
            );
            state.apply(step, now, &p, &s).unwrap();
        }
        let mut data = state.to_secret_data();
        data.insert(CA_CERT_KEY.into(), state.serving_cert_pem().as_bytes().to_vec());
        let e = CertState::from_secret_data(&data, "Secret idbind/x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Secret idbind/x entry ca.crt") && e.contains("fingerprint"),
            "{e}"
        );
        let mut data = state.to_secret_data();
        data.remove(TLS_KEY_KEY);
        let e = CertState::from_secret_data(&data, "Secret idbind/x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls.key") && e.contains("missing"), "{e}");
        let mut data = state.to_secret_data();
        data.insert(STATE_KEY.into(), b"{".to_vec());
        let e = CertState::from_secret_data(&data, "Secret idbind/x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("state.json"), "{e}");
    }
}
