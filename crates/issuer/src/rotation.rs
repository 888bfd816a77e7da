//! A cluster's key set and its rotation state machine.
//!
//! ```text
//! Stable ──PublishNext──▶ NextPublished ──Activate──▶ Activated ──Retire──▶ Stable
//! (current)              (current + next)             (current + previous)
//! ```
//!
//! Every step records when it happened, so a controller can ask [`KeySet::next_step_due`] on each
//! reconcile and requeue for [`KeySet::next_step_at`]. The whole state round-trips through a
//! Kubernetes Secret's `data` map ([`KeySet::to_secret_data`], [`KeySet::from_secret_data`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{ClusterName, Error, Jwk, Result, SigningKey};

/// Secret `data` entry holding the rotation metadata (JSON).
pub const SECRET_STATE_KEY: &str = "keyset.json";
/// Secret `data` entry holding the current key (PKCS#8 PEM).
pub const SECRET_CURRENT_KEY: &str = "current.pem";
/// Secret `data` entry holding the next key while one is being introduced.
pub const SECRET_NEXT_KEY: &str = "next.pem";
/// Secret `data` entry holding the previous key until it is retired.
pub const SECRET_PREVIOUS_KEY: &str = "previous.pem";

const STATE_VERSION: u32 = 1;

/// Where a key set is in its rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationPhase {
    /// Only the current key exists.
    Stable,
    /// A next key is published beside the current one but does not sign yet.
    NextPublished,
    /// The former next key signs; the former current key is still published as previous.
    Activated,
}

/// A transition of the rotation state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationStep {
    /// Generate a next key; the caller then publishes it to every JWKS the cluster is bound to.
    PublishNext,
    /// The next key becomes current; the current key becomes previous.
    Activate,
    /// The previous key is dropped; the caller then removes it from every JWKS.
    Retire,
}

impl fmt::Display for RotationPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl fmt::Display for RotationStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// How long each rotation phase lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Age of the current key after which a rotation starts.
    pub rotate_after: Duration,
    /// How long a next key is published before it signs. It must cover Entra's JWKS cache
    /// (reported up to about an hour), or Entra may not know the new key yet.
    pub propagation_delay: Duration,
    /// How long the previous key stays published after activation: the assertion lifetime, plus
    /// Entra's JWKS cache time, plus the time proxies need to reload the key Secret.
    pub retire_after: Duration,
}

