//! Who may talk to the agent: the Host, Origin and Sec-Fetch-Site checks, the API token, and
//! browser sessions made from one-time sign-in links.
//!
//! A browser session is two halves, and a request needs both: the `homeport_session` cookie
//! (HttpOnly, so no script reads it) and the session's secret, which only the sign-in answer
//! carries and which the dashboard page keeps (in its origin's storage, out of reach of any other
//! port's pages) and sends as the `X-Homeport-Session` header. Browsers send cookies to every
//! server on 127.0.0.1 whatever its port, so the cookie alone proves nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::conn::{PeerUid, euid};
use crate::error;

pub const SESSION_COOKIE: &str = "homeport_session";
/// The header that carries a session's secret.
pub const SESSION_HEADER: &str = "x-homeport-session";
/// Set by another host's agent that relays a request of one of its browser sessions (see
/// `relay.rs`): with the token, it gets a browser session's rights here, not the token's.
pub const RELAYED_HEADER: &str = "x-homeport-relayed";
/// Origins of the tray app's own windows, which load the bundled dashboard through Tauri's asset
/// protocol (`tauri://localhost` on Linux and macOS, `http(s)://tauri.localhost` on Windows).
/// A web page cannot claim them (another Tauri app on this computer can: so they get no session,
/// and their requests must carry the token, which only this user's files hold).
/// (The Windows ones only on Windows: elsewhere a local server could answer for that name.)
#[cfg(not(windows))]
pub const APP_ORIGINS: &[&str] = &["tauri://localhost"];
#[cfg(windows)]
pub const APP_ORIGINS: &[&str] = &["http://tauri.localhost", "https://tauri.localhost"];

/// How long sign-in links and sessions live.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// A sign-in link works once, and only this soon after it was made.
    pub ticket: Duration,
    /// A session nobody used for this long is over (an open dashboard polls every few seconds,
    /// so this ends sessions of closed tabs and sleeping laptops).
    pub idle: Duration,
    /// A session is over this long after sign-in, used or not; its open streams end with it.
    pub absolute: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            ticket: Duration::from_secs(120),
            idle: Duration::from_secs(60 * 60),
            absolute: Duration::from_secs(12 * 60 * 60),
        }
    }
}

/// At most this many sessions and unused sign-in links at once; the oldest go first.
const MAX_SESSIONS: usize = 64;
const MAX_TICKETS: usize = 16;

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `Authorization: Bearer TOKEN`: the CLI, the tray (and the tray's window).
    Token,
    /// The token, sent by another host's agent on behalf of a browser session of its own
    /// ([`RELAYED_HEADER`]): what a session may do, no more.
    Relayed,
    /// The session cookie and its secret: the dashboard in a browser. It may not make sign-in
    /// links, nor point the agent at files outside the environments' own folders.
    Session {
        id: Arc<str>,
        /// When the session ends, whatever happens: streams end then too.
        ends: Instant,
    },
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

/// Why a request has no principal.
enum Refusal {
    /// No credential, or a wrong one.
    Unauthorized(&'static str),
    /// A credential that this peer may not use.
    Forbidden(&'static str),
}

impl Guard {
    /// `signin_dir` holds the sign-in pages the desktop's opener is given (see
    /// [`Sessions::new_ticket`]).
    pub fn new(token: &str, port: u16, signin_dir: PathBuf, limits: SessionLimits) -> Self {
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
            sessions: Arc::new(Sessions::new(port, signin_dir, limits)),
        }
    }

    fn principal(&self, req: &Request) -> Result<Principal, Refusal> {
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(t) = bearer {
            return if constant_time_eq(t.as_bytes(), self.token.as_bytes()) {
                Ok(if req.headers().contains_key(RELAYED_HEADER) {
                    Principal::Relayed
                } else {
                    Principal::Token
                })
            } else {
                Err(Refusal::Unauthorized("wrong API token"))
            };
        }
        let ids: Vec<&str> = session_ids(req).collect();
        if ids.is_empty() {
            return Err(Refusal::Unauthorized("missing API token or session"));
        }
        if !peer_is_us(req) {
            return Err(Refusal::Forbidden(
                "a browser session works only for the user who signed in",
            ));
        }
        let secret = req
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok());
        let now = Instant::now();
        let mut known = false;
        for id in ids {
            match self.sessions.check(id, secret, now) {
                Check::Valid { ends } => {
                    return Ok(Principal::Session {
                        id: Arc::from(id),
                        ends,
                    });
                }
                Check::NoSecret => known = true,
                Check::Unknown => {}
            }
        }
        Err(Refusal::Unauthorized(if known {
            "a session cookie alone is not enough: sign in again with `homeport dashboard`"
        } else {
            "this browser's session has expired or never existed: run `homeport dashboard`"
        }))
    }

    /// The dashboard's pages (static files, no data) need the session cookie only: a browser's
    /// navigation cannot carry the secret's header.
    fn page_allowed(&self, req: &Request) -> bool {
        if self.principal(req).is_ok() {
            return true;
        }
        let now = Instant::now();
        peer_is_us(req) && session_ids(req).any(|id| self.sessions.is_live(id, now))
    }
}

fn session_ids(req: &Request) -> impl Iterator<Item = &str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
}

