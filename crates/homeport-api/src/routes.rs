//! JSON routes.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use homeport_core::{BackupOpError, DeployRefused, LogError, SettingsError};
use homeport_supervisor::logfile::LogQuery;
use homeport_types::{
    Action, ActionRequest, BackupRequest, BackupTrigger, ConfigEdit, LogStreamItem, RestoreRequest,
    ServiceKey, SignInLink, Target,
};
use serde::Deserialize;

use crate::guard::SESSION_COOKIE;
use crate::{AppState, error};

/// A refused request: its status, error kind and message.
pub struct Reject(pub StatusCode, pub &'static str, pub String);

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        error(self.0, self.1, self.2)
    }
}

/// A JSON body, or the right status for a wrong one: 415 when it is not JSON, 400 otherwise.
fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, Reject> {
    match b {
        Ok(Json(v)) => Ok(v),
        Err(JsonRejection::MissingJsonContentType(r)) => Err(Reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            r.body_text(),
        )),
        Err(r) => Err(Reject(
            StatusCode::BAD_REQUEST,
            "bad_request",
            r.body_text(),
        )),
    }
}

fn log_error(e: LogError) -> Response {
    match e {
        LogError::NotFound(e) => error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        e => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

pub async fn status(State(st): State<AppState>) -> Response {
    Json(st.core.status()).into_response()
}

pub async fn service_detail(
    State(st): State<AppState>,
    Path((app, env, service)): Path<(String, String, String)>,
) -> Response {
    let key = ServiceKey::new(app, env, service);
    match st.core.service_detail(&key) {
        Some(d) => Json(d).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no service {key}"),
        ),
    }
}

pub async fn act(
    State(st): State<AppState>,
    Path(action): Path<String>,
    req: Result<Json<ActionRequest>, JsonRejection>,
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
    let req = match body(req) {
        Ok(r) => r,
        Err(reject) => return reject.into_response(),
    };
    match st.core.act(action, &req.target).await {
        Ok(outcomes) => Json(outcomes).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
    }
}

#[derive(Deserialize)]
pub struct EventParams {
    target: Option<String>,
    limit: Option<usize>,
}

pub async fn events(State(st): State<AppState>, Query(p): Query<EventParams>) -> Response {
    let target: Target = match p.target.as_deref().unwrap_or("all").parse() {
        Ok(t) => t,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("target: {e}"),
            );
        }
    };
    let limit = p.limit.unwrap_or(500).min(10_000);
    let core = st.core.clone();
    match tokio::task::spawn_blocking(move || core.events(&target, limit)).await {
        Ok(Ok(events)) => Json(events).into_response(),
        Ok(Err(e)) => log_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

#[derive(Deserialize)]
pub struct LogParams {
    pub target: String,
    pub tail: Option<usize>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub grep: Option<String>,
    #[serde(default)]
    pub follow: bool,
}

/// Parses log parameters, or answers 400 naming the bad one.
pub fn log_query(p: &LogParams) -> Result<(Target, LogQuery), Reject> {
    let target: Target = p.target.parse().map_err(|e| {
        Reject(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("target: {e}"),
        )
    })?;
    let grep = p
        .grep
        .as_deref()
        .filter(|g| !g.is_empty())
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| Reject(StatusCode::BAD_REQUEST, "bad_request", format!("grep: {e}")))?;
    if let Some(since) = p
        .since
        .iter()
        .chain(&p.until)
        .find(|t| humantime::parse_rfc3339_weak(t).is_err())
    {
        return Err(Reject(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("since/until: {since:?} is not an RFC 3339 time"),
        ));
    }
    Ok((
        target,
        LogQuery {
            tail: p.tail,
            since: p.since.clone(),
            until: p.until.clone(),
            grep,
        },
    ))
}

