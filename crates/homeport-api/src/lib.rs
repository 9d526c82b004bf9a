//! The agent's local HTTP API (axum): what the CLI, the tray and the dashboard all talk to, and
//! the dashboard itself.
//!
//! Security, in the order a request meets it (see [`guard`]):
//! 1. the listener is bound to a loopback address only ([`serve`] refuses anything else);
//! 2. the `Host` header must name this agent's loopback address and port (`127.0.0.1:P`,
//!    `localhost:P`, `[::1]:P`) — DNS rebinding; a missing Host is refused too;
//! 3. a browser request marked `Sec-Fetch-Site: cross-site` is refused; a state change that
//!    carries an `Origin` must carry ours (CSRF);
//! 4. every route except `/livez` and `/login` needs `Authorization: Bearer TOKEN` or the session
//!    cookie that a one-time sign-in link (`/login?ticket=…`) sets; a browser session must send
//!    our Origin with every state change;
//! 5. the tray app's window (the bundled dashboard, origin `tauri://localhost`, see
//!    [`guard::APP_ORIGINS`]) is the one foreign origin answered: CORS preflights and
//!    `Access-Control-Allow-Origin` for it, and its requests must carry the token, never a
//!    session.
//!
//! Routes (JSON unless noted):
//! - `GET /livez` → `ok` (no auth; reveals nothing); `GET /page.css` (no auth: the sign-in
//!   pages' style)
//! - `GET /api/v1/services/{app}/{env}/{service}`
//! - `POST /api/v1/{start|stop|restart}` with `{"target": T}`
//! - `GET /api/v1/logs?target=T&tail=N&since=RFC3339&grep=RE&follow=1` → NDJSON (the CLI)
//! - `GET /api/v1/logs/stream?target=T&tail=N&grep=RE` → SSE `lines` / `skipped` (browsers)
//! - `GET /api/v1/status` → the snapshot and its `overall` verdict (`StatusSnapshot::overall`)
//! - `GET /api/v1/events?target=T&kind=K,K&limit=N` (history, newest first);
//!   `GET /api/v1/events/stream` → SSE `snapshot` (with `overall`), then every `event` —
//!   service states, health, deploys and their steps, backups, restores, config edits, the
//!   agent starting and stopping — and `resync` (a fresh snapshot) after falling behind
//! - `GET /api/v1/metrics?target=T&range=1h|24h|7d|30d&resolution=auto|raw|1m|10m|1h` → the
//!   history of T's services (CPU, memory, health latency, uptime) and environments' uptime, with
//!   annotations of what happened (`MetricsReport`)
//! - `GET /api/v1/config`, `POST /api/v1/config/preview`, `POST /api/v1/config/apply`;
//!   `POST /api/v1/config/reload` (read `homeport.toml` again and apply it)
//! - `GET /api/v1/backups?target=`, `POST /api/v1/backups` `{"target": "app/env"}`,
//!   `POST /api/v1/backups/{id}/verify`, `POST /api/v1/restore`
//! - `POST /api/v1/deploy` `{"app", "env", "kind": "deploy|promote|rollback|update"}` → NDJSON of
//!   step events ending with the record; `GET /api/v1/releases?app=`, `GET /api/v1/deploys?app=&env=`,
//!   `GET /api/v1/deploys/{id}` (one deploy with its output)
//! - `GET /api/v1/preflight?app=&env=` → what a deploy needs here: version, free disk, programs
//!   missing from the agent's PATH
//! - `POST /api/v1/sessions` → a one-time sign-in link; `GET /login?ticket=…` → session cookie
//! - `POST /api/v1/agent/stop` `{"keep_services", "restart"}` → the agent stops after answering
//! - `GET /api/v1/hosts` → other hosts and their connections; `POST /api/v1/hosts/reload`;
//!   `/api/v1/hosts/NAME/api/v1/…` → the same API of the agent on NAME, relayed through the SSH
//!   connection this agent holds (see `relay.rs`)
//! - `GET /metrics` → Prometheus text
//! - `/`, `/assets/…` → the dashboard (ui/dist), under a strict Content-Security-Policy

mod body;
pub mod conn;
mod errors;
pub mod guard;
mod metrics;
mod pages;
mod relay;
mod routes;
mod stream;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use homeport_core::CoreHandle;
use homeport_types::ApiError;
use tower_http::set_header::SetResponseHeaderLayer;

pub use conn::{Limits, listen};
use guard::{Guard, SessionLimits};

#[derive(Clone)]
pub(crate) struct AppState {
    pub core: CoreHandle,
    pub guard: Guard,
    /// Requests answered since the agent started (`homeport_api_requests_total`).
    pub requests: Arc<AtomicU64>,
}

