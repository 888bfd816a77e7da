//! Real clients get tokens through the proxy (issue 6, "Must show"): Python `azure-identity`
//! 1.27.0, JS `@azure/identity` 4.14.1, the Rust `azure_identity` 1.1.0-beta.1 and the AKS docs'
//! curl. Each is configured only by the `AZURE_*` variables a pod gets (PROTOCOL.md §1.2) and the
//! CA file, runs with an otherwise empty environment, and the token it receives must verify
//! against the Azure emulator's JWKS with the bound identity's `appid`, `oid` and `tid`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;

use idbind_testkit::tools;
use idbind_tests::{SCOPE, Stack};
use tokio::process::Command;

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_test_writer()
        .try_init();
}

/// A command with nothing in its environment but `PATH` and the pod's `AZURE_*` variables.
fn pod_command(stack: &Stack, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(stack.sdk_env());
    cmd.kill_on_drop(true);
    cmd
}

fn stdout_json(what: &str, output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    // libtest may print the child's line after "test rust_sdk_child ... ".
    let Some(line) = stdout
        .lines()
        .rev()
        .find_map(|l| l.find("{\"").map(|at| &l[at..]))
    else {
        panic!(
            "{what} printed no JSON line:\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    };
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{what} printed {line:?}: {e}"))
}

/// The token came from the proxy, verifies, and belongs to the bound identity.
async fn assert_served(stack: &Stack, token: &str) {
    stack.assert_identity_token(token).await.unwrap();
    let proxy = stack.proxy().unwrap();
    assert!(
        proxy.metrics.request_count("token", 200, "ok") >= 1,
        "the proxy served it"
    );
    assert_eq!(stack.entra_calls(), 1, "one exchange with Entra");
}

#[tokio::test]
async fn python_azure_identity_gets_a_token() {
    init_logs();
    let Some(python) = tools::require("Python with azure-identity (.tools/venv)", tools::python()) else {
        return;
    };
    let stack = Stack::start().await.unwrap();
    let script = tools::workspace_root().join("tests/python/get_token.py");
    // Two calls: the second is served by the SDK's own cache, not the proxy.
    let output = pod_command(&stack, &python)
        .arg(&script)
        .args([SCOPE, "2"])
        .output()
        .await
        .unwrap();
    let json = stdout_json("python get_token.py", &output);
    assert_served(&stack, json["token"].as_str().unwrap()).await;
    let now = jiff::Timestamp::now().as_second();
    assert!(
        json["expires_on"].as_i64().unwrap() > now + 3600,
        "expires_in was honoured: {json}"
    );
}

#[tokio::test]
async fn js_azure_identity_gets_a_token() {
    init_logs();
    let Some(node_modules) = tools::require(
        "npm packages in tests/js (@azure/identity)",
        tools::node_modules(),
    ) else {
        return;
    };
    assert!(
        node_modules.join("@azure/identity").is_dir(),
        "@azure/identity is installed"
    );
    let Some(node) = tools::require("node", which("node")) else {
        return;
    };
    let stack = Stack::start().await.unwrap();
    let script = tools::workspace_root().join("tests/js/get_token.mjs");
    let output = pod_command(&stack, node)
        .arg(&script)
        .arg(SCOPE)
        .output()
        .await
        .unwrap();
    let json = stdout_json("node get_token.mjs", &output);
    assert_served(&stack, json["token"].as_str().unwrap()).await;
}

/// Runs the Rust SDK in a child process (this test binary, running [`rust_sdk_child`]), since the
/// SDK reads its configuration from the process environment.
#[tokio::test]
async fn rust_azure_identity_gets_a_token() {
    init_logs();
    let stack = Stack::start().await.unwrap();
    let exe = std::env::current_exe().unwrap();
    let output = pod_command(&stack, exe)
        .args([
            "--exact",
            "rust_sdk_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("IDBIND_RUST_SDK_CHILD", "1")
        .output()
        .await
        .unwrap();
    let json = stdout_json("the Rust SDK child", &output);
    assert_served(&stack, json["token"].as_str().unwrap()).await;
}

#[tokio::test]
#[ignore = "run by rust_azure_identity_gets_a_token in a child process"]
async fn rust_sdk_child() {
    use azure_core::credentials::TokenCredential as _;
    use azure_identity::{WorkloadIdentityCredential, WorkloadIdentityCredentialOptions};

    if std::env::var_os("IDBIND_RUST_SDK_CHILD").is_none() {
        return;
    }
    let options = WorkloadIdentityCredentialOptions {
        enable_proxy: true,
        ..Default::default()
    };
    let credential = WorkloadIdentityCredential::new(Some(options)).unwrap();
    let token = credential.get_token(&[SCOPE], None).await.unwrap();
    println!("{}", serde_json::json!({ "token": token.token.secret() }));
}

#[tokio::test]
async fn curl_posts_to_root_like_the_aks_docs() {
    init_logs();
    let Some(curl) = tools::require("curl", which("curl")) else {
        return;
    };
    let stack = Stack::start().await.unwrap();
    let sni = stack.sni_name().to_owned();
    let port = stack.proxy_addr().port();
    let assertion = std::fs::read_to_string(stack.token_file()).unwrap();
    // azure-aks-docs identity-bindings.md "Acquire token", with the proxy's port for 443.
    let output = pod_command(&stack, curl)
        .arg("-sS")
        .arg(format!("https://{sni}:{port}"))
        .arg("--cacert")
        .arg(stack.ca_file())
        .arg("--resolve")
        .arg(format!("{sni}:{port}:127.0.0.1"))
        .args(["-d", "grant_type=client_credentials"])
        .args([
            "-d",
            "client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ])
        .args(["-d", "scope=https://management.azure.com//.default"])
        .arg("-d")
        .arg(format!("client_assertion={assertion}"))
        .arg("-d")
        .arg(format!("client_id={}", stack.client_id()))
        .output()
        .await
        .unwrap();
    let json = stdout_json("curl", &output);
    assert_eq!(json["token_type"], "Bearer");
    assert!(
        json["expires_in"].is_u64(),
        "expires_in is a JSON integer: {json}"
    );
    assert_served(&stack, json["access_token"].as_str().unwrap()).await;
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// With an authority host MSAL Node does not know, it first asks the proxy for instance and
/// tenant discovery (PROTOCOL.md §1.3), then posts to the `token_endpoint` of the document.
#[tokio::test]
async fn js_azure_identity_with_a_custom_authority_uses_the_discovery_routes() {
    init_logs();
    let Some(_) = tools::require(
        "npm packages in tests/js (@azure/identity)",
        tools::node_modules(),
    ) else {
        return;
    };
    let Some(node) = tools::require("node", which("node")) else {
        return;
    };
    let authority = "https://login.sovereign.example/";
    let stack = Stack::builder()
        .surface(move |c| c.advertised_authority = url::Url::parse(authority).unwrap())
        .start()
        .await
        .unwrap();
    let script = tools::workspace_root().join("tests/js/get_token.mjs");
    let output = pod_command(&stack, node)
        .env("AZURE_AUTHORITY_HOST", authority)
        .arg(&script)
        .arg(SCOPE)
        .output()
        .await
        .unwrap();
    let json = stdout_json("node get_token.mjs", &output);
    assert_served(&stack, json["token"].as_str().unwrap()).await;
    let metrics = &stack.proxy().unwrap().metrics;
    assert!(
        metrics.request_count("instance_discovery", 200, "ok") >= 1,
        "instance discovery went to the proxy"
    );
    assert!(
        metrics.request_count("openid_configuration", 200, "ok") >= 1,
        "tenant discovery went to the proxy"
    );
}
