//! JSON routes. Each returns `Result<_, ApiError>`; the HTTP status of every error of the core
//! is decided once, in [`crate::errors`].

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use homeport_core::{Editor, MetricsQuery};
use homeport_supervisor::logfile::{Budget, LogQuery};
use homeport_types::{
    Action, ActionOutcome, ActionRequest, AgentStopReply, AgentStopRequest, AppInfo, BackupInfo,
    BackupRequest, BackupTrigger, ConfigApplied, ConfigEdit, ConfigPreview, ConfigSource,
    ConfigView, DeployRecord, DeployRequest, EnvBackups, Event, LogStreamItem, MetricsReport,
    MetricsResolution, ReleaseInfo, RestoreOutcome, RestoreRequest, ServiceDetail, ServiceKey,
    SignInLink, StatusReport, Target, VerifyOutcome,
};
use serde::Deserialize;

use crate::AppState;
use crate::conn::PeerUid;
use crate::errors::{ApiError, Body};
use crate::guard::{LOGIN_SCRIPT, Principal, SESSION_COOKIE};

type Reply<T> = Result<Json<T>, ApiError>;

/// A `target` parameter; `all` when absent.
fn target(t: Option<&str>) -> Result<Target, ApiError> {
    t.unwrap_or("all")
        .parse()
        .map_err(|e| ApiError::bad_request(format!("target: {e}")))
}

/// The snapshot with its verdict, decided here once for every client.
pub async fn status(State(st): State<AppState>) -> Json<StatusReport> {
    let snapshot = st.core.status();
    Json(StatusReport {
        overall: snapshot.overall(),
        snapshot,
    })
}

pub async fn service_detail(
    State(st): State<AppState>,
    Path((app, env, service)): Path<(String, String, String)>,
) -> Reply<ServiceDetail> {
    let key = ServiceKey::new(app, env, service);
    st.core
        .service_detail(&key)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no service {key}")))
}

/// Answers first, then the agent's main loop stops it (`homeport agent stop|restart`).
pub async fn agent_stop(
    State(st): State<AppState>,
    Body(req): Body<AgentStopRequest>,
) -> Json<AgentStopReply> {
    Json(st.core.request_stop(req))
}

pub async fn act(
    State(st): State<AppState>,
    Path(action): Path<String>,
    Body(req): Body<ActionRequest>,
) -> Reply<Vec<ActionOutcome>> {
    let action = match action.as_str() {
        "start" => Action::Start,
        "stop" => Action::Stop,
        "restart" => Action::Restart,
        _ => return Err(ApiError::not_found(format!("no action {action:?}"))),
    };
    Ok(Json(st.core.act(action, &req.target).await?))
}

#[derive(Deserialize)]
pub struct EventParams {
    target: Option<String>,
    /// Comma-separated kinds (`deploy_finished,backup_failed`); all when absent.
    kind: Option<String>,
    limit: Option<usize>,
}

pub async fn events(State(st): State<AppState>, Query(p): Query<EventParams>) -> Reply<Vec<Event>> {
    let target = target(p.target.as_deref())?;
    let limit = p.limit.unwrap_or(500).min(10_000);
    let kinds: Vec<String> = p
        .kind
        .iter()
        .flat_map(|k| k.split(','))
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect();
    let core = st.core.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || core.events(&target, &kinds, limit)).await??,
    ))
}

#[derive(Deserialize)]
pub struct MetricsParams {
    target: Option<String>,
    /// How far back: `1h` (the default), `24h`, `7d`, `30d`… up to `400d`.
    range: Option<String>,
    /// `raw`, `1m`, `10m`, `1h`, or `auto` (the default: the finest the range keeps).
    resolution: Option<String>,
}

/// History of a target's services: columns of CPU, memory, health latency and uptime, the
/// environments' uptime, and annotations of what happened.
pub async fn metrics(
    State(st): State<AppState>,
    Query(p): Query<MetricsParams>,
) -> Reply<MetricsReport> {
    let target = target(p.target.as_deref())?;
    let range_text = p.range.as_deref().unwrap_or("1h");
    let range = humantime::parse_duration(range_text).map_err(|e| {
        ApiError::bad_request(format!(
            "range {range_text:?}: {e}; give a duration such as 1h, 24h, 7d or 30d"
        ))
    })?;
    let resolution = match p.resolution.as_deref() {
        None | Some("" | "auto") => None,
        Some(r) => Some(MetricsResolution::parse(r).ok_or_else(|| {
            ApiError::bad_request(format!("resolution {r:?}: give raw, 1m, 10m, 1h or auto"))
        })?),
    };
    let core = st.core.clone();
    let q = MetricsQuery {
        target,
        range,
        resolution,
    };
    Ok(Json(
        tokio::task::spawn_blocking(move || core.metrics(&q)).await??,
    ))
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
pub fn log_query(p: &LogParams) -> Result<(Target, LogQuery), ApiError> {
    let target = target(Some(&p.target))?;
    let grep = p
        .grep
        .as_deref()
        .filter(|g| !g.is_empty())
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("grep: {e}")))?;
    if let Some(since) = p
        .since
        .iter()
        .chain(&p.until)
        .find(|t| humantime::parse_rfc3339_weak(t).is_err())
    {
        return Err(ApiError::bad_request(format!(
            "since/until: {since:?} is not an RFC 3339 time"
        )));
    }
    Ok((
        target,
        LogQuery {
            tail: p.tail,
            since: p.since.clone(),
            until: p.until.clone(),
            grep,
            budget: Some(Budget {
                cpu: SEARCH_CPU,
                cancelled: Arc::new(AtomicBool::new(false)),
            }),
        },
    ))
}

