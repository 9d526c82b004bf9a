//! Domain and wire types shared by every Homeport crate.
//!
//! This crate owns the vocabulary: how a service is named ([`ServiceKey`], [`Target`]), the states
//! a supervised service moves through ([`ServiceState`]), why a process ended ([`ExitReason`]), the
//! events the agent publishes ([`Event`]), captured log lines ([`LogLine`]) and the DTOs of the local
//! API ([`StatusSnapshot`], [`ServiceStatus`], [`ApiError`]). It does no I/O and depends on serde only,
//! so the CLI, the agent, the tray and the typed client all agree on one definition.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

mod state;
pub use state::{AfterExit, Input, ServiceState};

/// `app/env/service`: the unique name of one supervised process.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceKey {
    pub app: String,
    pub env: String,
    pub service: String,
}

impl ServiceKey {
    pub fn new(app: impl Into<String>, env: impl Into<String>, service: impl Into<String>) -> Self {
        Self {
            app: app.into(),
            env: env.into(),
            service: service.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.app, self.env, self.service)
    }
}

/// What a CLI or API command acts on: everything, an app, one environment, or one service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    All,
    App(String),
    Env(String, String),
    Service(ServiceKey),
}

impl Target {
    /// Whether `key` is part of this target.
    pub fn contains(&self, key: &ServiceKey) -> bool {
        match self {
            Target::All => true,
            Target::App(app) => &key.app == app,
            Target::Env(app, env) => &key.app == app && &key.env == env,
            Target::Service(k) => k == key,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::All => f.write_str("all"),
            Target::App(app) => f.write_str(app),
            Target::Env(app, env) => write!(f, "{app}/{env}"),
            Target::Service(key) => key.fmt(f),
        }
    }
}

/// A target string that is not `app`, `app/env` or `app/env/service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetParseError(pub String);

impl fmt::Display for TargetParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid target {:?}: expected APP, APP/ENV or APP/ENV/SERVICE",
            self.0
        )
    }
}

impl std::error::Error for TargetParseError {}

impl FromStr for Target {
    type Err = TargetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "all" {
            return Ok(Target::All);
        }
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(TargetParseError(s.to_owned()));
        }
        match parts.as_slice() {
            [app] => Ok(Target::App((*app).to_owned())),
            [app, env] => Ok(Target::Env((*app).to_owned(), (*env).to_owned())),
            [app, env, svc] => Ok(Target::Service(ServiceKey::new(*app, *env, *svc))),
            _ => Err(TargetParseError(s.to_owned())),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum ExitReason {
    /// It exited with this status code.
    Code(i32),
    /// It was killed by this signal number.
    Signal(i32),
    /// Its log holder vanished, so its status is unknown.
    Lost,
}

impl ExitReason {
    /// A clean exit: status 0.
    pub fn success(self) -> bool {
        self == ExitReason::Code(0)
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Code(c) => write!(f, "exit code {c}"),
            ExitReason::Signal(s) => write!(f, "killed by {}", signal_name(*s)),
            ExitReason::Lost => f.write_str("lost (log holder died)"),
        }
    }
}

/// The conventional name of a Unix signal number, for messages.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return format!("signal {sig}"),
    };
    name.to_owned()
}

/// Result of the most recent health probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// The service has no health check, or it is not running.
    Unknown,
    Healthy,
    Unhealthy,
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The three-letter tag used in log files.
    pub fn tag(self) -> &'static str {
        match self {
            Stream::Stdout => "out",
            Stream::Stderr => "err",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "out" => Some(Stream::Stdout),
            "err" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// One captured line of a service's output. `text` is the line decoded as UTF-8 with invalid bytes
/// replaced; the log file keeps the original bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// RFC 3339 UTC time with microseconds, as written by the log holder.
    pub time: String,
    pub stream: Stream,
    pub text: String,
}

/// Everything the agent knows about one service, as shown by `homeport status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub key: ServiceKey,
    pub state: ServiceState,
    pub health: Health,
    pub pid: Option<u32>,
    /// Seconds since the current process started.
    pub uptime_secs: Option<u64>,
    /// Restarts since the agent first saw this service (kept across agent restarts).
    pub restarts: u64,
    pub last_exit: Option<ExitReason>,
    /// Human-readable detail of the current state ("waiting for db", "port 8080 is held by ...").
    pub message: Option<String>,
    pub cpu_percent: Option<f32>,
    pub rss_bytes: Option<u64>,
    pub port: Option<u16>,
    pub url: Option<String>,
    pub autostart: bool,
}

/// Everything about one service, for its detail view. Secret values are masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDetail {
    pub status: ServiceStatus,
    pub command: Vec<String>,
    pub cwd: String,
    /// The variables Homeport adds; values of secret ones are replaced by [`MASK`].
    pub env: std::collections::BTreeMap<String, String>,
    pub health: Option<String>,
    pub restart: String,
    pub depends_on: Vec<ServiceKey>,
    pub log_file: String,
    /// The newest recorded events, newest first.
    pub events: Vec<Event>,
}

/// What a secret value is shown as.
pub const MASK: &str = "••••••";

