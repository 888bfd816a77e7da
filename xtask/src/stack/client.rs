//! Token requests exactly as a pod's SDK makes them, from the pod's `AZURE_*` environment, and
//! what the scenarios look at in the answers (claims, never the token itself).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;

use crate::tools;
use crate::util;

/// The variables the webhook injects, in the order `env.sh` lists them.
pub const AZURE_VARS: [&str; 7] = [
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "AZURE_KUBERNETES_TOKEN_PROXY",
    "AZURE_KUBERNETES_SNI_NAME",
    "AZURE_KUBERNETES_CA_FILE",
];

/// The Python script that gets a token with azure-identity and prints its claims.
pub const PYTHON_SCRIPT: &str = "tests/python/token_claims.py";

/// A pod's `AZURE_*` environment, as seen from this host.
#[derive(Clone, Debug, Default)]
pub struct PodEnv(pub BTreeMap<String, String>);

impl PodEnv {
    /// Keeps the `AZURE_*` variables of a container environment; fails if one is missing.
    pub fn from_container(env: &[(String, String)]) -> Result<Self> {
        let vars: BTreeMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("AZURE_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let missing: Vec<&str> = AZURE_VARS
            .iter()
            .copied()
            .filter(|v| !vars.contains_key(*v))
            .collect();
        if !missing.is_empty() {
            bail!(
                "the webhook did not inject {} (is the webhook running and the pod labelled?)",
                missing.join(", ")
            );
        }
        Ok(Self(vars))
    }

    /// One variable.
    pub fn get(&self, name: &str) -> Result<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("{name} is not set"))
    }
}

/// A secret string whose `Debug` does not show it.
#[derive(Clone)]
pub struct Sensitive(pub String);

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The outcome of a token request.
#[derive(Clone, Debug)]
pub enum TokenOutcome {
    /// A token: its decoded claims and `expires_in`.
    Token {
        /// The access token's claims.
        claims: serde_json::Value,
        /// Seconds left.
        expires_in: i64,
        /// The token itself (never printed).
        token: Sensitive,
    },
    /// An error answer.
    Refused {
        /// HTTP status.
        status: u16,
        /// The (Entra-shaped) JSON body.
        body: serde_json::Value,
    },
}

impl TokenOutcome {
    /// The claims, or an error describing the refusal.
    pub fn claims(&self) -> Result<&serde_json::Value> {
        match self {
            Self::Token { claims, .. } => Ok(claims),
            Self::Refused { status, body } => Err(anyhow!("the proxy refused: {status} {body}")),
        }
    }
}

