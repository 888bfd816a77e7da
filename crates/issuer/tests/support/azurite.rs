//! Starting Azurite's Blob service on a free loopback port, and account SAS tokens for it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::TempDir;

/// Azurite's well-known development account.
pub const ACCOUNT: &str = "devstoreaccount1";
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const SAS_VERSION: &str = "2021-08-06";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `azurite-blob`, killed on drop.
pub struct Azurite {
    child: Child,
    /// `http(s)://127.0.0.1:<port>`.
    pub endpoint: String,
    _dir: TempDir,
}

impl Azurite {
    /// Starts Azurite over HTTP, or returns `None` (test skipped) when it is not installed
    /// outside CI. Under CI a missing Azurite fails the test.
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// Starts Azurite over HTTPS with OAuth (`--oauth basic`), using a PEM certificate and key.
    pub fn start_https(cert: &Path, key: &Path) -> Option<Self> {
        let cert = cert.to_str().unwrap().to_owned();
        let key = key.to_str().unwrap().to_owned();
        Self::start_with(&["--cert", &cert, "--key", &key, "--oauth", "basic"])
    }

    fn start_with(extra: &[&str]) -> Option<Self> {
        let bin = idbind_testkit::tools::require(
            "Azurite (npm package azurite)",
            idbind_testkit::tools::node_bin("azurite-blob"),
        )?;
        let dir = TempDir::new("idbind-azurite");
        // Port 0: the OS picks a free port and Azurite prints the address it listens on.
        let mut child = Command::new(bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", "0", "--silent"])
            .args(["--disableTelemetry", "--location"])
            .arg(dir.path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning azurite-blob");
        let stdout = child.stdout.take().expect("azurite stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.split("successfully listens on ").nth(1) {
                    let _ = tx.send(address.trim().to_owned());
                }
            }
        });
        match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(endpoint) => Some(Self {
                child,
                endpoint,
                _dir: dir,
            }),
            Err(e) => {
                let _ = child.kill();
                let status = child.wait();
                panic!("Azurite did not report its listening address ({e}; exit status {status:?})");
            }
        }
    }

    /// The URL of a container (path style, as Azurite wants).
    pub fn container_url(&self, container: &str) -> String {
        format!("{}/{ACCOUNT}/{container}", self.endpoint)
    }

    /// Creates a container with the account SAS.
    pub async fn create_container(&self, http: &reqwest::Client, container: &str) {
        let url = format!(
            "{}?restype=container&{}",
            self.container_url(container),
            account_sas()
        );
        let response = http
            .put(url)
            .header("x-ms-version", SAS_VERSION)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201, "{:?}", response.text().await);
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An account SAS for the development account: blob service, all resource types, read, write,
/// delete, list, add, create; valid until 2099.
pub fn account_sas() -> String {
    account_sas_signed_with(&STANDARD.decode(ACCOUNT_KEY).unwrap())
}

/// The same SAS signed with another key (Azurite rejects it).
pub fn account_sas_signed_with(key: &[u8]) -> String {
    let (permissions, services, resource_types, expiry) = ("rwdlac", "b", "sco", "2099-01-01T00:00:00Z");
    let string_to_sign = [
        ACCOUNT,
        permissions,
        services,
        resource_types,
        "",
        expiry,
        "",
        "",
        SAS_VERSION,
        "",
        "",
    ]
    .join("\n");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let signature = STANDARD.encode(aws_lc_rs::hmac::sign(&key, string_to_sign.as_bytes()).as_ref());
    let signature: String = url::form_urlencoded::byte_serialize(signature.as_bytes()).collect();
    format!(
        "sv={SAS_VERSION}&ss={services}&srt={resource_types}&sp={permissions}&se={expiry}&sig={signature}"
    )
}
