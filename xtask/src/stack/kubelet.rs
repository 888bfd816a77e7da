//! kubelet-lite: what a kubelet would do for the pods of a stack, on this machine.
//!
//! No kubelet runs next to the Kubernetes API emulator, yet pods need their volumes: the proxy
//! reads its signing keys and serving certificate from mounted Secrets, and a workload reads its
//! projected service-account token and the proxy CA. kubelet-lite watches every Pod, Secret and
//! ConfigMap of one cluster and, for each pod, writes its volumes under
//! `<root>/<namespace>/<pod>/volumes/<volume>/` with kubelet's atomic update scheme
//! ([`super::atomic`]):
//!
//! - `secret` and `configMap` volumes, and the `secret`/`configMap` sources of `projected`
//!   volumes (with `items`, `defaultMode`, `optional`), rewritten whenever the object changes
//!   (kubelet's watch-based change detection);
//! - `serviceAccountToken` sources: a TokenRequest for the pod's service account with the
//!   source's audience and `expirationSeconds`, bound to the pod (`boundObjectRef`), requested
//!   again at 80 % of the token's lifetime, as kubelet does;
//! - `emptyDir` volumes as empty directories.
//!
//! It does not run containers: [`MountedPod::env`] gives a container's environment with what a
//! container would see rewritten to this host — paths under a `volumeMount` become the host
//! paths of the volume, and `http(s)` URLs of Services registered with
//! [`Kubelet::set_service`] point at the local listener (what cluster DNS and kube-proxy do). It
//! does not report pod status, and other volume types leave the pod pending with a message.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use futures::StreamExt as _;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, Container, KeyToPath, Pod, Secret, SecretProjection, ServiceAccount,
    ServiceAccountTokenProjection, Volume,
};
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use super::AbortOnDrop;
use idbind_tests::volume::{FileData, Payload, write_payload};

/// kubelet's default lifetime of a projected service-account token.
const DEFAULT_TOKEN_SECONDS: i64 = 3600;
/// kubelet's default file mode of volume files (0644).
const DEFAULT_MODE: i32 = 0o644;

/// kubelet-lite for one cluster; stops when dropped. See the module docs.
pub struct Kubelet {
    inner: Arc<Inner>,
    _tasks: Vec<AbortOnDrop>,
}

struct Inner {
    client: kube::Client,
    root: PathBuf,
    secrets: Store<Secret>,
    configmaps: Store<ConfigMap>,
    /// Bumped on every Secret or ConfigMap event.
    objects_changed: watch::Sender<u64>,
    services: Arc<Mutex<Services>>,
    pods: Mutex<HashMap<String, PodRecord>>,
    /// Bumped whenever a pod's state changes.
    pods_changed: watch::Sender<u64>,
}

struct PodRecord {
    uid: String,
    state: PodState,
    _worker: AbortOnDrop,
}

#[derive(Clone)]
enum PodState {
    Pending(String),
    Mounted(Arc<MountedPod>),
}

/// A pod whose volumes are in place on this host.
#[derive(Debug)]
pub struct MountedPod {
    /// The pod as kubelet-lite first saw it (after admission).
    pub pod: Pod,
    /// Host directory of each volume.
    pub volumes: BTreeMap<String, PathBuf>,
    services: Arc<Mutex<Services>>,
}

/// `(host, port)` of a Service → the local listener behind it.
type Services = HashMap<(String, u16), SocketAddr>;

