//! A typed client of the agent's local API, for the CLI and the tray.
//!
//! [`Client::discover`] finds a running agent through the files it keeps in its data folder
//! (`agent.json` for the address, `token` for the credential).

use std::path::Path;

use futures_util::{Stream, StreamExt, TryStreamExt};
use homeport_types::{
    Action, ActionOutcome, ActionRequest, AgentEndpoint, ApiError, BackupInfo, BackupRequest,
    EnvBackups, LogStreamItem, RestoreOutcome, RestoreRequest, SignInLink, StatusSnapshot, Target,
    VerifyOutcome, files,
};
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No agent answers at the recorded address, or none recorded one.
    #[error("the homeport agent is not running ({0}); start it with `homeport agent`")]
    NotRunning(String),
    /// The agent answered with an error.
    #[error("{message}")]
    Api {
        status: u16,
        kind: String,
        message: String,
    },
    #[error("talking to the agent failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot read {0}: {1}")]
    Io(String, #[source] std::io::Error),
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// What `GET /api/v1/logs` takes.
#[derive(Debug, Clone, Default)]
pub struct LogRequest {
    pub target: Option<Target>,
    pub tail: Option<usize>,
    pub since: Option<String>,
    pub grep: Option<String>,
    pub follow: bool,
}

impl Client {
    /// A client of the agent at `addr` (`host:port`).
    pub fn new(addr: &str, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: format!("http://{addr}"),
            token: token.to_owned(),
        }
    }

    /// A client of an agent reached through a Unix socket that leads to its `addr`: the local
    /// end of an SSH forward to another host's agent. The Host header names `addr`, as that
    /// agent expects of every request.
    pub fn over_unix_socket(socket: &Path, addr: &str, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .unix_socket(socket.to_path_buf())
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: format!("http://{addr}"),
            token: token.to_owned(),
        }
    }

    /// This agent's way to another host `name` (enrolled with `homeport host add`): every call
    /// of the returned client goes to the agent there, through this agent, which holds the SSH
    /// connection and adds that agent's credential.
    pub fn via_host(&self, name: &str) -> Self {
        Self {
            http: self.http.clone(),
            base: format!("{}/api/v1/hosts/{name}", self.base),
            token: self.token.clone(),
        }
    }

    /// The hosts this agent reaches, and how each connection is.
    pub async fn hosts(&self) -> Result<Vec<homeport_types::HostInfo>, ClientError> {
        self.json(self.http.get(format!("{}/api/v1/hosts", self.base)))
            .await
    }

    /// Asks the agent to read the enrolled hosts again (after `homeport host add|remove`).
    pub async fn reload_hosts(&self) -> Result<Vec<homeport_types::HostInfo>, ClientError> {
        self.json(self.http.post(format!("{}/api/v1/hosts/reload", self.base)))
            .await
    }

    /// What a deploy of `app/env` needs on this agent's machine, and what is missing.
    pub async fn preflight(
        &self,
        app: &str,
        env: &str,
    ) -> Result<homeport_types::Preflight, ClientError> {
        self.json(
            self.http
                .get(format!("{}/api/v1/preflight", self.base))
                .query(&[("app", app), ("env", env)]),
        )
        .await
    }

    /// A client of the agent whose data folder is `data_dir`.
    pub fn discover(data_dir: &Path) -> Result<Self, ClientError> {
        let ep = running_endpoint(data_dir)?;
        let token_path = data_dir.join(files::TOKEN);
        let token = std::fs::read_to_string(&token_path)
            .map_err(|e| ClientError::Io(token_path.display().to_string(), e))?;
        Ok(Self::new(&ep.addr, token.trim()))
    }

    /// The HTTP client (for a relay that forwards requests as they come).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The API token this client sends (for the tray app's own window, which talks to the
    /// agent directly).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A one-time link that signs a browser in to the dashboard, and the private page that
    /// leads to it (give the page to an opener: see [`open_sign_in_page`]).
    pub async fn sign_in_link(&self) -> Result<SignInLink, ClientError> {
        self.json(self.http.post(format!("{}/api/v1/sessions", self.base)))
            .await
    }

    pub async fn backups(&self, target: &Target) -> Result<Vec<EnvBackups>, ClientError> {
        let req = self
            .http
            .get(format!("{}/api/v1/backups", self.base))
            .query(&[("target", target.to_string())]);
        self.json(req).await
    }

    pub async fn backup(&self, target: &Target) -> Result<BackupInfo, ClientError> {
        let req = self
            .http
            .post(format!("{}/api/v1/backups", self.base))
            .json(&BackupRequest {
                target: target.clone(),
            });
        self.json(req).await
    }

    /// Lifts the pause of an environment's automatic updates.
    pub async fn resume_updates(
        &self,
        app: &str,
        env: &str,
    ) -> Result<homeport_types::AutoUpdateState, ClientError> {
        let req = self
            .http
            .post(format!("{}/api/v1/auto-update/resume", self.base))
            .json(&homeport_types::ResumeRequest {
                app: app.to_owned(),
                env: env.to_owned(),
            });
        self.json(req).await
    }

    pub async fn verify_backup(&self, id: i64) -> Result<VerifyOutcome, ClientError> {
        self.json(
            self.http
                .post(format!("{}/api/v1/backups/{id}/verify", self.base)),
        )
        .await
    }

    pub async fn restore(&self, req: &RestoreRequest) -> Result<RestoreOutcome, ClientError> {
        self.json(
            self.http
                .post(format!("{}/api/v1/restore", self.base))
                .json(req),
        )
        .await
    }

    /// Starts a deploy; its events as they come, the last one `Done`.
    pub async fn deploy(
        &self,
        req: &homeport_types::DeployRequest,
    ) -> Result<
        impl Stream<Item = Result<homeport_types::DeployEvent, ClientError>> + use<>,
        ClientError,
    > {
        let resp = self
            .send(
                self.http
                    .post(format!("{}/api/v1/deploy", self.base))
                    .json(req),
            )
            .await?;
        Ok(ndjson(resp.bytes_stream().map_err(ClientError::Http)))
    }

    /// How many commits the app's source is behind and ahead of its upstream (after a fetch).
    pub async fn update_check(&self, app: &str) -> Result<(u32, u32), ClientError> {
        let v: serde_json::Value = self
            .json(
                self.http
                    .get(format!("{}/api/v1/update-check", self.base))
                    .query(&[("app", app)]),
            )
            .await?;
        let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0) as u32;
        Ok((n("behind"), n("ahead")))
    }

    /// The newest deploys, newest first: of `app`, or of every app when `None`.
    pub async fn deploys(
        &self,
        app: Option<&str>,
    ) -> Result<Vec<homeport_types::DeployRecord>, ClientError> {
        self.json(
            self.http
                .get(format!("{}/api/v1/deploys", self.base))
                .query(&[("app", app.unwrap_or(""))]),
        )
        .await
    }

    /// One deploy with its steps' output.
    pub async fn deploy_detail(
        &self,
        id: i64,
    ) -> Result<homeport_types::DeployDetail, ClientError> {
        self.json(self.http.get(format!("{}/api/v1/deploys/{id}", self.base)))
            .await
    }

    /// The configured apps: which can deploy, and what each environment runs.
    pub async fn apps(&self) -> Result<Vec<homeport_types::AppInfo>, ClientError> {
        self.json(self.http.get(format!("{}/api/v1/apps", self.base)))
            .await
    }

    pub async fn releases(
        &self,
        app: &str,
    ) -> Result<Vec<homeport_types::ReleaseInfo>, ClientError> {
        self.json(
            self.http
                .get(format!("{}/api/v1/releases", self.base))
                .query(&[("app", app)]),
        )
        .await
    }

    /// Has the agent read its config file again and apply it; an invalid file is an
    /// [`ClientError::Api`] (422, `invalid_config`) whose message lists every problem.
    pub async fn reload(&self) -> Result<homeport_types::ConfigApplied, ClientError> {
        self.json(
            self.http
                .post(format!("{}/api/v1/config/reload", self.base)),
        )
        .await
    }

    /// The status with the agent's verdict on it.
    pub async fn status_report(&self) -> Result<homeport_types::StatusReport, ClientError> {
        self.json(self.http.get(format!("{}/api/v1/status", self.base)))
            .await
    }

    /// One connection to `/api/v1/events/stream`: a snapshot, then every event, as long as the
    /// agent keeps it open. [`subscribe`] reconnects.
    pub async fn events(
        &self,
    ) -> Result<impl Stream<Item = Result<Update, ClientError>> + use<>, ClientError> {
        let resp = self
            .send(
                self.http
                    .get(format!("{}/api/v1/events/stream", self.base))
                    .header("accept", "text/event-stream"),
            )
            .await?;
        Ok(sse(resp.bytes_stream().map_err(ClientError::from)))
    }

    /// Recorded events within `target`, newest first, of the given kinds (all when empty).
    pub async fn event_history(
        &self,
        target: &Target,
        kinds: &[&str],
        limit: usize,
    ) -> Result<Vec<homeport_types::Event>, ClientError> {
        let target = target.to_string();
        let kinds = kinds.join(",");
        let limit = limit.to_string();
        self.json(
            self.http
                .get(format!("{}/api/v1/events", self.base))
                .query(&[("target", target), ("kind", kinds), ("limit", limit)]),
        )
        .await
    }

    /// History of `target`'s services over `range` (`"1h"`, `"24h"`, `"7d"`, `"30d"`) at
    /// `resolution` (`"raw"`, `"1m"`, `"10m"`, `"1h"`; the finest the range keeps when `None`).
    pub async fn metrics(
        &self,
        target: &Target,
        range: &str,
        resolution: Option<&str>,
    ) -> Result<homeport_types::MetricsReport, ClientError> {
        let target = target.to_string();
        self.json(
            self.http
                .get(format!("{}/api/v1/metrics", self.base))
                .query(&[
                    ("target", target.as_str()),
                    ("range", range),
                    ("resolution", resolution.unwrap_or("auto")),
                ]),
        )
        .await
    }

    /// Everything about one service (`homeport show`), secrets masked.
    pub async fn service(
        &self,
        key: &homeport_types::ServiceKey,
    ) -> Result<homeport_types::ServiceDetail, ClientError> {
        self.json(self.http.get(format!(
            "{}/api/v1/services/{}/{}/{}",
            self.base, key.app, key.env, key.service
        )))
        .await
    }

    /// Asks the agent to stop (or, under a service manager, to restart); it answers first.
    pub async fn agent_stop(
        &self,
        req: homeport_types::AgentStopRequest,
    ) -> Result<homeport_types::AgentStopReply, ClientError> {
        self.json(
            self.http
                .post(format!("{}/api/v1/agent/stop", self.base))
                .json(&req),
        )
        .await
    }

    pub async fn status(&self) -> Result<StatusSnapshot, ClientError> {
        self.json(self.http.get(format!("{}/api/v1/status", self.base)))
            .await
    }

    pub async fn act(
        &self,
        action: Action,
        target: &Target,
    ) -> Result<Vec<ActionOutcome>, ClientError> {
        let req = self
            .http
            .post(format!("{}/api/v1/{action}", self.base))
            .json(&ActionRequest {
                target: target.clone(),
            });
        self.json(req).await
    }

    /// Log lines as they arrive: the history first, then (with `follow`) new lines.
    pub async fn logs(
        &self,
        req: &LogRequest,
    ) -> Result<impl Stream<Item = Result<LogStreamItem, ClientError>> + use<>, ClientError> {
        let mut query: Vec<(&str, String)> = vec![(
            "target",
            req.target
                .as_ref()
                .map_or_else(|| "all".to_owned(), ToString::to_string),
        )];
        if let Some(n) = req.tail {
            query.push(("tail", n.to_string()));
        }
        if let Some(s) = &req.since {
            query.push(("since", s.clone()));
        }
        if let Some(g) = &req.grep {
            query.push(("grep", g.clone()));
        }
        if req.follow {
            query.push(("follow", "true".into()));
        }
        let resp = self
            .send(
                self.http
                    .get(format!("{}/api/v1/logs", self.base))
                    .query(&query),
            )
            .await?;
        let bytes = resp.bytes_stream().map_err(ClientError::Http);
        Ok(ndjson(bytes))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let resp = req.bearer_auth(&self.token).send().await.map_err(|e| {
            if e.is_connect() {
                ClientError::NotRunning(format!("nothing answers at {}", self.base))
            } else {
                e.into()
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        let (kind, message) = match serde_json::from_str::<ApiError>(&body) {
            Ok(e) => (e.kind, e.message),
            Err(_) => ("http".to_owned(), format!("HTTP {status}: {body}")),
        };
        Err(ClientError::Api {
            status,
            kind,
            message,
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = self.send(req).await?;
        let path = resp.url().path().to_owned();
        let body = resp.bytes().await?;
        serde_json::from_slice(&body).map_err(|e| unreadable_answer(&path, &body, &e))
    }
}

/// An answer this client cannot read most often comes from an agent of another version still
/// running (the CLI was upgraded, the agent was not): say so, with the agent's version when the
/// answer names it, and how to fix it.
fn unreadable_answer(path: &str, body: &[u8], e: &serde_json::Error) -> ClientError {
    let theirs = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["agent"]["version"].as_str().map(str::to_owned));
    let ours = env!("CARGO_PKG_VERSION");
    let who = match theirs {
        Some(v) if v != ours => {
            format!("the running agent is version {v} and this homeport is {ours}")
        }
        _ => "the running agent may be from another build of homeport than this one".to_owned(),
    };
    ClientError::Api {
        status: 200,
        kind: "unreadable_answer".into(),
        message: format!(
            "the agent's answer to {path} could not be read ({e}): {who}; restart the agent with `homeport agent restart`"
        ),
    }
}

/// Where the agent whose data folder is `data_dir` listens, when one runs there (it holds
/// the folder's lock).
pub fn running_endpoint(data_dir: &Path) -> Result<AgentEndpoint, ClientError> {
    let ep_path = data_dir.join(files::ENDPOINT);
    let ep: AgentEndpoint = match std::fs::read(&ep_path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            ClientError::NotRunning(format!("unreadable {}: {e}", ep_path.display()))
        })?,
        Err(_) => return Err(ClientError::NotRunning(format!("no {}", ep_path.display()))),
    };
    // agent.json outlives a killed agent, and another program may have taken its port since:
    // never send the token unless an agent holds the lock.
    if let Ok(lock) = std::fs::OpenOptions::new()
        .write(true)
        .open(data_dir.join(files::LOCK))
        && lock.try_lock().is_ok()
    {
        return Err(ClientError::NotRunning(format!(
            "{} is left from an agent that has exited",
            ep_path.display()
        )));
    }
    Ok(ep)
}

/// What a subscriber learns.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// The whole status (on connecting, and after falling behind): start again from it.
    Snapshot(homeport_types::StatusReport),
    /// Something happened after the last snapshot.
    Event(homeport_types::Event),
    /// The connection is gone (the agent stopped or is unreachable); a snapshot follows when
    /// it is back.
    Disconnected(String),
}

