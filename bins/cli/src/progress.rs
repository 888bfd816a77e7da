//! Progress messages for operations that wait: on stderr, and only when stderr is a terminal, so
//! scripts and logs see only results and errors.

use std::io::{IsTerminal, Write};

/// Prints progress lines when stderr is a terminal.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    /// Progress on stderr if it is a terminal.
    pub fn stderr() -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
        }
    }

    /// One progress line.
    pub fn say(&self, message: impl AsRef<str>) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "… {}", message.as_ref());
        }
    }
}