/// Whether the connection comes from a process of the agent's own user. Unknown (no peer
/// lookup on this platform) counts as yes: the secret still guards the session.
fn peer_is_us(req: &Request) -> bool {
    req.extensions()
        .get::<PeerUid>()
        .is_none_or(|p| p.is_agent_user())
}

/// What a session cookie and secret add up to.
enum Check {
    Valid {
        ends: Instant,
    },
    /// A live session, but the secret is missing or wrong.
    NoSecret,
    /// No such session (never made, expired, or from an earlier agent).
    Unknown,
}

struct Ticket {
    made: Instant,
    /// The sign-in page that holds it, removed when the ticket is used or expires.
    page: Option<PathBuf>,
}

struct Session {
    secret: String,
    made: Instant,
    seen: Instant,
}

#[derive(Default)]
struct Book {
    tickets: HashMap<String, Ticket>,
    sessions: HashMap<String, Session>,
}

/// One-time tickets and the sessions they became. In memory: a restarted agent asks browsers to
/// sign in again, which is the safe default.
pub struct Sessions {
    book: Mutex<Book>,
    port: u16,
    signin_dir: PathBuf,
    limits: SessionLimits,
}

/// A new sign-in link: the URL, and the private page that leads to it.
pub struct SignIn {
    pub url: String,
    pub page: Option<PathBuf>,
}

