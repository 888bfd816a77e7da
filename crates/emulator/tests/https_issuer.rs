//! Assertion issuers served over HTTPS: trusted through configured extra roots, refused otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use common::*;
use hyper_util::rt::{TokioExecutor, TokioIo};
use idbind_emulator::{EmulatorConfig, FicInfo};
use idbind_tls::CertificateAuthority;
use reqwest::StatusCode;
use serde_json::json;
use tower::ServiceExt as _;

/// Serves the discovery document and JWKS of `key` over HTTPS on loopback; returns the issuer URL.
async fn https_issuer(ca: &CertificateAuthority, key: &TestKey) -> (String, tokio::task::JoinHandle<()>) {
    let leaf = ca
        .issue_server_cert(&["localhost".to_owned()], &[], Duration::from_secs(3600))
        .unwrap();
    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(
        idbind_tls::server_config(&leaf.cert_pem, &leaf.key_pem).unwrap(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/issuer",
        listener.local_addr().unwrap().port()
    );
    let (u, jwk) = (url.clone(), key.jwk.clone());
    let app = Router::new()
        .route(
            "/issuer/.well-known/openid-configuration",
            get(move || {
                let u = u.clone();
                async move { Json(json!({"issuer": u, "jwks_uri": format!("{u}/openid/v1/jwks")})) }
            }),
        )
        .route(
            "/issuer/openid/v1/jwks",
            get(move || {
                let jwk = jwk.clone();
                async move { Json(json!({"keys": [jwk]})) }
            }),
        );
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (tls, app) = (tls.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(stream) = tls.accept(stream).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    app.clone().oneshot(req.map(axum::body::Body::new))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, task)
}

#[tokio::test]
async fn https_issuer_is_trusted_through_extra_roots_only() {
    let ca = CertificateAuthority::generate("issuer CA", Duration::from_secs(3600)).unwrap();
    let key = TestKey::generate("k1");
    let (url, task) = https_issuer(&ca, &key).await;
    // A test issuer object only used to mint assertions with our iss.
    let minter = TestIssuer::start().await;
    let assertion = minter.assertion_with(&key, &json!({"iss": url, "sub": "s"}));

    let trusting = idbind_emulator::start(EmulatorConfig {
        issuer_trust_roots_pem: vec![ca.cert_pem().to_owned()],
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let identity = trusting
        .create_identity(&trusting.default_subscription(), "rg", "uami")
        .unwrap();
    trusting
        .put_fic(&identity.resource_id, &FicInfo::new("idbind", &url, "s"))
        .unwrap();
    let (status, body) = exchange(&trusting, &identity, &assertion).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let untrusting = start().await;
    let identity = untrusting
        .create_identity(&untrusting.default_subscription(), "rg", "uami")
        .unwrap();
    untrusting
        .put_fic(&identity.resource_id, &FicInfo::new("idbind", &url, "s"))
        .unwrap();
    let (status, body) = exchange(&untrusting, &identity, &assertion).await;
    assert_entra_error(status, &body, 401, 50166);
    task.abort();
}
