//! `idbind binding ...` against the Kubernetes API emulator, through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{idbind, kube_flags, kube_with_crd, run, show, stderr, stdout, wait_for};
use idbind_model::{
    FederatedCredentialStatus, IdentityBinding, IdentityBindingStatus, condition, set_condition,
};
use idbind_testkit::KubeEmulator;
use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

const ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/prod/providers/Microsoft.ManagedIdentity/userAssignedIdentities/payments";
const CLIENT: &str = "22222222-2222-2222-2222-222222222222";

/// Writes the status the controller would write for a bound identity.
async fn mark_ready(client: &kube::Client, name: &str) {
    let api: Api<IdentityBinding> = Api::all(client.clone());
    let b = api.get(name).await.unwrap();
    let generation = b.metadata.generation;
    let issuer = format!("https://issuer.example.com/11111111-1111-1111-1111-111111111111/{CLIENT}");
    let mut status = IdentityBindingStatus {
        identity_name: Some("payments".into()),
        client_id: Some(CLIENT.into()),
        object_id: Some("33333333-3333-3333-3333-333333333333".into()),
        tenant_id: Some("11111111-1111-1111-1111-111111111111".into()),
        oidc_issuer_url: Some(issuer.clone()),
        federated_credential: Some(FederatedCredentialStatus {
            name: "idbind".into(),
            issuer,
            subject: ID.to_lowercase(),
        }),
        observed_generation: generation,
        conditions: vec![],
    };
    for t in condition::ALL {
        set_condition(
            &mut status.conditions,
            t,
            true,
            "Bound",
            "",
            generation,
            jiff::Timestamp::now(),
        );
    }
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap();
}

async fn record_event(client: &kube::Client, name: &str, uid: Option<String>) {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.1")),
            namespace: Some("default".into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("idbind.dev/v1alpha1".into()),
            kind: Some("IdentityBinding".into()),
            name: Some(name.into()),
            uid,
            ..Default::default()
        },
        reason: Some("FederatedCredentialCreated".into()),
        message: Some("created federated identity credential idbind".into()),
        type_: Some("Normal".into()),
        last_timestamp: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::now(),
        )),
        reporting_component: Some("idbind-controller".into()),
        ..Default::default()
    };
    events.create(&PostParams::default(), &event).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_list_describe_delete() {
    let kube = kube_with_crd().await;
    let client = kube.client().unwrap();

    let out = run(idbind()
        .args([
            "binding",
            "create",
            "payments",
            "--identity",
            ID,
            "--allow",
            "apps/api",
            "--allow",
            "batch",
        ])
        .args(kube_flags(&kube)))
    .await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out), "identitybinding.idbind.dev/payments created\n");
    let stored: IdentityBinding = Api::all(client.clone()).get("payments").await.unwrap();
    assert_eq!(stored.spec.managed_identity.resource_id, ID);
    assert_eq!(stored.spec.allowed_subjects.len(), 2);

    // Before the controller: no Ready condition.
    let out = run(idbind()
        .args(["binding", "get", "payments"])
        .args(kube_flags(&kube)))
    .await;
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("NAME      IDENTITY  CLIENT ID  READY   AGE\n"),
        "{text}"
    );
    assert!(text.contains("payments  payments  <none>     <none>"), "{text}");

    // Again: already exists.
    let out = run(idbind()
        .args(["binding", "create", "payments", "--identity", ID])
        .args(kube_flags(&kube)))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("IdentityBinding \"payments\" already exists"),
        "{}",
        show(&out)
    );
    assert!(
        stderr(&out).contains("hint: inspect it with `idbind binding describe payments`"),
        "{}",
        show(&out)
    );

    mark_ready(&client, "payments").await;
    record_event(&client, "payments", stored.metadata.uid.clone()).await;

    let out = run(idbind()
        .args(["binding", "get", "payments", "-o", "json"])
        .args(kube_flags(&kube)))
    .await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"]["clientId"], CLIENT);
    assert_eq!(json["spec"]["allowedSubjects"][0]["namespace"], "apps");
    let out = run(idbind()
        .args(["binding", "get", "payments", "-o", "yaml"])
        .args(kube_flags(&kube)))
    .await;
    let yaml = stdout(&out);
    assert!(
        yaml.contains("clientId: 22222222-2222-2222-2222-222222222222"),
        "{yaml}"
    );
    assert!(yaml.contains("kind: IdentityBinding"), "{yaml}");

    let out = run(idbind()
        .args(["binding", "list", "-o", "wide"])
        .args(kube_flags(&kube)))
    .await;
    let text = stdout(&out);
    assert!(
        text.contains("ALLOWED") && text.contains("apps/api,batch"),
        "{text}"
    );
    assert!(
        text.contains(&format!("payments  payments  {CLIENT}  True")),
        "{text}"
    );
    assert!(text.contains("https://issuer.example.com/"), "{text}");
    let out = run(idbind().args(["ib", "ls", "-o", "yaml"]).args(kube_flags(&kube))).await;
    assert!(stdout(&out).contains("kind: List"), "{}", show(&out));

    let out = run(idbind()
        .args(["binding", "describe", "payments"])
        .args(kube_flags(&kube)))
    .await;
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    for want in [
        "Identity:             /subscriptions/",
        &format!("{:<22}{CLIENT}", "  Client ID:"),
        "Allowed subjects:     apps/api, batch",
        "Issuer URL:           https://issuer.example.com/11111111-1111-1111-1111-111111111111/",
        "Federated credential: idbind",
        &format!("{:<22}{}", "  Subject:", ID.to_lowercase()),
        "Ready:                True (Bound)",
        "  FederatedCredentialReady  True",
        "FederatedCredentialCreated",
        "created federated identity credential idbind",
        "idbind-controller",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }

    let out = run(idbind()
        .args(["binding", "delete", "payments"])
        .args(kube_flags(&kube)))
    .await;
    assert_eq!(
        stdout(&out),
        "identitybinding.idbind.dev/payments deleted\n",
        "{}",
        show(&out)
    );
    let out = run(idbind()
        .args(["binding", "get", "payments"])
        .args(kube_flags(&kube)))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("IdentityBinding \"payments\" not found"),
        "{}",
        show(&out)
    );
    assert!(
        stderr(&out).contains("hint: list the bindings: idbind binding list"),
        "{}",
        show(&out)
    );
    let out = run(idbind()
        .args(["binding", "delete", "payments", "--ignore-not-found"])
        .args(kube_flags(&kube)))
    .await;
    assert!(out.status.success(), "{}", show(&out));
    let out = run(idbind().args(["binding", "list"]).args(kube_flags(&kube))).await;
    assert!(out.status.success() && stdout(&out).is_empty(), "{}", show(&out));
    assert!(
        stderr(&out).contains("No IdentityBindings found."),
        "{}",
        show(&out)
    );
}

