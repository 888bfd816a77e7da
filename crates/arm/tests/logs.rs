//! What the client logs: a span per operation with the resource ID and ARM's request id, and
//! never a token or a secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use idbind_arm::{Credential, PUBLIC_ARM_SCOPE};
use idbind_emulator::{Fault, Route};
use support::{Env, principal_credential};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn operations_log_resource_and_request_ids_but_no_secrets() {
    let env = Env::start().await;
    let id = env.identity_id("logged");
    env.emu
        .create_identity(id.subscription(), id.resource_group(), id.name())
        .unwrap();
    env.emu
        .set_fault(Route::ArmIdentityGet, Fault::fail_next_with(1, 503));

    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    env.arm.get_identity(&id).await.unwrap();
    env.arm.list_fics(&id).await.unwrap();
    drop(guard);

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("op=\"get_identity\""), "{logs}");
    assert!(logs.contains(&format!("resource={id}")), "{logs}");
    assert!(logs.contains("status=503") && logs.contains("retrying"), "{logs}");
    // `request_id=<uuid>` in the operation span (not `client_request_id`, which we send).
    let request_id = logs
        .match_indices("request_id=")
        .filter(|(i, _)| !logs[..*i].ends_with("client_"))
        .map(|(i, m)| {
            logs[i + m.len()..]
                .split([' ', '}', ':', '\n'])
                .next()
                .unwrap_or_default()
        })
        .find(|v| !v.is_empty())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(request_id.len(), 36, "ARM's request id is in the span: {logs}");

    let token = principal_credential(&env.emu)
        .token(PUBLIC_ARM_SCOPE)
        .await
        .unwrap();
    let secret = env.emu.default_principal().client_secret;
    assert!(
        !logs.contains(token.secret.expose()),
        "the access token was logged"
    );
    let signature = token.secret.expose().rsplit('.').next().unwrap();
    assert!(!logs.contains(signature), "part of the access token was logged");
    assert!(!logs.contains(&secret), "the client secret was logged");
}
