//! Shared helpers: run the `idbind` binary with a clean environment, and clusters to run it against.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::assert::{Assert, OutputAssertExt};
use idbind_model::IdentityBinding;
use idbind_testkit::KubeEmulator;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, PostParams};

/// `idbind` with no kubeconfig, Azure or idbind variables from the environment and a HOME with
/// no ~/.kube/config.
pub fn idbind() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_idbind"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().to_string();
        if name == "KUBECONFIG" || name.starts_with("AZURE_") || name.starts_with("IDBIND_") {
            cmd.env_remove(&name);
        }
    }
    cmd.env("HOME", "/nonexistent-idbind-test-home");
    cmd.timeout(Duration::from_secs(120));
    cmd
}

/// Runs a command while the runtime's other workers keep the emulators serving (tests use the
/// multi-threaded runtime).
pub async fn run(cmd: &mut assert_cmd::Command) -> Output {
    tokio::task::block_in_place(|| cmd.output().expect("running idbind"))
}

/// Runs and returns the assertion helper.
pub async fn assert(cmd: &mut assert_cmd::Command) -> Assert {
    let out = run(cmd).await;
    out.assert()
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Both, for failure messages.
pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    )
}

/// A Kubernetes API emulator with the IdentityBinding CRD installed.
pub async fn kube_with_crd() -> KubeEmulator {
    let kube = KubeEmulator::start().await.expect("kube emulator");
    install_crd(&kube).await;
    kube
}

/// Installs the CRD.
pub async fn install_crd(kube: &KubeEmulator) {
    let crds: Api<CustomResourceDefinition> = Api::all(kube.client().unwrap());
    crds.create(&PostParams::default(), &IdentityBinding::crd())
        .await
        .expect("CRD");
}

/// A kubeconfig whose server is a loopback port nobody listens on.
pub fn unreachable_kubeconfig(dir: &Path) -> PathBuf {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let path = dir.join("kubeconfig-unreachable");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: https://127.0.0.1:{port}\n\
             users:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: gone\n  context:\n    cluster: gone\n    user: u\n\
             current-context: gone\n"
        ),
    )
    .unwrap();
    path
}

/// A closed loopback port.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The `--kubeconfig` flag for an emulator.
pub fn kube_flags(kube: &KubeEmulator) -> [String; 2] {
    [
        "--kubeconfig".to_owned(),
        kube.kubeconfig_path().display().to_string(),
    ]
}

/// Polls `check` every 20 ms until it returns `Some`, for up to 60 s.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
