//! A kubelet stand-in for pods that run as local processes (the sandbox, which has no kubelet):
//! writes the projected volume the webhook injected — the service-account token (through the
//! TokenRequest API, with the volume's audience and lifetime, bound to the pod) and the proxy CA
//! bundle (from the ConfigMap in the pod's namespace) — into a local directory, and rewrites the
//! container's `AZURE_*` paths to point there.
//!
//! [`keep_projected`] refreshes the files as kubelet does: the token at 80 % of its lifetime, the
//! bundle whenever the ConfigMap changes (checked every `bundle_check`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount, Volume};
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

use super::mutate::VOLUME_NAME_PREFIX;
use crate::{Error, Result};

/// What was written for a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectedFiles {
    /// The directory standing in for the mount path `/var/run/secrets/azure/wi`.
    pub dir: PathBuf,
    /// The token file.
    pub token_file: PathBuf,
    /// The CA bundle file.
    pub ca_file: PathBuf,
    /// Requested token lifetime in seconds.
    pub expiration_seconds: i64,
}

impl ProjectedFiles {
    /// When kubelet would refresh the token: at 80 % of its lifetime.
    pub fn refresh_after(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.expiration_seconds).unwrap_or(3600) * 4 / 5)
    }
}

struct VolumePlan {
    audience: String,
    expiration_seconds: i64,
    token_path: String,
    configmap: String,
    items: Vec<(String, String)>,
}

fn plan(pod: &Pod, what: &str) -> Result<VolumePlan> {
    let missing = |reason: String| Error::InvalidData {
        what: what.to_owned(),
        reason,
    };
    let volume: &Volume = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|vs| vs.iter().find(|v| v.name.starts_with(VOLUME_NAME_PREFIX)))
        .ok_or_else(|| {
            missing(format!(
                "no {VOLUME_NAME_PREFIX}* volume: the webhook did not mutate this pod"
            ))
        })?;
    let sources = volume
        .projected
        .as_ref()
        .and_then(|p| p.sources.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let token = sources
        .iter()
        .find_map(|s| s.service_account_token.as_ref())
        .ok_or_else(|| {
            missing(format!(
                "volume {} projects no service-account token",
                volume.name
            ))
        })?;
    let configmap = sources
        .iter()
        .find_map(|s| s.config_map.as_ref())
        .ok_or_else(|| missing(format!("volume {} projects no CA ConfigMap", volume.name)))?;
    Ok(VolumePlan {
        audience: token.audience.clone().unwrap_or_default(),
        expiration_seconds: token.expiration_seconds.unwrap_or(3600),
        token_path: token.path.clone(),
        configmap: configmap.name.clone(),
        items: configmap
            .items
            .iter()
            .flatten()
            .map(|i| (i.key.clone(), i.path.clone()))
            .collect(),
    })
}

/// Writes the projected volume of pod `namespace/name` into `dir`: a fresh token and the bundle.
pub async fn project(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    dir: &Path,
) -> Result<ProjectedFiles> {
    project_parts(client, namespace, name, dir, true).await
}

async fn project_parts(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    dir: &Path,
    with_token: bool,
) -> Result<ProjectedFiles> {
    let what = format!("pod {namespace}/{name}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = pods
        .get(name)
        .await
        .map_err(Error::kube(format!("reading {what}")))?;
    let plan = plan(&pod, &what)?;
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_owned());
    let mut files: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    if with_token {
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![plan.audience.clone()]),
                expiration_seconds: Some(plan.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".to_owned()),
                    kind: Some("Pod".to_owned()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
        let issued = accounts
            .create_token_request(&sa, &PostParams::default(), &request)
            .await
            .map_err(Error::kube(format!(
                "requesting a token for service account {namespace}/{sa}"
            )))?;
        let token = issued
            .status
            .and_then(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::InvalidData {
                what: format!("TokenRequest for {namespace}/{sa}"),
                reason: "the answer holds no token".into(),
            })?;
        files.insert(dir.join(&plan.token_path), token.into_bytes());
    }
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = configmaps
        .get_opt(&plan.configmap)
        .await
        .map_err(Error::kube(format!(
            "reading ConfigMap {namespace}/{}",
            plan.configmap
        )))?
        .ok_or_else(|| Error::InvalidData {
            what: format!("ConfigMap {namespace}/{}", plan.configmap),
            reason: "it does not exist; kubelet would not start the pod (is the controller's proxy TLS \
                     management running?)"
                .into(),
        })?;
    let data = cm.data.unwrap_or_default();
    let mut ca_file = None;
    for (key, path) in &plan.items {
        let value = data.get(key).ok_or_else(|| Error::InvalidData {
            what: format!("ConfigMap {namespace}/{}", plan.configmap),
            reason: format!("it has no key {key}"),
        })?;
        let file = dir.join(path);
        ca_file.get_or_insert_with(|| file.clone());
        files.insert(file, value.clone().into_bytes());
    }
    for (path, bytes) in &files {
        write_atomically(path, bytes).map_err(|e| Error::InvalidData {
            what: format!("file {}", path.display()),
            reason: format!("cannot write it: {e}"),
        })?;
    }
    Ok(ProjectedFiles {
        dir: dir.to_path_buf(),
        token_file: dir.join(&plan.token_path),
        ca_file: ca_file.unwrap_or_else(|| dir.join(idbind_model::WI_CA_PATH)),
        expiration_seconds: plan.expiration_seconds,
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// The literal environment of container `container` of `pod`, with every value under the mount
/// path (`/var/run/secrets/azure/wi`) pointing into `dir` instead. Variables taken from other
/// sources (`valueFrom`) are left out.
pub fn local_env(pod: &Pod, container: &str, dir: &Path) -> Vec<(String, String)> {
    let mount = idbind_model::WI_MOUNT_PATH;
    let spec = pod.spec.as_ref();
    let containers = spec.map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()));
    let Some(found) = containers.and_then(|mut cs| cs.find(|c| c.name == container)) else {
        return Vec::new();
    };
    found
        .env
        .iter()
        .flatten()
        .filter_map(|e| {
            let value = e.value.as_ref()?;
            let value = match value.strip_prefix(mount) {
                Some(rest) => dir.join(rest.trim_start_matches('/')).display().to_string(),
                None => value.clone(),
            };
            Some((e.name.clone(), value))
        })
        .collect()
}

/// Keeps the projected files of pod `namespace/name` in `dir` fresh until `shutdown`: the token
/// at 80 % of its lifetime, the bundle every `bundle_check`. Errors are logged and retried.
pub async fn keep_projected(
    client: kube::Client,
    namespace: String,
    name: String,
    dir: PathBuf,
    bundle_check: Duration,
    shutdown: CancellationToken,
) {
    let mut next_token = tokio::time::Instant::now();
    loop {
        let now = tokio::time::Instant::now();
        let token_due = now >= next_token;
        let wait = match project_parts(&client, &namespace, &name, &dir, token_due).await {
            Ok(files) => {
                if token_due {
                    next_token = now + files.refresh_after();
                }
                bundle_check.min(next_token.saturating_duration_since(now))
            }
            Err(e) => {
                tracing::warn!(pod = %format!("{namespace}/{name}"), error = %e, "projecting the volume failed; retrying");
                bundle_check.min(Duration::from_secs(5))
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
