//! `idbind fic ...` and `idbind issuer ...` against the Azure emulator and a loopback issuer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{idbind, run, show, stderr, stdout};
use idbind_emulator::{Emulator, EmulatorConfig, FicInfo, IdentityInfo};
use idbind_issuer::{ClusterName, DirectoryStore, KeySet, Publisher};
use idbind_model::{DEFAULT_FIC_NAME, ENTRA_FIC_AUDIENCE, IssuerBaseUrl};

/// The Azure emulator with an identity, its idbind FIC, and a loopback issuer publishing the keys
/// of cluster `east` (and `west`).
struct Azure {
    emulator: Emulator,
    identity: IdentityInfo,
    base: IssuerBaseUrl,
    publisher: Publisher,
    east: KeySet,
    west: KeySet,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Azure {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Azure {
    async fn start() -> Self {
        let emulator = idbind_emulator::start(EmulatorConfig::default()).await.unwrap();
        let identity = emulator
            .create_identity(&emulator.default_subscription(), "rg", "payments")
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(DirectoryStore::new(dir.path()).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = idbind_issuer::router(store.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let base = IssuerBaseUrl::parse(&format!("http://{addr}")).unwrap();
        let publisher = Publisher::new(store, base.clone());
        let now = jiff::Timestamp::now();
        let east = KeySet::generate(ClusterName::parse("east").unwrap(), now).unwrap();
        let west = KeySet::generate(ClusterName::parse("west").unwrap(), now).unwrap();
        let azure = Self {
            emulator,
            identity,
            base,
            publisher,
            east,
            west,
            server,
            _dir: dir,
        };
        azure.publish(&azure.east).await;
        azure.publish(&azure.west).await;
        azure
            .emulator
            .put_fic(&azure.identity.resource_id, &azure.idbind_fic())
            .unwrap();
        azure
    }

    fn issuer(&self) -> String {
        self.base
            .issuer_for(&self.identity.tenant_id, &self.identity.client_id)
    }

    fn idbind_fic(&self) -> FicInfo {
        FicInfo {
            name: DEFAULT_FIC_NAME.into(),
            issuer: self.issuer(),
            subject: self.identity.resource_id.to_lowercase(),
            audiences: vec![ENTRA_FIC_AUDIENCE.into()],
        }
    }

    async fn publish(&self, keys: &KeySet) {
        self.publisher
            .publish(
                &self.identity.tenant_id,
                &self.identity.client_id,
                keys.cluster(),
                &keys.published_keys(),
            )
            .await
            .unwrap();
    }

    async fn withdraw(&self, keys: &KeySet) {
        self.publisher
            .withdraw(&self.identity.tenant_id, &self.identity.client_id, keys.cluster())
            .await
            .unwrap();
    }

    fn id(&self) -> String {
        self.identity.resource_id.to_string()
    }

    /// ARM access as idbind's operator: the emulator's default principal.
    fn flags(&self) -> Vec<String> {
        let sp = self.emulator.default_principal();
        let base = self.emulator.base_url().to_owned();
        vec![
            "--azure-tenant-id".into(),
            sp.tenant_id.to_string(),
            "--azure-client-id".into(),
            sp.client_id.to_string(),
            "--azure-client-secret".into(),
            sp.client_secret,
            "--azure-authority-host".into(),
            base.clone(),
            "--arm-endpoint".into(),
            base,
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fic_list_and_safe_gc() {
    let azure = Azure::start().await;
    let id = azure.id();
    // Someone else's credential on the same identity.
    azure
        .emulator
        .put_fic(
            &azure.identity.resource_id,
            &FicInfo {
                name: "github-deploy".into(),
                issuer: "https://token.actions.githubusercontent.com".into(),
                subject: "repo:org/app:ref:refs/heads/main".into(),
                audiences: vec![ENTRA_FIC_AUDIENCE.into()],
            },
        )
        .unwrap();

    let out = run(idbind()
        .args(["fic", "list", "--identity", &id])
        .args(azure.flags()))
    .await;
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.starts_with("NAME           IDBIND  ISSUER"), "{text}");
    assert!(
        text.contains(&format!("idbind         yes     {}", azure.issuer())),
        "{text}"
    );
    assert!(
        text.contains("github-deploy  -       https://token.actions.githubusercontent.com"),
        "{text}"
    );
    assert!(
        text.contains("2/20 federated identity credentials used on identity payments"),
        "{text}"
    );

    let out = run(idbind()
        .args(["fic", "list", "--identity", &id, "-o", "json"])
        .args(azure.flags()))
    .await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["used"], 2);
    assert_eq!(json["limit"], 20);

    // Keys of east and west are published: gc keeps the credential and says why.
    let out = run(idbind()
        .args(["fic", "gc", "--identity", &id])
        .args(azure.flags()))
    .await;
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Kept federated identity credential idbind of identity payments"),
        "{text}"
    );
    assert!(
        text.contains("still holds keys of east (1 key), west (1 key)"),
        "{text}"
    );
    assert!(text.contains("idbind binding delete"), "{text}");
    assert_eq!(azure.emulator.fics(&azure.identity.resource_id).unwrap().len(), 2);

    // One cluster left: still kept.
    azure.withdraw(&azure.east).await;
    let out = run(idbind()
        .args(["fic", "gc", "--identity", &id])
        .args(azure.flags()))
    .await;
    assert!(
        stdout(&out).contains("still holds keys of west (1 key)"),
        "{}",
        show(&out)
    );

    // None left: a dry run says what it would do; the real run deletes only idbind's.
    azure.withdraw(&azure.west).await;
    let out = run(idbind()
        .args(["fic", "gc", "--identity", &id, "--dry-run"])
        .args(azure.flags()))
    .await;
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("Would delete federated identity credential idbind of identity payments"),
        "{}",
        show(&out)
    );
    assert!(stdout(&out).contains("holds no key"), "{}", show(&out));
    assert_eq!(azure.emulator.fics(&azure.identity.resource_id).unwrap().len(), 2);
    let out = run(idbind()
        .args(["fic", "gc", "--identity", &id])
        .args(azure.flags()))
    .await;
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("Deleted federated identity credential idbind"),
        "{}",
        show(&out)
    );
    let left: Vec<String> = azure
        .emulator
        .fics(&azure.identity.resource_id)
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(left, ["github-deploy"]);

    let out = run(idbind()
        .args(["fic", "list", "--identity", &id])
        .args(azure.flags()))
    .await;
    assert!(
        stdout(&out).contains("1/20 federated identity credentials used"),
        "{}",
        show(&out)
    );
    assert!(
        stdout(&out).contains("None of them is idbind's"),
        "{}",
        show(&out)
    );
    let out = run(idbind()
        .args(["fic", "gc", "--identity", &id])
        .args(azure.flags()))
    .await;
    assert!(
        stdout(&out).contains("has no idbind federated identity credential"),
        "{}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_refuses_when_the_issuer_cannot_be_read() {
    let azure = Azure::start().await;
    azure.server.abort();
    // Wait until the issuer no longer answers (the abort is processed by the runtime).
    let url = idbind_model::discovery_url(&azure.issuer());
    common::wait_for("the issuer to stop", || async {
        reqwest::get(&url).await.is_err().then_some(())
    })
    .await;
    let out = run(idbind()
        .args(["fic", "gc", "--identity", &azure.id()])
        .args(azure.flags()))
    .await;
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(
        stderr(&out).contains("cannot tell whether federated identity credential idbind is still used"),
        "{}",
        show(&out)
    );
    assert!(stderr(&out).contains("refusing to delete it"), "{}", show(&out));
    assert_eq!(azure.emulator.fics(&azure.identity.resource_id).unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arm_failures_name_the_input() {
    let azure = Azure::start().await;
    // Bad resource id: usage error.
    let out = run(idbind()
        .args(["fic", "list", "--identity", "/subscriptions/x/resourceGroups/rg"])
        .args(azure.flags()))
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out)
            .contains("invalid value '/subscriptions/x/resourceGroups/rg' for '--identity <RESOURCE_ID>'"),
        "{}",
        show(&out)
    );
    // An identity ARM does not have.
    let missing = azure.id().replace("payments", "ghost");
    for args in [&["fic", "list"][..], &["issuer", "show"], &["issuer", "verify"]] {
        let out = run(idbind()
            .args(args)
            .args(["--identity", &missing])
            .args(azure.flags()))
        .await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", show(&out));
        assert!(
            stderr(&out).contains("ARM has no user-assigned identity"),
            "{args:?}: {}",
            show(&out)
        );
        assert!(stderr(&out).contains("ghost"), "{args:?}: {}", show(&out));
    }
    // A wrong secret.
    let mut flags = azure.flags();
    let secret = flags.iter().position(|f| f == "--azure-client-secret").unwrap() + 1;
    flags[secret] = "wrong".into();
    let out = run(idbind()
        .args(["fic", "list", "--identity", &azure.id()])
        .args(&flags))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("no ARM token"), "{}", show(&out));
    assert!(
        stderr(&out).contains("hint: check --azure-tenant-id, --azure-client-id and --azure-client-secret"),
        "{}",
        show(&out)
    );
    // The standard AZURE_* variables work instead of flags.
    let sp = azure.emulator.default_principal();
    let out = run(idbind()
        .args([
            "fic",
            "list",
            "--identity",
            &azure.id(),
            "--arm-endpoint",
            azure.emulator.base_url(),
        ])
        .env("AZURE_TENANT_ID", sp.tenant_id.to_string())
        .env("AZURE_CLIENT_ID", sp.client_id.to_string())
        .env("AZURE_CLIENT_SECRET", &sp.client_secret)
        .env("AZURE_AUTHORITY_HOST", azure.emulator.base_url()))
    .await;
    assert!(out.status.success(), "{}", show(&out));
    // ARM unreachable: status 4.
    let dead = format!("http://127.0.0.1:{}", common::closed_port());
    let out = run(idbind()
        .args([
            "fic",
            "list",
            "--identity",
            &azure.id(),
            "--arm-endpoint",
            &dead,
            "--azure-authority-host",
            &dead,
        ])
        .args([
            "--azure-tenant-id",
            &sp.tenant_id.to_string(),
            "--azure-client-id",
            &sp.client_id.to_string(),
        ])
        .args(["--azure-client-secret", &sp.client_secret]))
    .await;
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(
        stderr(&out).contains("cannot reach Entra for an ARM token"),
        "{}",
        show(&out)
    );
    assert!(
        stderr(&out).contains("hint: check --azure-authority-host"),
        "{}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_show_lists_clusters_and_verify_passes() {
    let azure = Azure::start().await;
    let id = azure.id();
    let out = run(idbind()
        .args(["issuer", "show", "--identity", &id])
        .args(azure.flags()))
    .await;
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    for want in [
        format!("Issuer:                {}", azure.issuer()),
        "Federated credential:  idbind".to_owned(),
        format!("\"jwks_uri\": \"{}/openid/v1/jwks\"", azure.issuer()),
        "Clusters:              east (1), west (1)".to_owned(),
        format!("  east     {}  RS256  ", azure.east.signing_key().kid()),
    ] {
        assert!(text.contains(&want), "missing {want:?} in\n{text}");
    }
    assert!(
        !text.contains("unknown"),
        "idbind's publisher stamps every key:\n{text}"
    );
    let out = run(idbind()
        .args(["issuer", "show", "--identity", &id, "-o", "json"])
        .args(azure.flags()))
    .await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["clusters"]["east"], 1);
    assert_eq!(json["keys"].as_array().unwrap().len(), 2);
    let published = json["keys"][0]["publishedAt"]
        .as_str()
        .expect("a publication time");
    let published: jiff::Timestamp = published.parse().unwrap();
    assert!(published <= jiff::Timestamp::now(), "{published}");
    assert!(
        json["keys"][0]["age"].as_str().is_some_and(|a| a.ends_with('s')),
        "{json}"
    );

    let out = run(idbind()
        .args(["issuer", "verify", "--identity", &id])
        .args(azure.flags()))
    .await;
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    for check in [
        "fic",
        "fic-issuer",
        "fic-subject",
        "fic-audience",
        "discovery",
        "discovery-issuer",
        "jwks",
        "keys",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("[PASS] ") && l[7..].starts_with(&format!("{check} "))),
            "{check} passes:\n{text}"
        );
    }
    assert!(!text.contains("[FAIL]"), "{text}");
    // With the base URL given explicitly, the same.
    let out = run(idbind()
        .args([
            "issuer",
            "verify",
            "--identity",
            &id,
            "--issuer-base-url",
            azure.base.as_str(),
        ])
        .args(azure.flags()))
    .await;
    assert!(out.status.success(), "{}", show(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_verify_reports_every_mismatch() {
    let azure = Azure::start().await;
    let id = azure.id();
    // The FIC: a trailing slash on the issuer, the subject in the original case.
    let mut bad = azure.idbind_fic();
    bad.issuer = format!("{}/", azure.issuer());
    bad.subject = azure.identity.resource_id.to_string();
    azure.emulator.put_fic(&azure.identity.resource_id, &bad).unwrap();
    let out = run(idbind()
        .args(["issuer", "verify", "--identity", &id])
        .args(azure.flags()))
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("[FAIL] fic-issuer"), "{text}");
    assert!(text.contains("ends with '/'"), "{text}");
    assert!(text.contains("[FAIL] fic-subject"), "{text}");
    assert!(
        text.contains("differs from") && text.contains("in case only"),
        "{text}"
    );
    assert!(text.contains("[FAIL] discovery-issuer"), "{text}");
    assert!(text.contains("differ by a trailing slash"), "{text}");
    assert!(text.contains("fix:"), "{text}");

    // Back to the right FIC, but no cluster publishes any more: the JWKS is empty.
    azure
        .emulator
        .put_fic(&azure.identity.resource_id, &azure.idbind_fic())
        .unwrap();
    azure.withdraw(&azure.east).await;
    azure.withdraw(&azure.west).await;
    let out = run(idbind()
        .args(["issuer", "verify", "--identity", &id])
        .args(azure.flags()))
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(stdout(&out).contains("[FAIL] keys"), "{}", show(&out));
    assert!(stdout(&out).contains("the JWKS holds no key"), "{}", show(&out));
    let out = run(idbind()
        .args(["issuer", "show", "--identity", &id])
        .args(azure.flags()))
    .await;
    assert!(
        stdout(&out).contains("<none>: no cluster is bound any more"),
        "{}",
        show(&out)
    );

    // A base URL the credential does not name.
    let elsewhere = format!("http://127.0.0.1:{}", common::closed_port());
    let out = run(idbind()
        .args([
            "issuer",
            "verify",
            "--identity",
            &id,
            "--issuer-base-url",
            &elsewhere,
        ])
        .args(azure.flags()))
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        stdout(&out).contains("the issuer under --issuer-base-url"),
        "{}",
        show(&out)
    );

    // The issuer is down: discovery fails and the checks that need it are skipped.
    azure.server.abort();
    let url = idbind_model::discovery_url(&azure.issuer());
    common::wait_for("the issuer to stop", || async {
        reqwest::get(&url).await.is_err().then_some(())
    })
    .await;
    let out = run(idbind()
        .args(["issuer", "verify", "--identity", &id, "-o", "json"])
        .args(azure.flags()))
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = |name: &str| {
        json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(status("fic").as_deref(), Some("pass"));
    assert_eq!(status("discovery").as_deref(), Some("fail"));
    assert_eq!(status("jwks").as_deref(), Some("skip"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbound_identity_is_reported_as_such() {
    let azure = Azure::start().await;
    let unbound = azure
        .emulator
        .create_identity(&azure.emulator.default_subscription(), "rg", "lonely")
        .unwrap();
    let id = unbound.resource_id.to_string();
    for args in [&["issuer", "show"][..], &["issuer", "verify"]] {
        let out = run(idbind().args(args).args(["--identity", &id]).args(azure.flags())).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", show(&out));
        assert!(
            stderr(&out).contains("identity lonely is not bound by idbind"),
            "{args:?}: {}",
            show(&out)
        );
        assert!(
            stderr(&out)
                .contains("hint: bind it in a cluster (idbind binding create NAME --identity RESOURCE_ID)"),
            "{}",
            show(&out)
        );
    }
    // With a base URL, show finds nothing published there.
    let out = run(idbind()
        .args([
            "issuer",
            "show",
            "--identity",
            &id,
            "--issuer-base-url",
            azure.base.as_str(),
        ])
        .args(azure.flags()))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("nothing is published for identity lonely"),
        "{}",
        show(&out)
    );
    let out = run(idbind()
        .args(["fic", "list", "--identity", &id])
        .args(azure.flags()))
    .await;
    assert!(
        stdout(&out).contains("Identity lonely has no federated identity credentials."),
        "{}",
        show(&out)
    );
}
