//! Workspace integration tests and their shared harness.
//!
//! [`Stack`] runs one member cluster of idbind on loopback, wired the way the controller leaves
//! it (the controller itself is not started: the binding's status is written through the status
//! subresource as it would write it):
//!
//! - the Kubernetes API emulator with the `IdentityBinding` CRD, a namespace with service
//!   accounts and a pod each, the AKS-shaped RBAC (`use-mi-<clientId>`) allowing the first
//!   service account only, a service account for the proxy with the RBAC it needs, and a Ready
//!   `IdentityBinding` for the identity;
//! - the Azure emulator with a user-assigned identity and its one FIC, created through
//!   `idbind-fic` over the emulator's ARM API;
//! - an issuer directory store served over HTTP on loopback, holding this cluster's public keys
//!   for the identity (published with `idbind-issuer`);
//! - the token proxy with its signing keys and serving certificate in files (SAN = an AKS-shaped
//!   SNI name, `localhost` and `127.0.0.1`), in-process ([`ProxyMode::InProcess`]) or left to the
//!   caller to start as the `idbind-proxy` binary ([`ProxyMode::External`], see
//!   [`Stack::proxy_args`] and [`ProxyProcess`]);
//! - a projected service-account token (audience `api://AKSIdentityBinding`, bound to the pod)
//!   and the proxy's CA in files, and the `AZURE_*` environment a pod would get
//!   ([`Stack::sdk_env`]).
//!
//! Everything binds port 0 on loopback and stops when the [`Stack`] is dropped.
//!
//! [`MountedVolume`] and [`write_volume`] stand in for kubelet where a test runs the controller
//! and mounts what it writes (Secrets, ConfigMaps) into files, with kubelet's atomic updates.

mod error;
mod process;
mod stack;
pub mod volume;

pub use error::{Error, Result};
pub use process::ProxyProcess;
pub use stack::{
    ALLOWED_SA, DENIED_SA, NAMESPACE, ProxyMode, RunningProxy, SCOPE, Stack, StackBuilder, aks_sni_name,
    grant_proxy_rbac,
};
pub use volume::{FileData, MountedVolume, Payload, write_payload, write_volume};
