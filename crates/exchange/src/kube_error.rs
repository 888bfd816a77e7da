//! What a failed call to the Kubernetes API means for the caller of the proxy.

use std::time::Duration;

use crate::ExchangeError;

/// Maps a failed TokenReview or SubjectAccessReview call: the API server down, overloaded or
/// timing out is transient (503); the proxy lacking permission or sending something the API
/// server cannot take is idbind's own misconfiguration (500). Never the caller's fault, so never
/// a 4xx.
pub(crate) fn classify(err: &kube::Error, what: &str) -> ExchangeError {
    match err {
        kube::Error::Api(status) => {
            let retry_after = status
                .details
                .as_ref()
                .map(|d| d.retry_after_seconds)
                .filter(|s| *s > 0)
                .map(u64::from);
            match status.code {
                429 | 500..=599 => {
                    tracing::warn!(code = status.code, reason = %status.reason, "{what} failed: {}", status.message);
                    ExchangeError::unavailable(
                        format!(
                            "the Kubernetes API server could not answer the {what} ({})",
                            status.code
                        ),
                        Some(Duration::from_secs(retry_after.unwrap_or(1))),
                    )
                }
                code => {
                    tracing::error!(code, reason = %status.reason, "{what} refused: {}", status.message);
                    ExchangeError::internal(format!(
                        "the proxy's {what} was refused by the Kubernetes API server ({code} {}): \
                         check the proxy's RBAC",
                        status.reason
                    ))
                }
            }
        }
        other => {
            tracing::warn!(error = %other, "{what} failed");
            ExchangeError::unavailable(
                format!("the Kubernetes API server is unreachable for the {what}"),
                Some(Duration::from_secs(1)),
            )
        }
    }
}
