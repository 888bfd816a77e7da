//! Building blocks shared by idbind's workloads: hardened security contexts, probes, spreading,
//! disruption budgets and Services.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Service, ServicePort,
    ServiceSpec, Toleration, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{Owner, map};
use super::names::{IMAGE_REGISTRY, NAMESPACE, NONROOT_UID, VERSION, paths};

/// The released image of a binary.
pub fn image(binary: &str) -> String {
    format!("{IMAGE_REGISTRY}/{binary}:{VERSION}")
}

/// Image names without tag, for kustomize's `images` transformer.
pub fn image_name(binary: &str) -> String {
    format!("{IMAGE_REGISTRY}/{binary}")
}

/// Pod-level hardening: the `restricted` Pod Security Standard, the distroless `nonroot` user,
/// mounted Secrets readable through the group.
pub fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NONROOT_UID),
        run_as_group: Some(NONROOT_UID),
        fs_group: Some(NONROOT_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// Container-level hardening.
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// An HTTP probe on a named port.
pub fn probe(path: &str, port: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(port.to_owned()),
            scheme: Some("HTTP".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// Requests and limits (cpu, memory).
pub fn resources(requests: (&str, &str), limits: (&str, &str)) -> ResourceRequirements {
    let q = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])
    };
    ResourceRequirements {
        requests: Some(q(requests.0, requests.1)),
        limits: Some(q(limits.0, limits.1)),
        claims: None,
    }
}

/// A literal environment variable.
pub fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// An environment variable from the downward API.
pub fn env_field(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_owned(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// `envFrom` a ConfigMap.
pub fn env_from_config_map(name: &str) -> EnvFromSource {
    EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource {
            name: name.to_owned(),
            optional: Some(false),
        }),
        ..EnvFromSource::default()
    }
}

/// A named TCP container port.
pub fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: number,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

/// A read-only mount.
pub fn mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// A writable mount.
pub fn writable_mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        ..VolumeMount::default()
    }
}

/// A Secret volume readable by the pod's group only (0440).
pub fn secret_volume(volume: &str, secret: &str, optional: bool) -> Volume {
    Volume {
        name: volume.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            default_mode: Some(0o440),
            optional: Some(optional),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// An emptyDir volume.
pub fn empty_dir(volume: &str, size_limit: &str) -> Volume {
    Volume {
        name: volume.to_owned(),
        empty_dir: Some(k8s_openapi::api::core::v1::EmptyDirVolumeSource {
            size_limit: Some(Quantity(size_limit.to_owned())),
            ..k8s_openapi::api::core::v1::EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The scratch `/tmp` every container gets (the root filesystem is read-only).
pub fn tmp() -> (Volume, VolumeMount) {
    (empty_dir("tmp", "16Mi"), writable_mount("tmp", paths::TMP))
}

/// Spread replicas over nodes and zones, preferably (a one-node cluster still schedules them).
pub fn spread(owner: Owner) -> Vec<TopologySpreadConstraint> {
    ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
        .into_iter()
        .map(|key| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.to_owned(),
            when_unsatisfiable: "ScheduleAnyway".to_owned(),
            label_selector: Some(owner.selector()),
            match_label_keys: Some(vec!["pod-template-hash".to_owned()]),
            ..TopologySpreadConstraint::default()
        })
        .collect()
}

/// Tolerations of cluster-critical add-ons (nodes reserved with `CriticalAddonsOnly`).
pub fn critical_tolerations() -> Vec<Toleration> {
    vec![Toleration {
        key: Some("CriticalAddonsOnly".to_owned()),
        operator: Some("Exists".to_owned()),
        ..Toleration::default()
    }]
}

/// What differs between idbind's Deployments.
pub struct Workload {
    /// Labels and selector.
    pub owner: Owner,
    /// Replicas.
    pub replicas: i32,
    /// The service account.
    pub service_account: &'static str,
    /// The one container.
    pub container: Container,
    /// Volumes (the scratch `/tmp` is added).
    pub volumes: Vec<Volume>,
    /// Seconds between SIGTERM and SIGKILL.
    pub termination_grace_seconds: i64,
}

/// A hardened, spread, cluster-critical Deployment that rolls one extra pod at a time.
pub fn deployment(w: Workload) -> Deployment {
    let (tmp_volume, tmp_mount) = tmp();
    let mut container = w.container;
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(tmp_mount);
    container.security_context = Some(container_security_context());
    container.image_pull_policy = Some("IfNotPresent".to_owned());
    let container_name = container.name.clone();
    let mut volumes = w.volumes;
    volumes.push(tmp_volume);
    Deployment {
        metadata: w.owner.meta(NAMESPACE, w.owner.name),
        spec: DeploymentSpec {
            replicas: Some(w.replicas),
            revision_history_limit: Some(5),
            selector: w.owner.selector(),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(w.owner.labels()),
                    annotations: Some(map([(
                        "kubectl.kubernetes.io/default-container",
                        container_name.as_str(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(w.service_account.to_owned()),
                    // Service links would put IDBIND_* variables (from Services named idbind-*)
                    // into the environment the binaries read their flags from.
                    enable_service_links: Some(false),
                    priority_class_name: Some("system-cluster-critical".to_owned()),
                    security_context: Some(pod_security_context()),
                    termination_grace_period_seconds: Some(w.termination_grace_seconds),
                    topology_spread_constraints: Some(spread(w.owner)),
                    node_selector: Some(map([("kubernetes.io/os", "linux")])),
                    tolerations: Some(critical_tolerations()),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

/// A PodDisruptionBudget letting one replica go at a time (never blocking a drain because of
/// pods that are not running anyway).
pub fn disruption_budget(owner: Owner) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owner.meta(NAMESPACE, owner.name),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(owner.selector()),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            min_available: None,
        }),
        status: None,
    }
}

/// A ClusterIP Service: (port name, service port, target port name).
pub fn service(owner: Owner, selector: Owner, name: &str, ports: &[(&str, i32, &str)]) -> Service {
    Service {
        metadata: owner.meta(NAMESPACE, name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector.selector_labels()),
            ports: Some(
                ports
                    .iter()
                    .map(|(port_name, number, target)| ServicePort {
                        name: Some((*port_name).to_owned()),
                        port: *number,
                        target_port: Some(IntOrString::String((*target).to_owned())),
                        protocol: Some("TCP".to_owned()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
