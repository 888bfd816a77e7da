//! The kustomize base and its overlays:
//!
//! - `deploy/base`: everything but the cluster-specific settings; not deployable alone.
//! - `deploy/overlays/single-cluster-directory-issuer`: the controller serves the issuer documents
//!   itself from a PersistentVolume, over HTTPS, behind the `idbind-issuer` Service, which must be
//!   reachable from Entra at `--issuer-base-url`. One controller replica (the volume is
//!   ReadWriteOnce and only the leader writes it).
//! - `deploy/overlays/fleet-blob-issuer`: the documents live in an Azure Blob container shared by
//!   every cluster of a fleet; the controller authenticates to ARM with workload identity.
//! - `deploy/overlays/e2e-kind`: the directory overlay pointed at the in-cluster Azure emulator,
//!   for `cargo xtask e2e --kind`.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EnvVar, EnvVarSource, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, ProjectedVolumeSource, SecretKeySelector,
    ServiceAccountTokenProjection, Volume, VolumeProjection, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::kustomize::{Generator, Image, Kustomization, Patch, patch_doc};
use super::meta::{File, Owner};
use super::names::*;
use super::pod::{env, image_name, mount, port, secret_volume, service, writable_mount};
use super::{CONTROLLER_OWNER, controller, e2e, proxy};

/// Directory of the base.
pub const BASE: &str = "deploy/base";
/// Directory of the single-cluster overlay.
pub const DIRECTORY_OVERLAY: &str = "deploy/overlays/single-cluster-directory-issuer";
/// Directory of the fleet overlay.
pub const FLEET_OVERLAY: &str = "deploy/overlays/fleet-blob-issuer";
/// Directory of the kind end-to-end overlay.
pub const E2E_OVERLAY: &str = "deploy/overlays/e2e-kind";

/// `KEY=value` settings of a generated ConfigMap.
pub type Settings = Vec<(String, String)>;

const ISSUER_OWNER: Owner = Owner {
    name: CONTROLLER_OWNER.name,
    component: "issuer",
};

fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A strategic-merge patch of one container (and the pod's volumes) of an idbind Deployment.
fn deployment_patch(
    name: &str,
    spec: Option<DeploymentSpec>,
    container: Container,
    volumes: Vec<Volume>,
) -> Deployment {
    let mut spec = spec.unwrap_or_default();
    spec.template = PodTemplateSpec {
        metadata: None,
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: (!volumes.is_empty()).then_some(volumes),
            ..PodSpec::default()
        }),
    };
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

fn patch_file(path: String, comment: &str, deployment: &Deployment) -> anyhow::Result<File> {
    let mut file = File::new(path, comment);
    file.docs.push(patch_doc(deployment)?);
    Ok(file)
}

/// The base's kustomization, and the CRD directory's.
pub fn base() -> anyhow::Result<Vec<File>> {
    let crds = Kustomization {
        resources: vec!["identitybindings.idbind.dev.yaml".to_owned()],
        ..Kustomization::default()
    };
    let base = Kustomization {
        resources: [
            "../crds",
            "namespace.yaml",
            "rbac.yaml",
            "admission-policy.yaml",
            "controller.yaml",
            "proxy.yaml",
            "webhook.yaml",
        ]
        .map(str::to_owned)
        .to_vec(),
        config_map_generator: vec![
            Generator::new(CONTROLLER_CONFIG, NAMESPACE, &controller::config())
                .labels(CONTROLLER_OWNER.labels()),
            Generator::new(PROXY_CONFIG, NAMESPACE, &proxy::config()).labels(super::PROXY_OWNER.labels()),
        ],
        ..Kustomization::default()
    };
    Ok(vec![
        crds.file("deploy/crds", "The CRD, as a kustomize resource directory.")?,
        base.file(
            BASE,
            "idbind without cluster-specific settings; deploy one of deploy/overlays (kubectl apply -k).",
        )?,
    ])
}