/// POSTs the Entra client-credentials form to `AZURE_KUBERNETES_TOKEN_PROXY` like the Azure
/// SDKs in proxy mode: path `/{tenant}/oauth2/v2.0/token`, TLS server name
/// `AZURE_KUBERNETES_SNI_NAME`, trust only `AZURE_KUBERNETES_CA_FILE`, the token file's contents
/// as `client_assertion` (read afresh on every call, as the SDKs do).
pub async fn request_token(env: &PodEnv, scope: &str) -> Result<TokenOutcome> {
    let proxy =
        url::Url::parse(env.get("AZURE_KUBERNETES_TOKEN_PROXY")?).context("AZURE_KUBERNETES_TOKEN_PROXY")?;
    if proxy.scheme() != "https" {
        bail!("AZURE_KUBERNETES_TOKEN_PROXY must be https, got {proxy}");
    }
    let host = proxy
        .host_str()
        .ok_or_else(|| anyhow!("AZURE_KUBERNETES_TOKEN_PROXY has no host"))?
        .to_owned();
    let port = proxy.port_or_known_default().unwrap_or(443);
    let addr: SocketAddr =
        tokio::net::lookup_host((host.trim_start_matches('[').trim_end_matches(']'), port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .ok_or_else(|| anyhow!("{host} has no address"))?;
    let sni = env
        .0
        .get("AZURE_KUBERNETES_SNI_NAME")
        .cloned()
        .unwrap_or_else(|| host.clone());
    let ca_file = env.get("AZURE_KUBERNETES_CA_FILE")?;
    let ca = std::fs::read(ca_file).with_context(|| format!("reading AZURE_KUBERNETES_CA_FILE {ca_file}"))?;
    let certs = reqwest::Certificate::from_pem_bundle(&ca).with_context(|| format!("parsing {ca_file}"))?;
    let token_file = env.get("AZURE_FEDERATED_TOKEN_FILE")?;
    let assertion = std::fs::read_to_string(token_file)
        .with_context(|| format!("reading AZURE_FEDERATED_TOKEN_FILE {token_file}"))?;
    let http = reqwest::Client::builder()
        .tls_certs_only(certs)
        .resolve(&sni, addr)
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the proxy client")?;
    let tenant = env.get("AZURE_TENANT_ID")?;
    let url = format!("https://{sni}:{port}/{tenant}/oauth2/v2.0/token");
    let resp = http
        .post(&url)
        .form(&[
            ("client_assertion", assertion.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_id", env.get("AZURE_CLIENT_ID")?),
            ("grant_type", "client_credentials"),
            ("scope", scope),
        ])
        .send()
        .await
        .with_context(|| format!("POST {url} (to {addr})"))?;
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .with_context(|| format!("reading the answer of POST {url}"))?;
    let body: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("the proxy answered {status} with non-JSON {text:?}"))?;
    if status != 200 {
        return Ok(TokenOutcome::Refused { status, body });
    }
    let token = body["access_token"]
        .as_str()
        .ok_or_else(|| anyhow!("200 without access_token: {}", redact(&body)))?;
    let expires_in = body["expires_in"]
        .as_i64()
        .ok_or_else(|| anyhow!("expires_in is not an integer: {}", redact(&body)))?;
    Ok(TokenOutcome::Token {
        claims: claims(token)?,
        expires_in,
        token: Sensitive(token.to_owned()),
    })
}

fn redact(body: &serde_json::Value) -> serde_json::Value {
    let mut shown = body.clone();
    if shown.get("access_token").is_some() {
        shown["access_token"] = "<redacted>".into();
    }
    shown
}

/// The payload of a JWT, decoded but not verified.
pub fn claims(jwt: &str) -> Result<serde_json::Value> {
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| anyhow!("the token is not a JWT"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .context("the token's payload is not base64url")?;
    serde_json::from_slice(&bytes).context("the token's payload is not JSON")
}

/// What the Python SDK run produced.
#[derive(Clone, Debug)]
pub enum PythonOutcome {
    /// azure-identity got a token; its claims.
    Token(serde_json::Value),
    /// azure-identity raised; its message.
    Error(String),
}

/// The virtualenv's python with azure-identity, installing it if needed. `Err` says why it is
/// unavailable.
pub fn python() -> Result<PathBuf> {
    tools::ensure_python().context("installing the Python test tools into .tools/venv")?;
    Ok(tools::venv_python())
}

/// Runs [`PYTHON_SCRIPT`] with exactly the pod's `AZURE_*` environment (plus PATH, HOME and a
/// loopback `NO_PROXY`).
pub async fn python_token(python: &Path, env: &PodEnv, scope: &str) -> Result<PythonOutcome> {
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(util::root().join(PYTHON_SCRIPT)).arg(scope).env_clear();
    for keep in ["PATH", "HOME", "LANG", "TMPDIR"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .envs(&env.0)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .map_err(|_| anyhow!("{PYTHON_SCRIPT} did not finish within 120 s"))?
        .with_context(|| format!("running {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default();
    let parsed: serde_json::Value = serde_json::from_str(line).map_err(|_| {
        anyhow!(
            "{PYTHON_SCRIPT} printed no result ({}):\n{}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if parsed["ok"] == true {
        Ok(PythonOutcome::Token(parsed["claims"].clone()))
    } else {
        Ok(PythonOutcome::Error(
            parsed["error"].as_str().unwrap_or_default().to_owned(),
        ))
    }
}

/// Verifies an Entra token's RS256 signature against a JWKS document; returns the key id used.
pub fn verify_signature(token: &str, jwks: &serde_json::Value) -> Result<String> {
    let header = jsonwebtoken::decode_header(token).context("the token's header")?;
    let kid = header.kid.ok_or_else(|| anyhow!("the token has no kid"))?;
    let key = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
        .ok_or_else(|| anyhow!("the token's kid {kid} is not in the issuer's JWKS"))?;
    let (n, e) = (
        key["n"].as_str().unwrap_or_default(),
        key["e"].as_str().unwrap_or_default(),
    );
    let decoding = jsonwebtoken::DecodingKey::from_rsa_components(n, e).context("the JWKS key")?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<serde_json::Value>(token, &decoding, &validation)
        .with_context(|| format!("verifying the token's signature with key {kid}"))?;
    Ok(kid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn claims_are_decoded_from_base64url_without_padding() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"appid":"a?b>","exp":5}"#);
        let claims = claims(&format!("eyJhbGciOiJub25lIn0.{payload}.sig")).unwrap();
        assert_eq!(claims["appid"], "a?b>");
        assert!(super::claims("not-a-jwt").is_err());
        assert!(super::claims("a.!!!.c").is_err());
    }

    #[test]
    fn a_pod_env_needs_every_injected_variable() {
        let mut env: Vec<(String, String)> = AZURE_VARS
            .iter()
            .map(|v| ((*v).to_owned(), "x".to_owned()))
            .collect();
        env.push(("PATH".into(), "/bin".into()));
        let pod = PodEnv::from_container(&env).unwrap();
        assert_eq!(pod.0.len(), AZURE_VARS.len());
        env.retain(|(k, _)| k != "AZURE_KUBERNETES_SNI_NAME" && k != "AZURE_TENANT_ID");
        let err = PodEnv::from_container(&env).unwrap_err().to_string();
        assert!(
            err.contains("AZURE_TENANT_ID, AZURE_KUBERNETES_SNI_NAME"),
            "{err}"
        );
    }

    #[test]
    fn sensitive_values_do_not_show_in_debug() {
        let outcome = TokenOutcome::Token {
            claims: serde_json::json!({}),
            expires_in: 1,
            token: Sensitive("eyJ.secret.sig".into()),
        };
        assert!(!format!("{outcome:?}").contains("secret"));
        assert_eq!(
            redact(&serde_json::json!({"access_token": "t", "x": 1}))["access_token"],
            "<redacted>"
        );
    }
}