impl Default for RotationPolicy {
    /// Rotate every 30 days; publish 2 h ahead; retire 2 h after activation.
    fn default() -> Self {
        const HOUR: u64 = 3600;
        Self {
            rotate_after: Duration::from_secs(30 * 24 * HOUR),
            propagation_delay: Duration::from_secs(2 * HOUR),
            retire_after: Duration::from_secs(2 * HOUR),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Slot {
    key: SigningKey,
    since: Timestamp,
}

/// A cluster's signing keys: the `current` key signs; `next` and `previous` are only published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySet {
    cluster: ClusterName,
    current: Slot,
    next: Option<Slot>,
    previous: Option<Slot>,
}

impl KeySet {
    /// A new key set with a freshly generated current key.
    pub fn generate(cluster: ClusterName, now: Timestamp) -> Result<Self> {
        let key = SigningKey::generate(&cluster)?;
        Ok(Self::new(cluster, key, now))
    }

    /// A key set whose current key is `key`, current since `now`.
    pub fn new(cluster: ClusterName, key: SigningKey, now: Timestamp) -> Self {
        Self {
            cluster,
            current: Slot { key, since: now },
            next: None,
            previous: None,
        }
    }

    /// The cluster owning these keys.
    pub fn cluster(&self) -> &ClusterName {
        &self.cluster
    }

    /// The rotation phase.
    pub fn phase(&self) -> RotationPhase {
        match (&self.next, &self.previous) {
            (Some(_), _) => RotationPhase::NextPublished,
            (None, Some(_)) => RotationPhase::Activated,
            (None, None) => RotationPhase::Stable,
        }
    }

    /// The key that signs assertions.
    pub fn signing_key(&self) -> &SigningKey {
        &self.current.key
    }

    /// The current key (same as [`KeySet::signing_key`]) and since when it is current.
    pub fn current(&self) -> (&SigningKey, Timestamp) {
        (&self.current.key, self.current.since)
    }

    /// The next key and since when it is published, during [`RotationPhase::NextPublished`].
    pub fn next(&self) -> Option<(&SigningKey, Timestamp)> {
        self.next.as_ref().map(|s| (&s.key, s.since))
    }

    /// The previous key and since when it no longer signs, during [`RotationPhase::Activated`].
    pub fn previous(&self) -> Option<(&SigningKey, Timestamp)> {
        self.previous.as_ref().map(|s| (&s.key, s.since))
    }

    /// The public keys to publish: current, then next, then previous (those that exist).
    pub fn published_keys(&self) -> Vec<Jwk> {
        [Some(&self.current), self.next.as_ref(), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .map(|slot| slot.key.public_jwk().clone())
            .collect()
    }

    /// The step to take now under `policy`, if any is due.
    pub fn next_step_due(&self, now: Timestamp, policy: &RotationPolicy) -> Option<RotationStep> {
        let (step, at) = self.next_step_at(policy);
        (now >= at).then_some(step)
    }

    /// The next step and the moment it becomes due (a controller requeues for that moment).
    pub fn next_step_at(&self, policy: &RotationPolicy) -> (RotationStep, Timestamp) {
        let after = |since: Timestamp, wait: Duration| since.saturating_add(wait).unwrap_or(Timestamp::MAX);
        match (&self.next, &self.previous) {
            (Some(next), _) => (
                RotationStep::Activate,
                after(next.since, policy.propagation_delay),
            ),
            (None, Some(previous)) => (RotationStep::Retire, after(previous.since, policy.retire_after)),
            (None, None) => (
                RotationStep::PublishNext,
                after(self.current.since, policy.rotate_after),
            ),
        }
    }

    /// Applies `step` at `now`, whether or not it is due (an operator may force a rotation).
    /// Fails if the step does not apply in the current phase.
    pub fn apply(&mut self, step: RotationStep, now: Timestamp) -> Result<()> {
        let phase = self.phase();
        let wrong_phase = Error::RotationStep { step, phase };
        match (step, phase) {
            (RotationStep::PublishNext, RotationPhase::Stable) => {
                let key = SigningKey::generate(&self.cluster)?;
                tracing::info!(cluster = %self.cluster, kid = key.kid(), "generated next signing key");
                self.next = Some(Slot { key, since: now });
            }
            (RotationStep::Activate, RotationPhase::NextPublished) => {
                let next = self.next.take().ok_or(wrong_phase)?;
                let old = std::mem::replace(
                    &mut self.current,
                    Slot {
                        key: next.key,
                        since: now,
                    },
                );
                tracing::info!(
                    cluster = %self.cluster,
                    kid = self.current.key.kid(),
                    previous = old.key.kid(),
                    "activated signing key"
                );
                self.previous = Some(Slot {
                    key: old.key,
                    since: now,
                });
            }
            (RotationStep::Retire, RotationPhase::Activated) => {
                if let Some(old) = self.previous.take() {
                    tracing::info!(cluster = %self.cluster, kid = old.key.kid(), "retired signing key");
                }
            }
            _ => return Err(wrong_phase),
        }
        Ok(())
    }

    /// The Secret `data` map holding this key set: PEM keys and [`SECRET_STATE_KEY`].
    pub fn to_secret_data(&self) -> BTreeMap<String, Vec<u8>> {
        let slot_meta = |slot: &Slot| SlotMeta {
            kid: slot.key.kid().to_owned(),
            since: slot.since,
        };
        let state = StateMeta {
            version: STATE_VERSION,
            cluster: self.cluster.clone(),
            current: slot_meta(&self.current),
            next: self.next.as_ref().map(slot_meta),
            previous: self.previous.as_ref().map(slot_meta),
        };
        let mut data = BTreeMap::new();
        // Serializing a struct of strings and timestamps cannot fail.
        let json = serde_json::to_vec_pretty(&state).unwrap_or_default();
        data.insert(SECRET_STATE_KEY.to_owned(), json);
        data.insert(
            SECRET_CURRENT_KEY.to_owned(),
            self.current.key.to_pkcs8_pem().as_bytes().to_vec(),
        );
        if let Some(next) = &self.next {
            data.insert(
                SECRET_NEXT_KEY.to_owned(),
                next.key.to_pkcs8_pem().as_bytes().to_vec(),
            );
        }
        if let Some(previous) = &self.previous {
            data.insert(
                SECRET_PREVIOUS_KEY.to_owned(),
                previous.key.to_pkcs8_pem().as_bytes().to_vec(),
            );
        }
        data
    }

    /// Parses the Secret `data` written by [`KeySet::to_secret_data`]. Every inconsistency (missing
    /// or unlisted keys, a key whose id does not match the metadata) is an error naming the entry.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Self> {
        let malformed = |key: &str, reason: String| Error::SecretData {
            key: key.to_owned(),
            reason,
        };
        for name in data.keys() {
            if ![
                SECRET_STATE_KEY,
                SECRET_CURRENT_KEY,
                SECRET_NEXT_KEY,
                SECRET_PREVIOUS_KEY,
            ]
            .contains(&name.as_str())
            {
                return Err(malformed(
                    name,
                    "unexpected entry in a signing-key Secret".to_owned(),
                ));
            }
        }
        let raw_state = data
            .get(SECRET_STATE_KEY)
            .ok_or_else(|| malformed(SECRET_STATE_KEY, "the entry is missing".into()))?;
        let state: StateMeta = serde_json::from_slice(raw_state)
            .map_err(|e| malformed(SECRET_STATE_KEY, format!("not the expected JSON ({e})")))?;
        if state.version != STATE_VERSION {
            return Err(malformed(
                SECRET_STATE_KEY,
                format!(
                    "version {} is not supported (expected {STATE_VERSION})",
                    state.version
                ),
            ));
        }
        if state.next.is_some() && state.previous.is_some() {
            return Err(malformed(
                SECRET_STATE_KEY,
                "it lists both a next and a previous key; a rotation has only one of them".into(),
            ));
        }
        let cluster = state.cluster;
        let load = |entry: &str, meta: Option<SlotMeta>| -> Result<Option<Slot>> {
            let Some(meta) = meta else {
                return match data.contains_key(entry) {
                    true => Err(malformed(
                        entry,
                        format!("present but not listed in {SECRET_STATE_KEY}"),
                    )),
                    false => Ok(None),
                };
            };
            let pem = data
                .get(entry)
                .ok_or_else(|| malformed(entry, format!("missing, but {SECRET_STATE_KEY} lists it")))?;
            let key = SigningKey::from_pkcs8_pem(&cluster, pem, &format!("Secret data entry '{entry}'"))?;
            if key.kid() != meta.kid {
                return Err(malformed(
                    entry,
                    format!(
                        "the key's id is '{}' but {SECRET_STATE_KEY} says '{}'",
                        key.kid(),
                        meta.kid
                    ),
                ));
            }
            Ok(Some(Slot {
                key,
                since: meta.since,
            }))
        };
        let current = load(SECRET_CURRENT_KEY, Some(state.current))?
            .ok_or_else(|| malformed(SECRET_CURRENT_KEY, "the entry is missing".into()))?;
        let next = load(SECRET_NEXT_KEY, state.next)?;
        let previous = load(SECRET_PREVIOUS_KEY, state.previous)?;
        Ok(Self {
            cluster,
            current,
            next,
            previous,
        })
    }

    /// Loads a key set from a directory holding the Secret's entries as files (a mounted Secret).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut data = BTreeMap::new();
        for name in [
            SECRET_STATE_KEY,
            SECRET_CURRENT_KEY,
            SECRET_NEXT_KEY,
            SECRET_PREVIOUS_KEY,
        ] {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    data.insert(name.to_owned(), bytes);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(Error::Io {
                        op: "reading",
                        path,
                        source,
                    });
                }
            }
        }
        Self::from_secret_data(&data)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateMeta {
    version: u32,
    cluster: ClusterName,
    current: SlotMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<SlotMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<SlotMeta>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotMeta {
    kid: String,
    since: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn policy() -> RotationPolicy {
        RotationPolicy {
            rotate_after: Duration::from_secs(1000),
            propagation_delay: Duration::from_secs(100),
            retire_after: Duration::from_secs(50),
        }
    }

    fn keyset() -> KeySet {
        KeySet::generate(ClusterName::parse("east").unwrap(), t(0)).unwrap()
    }

    #[test]
    fn state_machine_walks_through_a_rotation() {
        let p = policy();
        let mut ks = keyset();
        let first = ks.signing_key().kid().to_owned();
        assert_eq!(ks.phase(), RotationPhase::Stable);
        assert_eq!(ks.published_keys().len(), 1);
        assert_eq!(ks.next_step_due(t(999), &p), None);
        assert_eq!(ks.next_step_at(&p), (RotationStep::PublishNext, t(1000)));
        assert_eq!(ks.next_step_due(t(1000), &p), Some(RotationStep::PublishNext));

        ks.apply(RotationStep::PublishNext, t(1000)).unwrap();
        assert_eq!(ks.phase(), RotationPhase::NextPublished);
        let second = ks.next().unwrap().0.kid().to_owned();
        assert_ne!(first, second);
        assert_eq!(ks.signing_key().kid(), first);
        let kids: Vec<_> = ks.published_keys().into_iter().map(|k| k.kid).collect();
        assert_eq!(kids, [first.clone(), second.clone()]);
        assert_eq!(ks.next_step_due(t(1099), &p), None);
        assert_eq!(ks.next_step_due(t(1100), &p), Some(RotationStep::Activate));

        ks.apply(RotationStep::Activate, t(1100)).unwrap();
        assert_eq!(ks.phase(), RotationPhase::Activated);
        assert_eq!(ks.signing_key().kid(), second);
        assert_eq!(ks.previous().unwrap().0.kid(), first);
        assert_eq!(ks.published_keys().len(), 2);
        assert_eq!(ks.next_step_due(t(1149), &p), None);
        assert_eq!(ks.next_step_due(t(1150), &p), Some(RotationStep::Retire));

        ks.apply(RotationStep::Retire, t(1150)).unwrap();
        assert_eq!(ks.phase(), RotationPhase::Stable);
        assert_eq!(ks.published_keys().len(), 1);
        assert_eq!(ks.current(), (ks.signing_key(), t(1100)));
        assert_eq!(ks.next_step_at(&p), (RotationStep::PublishNext, t(2100)));
    }

    #[test]
    fn steps_out_of_phase_are_refused() {
        let mut ks = keyset();
        for step in [RotationStep::Activate, RotationStep::Retire] {
            let err = ks.apply(step, t(1)).unwrap_err().to_string();
            assert!(err.contains("cannot be applied in phase Stable"), "{err}");
        }
        ks.apply(RotationStep::PublishNext, t(1)).unwrap();
        assert!(ks.apply(RotationStep::PublishNext, t(2)).is_err());
        assert!(ks.apply(RotationStep::Retire, t(2)).is_err());
    }

    #[test]
    fn secret_round_trip_in_every_phase() {
        let mut ks = keyset();
        for step in [
            None,
            Some(RotationStep::PublishNext),
            Some(RotationStep::Activate),
            Some(RotationStep::Retire),
        ] {
            if let Some(step) = step {
                ks.apply(step, t(5)).unwrap();
            }
            let data = ks.to_secret_data();
            assert!(data.contains_key(SECRET_STATE_KEY) && data.contains_key(SECRET_CURRENT_KEY));
            assert_eq!(
                KeySet::from_secret_data(&data).unwrap(),
                ks,
                "phase {}",
                ks.phase()
            );
        }
    }

    #[test]
    fn loads_from_a_mounted_secret_directory() {
        let mut ks = keyset();
        ks.apply(RotationStep::PublishNext, t(1)).unwrap();
        let dir = std::env::temp_dir().join(format!("idbind-keyset-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in ks.to_secret_data() {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        assert_eq!(KeySet::from_dir(&dir).unwrap(), ks);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn err_of(data: &BTreeMap<String, Vec<u8>>) -> String {
        KeySet::from_secret_data(data).unwrap_err().to_string()
    }

    #[test]
    fn malformed_secret_data_is_named() {
        let mut ks = keyset();
        let good = ks.to_secret_data();

        let mut d = good.clone();
        d.remove(SECRET_STATE_KEY);
        assert!(
            err_of(&d).contains("'keyset.json': the entry is missing"),
            "{}",
            err_of(&d)
        );

        let mut d = good.clone();
        d.insert(SECRET_STATE_KEY.into(), b"{not json".to_vec());
        assert!(
            err_of(&d).contains("'keyset.json': not the expected JSON"),
            "{}",
            err_of(&d)
        );

        let mut d = good.clone();
        let mut state: serde_json::Value = serde_json::from_slice(&good[SECRET_STATE_KEY]).unwrap();
        state["version"] = 7.into();
        d.insert(SECRET_STATE_KEY.into(), serde_json::to_vec(&state).unwrap());
        assert!(
            err_of(&d).contains("version 7 is not supported"),
            "{}",
            err_of(&d)
        );

        let mut d = good.clone();
        d.remove(SECRET_CURRENT_KEY);
        assert!(err_of(&d).contains("'current.pem': missing"), "{}", err_of(&d));

        let mut d = good.clone();
        d.insert(SECRET_CURRENT_KEY.into(), b"garbage".to_vec());
        assert!(
            err_of(&d).contains("Secret data entry 'current.pem'"),
            "{}",
            err_of(&d)
        );

        let mut d = good.clone();
        d.insert(SECRET_NEXT_KEY.into(), good[SECRET_CURRENT_KEY].clone());
        assert!(
            err_of(&d).contains("'next.pem': present but not listed"),
            "{}",
            err_of(&d)
        );

        let mut d = good.clone();
        d.insert("stray".into(), vec![]);
        assert!(err_of(&d).contains("'stray': unexpected entry"), "{}", err_of(&d));

        // A key swapped for another one: the kid no longer matches the metadata.
        let other = SigningKey::generate(ks.cluster()).unwrap();
        let mut d = good;
        d.insert(
            SECRET_CURRENT_KEY.into(),
            other.to_pkcs8_pem().as_bytes().to_vec(),
        );
        assert!(err_of(&d).contains("says"), "{}", err_of(&d));

        // Both next and previous listed.
        ks.apply(RotationStep::PublishNext, t(1)).unwrap();
        let mut state: serde_json::Value =
            serde_json::from_slice(&ks.to_secret_data()[SECRET_STATE_KEY]).unwrap();
        state["previous"] = state["next"].clone();
        let mut d = ks.to_secret_data();
        d.insert(SECRET_STATE_KEY.into(), serde_json::to_vec(&state).unwrap());
        assert!(
            err_of(&d).contains("both a next and a previous"),
            "{}",
            err_of(&d)
        );
    }
}
