//! The settings screen: the config as it may be edited, edits, and what they would do.

use serde::{Deserialize, Serialize};

use crate::ServiceKey;

/// One edit of the config file, as the settings screen makes it.
#[cfg_attr(test, derive(ts_rs::TS))]
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

#[cfg_attr(test, derive(ts_rs::TS))]
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
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigView {
    pub file: String,
    /// SHA-256 of the file's text; edits name the revision they were made against.
    pub revision: String,
    pub agent: AgentSettingsView,
    pub envs: Vec<EnvView>,
}

#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSettingsView {
    pub port: u16,
    pub log_max_bytes: u64,
    pub log_keep: u32,
    pub data_dir: String,
}

#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvView {
    pub app: String,
    pub env: String,
    pub autostart: bool,
    pub databases: std::collections::BTreeMap<String, String>,
    pub services: Vec<ServiceView>,
}

#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    pub service: String,
    pub port: Option<u16>,
    /// Names of secret variables; their values are never sent.
    pub secret_env: Vec<String>,
}

/// Body of `POST /api/v1/config/preview` and `/apply`.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigEdit {
    pub changes: Vec<ConfigChange>,
    /// The [`ConfigView::revision`] the changes were made against.
    pub revision: String,
}

/// One problem with a proposed config, located in the file as it would be written.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub field: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub help: Option<String>,
}

#[cfg_attr(test, derive(ts_rs::TS))]
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

#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigApplied {
    pub restarted: Vec<ServiceKey>,
    /// Agent options changed; they take effect when the agent restarts.
    pub needs_agent_restart: bool,
    /// The file's new revision.
    pub revision: String,
}