/// Subscribes for as long as the stream is polled: connects with `connect` (which may find, or
/// start, an agent anew each time), then yields a snapshot and every event; when the connection
/// drops it says so, waits (1 s, doubling up to 10 s while nothing answers) and connects again,
/// starting with a fresh snapshot, so a subscriber never works from a stale picture.
pub fn subscribe<F>(connect: F) -> impl Stream<Item = Update>
where
    F: FnMut() -> Result<Client, String>,
{
    const FIRST: std::time::Duration = std::time::Duration::from_secs(1);
    const MOST: std::time::Duration = std::time::Duration::from_secs(10);
    type Events = std::pin::Pin<Box<dyn Stream<Item = Result<Update, ClientError>> + Send>>;
    struct State<F> {
        connect: F,
        events: Option<Events>,
        wait: Option<std::time::Duration>,
    }
    let state = State {
        connect,
        events: None,
        wait: None,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(events) = &mut st.events {
                match events.next().await {
                    Some(Ok(update)) => {
                        st.wait = None;
                        return Some((update, st));
                    }
                    Some(Err(e)) => {
                        st.events = None;
                        return Some((Update::Disconnected(e.to_string()), st));
                    }
                    None => {
                        st.events = None;
                        return Some((
                            Update::Disconnected("the agent closed the stream".into()),
                            st,
                        ));
                    }
                }
            }
            if let Some(w) = st.wait {
                tokio::time::sleep(w).await;
            }
            st.wait = Some(st.wait.map_or(FIRST, |w| (w * 2).min(MOST)));
            let client = match (st.connect)() {
                Ok(c) => c,
                Err(reason) => return Some((Update::Disconnected(reason), st)),
            };
            match client.events().await {
                Ok(events) => st.events = Some(Box::pin(events)),
                Err(e) => return Some((Update::Disconnected(e.to_string()), st)),
            }
        }
    })
}