impl Kubelet {
    /// Starts the watches; volumes go under `root` (created with mode 0700: it holds keys and
    /// tokens).
    pub async fn start(client: kube::Client, root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", root.display()))?;
        let (secrets, secrets_writer) = reflector::store();
        let (configmaps, configmaps_writer) = reflector::store();
        let inner = Arc::new(Inner {
            client: client.clone(),
            root: root.to_path_buf(),
            secrets,
            configmaps,
            objects_changed: watch::Sender::new(0),
            services: Arc::default(),
            pods: Mutex::default(),
            pods_changed: watch::Sender::new(0),
        });
        let tasks = vec![
            AbortOnDrop::spawn(follow(
                inner.clone(),
                reflector::reflector(
                    secrets_writer,
                    watcher(Api::<Secret>::all(client.clone()), watcher::Config::default()).default_backoff(),
                ),
            )),
            AbortOnDrop::spawn(follow(
                inner.clone(),
                reflector::reflector(
                    configmaps_writer,
                    watcher(Api::<ConfigMap>::all(client), watcher::Config::default()).default_backoff(),
                ),
            )),
            AbortOnDrop::spawn(watch_pods(inner.clone())),
        ];
        Ok(Self { inner, _tasks: tasks })
    }

    /// Routes `http(s)://host[:port]` in container environments to `addr` (port 443 for https
    /// URLs without a port).
    pub fn set_service(&self, host: &str, port: u16, addr: SocketAddr) {
        self.inner.services.lock().insert((host.to_owned(), port), addr);
    }

    /// Waits until the pod's volumes are in place; fails after `timeout` with the reason it is
    /// still pending.
    pub async fn wait_pod(&self, namespace: &str, name: &str, timeout: Duration) -> Result<Arc<MountedPod>> {
        let key = format!("{namespace}/{name}");
        let mut changed = self.inner.pods_changed.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.inner.pods.lock().get(&key).map(|r| r.state.clone());
            match state {
                Some(PodState::Mounted(m)) => return Ok(m),
                Some(PodState::Pending(why)) if Instant::now() >= deadline => {
                    bail!("kubelet-lite: the volumes of pod {key} are not ready after {timeout:?}: {why}")
                }
                None if Instant::now() >= deadline => {
                    bail!("kubelet-lite: pod {key} was not seen within {timeout:?}")
                }
                _ => {}
            }
            let _ = tokio::time::timeout_at(deadline, changed.changed()).await;
        }
    }
}

async fn follow<K, S>(inner: Arc<Inner>, stream: S)
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        if event.is_ok() {
            inner.objects_changed.send_modify(|n| *n += 1);
        }
    }
}

async fn watch_pods(inner: Arc<Inner>) {
    let stream = watcher(Api::<Pod>::all(inner.client.clone()), watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut listed: Vec<String> = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(pod)) => {
                listed.push(pod_key(&pod));
                ensure_pod(&inner, pod);
            }
            Ok(watcher::Event::InitDone) => {
                let gone: Vec<String> = inner
                    .pods
                    .lock()
                    .keys()
                    .filter(|k| !listed.contains(k))
                    .cloned()
                    .collect();
                for key in gone {
                    remove_pod(&inner, &key);
                }
            }
            Ok(watcher::Event::Apply(pod)) => ensure_pod(&inner, pod),
            Ok(watcher::Event::Delete(pod)) => remove_pod(&inner, &pod_key(&pod)),
            Err(_) => {}
        }
    }
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn ensure_pod(inner: &Arc<Inner>, pod: Pod) {
    let key = pod_key(&pod);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        remove_pod(inner, &key);
        return;
    }
    let mut pods = inner.pods.lock();
    if pods.get(&key).is_some_and(|r| r.uid == uid) {
        return;
    }
    if pods.remove(&key).is_some() {
        let _ = std::fs::remove_dir_all(inner.root.join(&key));
    }
    let worker = AbortOnDrop::spawn(run_pod(inner.clone(), key.clone(), pod));
    pods.insert(
        key,
        PodRecord {
            uid,
            state: PodState::Pending("starting".into()),
            _worker: worker,
        },
    );
    drop(pods);
    inner.pods_changed.send_modify(|n| *n += 1);
}

fn remove_pod(inner: &Inner, key: &str) {
    if inner.pods.lock().remove(key).is_some() {
        let _ = std::fs::remove_dir_all(inner.root.join(key));
        inner.pods_changed.send_modify(|n| *n += 1);
    }
}

fn set_state(inner: &Inner, key: &str, state: PodState) {
    if let Some(record) = inner.pods.lock().get_mut(key) {
        record.state = state;
    }
    inner.pods_changed.send_modify(|n| *n += 1);
}

