//! The idbind controller as a library: the IdentityBinding reconciler, leader election, this
//! cluster's signing keys and their rotation, the issuer server and the admin port. The
//! `idbind-controller` binary is a thin shell over [`runtime`], and tests drive the same code.

pub mod admin;
pub mod args;
pub mod azure;
pub mod certs;
pub mod clock;
mod duration;
mod error;
pub mod keys;
pub mod leader;
pub mod metrics;
pub mod publish;
pub mod rbac;
pub mod reconcile;
pub mod runtime;
mod serve;
pub mod setup;
pub mod status;
pub mod webhook;

pub use duration::parse_duration;
pub use error::{Error, Result};
