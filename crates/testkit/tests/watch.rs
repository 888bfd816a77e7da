//! Watches as kube-runtime uses them: a reflector stays in sync across 1,000 writes, a 410 Gone
//! makes the watcher relist, streaming lists, bookmarks, selector transitions, raw event framing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::eventually;
use futures::{StreamExt, TryStreamExt};
use idbind_testkit::KubeEmulator;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{
    Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use parking_lot::Mutex;
use serde_json::json;

fn cm(name: &str, labels: &[(&str, &str)], value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        data: Some([("v".to_string(), value.to_string())].into()),
        ..Default::default()
    }
}

fn versions<'a>(items: impl Iterator<Item = &'a ConfigMap>) -> BTreeMap<String, String> {
    items
        .map(|c| (c.name_any(), c.resource_version().unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn reflector_stays_in_sync_across_1000_writes() {
    let emulator = KubeEmulator::builder()
        .bookmark_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let client = emulator.client().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..50 {
        api.create(&PostParams::default(), &cm(&format!("pre-{i}"), &[], "0"))
            .await
            .unwrap();
    }
    let (reader, writer) = reflector::store();
    // Small pages so the initial list paginates.
    let stream = reflector(
        writer,
        watcher(api.clone(), watcher::Config::default().page_size(7)),
    );
    let driver = tokio::spawn(stream.applied_objects().for_each(|_| async {}));
    reader.wait_until_ready().await.unwrap();

    let mut writes = 0;
    let mut i = 0;
    while writes < 1000 {
        // 97 is prime to 5, so every name sees creates, updates and deletes.
        let name = format!("cm-{}", i % 97);
        match i % 5 {
            0 | 1 => {
                if api
                    .create(&PostParams::default(), &cm(&name, &[], "new"))
                    .await
                    .is_ok()
                {
                    writes += 1;
                }
            }
            2 | 3 => {
                let patch = json!({"data": {"v": i.to_string()}});
                if api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .is_ok()
                {
                    writes += 1;
                }
            }
            _ => {
                if api.delete(&name, &DeleteParams::default()).await.is_ok() {
                    writes += 1;
                }
            }
        }
        i += 1;
    }
    let expected = versions(api.list(&ListParams::default()).await.unwrap().items.iter());
    assert!(expected.len() > 50);
    eventually("reflector matches the final list", || {
        let reader = reader.clone();
        let expected = expected.clone();
        async move {
            let state = reader.state();
            (versions(state.iter().map(Arc::as_ref)) == expected).then_some(())
        }
    })
    .await;
    driver.abort();
}

#[tokio::test]
async fn gone_makes_the_watcher_relist_and_recover() {
    let emulator = KubeEmulator::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(emulator.client().unwrap(), "default");
    api.create(
        &PostParams::default(),
        &cm("watched-1", &[("app", "watched")], "1"),
    )
    .await
    .unwrap();

    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = events.clone();
    // Without bookmarks, the watcher's resourceVersion only moves with its own (selected) objects.
    let config = watcher::Config::default()
        .labels("app=watched")
        .disable_bookmarks();
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api.clone(), config));
    let driver = tokio::spawn(stream.for_each(move |event| {
        let label = match event {
            Ok(watcher::Event::Init) => "init".to_string(),
            Ok(watcher::Event::InitDone) => "init-done".to_string(),
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => format!("apply {}", o.name_any()),
            Ok(watcher::Event::Delete(o)) => format!("delete {}", o.name_any()),
            Err(watcher::Error::WatchError(status)) => format!("error {}", status.code),
            Err(e) => format!("other error {e}"),
        };
        seen.lock().push(label);
        async {}
    }));
    reader.wait_until_ready().await.unwrap();

    // Unrelated writes move the global resourceVersion past the watcher's; then history is
    // compacted and the watch connection drops, so the watcher resumes from an expired version.
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("noise-{i}"), &[], "x"))
            .await
            .unwrap();
    }
    emulator.compact_history();
    emulator.disconnect_watches();
    eventually("410 then a relist", || {
        let events = events.clone();
        async move {
            let events = events.lock();
            let gone = events.iter().position(|e| e == "error 410")?;
            events[gone..].iter().any(|e| e == "init-done").then_some(())
        }
    })
    .await;

    // After recovering, new objects arrive.
    api.create(
        &PostParams::default(),
        &cm("watched-2", &[("app", "watched")], "2"),
    )
    .await
    .unwrap();
    eventually("new object seen", || {
        let reader = reader.clone();
        async move { (reader.state().len() == 2).then_some(()) }
    })
    .await;
    driver.abort();
}

