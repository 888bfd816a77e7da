//! The HTTP handler serving a directory store: content types, cache headers, ETag/304, 404, 405.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use idbind_issuer::{ClusterName, DirectoryStore, IssuerStore, Precondition, Publisher, ServeOptions};
use idbind_model::IssuerBaseUrl;
use support::TempDir;
use tower::ServiceExt as _;

async fn call(
    router: &axum::Router,
    method: Method,
    uri: &str,
    inm: Option<&str>,
) -> http::Response<Vec<u8>> {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(tag) = inm {
        request = request.header(header::IF_NONE_MATCH, tag);
    }
    let response = router
        .clone()
        .oneshot(request.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes().to_vec())
}

async fn published() -> (TempDir, Arc<DirectoryStore>, String) {
    let dir = TempDir::new("idbind-serve");
    let store = Arc::new(DirectoryStore::new(dir.path()).unwrap());
    let publisher = Publisher::new(
        store.clone(),
        IssuerBaseUrl::parse("https://issuer.example.com").unwrap(),
    );
    let (t, c) = support::ids();
    let cluster = ClusterName::parse("east").unwrap();
    publisher
        .publish(&t, &c, &cluster, &[support::fake_jwk("east.k1")])
        .await
        .unwrap();
    (dir, store, format!("/{t}/{c}"))
}

#[tokio::test]
async fn documents_are_json_with_etag_and_cache_control() {
    let (_dir, store, prefix) = published().await;
    let router = idbind_issuer::router(store.clone());
    for doc in ["/.well-known/openid-configuration", "/openid/v1/jwks"] {
        let uri = format!("{prefix}{doc}");
        let response = call(&router, Method::GET, &uri, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "public, max-age=60");
        let etag = response.headers()[header::ETAG].to_str().unwrap().to_owned();
        let (stored, stored_etag) = store.read(uri.trim_start_matches('/')).await.unwrap().unwrap();
        assert_eq!(response.body(), &stored);
        assert_eq!(etag, stored_etag.as_str());
        serde_json::from_slice::<serde_json::Value>(response.body()).unwrap();

        let not_modified = call(&router, Method::GET, &uri, Some(&etag)).await;
        assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
        assert!(not_modified.body().is_empty());
        assert_eq!(not_modified.headers()[header::ETAG], etag.as_str());
        let listed = call(&router, Method::GET, &uri, Some(&format!("\"other\", W/{etag}"))).await;
        assert_eq!(listed.status(), StatusCode::NOT_MODIFIED);
        let stale = call(&router, Method::GET, &uri, Some("\"stale\"")).await;
        assert_eq!(stale.status(), StatusCode::OK);

        let head = call(&router, Method::HEAD, &uri, None).await;
        assert_eq!(head.status(), StatusCode::OK);
        assert!(head.body().is_empty());
        assert_eq!(head.headers()[header::CONTENT_TYPE], "application/json");
    }
}

#[tokio::test]
async fn a_changed_document_gets_a_new_etag() {
    let (_dir, store, prefix) = published().await;
    let router = idbind_issuer::router(store.clone());
    let uri = format!("{prefix}/openid/v1/jwks");
    let before = call(&router, Method::GET, &uri, None).await.headers()[header::ETAG].clone();
    store
        .write(uri.trim_start_matches('/'), b"{\"keys\":[]}", Precondition::Any)
        .await
        .unwrap();
    let after = call(&router, Method::GET, &uri, Some(before.to_str().unwrap())).await;
    assert_eq!(after.status(), StatusCode::OK);
    assert_ne!(after.headers()[header::ETAG], before);
    assert_eq!(after.body(), b"{\"keys\":[]}");
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405() {
    let (dir, store, prefix) = published().await;
    std::fs::write(dir.path().parent().unwrap().join("outside-the-store"), b"x").ok();
    let router = idbind_issuer::router(store);
    for uri in [
        "/",
        "/nope",
        &format!("{prefix}/openid/v1/missing"),
        "/.idbind.lock",
        "/../outside-the-store",
        "/%2e%2e/outside-the-store",
        "/a//b",
    ] {
        let response = call(&router, Method::GET, uri, None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uri}");
    }
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let response = call(&router, method.clone(), &format!("{prefix}/openid/v1/jwks"), None).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
}

#[tokio::test]
async fn max_age_is_configurable() {
    let (_dir, store, prefix) = published().await;
    let router = idbind_issuer::router_with(
        store,
        ServeOptions {
            max_age: Duration::from_secs(5),
        },
    );
    let response = call(&router, Method::GET, &format!("{prefix}/openid/v1/jwks"), None).await;
    assert_eq!(response.headers()[header::CACHE_CONTROL], "public, max-age=5");
}