/// NDJSON: the history, then (with `follow`) new lines. For the CLI.
pub async fn logs(State(st): State<AppState>, Query(p): Query<LogParams>) -> Response {
    let (target, query) = match log_query(&p) {
        Ok(q) => q,
        Err(reject) => return reject.into_response(),
    };
    let core = st.core.clone();
    let grep = query.grep.clone();
    let read = tokio::task::spawn_blocking(move || core.logs(&target, &query)).await;
    let (history, cursor) = match read {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return log_error(e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
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
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

fn settings_error(e: SettingsError) -> Response {
    match e {
        SettingsError::Conflict(_) => error(StatusCode::CONFLICT, "conflict", e.to_string()),
        SettingsError::Invalid(problems) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({
                "kind": "invalid_config",
                "message": SettingsError::Invalid(problems.clone()).to_string(),
                "problems": problems,
            })),
        )
            .into_response(),
        SettingsError::Edit(e) => error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        SettingsError::Io(..) => error(StatusCode::INTERNAL_SERVER_ERROR, "io", e.to_string()),
    }
}

pub async fn config(State(st): State<AppState>) -> Response {
    match st.core.config_view() {
        Ok(v) => Json(v).into_response(),
        Err(e) => settings_error(e),
    }
}

pub async fn config_preview(
    State(st): State<AppState>,
    req: Result<Json<ConfigEdit>, JsonRejection>,
) -> Response {
    let edit = match body(req) {
        Ok(e) => e,
        Err(reject) => return reject.into_response(),
    };
    let core = st.core.clone();
    match tokio::task::spawn_blocking(move || core.preview(&edit.changes, &edit.revision)).await {
        Ok(Ok(p)) => Json(p).into_response(),
        Ok(Err(e)) => settings_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

pub async fn config_apply(
    State(st): State<AppState>,
    req: Result<Json<ConfigEdit>, JsonRejection>,
) -> Response {
    let edit = match body(req) {
        Ok(e) => e,
        Err(reject) => return reject.into_response(),
    };
    match st.core.apply(&edit.changes, &edit.revision).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => settings_error(e),
    }
}

/// A one-time sign-in link for a browser (`homeport dashboard`, the tray).
pub async fn new_session(State(st): State<AppState>) -> Response {
    let ticket = st.guard.sessions.new_ticket();
    Json(SignInLink {
        url: format!("http://127.0.0.1:{}/login?ticket={ticket}", st.addr.port()),
    })
    .into_response()
}

#[derive(Deserialize)]
pub struct LoginParams {
    ticket: String,
}

/// Trades a one-time ticket for a session cookie. A GET because a link is what the user opens;
/// the ticket, unguessable and single-use, is what makes it safe from cross-site forgery.
pub async fn login(State(st): State<AppState>, Query(p): Query<LoginParams>) -> Response {
    match st.guard.sessions.redeem(&p.ticket) {
        Some(id) => (
            StatusCode::SEE_OTHER,
            [
                (
                    header::SET_COOKIE,
                    format!("{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/"),
                ),
                (header::LOCATION, "/".to_owned()),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
        )
            .into_response(),
        None => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this sign-in link was used already or has expired; run `homeport dashboard` again",
        ),
    }
}

fn backup_error(e: BackupOpError) -> Response {
    let status = match &e {
        BackupOpError::NotFound(_) | BackupOpError::NoBackup(_) => StatusCode::NOT_FOUND,
        BackupOpError::Busy(_) => StatusCode::CONFLICT,
        BackupOpError::Refused(_) => StatusCode::BAD_REQUEST,
        BackupOpError::Backup(_) => StatusCode::UNPROCESSABLE_ENTITY,
        BackupOpError::RestoreFailed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        BackupOpError::Store(_) | BackupOpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, "backup", e.to_string())
}

#[derive(Deserialize)]
pub struct BackupParams {
    target: Option<String>,
}

pub async fn backups(State(st): State<AppState>, Query(p): Query<BackupParams>) -> Response {
    let target: Target = match p.target.as_deref().unwrap_or("all").parse() {
        Ok(t) => t,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("target: {e}"),
            );
        }
    };
    match st.core.backups(&target) {
        Ok(list) => Json(list).into_response(),
        Err(e) => backup_error(e),
    }
}

pub async fn backup_now(
    State(st): State<AppState>,
    req: Result<Json<BackupRequest>, JsonRejection>,
) -> Response {
    let req = match body(req) {
        Ok(r) => r,
        Err(reject) => return reject.into_response(),
    };
    match st.core.backup(&req.target, BackupTrigger::Manual).await {
        Ok(info) => Json(info).into_response(),
        Err(e) => backup_error(e),
    }
}

pub async fn verify_backup(State(st): State<AppState>, Path(id): Path<i64>) -> Response {
    match st.core.verify_backup(id).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => backup_error(e),
    }
}

pub async fn restore(
    State(st): State<AppState>,
    req: Result<Json<RestoreRequest>, JsonRejection>,
) -> Response {
    let req = match body(req) {
        Ok(r) => r,
        Err(reject) => return reject.into_response(),
    };
    let to = req.to.as_deref().map(std::path::Path::new);
    match st
        .core
        .restore(&req.target, req.backup, req.database.as_deref(), to)
        .await
    {
        Ok(out) => Json(out).into_response(),
        Err(e) => backup_error(e),
    }
}

/// Starts a deploy and streams its steps as NDJSON, ending with the record.
pub async fn deploy(
    State(st): State<AppState>,
    req: Result<Json<homeport_types::DeployRequest>, JsonRejection>,
) -> Response {
    let req = match body(req) {
        Ok(r) => r,
        Err(reject) => return reject.into_response(),
    };
    let rx = match st.core.deploy(req) {
        Ok(rx) => rx,
        Err(e @ DeployRefused::Busy { .. }) => {
            return error(StatusCode::CONFLICT, "conflict", e.to_string());
        }
        Err(e @ DeployRefused::NotFound(_)) => {
            return error(StatusCode::NOT_FOUND, "not_found", e.to_string());
        }
        Err(e @ DeployRefused::Invalid(_)) => {
            return error(StatusCode::BAD_REQUEST, "bad_request", e.to_string());
        }
    };
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        let ev = rx.recv().await?;
        let mut line = serde_json::to_vec(&ev).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(line), rx))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct AppParams {
    app: String,
    env: Option<String>,
}

pub async fn releases(State(st): State<AppState>, Query(p): Query<AppParams>) -> Response {
    match st.core.releases(&p.app) {
        Ok(r) => Json(r).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
    }
}

pub async fn deploys(State(st): State<AppState>, Query(p): Query<AppParams>) -> Response {
    match st.core.deploys(&p.app, p.env.as_deref()) {
        Ok(r) => Json(r).into_response(),
        Err(e) => backup_error(e),
    }
}

pub async fn update_check(State(st): State<AppState>, Query(p): Query<AppParams>) -> Response {
    match st.core.update_check(&p.app).await {
        Ok((behind, ahead)) => {
            Json(serde_json::json!({ "behind": behind, "ahead": ahead })).into_response()
        }
        Err(e @ DeployRefused::NotFound(_)) => {
            error(StatusCode::NOT_FOUND, "not_found", e.to_string())
        }
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, "git", e.to_string()),
    }
}

pub async fn apps(State(st): State<AppState>) -> Response {
    Json(st.core.apps()).into_response()
}
