//! The long-running-operation poller against a small mock of ARM's asynchronous protocol.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use idbind_arm::{ArmClient, ArmOptions, CloudConfig, Error, PUBLIC_ARM_SCOPE, StaticTokenCredential};
use idbind_model::ArmResourceId;
use serde_json::{Value, json};
use support::{MockServer, fast_policy};

const RESOURCE: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c/identityBindings/b";
const API: &str = "2026-04-01";

/// One scripted answer: status, headers, JSON body.
type Answer = (u16, Vec<(&'static str, String)>, Value);

/// A scripted ARM: each request takes the next answer; every request is recorded.
#[derive(Default)]
struct Script {
    answers: Vec<Answer>,
    seen: Vec<(Method, String, Option<String>)>,
}

async fn scripted(
    State(script): State<Arc<Mutex<Script>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut s = script.lock().unwrap();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    s.seen.push((method, uri.to_string(), auth));
    if s.answers.is_empty() {
        return (StatusCode::IM_A_TEAPOT, "script exhausted").into_response();
    }
    let (status, headers, body) = s.answers.remove(0);
    let mut resp = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    for (k, v) in headers {
        resp.headers_mut().insert(k, HeaderValue::from_str(&v).unwrap());
    }
    resp
}

async fn start(answers: impl FnOnce(&str) -> Vec<Answer>) -> (MockServer, ArmClient, Arc<Mutex<Script>>) {
    let script = Arc::new(Mutex::new(Script::default()));
    let server = MockServer::start(Router::new().fallback(scripted).with_state(script.clone())).await;
    script.lock().unwrap().answers = answers(&server.url);
    let cloud = CloudConfig::custom(&server.url, &server.url, PUBLIC_ARM_SCOPE).unwrap();
    let options = ArmOptions::default().lro_poll_interval(Duration::from_millis(1));
    let arm = ArmClient::with_options(
        cloud,
        Arc::new(StaticTokenCredential::new("tok")),
        fast_policy(),
        options,
    )
    .unwrap();
    (server, arm, script)
}

fn id() -> ArmResourceId {
    ArmResourceId::parse(RESOURCE).unwrap()
}

fn paths(script: &Arc<Mutex<Script>>) -> Vec<String> {
    script
        .lock()
        .unwrap()
        .seen
        .iter()
        .map(|(m, u, _)| format!("{m} {}", u.split('?').next().unwrap()))
        .collect()
}

#[tokio::test]
async fn put_polls_azure_async_operation_then_reads_the_resource() {
    let (_server, arm, script) = start(|base| {
        let op = format!("{base}/operations/op1?api-version={API}");
        vec![
            (
                201,
                vec![
                    ("azure-asyncoperation", op),
                    ("location", format!("{base}/ignored")),
                    ("retry-after", "0".into()),
                ],
                json!({"properties": {"provisioningState": "Creating"}}),
            ),
            (
                200,
                vec![("retry-after", "0".into())],
                json!({"status": "InProgress"}),
            ),
            (200, vec![], json!({"status": "Succeeded"})),
            (
                200,
                vec![],
                json!({"id": RESOURCE, "properties": {"provisioningState": "Succeeded"}}),
            ),
        ]
    })
    .await;
    let out = arm
        .put_resource(&id(), API, &json!({"properties": {}}))
        .await
        .unwrap();
    assert_eq!(out["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        paths(&script),
        [
            format!("PUT {RESOURCE}"),
            "GET /operations/op1".into(),
            "GET /operations/op1".into(),
            format!("GET {RESOURCE}")
        ]
    );
    assert!(
        script
            .lock()
            .unwrap()
            .seen
            .iter()
            .all(|(_, _, auth)| auth.as_deref() == Some("Bearer tok"))
    );
}

#[tokio::test]
async fn a_failed_operation_is_a_typed_error_with_its_code() {
    let (_server, arm, _script) = start(|base| {
        vec![
            (
                201,
                vec![("azure-asyncoperation", format!("{base}/operations/op2"))],
                json!({}),
            ),
            (
                200,
                vec![],
                json!({"status": "Failed", "error": {"code": "QuotaExceeded", "message": "no room"}}),
            ),
        ]
    })
    .await;
    let err = arm.put_resource(&id(), API, &json!({})).await.unwrap_err();
    match err {
        Error::OperationFailed {
            status,
            code,
            message,
            ..
        } => {
            assert_eq!(
                (status.as_str(), code.as_deref(), message.as_deref()),
                ("Failed", Some("QuotaExceeded"), Some("no room"))
            );
        }
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn canceled_is_terminal_too() {
    let (_server, arm, _script) = start(|base| {
        vec![
            (
                202,
                vec![("azure-asyncoperation", format!("{base}/operations/op3"))],
                json!({}),
            ),
            (200, vec![], json!({"status": "Canceled"})),
        ]
    })
    .await;
    let err = arm.delete_resource(&id(), API).await.unwrap_err();
    assert!(
        matches!(err, Error::OperationFailed { ref status, .. } if status == "Canceled"),
        "{err}"
    );
}

#[tokio::test]
async fn delete_polls_location_until_it_stops_answering_202() {
    let (_server, arm, script) = start(|base| {
        let loc = format!("{base}/locations/l1");
        vec![
            (
                202,
                vec![("location", loc), ("retry-after", "0".into())],
                Value::Null,
            ),
            (202, vec![("retry-after", "0".into())], Value::Null),
            (202, vec![], Value::Null),
            (204, vec![], Value::Null),
        ]
    })
    .await;
    assert!(arm.delete_resource(&id(), API).await.unwrap());
    assert_eq!(
        paths(&script),
        [
            format!("DELETE {RESOURCE}"),
            "GET /locations/l1".into(),
            "GET /locations/l1".into(),
            "GET /locations/l1".into()
        ]
    );
}

#[tokio::test]
async fn delete_of_nothing_is_false_and_synchronous_answers_need_no_polling() {
    let (_server, arm, script) = start(|_| {
        vec![
            (204, vec![], Value::Null),
            (200, vec![], json!({"id": RESOURCE, "name": "b"})),
        ]
    })
    .await;
    assert!(!arm.delete_resource(&id(), API).await.unwrap());
    let out = arm.put_resource(&id(), API, &json!({})).await.unwrap();
    assert_eq!(out["name"], "b");
    assert_eq!(script.lock().unwrap().seen.len(), 2);
}

#[tokio::test]
async fn status_urls_on_other_hosts_are_refused() {
    let (_server, arm, script) = start(|_| {
        vec![(
            201,
            vec![("azure-asyncoperation", "https://attacker.example/op".into())],
            json!({}),
        )]
    })
    .await;
    let err = arm.put_resource(&id(), API, &json!({})).await.unwrap_err();
    assert!(err.to_string().contains("another host"), "{err}");
    assert_eq!(
        script.lock().unwrap().seen.len(),
        1,
        "the token was not sent anywhere else"
    );
}

#[tokio::test]
async fn polling_gives_up_after_the_lro_timeout() {
    let script = Arc::new(Mutex::new(Script::default()));
    let server = MockServer::start(Router::new().fallback(scripted).with_state(script.clone())).await;
    let op = format!("{}/operations/slow", server.url);
    let mut answers = vec![(201, vec![("azure-asyncoperation", op)], json!({}))];
    for _ in 0..100 {
        answers.push((
            200,
            vec![("retry-after", "1".into())],
            json!({"status": "Running"}),
        ));
    }
    script.lock().unwrap().answers = answers;
    let cloud = CloudConfig::custom(&server.url, &server.url, PUBLIC_ARM_SCOPE).unwrap();
    let options = ArmOptions::default()
        .lro_poll_interval(Duration::from_millis(1))
        .lro_timeout(Duration::from_millis(200));
    let arm = ArmClient::with_options(
        cloud,
        Arc::new(StaticTokenCredential::new("t")),
        fast_policy(),
        options,
    )
    .unwrap();
    let err = arm.put_resource(&id(), API, &json!({})).await.unwrap_err();
    assert!(matches!(err, Error::OperationTimeout { polls: 1, .. }), "{err}");
}
