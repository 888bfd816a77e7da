//! `cargo xtask e2e --kind`: idbind on a real Kubernetes (kind), with the Azure emulator in the
//! cluster, deployed from `deploy/overlays/e2e-kind` exactly as an operator deploys an overlay.
//!
//! 1. Checks for a reachable Docker engine (not just the client), `kind` and `kubectl`; without
//!    them it prints one `SKIP` line naming what is missing and succeeds, unless
//!    `IDBIND_E2E_REQUIRED=1`.
//! 2. Builds the images (`docker/Dockerfile` targets, and `docker/e2e-client` with the pinned
//!    `azure-identity`), creates a kind cluster `idbind-e2e-<random>` with its own kubeconfig and
//!    loads the images with `kind load docker-image`.
//! 3. Generates a CA and certificates for the emulator and for the controller's issuer server (the
//!    emulator, like Entra, fetches issuer documents over HTTPS only), stores them as Secrets and a
//!    CA ConfigMap, and applies the overlay.
//! 4. The scenario: bind the seeded identity → Ready, exactly one FIC, this cluster's key in the
//!    identity's JWKS; a pod of an allowed service account gets a token with the Python SDK; a pod
//!    of another service account is refused; unbinding deletes the FIC (`--fic-gc=delete`),
//!    withdraws the key, and the allowed pod is refused from then on.
//! 5. Deletes the cluster, also on failure (after printing the pods, events and logs), unless
//!    `--keep-cluster`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, Namespace, Pod, PodSecurityContext, PodSpec, ResourceRequirements,
    SeccompProfile, SecurityContext, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::manifests::e2e;
use crate::manifests::names;
use crate::util::root;

/// Flags of `cargo xtask e2e --kind`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct KindArgs {
    /// Keep the kind cluster afterwards (and print how to delete it).
    #[arg(long)]
    pub keep_cluster: bool,
    /// kind node image (default: the one of the installed kind).
    #[arg(long, env = "IDBIND_KIND_NODE_IMAGE")]
    pub node_image: Option<String>,
    /// Use the images built by a previous run instead of building them.
    #[arg(long)]
    pub skip_build: bool,
    /// Longest wait for each step, in seconds.
    #[arg(long, default_value_t = 300)]
    pub step_timeout: u64,
}

/// What a probe command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// It ran and succeeded.
    Ok,
    /// The program is not on PATH.
    NotFound,
    /// It ran and failed; the first line of its error output.
    Failed(String),
}

/// Runs a probe command (program, arguments); injectable for tests.
pub type Prober<'a> = &'a dyn Fn(&str, &[&str]) -> Probe;

/// Runs `program args` quietly.
pub fn system_probe(program: &str, args: &[&str]) -> Probe {
    match Command::new(program).args(args).stdin(Stdio::null()).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Probe::NotFound,
        Err(e) => Probe::Failed(e.to_string()),
        Ok(out) if out.status.success() => Probe::Ok,
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let line = stderr
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("no error output");
            Probe::Failed(format!("{line} ({})", out.status))
        }
    }
}

/// What the kind e2e needs and does not have, each with why.
pub fn missing_prerequisites(probe: Prober<'_>) -> Vec<String> {
    let mut missing = Vec::new();
    // `docker info` talks to the engine; `docker --version` would only find the client.
    match probe("docker", &["info", "--format", "{{.ServerVersion}}"]) {
        Probe::Ok => {}
        Probe::NotFound => missing.push("docker (not on PATH)".to_owned()),
        Probe::Failed(why) => missing.push(format!("docker engine (`docker info` failed: {why})")),
    }
    for (tool, args) in [
        ("kind", &["version"][..]),
        ("kubectl", &["version", "--client"][..]),
    ] {
        match probe(tool, args) {
            Probe::Ok => {}
            Probe::NotFound => missing.push(format!("{tool} (not on PATH)")),
            Probe::Failed(why) => missing.push(format!("{tool} (`{tool} {}` failed: {why})", args.join(" "))),
        }
    }
    missing
}

/// What to do when something is missing.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Everything is there: run.
    Run,
    /// Print this line and succeed.
    Skip(String),
    /// Fail with this message (`IDBIND_E2E_REQUIRED=1`).
    Fail(String),
}

