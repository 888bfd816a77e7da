//! `cargo xtask bench proxy`: figures for the token proxy, printed (never asserted).
//!
//! - **Cached path**: requests/s and p50/p99 latency with `wrk` (64 keep-alive TLS connections,
//!   HTTP/1.1, a POST with a client-credentials form), side by side in the same run with nginx
//!   answering a static JSON body of the same size over TLS with the same certificate. The ratio
//!   proxy/nginx is the tracked figure.
//! - **Cold path**: sequential token-cache misses through the proxy (a new scope each time), next
//!   to the same exchange posted straight to the Azure emulator; the difference is the proxy's
//!   overhead.
//! - **Memory**: the proxy's RSS after its token cache holds 10,000 tokens.
//!
//! The proxy is the release `idbind-proxy` binary in its own process; the Kubernetes API emulator,
//! the Azure emulator and the issuer run in this process (`idbind_tests::Stack`). wrk and nginx are
//! Debian packages, installed with apt-get when missing. Both servers log nothing per request.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use idbind_emulator::EmulatorConfig;
use idbind_tests::{ProxyMode, ProxyProcess, SCOPE, Stack};

/// Arguments of `cargo xtask bench proxy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds of each wrk run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Keep-alive connections of each wrk run.
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Sequential cache misses measured for the cold path.
    #[arg(long, default_value_t = 200)]
    pub cold_samples: usize,
    /// Tokens put in the proxy's cache before its RSS is read.
    #[arg(long, default_value_t = 10_000)]
    pub cached_tokens: usize,
    /// Use this proxy binary instead of building the release one.
    #[arg(long)]
    pub proxy_bin: Option<PathBuf>,
    /// Do not install wrk and nginx with apt-get when they are missing.
    #[arg(long)]
    pub no_install: bool,
    /// Write the figures into the "proxy" section of docs/benchmarks.md.
    #[arg(long)]
    pub record: bool,
}

