//! The idbind controller as a library: the IdentityBinding reconciler, leader election, this
//! cluster's signing keys and their rotation, the issuer server and the admin port. The
//! `idbind-controller` binary is a thin shell over [`runtime`], and tests drive the same code.
//!
//! - [`args::Args`]: every flag (`IDBIND_*` environment fallbacks);
//! - [`runtime::RuntimeBuilder`]: builds and starts the controller from [`args::Args`], with an
//!   optional Kubernetes client, clock ([`clock::ManualClock`] in tests), reconcile [`reconcile::Hooks`]
//!   and extra tasks ([`runtime::RuntimeBuilder::task`], [`runtime::RuntimeBuilder::leader_task`]);
//!   [`runtime::Running`] exposes the admin and issuer addresses, leadership and metrics;
//! - [`reconcile`]: the reconciler and its finalizer `idbind.dev/cleanup`; [`status`]: the
//!   conditions as a pure function of what a reconcile found; [`keys`]: the signing key Secret and
//!   its rotation; [`leader`]: the Lease elector; [`metrics`] and [`admin`]: the admin port.
//!
//! ```
//! use clap::Parser;
//! use idbind_controller::args::{Args, FicGc};
//! use idbind_controller::status::{Facts, Outcome, StepResult, compute_status, reason};
//!
//! let args = Args::try_parse_from([
//!     "idbind-controller",
//!     "--cluster-name", "east",
//!     "--issuer-base-url", "https://issuer.example.com",
//!     "--issuer-store", "dir:/var/lib/idbind/issuer",
//! ])?;
//! assert_eq!(args.reconcile.fic_gc, FicGc::Retain);
//! assert_eq!(args.keys.signing_key_secret, "idbind-signing-keys");
//!
//! // An ARM outage: the identity is not resolved, the rest waits, and Ready says why.
//! let outcome = Outcome {
//!     identity: StepResult::failed(reason::ARM_UNAVAILABLE, "ARM is unavailable; idbind will retry"),
//!     federated_credential: StepResult::waiting(),
//!     issuer: StepResult::waiting(),
//!     rbac: StepResult::waiting(),
//! };
//! let status = compute_status(None, &Facts::default(), &outcome, Some(1), jiff::Timestamp::UNIX_EPOCH);
//! let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
//! assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "ArmUnavailable"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod admin;
pub mod args;
pub mod azure;
pub mod certs;
pub mod clock;
mod error;
pub mod keyed_locks;
pub mod keys;
pub mod leader;
pub mod memo;
pub mod metrics;
pub mod publish;
pub mod rbac;
pub mod reconcile;
pub mod runtime;
mod serve;
pub mod setup;
pub mod status;
pub mod triggers;
pub mod webhook;

pub use error::{Error, Result};