/// The settings an operator must replace in the directory overlay.
pub fn directory_config() -> Vec<(String, String)> {
    pairs(&[
        ("IDBIND_CLUSTER_NAME", "cluster-1"),
        ("IDBIND_ISSUER_BASE_URL", "https://issuer.example.com"),
        ("IDBIND_AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000000"),
        ("IDBIND_AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000000"),
        ("IDBIND_AZURE_CREDENTIAL", "client-secret"),
    ])
}

/// `deploy/overlays/single-cluster-directory-issuer`.
pub fn directory() -> anyhow::Result<Vec<File>> {
    let dir = DIRECTORY_OVERLAY;
    let container = Container {
        name: controller::CONTAINER.to_owned(),
        env: Some(vec![
            env("IDBIND_ISSUER_DIR", paths::ISSUER_DIR),
            env("IDBIND_ISSUER_LISTEN", format!("0.0.0.0:{}", ports::ISSUER)),
            env(
                "IDBIND_ISSUER_TLS_CERT",
                format!("{}/tls.crt", paths::ISSUER_TLS_DIR),
            ),
            env(
                "IDBIND_ISSUER_TLS_KEY",
                format!("{}/tls.key", paths::ISSUER_TLS_DIR),
            ),
            env(
                "IDBIND_AZURE_CLIENT_SECRET_FILE",
                format!(
                    "{}/{}",
                    paths::AZURE_CREDENTIALS_DIR,
                    user_secrets::CLIENT_SECRET_KEY
                ),
            ),
        ]),
        ports: Some(vec![port("issuer", ports::ISSUER)]),
        volume_mounts: Some(vec![
            writable_mount("issuer-documents", paths::ISSUER_DIR),
            mount("issuer-tls", paths::ISSUER_TLS_DIR),
            mount("azure-credentials", paths::AZURE_CREDENTIALS_DIR),
        ]),
        ..Container::default()
    };
    // One replica, replaced (not surged): the volume is ReadWriteOnce.
    let spec = DeploymentSpec {
        replicas: Some(1),
        strategy: Some(DeploymentStrategy {
            type_: None,
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::Int(0)),
                max_unavailable: Some(IntOrString::Int(1)),
            }),
        }),
        ..DeploymentSpec::default()
    };
    let volumes = vec![
        Volume {
            name: "issuer-documents".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: ISSUER_PVC.to_owned(),
                read_only: Some(false),
            }),
            ..Volume::default()
        },
        secret_volume("issuer-tls", user_secrets::ISSUER_TLS, false),
        secret_volume("azure-credentials", user_secrets::AZURE_CREDENTIALS, false),
    ];
    let patch = deployment_patch(CONTROLLER, Some(spec), container, volumes);

    let pvc = PersistentVolumeClaim {
        metadata: ISSUER_OWNER.meta(NAMESPACE, ISSUER_PVC),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_owned(), Quantity("1Gi".to_owned()))].into()),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    };
    let svc = service(
        ISSUER_OWNER,
        CONTROLLER_OWNER,
        ISSUER_SERVICE,
        &[("https", 443, "issuer")],
    );
    let mut issuer = File::new(
        format!("{dir}/issuer.yaml"),
        "The issuer documents' volume, and the Service in front of the controller's issuer server.\n\
         Expose it to Entra at IDBIND_ISSUER_BASE_URL over HTTPS (docs/operations.md).",
    );
    issuer.push(&pvc)?.push(&svc)?;

    let kustomization = Kustomization {
        resources: vec!["../../base".to_owned(), "issuer.yaml".to_owned()],
        patches: vec![Patch {
            path: "controller.yaml".to_owned(),
        }],
        config_map_generator: vec![Generator::new(CONTROLLER_CONFIG, NAMESPACE, &directory_config()).merge()],
        ..Kustomization::default()
    };
    Ok(vec![
        kustomization.file(
            dir,
            "One cluster; the controller serves the issuer documents itself (docs/operations.md).\n\
             Replace the settings below, and create the Secrets idbind-azure-credentials (key\n\
             client-secret) and idbind-issuer-tls (the certificate of the issuer's public name).",
        )?,
        issuer,
        patch_file(
            format!("{dir}/controller.yaml"),
            "The controller serves the directory issuer and uses a client secret for ARM.",
            &patch,
        )?,
    ])
}

