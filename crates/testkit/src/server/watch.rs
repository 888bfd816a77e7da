//! Watch streams: newline-delimited JSON watch events (`{"type": ..., "object": ...}`), with
//! bookmarks, timeouts, 410 Gone as an ERROR event, and the same renderings as other reads.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::cluster::{WatchFilter, WatchStart};
use crate::registry::ResourceType;
use crate::table::{Rendering, partial_metadata, table};

/// How watch events are rendered.
#[derive(Clone, Debug)]
pub struct WatchRendering {
    /// Object, Table or PartialObjectMetadata.
    pub rendering: Rendering,
    /// `includeObject` for Tables.
    pub include_object: String,
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn render(rt: &ResourceType, object: Value, how: &WatchRendering) -> Value {
    match how.rendering {
        Rendering::Object => object,
        Rendering::Metadata => partial_metadata(&object),
        Rendering::Table => {
            let rv = object["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            table(rt, &[object], &rv, &how.include_object, None)
        }
    }
}

fn bookmark(rt: &ResourceType, rv: u64, initial_end: bool) -> Value {
    let mut object = json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": {"resourceVersion": rv.to_string(), "creationTimestamp": null}});
    if initial_end {
        object["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    object
}

/// The streaming response of a watch.
pub fn respond(
    start: WatchStart,
    how: WatchRendering,
    timeout: Duration,
    bookmarks: bool,
    bookmark_interval: Duration,
    shutdown: CancellationToken,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    tokio::spawn(run(
        start,
        how,
        timeout,
        bookmarks,
        bookmark_interval,
        shutdown,
        tx,
    ));
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(body)
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

async fn run(
    start: WatchStart,
    how: WatchRendering,
    timeout: Duration,
    bookmarks: bool,
    bookmark_interval: Duration,
    shutdown: CancellationToken,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
) {
    let (initial, initial_end_bookmark, mut position, subscription, filter) = match start {
        WatchStart::Expired(err) => {
            let _ = tx.send(Ok(line("ERROR", &err.to_status()))).await;
            return;
        }
        WatchStart::Stream {
            initial,
            initial_end_bookmark,
            position,
            subscription,
            filter,
        } => (initial, initial_end_bookmark, position, subscription, filter),
    };
    let rt: Arc<ResourceType> = filter.resource_type().clone();
    for object in initial {
        if tx
            .send(Ok(line("ADDED", &render(&rt, object, &how))))
            .await
            .is_err()
        {
            return;
        }
    }
    if initial_end_bookmark
        && tx
            .send(Ok(line("BOOKMARK", &bookmark(&rt, position, true))))
            .await
            .is_err()
    {
        return;
    }
    for change in subscription.backlog {
        if !send_change(&tx, &filter, &rt, &how, &change, &mut position).await {
            return;
        }
    }
    let mut live = subscription.live;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(bookmark_interval.max(Duration::from_millis(10)));
    ticker.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = &mut deadline => return,
            () = tx.closed() => return,
            _ = ticker.tick(), if bookmarks => {
                if tx.send(Ok(line("BOOKMARK", &bookmark(&rt, position, false)))).await.is_err() {
                    return;
                }
            }
            received = live.recv() => match received {
                Ok(change) => {
                    if !send_change(&tx, &filter, &rt, &how, &change, &mut position).await {
                        return;
                    }
                }
                // A watcher that falls this far behind is closed; the client resumes from its last
                // resourceVersion (or relists after 410 Gone), as with the real server.
                Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

async fn send_change(
    tx: &mpsc::Sender<Result<Bytes, Infallible>>,
    filter: &WatchFilter,
    rt: &ResourceType,
    how: &WatchRendering,
    change: &crate::store::Change,
    position: &mut u64,
) -> bool {
    if change.rv <= *position {
        return true;
    }
    *position = change.rv;
    match filter.translate(change) {
        Some((kind, object)) => tx.send(Ok(line(kind, &render(rt, object, how)))).await.is_ok(),
        None => true,
    }
}
