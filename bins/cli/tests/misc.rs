//! `idbind completions`, `idbind emulator`, help and exit statuses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::BufRead as _;

use common::{idbind, run, show, stderr, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_for_each_shell() {
    for (shell, want) in [
        ("bash", "_idbind()"),
        ("zsh", "#compdef idbind"),
        ("fish", "complete -c idbind"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = run(idbind().args(["completions", shell])).await;
        assert!(out.status.success(), "{shell}: {}", show(&out));
        let text = stdout(&out);
        assert!(text.contains(want), "{shell}: missing {want:?}");
        assert!(text.contains("who-can"), "{shell}: subcommands are completed");
    }
    let out = run(idbind().args(["completions", "tcsh"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("invalid value 'tcsh'"), "{}", show(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_documents_examples_and_exit_statuses() {
    let out = run(idbind().arg("--help")).await;
    assert!(out.status.success());
    let text = stdout(&out);
    for want in [
        "Examples:",
        "idbind doctor -n apps --service-account api",
        "Exit status:",
        "3  checks found problems",
        "5  timed out waiting",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    for sub in [
        &["binding", "create"][..],
        &["rbac", "who-can"],
        &["fic", "gc"],
        &["issuer", "verify"],
        &["token"],
        &["doctor"],
        &["emulator"],
        &["completions"],
    ] {
        let out = run(idbind().args(sub).arg("--help")).await;
        assert!(out.status.success(), "{sub:?}");
        assert!(stdout(&out).contains("Examples:"), "{sub:?} --help has examples");
    }
    // No subcommand: help on stderr and the usage status.
    let out = run(&mut idbind()).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let out = run(idbind().arg("frobnicate")).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("unrecognized subcommand 'frobnicate'"),
        "{}",
        show(&out)
    );
}

/// Kills the child when dropped.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_runs_in_the_foreground_and_prints_its_ready_line() {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_idbind"))
        .args(["emulator", "--listen", "127.0.0.1:0", "--no-throttle"])
        .env_remove("IDBIND_EMULATOR_LISTEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Kill(child);
    let stdout = child.0.stdout.take().unwrap();
    let line = tokio::task::block_in_place(|| {
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .unwrap();
    let info: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let base = info["baseUrl"].as_str().unwrap();
    assert!(base.starts_with("http://127.0.0.1:"), "{info}");
    assert_eq!(info["authorityHost"], info["baseUrl"]);

    // It is a working Entra: its default principal gets an ARM token.
    let token: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{base}/{}/oauth2/v2.0/token",
            info["tenantId"].as_str().unwrap()
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", info["clientId"].as_str().unwrap()),
            ("client_secret", info["clientSecret"].as_str().unwrap()),
            ("scope", "https://management.azure.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(token["token_type"], "Bearer", "{token}");

    // A bad flag value is a usage error naming it.
    let out = run(idbind().args(["emulator", "--listen", "nowhere"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("--listen <LISTEN>"), "{}", show(&out));
    let out = run(idbind().args(["emulator", "--seed", "/nonexistent/seed.yaml"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("/nonexistent/seed.yaml"), "{}", show(&out));
    drop(child);
}
