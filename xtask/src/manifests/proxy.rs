//! The token proxy: stateless replicas behind the `idbind-proxy` Service, each mounting the
//! signing keys and the serving certificate the controller maintains.

use k8s_openapi::api::core::v1::{Container, Lifecycle, LifecycleHandler, SleepAction};

use super::PROXY_OWNER;
use super::meta::File;
use super::names::*;
use super::pod::*;

/// Name of the container.
pub const CONTAINER: &str = "proxy";
/// Port of the `idbind-proxy` Service (`AZURE_KUBERNETES_TOKEN_PROXY` has no port).
pub const SERVICE_PORT: i32 = 443;
/// Seconds a terminating proxy keeps serving before SIGTERM, while endpoints drop it.
const PRE_STOP_SLEEP: i64 = 5;
/// The proxy's default `--shutdown-grace` (requests in flight after SIGTERM).
const SHUTDOWN_GRACE: i64 = 25;

/// Settings every installation shares.
pub fn config() -> Vec<(String, String)> {
    vec![
        ("IDBIND_PROXY_LOG".to_owned(), "info".to_owned()),
        ("IDBIND_PROXY_LOG_FORMAT".to_owned(), "json".to_owned()),
    ]
}

/// `deploy/base/proxy.yaml`.
pub fn file() -> anyhow::Result<File> {
    let container = Container {
        name: CONTAINER.to_owned(),
        image: Some(image(PROXY)),
        env: Some(vec![
            env("IDBIND_PROXY_LISTEN", format!("0.0.0.0:{}", ports::PROXY)),
            env(
                "IDBIND_PROXY_ADMIN_LISTEN",
                format!("0.0.0.0:{}", ports::PROXY_ADMIN),
            ),
            env(
                "IDBIND_PROXY_TLS_CERT",
                format!("{}/tls.crt", paths::PROXY_TLS_DIR),
            ),
            env(
                "IDBIND_PROXY_TLS_KEY",
                format!("{}/tls.key", paths::PROXY_TLS_DIR),
            ),
            env("IDBIND_PROXY_KEYS_DIR", paths::KEYS_DIR),
        ]),
        env_from: Some(vec![env_from_config_map(PROXY_CONFIG)]),
        ports: Some(vec![
            port("https", ports::PROXY),
            port("admin", ports::PROXY_ADMIN),
        ]),
        liveness_probe: Some(probe("/healthz", "admin", 10, 3)),
        readiness_probe: Some(probe("/readyz", "admin", 5, 2)),
        resources: Some(resources(("100m", "64Mi"), ("1", "256Mi"))),
        volume_mounts: Some(vec![
            mount("tls", paths::PROXY_TLS_DIR),
            mount("signing-keys", paths::KEYS_DIR),
        ]),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRE_STOP_SLEEP,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        ..Container::default()
    };
    let deployment = deployment(Workload {
        owner: PROXY_OWNER,
        replicas: 2,
        service_account: PROXY,
        container,
        // Not optional: a proxy waits (ContainerCreating) until the controller has written both.
        volumes: vec![
            secret_volume("tls", PROXY_TLS_SECRET, false),
            secret_volume("signing-keys", SIGNING_KEY_SECRET, false),
        ],
        termination_grace_seconds: PRE_STOP_SLEEP + SHUTDOWN_GRACE + 5,
    });
    let mut file = File::new(
        "deploy/base/proxy.yaml",
        "The token proxy, its Services and budget. Scale it horizontally; it keeps no state.",
    );
    file.push(&deployment)?
        .push(&disruption_budget(PROXY_OWNER))?
        .push(&service(
            PROXY_OWNER,
            PROXY_OWNER,
            PROXY,
            &[("https", SERVICE_PORT, "https")],
        ))?
        .push(&service(
            PROXY_OWNER,
            PROXY_OWNER,
            PROXY_METRICS_SERVICE,
            &[("admin", ports::PROXY_ADMIN, "admin")],
        ))?;
    Ok(file)
}