/// The CPU time one search of the logs may take: a regular expression over the whole kept
/// history takes well under a second for all but pathological patterns.
pub const SEARCH_CPU: std::time::Duration = std::time::Duration::from_secs(5);

/// Cancels a search when dropped: a handler's future is dropped when its client hangs up, and
/// the search, in a thread of its own, then stops instead of working for nobody.
pub struct CancelOnDrop(Option<Arc<AtomicBool>>);

impl CancelOnDrop {
    pub fn of(query: &LogQuery) -> Self {
        Self(query.budget.as_ref().map(|b| Arc::clone(&b.cancelled)))
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.store(true, Ordering::Relaxed);
        }
    }
}

/// NDJSON: the history, then (with `follow`) new lines. For the CLI.
pub async fn logs(
    State(st): State<AppState>,
    Query(p): Query<LogParams>,
) -> Result<Response, ApiError> {
    let (target, query) = log_query(&p)?;
    let core = st.core.clone();
    let grep = query.grep.clone();
    let searching = CancelOnDrop::of(&query);
    let (history, cursor) =
        tokio::task::spawn_blocking(move || core.logs(&target, &query)).await??;
    drop(searching);
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
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

pub async fn config(State(st): State<AppState>) -> Reply<ConfigView> {
    Ok(Json(st.core.config_view()?))
}

/// Who edits: the token's holder (the CLI, the tray) is the owner; anyone else, a browser.
fn editor(principal: Option<&Principal>) -> Editor {
    match principal {
        Some(Principal::Token) => Editor::Owner,
        _ => Editor::Browser,
    }
}

pub async fn config_preview(
    State(st): State<AppState>,
    principal: Option<Extension<Principal>>,
    Body(edit): Body<ConfigEdit>,
) -> Reply<ConfigPreview> {
    let core = st.core.clone();
    let editor = editor(principal.as_deref());
    Ok(Json(
        tokio::task::spawn_blocking(move || core.preview(&edit.changes, &edit.revision, editor))
            .await??,
    ))
}

pub async fn config_apply(
    State(st): State<AppState>,
    principal: Option<Extension<Principal>>,
    Body(edit): Body<ConfigEdit>,
) -> Reply<ConfigApplied> {
    let editor = editor(principal.as_deref());
    Ok(Json(
        st.core.apply(&edit.changes, &edit.revision, editor).await?,
    ))
}

/// Reads the config file again and applies it; 422 with every problem when it has mistakes
/// (then nothing changed).
pub async fn config_reload(State(st): State<AppState>) -> Reply<ConfigApplied> {
    Ok(Json(st.core.reload(ConfigSource::Reload).await?))
}

/// A one-time sign-in link for a browser, and a private page that leads to it (for the
/// desktop's opener). Only the CLI and the tray (the token) may make one: a browser session
/// that could would never have to end.
pub async fn new_session(
    State(st): State<AppState>,
    principal: Option<Extension<Principal>>,
) -> Reply<SignInLink> {
    if !matches!(principal.as_deref(), Some(Principal::Token)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the CLI and the tray app can make sign-in links",
        ));
    }
    let link = st.guard.sessions.new_ticket(true).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "io",
            format!("cannot write the sign-in page: {e}"),
        )
    })?;
    Ok(Json(SignInLink {
        url: link.url,
        page: link.page.map(|p| p.display().to_string()),
    }))
}

#[derive(Deserialize)]
pub struct LoginParams {
    ticket: Option<String>,
}

