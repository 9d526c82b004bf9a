//! One supervised service as clients see it: why it ended, its health, its status and details,
//! and the lifecycle commands.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Event, ServiceKey, ServiceState, Target};

/// Why a process ended.
#[cfg_attr(test, derive(ts_rs::TS))]
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
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// The service has no health check, or it is not running.
    Unknown,
    Healthy,
    Unhealthy,
}

/// Everything the agent knows about one service, as shown by `homeport status`.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub key: ServiceKey,
    pub state: ServiceState,
    pub health: Health,
    pub pid: Option<u32>,
    /// Seconds since the current process started.
    pub uptime_secs: Option<u64>,
    /// Seconds the service has been in its current state.
    #[serde(default)]
    pub state_secs: Option<u64>,
    /// Restarts since the agent first saw this service (kept across agent restarts).
    pub restarts: u64,
    pub last_exit: Option<ExitReason>,
    /// Human-readable detail of the current state ("waiting for db", "port 8080 is held by ...").
    pub message: Option<String>,
    pub cpu_percent: Option<f32>,
    pub rss_bytes: Option<u64>,
    /// Its main port; of a blue-green instance, the service's public port.
    pub port: Option<u16>,
    /// Named extra ports (`ports = { admin = 9001 }`).
    #[serde(default)]
    pub ports: std::collections::BTreeMap<String, u16>,
    /// Set for the two instances of a blue-green service.
    #[serde(default)]
    pub instance: Option<Instance>,
    pub url: Option<String>,
    pub autostart: bool,
    /// The service's current log file (`DATA/logs/APP/ENV/SERVICE.log`).
    #[serde(default)]
    pub log_file: Option<String>,
    /// While it waits to restart after a crash: in how many seconds it starts again.
    #[serde(default)]
    pub retry_in_secs: Option<u64>,
    /// Which desktop notifications its environment wants (`notify` in the config).
    #[serde(default)]
    pub notify: NotifyPolicy,
}

/// Which desktop notifications an environment gets (`notify = "all" | "failures" | "none"`).
/// Production's failures are urgent; other environments' are quiet (no sound, no staying on
/// screen). By default production gets everything and other environments only failures.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyPolicy {
    /// Failures, and what went well (a deploy succeeded, a backup made, a restart after a crash).
    #[default]
    All,
    /// Only what needs a person: crash loops given up, lost health, failed deploys and backups.
    Failures,
    None,
}

impl NotifyPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "all" => Some(Self::All),
            "failures" => Some(Self::Failures),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    /// The default of an environment: everything for production, failures elsewhere.
    pub fn default_for(env: &str) -> Self {
        if env == crate::PRODUCTION {
            Self::All
        } else {
            Self::Failures
        }
    }
}

impl ServiceStatus {
    /// Its state in words: "restarting in 15 s", "running", "failed".
    pub fn state_words(&self) -> String {
        match (self.state, self.retry_in_secs) {
            (crate::ServiceState::BackingOff, Some(n)) if n > 0 => format!("restarting in {n} s"),
            (s, _) => s.word().to_owned(),
        }
    }
}

/// One of the two instances of a blue-green service.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// `blue` or `green`.
    pub colour: String,
    /// It is the one requests go to.
    pub live: bool,
    /// Its own port (the public one is the service's `port`).
    pub port: u16,
}

/// Everything about one service, for its detail view. Secret values are masked.
#[cfg_attr(test, derive(ts_rs::TS))]
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
    /// Named extra ports (`ports = { admin = 9001 }`); the main one is `status.port`.
    #[serde(default)]
    pub ports: std::collections::BTreeMap<String, u16>,
    pub log_file: String,
    /// The newest recorded events, newest first.
    pub events: Vec<Event>,
}

/// What a secret value is shown as.
pub const MASK: &str = "••••••";

/// Which lifecycle command to run.
#[cfg_attr(test, derive(ts_rs::TS))]
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
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRequest {
    pub target: Target,
}

/// Per-service outcome of a lifecycle command.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionOutcome {
    pub key: ServiceKey,
    pub state: ServiceState,
    /// Set when the command failed for this service.
    pub error: Option<String>,
}
