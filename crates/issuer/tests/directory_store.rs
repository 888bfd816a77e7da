//! The directory store: compare-and-swap (also across processes), atomic replace, path checks,
//! and concurrent publishers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use idbind_issuer::{DirectoryStore, Error, IssuerStore, Precondition};
use support::TempDir;

#[tokio::test]
async fn compare_and_swap() {
    let dir = TempDir::new("idbind-dir");
    let store = DirectoryStore::new(dir.path().join("issuer")).unwrap();
    let path = "t/c/.well-known/openid-configuration";

    assert!(store.read(path).await.unwrap().is_none());
    let e1 = store
        .write(path, b"one", Precondition::IfNoneMatch)
        .await
        .unwrap();
    assert_eq!(
        store.read(path).await.unwrap().unwrap(),
        (b"one".to_vec(), e1.clone())
    );
    assert_eq!(std::fs::read(store.root().join(path)).unwrap(), b"one");

    let err = store
        .write(path, b"x", Precondition::IfNoneMatch)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err}");
    let e2 = store
        .write(path, b"two", Precondition::IfMatch(e1.clone()))
        .await
        .unwrap();
    let err = store
        .write(path, b"x", Precondition::IfMatch(e1.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err}");
    assert_eq!(store.read(path).await.unwrap().unwrap().0, b"two");

    let err = store.delete(path, Precondition::IfMatch(e1)).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err}");
    store
        .delete(path, Precondition::IfMatch(e2.clone()))
        .await
        .unwrap();
    assert!(store.read(path).await.unwrap().is_none());
    store.delete(path, Precondition::Any).await.unwrap();
    let err = store
        .write(path, b"x", Precondition::IfMatch(e2))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err}");

    // ETags are content hashes: the same bytes have the same tag wherever they are.
    let a = store.write("a", b"same", Precondition::Any).await.unwrap();
    let b = store.write("b", b"same", Precondition::Any).await.unwrap();
    assert_eq!(a, b);
}

#[tokio::test]
async fn paths_cannot_escape_the_root() {
    let dir = TempDir::new("idbind-dir");
    let store = DirectoryStore::new(dir.path().join("root")).unwrap();
    std::fs::write(dir.path().join("secret"), b"outside").unwrap();
    for bad in [
        "../secret",
        "a/../../secret",
        "/etc/passwd",
        "a//b",
        ".idbind.lock",
        "a\\..\\b",
        "",
    ] {
        let err = store.read(bad).await.unwrap_err();
        assert!(matches!(err, Error::InvalidPath { .. }), "{bad}: {err}");
        let err = store.write(bad, b"x", Precondition::Any).await.unwrap_err();
        assert!(matches!(err, Error::InvalidPath { .. }), "{bad}: {err}");
        let err = store.delete(bad, Precondition::Any).await.unwrap_err();
        assert!(matches!(err, Error::InvalidPath { .. }), "{bad}: {err}");
    }
    assert_eq!(std::fs::read(dir.path().join("secret")).unwrap(), b"outside");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_whole_documents_only() {
    let dir = TempDir::new("idbind-dir");
    let store = Arc::new(DirectoryStore::new(dir.path()).unwrap());
    let a = vec![b'a'; 512 * 1024];
    let b = vec![b'b'; 256 * 1024];
    store.write("doc", &a, Precondition::Any).await.unwrap();
    let writer = {
        let (store, a, b) = (store.clone(), a.clone(), b.clone());
        tokio::spawn(async move {
            for i in 0..100 {
                store
                    .write("doc", if i % 2 == 0 { &b } else { &a }, Precondition::Any)
                    .await
                    .unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads < 100 {
        let (bytes, _) = store.read("doc").await.unwrap().unwrap();
        assert!(bytes == a || bytes == b, "a torn read of {} bytes", bytes.len());
        reads += 1;
    }
    writer.await.unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "doc" && name != ".idbind.lock")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_on_a_directory_keep_every_cluster() {
    let dir = TempDir::new("idbind-dir");
    let store: Arc<dyn IssuerStore> = Arc::new(DirectoryStore::new(dir.path()).unwrap());
    support::concurrency::ten_publish_then_five_withdraw(store).await;
}

const CHILD_DIR_ENV: &str = "IDBIND_TEST_CAS_CHILD_DIR";
const CHILD_INCREMENTS: u32 = 25;
const CHILDREN: u32 = 4;

/// Several processes increment one counter document through compare-and-swap; no increment is
/// lost, so the advisory lock really serializes read-compare-write across processes.
#[test]
fn compare_and_swap_across_processes() {
    let dir = TempDir::new("idbind-dir-procs");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..CHILDREN)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "cas_child_process",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(CHILD_DIR_ENV, dir.path())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a child process failed");
    }
    let count: u32 = std::fs::read_to_string(dir.path().join("counter"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(count, CHILDREN * CHILD_INCREMENTS);
}

/// The body of [`compare_and_swap_across_processes`]'s children; does nothing when run directly.
#[test]
fn cas_child_process() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let store = DirectoryStore::new(dir).unwrap();
        for _ in 0..CHILD_INCREMENTS {
            for attempt in 0.. {
                assert!(attempt < 100_000, "compare-and-swap never succeeded");
                let current = store.read("counter").await.unwrap();
                let (value, precondition) = match current {
                    Some((bytes, etag)) => (
                        String::from_utf8(bytes).unwrap().parse::<u32>().unwrap(),
                        Precondition::IfMatch(etag),
                    ),
                    None => (0, Precondition::IfNoneMatch),
                };
                match store
                    .write("counter", (value + 1).to_string().as_bytes(), precondition)
                    .await
                {
                    Ok(_) => break,
                    Err(Error::PreconditionFailed { .. }) => continue,
                    Err(e) => panic!("{e}"),
                }
            }
        }
    });
}