/// Decides from what is missing and whether the e2e is required.
pub fn decide(missing: &[String], required: bool) -> Decision {
    if missing.is_empty() {
        return Decision::Run;
    }
    let line = format!("SKIP e2e --kind: missing {}", missing.join("; "));
    if required {
        Decision::Fail(format!("{line} (IDBIND_E2E_REQUIRED=1)"))
    } else {
        Decision::Skip(line)
    }
}

/// Whether `IDBIND_E2E_REQUIRED` asks for the e2e to run.
pub fn required_by_env() -> bool {
    std::env::var("IDBIND_E2E_REQUIRED").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// `cargo xtask e2e --kind`.
pub fn run(args: &KindArgs) -> Result<()> {
    match decide(&missing_prerequisites(&system_probe), required_by_env()) {
        Decision::Run => {}
        Decision::Skip(line) => {
            println!("{line}");
            return Ok(());
        }
        Decision::Fail(message) => bail!(message),
    }
    let started = Instant::now();
    let work = work_dir()?;
    if !args.skip_build {
        build_images()?;
    }
    let cluster = KindCluster::create(&cluster_name(), args, &work)?;
    let e2e = E2e {
        kubectl: Kubectl {
            kubeconfig: cluster.kubeconfig.clone(),
        },
        step: Duration::from_secs(args.step_timeout),
        work,
    };
    let outcome = cluster
        .load_images()
        .and_then(|()| e2e.install())
        .and_then(|()| e2e.scenario());
    if let Err(e) = &outcome {
        eprintln!("\n==> e2e --kind failed: {e:#}\n==> diagnostics");
        e2e.diagnostics();
    }
    drop(cluster);
    outcome?;
    println!("e2e --kind: passed in {:.0?}", started.elapsed());
    Ok(())
}

fn step(what: &str) {
    eprintln!("==> {what}");
}

fn work_dir() -> Result<PathBuf> {
    let dir = root().join("target/e2e-kind");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// `idbind-e2e-<8 hex>`, different for every run.
fn cluster_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
    format!(
        "idbind-e2e-{:08x}",
        mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32
    )
}

/// The binaries' images: (Dockerfile target, image name).
const IMAGES: [(&str, &str); 4] = [
    ("controller", names::CONTROLLER),
    ("proxy", names::PROXY),
    ("emulator", "idbind-emulator"),
    ("cli", "idbind"),
];
const CLIENT_IMAGE: &str = "e2e-client";

fn tagged(name: &str) -> String {
    format!("{}:{}", e2e::image(name), e2e::TAG)
}

/// The `azure-identity` version the Python tests pin.
fn azure_identity_version() -> Result<String> {
    let path = root().join("tests/python/requirements.txt");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("azure-identity=="))
        .map(|v| v.trim().to_owned())
        .with_context(|| format!("{} pins no azure-identity==<version>", path.display()))
}

fn build_images() -> Result<()> {
    for (target, name) in IMAGES {
        step(&format!("building {}", tagged(name)));
        crate::util::run(
            Command::new("docker")
                .current_dir(root())
                .args(["build", "-f", "docker/Dockerfile", "--target", target, "-t"])
                .arg(tagged(name))
                .arg("."),
        )?;
    }
    step(&format!("building {}", tagged(CLIENT_IMAGE)));
    crate::util::run(
        Command::new("docker")
            .current_dir(root())
            .args(["build", "-f", "docker/e2e-client/Dockerfile", "--build-arg"])
            .arg(format!("AZURE_IDENTITY_VERSION={}", azure_identity_version()?))
            .arg("-t")
            .arg(tagged(CLIENT_IMAGE))
            .arg("docker/e2e-client"),
    )
}

/// A kind cluster with its own kubeconfig, deleted on drop unless kept.
struct KindCluster {
    name: String,
    kubeconfig: PathBuf,
    keep: bool,
}

