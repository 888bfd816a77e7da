//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::Duration;

use idbind_model::IdentityBinding;
use idbind_testkit::KubeEmulator;
use kube::CustomResourceExt;
use kube::core::Status;

/// An emulator with the IdentityBinding CRD registered.
pub async fn emulator_with_crd() -> KubeEmulator {
    KubeEmulator::builder()
        .seed(IdentityBinding::crd())
        .unwrap()
        .start()
        .await
        .unwrap()
}

/// The API error status of a failed call.
pub fn status<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Polls `check` until it returns `Some`, for at most 20 seconds (readiness, not timing).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A valid IdentityBinding resource id.
pub const RESOURCE_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/prod/providers/Microsoft.ManagedIdentity/userAssignedIdentities/payments";