/// Parses server-sent events: `snapshot`/`resync` and `event` messages.
fn sse(
    bytes: impl Stream<Item = Result<bytes::Bytes, ClientError>> + Send + 'static,
) -> impl Stream<Item = Result<Update, ClientError>> + Send {
    let bytes = Box::pin(bytes);
    futures_util::stream::unfold(
        (bytes, Vec::<u8>::new()),
        |(mut bytes, mut buf)| async move {
            loop {
                // A message ends with a blank line.
                if let Some(i) = buf.windows(2).position(|w| w == b"\n\n") {
                    let msg: Vec<u8> = buf.drain(..i + 2).collect();
                    let text = String::from_utf8_lossy(&msg);
                    let (mut name, mut data) = ("message", String::new());
                    for line in text.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            name = if v.trim() == "event" {
                                "event"
                            } else if matches!(v.trim(), "snapshot" | "resync") {
                                "snapshot"
                            } else {
                                "other"
                            };
                        } else if let Some(v) = line.strip_prefix("data:") {
                            if !data.is_empty() {
                                data.push('\n');
                            }
                            data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        }
                    }
                    let decode = |e: serde_json::Error| ClientError::Api {
                        status: 200,
                        kind: "decode".into(),
                        message: format!("bad event from the agent: {e}"),
                    };
                    let update = match name {
                        "snapshot" => serde_json::from_str(&data)
                            .map(Update::Snapshot)
                            .map_err(decode),
                        "event" => serde_json::from_str(&data)
                            .map(Update::Event)
                            .map_err(decode),
                        // Keep-alive comments and kinds this client does not know.
                        _ => continue,
                    };
                    return Some((update, (bytes, buf)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => return Some((Err(e), (bytes, Vec::new()))),
                    None => return None,
                }
            }
        },
    )
}

