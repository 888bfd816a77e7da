//! The Azure Blob store against Azurite: CRUD, compare-and-swap, typed errors, concurrent
//! publishers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use idbind_issuer::{BlobAuth, BlobStore, ClusterName, Error, IssuerStore, Precondition, Publisher};
use idbind_model::IssuerBaseUrl;
use support::azurite::{Azurite, account_sas, account_sas_signed_with};

async fn azurite_with_container(container: &str) -> Option<(Azurite, BlobStore)> {
    let azurite = Azurite::start()?;
    azurite.create_container(&reqwest::Client::new(), container).await;
    let store = BlobStore::new(&azurite.container_url(container), BlobAuth::Sas(account_sas())).unwrap();
    Some((azurite, store))
}

#[tokio::test]
async fn read_write_delete_with_etags() {
    let Some((azurite, store)) = azurite_with_container("issuer").await else {
        return;
    };
    let path = "t/c/openid/v1/jwks";

    assert!(store.read(path).await.unwrap().is_none());
    let e1 = store
        .write(path, b"{\"keys\":[]}", Precondition::IfNoneMatch)
        .await
        .unwrap();
    let (bytes, etag) = store.read(path).await.unwrap().unwrap();
    assert_eq!(bytes, b"{\"keys\":[]}");
    assert_eq!(etag, e1);

    // Stored with the properties Entra sees.
    let raw = reqwest::get(format!(
        "{}/{path}?{}",
        azurite.container_url("issuer"),
        account_sas()
    ))
    .await
    .unwrap();
    assert_eq!(raw.headers()["content-type"], "application/json");
    assert_eq!(raw.headers()["cache-control"], "public, max-age=60");

    // Creating again loses (409 BlobAlreadyExists or 412).
    let err = store
        .write(path, b"x", Precondition::IfNoneMatch)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err}");

    let e2 = store
        .write(path, b"{\"keys\":[1]}", Precondition::IfMatch(e1.clone()))
        .await
        .unwrap();
    assert_ne!(e1, e2);
    let err = store
        .write(path, b"stale", Precondition::IfMatch(e1.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err}");
    assert_eq!(
        store.read(path).await.unwrap().unwrap().0,
        b"{\"keys\":[1]}",
        "a lost write changes nothing"
    );

    let err = store.delete(path, Precondition::IfMatch(e1)).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err}");
    store
        .delete(path, Precondition::IfMatch(e2.clone()))
        .await
        .unwrap();
    assert!(store.read(path).await.unwrap().is_none());
    store.delete(path, Precondition::Any).await.unwrap();
    let err = store
        .delete(path, Precondition::IfMatch(e2.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err}");
    let err = store
        .write(path, b"x", Precondition::IfMatch(e2))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err}");

    let e3 = store.write(path, b"any", Precondition::Any).await.unwrap();
    assert_eq!(store.read(path).await.unwrap().unwrap().1, e3);
}

#[tokio::test]
async fn storage_errors_carry_the_storage_code() {
    let Some((azurite, store)) = azurite_with_container("issuer").await else {
        return;
    };

    let forged = BlobStore::new(
        &azurite.container_url("issuer"),
        BlobAuth::Sas(account_sas_signed_with(b"wrong")),
    )
    .unwrap();
    let err = forged.write("a", b"x", Precondition::Any).await.unwrap_err();
    match &err {
        Error::Storage {
            status: 403,
            code,
            operation: "Put Blob",
            ..
        } => {
            assert_eq!(code, "AuthorizationFailure", "{err}");
        }
        other => panic!("expected a 403 storage error, got {other}"),
    }
    assert!(!err.is_transient());
    assert!(!err.to_string().contains("sig="), "{err}");

    let missing = BlobStore::new(&azurite.container_url("nope"), BlobAuth::Sas(account_sas())).unwrap();
    let err = missing.read("a").await.unwrap_err();
    assert!(
        matches!(&err, Error::Storage { status: 404, code, .. } if code == "ContainerNotFound"),
        "{err}"
    );
    let err = missing
        .write("a", b"x", Precondition::IfNoneMatch)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Storage { status: 404, code, .. } if code == "ContainerNotFound"),
        "{err}"
    );

    let err = store.read("../escape").await.unwrap_err();
    assert!(matches!(err, Error::InvalidPath { .. }), "{err}");
    drop(azurite);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_on_azurite_keep_every_cluster() {
    let Some((_azurite, store)) = azurite_with_container("issuer").await else {
        return;
    };
    let store: Arc<dyn IssuerStore> = Arc::new(store);
    support::concurrency::ten_publish_then_five_withdraw(store).await;
}

#[tokio::test]
async fn sas_url_form_works() {
    let Some((azurite, _)) = azurite_with_container("issuer").await else {
        return;
    };
    let store =
        BlobStore::from_sas_url(&format!("{}?{}", azurite.container_url("issuer"), account_sas())).unwrap();
    let publisher = Publisher::new(
        Arc::new(store),
        IssuerBaseUrl::parse("https://issuer.example.com").unwrap(),
    );
    let (t, c) = support::ids();
    let cluster = ClusterName::parse("one").unwrap();
    let out = publisher
        .publish(&t, &c, &cluster, &[support::fake_jwk("one.k")])
        .await
        .unwrap();
    assert!(out.jwks_written && out.discovery_written);
    assert!(
        !publisher
            .publish(&t, &c, &cluster, &[support::fake_jwk("one.k")])
            .await
            .unwrap()
            .changed()
    );
}
