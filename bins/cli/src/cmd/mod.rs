//! One module per subcommand.

pub mod binding;
pub mod completions;
pub mod doctor;
pub mod emulator;
pub mod fic;
pub mod issuer;
pub mod rbac;
pub mod token;