/// Trades a one-time ticket for a session: the cookie, and a page that hands the session's
/// secret to the dashboard. A GET because a link is what the user opens; the ticket,
/// unguessable and single-use, is what makes it safe from cross-site forgery. Only a process
/// of the agent's own user may redeem it (where the platform tells), and another user's try
/// does not use it up.
pub async fn login(
    State(st): State<AppState>,
    peer: Option<Extension<PeerUid>>,
    Query(p): Query<LoginParams>,
) -> Response {
    if peer.is_some_and(|p| !p.is_agent_user()) {
        return crate::pages::html(StatusCode::FORBIDDEN, crate::pages::wrong_user());
    }
    let redeemed = p
        .ticket
        .and_then(|t| st.guard.sessions.redeem(&t, std::time::Instant::now()));
    match redeemed {
        Some((id, secret)) => (
            StatusCode::OK,
            [
                (
                    header::SET_COOKIE,
                    format!("{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/"),
                ),
                (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
                (header::CACHE_CONTROL, "no-store".to_owned()),
                (header::CONTENT_SECURITY_POLICY, crate::CSP.to_owned()),
                (header::REFERRER_POLICY, "no-referrer".to_owned()),
            ],
            crate::pages::signing_in(&secret),
        )
            .into_response(),
        None => crate::pages::html(StatusCode::UNAUTHORIZED, crate::pages::link_spent()),
    }
}

/// The sign-in page's script (the policy allows no inline script).
pub async fn login_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        LOGIN_SCRIPT,
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct BackupParams {
    target: Option<String>,
}

pub async fn backups(
    State(st): State<AppState>,
    Query(p): Query<BackupParams>,
) -> Reply<Vec<EnvBackups>> {
    Ok(Json(st.core.backups(&target(p.target.as_deref())?)?))
}

pub async fn backup_now(
    State(st): State<AppState>,
    Body(req): Body<BackupRequest>,
) -> Reply<BackupInfo> {
    Ok(Json(
        st.core.backup(&req.target, BackupTrigger::Manual).await?,
    ))
}

pub async fn verify_backup(
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> Reply<VerifyOutcome> {
    Ok(Json(st.core.verify_backup(id).await?))
}

pub async fn restore(
    State(st): State<AppState>,
    principal: Option<Extension<Principal>>,
    Body(req): Body<RestoreRequest>,
) -> Reply<RestoreOutcome> {
    // A copy to a file of one's choosing takes a database out of the agent's hands: the owner's
    // call (`homeport restore --to`), never a browser session's.
    if req.to.is_some() && editor(principal.as_deref()) != Editor::Owner {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a restore into a file of your choosing is made with `homeport restore --to`, not from a browser",
        ));
    }
    let to = req.to.as_deref().map(std::path::Path::new);
    Ok(Json(
        st.core
            .restore(
                &req.target,
                req.backup,
                req.database.as_deref(),
                req.path.as_deref(),
                to,
            )
            .await?,
    ))
}

/// Starts a deploy and streams its steps as NDJSON, ending with the record.
pub async fn deploy(
    State(st): State<AppState>,
    Body(req): Body<DeployRequest>,
) -> Result<Response, ApiError> {
    let rx = st.core.deploy(req)?;
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        let ev = rx.recv().await?;
        let mut line = serde_json::to_vec(&ev).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(line), rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct AppParams {
    app: String,
    env: Option<String>,
}

pub async fn releases(
    State(st): State<AppState>,
    Query(p): Query<AppParams>,
) -> Reply<Vec<ReleaseInfo>> {
    st.core
        .releases(&p.app)
        .map(Json)
        .map_err(|e| ApiError::not_found(e.to_string()))
}

pub async fn deploys(
    State(st): State<AppState>,
    Query(p): Query<AppParams>,
) -> Reply<Vec<DeployRecord>> {
    Ok(Json(st.core.deploys(&p.app, p.env.as_deref())?))
}

pub async fn deploy_detail(
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> Reply<homeport_types::DeployDetail> {
    st.core
        .deploy_detail(id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no deploy {id} (see `homeport deploys`)")))
}

pub async fn update_check(
    State(st): State<AppState>,
    Query(p): Query<AppParams>,
) -> Reply<serde_json::Value> {
    match st.core.update_check(&p.app).await {
        Ok((behind, ahead)) => Ok(Json(
            serde_json::json!({ "behind": behind, "ahead": ahead }),
        )),
        Err(e @ homeport_core::DeployRefused::NotFound(_)) => Err(e.into()),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "git",
            e.to_string(),
        )),
    }
}

pub async fn resume_updates(
    State(st): State<AppState>,
    Body(req): Body<homeport_types::ResumeRequest>,
) -> Reply<homeport_types::AutoUpdateState> {
    Ok(Json(st.core.resume_updates(&req.app, &req.env)?))
}

#[derive(Deserialize)]
pub struct EnvParams {
    app: String,
    env: String,
}

/// What a deploy of `app/env` needs here (another computer asks before it ships a release).
pub async fn preflight(
    State(st): State<AppState>,
    Query(p): Query<EnvParams>,
) -> Reply<homeport_types::Preflight> {
    Ok(Json(st.core.preflight(&p.app, &p.env)?))
}

pub async fn apps(State(st): State<AppState>) -> Json<Vec<AppInfo>> {
    Json(st.core.apps())
}