impl KindCluster {
    fn create(name: &str, args: &KindArgs, work: &Path) -> Result<Self> {
        step(&format!("creating kind cluster {name}"));
        let kubeconfig = work.join(format!("{name}.kubeconfig"));
        let mut cmd = Command::new("kind");
        cmd.args([
            "create",
            "cluster",
            "--name",
            name,
            "--wait",
            "180s",
            "--kubeconfig",
        ])
        .arg(&kubeconfig);
        if let Some(image) = &args.node_image {
            cmd.args(["--image", image]);
        }
        // Constructed before running, so a half-created cluster is deleted too.
        let cluster = Self {
            name: name.to_owned(),
            kubeconfig,
            keep: args.keep_cluster,
        };
        crate::util::run(&mut cmd)?;
        Ok(cluster)
    }

    fn load_images(&self) -> Result<()> {
        step("loading images into the cluster");
        let mut cmd = Command::new("kind");
        cmd.args(["load", "docker-image", "--name", &self.name]);
        for (target, name) in IMAGES {
            if target != "cli" {
                cmd.arg(tagged(name));
            }
        }
        cmd.arg(tagged(CLIENT_IMAGE));
        crate::util::run(&mut cmd)
    }
}

impl Drop for KindCluster {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "kept kind cluster {0}: kubectl --kubeconfig {1} ...; delete it with `kind delete cluster --name {0}`",
                self.name,
                self.kubeconfig.display()
            );
            return;
        }
        step(&format!("deleting kind cluster {}", self.name));
        let status = Command::new("kind")
            .args(["delete", "cluster", "--name", &self.name])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!(
                "could not delete kind cluster {0}; run `kind delete cluster --name {0}`",
                self.name
            );
        }
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