impl Sessions {
    fn new(port: u16, signin_dir: PathBuf, limits: SessionLimits) -> Self {
        // Pages left by an earlier agent hold tickets nobody can redeem any more.
        if let Ok(entries) = std::fs::read_dir(&signin_dir) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Self {
            book: Mutex::new(Book::default()),
            port,
            signin_dir,
            limits,
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new one-time sign-in link. With `page`, also a page that leads a browser to it, in a
    /// folder only this user can open: the desktop's opener is given that page's path, never
    /// the link itself, because any local user can read a process's command line.
    pub fn new_ticket(&self, page: bool) -> std::io::Result<SignIn> {
        let now = Instant::now();
        let ticket = random_id()?;
        let url = format!("http://127.0.0.1:{}/login?ticket={ticket}", self.port);
        let page = if page {
            Some(write_sign_in_page(&self.signin_dir, &url)?)
        } else {
            None
        };
        let mut book = self.book();
        self.expire(&mut book, now);
        while book.tickets.len() >= MAX_TICKETS {
            let Some(oldest) = oldest(&book.tickets, |t| t.made) else {
                break;
            };
            if let Some(t) = book.tickets.remove(&oldest) {
                remove_page(t.page.as_deref());
            }
        }
        book.tickets.insert(
            ticket,
            Ticket {
                made: now,
                page: page.clone(),
            },
        );
        Ok(SignIn { url, page })
    }

    /// Trades a ticket for a session: its id (the cookie) and its secret (for the page).
    /// A ticket works once.
    pub fn redeem(&self, ticket: &str, now: Instant) -> Option<(String, String)> {
        let mut book = self.book();
        self.expire(&mut book, now);
        let t = book.tickets.remove(ticket)?;
        remove_page(t.page.as_deref());
        let (id, secret) = (random_id().ok()?, random_id().ok()?);
        while book.sessions.len() >= MAX_SESSIONS {
            let Some(oldest) = oldest(&book.sessions, |s| s.seen) else {
                break;
            };
            book.sessions.remove(&oldest);
        }
        book.sessions.insert(
            id.clone(),
            Session {
                secret: secret.clone(),
                made: now,
                seen: now,
            },
        );
        Some((id, secret))
    }

    /// Checks a session id and secret, and counts the use against the idle limit.
    fn check(&self, id: &str, secret: Option<&str>, now: Instant) -> Check {
        let mut book = self.book();
        self.expire(&mut book, now);
        let Some(s) = book.sessions.get_mut(id) else {
            return Check::Unknown;
        };
        match secret {
            Some(secret) if constant_time_eq(secret.as_bytes(), s.secret.as_bytes()) => {
                s.seen = now;
                Check::Valid {
                    ends: s.made + self.limits.absolute,
                }
            }
            _ => Check::NoSecret,
        }
    }

    fn is_live(&self, id: &str, now: Instant) -> bool {
        let mut book = self.book();
        self.expire(&mut book, now);
        book.sessions.contains_key(id)
    }

    /// Marks a session used at `now` (a stream that was open until then).
    pub fn touch(&self, id: &str, now: Instant) {
        if let Some(s) = self.book().sessions.get_mut(id) {
            s.seen = s.seen.max(now);
        }
    }

    fn expire(&self, book: &mut Book, now: Instant) {
        let l = self.limits;
        book.tickets.retain(|_, t| {
            let live = now.saturating_duration_since(t.made) < l.ticket;
            if !live {
                remove_page(t.page.as_deref());
            }
            live
        });
        book.sessions.retain(|_, s| {
            now.saturating_duration_since(s.seen) < l.idle
                && now.saturating_duration_since(s.made) < l.absolute
        });
    }
}

fn oldest<T>(map: &HashMap<String, T>, age: impl Fn(&T) -> Instant) -> Option<String> {
    map.iter()
        .min_by_key(|(_, v)| age(v))
        .map(|(k, _)| k.clone())
}

fn remove_page(page: Option<&Path>) {
    if let Some(p) = page {
        let _ = std::fs::remove_file(p);
    }
}

/// Writes a page that sends a browser on to `url`: 0600, created new (never through a link
/// someone left in its place), in a 0700 folder.
fn write_sign_in_page(dir: &Path, url: &str) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    homeport_fs::create_private_dir(dir)?;
    // A folder made earlier, or by someone else, is made private again (or refused if not ours).
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() || std::os::unix::fs::MetadataExt::uid(&meta) != euid() {
        return Err(std::io::Error::other(format!(
            "{} is not a folder of this user's",
            dir.display()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let path = dir.join(format!("sign-in-{}.html", &random_id()?[..16]));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)?;
    let href = url.replace('&', "&amp;");
    writeln!(
        f,
        "<!doctype html><html lang=en><meta charset=utf-8><meta name=referrer content=no-referrer>\
<meta http-equiv=refresh content=\"0;url={href}\"><title>Homeport: signing in</title>\
<body><p><a href=\"{href}\">Open the Homeport dashboard</a> (a one-time link).</p></body></html>"
    )?;
    f.sync_all()?;
    Ok(path)
}

fn random_id() -> std::io::Result<String> {
    homeport_fs::random_token()
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
    // One Host, naming us. Two Host headers are a request smuggling trick (RFC 9112 §3.2 says
    // answer 400); a request line with an absolute URI names its own host, which we refuse too.
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let (host, extra) = (hosts.next(), hosts.next());
    if extra.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "more than one Host header",
        );
    }
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request line must name a path, not an absolute URI",
        );
    }
    let host = host.and_then(|h| h.to_str().ok()).unwrap_or("");
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
    // A sign-in link is opened from the private local page `homeport dashboard` writes, which is
    // cross-site to the browser; the single-use ticket is what proves that request.
    let signing_in = req.method() == Method::GET && req.uri().path() == "/login";
    if !signing_in
        && req
            .headers()
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
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
/// state change, and with the event-stream handshake. A session's streams end with it.
pub async fn authenticate(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let principal = match guard.principal(&req) {
        Ok(p) => p,
        Err(Refusal::Forbidden(why)) => return error(StatusCode::FORBIDDEN, "forbidden", why),
        Err(Refusal::Unauthorized(why)) => {
            let mut resp = error(StatusCode::UNAUTHORIZED, "unauthorized", why);
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    };
    if let Principal::Session { .. } = &principal {
        if req.headers().get(header::ORIGIN).is_some_and(is_app_origin) {
            return error(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                "the app's windows must use the API token",
            );
        }
        if changes_state(req.method())
            && !req
                .headers()
                .get(header::ORIGIN)
                .is_some_and(|o| origin_allowed(&guard, o))
        {
            return error(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                "a browser must send this agent's Origin to change state",
            );
        }
    }
    req.extensions_mut().insert(principal.clone());
    let resp = next.run(req).await;
    match principal {
        Principal::Session { id, ends } if crate::body::is_stream(&resp) => {
            let sessions = Arc::clone(&guard.sessions);
            crate::body::until(resp, ends, move || {
                sessions.touch(&id, Instant::now());
            })
        }
        _ => resp,
    }
}

/// The UI's pages: a session or token; otherwise a sign-in page (401) that reveals nothing.
pub async fn authenticate_page(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    if guard.page_allowed(&req) {
        return next.run(req).await;
    }
    crate::pages::html(StatusCode::UNAUTHORIZED, crate::pages::signed_out())
}

/// Stores the secret where the dashboard's API module reads it, then opens the dashboard
/// (replacing the sign-in page in the history, so Back does not return to a used link).
pub const LOGIN_SCRIPT: &str = "(() => {\n  const m = document.querySelector('meta[name=\"homeport-session\"]');\n  \
if (m) localStorage.setItem('homeport.session', m.content);\n  location.replace('/');\n})();\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(dir: &Path) -> Sessions {
        Sessions::new(
            1,
            dir.to_path_buf(),
            SessionLimits {
                ticket: Duration::from_secs(120),
                idle: Duration::from_secs(60),
                absolute: Duration::from_secs(600),
            },
        )
    }