/// Runs the benchmark and prints the figures.
pub fn run(args: &Args) -> Result<()> {
    ensure_tools(args.no_install)?;
    let proxy_bin = match &args.proxy_bin {
        Some(p) => p.clone(),
        None => build_release_proxy()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(bench(args, &proxy_bin))?;
    let text = report.render(args);
    println!("{text}");
    if args.record {
        record(&text)?;
        println!("recorded in docs/benchmarks.md");
    }
    Ok(())
}

fn root() -> PathBuf {
    idbind_testkit::tools::workspace_root()
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn ensure_tools(no_install: bool) -> Result<()> {
    let missing: Vec<&str> = [("wrk", "wrk"), ("nginx", "nginx-light")]
        .into_iter()
        .filter(|(bin, _)| !have(bin))
        .map(|(_, pkg)| pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if no_install {
        bail!(
            "missing: {} (apt-get install -y {})",
            missing.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("installing {} with apt-get", missing.join(" "));
    let status = Command::new("apt-get")
        .args(["install", "-y"])
        .args(&missing)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        Command::new("apt-get")
            .arg("update")
            .status()
            .context("apt-get update")?;
        let status = Command::new("apt-get")
            .args(["install", "-y"])
            .args(&missing)
            .status()?;
        if !status.success() {
            bail!("apt-get install -y {} failed", missing.join(" "));
        }
    }
    Ok(())
}

fn build_release_proxy() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building the release idbind-proxy");
    let status = Command::new(cargo)
        .current_dir(root())
        .args([
            "build",
            "--release",
            "-p",
            "idbind-proxy-bin",
            "--bin",
            "idbind-proxy",
        ])
        .status()
        .context("cargo build --release")?;
    if !status.success() {
        bail!("building idbind-proxy failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    Ok(target.join("release/idbind-proxy"))
}

/// Latency percentiles and rate of one wrk run.
#[derive(Debug, Default)]
struct WrkRun {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: String,
}

#[derive(Debug, Default)]
struct Report {
    body_bytes: usize,
    proxy: WrkRun,
    nginx: WrkRun,
    cold_proxy: Samples,
    cold_direct: Samples,
    rss_idle_kib: u64,
    rss_full_kib: u64,
    cache_entries: String,
    machine: String,
}

#[derive(Debug, Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return 0.0;
        }
        let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[idx.min(v.len() - 1)]
    }
}

async fn bench(args: &Args, proxy_bin: &Path) -> Result<Report> {
    // Issuer documents cached as Entra does, so the cold path measures the exchange, not fetches.
    let emulator = EmulatorConfig {
        jwks_cache_ttl: Duration::from_secs(3600),
        ..EmulatorConfig::default()
    };
    let stack = Stack::builder()
        .proxy_mode(ProxyMode::External)
        .emulator(emulator)
        .start()
        .await
        .map_err(anyhow::Error::msg)?;
    let proxy = ProxyProcess::start(&stack, proxy_bin, &["--log", "warn", "--log-format", "plain"])
        .await
        .map_err(anyhow::Error::msg)?;
    proxy.wait_ready().await.map_err(anyhow::Error::msg)?;
    let assertion = std::fs::read_to_string(stack.token_file())?;
    let client = stack.https_client().map_err(anyhow::Error::msg)?;
    let form = stack.token_form(&assertion, SCOPE);

    // Warm: TokenReview, SubjectAccessReview and the token for SCOPE are cached from here on.
    let body = post(&client, &stack, &form).await?;
    let mut report = Report {
        body_bytes: body.len(),
        machine: machine(),
        ..Report::default()
    };

    let dir = tempfile::tempdir()?;
    let lua = dir.path().join("post.lua");
    std::fs::write(&lua, wrk_script(&form))?;
    eprintln!("wrk against the proxy");
    report.proxy = wrk(args, &format!("https://127.0.0.1:{}/", proxy.listen.port()), &lua)?;

    let nginx = Nginx::start(dir.path(), &stack, &body)?;
    eprintln!("wrk against nginx");
    report.nginx = wrk(args, &format!("https://127.0.0.1:{}/", nginx.port), &lua)?;
    drop(nginx);

    eprintln!("cold path");
    for i in 0..args.cold_samples {
        let form = stack.token_form(&assertion, &format!("api://bench-cold-{i}/.default"));
        let started = Instant::now();
        post(&client, &stack, &form).await?;
        report.cold_proxy.0.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let direct = reqwest::Client::new();
    let keys = idbind_issuer::KeySet::from_dir(&stack.keys_dir()).context("reading the keys")?;
    let claims = idbind_issuer::AssertionClaims::new(stack.fic().issuer.clone(), stack.fic().subject.clone());
    let token_url = stack.azure().token_url(&stack.tenant_id());
    let client_id = stack.client_id().to_string();
    for i in 0..args.cold_samples {
        let minted = idbind_issuer::mint_assertion(keys.signing_key(), &claims, jiff::Timestamp::now())?;
        let scope = format!("api://bench-direct-{i}/.default");
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("scope", scope.as_str()),
            ("client_assertion_type", idbind_proxy::JWT_BEARER),
            ("client_assertion", minted.token.as_str()),
        ];
        let started = Instant::now();
        let response = direct.post(&token_url).form(&form).send().await?;
        let status = response.status();
        response.bytes().await?;
        report
            .cold_direct
            .0
            .push(started.elapsed().as_secs_f64() * 1000.0);
        if !status.is_success() {
            bail!("the emulator refused a direct exchange: {status}");
        }
    }

    eprintln!("filling the token cache with {} tokens", args.cached_tokens);
    report.rss_idle_kib = proxy.rss_kib().unwrap_or(0);
    let stack = Arc::new(stack);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..32)
        .map(|_| {
            let (stack, client, assertion, next) =
                (stack.clone(), client.clone(), assertion.clone(), next.clone());
            let total = args.cached_tokens;
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= total {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let form = stack.token_form(&assertion, &format!("api://bench-fill-{i}/.default"));
                    post(&client, &stack, &form).await?;
                }
            })
        })
        .collect();
    for w in workers {
        w.await??;
    }
    report.rss_full_kib = proxy.rss_kib().unwrap_or(0);
    let metrics = reqwest::get(format!("{}/metrics", proxy.admin_url()))
        .await?
        .text()
        .await?;
    report.cache_entries = metrics
        .lines()
        .find_map(|l| l.strip_prefix("idbind_token_cache_entries "))
        .unwrap_or("?")
        .to_owned();
    proxy.terminate().await.map_err(anyhow::Error::msg)?;
    Ok(report)
}

async fn post(client: &reqwest::Client, stack: &Stack, form: &str) -> Result<String> {
    let response = client
        .post(stack.token_url("/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("the proxy answered {status}: {text}");
    }
    Ok(text)
}

fn wrk_script(form: &str) -> String {
    format!(
        "wrk.method = \"POST\"\nwrk.body = \"{form}\"\nwrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\n"
    )
}

fn wrk(args: &Args, url: &str, script: &Path) -> Result<WrkRun> {
    let output = Command::new("wrk")
        .arg(format!("-t{}", args.threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{}s", args.duration))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(url)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    }
    let ms = |label: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label).map(|v| parse_ms(v.trim())))
            .flatten()
            .unwrap_or(f64::NAN)
    };
    let errors = text
        .lines()
        .filter(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    Ok(WrkRun {
        requests_per_sec: text
            .lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN),
        p50_ms: ms("50%"),
        p99_ms: ms("99%"),
        errors,
    })
}

/// `1.23ms`, `850.00us`, `1.02s` → milliseconds.
fn parse_ms(v: &str) -> Option<f64> {
    let (num, factor) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.trim().parse::<f64>().ok().map(|n| n * factor)
}

/// nginx answering every request with a fixed JSON body, over TLS, until dropped.
struct Nginx {
    child: std::process::Child,
    port: u16,
}

