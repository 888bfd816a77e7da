//! The Azure emulator as `cargo xtask e2e --kind` deploys it, and the fixed ids of its seed.
//!
//! Entra (the emulator) fetches the issuer documents from the controller's issuer server over
//! HTTPS, as real Entra would: the e2e generates one CA, certificates for the emulator and for
//! `idbind-issuer.idbind.svc`, and gives every party the CA (`--issuer-ca`, `--azure-ca-file`,
//! `--authority-ca-file`) through the ConfigMap [`CA_CONFIGMAP`].

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, HTTPGetAction, Namespace, Probe, ServiceAccount, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use super::meta::{File, Owner, map};
use super::names::{ISSUER_SERVICE, NAMESPACE as IDBIND_NAMESPACE};
use super::pod::{Workload, deployment, mount, port, resources, secret_volume, service};

/// Namespace of the emulator.
pub const NAMESPACE: &str = "idbind-e2e";
/// Namespace of the test workloads.
pub const APPS_NAMESPACE: &str = "idbind-e2e-apps";
/// Deployment, Service and ServiceAccount of the emulator.
pub const EMULATOR: &str = "azure-emulator";
/// The emulator's port (container and Service: the emulator puts it in its URLs).
pub const EMULATOR_PORT: i32 = 8443;
/// TLS Secret of the emulator (created by the e2e).
pub const EMULATOR_TLS_SECRET: &str = "azure-emulator-tls";
/// ConfigMap with the e2e CA, key `ca.crt`, in both namespaces (created by the e2e).
pub const CA_CONFIGMAP: &str = "idbind-e2e-ca";
/// Where the CA is mounted.
pub const CA_DIR: &str = "/var/run/idbind-e2e/ca";
/// Tag of the images the e2e builds.
pub const TAG: &str = "e2e";
/// Name of this cluster in key ids.
pub const CLUSTER_NAME: &str = "kind-e2e";

/// The emulator's tenant.
pub const TENANT: &str = "e2e0e2e0-0000-4000-8000-000000000001";
/// The controller's service principal.
pub const CONTROLLER_CLIENT_ID: &str = "e2e0e2e0-0000-4000-8000-0000000000c0";
/// Its client secret (an emulator secret, worthless elsewhere).
pub const CONTROLLER_SECRET: &str = "idbind-e2e-controller-secret";
/// The subscription.
pub const SUBSCRIPTION: &str = "e2e0e2e0-0000-4000-8000-00000000005b";
/// The resource group.
pub const RESOURCE_GROUP: &str = "e2e";
/// The user-assigned identity the e2e binds.
pub const IDENTITY: &str = "payments";
/// Its client id.
pub const IDENTITY_CLIENT_ID: &str = "e2e0e2e0-0000-4000-8000-0000000000a1";
/// Its principal id.
pub const IDENTITY_PRINCIPAL_ID: &str = "e2e0e2e0-0000-4000-8000-0000000000b1";

/// An e2e image name (tag [`TAG`]).
pub fn image(binary: &str) -> String {
    format!("idbind/{binary}")
}

/// Authority host and ARM endpoint.
pub fn emulator_url() -> String {
    format!("https://{EMULATOR}.{NAMESPACE}.svc:{EMULATOR_PORT}")
}

/// The issuer base URL: the directory issuer's Service.
pub fn issuer_base_url() -> String {
    format!("https://{ISSUER_SERVICE}.{IDBIND_NAMESPACE}.svc")
}

/// The identity's ARM resource id.
pub fn identity_resource_id() -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{IDENTITY}"
    )
}

/// The emulator's seed: the controller's principal (allowed everywhere) and one identity.
pub fn seed() -> serde_json::Value {
    json!({
        "tenants": [{
            "id": TENANT,
            "default": true,
            "servicePrincipals": [{"clientId": CONTROLLER_CLIENT_ID, "secret": CONTROLLER_SECRET, "default": true}],
            "subscriptions": [{
                "id": SUBSCRIPTION,
                "default": true,
                "resourceGroups": [{
                    "name": RESOURCE_GROUP,
                    "identities": [{
                        "name": IDENTITY,
                        "clientId": IDENTITY_CLIENT_ID,
                        "principalId": IDENTITY_PRINCIPAL_ID,
                    }],
                }],
            }],
        }],
    })
}

