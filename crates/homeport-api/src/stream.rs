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

/// A snapshot as the stream sends it: with its verdict.
fn report(snapshot: homeport_types::StatusSnapshot) -> homeport_types::StatusReport {
    homeport_types::StatusReport {
        overall: snapshot.overall(),
        snapshot,
    }
}

/// `snapshot` (with the verdict) first, then every `event`, and `overall` (the verdict) whenever
/// a service's change alters it; a browser that fell behind gets a fresh snapshot (`resync`)
/// instead of an ever-growing queue.
pub async fn events(
    State(st): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (snapshot, rx) = st.core.subscribe();
    let core = st.core.clone();
    let shutdown = st.core.shutdown_signal();
    let verdict = Some(snapshot.overall());
    let first =
        futures_util::stream::once(async move { Ok(json_event("snapshot", &report(snapshot))) });
    let rest = futures_util::stream::unfold(
        (rx, core, verdict),
        |(mut rx, core, mut verdict)| async move {
            let mut out = Vec::new();
            match rx.recv().await {
                Ok(ev) => {
                    let service_changed = ev.service().is_some();
                    out.push(Ok(json_event("event", &ev)));
                    // The verdict is the agent's to decide: say it again when it changed.
                    if service_changed {
                        let now = core.status().overall();
                        if verdict.as_ref() != Some(&now) {
                            out.push(Ok(json_event("overall", &now)));
                            verdict = Some(now);
                        }
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    let status = core.status();
                    verdict = Some(status.overall());
                    out.push(Ok(json_event("resync", &report(status))));
                }
                Err(RecvError::Closed) => return None,
            }
            Some((futures_util::stream::iter(out), (rx, core, verdict)))
        },
    )
    .flatten();
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