/// A stand-in controller: adds a finalizer and a Ready status to `name`, and removes the
/// finalizer once the binding is being deleted.
async fn fake_controller(client: kube::Client, name: &'static str) {
    let api: Api<IdentityBinding> = Api::all(client.clone());
    let b = wait_for("the binding", || async { api.get_opt(name).await.ok().flatten() }).await;
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["idbind.dev/cleanup"]}})),
    )
    .await
    .unwrap();
    drop(b);
    mark_ready(&client, name).await;
    wait_for("the deletion", || async {
        api.get_opt(name)
            .await
            .ok()
            .flatten()
            .filter(|b| b.metadata.deletion_timestamp.is_some())
    })
    .await;
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_delete_wait_for_the_controller() {
    let kube = kube_with_crd().await;
    let controller = tokio::spawn(fake_controller(kube.client().unwrap(), "payments"));
    let out = run(idbind()
        .args([
            "binding",
            "create",
            "payments",
            "--identity",
            ID,
            "--allow",
            "apps/api",
            "--wait",
        ])
        .args(kube_flags(&kube)))
    .await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        stdout(&out),
        format!("identitybinding.idbind.dev/payments ready (client id {CLIENT})\n")
    );
    // stderr is not a terminal here: no progress lines.
    assert!(stderr(&out).is_empty(), "{}", show(&out));

    let out = run(idbind()
        .args(["binding", "delete", "payments", "--wait"])
        .args(kube_flags(&kube)))
    .await;
    assert!(out.status.success(), "{}", show(&out));
    controller.await.unwrap();
    let api: Api<IdentityBinding> = Api::all(kube.client().unwrap());
    assert!(api.get_opt("payments").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_without_a_controller_times_out_with_status_5() {
    let kube = kube_with_crd().await;
    let out = run(idbind()
        .args([
            "binding",
            "create",
            "payments",
            "--identity",
            ID,
            "--wait",
            "--timeout",
            "1s",
        ])
        .args(kube_flags(&kube)))
    .await;
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("IdentityBinding \"payments\" was not Ready after 1s"),
        "{err}"
    );
    assert!(err.contains("is the controller running?"), "{err}");
    assert!(
        err.contains("hint: see why: idbind binding describe payments"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_usage_error_naming_the_input() {
    let kube = kube_with_crd().await;
    let vm = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm";
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["binding", "create", "b", "--identity", vm],
            &[
                "--identity <RESOURCE_ID>",
                "invalid Azure resource ID",
                "virtualMachines",
            ],
        ),
        (
            &["binding", "create", "b", "--identity", "payments"],
            &["invalid Azure resource ID \"payments\""],
        ),
        (
            &["binding", "create", "b", "--identity", ID, "--allow", "Team/api"],
            &["--allow <NS[/SA]>", "invalid namespace name \"Team\""],
        ),
        (
            &["binding", "create", "Bad_Name", "--identity", ID],
            &["invalid IdentityBinding name \"Bad_Name\""],
        ),
    ];
    for (args, wants) in cases {
        let out = run(idbind().args(args).args(kube_flags(&kube))).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        for want in wants {
            assert!(
                stderr(&out).contains(want),
                "{args:?}: missing {want:?}: {}",
                show(&out)
            );
        }
    }
    let api: Api<IdentityBinding> = Api::all(kube.client().unwrap());
    assert!(
        api.list(&Default::default()).await.unwrap().items.is_empty(),
        "nothing created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_and_context_handling() {
    let kube = kube_with_crd().await;
    let dir = tempfile::tempdir().unwrap();

    // A cluster that is not there: status 4, the server and context named, a hint.
    let gone = common::unreachable_kubeconfig(dir.path());
    for args in [
        &["binding", "list"][..],
        &["binding", "get", "x"],
        &["rbac", "who-can", CLIENT],
    ] {
        let out = run(idbind().args(args).arg("--kubeconfig").arg(&gone)).await;
        assert_eq!(out.status.code(), Some(4), "{args:?}: {}", show(&out));
        let err = stderr(&out);
        assert!(
            err.contains("cannot reach the Kubernetes API at https://127.0.0.1:"),
            "{err}"
        );
        assert!(err.contains("(context gone)"), "{err}");
        assert!(err.contains("hint: check that the cluster is running"), "{err}");
    }

    // KUBECONFIG is honoured like kubectl does, including a list of files.
    let other = dir.path().join("empty-config");
    std::fs::write(&other, "apiVersion: v1\nkind: Config\n").unwrap();
    let list = std::env::join_paths([kube.kubeconfig_path(), other.as_path()]).unwrap();
    let out = run(idbind().args(["binding", "list"]).env("KUBECONFIG", &list)).await;
    assert!(out.status.success(), "{}", show(&out));

    // The context named by --context must exist.
    let out = run(idbind()
        .args(["binding", "list", "--context", "nope"])
        .args(kube_flags(&kube)))
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("nope"), "{}", show(&out));
    assert!(
        stderr(&out).contains("kubectl config get-contexts"),
        "{}",
        show(&out)
    );
    // The emulator's own context works by name.
    let out = run(idbind()
        .args(["binding", "list", "--context", "idbind-emulator"])
        .args(kube_flags(&kube)))
    .await;
    assert!(out.status.success(), "{}", show(&out));

    // A kubeconfig file that does not exist.
    let out = run(idbind().args(["binding", "list", "--kubeconfig", "/nonexistent/kubeconfig"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("cannot read kubeconfig /nonexistent/kubeconfig"),
        "{}",
        show(&out)
    );

    // No kubeconfig at all, and not in a pod.
    let out = run(idbind().args(["binding", "list"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("no cluster configured"), "{}", show(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_the_crd_says_how_to_install_it() {
    let kube = KubeEmulator::start().await.unwrap();
    for args in [
        &["binding", "list"][..],
        &["binding", "create", "b", "--identity", ID],
        &["binding", "get", "b"],
    ] {
        let out = run(idbind().args(args).args(kube_flags(&kube))).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", show(&out));
        let err = stderr(&out);
        assert!(
            err.contains("the IdentityBinding CRD (identitybindings.idbind.dev) is not installed"),
            "{err}"
        );
        assert!(
            err.contains("hint: install it: kubectl apply -f deploy/crds/identitybindings.idbind.dev.yaml"),
            "{err}"
        );
    }
}