/// `kubectl` against the e2e cluster.
struct Kubectl {
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.current_dir(root())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args);
        cmd
    }

    /// Runs and shows the command; fails with its status.
    fn run(&self, args: &[&str]) -> Result<()> {
        crate::util::run(&mut self.cmd(args))
    }

    /// Runs quietly; stdout, or an error with stderr.
    fn output(&self, args: &[&str]) -> Result<String> {
        crate::util::output(&mut self.cmd(args))
    }

    /// `kubectl apply -f -` of YAML documents.
    fn apply(&self, yaml: &str) -> Result<()> {
        let mut child = self
            .cmd(&["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .context("starting kubectl apply")?;
        child
            .stdin
            .take()
            .context("kubectl apply has no stdin")?
            .write_all(yaml.as_bytes())?;
        let status = child.wait()?;
        if !status.success() {
            bail!("kubectl apply failed with {status}");
        }
        Ok(())
    }

    /// A GET through the API server's service proxy (no port-forward, no extra client).
    fn service_get(&self, namespace: &str, service: &str, port: i32, path: &str) -> Result<String> {
        let raw = format!("/api/v1/namespaces/{namespace}/services/https:{service}:{port}/proxy/{path}");
        self.output(&["get", "--raw", &raw])
    }
}

/// Polls `check` every two seconds until it returns `Some` or `timeout` passes.
fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            return Err(match last_error {
                Some(e) => e.context(format!("timed out after {timeout:?} waiting for {what}")),
                None => anyhow::anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Successful (2xx) calls of an emulator route, from its counters.
fn successes(counters: &serde_json::Value, route: &str) -> u64 {
    counters
        .get(route)
        .and_then(serde_json::Value::as_object)
        .map(|by_status| {
            by_status
                .iter()
                .filter(|(status, _)| status.starts_with('2'))
                .filter_map(|(_, n)| n.as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// Keys of this cluster (kid `<cluster>.<thumbprint>`) in a JWKS document.
fn cluster_kids(jwks: &serde_json::Value, cluster: &str) -> Vec<String> {
    let prefix = format!("{cluster}.");
    jwks.get("keys")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|k| k.get("kid").and_then(serde_json::Value::as_str))
        .filter(|kid| kid.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// The one JSON line the e2e client prints.
fn client_report(logs: &str) -> Result<serde_json::Value> {
    logs.lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l.trim())
                .ok()
                .filter(|v| v.get("outcome").is_some())
        })
        .with_context(|| format!("the client printed no outcome line; its logs:\n{logs}"))
}

const ALLOWED_SA: &str = "allowed";
const OTHER_SA: &str = "not-allowed";
const BINDING: &str = "payments";

struct E2e {
    kubectl: Kubectl,
    step: Duration,
    work: PathBuf,
}

impl E2e {
    /// Certificates, then the overlay, then waits until every part is up.
    fn install(&self) -> Result<()> {
        step("generating the e2e CA and certificates");
        let validity = Duration::from_secs(7 * 86_400);
        let ca = idbind_tls::CertificateAuthority::generate("idbind e2e CA", validity)?;
        let emulator = ca.issue_server_cert(&e2e::emulator_dns_names(), &[], validity)?;
        let issuer = ca.issue_server_cert(&e2e::issuer_dns_names(), &[], validity)?;
        let write = |name: &str, pem: &str| -> Result<String> {
            let path = self.work.join(name);
            std::fs::write(&path, pem).with_context(|| format!("writing {}", path.display()))?;
            Ok(path.display().to_string())
        };
        let ca_file = write("ca.crt", ca.cert_pem())?;
        let emulator_files = (
            write("emulator.crt", &emulator.cert_pem)?,
            write("emulator.key", &emulator.key_pem)?,
        );
        let issuer_files = (
            write("issuer.crt", &issuer.cert_pem)?,
            write("issuer.key", &issuer.key_pem)?,
        );

        step("creating namespaces, TLS Secrets and the CA ConfigMaps");
        let k = &self.kubectl;
        for ns in [names::NAMESPACE, e2e::NAMESPACE] {
            k.run(&["create", "namespace", ns])?;
            k.run(&[
                "-n",
                ns,
                "create",
                "configmap",
                e2e::CA_CONFIGMAP,
                &format!("--from-file=ca.crt={ca_file}"),
            ])?;
        }
        let tls = |ns: &str, name: &str, (cert, key): &(String, String)| {
            k.run(&[
                "-n",
                ns,
                "create",
                "secret",
                "tls",
                name,
                &format!("--cert={cert}"),
                &format!("--key={key}"),
            ])
        };
        tls(e2e::NAMESPACE, e2e::EMULATOR_TLS_SECRET, &emulator_files)?;
        tls(names::NAMESPACE, names::user_secrets::ISSUER_TLS, &issuer_files)?;

        step("applying deploy/overlays/e2e-kind");
        k.run(&["apply", "-k", crate::manifests::overlays::E2E_OVERLAY])?;
        let timeout = format!("--timeout={}s", self.step.as_secs());
        k.run(&[
            "-n",
            e2e::NAMESPACE,
            "rollout",
            "status",
            &format!("deployment/{}", e2e::EMULATOR),
            &timeout,
        ])?;
        k.run(&[
            "-n",
            names::NAMESPACE,
            "rollout",
            "status",
            &format!("deployment/{}", names::CONTROLLER),
            &timeout,
        ])?;
        step("waiting for the controller to fill in the webhook's caBundle");
        wait_for("the webhook caBundle", self.step, || {
            let bundle = k.output(&[
                "get",
                "mutatingwebhookconfiguration",
                names::WEBHOOK_CONFIGURATION,
                "-o",
                "jsonpath={.webhooks[0].clientConfig.caBundle}",
            ])?;
            Ok((!bundle.trim().is_empty()).then_some(()))
        })?;
        // The proxies start once the controller has written their key and certificate Secrets.
        k.run(&[
            "-n",
            names::NAMESPACE,
            "rollout",
            "status",
            &format!("deployment/{}", names::PROXY),
            &timeout,
        ])
    }

    fn scenario(&self) -> Result<()> {
        let k = &self.kubectl;
        step("creating the workload namespace, its service accounts and the IdentityBinding");
        k.apply(&apps_manifests()?)?;
        k.run(&[
            "wait",
            &format!("identitybinding/{BINDING}"),
            "--for=condition=Ready",
            &format!("--timeout={}s", self.step.as_secs()),
        ])?;

        step("checking the emulator: exactly one FIC was created");
        let counters = self.counters()?;
        let created = successes(&counters, "arm.fic.put");
        if created != 1 {
            bail!("expected exactly one FIC PUT, the emulator counted {created}: {counters}");
        }
        step("checking the identity's JWKS: it holds this cluster's key");
        let kids = cluster_kids(&self.jwks()?.unwrap_or_default(), e2e::CLUSTER_NAME);
        if kids.is_empty() {
            bail!(
                "the identity's JWKS holds no key of cluster {}",
                e2e::CLUSTER_NAME
            );
        }

        step("a pod of the allowed service account gets a token with azure-identity");
        let report = self.client("allowed", ALLOWED_SA, "success")?;
        let claims = &report["claims"];
        if claims["tid"] != e2e::TENANT || claims["appid"] != e2e::IDENTITY_CLIENT_ID {
            bail!("the token is not the identity's: {report}");
        }
        let env = k.output(&[
            "-n",
            e2e::APPS_NAMESPACE,
            "get",
            "pod",
            "allowed",
            "-o",
            "jsonpath={.spec.containers[0].env[*].name}",
        ])?;
        for var in [
            "AZURE_KUBERNETES_TOKEN_PROXY",
            "AZURE_KUBERNETES_SNI_NAME",
            "AZURE_KUBERNETES_CA_FILE",
        ] {
            if !env.split_whitespace().any(|v| v == var) {
                bail!("the webhook did not inject {var}; the pod has {env}");
            }
        }

        step("a pod of a service account outside allowedSubjects is refused");
        self.client("not-allowed", OTHER_SA, "failure")?;

        step("unbinding: the FIC is deleted (--fic-gc=delete) and the key withdrawn");
        k.run(&[
            "delete",
            &format!("identitybinding/{BINDING}"),
            "--wait=true",
            &format!("--timeout={}s", self.step.as_secs()),
        ])?;
        wait_for("the FIC deletion", self.step, || {
            Ok((successes(&self.counters()?, "arm.fic.delete") >= 1).then_some(()))
        })?;
        let left = cluster_kids(&self.jwks()?.unwrap_or_default(), e2e::CLUSTER_NAME);
        if !left.is_empty() {
            bail!(
                "cluster {} still has keys in the JWKS after unbinding: {left:?}",
                e2e::CLUSTER_NAME
            );
        }

        step("after unbinding, the allowed service account is refused too");
        let mut attempt = 0;
        wait_for("a refusal after unbinding", self.step, || {
            attempt += 1;
            let name = format!("after-unbind-{attempt}");
            Ok(self.client(&name, ALLOWED_SA, "failure").ok())
        })?;
        Ok(())
    }

    fn counters(&self) -> Result<serde_json::Value> {
        let text = self.kubectl.service_get(
            e2e::NAMESPACE,
            e2e::EMULATOR,
            e2e::EMULATOR_PORT,
            "_emulator/counters",
        )?;
        serde_json::from_str(&text).context("the emulator's counters are not JSON")
    }

    /// The identity's JWKS from the issuer Service; `None` when it is not published.
    fn jwks(&self) -> Result<Option<serde_json::Value>> {
        let path = format!("{}/{}/openid/v1/jwks", e2e::TENANT, e2e::IDENTITY_CLIENT_ID);
        match self
            .kubectl
            .service_get(names::NAMESPACE, names::ISSUER_SERVICE, 443, &path)
        {
            Ok(text) => Ok(Some(serde_json::from_str(&text).context("the JWKS is not JSON")?)),
            Err(e) if format!("{e:#}").contains("NotFound") || format!("{e:#}").contains("404") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs the client as `service_account`, expecting `expect`; its report line.
    fn client(&self, name: &str, service_account: &str, expect: &str) -> Result<serde_json::Value> {
        let k = &self.kubectl;
        k.apply(&crate::codegen::to_yaml(&client_pod(
            name,
            service_account,
            expect,
        ))?)?;
        let phase = wait_for(&format!("pod {name} to finish"), self.step, || {
            let phase = k.output(&[
                "-n",
                e2e::APPS_NAMESPACE,
                "get",
                "pod",
                name,
                "-o",
                "jsonpath={.status.phase}",
            ])?;
            Ok(matches!(phase.trim(), "Succeeded" | "Failed").then(|| phase.trim().to_owned()))
        })?;
        let logs = k.output(&["-n", e2e::APPS_NAMESPACE, "logs", name])?;
        let report = client_report(&logs)?;
        if phase != "Succeeded" {
            bail!("pod {name} (service account {service_account}) expected {expect}, got: {report}");
        }
        eprintln!("    {name}: {report}");
        Ok(report)
    }

    /// Best effort: what an operator would look at first.
    fn diagnostics(&self) {
        let k = &self.kubectl;
        let show = |args: &[&str]| {
            eprintln!("$ kubectl {}", args.join(" "));
            match k.output(args) {
                Ok(out) => eprintln!("{out}"),
                Err(e) => eprintln!("({e:#})"),
            }
        };
        show(&["get", "pods", "-A", "-o", "wide"]);
        show(&["get", "identitybindings", "-o", "yaml"]);
        show(&["get", "events", "-A", "--sort-by=.lastTimestamp"]);
        for (ns, deployment) in [
            (names::NAMESPACE, names::CONTROLLER),
            (names::NAMESPACE, names::PROXY),
            (e2e::NAMESPACE, e2e::EMULATOR),
        ] {
            show(&[
                "-n",
                ns,
                "logs",
                &format!("deployment/{deployment}"),
                "--all-containers",
                "--tail=200",
            ]);
        }
    }
}

/// The workload namespace (Pod Security `restricted`), two service accounts annotated with the
/// identity's client id, and the binding allowing one of them.
fn apps_manifests() -> Result<String> {
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(e2e::APPS_NAMESPACE.to_owned()),
            labels: Some(
                [(
                    "pod-security.kubernetes.io/enforce".to_owned(),
                    "restricted".to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let account = |name: &str| ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(e2e::APPS_NAMESPACE.to_owned()),
            annotations: Some(
                [(
                    idbind_model::SA_CLIENT_ID_ANNOTATION.to_owned(),
                    e2e::IDENTITY_CLIENT_ID.to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    let binding = idbind_model::IdentityBinding::new(
        BINDING,
        idbind_model::IdentityBindingSpec {
            managed_identity: idbind_model::ManagedIdentityRef {
                resource_id: e2e::identity_resource_id(),
            },
            allowed_subjects: vec![idbind_model::AllowedSubject {
                namespace: e2e::APPS_NAMESPACE.to_owned(),
                service_account: Some(ALLOWED_SA.to_owned()),
            }],
        },
    );
    let docs = [
        crate::codegen::to_yaml(&namespace)?,
        crate::codegen::to_yaml(&account(ALLOWED_SA))?,
        crate::codegen::to_yaml(&account(OTHER_SA))?,
        crate::codegen::to_yaml(&binding)?,
    ];
    Ok(docs.join("---\n"))
}

/// A pod running the e2e client once, opted in to identity binding like any workload.
fn client_pod(name: &str, service_account: &str, expect: &str) -> Pod {
    let restricted = SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        run_as_non_root: Some(true),
        ..SecurityContext::default()
    };
    let quantity = |cpu: &str, memory: &str| {
        [
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ]
        .into()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(e2e::APPS_NAMESPACE.to_owned()),
            labels: Some([(idbind_model::POD_USE_LABEL.to_owned(), "true".to_owned())].into()),
            annotations: Some(
                [(
                    idbind_model::POD_USE_IDENTITY_BINDING_ANNOTATION.to_owned(),
                    "true".to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some(service_account.to_owned()),
            restart_policy: Some("Never".to_owned()),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(names::NONROOT_UID),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    localhost_profile: None,
                }),
                ..PodSecurityContext::default()
            }),
            containers: vec![Container {
                name: "client".to_owned(),
                image: Some(tagged(CLIENT_IMAGE)),
                image_pull_policy: Some("IfNotPresent".to_owned()),
                args: Some(vec![expect.to_owned()]),
                security_context: Some(restricted),
                resources: Some(ResourceRequirements {
                    requests: Some(quantity("50m", "64Mi")),
                    limits: Some(quantity("500m", "256Mi")),
                    claims: None,
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prober(docker: Probe, kind: Probe, kubectl: Probe) -> impl Fn(&str, &[&str]) -> Probe {
        move |program, _| match program {
            "docker" => docker.clone(),
            "kind" => kind.clone(),
            "kubectl" => kubectl.clone(),
            other => panic!("unexpected probe {other}"),
        }
    }

    #[test]
    fn a_docker_client_without_engine_is_missing_the_engine() {
        let probe = prober(
            Probe::Failed("Cannot connect to the Docker daemon at unix:///var/run/docker.sock".into()),
            Probe::NotFound,
            Probe::Ok,
        );
        let missing = missing_prerequisites(&probe);
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(missing[0].starts_with("docker engine"), "{missing:?}");
        assert!(missing[0].contains("Cannot connect"), "{missing:?}");
        assert_eq!(missing[1], "kind (not on PATH)");
        match decide(&missing, false) {
            Decision::Skip(line) => {
                assert!(
                    line.starts_with("SKIP e2e --kind: missing docker engine"),
                    "{line}"
                );
                assert!(line.contains("kind (not on PATH)"), "{line}");
                assert_eq!(line.lines().count(), 1, "one line: {line}");
            }
            other => panic!("expected a skip, got {other:?}"),
        }
    }

    #[test]
    fn required_turns_a_skip_into_a_failure() {
        let probe = prober(Probe::NotFound, Probe::Ok, Probe::Ok);
        let missing = missing_prerequisites(&probe);
        assert_eq!(missing, ["docker (not on PATH)"]);
        match decide(&missing, true) {
            Decision::Fail(message) => assert!(message.contains("IDBIND_E2E_REQUIRED=1"), "{message}"),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn everything_present_runs() {
        let probe = prober(Probe::Ok, Probe::Ok, Probe::Ok);
        assert_eq!(decide(&missing_prerequisites(&probe), true), Decision::Run);
        let probe = prober(Probe::Ok, Probe::Ok, Probe::Failed("exit 1".into()));
        assert_eq!(
            missing_prerequisites(&probe),
            ["kubectl (`kubectl version --client` failed: exit 1)"]
        );
    }

    #[test]
    fn the_real_probe_reports_absent_programs() {
        assert_eq!(system_probe("idbind-no-such-program", &[]), Probe::NotFound);
        assert!(
            matches!(system_probe("sh", &["-c", "echo boom >&2; exit 3"]), Probe::Failed(why) if why.contains("boom"))
        );
        assert_eq!(system_probe("sh", &["-c", "true"]), Probe::Ok);
    }

    #[test]
    fn counters_jwks_and_reports_are_read() {
        let counters = serde_json::json!({"arm.fic.put": {"201": 1, "409": 2}, "arm.fic.get": {"200": 5}});
        assert_eq!(successes(&counters, "arm.fic.put"), 1);
        assert_eq!(successes(&counters, "arm.fic.delete"), 0);
        let jwks = serde_json::json!({"keys": [{"kid": "kind-e2e.abc"}, {"kid": "other.def"}]});
        assert_eq!(cluster_kids(&jwks, "kind-e2e"), ["kind-e2e.abc"]);
        assert!(cluster_kids(&serde_json::json!({}), "kind-e2e").is_empty());
        let logs = "warning: something\n{\"outcome\": \"success\", \"claims\": {\"tid\": \"t\"}}\n";
        assert_eq!(client_report(logs).unwrap()["claims"]["tid"], "t");
        assert!(client_report("Traceback ...").is_err());
    }

    #[test]
    fn cluster_names_are_valid_and_differ() {
        let a = cluster_name();
        assert!(
            a.starts_with("idbind-e2e-") && a.len() == "idbind-e2e-".len() + 8,
            "{a}"
        );
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{a}"
        );
    }

    #[test]
    fn the_workloads_opt_in_like_any_pod() {
        let pod = client_pod("x", ALLOWED_SA, "success");
        let labels = pod.metadata.labels.unwrap_or_default();
        assert_eq!(
            labels.get(idbind_model::POD_USE_LABEL).map(String::as_str),
            Some("true")
        );
        let yaml = apps_manifests().unwrap();
        assert!(yaml.contains(&e2e::identity_resource_id()), "{yaml}");
        assert_eq!(yaml.matches("\n---\n").count(), 3, "{yaml}");
        assert!(
            azure_identity_version()
                .unwrap()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        );
    }
}
