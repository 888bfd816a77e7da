//! Prometheus metrics of the controller (`prometheus-client`), registered into a caller-owned
//! registry so several controllers can live in one process.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels `{result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `success` or `error`.
    pub result: String,
}

/// Labels `{error}`: the class of a failed reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// [`crate::Error::metric_label`] or a condition reason.
    pub error: String,
}

/// Labels `{operation, status}` of an ARM call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArmLabels {
    /// The typed operation (`get_identity`, `list_fics`, `put_fic`, `delete_fic`).
    pub operation: String,
    /// HTTP status, or `error` when no response came.
    pub status: String,
}

/// Labels `{operation, result}` of a write.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// What was written (`create`, `reuse`, `delete`, `publish`, `withdraw`, ...).
    pub operation: String,
    /// `success` or `error`.
    pub result: String,
}

/// Labels `{step}` of key rotation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// The rotation step taken.
    pub step: String,
}

/// Labels `{operation, source}` of ARM lookups.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// `get_identity` or `ensure_fic`.
    pub operation: String,
    /// `fetched` (this lookup asked ARM) or `shared` (it reused another lookup's answer).
    pub source: String,
}

/// Every metric of the controller. Cheap to share behind an `Arc`.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Reconciles by result.
    pub reconciles: Family<ResultLabels, Counter>,
    /// Failed reconciles by error class.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// Reconcile duration in seconds.
    pub reconcile_duration: Histogram,
    /// ARM calls by operation and HTTP status.
    pub arm_requests: Family<ArmLabels, Counter>,
    /// ARM lookups of reconciles by operation and whether they asked ARM or shared an answer.
    pub arm_lookups: Family<LookupLabels, Counter>,
    /// FIC writes by operation and result.
    pub fic_writes: Family<WriteLabels, Counter>,
    /// Issuer document (JWKS + discovery) writes by operation and result.
    pub jwks_writes: Family<WriteLabels, Counter>,
    /// Key rotation steps taken.
    pub key_rotations: Family<StepLabels, Counter>,
    /// 1 while this replica leads, else 0.
    pub leader: Gauge,
    /// Bindings whose `Ready` condition is `True`, as last seen by the reconciler.
    pub bindings_ready: Gauge,
    /// Bindings known to the reconciler.
    pub bindings: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry` under the prefix `idbind_controller`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            arm_requests: Family::default(),
            arm_lookups: Family::default(),
            fic_writes: Family::default(),
            jwks_writes: Family::default(),
            key_rotations: Family::default(),
            leader: Gauge::default(),
            bindings_ready: Gauge::default(),
            bindings: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("idbind_controller");
        r.register(
            "reconciles",
            "IdentityBinding reconciles by result",
            m.reconciles.clone(),
        );
        r.register(
            "reconcile_errors",
            "Failed reconciles by error class",
            m.reconcile_errors.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            m.reconcile_duration.clone(),
        );
        r.register(
            "arm_requests",
            "ARM calls by operation and HTTP status",
            m.arm_requests.clone(),
        );
        r.register(
            "arm_lookups",
            "ARM lookups of reconciles: fetched from ARM or shared with other bindings of the identity",
            m.arm_lookups.clone(),
        );
        r.register(
            "fic_writes",
            "Federated identity credential writes",
            m.fic_writes.clone(),
        );
        r.register(
            "jwks_writes",
            "Issuer document writes (publish and withdraw)",
            m.jwks_writes.clone(),
        );
        r.register(
            "key_rotation_steps",
            "Signing key rotation steps taken",
            m.key_rotations.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader Lease",
            m.leader.clone(),
        );
        r.register(
            "bindings_ready",
            "IdentityBindings that are Ready",
            m.bindings_ready.clone(),
        );
        r.register(
            "bindings",
            "IdentityBindings seen by the reconciler",
            m.bindings.clone(),
        );
        m
    }

    /// Counts one reconcile.
    pub fn reconciled(&self, ok: bool, seconds: f64) {
        let result = if ok { "success" } else { "error" }.to_owned();
        self.reconciles.get_or_create(&ResultLabels { result }).inc();
        self.reconcile_duration.observe(seconds);
    }

    /// Counts one failed reconcile by class.
    pub fn reconcile_failed(&self, error: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                error: error.to_owned(),
            })
            .inc();
    }

    /// Counts one ARM call.
    pub fn arm_call(&self, operation: &str, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        self.arm_requests
            .get_or_create(&ArmLabels {
                operation: operation.to_owned(),
                status,
            })
            .inc();
    }

    /// Counts one ARM lookup of a reconcile.
    pub fn arm_lookup(&self, operation: &str, fetched: bool) {
        self.arm_lookups
            .get_or_create(&LookupLabels {
                operation: operation.to_owned(),
                source: if fetched { "fetched" } else { "shared" }.to_owned(),
            })
            .inc();
    }

    /// Counts one FIC write.
    pub fn fic_write(&self, operation: &str, ok: bool) {
        self.fic_writes.get_or_create(&write_labels(operation, ok)).inc();
    }

    /// Counts one issuer document write.
    pub fn jwks_write(&self, operation: &str, ok: bool) {
        self.jwks_writes.get_or_create(&write_labels(operation, ok)).inc();
    }

    /// Counts one key rotation step.
    pub fn rotation_step(&self, step: &str) {
        self.key_rotations
            .get_or_create(&StepLabels {
                step: step.to_owned(),
            })
            .inc();
    }
}

fn write_labels(operation: &str, ok: bool) -> WriteLabels {
    WriteLabels {
        operation: operation.to_owned(),
        result: if ok { "success" } else { "error" }.to_owned(),
    }
}

/// Encodes `registry` in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_prefixed_and_labelled() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.reconciled(true, 0.01);
        m.arm_call("get_identity", Some(200));
        m.arm_call("put_fic", None);
        m.fic_write("create", true);
        m.jwks_write("publish", false);
        m.leader.set(1);
        let text = encode(&registry);
        for want in [
            r#"idbind_controller_reconciles_total{result="success"} 1"#,
            r#"idbind_controller_arm_requests_total{operation="get_identity",status="200"} 1"#,
            r#"idbind_controller_arm_requests_total{operation="put_fic",status="error"} 1"#,
            r#"idbind_controller_fic_writes_total{operation="create",result="success"} 1"#,
            r#"idbind_controller_jwks_writes_total{operation="publish",result="error"} 1"#,
            "idbind_controller_leader 1",
            "idbind_controller_reconcile_duration_seconds_count 1",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
