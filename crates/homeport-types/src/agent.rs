//! The agent itself: its status snapshot, where it listens, its files, sign-in links and the
//! API's error body.

use serde::{Deserialize, Serialize};

use crate::ServiceStatus;

/// Facts about the agent itself.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub pid: u32,
    pub version: String,
    pub config_path: String,
    pub uptime_secs: u64,
    /// The service manager that runs the agent and restarts it (`systemd`, `launchd`), if any.
    #[serde(default)]
    pub service_manager: Option<String>,
    /// The agent's own log file (its warnings, whoever started it).
    #[serde(default)]
    pub log: Option<String>,
    /// The config file as last refused, while it has a mistake: the agent keeps running the
    /// config it had until the file is fixed.
    #[serde(default)]
    pub config_rejected: Option<crate::ConfigRejection>,
}

/// The answer to `GET /api/v1/status`.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusSnapshot {
    pub agent: AgentInfo,
    pub services: Vec<ServiceStatus>,
}

/// `GET /api/v1/status` as sent: the snapshot and its [`StatusSnapshot::overall`] verdict,
/// computed by the agent so every client shows the same one.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    #[serde(flatten)]
    pub snapshot: StatusSnapshot,
    pub overall: crate::Verdict,
}

/// Body of `POST /api/v1/agent/stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AgentStopRequest {
    /// Leave every service running for the next agent to re-adopt (an upgrade, a restart).
    #[serde(default)]
    pub keep_services: bool,
    /// Ask the service manager that runs the agent to start it again (implies `keep_services`).
    #[serde(default)]
    pub restart: bool,
}

/// Answer to `POST /api/v1/agent/stop`, sent before the agent begins to stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStopReply {
    pub pid: u32,
    /// The service manager that will start the agent again, when `restart` was asked and one runs it.
    pub restarted_by: Option<String>,
}

/// Every error body of the API: a machine-readable kind and a one-line message.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub kind: String,
    pub message: String,
}

/// Answer to `POST /api/v1/sessions`: a one-time sign-in link for a browser.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignInLink {
    pub url: String,
    /// A page only this user can read that leads a browser to `url`: what the desktop's opener
    /// is given, since any local user can read a command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
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
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEndpoint {
    pub pid: u32,
    /// `host:port`, always a loopback address.
    pub addr: String,
}

impl StatusSnapshot {
    /// Brings the snapshot up to date with `event`, as a subscriber that keeps its own copy
    /// does between snapshots: a service's state, health, pid, restarts and last exit. (CPU,
    /// memory and uptimes are not in events; they stay as the last snapshot had them.)
    pub fn apply(&mut self, event: &crate::Event) {
        match &event.kind {
            crate::EventKind::ConfigApplied { .. } => self.agent.config_rejected = None,
            crate::EventKind::ConfigRejected {
                file,
                line,
                column,
                field,
                message,
                problems,
                source,
            } if *source != crate::ConfigSource::Settings => {
                // A refused edit from the settings screen left the file as it was.
                self.agent.config_rejected = Some(crate::ConfigRejection {
                    file: file.clone(),
                    line: *line,
                    column: *column,
                    field: field.clone(),
                    message: message.clone(),
                    problems: *problems,
                    source: *source,
                    time: event.time.clone(),
                })
            }
            _ => {}
        }
        let Some(key) = event.service() else {
            return;
        };
        let Some(s) = self.services.iter_mut().find(|s| &s.key == key) else {
            return;
        };
        match &event.kind {
            crate::EventKind::State {
                to,
                pid,
                exit,
                restarts,
                message,
                ..
            } => {
                s.state = *to;
                s.pid = if to.is_up() { *pid } else { None };
                s.restarts = *restarts;
                if exit.is_some() {
                    s.last_exit = *exit;
                }
                s.message = message.clone();
                s.state_secs = Some(0);
                if !to.is_up() {
                    s.health = crate::Health::Unknown;
                }
            }
            crate::EventKind::Health { health, .. } => s.health = *health,
            _ => {}
        }
    }
}
