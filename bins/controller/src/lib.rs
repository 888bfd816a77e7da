//! The idbind controller as a library: the IdentityBinding reconciler, leader election, this
//! cluster's signing keys and their rotation, the issuer server and the admin port. The
//! `idbind-controller` binary is a thin shell over [`run`]-style entry points here, and tests
//! drive the same code directly.

pub mod admin;
pub mod args;
pub mod clock;
mod duration;
mod error;
pub mod leader;
pub mod metrics;
pub mod status;

pub use duration::parse_duration;
pub use error::{Error, Result};
