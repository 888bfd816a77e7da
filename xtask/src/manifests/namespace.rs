//! The idbind namespace: Pod Security `restricted`, and a quota admitting the
//! `system-cluster-critical` priority class outside `kube-system` (clusters that limit it, like
//! GKE, refuse such pods in a namespace without one).

use k8s_openapi::api::core::v1::{
    Namespace, ResourceQuota, ResourceQuotaSpec, ScopeSelector, ScopedResourceSelectorRequirement,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::meta::{File, Owner};
use super::names::NAMESPACE;

const OWNER: Owner = Owner {
    name: "idbind",
    component: "namespace",
};
/// Name of the quota.
pub const CRITICAL_PODS_QUOTA: &str = "idbind-critical-pods";
/// Most `system-cluster-critical` pods in the namespace (replicas plus rollout surge).
const CRITICAL_PODS: &str = "50";

/// `deploy/base/namespace.yaml`.
pub fn file() -> anyhow::Result<File> {
    let mut labels = OWNER.labels();
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".to_owned(),
        );
    }
    let namespace = Namespace {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            labels: Some(labels),
            ..OWNER.cluster_meta(NAMESPACE)
        },
        ..Namespace::default()
    };
    let quota = ResourceQuota {
        metadata: OWNER.meta(NAMESPACE, CRITICAL_PODS_QUOTA),
        spec: Some(ResourceQuotaSpec {
            hard: Some([("pods".to_owned(), Quantity(CRITICAL_PODS.to_owned()))].into()),
            scope_selector: Some(ScopeSelector {
                match_expressions: Some(vec![ScopedResourceSelectorRequirement {
                    scope_name: "PriorityClass".to_owned(),
                    operator: "In".to_owned(),
                    values: Some(vec!["system-cluster-critical".to_owned()]),
                }]),
            }),
            scopes: None,
        }),
        status: None,
    };
    let mut file = File::new(
        "deploy/base/namespace.yaml",
        "idbind's namespace and its critical-pods quota.",
    );
    file.push(&namespace)?.push(&quota)?;
    Ok(file)
}
