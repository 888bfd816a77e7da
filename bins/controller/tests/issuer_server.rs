//! Issuer server mode: the controller serves its directory store over HTTP and HTTPS and
//! publishes into it; FIC garbage collection with --fic-gc=delete; two bindings of one identity.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Cluster, World, eventually, http_get};
use idbind_controller::runtime::RuntimeBuilder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_directory_store_over_http_and_https() {
    let world = World::start().await;
    let cluster = Cluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = tempfile::tempdir().unwrap();
    let ca = idbind_tls::CertificateAuthority::generate("issuer test CA", Duration::from_secs(3600)).unwrap();
    let leaf = ca
        .issue_server_cert(&["localhost".into()], &[], Duration::from_secs(3600))
        .unwrap();
    let (cert, key) = (tls_dir.path().join("tls.crt"), tls_dir.path().join("tls.key"));
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let d = dir.path().display().to_string();
    let mut args = world.args("solo", &["--issuer-dir", &d, "--issuer-listen", "127.0.0.1:0"]);
    args.issuer.issuer_store = None;
    let ctl = RuntimeBuilder::new(args)
        .client(cluster.client.clone())
        .start()
        .await
        .unwrap();
    let id = world.identity("local");
    cluster.bind("local", &id, &["team-a"]).await;
    cluster.wait_ready("local").await;
    let addr = ctl.issuer_addr().unwrap();
    let (code, body) = http_get(&format!(
        "http://{addr}/{}/{}/openid/v1/jwks",
        id.tenant_id, id.client_id
    ))
    .await;
    assert_eq!(code, 200);
    let kid = cluster.secret_kids().await.remove(0);
    assert!(body.contains(&kid), "{body}");
    let (code, body) = http_get(&format!(
        "http://{addr}/{}/{}/.well-known/openid-configuration",
        id.tenant_id, id.client_id
    ))
    .await;
    assert_eq!(code, 200);
    assert!(body.contains("jwks_uri"), "{body}");
    ctl.shutdown().await.unwrap();

    // The same store over HTTPS.
    let mut args = world.args(
        "solo",
        &[
            "--issuer-dir",
            &d,
            "--issuer-listen",
            "127.0.0.1:0",
            "--issuer-tls-cert",
            &cert.display().to_string(),
            "--issuer-tls-key",
            &key.display().to_string(),
        ],
    );
    args.issuer.issuer_store = None;
    let ctl = RuntimeBuilder::new(args)
        .client(cluster.client.clone())
        .start()
        .await
        .unwrap();
    let port = ctl.issuer_addr().unwrap().port();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let url = format!(
        "https://localhost:{port}/{}/{}/openid/v1/jwks",
        id.tenant_id, id.client_id
    );
    let body = client
        .get(&url)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains(&kid), "{body}");
    ctl.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fic_gc_delete_and_bindings_sharing_an_identity() {
    let world = World::start().await;
    let cluster = Cluster::start().await;
    let ctl = cluster
        .start_controller(world.args("east", &["--fic-gc", "delete"]))
        .await;
    let id = world.identity("twice");
    cluster.bind("first", &id, &["team-a"]).await;
    cluster.bind("second", &id, &["team-b"]).await;
    cluster.wait_ready("first").await;
    cluster.wait_ready("second").await;
    let kids = cluster.secret_kids().await;
    let crbs: kube::Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> =
        kube::Api::all(cluster.client.clone());
    let name = format!("use-mi-{}", id.client_id);
    let crb = eventually("RBAC with both bindings' subjects", || async {
        let crb = crbs.get(&name).await.unwrap();
        (crb.subjects.as_ref().map(Vec::len) == Some(2)).then_some(crb)
    })
    .await;
    assert_eq!(crb.metadata.owner_references.unwrap().len(), 2);

    // Deleting one binding keeps the keys, the FIC and the other binding's RBAC.
    cluster
        .bindings()
        .delete("first", &Default::default())
        .await
        .unwrap();
    cluster.wait_gone("first").await;
    assert_eq!(world.kids(&id).await, kids);
    assert_eq!(world.fics(&id).len(), 1);
    let crb = crbs.get(&name).await.unwrap();
    assert_eq!(crb.subjects.unwrap().len(), 1);

    // The last one goes: keys withdrawn and, no key being left, the FIC deleted.
    cluster
        .bindings()
        .delete("second", &Default::default())
        .await
        .unwrap();
    cluster.wait_gone("second").await;
    assert!(world.kids(&id).await.is_empty());
    assert!(
        world.fics(&id).is_empty(),
        "--fic-gc=delete removes the unused FIC"
    );
    assert!(crbs.get_opt(&name).await.unwrap().is_none());
    ctl.shutdown().await.unwrap();
}
