//! The controller: two leader-elected replicas (reconciler, keys, certificates on the leader; the
//! admission webhook on both), its webhook and metrics Services and its disruption budget.

use k8s_openapi::api::core::v1::Container;

use super::CONTROLLER_OWNER;
use super::meta::File;
use super::names::*;
use super::pod::*;
use super::webhook::SERVICE_PORT as WEBHOOK_SERVICE_PORT;

/// Name of the container.
pub const CONTAINER: &str = "controller";

/// Settings every installation shares (the overlays add theirs to the same ConfigMap).
pub fn config() -> Vec<(String, String)> {
    vec![
        ("IDBIND_LOG".to_owned(), "info".to_owned()),
        ("IDBIND_LOG_FORMAT".to_owned(), "json".to_owned()),
    ]
}

/// `deploy/base/controller.yaml`.
pub fn file() -> anyhow::Result<File> {
    let container = Container {
        name: CONTAINER.to_owned(),
        image: Some(image(CONTROLLER)),
        env: Some(vec![
            // The namespace comes from the pod, so a renamed namespace stays consistent.
            env_field("IDBIND_NAMESPACE", "metadata.namespace"),
            env_field("POD_NAME", "metadata.name"),
            env(
                "IDBIND_ADMIN_LISTEN",
                format!("0.0.0.0:{}", ports::CONTROLLER_ADMIN),
            ),
            env("IDBIND_WEBHOOK_LISTEN", format!("0.0.0.0:{}", ports::WEBHOOK)),
            env("IDBIND_WEBHOOK_SERVICE", WEBHOOK_SERVICE),
            env("IDBIND_WEBHOOK_SERVICE_PORT", WEBHOOK_SERVICE_PORT.to_string()),
            // Names the RBAC rules, the admission policy and the proxy's mounts depend on.
            env("IDBIND_PROXY_SERVICE", PROXY),
            env("IDBIND_SIGNING_KEY_SECRET", SIGNING_KEY_SECRET),
            env("IDBIND_PROXY_CA_SECRET", PROXY_CA_SECRET),
            env("IDBIND_PROXY_TLS_SECRET", PROXY_TLS_SECRET),
            env("IDBIND_PROXY_CA_CONFIGMAP", PROXY_CA_CONFIGMAP),
            env("IDBIND_WEBHOOK_SECRET", WEBHOOK_SECRET),
            env("IDBIND_WEBHOOK_CONFIGURATION", WEBHOOK_CONFIGURATION),
            env("IDBIND_LEASE_NAME", LEASE),
        ]),
        env_from: Some(vec![env_from_config_map(CONTROLLER_CONFIG)]),
        ports: Some(vec![
            port("admin", ports::CONTROLLER_ADMIN),
            port("webhook", ports::WEBHOOK),
        ]),
        liveness_probe: Some(probe("/healthz", "admin", 10, 3)),
        readiness_probe: Some(probe("/readyz", "admin", 5, 2)),
        resources: Some(resources(("50m", "64Mi"), ("1", "256Mi"))),
        ..Container::default()
    };
    let deployment = deployment(Workload {
        owner: CONTROLLER_OWNER,
        replicas: 2,
        service_account: CONTROLLER,
        container,
        volumes: Vec::new(),
        termination_grace_seconds: 30,
    });
    let mut file = File::new(
        "deploy/base/controller.yaml",
        "The controller (leader-elected; the webhook runs on every replica), its Services and budget.",
    );
    file.push(&deployment)?
        .push(&disruption_budget(CONTROLLER_OWNER))?
        .push(&service(
            super::meta::Owner {
                component: "webhook",
                ..CONTROLLER_OWNER
            },
            CONTROLLER_OWNER,
            WEBHOOK_SERVICE,
            &[("https", i32::from(WEBHOOK_SERVICE_PORT), "webhook")],
        ))?
        .push(&service(
            CONTROLLER_OWNER,
            CONTROLLER_OWNER,
            CONTROLLER_METRICS_SERVICE,
            &[("admin", ports::CONTROLLER_ADMIN, "admin")],
        ))?;
    Ok(file)
}
