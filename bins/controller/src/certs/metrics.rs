//! Metrics of certificate management, registered into the controller's registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::manager::step_label;
use super::state::{CertState, CertStep};

/// Labels `{component, step}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// `proxy` or `webhook`.
    pub component: String,
    /// The step taken.
    pub step: String,
}

/// Labels `{component, certificate}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    /// `proxy` or `webhook`.
    pub component: String,
    /// `ca` or `serving`.
    pub certificate: String,
}

/// Labels `{component}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    /// `proxy` or `webhook`.
    pub component: String,
}

/// Certificate steps, failures and expiry times.
#[derive(Clone, Debug, Default)]
pub struct CertMetrics {
    steps: Family<StepLabels, Counter>,
    failures: Family<ComponentLabels, Counter>,
    expiry: Family<CertLabels, Gauge>,
    bundle_size: Family<ComponentLabels, Gauge>,
}

impl CertMetrics {
    /// Creates the metrics and registers them under the prefix `idbind_certificate`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("idbind_certificate");
        r.register("steps", "Certificate rotation steps taken", m.steps.clone());
        r.register(
            "failures",
            "Failed certificate management rounds",
            m.failures.clone(),
        );
        r.register(
            "expiry_timestamp_seconds",
            "When the current CA and serving certificate expire (Unix seconds)",
            m.expiry.clone(),
        );
        r.register(
            "bundle_certificates",
            "CA certificates in the published trust bundle",
            m.bundle_size.clone(),
        );
        m
    }

    pub(crate) fn step(&self, component: &str, step: CertStep) {
        self.steps
            .get_or_create(&StepLabels {
                component: component.to_owned(),
                step: step_label(step).to_owned(),
            })
            .inc();
    }

    pub(crate) fn failure(&self, component: &str) {
        self.failures
            .get_or_create(&ComponentLabels {
                component: component.to_owned(),
            })
            .inc();
    }

    pub(crate) fn observe(&self, component: &str, state: &CertState) {
        let set = |certificate: &str, seconds: i64| {
            self.expiry
                .get_or_create(&CertLabels {
                    component: component.to_owned(),
                    certificate: certificate.to_owned(),
                })
                .set(seconds);
        };
        set("ca", state.current_ca_expires().as_second());
        set("serving", state.serving_expires().as_second());
        let size = i64::try_from(state.bundle_fingerprints().len()).unwrap_or(i64::MAX);
        self.bundle_size
            .get_or_create(&ComponentLabels {
                component: component.to_owned(),
            })
            .set(size);
    }
}
