//! Who may talk to the agent: the Host, Origin and Sec-Fetch-Site checks, the API token, and
//! browser sessions made from one-time sign-in links.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error;

pub const SESSION_COOKIE: &str = "homeport_session";
/// Origins of the tray app's own windows, which load the bundled dashboard through Tauri's asset
/// protocol (`tauri://localhost` on Linux and macOS, `http(s)://tauri.localhost` on Windows).
/// A web page cannot claim them (another Tauri app on this computer can: so they get no session,
/// and their requests must carry the token, which only this user's files hold).
/// (The Windows ones only on Windows: elsewhere a local server could answer for that name.)
#[cfg(not(windows))]
pub const APP_ORIGINS: &[&str] = &["tauri://localhost"];
#[cfg(windows)]
pub const APP_ORIGINS: &[&str] = &["http://tauri.localhost", "https://tauri.localhost"];
/// A sign-in link works once, and only this soon after it was made.
const TICKET_LIFETIME: Duration = Duration::from_secs(120);

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// `Authorization: Bearer TOKEN`: the CLI, the tray.
    Token,
    /// The session cookie: a browser.
    Session,
}

#[derive(Clone)]
pub struct Guard {
    token: Arc<str>,
    /// Host header values that name this agent.
    hosts: Arc<[String]>,
    /// Origins allowed to change state.
    origins: Arc<[String]>,
    pub sessions: Arc<Sessions>,
}

impl Guard {
    pub fn new(token: &str, port: u16) -> Self {
        let names = [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ];
        Self {
            token: Arc::from(token),
            origins: Arc::from(
                names
                    .iter()
                    .map(|h| format!("http://{h}"))
                    .collect::<Vec<_>>(),
            ),
            hosts: Arc::from(names.to_vec()),
            sessions: Arc::new(Sessions::default()),
        }
    }

    fn principal(&self, req: &Request) -> Option<Principal> {
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(t) = bearer {
            return constant_time_eq(t.as_bytes(), self.token.as_bytes())
                .then_some(Principal::Token);
        }
        let session = req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
            .any(|id| self.sessions.is_valid(id));
        session.then_some(Principal::Session)
    }
}

/// One-time tickets and the sessions they became. In memory: a restarted agent asks browsers to
/// sign in again, which is the safe default.
#[derive(Default)]
pub struct Sessions {
    tickets: Mutex<HashMap<String, Instant>>,
    sessions: Mutex<HashSet<String>>,
}

impl Sessions {
    pub fn new_ticket(&self) -> String {
        let t = random_id();
        let mut tickets = self.tickets.lock().unwrap_or_else(PoisonError::into_inner);
        tickets.retain(|_, made| made.elapsed() < TICKET_LIFETIME);
        tickets.insert(t.clone(), Instant::now());
        t
    }

    /// Trades a ticket for a session id; a ticket works once.
    pub fn redeem(&self, ticket: &str) -> Option<String> {
        let made = self
            .tickets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(ticket)?;
        if made.elapsed() >= TICKET_LIFETIME {
            return None;
        }
        let id = random_id();
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone());
        Some(id)
    }

    fn is_valid(&self, id: &str) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions
            .iter()
            .any(|s| constant_time_eq(s.as_bytes(), id.as_bytes()))
    }
}

fn random_id() -> String {
    // The OS random source failing is not survivable for an auth system; an all-zero id would be.
    homeport_fs::random_token().unwrap_or_else(|_| std::process::abort())
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Every request: the Host must name this agent (DNS rebinding); a browser request from another
/// site is refused outright; a state change that names an Origin must name ours (CSRF).
pub async fn check_host_and_origin(
    State(guard): State<Guard>,
    req: Request,
    next: Next,
) -> Response {
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
    let app_origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|o| is_app_origin(o))
        .cloned();
    if let Some(origin) = app_origin {
        // The tray's window: answer the CORS preflight here (it carries no credentials), and
        // let `authenticate` insist on the token.
        let mut resp = if req.method() == Method::OPTIONS {
            preflight()
        } else {
            next.run(req).await
        };
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        return resp;
    }
    if req
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "requests from other sites are refused",
        );
    }
    // Event streams are long-lived reads a foreign page could hold open: check them like writes.
    let is_stream = req.uri().path().ends_with("/stream");
    if (changes_state(req.method()) || is_stream)
        && let Some(origin) = req.headers().get(header::ORIGIN)
        && !origin_allowed(&guard, origin)
    {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "requests from another origin may not change state",
        );
    }
    next.run(req).await
}

fn is_app_origin(origin: &HeaderValue) -> bool {
    origin_in(origin, APP_ORIGINS)
}

fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "authorization, content-type",
            ),
            (header::ACCESS_CONTROL_MAX_AGE, "600"),
        ],
    )
        .into_response()
}

fn changes_state(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn origin_allowed(guard: &Guard, origin: &HeaderValue) -> bool {
    origin_in(origin, &guard.origins)
}

/// Whether the Origin header is one of `allowed` (ASCII case aside).
fn origin_in(origin: &HeaderValue, allowed: &[impl AsRef<str>]) -> bool {
    origin
        .to_str()
        .is_ok_and(|o| allowed.iter().any(|a| a.as_ref().eq_ignore_ascii_case(o)))
}

/// API routes: a token or a session. A browser (session) must also send our Origin with every
/// state change, and with the event-stream handshake.
pub async fn authenticate(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let Some(principal) = guard.principal(&req) else {
        let mut resp = error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API token or session",
        );
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    };
    if principal == Principal::Session
        && req.headers().get(header::ORIGIN).is_some_and(is_app_origin)
    {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "the app's windows must use the API token",
        );
    }
    if principal == Principal::Session && changes_state(req.method()) {
        let ok = req
            .headers()
            .get(header::ORIGIN)
            .is_some_and(|o| origin_allowed(&guard, o));
        if !ok {
            return error(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                "a browser must send this agent's Origin to change state",
            );
        }
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The UI's pages: a session or token; otherwise a sign-in page (401) that reveals nothing.
pub async fn authenticate_page(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    if guard.principal(&req).is_some() {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        SIGN_IN_PAGE,
    )
        .into_response()
}

const SIGN_IN_PAGE: &str = "<!doctype html><html lang=en><meta charset=utf-8><title>Homeport: sign in</title>\
<body><h1>Sign in to Homeport</h1><p>This browser has no session with the agent. Run <code>homeport dashboard</code> \
in a terminal: it opens a one-time sign-in link.</p></body></html>";