    fn ticket_of(s: &SignIn) -> String {
        s.url
            .split_once("ticket=")
            .map(|(_, t)| t.to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn a_ticket_works_once_and_only_while_fresh() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let s = sessions(dir.path());
        let t0 = Instant::now();
        let link = s.new_ticket(true)?;
        let page = link.page.clone().ok_or(std::io::Error::other("no page"))?;
        assert!(page.exists());
        assert!(s.redeem(&ticket_of(&link), t0).is_some());
        assert!(!page.exists(), "a used sign-in page is removed");
        assert!(s.redeem(&ticket_of(&link), t0).is_none(), "twice");
        let late = s.new_ticket(true)?;
        let page = late.page.clone().ok_or(std::io::Error::other("no page"))?;
        assert!(
            s.redeem(&ticket_of(&late), Instant::now() + Duration::from_secs(121))
                .is_none()
        );
        assert!(!page.exists(), "an expired sign-in page is removed");
        Ok(())
    }

    #[test]
    fn sessions_end_when_idle_and_at_their_absolute_limit() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let s = sessions(dir.path());
        let t0 = Instant::now();
        let (id, secret) = s
            .redeem(&ticket_of(&s.new_ticket(false)?), t0)
            .ok_or(std::io::Error::other("no session"))?;
        let at = |secs| t0 + Duration::from_secs(secs);
        assert!(matches!(s.check(&id, None, at(1)), Check::NoSecret));
        assert!(matches!(
            s.check(&id, Some("wrong"), at(1)),
            Check::NoSecret
        ));
        // Used every 50 s, it outlives the 60 s idle limit…
        for t in (50..=550).step_by(50) {
            assert!(
                matches!(s.check(&id, Some(&secret), at(t)), Check::Valid { .. }),
                "at {t} s"
            );
        }
        // …but not the absolute one.
        assert!(matches!(
            s.check(&id, Some(&secret), at(601)),
            Check::Unknown
        ));

        let (id, secret) = s
            .redeem(&ticket_of(&s.new_ticket(false)?), t0)
            .ok_or(std::io::Error::other("no session"))?;
        assert!(
            matches!(s.check(&id, Some(&secret), at(61)), Check::Unknown),
            "idle"
        );
        Ok(())
    }

    #[test]
    fn a_stream_keeps_its_session_from_going_idle() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let s = sessions(dir.path());
        let t0 = Instant::now();
        let (id, secret) = s
            .redeem(&ticket_of(&s.new_ticket(false)?), t0)
            .ok_or(std::io::Error::other("no session"))?;
        assert!(matches!(
            s.check(&id, Some(&secret), t0),
            Check::Valid { .. }
        ));
        s.touch(&id, t0 + Duration::from_secs(100));
        assert!(matches!(
            s.check(&id, Some(&secret), t0 + Duration::from_secs(150)),
            Check::Valid { .. }
        ));
        Ok(())
    }

    #[test]
    fn sign_in_pages_are_private_and_never_written_through_a_link() -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let pages = dir.path().join("signin");
        std::fs::create_dir(&pages)?;
        std::fs::set_permissions(&pages, std::fs::Permissions::from_mode(0o755))?;
        let p = write_sign_in_page(&pages, "http://127.0.0.1:1/login?ticket=x&y")?;
        assert_eq!(std::fs::metadata(&p)?.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(&pages)?.permissions().mode() & 0o777,
            0o700
        );
        assert!(std::fs::read_to_string(&p)?.contains("ticket=x&amp;y"));
        Ok(())
    }
}
