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

/// Records the scopes it is asked for and hands out an Entra-shaped storage token. Azurite's
/// `--oauth basic` checks the token's issuer, audience and lifetime, not its signature.
#[derive(Debug)]
struct FakeEntraCredential {
    audience: &'static str,
    scopes: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl idbind_arm::Credential for FakeEntraCredential {
    async fn token(&self, scope: &str) -> idbind_arm::Result<idbind_arm::AccessToken> {
        use base64::Engine as _;
        self.scopes.lock().unwrap().push(scope.to_owned());
        let b64 =
            |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let now = jiff::Timestamp::now().as_second();
        let token = format!(
            "{}.{}.c2ln",
            b64(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
            b64(serde_json::json!({
                "aud": self.audience,
                "iss": "https://sts.windows.net/11111111-1111-1111-1111-111111111111/",
                "iat": now - 60, "nbf": now - 60, "exp": now + 3600,
                "oid": "33333333-3333-3333-3333-333333333333",
            })),
        );
        Ok(idbind_arm::AccessToken::new(
            token,
            jiff::Timestamp::from_second(now + 3600).unwrap(),
        ))
    }
}

#[tokio::test]
async fn bearer_tokens_against_azurite_over_https() {
    let dir = support::TempDir::new("idbind-azurite-tls");
    let ca =
        idbind_tls::CertificateAuthority::generate("azurite test CA", std::time::Duration::from_secs(3600))
            .unwrap();
    let leaf = ca
        .issue_server_cert(
            &[],
            &["127.0.0.1".parse().unwrap()],
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let Some(azurite) = Azurite::start_https(&cert, &key) else {
        return;
    };
    assert!(azurite.endpoint.starts_with("https://"), "{}", azurite.endpoint);
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    azurite.create_container(&http, "issuer").await;

    let credential = Arc::new(FakeEntraCredential {
        audience: "https://storage.azure.com",
        scopes: Default::default(),
    });
    let store = BlobStore::new(
        &azurite.container_url("issuer"),
        BlobAuth::Bearer(credential.clone()),
    )
    .unwrap()
    .with_http_client(http.clone());
    let etag = store
        .write("t/c/openid/v1/jwks", b"{\"keys\":[]}", Precondition::IfNoneMatch)
        .await
        .unwrap();
    assert_eq!(
        store.read("t/c/openid/v1/jwks").await.unwrap().unwrap(),
        (b"{\"keys\":[]}".to_vec(), etag.clone())
    );
    store
        .delete("t/c/openid/v1/jwks", Precondition::IfMatch(etag))
        .await
        .unwrap();
    assert!(
        credential
            .scopes
            .lock()
            .unwrap()
            .iter()
            .all(|s| s == "https://storage.azure.com/.default")
    );
    assert_eq!(
        credential.scopes.lock().unwrap().len(),
        3,
        "one token per request"
    );

    // Azurite really checks the token: one for another audience is refused.
    let wrong = Arc::new(FakeEntraCredential {
        audience: "https://management.azure.com",
        scopes: Default::default(),
    });
    let store = BlobStore::new(&azurite.container_url("issuer"), BlobAuth::Bearer(wrong))
        .unwrap()
        .with_http_client(http);
    let err = store.write("x", b"{}", Precondition::Any).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Storage {
                status: 401 | 403,
                ..
            }
        ),
        "{err}"
    );
}
