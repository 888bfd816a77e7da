//! Command-line flags, each with an `IDBIND_PROXY_*` environment fallback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use idbind_model::duration::parse_duration;

/// The idbind token proxy: exchanges pods' service-account tokens for Entra access tokens of the
/// managed identities bound to this cluster, speaking the protocol of the AKS identity-binding
/// proxy to the official Azure Identity SDKs.
#[derive(Debug, Parser)]
#[command(name = "idbind-proxy", version, max_term_width = 110)]
pub struct Args {
    /// HTTPS listen address of the token endpoint.
    #[arg(long, env = "IDBIND_PROXY_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// Plain-HTTP listen address of /metrics, /healthz and /readyz.
    #[arg(long, env = "IDBIND_PROXY_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,

    /// PEM serving certificate (chain); its SAN must be the SNI name clients use. Reloaded when
    /// the file changes.
    #[arg(long, env = "IDBIND_PROXY_TLS_CERT")]
    pub tls_cert: PathBuf,

    /// PEM private key of the serving certificate. Reloaded with the certificate.
    #[arg(long, env = "IDBIND_PROXY_TLS_KEY")]
    pub tls_key: PathBuf,

    /// How often, at most, the certificate files are checked for changes (on handshakes).
    #[arg(long, env = "IDBIND_PROXY_TLS_RELOAD_INTERVAL", value_parser = parse_duration, default_value = "1s")]
    pub tls_reload_interval: Duration,

    /// Directory of the mounted signing-key Secret (one file per Secret entry).
    #[arg(long, env = "IDBIND_PROXY_KEYS_DIR")]
    pub keys_dir: PathBuf,

    /// How often the signing-key directory is re-read.
    #[arg(long, env = "IDBIND_PROXY_KEY_RELOAD_INTERVAL", value_parser = parse_duration, default_value = "10s")]
    pub key_reload_interval: Duration,

    /// Entra authority host tokens are requested from.
    #[arg(
        long,
        env = "IDBIND_PROXY_AUTHORITY_HOST",
        default_value = "https://login.microsoftonline.com"
    )]
    pub authority_host: url::Url,

    /// Extra PEM trust roots for the authority host (a test or sovereign authority).
    #[arg(long, env = "IDBIND_PROXY_AUTHORITY_CA_FILE")]
    pub authority_ca_file: Option<PathBuf>,

    /// Authority named in the discovery documents the proxy serves; must be the host pods have in
    /// AZURE_AUTHORITY_HOST (MSAL Go checks the issuer against it). Default: --authority-host.
    #[arg(long, env = "IDBIND_PROXY_ADVERTISED_AUTHORITY")]
    pub advertised_authority: Option<url::Url>,

    /// Audience projected service-account tokens must carry.
    #[arg(long, env = "IDBIND_PROXY_AUDIENCE", default_value = idbind_model::DEFAULT_SA_TOKEN_AUDIENCE)]
    pub audience: String,

    /// Kubeconfig file; default: KUBECONFIG, ~/.kube/config, then the in-cluster service account.
    #[arg(long, env = "IDBIND_PROXY_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Most Entra tokens cached (least recently used evicted first).
    #[arg(long, env = "IDBIND_PROXY_TOKEN_CACHE_CAPACITY", default_value_t = 10_000)]
    pub token_cache_capacity: usize,

    /// How long a TokenReview result is reused (never past the token's exp).
    #[arg(long, env = "IDBIND_PROXY_AUTHN_CACHE_TTL", value_parser = parse_duration, default_value = "2m")]
    pub authn_cache_ttl: Duration,

    /// Most TokenReview results cached.
    #[arg(long, env = "IDBIND_PROXY_AUTHN_CACHE_CAPACITY", default_value_t = 10_000)]
    pub authn_cache_capacity: usize,

    /// How long an allowing SubjectAccessReview is reused.
    #[arg(long, env = "IDBIND_PROXY_AUTHZ_ALLOW_TTL", value_parser = parse_duration, default_value = "5m")]
    pub authz_allow_ttl: Duration,

    /// How long a denying SubjectAccessReview is reused.
    #[arg(long, env = "IDBIND_PROXY_AUTHZ_DENY_TTL", value_parser = parse_duration, default_value = "30s")]
    pub authz_deny_ttl: Duration,

    /// Most SubjectAccessReview results cached.
    #[arg(long, env = "IDBIND_PROXY_AUTHZ_CACHE_CAPACITY", default_value_t = 10_000)]
    pub authz_cache_capacity: usize,

    /// Timeout of one HTTP attempt to Entra.
    #[arg(long, env = "IDBIND_PROXY_UPSTREAM_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub upstream_timeout: Duration,

    /// Most attempts per Entra exchange (retries on 5xx, 429 and connection errors).
    #[arg(long, env = "IDBIND_PROXY_UPSTREAM_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub upstream_attempts: u32,

    /// Largest request body accepted (413 beyond).
    #[arg(long, env = "IDBIND_PROXY_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Longest wait for a request head; also closes idle keep-alive connections (HTTP/1.1).
    #[arg(long, env = "IDBIND_PROXY_HEADER_READ_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub header_read_timeout: Duration,

    /// Longest time from a request head to its answer.
    #[arg(long, env = "IDBIND_PROXY_REQUEST_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub request_timeout: Duration,

    /// Longest TLS handshake.
    #[arg(long, env = "IDBIND_PROXY_HANDSHAKE_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub handshake_timeout: Duration,

    /// Most connections open at once; more are closed on accept.
    #[arg(long, env = "IDBIND_PROXY_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most concurrent HTTP/2 streams per connection.
    #[arg(long, env = "IDBIND_PROXY_MAX_CONCURRENT_STREAMS", default_value_t = 200)]
    pub max_concurrent_streams: u32,

    /// On SIGTERM, how long requests in flight may take to finish.
    #[arg(long, env = "IDBIND_PROXY_SHUTDOWN_GRACE", value_parser = parse_duration, default_value = "25s")]
    pub shutdown_grace: Duration,

    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "IDBIND_PROXY_LOG", default_value = "info")]
    pub log: String,

    /// Log format.
    #[arg(long, env = "IDBIND_PROXY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

/// How log lines are written (to stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Plain,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn flags_are_consistent_and_defaults_apply() {
        Args::command().debug_assert();
        let args = Args::try_parse_from([
            "idbind-proxy",
            "--tls-cert",
            "/c",
            "--tls-key",
            "/k",
            "--keys-dir",
            "/keys",
            "--request-timeout",
            "5s",
        ])
        .unwrap();
        assert_eq!(args.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(args.audience, "api://AKSIdentityBinding");
        assert_eq!(args.request_timeout, Duration::from_secs(5));
        assert_eq!(args.authn_cache_ttl, Duration::from_secs(120));
        assert_eq!(args.authority_host.as_str(), "https://login.microsoftonline.com/");
        let err = Args::try_parse_from([
            "idbind-proxy",
            "--tls-cert",
            "/c",
            "--tls-key",
            "/k",
            "--keys-dir",
            "/d",
            "--request-timeout",
            "5",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("unit is missing"), "{err}");
    }
}