/// The policy every page of the dashboard is served under: nothing inline, nothing foreign.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The router of an agent listening on `addr`. `ui_dir` holds the built dashboard (ui/dist).
pub fn router(core: CoreHandle, token: &str, addr: SocketAddr, ui_dir: Option<PathBuf>) -> Router {
    let signin_dir = core.config().agent.data_dir.join("signin");
    let guard = Guard::new(token, addr.port(), signin_dir, SessionLimits::default());
    let requests = Arc::new(AtomicU64::new(0));
    let state = AppState {
        core,
        guard: guard.clone(),
        requests: Arc::clone(&requests),
    };
    let api = Router::new()
        .route("/api/v1/status", get(routes::status))
        .route(
            "/api/v1/services/{app}/{env}/{service}",
            get(routes::service_detail),
        )
        .route("/api/v1/events", get(routes::events))
        .route("/api/v1/metrics", get(routes::metrics))
        .route("/api/v1/events/stream", get(stream::events))
        .route("/api/v1/logs", get(routes::logs))
        .route("/api/v1/logs/stream", get(stream::logs))
        .route("/api/v1/config", get(routes::config))
        .route("/api/v1/config/preview", post(routes::config_preview))
        .route("/api/v1/config/apply", post(routes::config_apply))
        .route("/api/v1/config/reload", post(routes::config_reload))
        .route("/api/v1/sessions", post(routes::new_session))
        .route(
            "/api/v1/backups",
            get(routes::backups).post(routes::backup_now),
        )
        .route("/api/v1/backups/{id}/verify", post(routes::verify_backup))
        .route("/api/v1/restore", post(routes::restore))
        .route("/api/v1/deploy", post(routes::deploy))
        .route("/api/v1/releases", get(routes::releases))
        .route("/api/v1/apps", get(routes::apps))
        .route("/api/v1/update-check", get(routes::update_check))
        .route("/api/v1/auto-update/resume", post(routes::resume_updates))
        .route("/api/v1/preflight", get(routes::preflight))
        .route("/api/v1/deploys", get(routes::deploys))
        .route("/api/v1/deploys/{id}", get(routes::deploy_detail))
        .route("/api/v1/agent/stop", post(routes::agent_stop))
        .route("/api/v1/hosts", get(relay::list))
        .route("/api/v1/hosts/reload", post(relay::reload))
        .route(
            "/api/v1/hosts/{name}/{*rest}",
            axum::routing::any(relay::relay),
        )
        .route("/api/v1/{action}", post(routes::act))
        .route("/metrics", get(metrics::metrics))
        .fallback(|| async { errors::ApiError::not_found("no such route") })
        .layer(middleware::from_fn_with_state(
            guard.clone(),
            guard::authenticate,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    let pages = ui_router(ui_dir)
        .layer(middleware::from_fn_with_state(
            guard.clone(),
            guard::authenticate_page,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ));
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/login", get(routes::login))
        .route("/login.js", get(routes::login_script))
        .route("/page.css", get(pages::stylesheet))
        .merge(api)
        .merge(pages)
        .layer(middleware::from_fn_with_state(
            guard,
            guard::check_host_and_origin,
        ))
        .layer(middleware::from_fn_with_state(requests, metrics::count))
        .with_state(state)
}

fn ui_router(ui_dir: Option<PathBuf>) -> Router<AppState> {
    match ui_dir {
        Some(dir) => {
            let index = dir.join("index.html");
            Router::new()
                .route_service("/", tower_http::services::ServeFile::new(index))
                .nest_service("/assets", tower_http::services::ServeDir::new(dir.join("assets")))
        }
        None => Router::new().route(
            "/",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The dashboard's files are not installed beside this homeport binary (../share/homeport/ui or ui/): install with scripts/install.sh or the .deb, or in a checkout run `npm run build` and set HOMEPORT_UI_DIR=ui/dist.",
                )
            }),
        ),
    }
}

/// Where the built dashboard is: `$HOMEPORT_UI_DIR` (a source checkout's `ui/dist`, for
/// development), else beside the binary as installed: `../share/homeport/ui` (the .deb:
/// /usr/bin + /usr/share) or `ui` in the binary's own folder (`scripts/install.sh`). Never a path
/// compiled into the binary, so a copied or packaged binary does not serve a checkout's files.
/// `current_exe` resolves symlinks, so a link on PATH finds the files of the real install.
pub fn find_ui_dir() -> Option<PathBuf> {
    let exe_dir = std::env::current_exe().ok()?.parent()?.to_path_buf();
    ui_dir_from(
        std::env::var_os("HOMEPORT_UI_DIR").map(PathBuf::from),
        &exe_dir,
    )
}

fn ui_dir_from(explicit: Option<PathBuf>, exe_dir: &std::path::Path) -> Option<PathBuf> {
    let has_index = |d: &PathBuf| d.join("index.html").is_file();
    if let Some(d) = explicit {
        return has_index(&d).then_some(d);
    }
    [exe_dir.join("../share/homeport/ui"), exe_dir.join("ui")]
        .into_iter()
        .find(has_index)
}

/// Serves `router` on `listener` until `shutdown` resolves, within `limits` (see [`conn`]).
/// Refuses a non-loopback listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::other(format!(
            "refusing to serve the API on non-loopback address {addr}"
        )));
    }
    conn::serve(listener, router, shutdown, limits).await
}

pub(crate) fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(ApiError {
            kind: kind.to_owned(),
            message: message.into(),
        }),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_is_found_beside_the_installed_binary_only() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let prefix = root.path();
        let bin = prefix.join("bin");
        std::fs::create_dir_all(&bin).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ui_dir_from(None, &bin), None, "nothing installed");
        let share = prefix.join("share/homeport/ui");
        std::fs::create_dir_all(&share).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(share.join("index.html"), "x").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ui_dir_from(None, &bin),
            Some(bin.join("../share/homeport/ui"))
        );
        let explicit = prefix.join("elsewhere");
        assert_eq!(
            ui_dir_from(Some(explicit), &bin),
            None,
            "an explicit folder without the files is not replaced by another"
        );
    }
}
