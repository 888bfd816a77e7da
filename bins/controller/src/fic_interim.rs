//! A minimal one-FIC-per-identity manager used until `idbind-fic` lands: reuse a FIC with the
//! same issuer and subject, refuse at the limit, serialize writes per identity, retry 409s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use idbind_arm::{ArmClient, FederatedCredential, FicProperties};
use idbind_model::{FicSpec, IdentityResourceId, MAX_FICS_PER_IDENTITY};
use parking_lot::Mutex;

/// Errors of [`FicManager`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The identity has the maximum number of FICs and none matches.
    #[error("identity has {} federated identity credentials, the maximum", existing.len())]
    LimitReached {
        /// The FICs that are there.
        existing: Vec<FederatedCredential>,
    },
    /// ARM failed.
    #[error(transparent)]
    Arm(#[from] idbind_arm::Error),
}

impl Error {
    /// The ARM error, if this is one.
    pub fn arm_error(&self) -> Option<&idbind_arm::Error> {
        match self {
            Self::Arm(e) => Some(e),
            Self::LimitReached { .. } => None,
        }
    }
}

/// What `ensure` found or did.
#[derive(Clone, Debug)]
pub struct Ensured {
    fic: FederatedCredential,
    created: bool,
}

impl Ensured {
    /// The FIC.
    pub fn fic(&self) -> &FederatedCredential {
        &self.fic
    }
    /// Whether it was created by this call.
    pub fn created(&self) -> bool {
        self.created
    }
}

/// Ensures one FIC per identity.
#[derive(Clone, Debug)]
pub struct FicManager {
    arm: ArmClient,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl FicManager {
    /// A manager over `arm`.
    pub fn new(arm: ArmClient) -> Self {
        Self {
            arm,
            locks: Arc::default(),
        }
    }

    fn lock(&self, id: &IdentityResourceId) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().entry(id.to_lowercase()).or_default().clone()
    }

    /// Reuses or creates the FIC for `spec` on `id`.
    pub async fn ensure(&self, id: &IdentityResourceId, spec: &FicSpec) -> Result<Ensured, Error> {
        let lock = self.lock(id);
        let _serial = lock.lock().await;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let existing = self.arm.list_fics(id).await?;
            if let Some(fic) = existing
                .iter()
                .find(|f| spec.matches(&f.properties.issuer, &f.properties.subject))
            {
                return Ok(Ensured {
                    fic: fic.clone(),
                    created: false,
                });
            }
            if existing.len() >= MAX_FICS_PER_IDENTITY {
                return Err(Error::LimitReached { existing });
            }
            let name_taken = existing.iter().any(|f| f.name.eq_ignore_ascii_case(&spec.name));
            let name = if name_taken {
                format!("{}-{}", spec.name, existing.len())
            } else {
                spec.name.clone()
            };
            match self.arm.put_fic(id, &name, &FicProperties::from(spec)).await {
                Ok(fic) => return Ok(Ensured { fic, created: true }),
                Err(e)
                    if attempt < 8
                        && (e.is_conflict()
                            || e.is_uncertain()
                            || e.arm()
                                .is_some_and(idbind_arm::ArmError::is_duplicate_issuer_subject)) =>
                {
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Deletes the FIC matching `spec` when `unused`; `Ok(false)` when there was none.
    pub async fn delete_if_unused(
        &self,
        id: &IdentityResourceId,
        spec: &FicSpec,
        unused: bool,
    ) -> Result<bool, Error> {
        if !unused {
            return Ok(false);
        }
        let lock = self.lock(id);
        let _serial = lock.lock().await;
        let existing = self.arm.list_fics(id).await?;
        let Some(fic) = existing
            .iter()
            .find(|f| spec.matches(&f.properties.issuer, &f.properties.subject))
        else {
            return Ok(false);
        };
        Ok(self.arm.delete_fic(id, &fic.name).await?)
    }
}
