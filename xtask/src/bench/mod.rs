//! Helpers shared by the `cargo xtask bench` commands.

pub mod process;
