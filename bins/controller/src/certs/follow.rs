//! Following one Secret through the API (every replica, leader or not): the webhook server takes
//! its certificate from it, and `--proxy-tls-export-dir` mirrors it into files the way kubelet
//! mounts a Secret (for a proxy running outside Kubernetes, as in the sandbox).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

/// Calls `on_change` with the Secret's `data` each time it is created or changed, until
/// `shutdown`. A deleted Secret is not reported: whoever follows it keeps what it has.
pub async fn follow_secret<F>(
    client: kube::Client,
    namespace: &str,
    name: &str,
    shutdown: CancellationToken,
    mut on_change: F,
) where
    F: FnMut(&BTreeMap<String, Vec<u8>>) + Send,
{
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api, config).default_backoff().applied_objects();
    futures::pin_mut!(stream);
    let mut last: Option<BTreeMap<String, Vec<u8>>> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            next = stream.next() => match next {
                None => return,
                Some(Ok(secret)) => {
                    if secret.metadata.name.as_deref() != Some(name) {
                        continue;
                    }
                    let data: BTreeMap<String, Vec<u8>> =
                        secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                    if last.as_ref() != Some(&data) {
                        on_change(&data);
                        last = Some(data);
                    }
                }
                Some(Err(e)) => tracing::debug!(secret = %format!("{namespace}/{name}"), error = %e, "Secret watch error"),
            }
        }
    }
}

/// Mirrors the entries `keys` of a Secret's `data` into files of `dir`, each replaced atomically
/// (write a temporary file, then rename); `*.key` files are readable by the owner only.
pub fn write_entries(dir: &Path, data: &BTreeMap<String, Vec<u8>>, keys: &[&str]) -> std::io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let mut changed = false;
    for key in keys {
        let Some(value) = data.get(*key) else { continue };
        let path = dir.join(key);
        if std::fs::read(&path).ok().as_deref() == Some(value.as_slice()) {
            continue;
        }
        let tmp: PathBuf = dir.join(format!(".{key}.tmp"));
        std::fs::write(&tmp, value)?;
        #[cfg(unix)]
        if key.ends_with(".key") {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        }
        std::fs::rename(&tmp, &path)?;
        changed = true;
    }
    Ok(changed)
}

/// Mirrors `tls.crt`, `tls.key` and `ca.crt` of Secret `namespace/name` into `dir` until
/// `shutdown`.
pub async fn export_tls_secret(
    client: kube::Client,
    namespace: String,
    name: String,
    dir: PathBuf,
    shutdown: CancellationToken,
) {
    let keys = [
        super::proxy::BUNDLE_KEY,
        super::proxy::TLS_CERT_KEY,
        super::proxy::TLS_KEY_KEY,
    ];
    follow_secret(client, &namespace, &name, shutdown, |data| match write_entries(&dir, data, &keys) {
        Ok(true) => tracing::info!(dir = %dir.display(), secret = %format!("{namespace}/{name}"), "exported TLS files"),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "could not export TLS files");
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn entries_are_written_once_and_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = BTreeMap::from([
            ("tls.crt".to_owned(), b"a".to_vec()),
            ("tls.key".to_owned(), b"k".to_vec()),
        ]);
        assert!(write_entries(dir.path(), &data, &["tls.crt", "tls.key", "ca.crt"]).unwrap());
        assert!(!write_entries(dir.path(), &data, &["tls.crt", "tls.key", "ca.crt"]).unwrap());
        data.insert("tls.crt".into(), b"b".to_vec());
        assert!(write_entries(dir.path(), &data, &["tls.crt"]).unwrap());
        assert_eq!(std::fs::read(dir.path().join("tls.crt")).unwrap(), b"b");
        assert!(!dir.path().join("ca.crt").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("tls.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