/// Facts about the agent itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub pid: u32,
    pub version: String,
    pub config_path: String,
    pub uptime_secs: u64,
}

/// The answer to `GET /api/v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusSnapshot {
    pub agent: AgentInfo,
    pub services: Vec<ServiceStatus>,
}

/// Something that happened to a service, as broadcast to subscribers and kept in state.db.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 UTC time.
    pub time: String,
    pub key: ServiceKey,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum EventKind {
    /// The service moved from one state to another.
    State {
        from: ServiceState,
        to: ServiceState,
        pid: Option<u32>,
        exit: Option<ExitReason>,
        /// Restarts so far, counting the one this transition may begin.
        restarts: u64,
        message: Option<String>,
    },
    /// A health probe result differed from the previous one.
    Health {
        health: Health,
        message: Option<String>,
    },
}

/// Which lifecycle command to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Start,
    Stop,
    Restart,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
        })
    }
}

/// Body of `POST /api/v1/{action}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRequest {
    pub target: Target,
}

/// Per-service outcome of a lifecycle command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionOutcome {
    pub key: ServiceKey,
    pub state: ServiceState,
    /// Set when the command failed for this service.
    pub error: Option<String>,
}

/// Every error body of the API: a machine-readable kind and a one-line message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub kind: String,
    pub message: String,
}

/// One log line of one service, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub service: ServiceKey,
    #[serde(flatten)]
    pub line: LogLine,
}

/// One item of a followed log stream: a line, or a note that a slow reader missed some.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum LogStreamItem {
    Line(LogEntry),
    /// Lines were skipped because the reader fell too far behind (their count, when known).
    Skipped {
        count: Option<u64>,
    },
}

/// One edit of the config file, as the settings screen makes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ConfigChange {
    /// Set a service's main `port`.
    Port {
        app: String,
        env: String,
        service: String,
        port: u16,
    },
    /// Set the path of one of an environment's `databases`.
    Database {
        app: String,
        env: String,
        name: String,
        path: String,
    },
    /// Set one of the `[agent]` options.
    Agent { key: AgentOption, value: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentOption {
    Port,
    LogMaxBytes,
    LogKeep,
}

impl AgentOption {
    pub fn key(self) -> &'static str {
        match self {
            AgentOption::Port => "port",
            AgentOption::LogMaxBytes => "log_max_bytes",
            AgentOption::LogKeep => "log_keep",
        }
    }
}

impl ConfigChange {
    /// The dotted TOML path of the value this change sets.
    pub fn field(&self) -> String {
        match self {
            ConfigChange::Port {
                app, env, service, ..
            } => format!("apps.{app}.env.{env}.services.{service}.port"),
            ConfigChange::Database { app, env, name, .. } => {
                format!("apps.{app}.env.{env}.databases.{name}")
            }
            ConfigChange::Agent { key, .. } => format!("agent.{}", key.key()),
        }
    }
}

/// The settings screen's view of the config: what it may edit, and the file's revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigView {
    pub file: String,
    /// SHA-256 of the file's text; edits name the revision they were made against.
    pub revision: String,
    pub agent: AgentSettingsView,
    pub envs: Vec<EnvView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSettingsView {
    pub port: u16,
    pub log_max_bytes: u64,
    pub log_keep: u32,
    pub data_dir: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvView {
    pub app: String,
    pub env: String,
    pub autostart: bool,
    pub databases: std::collections::BTreeMap<String, String>,
    pub services: Vec<ServiceView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    pub service: String,
    pub port: Option<u16>,
    /// Names of secret variables; their values are never sent.
    pub secret_env: Vec<String>,
}

/// Body of `POST /api/v1/config/preview` and `/apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigEdit {
    pub changes: Vec<ConfigChange>,
    /// The [`ConfigView::revision`] the changes were made against.
    pub revision: String,
}

/// One problem with a proposed config, located in the file as it would be written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub field: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub help: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigPreview {
    pub valid: bool,
    pub problems: Vec<Problem>,
    /// Unified diff of the file.
    pub diff: String,
    /// Running services that applying would restart.
    pub restart: Vec<ServiceKey>,
    pub revision: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigApplied {
    pub restarted: Vec<ServiceKey>,
    /// Agent options changed; they take effect when the agent restarts.
    pub needs_agent_restart: bool,
    /// The file's new revision.
    pub revision: String,
}

/// Answer to `POST /api/v1/sessions`: a one-time sign-in link for a browser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignInLink {
    pub url: String,
}

/// Why a backup was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupTrigger {
    Manual,
    Scheduled,
    PreDeploy,
}

impl BackupTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupTrigger::Manual => "manual",
            BackupTrigger::Scheduled => "scheduled",
            BackupTrigger::PreDeploy => "pre_deploy",
        }
    }
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupArtifact {
    /// The database's name, or `files`.
    pub name: String,
    /// `database` or `files`.
    pub kind: String,
    pub file: String,
    pub size: u64,
    pub sha256: String,
    pub compressed: bool,
}

