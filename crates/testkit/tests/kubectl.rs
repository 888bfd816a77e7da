//! kubectl 1.32 against the emulator with its kubeconfig: get, get -o yaml, create -f, apply -f
//! (create then update), delete, get -w, explain for the IdentityBinding CRD, auth can-i (through
//! SelfSubjectAccessReview, protobuf-encoded by kubectl) and impersonation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::emulator_with_crd;
use idbind_testkit::{KubeEmulator, tools};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn kubectl() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.is_file());
    tools::require("kubectl", found)
}

fn example(path: &str) -> PathBuf {
    tools::workspace_root().join("deploy/examples").join(path)
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn run(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    let out = Command::new(kubectl)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", kubeconfig.parent().unwrap())
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn ok(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> String {
    let out = run(kubectl, kubeconfig, args).await;
    assert!(out.ok, "kubectl {args:?} failed: {}{}", out.stdout, out.stderr);
    out.stdout
}

#[tokio::test]
async fn create_get_apply_delete() {
    let Some(kubectl) = kubectl() else { return };
    let emulator = emulator_with_crd().await;
    let kc = emulator.kubeconfig_path();

    let created = ok(
        &kubectl,
        kc,
        &["create", "-f", example("identitybinding.yaml").to_str().unwrap()],
    )
    .await;
    assert_eq!(created.trim(), "identitybinding.idbind.dev/payments created");
    let table = ok(&kubectl, kc, &["get", "identitybindings"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "IDENTITY", "CLIENT", "ID", "READY", "AGE"]);
    assert!(table.lines().nth(1).unwrap().starts_with("payments"));
    assert!(
        ok(&kubectl, kc, &["get", "ib", "-o", "wide"])
            .await
            .contains("ISSUER")
    );

    let yaml = ok(&kubectl, kc, &["get", "ib", "payments", "-o", "yaml"]).await;
    let object: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(object["kind"], "IdentityBinding");
    assert_eq!(object["spec"]["allowedSubjects"][1]["serviceAccount"], "exporter");
    assert_eq!(object["metadata"]["generation"], 1);

    // apply: first creates, then updates from a changed file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ib.yaml");
    let original = std::fs::read_to_string(example("identitybinding.yaml"))
        .unwrap()
        .replace("name: payments", "name: applied");
    std::fs::write(&file, &original).unwrap();
    let first = ok(&kubectl, kc, &["apply", "-f", file.to_str().unwrap()]).await;
    assert_eq!(first.trim(), "identitybinding.idbind.dev/applied created");
    std::fs::write(
        &file,
        original.replace("serviceAccount: exporter", "serviceAccount: auditor"),
    )
    .unwrap();
    let second = ok(&kubectl, kc, &["apply", "-f", file.to_str().unwrap()]).await;
    assert_eq!(second.trim(), "identitybinding.idbind.dev/applied configured");
    let third = ok(&kubectl, kc, &["apply", "-f", file.to_str().unwrap()]).await;
    assert_eq!(third.trim(), "identitybinding.idbind.dev/applied unchanged");
    let applied = ok(
        &kubectl,
        kc,
        &[
            "get",
            "ib",
            "applied",
            "-o",
            "jsonpath={.spec.allowedSubjects[1].serviceAccount} {.metadata.generation}",
        ],
    )
    .await;
    assert_eq!(applied, "auditor 2");

    // Built-in kinds: create -f, apply with strategic merge, get -o yaml, delete.
    let cm = dir.path().join("cm.yaml");
    std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels: {app: web}\ndata:\n  a: \"1\"\n").unwrap();
    assert_eq!(
        ok(&kubectl, kc, &["apply", "-f", cm.to_str().unwrap()])
            .await
            .trim(),
        "configmap/settings created"
    );
    std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels: {app: web}\ndata:\n  b: \"2\"\n").unwrap();
    assert_eq!(
        ok(&kubectl, kc, &["apply", "-f", cm.to_str().unwrap()])
            .await
            .trim(),
        "configmap/settings configured"
    );
    let data = ok(&kubectl, kc, &["get", "cm", "settings", "-o", "jsonpath={.data}"]).await;
    assert_eq!(data, r#"{"b":"2"}"#, "apply removes keys dropped from the file");
    let cms = ok(&kubectl, kc, &["get", "cm", "-l", "app=web"]).await;
    assert!(
        cms.lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .starts_with(&["settings", "1"]),
        "{cms}"
    );

    let deleted = ok(&kubectl, kc, &["delete", "-f", file.to_str().unwrap()]).await;
    assert_eq!(deleted.trim(), "identitybinding.idbind.dev \"applied\" deleted");
    let gone = run(&kubectl, kc, &["get", "ib", "applied"]).await;
    assert!(!gone.ok);
    assert!(gone.stderr.contains("(NotFound)"), "{}", gone.stderr);
    ok(&kubectl, kc, &["delete", "cm", "settings"]).await;
}

#[tokio::test]
async fn invalid_examples_are_rejected() {
    let Some(kubectl) = kubectl() else { return };
    let emulator = emulator_with_crd().await;
    let kc = emulator.kubeconfig_path();
    let invalid = tools::workspace_root().join("deploy/examples/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&invalid)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 3);
    for file in &files {
        // Without strict field validation every example fails schema validation (422 Invalid).
        let out = run(
            &kubectl,
            kc,
            &["create", "--validate=false", "-f", file.to_str().unwrap()],
        )
        .await;
        assert!(!out.ok, "{} was accepted", file.display());
        assert!(
            out.stderr.contains(" is invalid: "),
            "{}: {}",
            file.display(),
            out.stderr
        );
    }
    // With kubectl's default (server-side strict validation), unknown fields are reported first
    // as a BadRequest, as kube-apiserver does.
    let strict = run(
        &kubectl,
        kc,
        &[
            "create",
            "-f",
            invalid.join("identitybinding-bad-subject.yaml").to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        strict
            .stderr
            .contains("strict decoding error: unknown field \"spec.allowedSubjects[0].team\""),
        "{}",
        strict.stderr
    );
    let missing = run(
        &kubectl,
        kc,
        &[
            "create",
            "-f",
            invalid
                .join("identitybinding-missing-identity.yaml")
                .to_str()
                .unwrap(),
        ],
    )
    .await;
    assert!(
        missing.stderr.contains("spec.managedIdentity: Required value"),
        "{}",
        missing.stderr
    );
    assert_eq!(ok(&kubectl, kc, &["get", "ib", "-o", "name"]).await, "");
}

#[tokio::test]
async fn get_watch_streams_changes() {
    let Some(kubectl) = kubectl() else { return };
    let emulator = KubeEmulator::start().await.unwrap();
    let kc = emulator.kubeconfig_path();
    ok(
        &kubectl,
        kc,
        &["create", "configmap", "first", "--from-literal=a=1"],
    )
    .await;
    let mut child = Command::new(&kubectl)
        .args(["get", "configmaps", "--watch", "--output-watch-events"])
        .env("KUBECONFIG", kc)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_matching = async |needle: &str| loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("kubectl get -w ended early");
        if line.contains(needle) {
            return line;
        }
    };
    let header = next_matching("NAME").await;
    assert!(header.starts_with("EVENT"), "{header}");
    assert!(next_matching("first").await.starts_with("ADDED"));
    ok(
        &kubectl,
        kc,
        &["create", "configmap", "second", "--from-literal=a=1"],
    )
    .await;
    assert!(next_matching("second").await.starts_with("ADDED"));
    ok(&kubectl, kc, &["label", "configmap", "second", "x=y"]).await;
    assert!(next_matching("second").await.starts_with("MODIFIED"));
    ok(&kubectl, kc, &["delete", "configmap", "second"]).await;
    assert!(next_matching("second").await.starts_with("DELETED"));
    child.kill().await.unwrap();
}

#[tokio::test]
async fn explain_identitybinding() {
    let Some(kubectl) = kubectl() else { return };
    let emulator = emulator_with_crd().await;
    let out = ok(
        &kubectl,
        emulator.kubeconfig_path(),
        &["explain", "identitybindings.spec"],
    )
    .await;
    assert!(out.contains("KIND:       IdentityBinding"), "{out}");
    assert!(out.contains("VERSION:    v1alpha1"), "{out}");
    assert!(out.contains("allowedSubjects\t<[]Object>"), "{out}");
    assert!(out.contains("managedIdentity\t<Object> -required-"), "{out}");
    let nested = ok(
        &kubectl,
        emulator.kubeconfig_path(),
        &["explain", "ib.spec.managedIdentity.resourceId"],
    )
    .await;
    assert!(nested.contains("Immutable"), "{nested}");
}

#[tokio::test]
async fn auth_can_i_through_self_subject_access_review() {
    let Some(kubectl) = kubectl() else { return };
    let emulator = KubeEmulator::start().await.unwrap();
    let kc = emulator.kubeconfig_path();
    assert_eq!(
        ok(&kubectl, kc, &["auth", "can-i", "create", "pods"])
            .await
            .trim(),
        "yes"
    );
    assert_eq!(ok(&kubectl, kc, &["auth", "can-i", "*", "*"]).await.trim(), "yes");

    let client = emulator.client().unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client, "default");
    sas.create(
        &PostParams::default(),
        &ServiceAccount {
            metadata: ObjectMeta {
                name: Some("bot".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let token = emulator.service_account_token("default", "bot", 3600).unwrap();
    let bot_kc = emulator.kubeconfig_for_token("bot", &token).unwrap();
    let denied = run(&kubectl, &bot_kc, &["auth", "can-i", "list", "configmaps"]).await;
    assert_eq!((denied.ok, denied.stdout.trim()), (false, "no"));
    let forbidden = run(&kubectl, &bot_kc, &["get", "configmaps"]).await;
    assert!(
        forbidden.stderr.contains("configmaps is forbidden: User \"system:serviceaccount:default:bot\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""),
        "{}",
        forbidden.stderr
    );
    let as_bot = [
        "auth",
        "can-i",
        "list",
        "configmaps",
        "--as=system:serviceaccount:default:bot",
    ];
    assert_eq!(run(&kubectl, kc, &as_bot).await.stdout.trim(), "no");

    ok(
        &kubectl,
        kc,
        &[
            "create",
            "role",
            "reader",
            "--verb=list,get",
            "--resource=configmaps",
        ],
    )
    .await;
    ok(
        &kubectl,
        kc,
        &[
            "create",
            "rolebinding",
            "bot-reader",
            "--role=reader",
            "--serviceaccount=default:bot",
        ],
    )
    .await;
    assert_eq!(
        ok(&kubectl, &bot_kc, &["auth", "can-i", "list", "configmaps"])
            .await
            .trim(),
        "yes"
    );
    assert_eq!(ok(&kubectl, kc, &as_bot).await.trim(), "yes");
    assert_eq!(
        run(
            &kubectl,
            &bot_kc,
            &["auth", "can-i", "list", "configmaps", "-n", "kube-system"]
        )
        .await
        .stdout
        .trim(),
        "no"
    );
    // The bot cannot impersonate anyone.
    let impersonating = run(&kubectl, &bot_kc, &["get", "configmaps", "--as=admin"]).await;
    assert!(
        impersonating
            .stderr
            .contains("cannot impersonate resource \"users\""),
        "{}",
        impersonating.stderr
    );
}