#[tokio::test]
async fn raw_watch_framing_bookmarks_gone_and_selector_transitions() {
    let emulator = KubeEmulator::builder()
        .bookmark_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(emulator.client().unwrap(), "default");
    let created = api
        .create(&PostParams::default(), &cm("a", &[("app", "x")], "1"))
        .await
        .unwrap();
    let rv = created.resource_version().unwrap();

    // Label transitions become ADDED/DELETED for a selector watch; bookmarks carry a version.
    let mut stream = api
        .watch(
            &WatchParams {
                bookmarks: true,
                ..WatchParams::default().labels("app=x")
            },
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "y"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}})),
    )
    .await
    .unwrap();
    let mut kinds = Vec::new();
    let mut bookmark = None;
    while kinds.len() < 2 || bookmark.is_none() {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Deleted(o) => kinds.push(format!("deleted {}", o.labels()["app"])),
            WatchEvent::Added(o) => kinds.push(format!("added {}", o.labels()["app"])),
            WatchEvent::Modified(_) => kinds.push("modified".into()),
            WatchEvent::Bookmark(b) => bookmark = Some(b.metadata.resource_version),
            WatchEvent::Error(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(kinds, ["deleted y", "added x"]);
    assert!(bookmark.unwrap().parse::<u64>().unwrap() >= rv.parse::<u64>().unwrap());

    // A resourceVersion older than the history is an ERROR event with a 410 Expired Status.
    emulator.compact_history();
    let mut stream = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            assert!(
                status.message.starts_with("too old resource version"),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 410 error event, got {other:?}"),
    }

    // Watching from "0" starts with synthetic ADDED events for the current state.
    let mut stream = api.watch(&WatchParams::default(), "0").await.unwrap().boxed();
    assert!(matches!(stream.try_next().await.unwrap().unwrap(), WatchEvent::Added(o) if o.name_any() == "a"));

    // Deleted objects carry the deletion's resourceVersion.
    let before = emulator.resource_version();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    loop {
        if let WatchEvent::Deleted(o) = stream.try_next().await.unwrap().unwrap() {
            assert_eq!(o.resource_version().unwrap().parse::<u64>().unwrap(), before + 1);
            break;
        }
    }
}

#[tokio::test]
async fn streaming_lists_end_with_the_initial_events_bookmark() {
    let emulator = KubeEmulator::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(emulator.client().unwrap(), "default");
    for i in 0..3 {
        api.create(&PostParams::default(), &cm(&format!("s-{i}"), &[], "1"))
            .await
            .unwrap();
    }
    let (reader, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(api.clone(), watcher::Config::default().streaming_lists()),
    );
    let driver = tokio::spawn(stream.applied_objects().for_each(|_| async {}));
    reader.wait_until_ready().await.unwrap();
    assert_eq!(reader.state().len(), 3);
    api.create(&PostParams::default(), &cm("s-3", &[], "1"))
        .await
        .unwrap();
    eventually("live event after the streaming list", || {
        let reader = reader.clone();
        async move { (reader.state().len() == 4).then_some(()) }
    })
    .await;
    driver.abort();
}

#[tokio::test]
async fn watches_end_at_their_timeout() {
    let emulator = KubeEmulator::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(emulator.client().unwrap(), "default");
    api.create(&PostParams::default(), &cm("t", &[], "1"))
        .await
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap()
        .boxed();
    assert!(matches!(
        stream.try_next().await.unwrap(),
        Some(WatchEvent::Added(_))
    ));
    // The server closes the stream when timeoutSeconds elapse; the client sees its end.
    assert!(stream.try_next().await.unwrap().is_none());
}