/// A catalogued backup of one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    pub id: i64,
    pub app: String,
    pub env: String,
    /// RFC 3339 UTC.
    pub time: String,
    pub trigger: BackupTrigger,
    pub size: u64,
    pub duration_ms: u64,
    /// Its checksums and integrity were checked (when taken, or by the last `verify`).
    pub verified: bool,
    pub dir: String,
    pub artifacts: Vec<BackupArtifact>,
}

/// The backups of one environment, with its schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvBackups {
    pub app: String,
    pub env: String,
    /// `every 6h`, `daily at 03:30 UTC`, or none.
    pub schedule: Option<String>,
    /// RFC 3339 UTC time of the next scheduled backup.
    pub next_due: Option<String>,
    /// Newest first.
    pub backups: Vec<BackupInfo>,
}

/// Body of `POST /api/v1/backups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRequest {
    /// `APP/ENV`.
    pub target: Target,
}

/// Body of `POST /api/v1/restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    /// `APP/ENV`.
    pub target: Target,
    /// The backup; default: the newest verified one.
    pub backup: Option<i64>,
    /// Only this database; default: every database in the backup.
    pub database: Option<String>,
    /// Restore into this new file for inspection instead of replacing the live database.
    pub to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreOutcome {
    pub backup: i64,
    /// Databases put in place (or the file written, with `to`).
    pub restored: Vec<String>,
    /// Safety copies of the databases that were replaced.
    pub safety_copies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyOutcome {
    pub id: i64,
    pub ok: bool,
    pub problems: Vec<String>,
}

/// What a deploy request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployKind {
    /// Build the source and roll it out.
    Deploy,
    /// Roll out the release another environment runs, without building.
    Promote,
    /// Go back to an earlier release.
    Rollback,
    /// Fast-forward the source to its upstream, then deploy.
    Update,
}

impl DeployKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployKind::Deploy => "deploy",
            DeployKind::Promote => "promote",
            DeployKind::Rollback => "rollback",
            DeployKind::Update => "update",
        }
    }
}

/// Body of `POST /api/v1/deploy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    pub app: String,
    pub env: String,
    pub kind: DeployKind,
    /// Promote: the environment whose release to roll out.
    #[serde(default)]
    pub from_env: Option<String>,
    /// Rollback: the release to go back to (default: the one live before the current one).
    #[serde(default)]
    pub release: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub ok: bool,
    pub ms: u64,
    pub detail: Option<String>,
}

/// A deploy, promote, rollback or update, as state.db keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRecord {
    pub id: i64,
    pub app: String,
    pub env: String,
    pub kind: DeployKind,
    pub release: Option<String>,
    /// The release that was live before.
    pub previous: Option<String>,
    pub commit: Option<String>,
    pub started: String,
    pub finished: Option<String>,
    /// `running`, `succeeded`, `failed`, `interrupted`.
    pub result: String,
    pub error: Option<String>,
    pub steps: Vec<StepRecord>,
    /// Step output, the last log lines of each service and their exits, when it failed.
    pub diagnostics: Option<String>,
}

/// One line of a deploy's live stream (NDJSON from `POST /api/v1/deploy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum DeployEvent {
    Step {
        name: String,
        status: String,
        ms: Option<u64>,
        detail: Option<String>,
    },
    Output {
        step: String,
        line: String,
    },
    Done {
        record: DeployRecord,
    },
}

/// An app as the Deploys screen needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    pub name: String,
    /// It has a `source` to build and deploy from.
    pub deployable: bool,
    pub envs: Vec<EnvRelease>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvRelease {
    pub env: String,
    pub current: Option<String>,
}

/// A release of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    pub id: String,
    pub commit: String,
    pub branch: String,
    pub dirty: bool,
    pub time: String,
    /// Environments whose `current` is this release.
    pub current_in: Vec<String>,
}

/// Names of the agent's files in its data folder, shared by the agent and its clients.
pub mod files {
    /// [`AgentEndpoint`](super::AgentEndpoint) as JSON, while the agent runs.
    pub const ENDPOINT: &str = "agent.json";
    /// The API token (0600).
    pub const TOKEN: &str = "token";
    /// Held with `flock` by the running agent.
    pub const LOCK: &str = "agent.lock";
}

/// Where a running agent can be reached; written to `agent.json` in the data dir.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEndpoint {
    pub pid: u32,
    /// `host:port`, always a loopback address.
    pub addr: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print_round_trip() {
        for s in ["all", "clauset", "clauset/beta", "clauset/beta/server"] {
            let t: Target = s.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(t.to_string(), s);
        }
        for bad in ["", "a//b", "a/b/c/d", "/a", "a/"] {
            assert!(bad.parse::<Target>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn target_contains_matches_its_scope() {
        let k = ServiceKey::new("a", "prod", "web");
        assert!(Target::All.contains(&k));
        assert!(Target::App("a".into()).contains(&k));
        assert!(!Target::App("b".into()).contains(&k));
        assert!(Target::Env("a".into(), "prod".into()).contains(&k));
        assert!(!Target::Env("a".into(), "beta".into()).contains(&k));
        assert!(Target::Service(k.clone()).contains(&k));
    }
}
