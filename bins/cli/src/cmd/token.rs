//! `idbind token`: one token request through the proxy, as an SDK in proxy mode sends it.

use std::path::PathBuf;

use clap::Args;
use idbind_model::{ClientId, TenantId, env};
use serde_json::{Value, json};

use crate::exit::{Failure, Outcome};
use crate::output::OutputArgs;
use crate::proxy_client::{ProxyError, ProxyTarget};

/// Arguments of `idbind token`. Defaults come from the `AZURE_*` variables the webhook injects.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    # Inside a pod the webhook mutated: everything comes from the AZURE_* environment\n  \
    idbind token --scope https://vault.azure.net/.default\n\n  \
    # From outside, through a port-forward to the proxy\n  \
    idbind token --proxy https://127.0.0.1:8443 --sni-name idbind-proxy.idbind.svc --ca-file ca.crt \\\n    \
    --client-id <guid> --tenant-id <guid> --token-file token.jwt\n\n\
    The raw access token is printed only with --raw (and then alone, for scripts).")]
pub struct TokenArgs {
    /// Client id of the identity.
    #[arg(long, env = env::AZURE_CLIENT_ID, value_parser = ClientId::parse, value_name = "GUID")]
    pub client_id: ClientId,
    /// Tenant of the identity (the path `/{tenant}/oauth2/v2.0/token`; the proxy treats it as advisory).
    #[arg(long, env = env::AZURE_TENANT_ID, value_parser = TenantId::parse, value_name = "GUID")]
    pub tenant_id: Option<TenantId>,
    /// Scope to request.
    #[arg(
        long,
        default_value = "https://management.azure.com/.default",
        value_name = "SCOPE"
    )]
    pub scope: String,
    /// The service-account token to present (a projected token with audience `api://AKSIdentityBinding`).
    #[arg(long, env = env::AZURE_FEDERATED_TOKEN_FILE, value_name = "FILE")]
    pub token_file: PathBuf,
    /// The proxy: an `https://host[:port]` URL without a path.
    #[arg(long, env = env::AZURE_KUBERNETES_TOKEN_PROXY, value_name = "URL")]
    pub proxy: String,
    /// TLS name of the proxy (SNI and certificate check), when it differs from the URL host.
    #[arg(long, env = env::AZURE_KUBERNETES_SNI_NAME, value_name = "NAME")]
    pub sni_name: Option<String>,
    /// PEM file with the proxy's CA (replaces the system roots, as in the SDKs).
    #[arg(long, env = env::AZURE_KUBERNETES_CA_FILE, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Print the raw access token (alone) instead of its decoded claims.
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `idbind token`.
pub async fn run(args: TokenArgs) -> anyhow::Result<Outcome> {
    let assertion = std::fs::read_to_string(&args.token_file).map_err(|e| {
        Failure::usage(format!(
            "cannot read --token-file {}: {e}",
            args.token_file.display()
        ))
        .hint("pass the service-account token file (AZURE_FEDERATED_TOKEN_FILE in a mutated pod)")
    })?;
    if assertion.trim().is_empty() {
        return Err(Failure::usage(format!("--token-file {} is empty", args.token_file.display())).into());
    }
    let ca_pem = match &args.ca_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("cannot read --ca-file {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let target = ProxyTarget::new(&args.proxy, args.sni_name.clone(), ca_pem)
        .map_err(|e| Failure::usage(format!("--proxy: {e}")))?;
    let tenant = args.tenant_id.map(|t| t.to_string());
    let reply = target
        .request_token(
            tenant.as_deref(),
            &args.client_id.to_string(),
            &args.scope,
            &assertion,
        )
        .await
        .map_err(|e| proxy_failure(&args.proxy, &e))?;
    if args.raw {
        println!("{}", reply.access_token);
        return Ok(Outcome::Ok);
    }
    let decoded = crate::jwt::decode(&reply.access_token).ok();
    let expires_at = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(reply.expires_in))
        .ok();
    let claims = decoded.as_ref().map(|d| d.claims.clone()).unwrap_or(Value::Null);
    if args.output.structured() {
        args.output.print_structured(&json!({
            "tokenType": reply.body.get("token_type"),
            "expiresIn": reply.expires_in,
            "expiresAt": expires_at.map(|t| t.to_string()),
            "claims": claims,
        }))?;
        return Ok(Outcome::Ok);
    }
    println!(
        "Token type:  {}",
        reply
            .body
            .get("token_type")
            .and_then(Value::as_str)
            .unwrap_or("?")
    );
    println!(
        "Expires in:  {} ({})",
        idbind_model::duration::human(std::time::Duration::from_secs(
            u64::try_from(reply.expires_in).unwrap_or(0)
        )),
        expires_at.map_or_else(|| "?".to_owned(), |t| t.to_string())
    );
    match &decoded {
        None => println!("Claims:      <the access token is not a JWT; nothing to decode>"),
        Some(d) => {
            println!("Claims:");
            if let Some(map) = d.claims.as_object() {
                let width = map.keys().map(String::len).max().unwrap_or(0);
                for (k, v) in map {
                    let shown = match (k.as_str(), v.as_i64()) {
                        ("exp" | "iat" | "nbf", Some(s)) => jiff::Timestamp::from_second(s)
                            .map_or_else(|_| s.to_string(), |t| format!("{s} ({t})")),
                        _ => match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        },
                    };
                    println!("  {k:<width$}  {shown}");
                }
            }
        }
    }
    Ok(Outcome::Ok)
}

/// A failure for a proxy error, with a fix for each kind.
pub fn proxy_failure(proxy: &str, e: &ProxyError) -> anyhow::Error {
    let failure = match e {
        ProxyError::Config(m) => Failure::usage(m.clone()),
        ProxyError::Unreachable(m) => Failure::unreachable(format!("cannot reach the proxy at {proxy}: {m}")).hint(
            "from outside the cluster, port-forward the proxy (kubectl -n idbind port-forward svc/idbind-proxy 8443:443) \
             and pass --proxy https://127.0.0.1:8443 --sni-name idbind-proxy.idbind.svc",
        ),
        ProxyError::Tls(m) => Failure::failed(format!("TLS with the proxy at {proxy} failed: {m}"))
            .hint("pass the proxy's CA (--ca-file; ConfigMap idbind-proxy-ca, key ca.crt) and the name its certificate is for (--sni-name)"),
        ProxyError::Refused { .. } => {
            let text = e.to_string();
            let hint = if text.contains("AADSTS700211") || text.contains("AADSTS700213") || text.contains("AADSTS70021") {
                "Entra refused the assertion: check the federated credential with `idbind issuer verify --identity ...`"
            } else if text.contains("unauthorized_client") || text.to_ascii_lowercase().contains("not allowed") {
                "the service account may not use this identity: allow it (idbind rbac who-can CLIENT_ID; --allow on the binding)"
            } else {
                "run `idbind doctor -n NS --service-account SA` for the whole chain"
            };
            Failure::failed(format!("the proxy refused the token request: {text}")).hint(hint)
        }
        ProxyError::Invalid(m) => Failure::failed(format!("unexpected answer from the proxy at {proxy}: {m}")),
    };
    failure.into()
}