/// The settings an operator must replace in the fleet overlay.
pub fn fleet_config() -> Vec<(String, String)> {
    let container = "https://idbindissuer.blob.core.windows.net/issuer";
    vec![
        ("IDBIND_CLUSTER_NAME".to_owned(), "cluster-1".to_owned()),
        ("IDBIND_ISSUER_STORE".to_owned(), format!("blob:{container}")),
        ("IDBIND_ISSUER_BASE_URL".to_owned(), container.to_owned()),
        (
            "IDBIND_AZURE_TENANT_ID".to_owned(),
            "00000000-0000-0000-0000-000000000000".to_owned(),
        ),
        (
            "IDBIND_AZURE_CLIENT_ID".to_owned(),
            "00000000-0000-0000-0000-000000000000".to_owned(),
        ),
        (
            "IDBIND_AZURE_CREDENTIAL".to_owned(),
            "workload-identity".to_owned(),
        ),
    ]
}

/// `deploy/overlays/fleet-blob-issuer`.
pub fn fleet() -> anyhow::Result<Vec<File>> {
    let dir = FLEET_OVERLAY;
    let token_file = format!("{}/{}", paths::AZURE_TOKEN_DIR, paths::AZURE_TOKEN_FILE);
    let container = Container {
        name: controller::CONTAINER.to_owned(),
        env: Some(vec![
            env("IDBIND_AZURE_FEDERATED_TOKEN_FILE", token_file),
            EnvVar {
                name: "IDBIND_ISSUER_BLOB_SAS".to_owned(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: user_secrets::ISSUER_BLOB_SAS.to_owned(),
                        key: user_secrets::BLOB_SAS_KEY.to_owned(),
                        optional: Some(true),
                    }),
                    ..EnvVarSource::default()
                }),
            },
        ]),
        volume_mounts: Some(vec![mount("azure-identity-token", paths::AZURE_TOKEN_DIR)]),
        ..Container::default()
    };
    let volumes = vec![Volume {
        name: "azure-identity-token".to_owned(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o440),
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some(idbind_model::ENTRA_FIC_AUDIENCE.to_owned()),
                    expiration_seconds: Some(3600),
                    path: paths::AZURE_TOKEN_FILE.to_owned(),
                    ..ServiceAccountTokenProjection::default()
                }),
                ..VolumeProjection::default()
            }]),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }];
    let patch = deployment_patch(CONTROLLER, None, container, volumes);
    let kustomization = Kustomization {
        resources: vec!["../../base".to_owned()],
        patches: vec![Patch {
            path: "controller.yaml".to_owned(),
        }],
        config_map_generator: vec![Generator::new(CONTROLLER_CONFIG, NAMESPACE, &fleet_config()).merge()],
        ..Kustomization::default()
    };
    Ok(vec![
        kustomization.file(
            dir,
            "A fleet: every cluster publishes into one Azure Blob container (docs/operations.md).\n\
             Replace the settings below in each cluster (IDBIND_CLUSTER_NAME differs per cluster),\n\
             and create the Secret idbind-issuer-blob-sas (key sas) unless the controller's\n\
             identity may write the container.",
        )?,
        patch_file(
            format!("{dir}/controller.yaml"),
            "Workload identity for ARM (a projected token for api://AzureADTokenExchange), and the\n\
             Blob SAS from a Secret.",
            &patch,
        )?,
    ])
}

