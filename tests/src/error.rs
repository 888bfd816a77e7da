//! The harness's one error type: which setup step failed, and why.

/// A step of building or driving a [`Stack`](crate::Stack) failed.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {reason}")]
pub struct Error {
    /// What was being done.
    pub step: String,
    /// What went wrong.
    pub reason: String,
}

/// Result with the harness's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Names the step a fallible call belongs to.
pub(crate) trait Step<T> {
    fn step(self, step: impl Into<String>) -> Result<T>;
}

impl<T, E: std::fmt::Display> Step<T> for std::result::Result<T, E> {
    fn step(self, step: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error {
            step: step.into(),
            reason: e.to_string(),
        })
    }
}

impl<T> Step<T> for Option<T> {
    fn step(self, step: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| Error {
            step: step.into(),
            reason: "nothing there".into(),
        })
    }
}
