//! The agent's local HTTP API (axum): what the CLI, the tray and the dashboard all talk to.
//!
//! Security, in the order a request meets it:
//! 1. the listener is bound to a loopback address only ([`serve`] refuses anything else);
//! 2. the `Host` header must name this agent's loopback address and port (`127.0.0.1:P`,
//!    `localhost:P`, `[::1]:P`), which defeats DNS rebinding; a missing Host is refused too;
//! 3. a state-changing request that carries an `Origin` must come from that same origin (CSRF);
//! 4. every route except the bare liveness probe `/livez` needs `Authorization: Bearer TOKEN`.
//!
//! Routes (JSON unless noted):
//! - `GET /livez` → `ok` (no auth; reveals nothing)
//! - `GET /api/v1/status` → [`StatusSnapshot`](homeport_types::StatusSnapshot)
//! - `POST /api/v1/{start|stop|restart}` with [`ActionRequest`] → `[ActionOutcome]`
//! - `GET /api/v1/logs?target=T&tail=N&since=RFC3339&grep=RE&follow=1` → NDJSON of
//!   [`LogStreamItem`]s: the matching history, then (with `follow`) new lines as they come.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use homeport_core::{CoreHandle, LogError};
use homeport_supervisor::logfile::LogQuery;
use homeport_types::{Action, ActionRequest, ApiError, LogStreamItem, Target};
use serde::Deserialize;

/// What every request is checked against.
#[derive(Clone)]
struct Guard {
    token: Arc<str>,
    /// Host header values that name this agent.
    hosts: Arc<[String]>,
    /// Origins allowed to change state.
    origins: Arc<[String]>,
}

#[derive(Clone)]
struct AppState {
    core: CoreHandle,
}

/// The API router for an agent listening on `addr`.
pub fn router(core: CoreHandle, token: &str, addr: SocketAddr) -> Router {
    let port = addr.port();
    let names = [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ];
    let guard = Guard {
        token: Arc::from(token),
        hosts: Arc::from(names.to_vec()),
        origins: Arc::from(
            names
                .iter()
                .map(|h| format!("http://{h}"))
                .collect::<Vec<_>>(),
        ),
    };
    let state = AppState { core };
    let api = Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/{action}", post(act))
        .route("/api/v1/logs", get(logs))
        .layer(middleware::from_fn_with_state(guard.clone(), authenticate));
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .merge(api)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(middleware::from_fn_with_state(guard, check_host_and_origin))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves. Refuses a non-loopback listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::other(format!(
            "refusing to serve the API on non-loopback address {addr}"
        )));
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(ApiError {
            kind: kind.to_owned(),
            message: message.into(),
        }),
    )
        .into_response()
}

async fn check_host_and_origin(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !guard.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden_host",
            "the Host header does not name this agent",
        );
    }
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state && let Some(origin) = req.headers().get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .is_ok_and(|o| guard.origins.iter().any(|a| a.eq_ignore_ascii_case(o)));
        if !ok {
            return error(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                "requests from another origin may not change state",
            );
        }
    }
    next.run(req).await
}

async fn authenticate(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(presented.as_bytes(), guard.token.as_bytes()) {
        let mut resp = error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API token",
        );
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    next.run(req).await
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn status(State(st): State<AppState>) -> Response {
    axum::Json(st.core.status()).into_response()
}

async fn act(
    State(st): State<AppState>,
    Path(action): Path<String>,
    body: Result<axum::Json<ActionRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let action = match action.as_str() {
        "start" => Action::Start,
        "stop" => Action::Stop,
        "restart" => Action::Restart,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no action {action:?}"),
            );
        }
    };
    let req = match body {
        Ok(axum::Json(r)) => r,
        Err(rej) => return error(rej.status(), "bad_request", rej.body_text()),
    };
    match st.core.act(action, &req.target).await {
        Ok(outcomes) => axum::Json(outcomes).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
    }
}

#[derive(Deserialize)]
struct LogParams {
    target: String,
    tail: Option<usize>,
    since: Option<String>,
    grep: Option<String>,
    #[serde(default)]
    follow: bool,
}

async fn logs(
    State(st): State<AppState>,
    Query(p): Query<LogParams>,
    _headers: HeaderMap,
) -> Response {
    let target: Target = match p.target.parse() {
        Ok(t) => t,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("target: {e}"),
            );
        }
    };
    let grep = match p.grep.as_deref().map(regex::Regex::new).transpose() {
        Ok(g) => g,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", format!("grep: {e}")),
    };
    if let Some(since) = &p.since
        && humantime::parse_rfc3339_weak(since).is_err()
    {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("since: {since:?} is not an RFC 3339 time"),
        );
    }
    let query = LogQuery {
        tail: p.tail,
        since: p.since.clone(),
        grep: grep.clone(),
    };
    let (history, cursor) = match st.core.logs(&target, &query) {
        Ok(h) => h,
        Err(LogError::NotFound(e)) => {
            return error(StatusCode::NOT_FOUND, "not_found", e.to_string());
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "io", e.to_string()),
    };
    let follow = p.follow.then(|| st.core.follow(cursor, grep));
    let head = futures_util::stream::iter(history.into_iter().map(LogStreamItem::Line));
    let tail = futures_util::stream::unfold(follow, |rx| async move {
        let mut rx = rx?;
        let item = rx.recv().await?;
        Some((item, Some(rx)))
    });
    let body = head.chain(tail).map(|item| {
        let mut line = serde_json::to_vec(&item).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(line)
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "cannot build the response",
            )
        })
}
