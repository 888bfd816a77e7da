//! Writing kubeconfig files for the emulator.

use std::path::Path;

use base64::Engine as _;

use crate::error::{Error, Result};

/// The cluster and context name used in written kubeconfigs.
pub const CLUSTER_NAME: &str = "idbind-emulator";

/// A kubeconfig for `server` (with the CA, when HTTPS) authenticating as `user` with `token`.
pub fn render(server: &str, ca_pem: Option<&str>, user: &str, token: &str, namespace: &str) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string());
    let ca = ca_pem
        .map(|pem| {
            format!(
                "\n    certificate-authority-data: {}",
                base64::engine::general_purpose::STANDARD.encode(pem.as_bytes())
            )
        })
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}{ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: {user}\n    namespace: {namespace}\ncurrent-context: {cluster}\npreferences: {{}}\n",
        cluster = CLUSTER_NAME,
        server = q(server),
        user = q(user),
        token = q(token),
        namespace = q(namespace),
    )
}

/// Writes a kubeconfig file (mode 0600 on Unix: it holds a bearer token).
pub fn write(path: &Path, contents: &str) -> Result<()> {
    let io = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, contents).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_parses_with_kube() {
        let text = render(
            "https://127.0.0.1:6443",
            Some("-----BEGIN CERTIFICATE-----\n"),
            "admin",
            "tok",
            "default",
        );
        let parsed = kube::config::Kubeconfig::from_yaml(&text);
        assert!(parsed.is_ok(), "{parsed:?}");
        let parsed = parsed.unwrap_or_default();
        assert_eq!(parsed.current_context.as_deref(), Some(CLUSTER_NAME));
        assert_eq!(
            parsed.clusters[0]
                .cluster
                .as_ref()
                .and_then(|c| c.server.clone())
                .as_deref(),
            Some("https://127.0.0.1:6443")
        );
    }
}