/// Splits a byte stream into lines and decodes each as JSON.
fn ndjson<T: DeserializeOwned>(
    bytes: impl Stream<Item = Result<bytes::Bytes, ClientError>>,
) -> impl Stream<Item = Result<T, ClientError>> {
    let bytes = Box::pin(bytes);
    futures_util::stream::unfold(
        (bytes, Vec::<u8>::new(), false),
        |(mut bytes, mut buf, done)| async move {
            loop {
                if let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    let item =
                        serde_json::from_slice::<T>(&line[..i]).map_err(|e| ClientError::Api {
                            status: 200,
                            kind: "decode".into(),
                            message: format!("bad log line from the agent: {e}"),
                        });
                    return Some((item, (bytes, buf, done)));
                }
                if done {
                    return None;
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => return Some((Err(e), (bytes, buf, true))),
                    None => {
                        if buf.is_empty() {
                            return None;
                        }
                        buf.push(b'\n');
                        return Some((
                            Err(ClientError::Api {
                                status: 200,
                                kind: "decode".into(),
                                message: "truncated log stream".into(),
                            }),
                            (bytes, Vec::new(), true),
                        ));
                    }
                }
            }
        },
    )
}

/// Opens the dashboard in the browser through the sign-in page of `link`. The opener is given
/// the page's path, never the link: the link holds a one-time ticket, and every local user can
/// read the command line of the opener and of the browser it starts.
pub fn open_sign_in_page(link: &SignInLink) -> std::io::Result<()> {
    let page = link.page.as_deref().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the agent made no sign-in page",
        )
    })?;
    open_in_browser(page)
}

/// Opens `url` (or a file) with the desktop's opener (`open` on macOS, `xdg-open` elsewhere),
/// without waiting for it. Never give it a secret: see [`open_sign_in_page`].
pub fn open_in_browser(url: &str) -> std::io::Result<()> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|mut child| {
            // Reaped when it ends (it hands the URL to the browser and exits), so that a
            // long-lived caller such as the tray keeps no zombies.
            std::thread::spawn(move || child.wait());
        })
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot run {opener}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers one request on a loopback port with `body` as JSON, as an agent would.
    async fn one_answer(body: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = vec![0; 4096];
            let _ = conn.read(&mut request).await.unwrap();
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(answer.as_bytes()).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn an_agent_of_another_version_is_named_with_how_to_restart_it() {
        // An older agent's status: no `overall`, which this client's StatusReport requires.
        let addr = one_answer(
            r#"{"agent":{"pid":7,"version":"0.0.1","config_path":"/h.toml","uptime_secs":3},"services":[]}"#,
        )
        .await;
        let err = Client::new(&addr, "t").status_report().await.unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("/api/v1/status")
                && message.contains("the running agent is version 0.0.1")
                && message.contains("`homeport agent restart`"),
            "{message}"
        );
    }
}