impl Nginx {
    fn start(dir: &Path, stack: &Stack, body: &str) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("logs"))?;
        // A body of the same size as the proxy's, without quotes nginx would need escaped.
        let static_body = format!(
            "{{\"token_type\":\"Bearer\",\"access_token\":\"{}\"}}",
            "x".repeat(body.len().saturating_sub(41))
        );
        let conf = format!(
            "daemon off;\nworker_processes auto;\npid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n\
             fastcgi_temp_path {prefix}/fastcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n\
             keepalive_requests 1000000;\n\
             server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
             ssl_protocols TLSv1.2 TLSv1.3;\n    location / {{ default_type application/json; return 200 '{static_body}'; }}\n  }}\n}}\n",
            prefix = prefix.display(),
            cert = stack.tls_cert_file().display(),
            key = stack.tls_key_file().display(),
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .spawn()
            .context("starting nginx")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "nginx did not start; see {}",
                    prefix.join("logs/error.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { child, port })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cores} cores, {cpu}")
}

impl Report {
    fn render(&self, args: &Args) -> String {
        let mut s = String::new();
        let ratio = self.proxy.requests_per_sec / self.nginx.requests_per_sec;
        let _ = writeln!(s, "## proxy\n");
        let _ = writeln!(
            s,
            "`cargo xtask bench proxy` on {} ({}); everything on one machine, wrk and both servers sharing the cores.\n",
            self.machine,
            jiff::Timestamp::now().strftime("%Y-%m-%d"),
        );
        let _ = writeln!(
            s,
            "**Cached path** — wrk, {} keep-alive TLS connections, {} threads, {} s, HTTP/1.1 POST of a client-credentials form; \
             nginx answers a static JSON body of the same size ({} bytes) with the same certificate. Neither logs per request.\n",
            args.connections, args.threads, args.duration, self.body_bytes
        );
        let _ = writeln!(
            s,
            "| server | requests/s | p50 | p99 | errors |\n|---|---|---|---|---|"
        );
        for (name, run) in [("idbind-proxy (release)", &self.proxy), ("nginx", &self.nginx)] {
            let _ = writeln!(
                s,
                "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} |",
                run.requests_per_sec,
                run.p50_ms,
                run.p99_ms,
                if run.errors.is_empty() {
                    "none"
                } else {
                    &run.errors
                }
            );
        }
        let _ = writeln!(s, "\n**Ratio proxy/nginx: {ratio:.2}** (requests/s).\n");
        let overhead = self.cold_proxy.pct(50.0) - self.cold_direct.pct(50.0);
        let _ = writeln!(
            s,
            "**Cold path** — {} sequential token-cache misses (a new scope each; TokenReview and SubjectAccessReview cached), \
             against the same exchange posted straight to the Azure emulator (debug build, in the bench process):\n",
            self.cold_proxy.0.len()
        );
        let _ = writeln!(s, "| path | p50 | p99 |\n|---|---|---|");
        let _ = writeln!(
            s,
            "| through the proxy | {:.2} ms | {:.2} ms |",
            self.cold_proxy.pct(50.0),
            self.cold_proxy.pct(99.0)
        );
        let _ = writeln!(
            s,
            "| emulator directly | {:.2} ms | {:.2} ms |",
            self.cold_direct.pct(50.0),
            self.cold_direct.pct(99.0)
        );
        let _ = writeln!(
            s,
            "\nProxy overhead on a miss (p50): **{overhead:.2} ms** (assertion minting, TLS, HTTP, cache).\n"
        );
        let per_token = (self.rss_full_kib.saturating_sub(self.rss_idle_kib)) as f64 * 1024.0
            / args.cached_tokens.max(1) as f64;
        let _ = writeln!(
            s,
            "**Memory** — proxy RSS {:.1} MiB after warm-up, **{:.1} MiB with {} cached tokens** (`idbind_token_cache_entries` = {}), \
             about {:.0} bytes per cached token.",
            self.rss_idle_kib as f64 / 1024.0,
            self.rss_full_kib as f64 / 1024.0,
            args.cached_tokens,
            self.cache_entries,
            per_token
        );
        s
    }
}

/// Replaces (or appends) the `## proxy` section of docs/benchmarks.md.
fn record(section: &str) -> Result<()> {
    let path = root().join("docs/benchmarks.md");
    let current = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
    let updated = match current.find("\n## proxy\n") {
        Some(start) => {
            let rest = &current[start + 1..];
            let end = rest[3..]
                .find("\n## ")
                .map(|e| start + 1 + 3 + e + 1)
                .unwrap_or(current.len());
            format!(
                "{}{}{}",
                &current[..start + 1],
                section.trim_end_matches('\n'),
                if end < current.len() {
                    format!("\n\n{}", &current[end..])
                } else {
                    "\n".to_owned()
                }
            )
        }
        None => format!(
            "{}\n{}",
            current.trim_end_matches('\n').to_owned() + "\n",
            section
        ),
    };
    std::fs::write(&path, updated).with_context(|| format!("writing {}", path.display()))
}
