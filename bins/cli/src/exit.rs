//! Exit statuses of `idbind` and the error type that carries one.
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the operation failed (the message names the input and the fix) |
//! | 2 | usage error: a flag, argument or environment value is not valid |
//! | 3 | checks found problems (`doctor`, `issuer verify`) |
//! | 4 | a service could not be reached (Kubernetes API, ARM, Entra, an issuer, the proxy) |
//! | 5 | timed out waiting (`--wait`) |

use std::fmt;
use std::process::ExitCode;

/// Success.
pub const OK: u8 = 0;
/// The operation failed.
pub const FAILURE: u8 = 1;
/// A flag, argument or environment value is not valid (also clap's status for usage errors).
pub const USAGE: u8 = 2;
/// Checks found problems.
pub const PROBLEMS: u8 = 3;
/// A service could not be reached.
pub const UNREACHABLE: u8 = 4;
/// Timed out waiting.
pub const TIMEOUT: u8 = 5;

/// How a command that ran to its end finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything as asked.
    Ok,
    /// The command ran, and the checks it ran found problems (already printed).
    Problems,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        ExitCode::from(match o {
            Outcome::Ok => OK,
            Outcome::Problems => PROBLEMS,
        })
    }
}

/// An error with an exit status and, usually, a hint on how to fix it.
#[derive(Debug)]
pub struct Failure {
    /// The exit status.
    pub code: u8,
    /// What went wrong, naming the input.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// The operation failed (status 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(FAILURE, message)
    }

    /// A value given by the user is not valid (status 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }

    /// A service could not be reached (status 4).
    pub fn unreachable(message: impl Into<String>) -> Self {
        Self::new(UNREACHABLE, message)
    }

    /// A wait timed out (status 5).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(TIMEOUT, message)
    }

    /// Adds what to do about it.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Prints an error (and its hint) to stderr; returns the exit status it carries (1 by default).
pub fn report(error: &anyhow::Error) -> ExitCode {
    let failure = error.chain().find_map(|e| e.downcast_ref::<Failure>());
    eprintln!("error: {error:#}");
    if let Some(hint) = failure.and_then(|f| f.hint.as_deref()) {
        for (i, line) in hint.lines().enumerate() {
            eprintln!("{}{line}", if i == 0 { "  hint: " } else { "        " });
        }
    }
    ExitCode::from(failure.map_or(FAILURE, |f| f.code))
}
