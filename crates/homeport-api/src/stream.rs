//! Server-sent event streams for browsers: status events and live log lines.

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use homeport_types::{LogEntry, LogStreamItem};
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::errors::ApiError;
use crate::routes::{CancelOnDrop, LogParams, log_query};

fn json_event(name: &str, data: &impl serde::Serialize) -> SseEvent {
    SseEvent::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_default())
}

/// `snapshot` first, then every `event`; a browser that fell behind gets a fresh snapshot
/// (`resync`) instead of an ever-growing queue.
pub async fn events(
    State(st): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (snapshot, rx) = st.core.subscribe();
    let first = futures_util::stream::once(async move { Ok(json_event("snapshot", &snapshot)) });
    let core = st.core.clone();
    let shutdown = st.core.shutdown_signal();
    let rest = futures_util::stream::unfold((rx, core), |(mut rx, core)| async move {
        let ev = match rx.recv().await {
            Ok(ev) => json_event("event", &ev),
            Err(RecvError::Lagged(_)) => json_event("resync", &core.status()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(ev), (rx, core)))
    });
    Sse::new(first.chain(rest).take_until(shutdown)).keep_alive(KeepAlive::default())
}

/// `lines` events (JSON arrays, in batches) with the last `tail` lines first, then new ones;
/// `skipped` when the reader fell behind the log rotation.
pub async fn logs(
    State(st): State<AppState>,
    Query(p): Query<LogParams>,
) -> Result<Response, ApiError> {
    let (target, mut query) = log_query(&p)?;
    query.tail = Some(p.tail.unwrap_or(1000).min(100_000));
    let core = st.core.clone();
    let grep = query.grep.clone();
    let searching = CancelOnDrop::of(&query);
    let (history, cursor) =
        tokio::task::spawn_blocking(move || core.logs(&target, &query)).await??;
    drop(searching);
    let rx = st.core.follow(cursor, grep);
    let head = futures_util::stream::iter(
        history
            .chunks(2000)
            .map(|c| Ok::<_, Infallible>(json_event("lines", &c)))
            .collect::<Vec<_>>(),
    );
    let live = futures_util::stream::unfold(rx, |mut rx| async move {
        let mut batch: Vec<LogStreamItem> = Vec::with_capacity(1024);
        if rx.recv_many(&mut batch, 2000).await == 0 {
            return None;
        }
        let mut events = Vec::new();
        let mut lines: Vec<LogEntry> = Vec::new();
        for item in batch {
            match item {
                LogStreamItem::Line(l) => lines.push(l),
                LogStreamItem::Skipped { count } => {
                    if !lines.is_empty() {
                        events.push(Ok(json_event("lines", &std::mem::take(&mut lines))));
                    }
                    events.push(Ok(json_event(
                        "skipped",
                        &serde_json::json!({ "count": count }),
                    )));
                }
            }
        }
        if !lines.is_empty() {
            events.push(Ok(json_event("lines", &lines)));
        }
        Some((futures_util::stream::iter(events), rx))
    })
    .flatten();
    Ok(
        Sse::new(head.chain(live).take_until(st.core.shutdown_signal()))
            .keep_alive(KeepAlive::default())
            .into_response(),
    )
}