/// A token kubelet-lite requested, and when to request the next one.
struct IssuedToken {
    token: String,
    refresh_at: Instant,
}

async fn run_pod(inner: Arc<Inner>, key: String, pod: Pod) {
    let dir = inner.root.join(&key);
    let mut tokens: HashMap<(String, String), IssuedToken> = HashMap::new();
    let mut objects = inner.objects_changed.subscribe();
    let _ = inner.secrets.wait_until_ready().await;
    let _ = inner.configmaps.wait_until_ready().await;
    loop {
        objects.mark_unchanged();
        let retry = match sync_pod(&inner, &pod, &dir, &mut tokens).await {
            Ok(volumes) => {
                let services = inner.services.clone();
                set_state(
                    &inner,
                    &key,
                    PodState::Mounted(Arc::new(MountedPod {
                        pod: pod.clone(),
                        volumes,
                        services,
                    })),
                );
                Duration::from_secs(60)
            }
            Err(e) => {
                set_state(&inner, &key, PodState::Pending(format!("{e:#}")));
                Duration::from_millis(500)
            }
        };
        let mut wake = Instant::now() + retry;
        if let Some(refresh) = tokens.values().map(|t| t.refresh_at).min() {
            wake = wake.min(refresh);
        }
        tokio::select! {
            _ = objects.changed() => {}
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}

async fn sync_pod(
    inner: &Inner,
    pod: &Pod,
    dir: &Path,
    tokens: &mut HashMap<(String, String), IssuedToken>,
) -> Result<BTreeMap<String, PathBuf>> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let spec = pod.spec.as_ref().ok_or_else(|| anyhow!("the pod has no spec"))?;
    let mut volumes = BTreeMap::new();
    for volume in spec.volumes.iter().flatten() {
        let vdir = dir.join("volumes").join(&volume.name);
        let payload = volume_payload(inner, pod, namespace, volume, tokens)
            .await
            .with_context(|| format!("volume {:?}", volume.name))?;
        match payload {
            Some(payload) => {
                write_payload(&vdir, &payload)?;
            }
            None => std::fs::create_dir_all(&vdir).with_context(|| format!("creating {}", vdir.display()))?,
        }
        volumes.insert(volume.name.clone(), vdir);
    }
    Ok(volumes)
}

/// The files of a volume, or `None` for an `emptyDir`.
async fn volume_payload(
    inner: &Inner,
    pod: &Pod,
    namespace: &str,
    volume: &Volume,
    tokens: &mut HashMap<(String, String), IssuedToken>,
) -> Result<Option<Payload>> {
    if volume.empty_dir.is_some() {
        return Ok(None);
    }
    let mut payload = Payload::new();
    if let Some(source) = &volume.secret {
        let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        let name = source.secret_name.as_deref().unwrap_or_default();
        secret_files(
            inner,
            namespace,
            name,
            source.items.as_deref(),
            source.optional,
            mode,
            &mut payload,
        )?;
    } else if let Some(source) = &volume.config_map {
        let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        configmap_files(
            inner,
            namespace,
            &source.name,
            source.items.as_deref(),
            source.optional,
            mode,
            &mut payload,
        )?;
    } else if let Some(projected) = &volume.projected {
        let mode = projected.default_mode.unwrap_or(DEFAULT_MODE);
        for source in projected.sources.iter().flatten() {
            if let Some(SecretProjection {
                name,
                items,
                optional,
            }) = &source.secret
            {
                secret_files(
                    inner,
                    namespace,
                    name,
                    items.as_deref(),
                    *optional,
                    mode,
                    &mut payload,
                )?;
            } else if let Some(ConfigMapProjection {
                name,
                items,
                optional,
            }) = &source.config_map
            {
                configmap_files(
                    inner,
                    namespace,
                    name,
                    items.as_deref(),
                    *optional,
                    mode,
                    &mut payload,
                )?;
            } else if let Some(sat) = &source.service_account_token {
                let token = service_account_token(inner, pod, &volume.name, sat, tokens).await?;
                payload.insert(
                    sat.path.clone(),
                    FileData {
                        data: token.into_bytes(),
                        mode: mode_bits(mode),
                    },
                );
            } else {
                bail!(
                    "kubelet-lite supports projected secret, configMap and serviceAccountToken sources only"
                );
            }
        }
    } else {
        bail!("kubelet-lite supports secret, configMap, projected and emptyDir volumes only");
    }
    Ok(Some(payload))
}

fn mode_bits(mode: i32) -> u32 {
    u32::try_from(mode).unwrap_or(0o644) & 0o777
}

fn select(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: i32,
    what: &str,
    payload: &mut Payload,
) -> Result<()> {
    match items {
        None => {
            for (key, data) in data {
                payload.insert(
                    key,
                    FileData {
                        data,
                        mode: mode_bits(mode),
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let data = data
                    .get(&item.key)
                    .ok_or_else(|| anyhow!("{what} has no key {:?}", item.key))?
                    .clone();
                payload.insert(
                    item.path.clone(),
                    FileData {
                        data,
                        mode: mode_bits(item.mode.unwrap_or(mode)),
                    },
                );
            }
        }
    }
    Ok(())
}

fn secret_files(
    inner: &Inner,
    namespace: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: i32,
    payload: &mut Payload,
) -> Result<()> {
    let what = format!("Secret {namespace}/{name}");
    let Some(secret) = inner.secrets.get(&ObjectRef::new(name).within(namespace)) else {
        if optional == Some(true) {
            return Ok(());
        }
        bail!("waiting for {what}");
    };
    let data = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    select(data, items, mode, &what, payload)
}

fn configmap_files(
    inner: &Inner,
    namespace: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: i32,
    payload: &mut Payload,
) -> Result<()> {
    let what = format!("ConfigMap {namespace}/{name}");
    let Some(cm) = inner.configmaps.get(&ObjectRef::new(name).within(namespace)) else {
        if optional == Some(true) {
            return Ok(());
        }
        bail!("waiting for {what}");
    };
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    data.extend(
        cm.binary_data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0)),
    );
    select(data, items, mode, &what, payload)
}

async fn service_account_token(
    inner: &Inner,
    pod: &Pod,
    volume: &str,
    source: &ServiceAccountTokenProjection,
    tokens: &mut HashMap<(String, String), IssuedToken>,
) -> Result<String> {
    let key = (volume.to_owned(), source.path.clone());
    if let Some(t) = tokens.get(&key).filter(|t| Instant::now() < t.refresh_at) {
        return Ok(t.token.clone());
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let seconds = source.expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: source.audience.clone().map(|a| vec![a]),
            expiration_seconds: Some(seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name),
                uid: pod.metadata.uid.clone(),
            }),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(inner.client.clone(), namespace);
    let issued_at = Instant::now();
    let answer = api
        .create_token_request(&sa, &PostParams::default(), &request)
        .await
        .with_context(|| format!("TokenRequest for service account {namespace}/{sa}"))?;
    let status = answer
        .status
        .ok_or_else(|| anyhow!("the TokenRequest for {namespace}/{sa} has no status"))?;
    let token = status
        .token
        .ok_or_else(|| anyhow!("the TokenRequest for {namespace}/{sa} returned no token"))?;
    let expires = status
        .expiration_timestamp
        .ok_or_else(|| anyhow!("the TokenRequest for {namespace}/{sa} returned no expirationTimestamp"))?;
    let lifetime = (expires.0 - jiff::Timestamp::now()).get_seconds().max(0);
    let lifetime = Duration::from_secs(u64::try_from(lifetime).unwrap_or(0));
    let refresh_at = issued_at + refresh_after(lifetime);
    tokens.insert(
        key,
        IssuedToken {
            token: token.clone(),
            refresh_at,
        },
    );
    Ok(token)
}

