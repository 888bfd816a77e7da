//! Test and sandbox infrastructure for idbind: a Kubernetes API emulator (work in progress) and
//! helpers to locate the external tools tests drive.
//!
//! ```
//! let root = idbind_testkit::tools::workspace_root();
//! assert!(root.join("Cargo.toml").exists());
//! ```

pub mod tools;
