//! Bind → Ready with FIC, JWKS entry and RBAC; allowedSubjects changes; unbind withdraws keys and
//! removes RBAC while keeping the FIC; the admin port answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Cluster, World, eventually, http_get};
use idbind_controller::status::reason;
use idbind_model::condition;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_update_unbind() {
    let world = World::start().await;
    let cluster = Cluster::start().await;
    let ctl = cluster.start_controller(world.args("east", &[])).await;
    let id = world.identity("payments");

    cluster.bind("payments", &id, &["team-a/app"]).await;
    let b = cluster.wait_ready("payments").await;
    let status = b.status.clone().unwrap();
    assert_eq!(
        status.client_id.as_deref(),
        Some(id.client_id.to_string().as_str())
    );
    assert_eq!(
        status.object_id.as_deref(),
        Some(id.principal_id.to_string().as_str())
    );
    assert_eq!(
        status.tenant_id.as_deref(),
        Some(id.tenant_id.to_string().as_str())
    );
    assert_eq!(status.identity_name.as_deref(), Some("payments"));
    let issuer = format!("{}/{}/{}", world.issuer_base, id.tenant_id, id.client_id);
    assert_eq!(status.oidc_issuer_url.as_deref(), Some(issuer.as_str()));
    let fic = status.federated_credential.clone().unwrap();
    assert_eq!(
        (fic.name.as_str(), fic.issuer.as_str()),
        ("idbind", issuer.as_str())
    );
    assert_eq!(fic.subject, id.resource_id.to_lowercase());
    for t in condition::ALL {
        assert_eq!(b.condition(t).unwrap().status, "True", "{t}");
    }
    assert_eq!(b.finalizers(), ["idbind.dev/cleanup"]);

    // The FIC exists once on the identity, and this cluster's keys are in its JWKS.
    let fics = world.fics(&id);
    assert_eq!(fics.len(), 1);
    assert_eq!(
        (fics[0].issuer.as_str(), fics[0].subject.as_str()),
        (issuer.as_str(), fic.subject.as_str())
    );
    let secret_kids = cluster.secret_kids().await;
    assert_eq!(secret_kids.len(), 1);
    assert!(secret_kids[0].starts_with("east."));
    assert_eq!(world.kids(&id).await, secret_kids);
    let discovery = world
        .publisher()
        .read_discovery(&id.tenant_id, &id.client_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(discovery.issuer, issuer);

    // RBAC as AKS shapes it, owned by the binding.
    let name = format!("use-mi-{}", id.client_id);
    let roles: Api<ClusterRole> = Api::all(cluster.client.clone());
    let crbs: Api<ClusterRoleBinding> = Api::all(cluster.client.clone());
    let role = roles.get(&name).await.unwrap();
    let rule = &role.rules.unwrap()[0];
    assert_eq!(rule.verbs, ["use-managed-identity"]);
    assert_eq!(rule.resources.as_deref().unwrap(), [id.client_id.to_string()]);
    let crb = crbs.get(&name).await.unwrap();
    assert_eq!(
        crb.metadata.owner_references.as_ref().unwrap()[0].uid,
        b.metadata.uid.clone().unwrap()
    );
    let subjects = crb.subjects.unwrap();
    assert_eq!(
        (subjects[0].kind.as_str(), subjects[0].name.as_str()),
        ("ServiceAccount", "app")
    );

    // An Event says the binding became Ready.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(cluster.client.clone());
    eventually("a Bound event for the binding", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("Bound")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("payments")
            })
            .then_some(())
    })
    .await;

    // Changing allowedSubjects updates the binding's subjects.
    let patch = serde_json::json!({"spec": {"allowedSubjects": [{"namespace": "team-a"}, {"namespace": "team-b", "serviceAccount": "job"}]}});
    cluster
        .bindings()
        .patch("payments", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let crb = eventually("RBAC to follow allowedSubjects", || async {
        let crb = crbs.get(&name).await.unwrap();
        (crb.subjects.as_ref().map(Vec::len) == Some(2)).then_some(crb)
    })
    .await;
    let names: Vec<_> = crb
        .subjects
        .unwrap()
        .iter()
        .map(|s| (s.kind.clone(), s.name.clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("Group".to_owned(), "system:serviceaccounts:team-a".to_owned()),
            ("ServiceAccount".to_owned(), "job".to_owned())
        ]
    );
    cluster.wait_ready("payments").await;

    // Empty allowedSubjects: the generated RBAC goes, and the condition says RBAC is the user's.
    let patch = serde_json::json!({"spec": {"allowedSubjects": null}});
    cluster
        .bindings()
        .patch("payments", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    cluster
        .wait_condition("payments", condition::RBAC_READY, reason::RBAC_NOT_MANAGED)
        .await;
    assert!(crbs.get_opt(&name).await.unwrap().is_none());
    assert!(roles.get_opt(&name).await.unwrap().is_none());
    let patch = serde_json::json!({"spec": {"allowedSubjects": [{"namespace": "team-a"}]}});
    cluster
        .bindings()
        .patch("payments", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("RBAC back", || async { crbs.get_opt(&name).await.unwrap() }).await;

    // The admin port.
    let admin = format!("http://{}", ctl.admin_addr());
    assert_eq!(http_get(&format!("{admin}/healthz")).await.0, 200);
    let (code, body) = http_get(&format!("{admin}/readyz")).await;
    assert_eq!(code, 200, "{body}");
    let (code, metrics) = http_get(&format!("{admin}/metrics")).await;
    assert_eq!(code, 200);
    for want in [
        "idbind_controller_reconciles_total{result=\"success\"}",
        "idbind_controller_reconcile_duration_seconds_bucket",
        "idbind_controller_arm_requests_total{operation=\"get_identity\",status=\"200\"}",
        "idbind_controller_fic_writes_total{operation=\"create\",result=\"success\"} 1",
        "idbind_controller_jwks_writes_total{operation=\"publish\",result=\"success\"}",
        "idbind_controller_leader 1",
        "idbind_controller_bindings_ready 1",
    ] {
        assert!(metrics.contains(want), "missing {want} in\n{metrics}");
    }

    // Unbind: keys withdrawn, RBAC gone, FIC retained (default --fic-gc=retain).
    cluster
        .bindings()
        .delete("payments", &DeleteParams::default())
        .await
        .unwrap();
    cluster.wait_gone("payments").await;
    assert!(world.kids(&id).await.is_empty(), "keys left in the JWKS");
    assert!(crbs.get_opt(&name).await.unwrap().is_none());
    assert!(roles.get_opt(&name).await.unwrap().is_none());
    assert_eq!(world.fics(&id).len(), 1, "the FIC is retained");
    let (_, metrics) = http_get(&format!("{admin}/metrics")).await;
    assert!(
        metrics.contains("idbind_controller_jwks_writes_total{operation=\"withdraw\",result=\"success\"} 1")
    );

    ctl.shutdown().await.unwrap();
}