/// The settings of the end-to-end overlay (controller, proxy).
pub fn e2e_config() -> (Settings, Settings) {
    let azure = e2e::emulator_url();
    let controller = vec![
        ("IDBIND_CLUSTER_NAME".to_owned(), e2e::CLUSTER_NAME.to_owned()),
        ("IDBIND_ISSUER_BASE_URL".to_owned(), e2e::issuer_base_url()),
        ("IDBIND_AZURE_TENANT_ID".to_owned(), e2e::TENANT.to_owned()),
        (
            "IDBIND_AZURE_CLIENT_ID".to_owned(),
            e2e::CONTROLLER_CLIENT_ID.to_owned(),
        ),
        ("IDBIND_AZURE_CLOUD".to_owned(), "custom".to_owned()),
        ("IDBIND_AZURE_AUTHORITY_HOST".to_owned(), azure.clone()),
        ("IDBIND_ARM_ENDPOINT".to_owned(), azure.clone()),
        (
            "IDBIND_AZURE_CA_FILE".to_owned(),
            format!("{}/ca.crt", e2e::CA_DIR),
        ),
        ("IDBIND_FIC_GC".to_owned(), "delete".to_owned()),
        ("IDBIND_LOG".to_owned(), "info,idbind=debug".to_owned()),
    ];
    let proxy = vec![
        ("IDBIND_PROXY_AUTHORITY_HOST".to_owned(), azure),
        (
            "IDBIND_PROXY_AUTHORITY_CA_FILE".to_owned(),
            format!("{}/ca.crt", e2e::CA_DIR),
        ),
        // Short caches, so an unbinding shows within seconds.
        ("IDBIND_PROXY_AUTHN_CACHE_TTL".to_owned(), "5s".to_owned()),
        ("IDBIND_PROXY_AUTHZ_ALLOW_TTL".to_owned(), "5s".to_owned()),
        ("IDBIND_PROXY_AUTHZ_DENY_TTL".to_owned(), "5s".to_owned()),
    ];
    (controller, proxy)
}

fn ca_volume() -> Volume {
    Volume {
        name: "e2e-ca".to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: e2e::CA_CONFIGMAP.to_owned(),
            optional: Some(false),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// `deploy/overlays/e2e-kind`.
pub fn e2e_overlay() -> anyhow::Result<Vec<File>> {
    let dir = E2E_OVERLAY;
    let with_ca = |deployment: &str, container: &str| {
        deployment_patch(
            deployment,
            None,
            Container {
                name: container.to_owned(),
                volume_mounts: Some(vec![mount("e2e-ca", e2e::CA_DIR)]),
                ..Container::default()
            },
            vec![ca_volume()],
        )
    };
    let (controller_config, proxy_config) = e2e_config();
    let images = [CONTROLLER, PROXY]
        .map(|binary| Image {
            name: image_name(binary),
            new_name: e2e::image(binary),
            new_tag: e2e::TAG.to_owned(),
        })
        .into_iter()
        .collect();
    let kustomization = Kustomization {
        resources: vec![
            "../single-cluster-directory-issuer".to_owned(),
            "azure-emulator.yaml".to_owned(),
        ],
        patches: vec![
            Patch {
                path: "controller.yaml".to_owned(),
            },
            Patch {
                path: "proxy.yaml".to_owned(),
            },
        ],
        config_map_generator: vec![
            Generator::new(CONTROLLER_CONFIG, NAMESPACE, &controller_config).merge(),
            Generator::new(PROXY_CONFIG, NAMESPACE, &proxy_config).merge(),
        ],
        secret_generator: vec![Generator::new(
            user_secrets::AZURE_CREDENTIALS,
            NAMESPACE,
            &[(
                user_secrets::CLIENT_SECRET_KEY.to_owned(),
                e2e::CONTROLLER_SECRET.to_owned(),
            )],
        )],
        images,
        ..Kustomization::default()
    };
    Ok(vec![
        kustomization.file(
            dir,
            "`cargo xtask e2e --kind`: the single-cluster overlay against the Azure emulator, in kind.\n\
             The e2e creates the TLS Secrets and the CA ConfigMap before applying it. Not for real clusters.",
        )?,
        e2e::emulator_file(format!("{dir}/azure-emulator.yaml"))?,
        patch_file(
            format!("{dir}/controller.yaml"),
            "The controller trusts the e2e CA (the emulator's certificate).",
            &with_ca(CONTROLLER, controller::CONTAINER),
        )?,
        patch_file(
            format!("{dir}/proxy.yaml"),
            "The proxy trusts the e2e CA (the emulator's certificate).",
            &with_ca(PROXY, proxy::CONTAINER),
        )?,
    ])
}