const OWNER: Owner = Owner {
    name: EMULATOR,
    component: "e2e",
};

fn hosts() -> Vec<String> {
    vec![
        format!("{EMULATOR}.{NAMESPACE}.svc"),
        format!("{EMULATOR}.{NAMESPACE}.svc.cluster.local"),
    ]
}

/// DNS names of the emulator's certificate.
pub fn emulator_dns_names() -> Vec<String> {
    hosts()
}

/// DNS names of the issuer's certificate.
pub fn issuer_dns_names() -> Vec<String> {
    vec![
        format!("{ISSUER_SERVICE}.{IDBIND_NAMESPACE}.svc"),
        format!("{ISSUER_SERVICE}.{IDBIND_NAMESPACE}.svc.cluster.local"),
    ]
}

/// `deploy/overlays/e2e-kind/azure-emulator.yaml`.
pub fn emulator_file(path: String) -> anyhow::Result<File> {
    let mut labels = OWNER.labels();
    labels.insert(
        "pod-security.kubernetes.io/enforce".to_owned(),
        "restricted".to_owned(),
    );
    let namespace = Namespace {
        metadata: ObjectMeta {
            labels: Some(labels),
            ..OWNER.cluster_meta(NAMESPACE)
        },
        ..Namespace::default()
    };
    let account = ServiceAccount {
        metadata: OWNER.meta(NAMESPACE, EMULATOR),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    };
    let seed = ConfigMap {
        metadata: OWNER.meta(NAMESPACE, "azure-emulator-seed"),
        data: Some(map([(
            "seed.json",
            serde_json::to_string_pretty(&seed())?.as_str(),
        )])),
        ..ConfigMap::default()
    };
    let args = [
        "--listen".to_owned(),
        format!("0.0.0.0:{EMULATOR_PORT}"),
        "--tls-cert=/var/run/secrets/tls/tls.crt".to_owned(),
        "--tls-key=/var/run/secrets/tls/tls.key".to_owned(),
        format!("--advertised-host={EMULATOR}.{NAMESPACE}.svc"),
        "--seed=/etc/azure-emulator/seed.json".to_owned(),
        format!("--issuer-ca={CA_DIR}/ca.crt"),
        "--no-throttle".to_owned(),
    ];
    let https_probe = Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/_emulator/readyz".to_owned()),
            port: IntOrString::String("https".to_owned()),
            scheme: Some("HTTPS".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let container = Container {
        name: "emulator".to_owned(),
        image: Some(format!("{}:{TAG}", image("idbind-emulator"))),
        args: Some(args.to_vec()),
        ports: Some(vec![port("https", EMULATOR_PORT)]),
        readiness_probe: Some(https_probe),
        resources: Some(resources(("50m", "32Mi"), ("1", "256Mi"))),
        volume_mounts: Some(vec![
            mount("tls", "/var/run/secrets/tls"),
            mount("seed", "/etc/azure-emulator"),
            mount("e2e-ca", CA_DIR),
        ]),
        ..Container::default()
    };
    let config_map_volume = |volume: &str, name: &str| Volume {
        name: volume.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: name.to_owned(),
            optional: Some(false),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mut emulator = deployment(Workload {
        owner: OWNER,
        replicas: 1,
        service_account: EMULATOR,
        container,
        volumes: vec![
            secret_volume("tls", EMULATOR_TLS_SECRET, false),
            config_map_volume("seed", "azure-emulator-seed"),
            config_map_volume("e2e-ca", CA_CONFIGMAP),
        ],
        termination_grace_seconds: 10,
    });
    emulator.metadata.namespace = Some(NAMESPACE.to_owned());
    if let Some(pod) = emulator.spec.template.spec.as_mut() {
        pod.priority_class_name = None;
        pod.tolerations = None;
    }
    let mut svc = service(OWNER, OWNER, EMULATOR, &[("https", EMULATOR_PORT, "https")]);
    svc.metadata.namespace = Some(NAMESPACE.to_owned());

    let mut file = File::new(
        path,
        "The Azure emulator (Entra and ARM), seeded with the e2e's tenant, principal and identity.",
    );
    file.push(&namespace)?
        .push(&account)?
        .push(&seed)?
        .push(&emulator)?
        .push(&svc)?;
    Ok(file)
}
