//! `idbind rbac generate|who-can` through the binary, applied with kubectl to the Kubernetes API
//! emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{idbind, kube_flags, kube_with_crd, run, show, stderr, stdout};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, PostParams};

const CLIENT: &str = "22222222-2222-2222-2222-222222222222";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_rbac_applies_with_kubectl_and_who_can_reads_it_back() {
    let kube = kube_with_crd().await;

    let out = run(idbind().args([
        "rbac",
        "generate",
        "--client-id",
        CLIENT,
        "--allow",
        "apps/api",
        "--allow",
        "batch",
    ]))
    .await;
    assert!(out.status.success(), "{}", show(&out));
    let yaml = stdout(&out);
    assert_eq!(yaml.matches("---\n").count(), 2, "two documents:\n{yaml}");
    for want in [
        "kind: ClusterRole\n",
        "kind: ClusterRoleBinding\n",
        &format!("name: use-mi-{CLIENT}"),
        "cid.wi.aks.azure.com",
        "use-managed-identity",
        "system:serviceaccounts:batch",
        "app.kubernetes.io/managed-by: idbind",
    ] {
        assert!(yaml.contains(want), "missing {want:?} in\n{yaml}");
    }

    // kubectl accepts it as is.
    let applied = tokio::task::block_in_place(|| {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kube.kubeconfig_path())
            .args(["apply", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child.stdin.take().unwrap().write_all(yaml.as_bytes())?;
                child.wait_with_output()
            })
    });
    let applied = match applied {
        Ok(o) => o,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "kubectl is required under CI: {e}"
            );
            eprintln!("SKIP kubectl apply: {e}");
            return;
        }
    };
    assert!(
        applied.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let roles: Api<ClusterRole> = Api::all(kube.client().unwrap());
    assert!(roles.get(&format!("use-mi-{CLIENT}")).await.is_ok());

    // A second, hand-made binding of the same role to a user and a whole-cluster group.
    let crbs: Api<ClusterRoleBinding> = Api::all(kube.client().unwrap());
    crbs.create(
        &PostParams::default(),
        &ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some("extra".into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: format!("use-mi-{CLIENT}"),
            },
            subjects: Some(vec![Subject {
                kind: "User".into(),
                name: "alice".into(),
                api_group: Some("rbac.authorization.k8s.io".into()),
                ..Default::default()
            }]),
        },
    )
    .await
    .unwrap();

    let out = run(idbind().args(["rbac", "who-can", CLIENT]).args(kube_flags(&kube))).await;
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.starts_with("KIND            NAMESPACE  NAME"), "{text}");
    assert!(text.contains("Group           -          system:serviceaccounts:batch  every service account in namespace batch"), "{text}");
    assert!(
        text.contains(
            "ServiceAccount  apps       api                           service account api in namespace apps"
        ),
        "{text}"
    );
    assert!(
        text.contains("User            -          alice                         user alice"),
        "{text}"
    );
    // Not bound in this cluster: the proxy refuses everyone, and who-can says so.
    assert!(
        stderr(&out).contains(&format!(
            "warning: no IdentityBinding in this cluster has client id {CLIENT}"
        )),
        "{}",
        show(&out)
    );

    let out = run(idbind()
        .args(["rbac", "who-can", CLIENT, "-o", "json"])
        .args(kube_flags(&kube)))
    .await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["bindingReady"], false);
    let names: Vec<String> = json["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{} {}", s["kind"].as_str().unwrap(), s["name"].as_str().unwrap()))
        .collect();
    // Cluster admins (the emulator's bootstrap `system:masters` binding) may use anything.
    assert_eq!(
        names,
        [
            "Group system:masters",
            "Group system:serviceaccounts:batch",
            "ServiceAccount api",
            "User alice"
        ]
    );

    // An identity no workload may use: only cluster admins.
    let other = "33333333-3333-3333-3333-333333333333";
    let out = run(idbind().args(["rbac", "who-can", other]).args(kube_flags(&kube))).await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        stdout(&out),
        "KIND   NAMESPACE  NAME            MEANING\nGroup  -          system:masters  members of group system:masters\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_input_errors_are_usage_errors() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["rbac", "generate", "--client-id", "not-a-guid", "--allow", "apps"],
            "invalid client id \"not-a-guid\"",
        ),
        (
            &["rbac", "generate", "--client-id", CLIENT, "--allow", "apps/Bad"],
            "invalid service account name \"Bad\"",
        ),
        (&["rbac", "generate", "--client-id", CLIENT], "--allow <NS[/SA]>"),
        (&["rbac", "who-can", "nope"], "invalid client id \"nope\""),
    ];
    for (args, want) in cases {
        let out = run(idbind().args(args)).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(
            stderr(&out).contains(want),
            "{args:?}: missing {want:?}: {}",
            show(&out)
        );
    }
}