/// When kubelet requests a projected token again: at 80 % of its lifetime, and at least daily.
fn refresh_after(lifetime: Duration) -> Duration {
    lifetime.mul_f64(0.8).min(Duration::from_secs(24 * 3600))
}

impl MountedPod {
    fn container(&self, name: &str) -> Result<&Container> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .find(|c| c.name == name)
            })
            .ok_or_else(|| anyhow!("pod {} has no container {name:?}", pod_key(&self.pod)))
    }

    /// Where `path`, as the container sees it, is on this host (through its volume mounts).
    pub fn host_path(&self, container: &str, path: &str) -> Result<PathBuf> {
        let c = self.container(container)?;
        self.map_path(c, path)
            .ok_or_else(|| anyhow!("{path} is not under a volume mount of container {container:?}"))
    }

    fn map_path(&self, c: &Container, path: &str) -> Option<PathBuf> {
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .filter(|m| {
                path == m.mount_path || path.starts_with(&format!("{}/", m.mount_path.trim_end_matches('/')))
            })
            .max_by_key(|m| m.mount_path.len())?;
        let mut host = self.volumes.get(&mount.name)?.clone();
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            host.push(sub);
        }
        let rest = path[mount.mount_path.trim_end_matches('/').len()..].trim_start_matches('/');
        if !rest.is_empty() {
            host.push(rest);
        }
        Some(host)
    }

    fn map_url(&self, value: &str) -> Option<String> {
        let mut url = url::Url::parse(value).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        let key = (url.host_str()?.to_owned(), url.port_or_known_default()?);
        let addr = *self.services.lock().get(&key)?;
        url.set_ip_host(addr.ip()).ok()?;
        url.set_port(Some(addr.port())).ok()?;
        let mut out = url.to_string();
        if !value.ends_with('/') && url.path() == "/" && url.query().is_none() {
            out.pop();
        }
        Some(out)
    }

    /// The container's environment (plain values and the pod's own fields), with paths under
    /// volume mounts and Service URLs rewritten for this host.
    pub fn env(&self, container: &str) -> Result<Vec<(String, String)>> {
        let c = self.container(container)?;
        let mut out = Vec::new();
        for var in c.env.iter().flatten() {
            let value = match (&var.value, &var.value_from) {
                (Some(v), _) => v.clone(),
                (None, Some(from)) => match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                    Some("metadata.name") => self.pod.metadata.name.clone().unwrap_or_default(),
                    Some("metadata.namespace") => self.pod.metadata.namespace.clone().unwrap_or_default(),
                    Some("spec.serviceAccountName") => self
                        .pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.service_account_name.clone())
                        .unwrap_or_default(),
                    _ => continue,
                },
                (None, None) => String::new(),
            };
            let value = self
                .map_path(c, &value)
                .map(|p| p.display().to_string())
                .or_else(|| self.map_url(&value))
                .unwrap_or(value);
            out.push((var.name.clone(), value));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A pod as the idbind webhook leaves it (abridged).
    fn mutated_pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "workload", "namespace": "apps", "uid": "u1"},
            "spec": {
                "serviceAccountName": "workload",
                "containers": [{
                    "name": "app",
                    "env": [
                        {"name": "AZURE_FEDERATED_TOKEN_FILE", "value": "/var/run/secrets/azure/wi/token/azure-identity-token"},
                        {"name": "AZURE_KUBERNETES_CA_FILE", "value": "/var/run/secrets/azure/wi/ca-cert/ca.crt"},
                        {"name": "AZURE_KUBERNETES_TOKEN_PROXY", "value": "https://idbind-proxy.idbind.svc"},
                        {"name": "AZURE_AUTHORITY_HOST", "value": "https://login.microsoftonline.com/"},
                        {"name": "OTHER_URL", "value": "https://idbind-proxy.idbind.svc:8443/x"},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "NOT_A_MOUNT", "value": "/var/run/secrets/azure/wizard"}
                    ],
                    "volumeMounts": [
                        {"name": "wi", "mountPath": "/var/run/secrets/azure/wi", "readOnly": true},
                        {"name": "sub", "mountPath": "/etc/sub", "subPath": "inner"}
                    ]
                }],
                "volumes": [{"name": "wi"}, {"name": "sub"}]
            }
        }))
        .unwrap()
    }

    fn mounted(services: Services) -> MountedPod {
        MountedPod {
            pod: mutated_pod(),
            volumes: BTreeMap::from([
                (
                    "wi".to_owned(),
                    PathBuf::from("/host/pods/apps/workload/volumes/wi"),
                ),
                ("sub".to_owned(), PathBuf::from("/host/sub")),
            ]),
            services: Arc::new(Mutex::new(services)),
        }
    }

    #[test]
    fn env_paths_and_service_urls_are_rewritten_for_this_host() {
        let addr: SocketAddr = "127.0.0.1:43893".parse().unwrap();
        let pod = mounted(HashMap::from([(
            ("idbind-proxy.idbind.svc".to_owned(), 443),
            addr,
        )]));
        let env: BTreeMap<String, String> = pod.env("app").unwrap().into_iter().collect();
        assert_eq!(
            env["AZURE_FEDERATED_TOKEN_FILE"],
            "/host/pods/apps/workload/volumes/wi/token/azure-identity-token"
        );
        assert_eq!(
            env["AZURE_KUBERNETES_CA_FILE"],
            "/host/pods/apps/workload/volumes/wi/ca-cert/ca.crt"
        );
        // No trailing slash added: SDKs join paths onto it.
        assert_eq!(env["AZURE_KUBERNETES_TOKEN_PROXY"], "https://127.0.0.1:43893");
        // Unknown hosts and other ports are left alone.
        assert_eq!(env["AZURE_AUTHORITY_HOST"], "https://login.microsoftonline.com/");
        assert_eq!(env["OTHER_URL"], "https://idbind-proxy.idbind.svc:8443/x");
        assert_eq!(env["POD_NAME"], "workload");
        // A sibling of a mount path is not under it.
        assert_eq!(env["NOT_A_MOUNT"], "/var/run/secrets/azure/wizard");
    }

    #[test]
    fn host_paths_follow_mounts_and_sub_paths() {
        let pod = mounted(HashMap::new());
        assert_eq!(
            pod.host_path("app", "/etc/sub/file").unwrap(),
            PathBuf::from("/host/sub/inner/file")
        );
        assert_eq!(
            pod.host_path("app", "/var/run/secrets/azure/wi").unwrap(),
            PathBuf::from("/host/pods/apps/workload/volumes/wi")
        );
        assert!(pod.host_path("app", "/etc/other").is_err());
        assert!(pod.host_path("nope", "/etc/sub").is_err());
    }

    #[test]
    fn tokens_are_refreshed_at_80_percent_of_their_lifetime_and_at_least_daily() {
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(2880)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(7 * 86_400)),
            Duration::from_secs(86_400)
        );
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn items_select_and_rename_keys_and_modes() {
        let data = BTreeMap::from([
            ("ca.crt".to_owned(), b"PEM".to_vec()),
            ("other".to_owned(), b"x".to_vec()),
        ]);
        let mut payload = Payload::new();
        let items = [KeyToPath {
            key: "ca.crt".into(),
            path: "ca-cert/ca.crt".into(),
            mode: Some(0o400),
            ..Default::default()
        }];
        select(
            data.clone(),
            Some(&items),
            0o644,
            "ConfigMap apps/x",
            &mut payload,
        )
        .unwrap();
        assert_eq!(payload.len(), 1);
        assert_eq!(
            payload["ca-cert/ca.crt"],
            FileData {
                data: b"PEM".to_vec(),
                mode: 0o400
            }
        );

        let mut all = Payload::new();
        select(data.clone(), None, 0o600, "ConfigMap apps/x", &mut all).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all["other"].mode, 0o600);

        let missing = [KeyToPath {
            key: "nope".into(),
            path: "p".into(),
            ..Default::default()
        }];
        let err = select(
            data,
            Some(&missing),
            0o644,
            "ConfigMap apps/x",
            &mut Payload::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("ConfigMap apps/x has no key \"nope\""),
            "{err}"
        );
    }
}
