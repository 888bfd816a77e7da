//! The sandbox's report, `env.sh` and the Python snippet it suggests.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;

use super::{BINDING, Demo, NAMESPACE, POD, SCOPE, SERVICE_ACCOUNT};
use crate::stack::azure::EmulatorInfo;
use crate::stack::client::{AZURE_VARS, PodEnv, PythonOutcome};
use crate::stack::cluster::{Cluster, SNI_NAME};
use crate::{tools, util};

/// What the snippet prints when it got a token.
pub const SNIPPET_SUCCESS: &str = "got a token, expires_on";

/// What the report is made of.
pub struct Facts<'a> {
    /// The sandbox directory.
    pub dir: &'a Path,
    /// The Azure emulator.
    pub azure: &'a EmulatorInfo,
    /// The cluster.
    pub cluster: &'a Cluster,
    /// What the demonstration produced.
    pub demo: &'a Demo,
    /// Whether the sandbox keeps running after the report.
    pub running: bool,
    /// When the processes started (after the build).
    pub started: Instant,
    /// How long the build took.
    pub build: std::time::Duration,
}

/// `path` relative to the current directory when it is below it, else absolute.
pub fn shown(path: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    path.strip_prefix(&cwd)
        .map_or_else(|_| path.display().to_string(), |p| p.display().to_string())
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// `env.sh`: the pod's injected `AZURE_*` variables, with paths on this host.
pub fn env_sh(env: &PodEnv, pod: &str) -> String {
    let mut out = format!(
        "# Written by `cargo xtask sandbox`: the AZURE_* variables the idbind webhook injected into pod\n\
         # {pod}, with the paths of its projected volume on this machine. kubelet-lite keeps the token\n\
         # file fresh while the sandbox runs. Use: source env.sh\n"
    );
    for name in AZURE_VARS {
        if let Some(v) = env.0.get(name) {
            let _ = writeln!(out, "export {name}={}", quote(v));
        }
    }
    out
}

fn python_program() -> PathBuf {
    tools::venv_python()
}

/// The few lines a user runs to get a token with azure-identity from `env.sh`.
pub fn python_snippet(dir: &Path) -> Result<String> {
    let python = python_program();
    let python = if python.exists() {
        shown(&python)
    } else {
        "python3".to_owned()
    };
    Ok(format!(
        "source {env}\n{python} - <<'EOF'\nfrom azure.identity import WorkloadIdentityCredential\n\
         credential = WorkloadIdentityCredential(enable_azure_proxy=True)\n\
         token = credential.get_token(\"{SCOPE}\")\n\
         print(\"{SNIPPET_SUCCESS}\", token.expires_on)\nEOF\n",
        env = shown(&dir.join("env.sh")),
    ))
}

fn claim(claims: &serde_json::Value, name: &str) -> String {
    match &claims[name] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The report printed on stdout (and saved as `report.txt`).
pub fn render(f: &Facts<'_>) -> String {
    let mut o = String::new();
    let e = f.cluster.endpoints();
    let d = f.demo;
    let status = d.binding.status.clone().unwrap_or_default();
    let issuer = status.oidc_issuer_url.unwrap_or_default();
    let _ = writeln!(
        o,
        "\nidbind sandbox — up in {:.1}s (after a {:.0}s build)\n",
        f.started.elapsed().as_secs_f32(),
        f.build.as_secs_f32()
    );

    let _ = writeln!(o, "Processes (logs: {})", shown(&f.dir.join("logs")));
    let _ = writeln!(
        o,
        "  Azure emulator     {}  (Entra + ARM; tenant {})",
        f.azure.base_url, f.azure.tenant_id
    );
    let _ = writeln!(
        o,
        "  Kubernetes API     {}  (kubeconfig: {})",
        e.kube_api,
        shown(f.cluster.kubeconfig())
    );
    let _ = writeln!(o, "  idbind-controller  admin http://{}", e.controller_admin);
    let _ = writeln!(o, "                     issuer server {}", e.issuer_base_url);
    if let Some(url) = &e.webhook_url {
        let _ = writeln!(o, "                     admission webhook {url}");
    }
    let _ = writeln!(
        o,
        "  idbind-proxy       https://{}  (TLS name {SNI_NAME}), admin http://{}",
        e.proxy, e.proxy_admin
    );
    let _ = writeln!(
        o,
        "  kubelet-lite       pod volumes under {}",
        shown(&f.dir.join("pods"))
    );

    let _ = writeln!(o, "\nCreated");
    let _ = writeln!(o, "  managed identity   {}", d.identity.resource_id);
    let _ = writeln!(
        o,
        "                     client id {}, principal id {}",
        d.identity.client_id, d.identity.principal_id
    );
    let _ = writeln!(
        o,
        "  IdentityBinding    {BINDING}: Ready, allows {NAMESPACE}/{SERVICE_ACCOUNT}"
    );
    let _ = writeln!(
        o,
        "  pod                {NAMESPACE}/{POD}, service account {SERVICE_ACCOUNT}, mutated by the webhook"
    );

    let _ = writeln!(
        o,
        "\nFederated identity credential on the identity ({} in all)",
        d.fics.len()
    );
    for fic in &d.fics {
        let _ = writeln!(o, "  name      {}", fic.name);
        let _ = writeln!(o, "  issuer    {}", fic.issuer);
        let _ = writeln!(o, "  subject   {}", fic.subject);
        let _ = writeln!(o, "  audience  {}", fic.audiences.join(", "));
    }

    let _ = writeln!(o, "\nIssuer");
    let _ = writeln!(o, "  {}", idbind_model::discovery_url(&issuer));
    let _ = writeln!(o, "  {}", idbind_model::jwks_url(&issuer));
    let _ = writeln!(o, "  JWKS key ids: {}", d.kids.join(", "));

    let c = &d.claims;
    let exp = c["exp"]
        .as_i64()
        .and_then(|s| jiff::Timestamp::from_second(s).ok());
    let _ = writeln!(
        o,
        "\nToken exchange, as the pod's SDK makes it: POST {}/{}/oauth2/v2.0/token",
        d.env
            .0
            .get("AZURE_KUBERNETES_TOKEN_PROXY")
            .cloned()
            .unwrap_or_default(),
        d.identity.tenant_id
    );
    let _ = writeln!(
        o,
        "  (TLS name {SNI_NAME}, client_assertion = the pod's projected token, scope {SCOPE})"
    );
    let _ = writeln!(
        o,
        "  access token claims (signature verified with the emulator's key {}):",
        d.signed_by
    );
    let _ = writeln!(o, "    aud        {}", claim(c, "aud"));
    let _ = writeln!(
        o,
        "    appid      {}   (the identity's client id)",
        claim(c, "appid")
    );
    let _ = writeln!(o, "    oid        {}   (its principal id)", claim(c, "oid"));
    let _ = writeln!(o, "    tid        {}", claim(c, "tid"));
    let _ = writeln!(o, "    xms_mirid  {}", claim(c, "xms_mirid"));
    let _ = writeln!(
        o,
        "    exp        {}   (expires_in {} s)",
        exp.map_or_else(|| claim(c, "exp"), |t| t.to_string()),
        d.expires_in
    );
    match &d.python {
        Ok(PythonOutcome::Token(pc)) => {
            let _ = writeln!(
                o,
                "  Python azure-identity (WorkloadIdentityCredential(enable_azure_proxy=True)): token for appid {}",
                claim(pc, "appid")
            );
        }
        Ok(PythonOutcome::Error(e)) => {
            let _ = writeln!(o, "  Python azure-identity failed: {e}");
        }
        Err(e) => {
            let first = e.lines().next().unwrap_or_default();
            let _ = writeln!(o, "  Python azure-identity not run: {first}");
        }
    }

    let _ = writeln!(o, "\nTry it");
    let _ = writeln!(
        o,
        "  kubectl --kubeconfig {} get identitybindings",
        shown(f.cluster.kubeconfig())
    );
    let _ = writeln!(
        o,
        "  kubectl --kubeconfig {} get pods -A",
        shown(f.cluster.kubeconfig())
    );
    if let Ok(snippet) = python_snippet(f.dir) {
        for line in snippet.lines() {
            let _ = writeln!(o, "  {line}");
        }
    }
    let _ = writeln!(
        o,
        "  (env.sh sets the pod's AZURE_* variables; any Azure SDK with identity-binding support works)"
    );
    let _ = writeln!(
        o,
        "  Errors and their fixes: {}",
        shown(&util::root().join("docs/troubleshooting.md"))
    );
    if f.running {
        let _ = writeln!(
            o,
            "\nThe sandbox runs until Ctrl-C; then it stops everything it started."
        );
    }
    o
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn env_sh_exports_the_variables_shell_quoted() {
        let env = PodEnv(
            [
                ("AZURE_CLIENT_ID", "c"),
                ("AZURE_FEDERATED_TOKEN_FILE", "/tmp/it's here"),
                ("OTHER", "o"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        );
        let text = env_sh(&env, "apps/workload");
        assert!(text.contains("export AZURE_CLIENT_ID='c'\n"), "{text}");
        assert!(
            text.contains(r"export AZURE_FEDERATED_TOKEN_FILE='/tmp/it'\''s here'"),
            "{text}"
        );
        assert!(!text.contains("OTHER"), "{text}");
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("{text}\nprintf %s \"$AZURE_FEDERATED_TOKEN_FILE\""))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "/tmp/it's here");
    }
}
