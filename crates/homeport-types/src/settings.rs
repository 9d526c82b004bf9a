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

/// What made the agent apply (or refuse) its config file.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigSource {
    /// The settings screen (`POST /api/v1/config/apply`).
    #[default]
    Settings,
    /// `homeport reload` (`POST /api/v1/config/reload`).
    Reload,
    /// SIGHUP to the agent.
    Signal,
    /// The file changed on disk and the agent noticed.
    Watch,
}

impl ConfigSource {
    /// How a person says where the change came from.
    pub fn describe(self) -> &'static str {
        match self {
            ConfigSource::Settings => "from the settings screen",
            ConfigSource::Reload => "on `homeport reload`",
            ConfigSource::Signal => "on SIGHUP",
            ConfigSource::Watch => "as the file was saved",
        }
    }
}

/// An added service that could not be started, and why.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotStarted {
    pub key: ServiceKey,
    pub error: String,
}

/// What applying the config file did: every service is in exactly one of `added`, `removed`,
/// `restarted`, `updated` and `unchanged`.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigApplied {
    /// The config file.
    #[serde(default)]
    pub file: String,
    #[serde(default)]
    pub source: ConfigSource,
    /// New services (started when they autostart).
    #[serde(default)]
    pub added: Vec<ServiceKey>,
    /// Services the file no longer names, stopped.
    #[serde(default)]
    pub removed: Vec<ServiceKey>,
    /// Changed services that were running, restarted with their new config.
    pub restarted: Vec<ServiceKey>,
    /// Changed services that were not running: they start with the new config when started.
    #[serde(default)]
    pub updated: Vec<ServiceKey>,
    /// Services whose config did not change, left alone.
    #[serde(default)]
    pub unchanged: Vec<ServiceKey>,
    /// Added services that were to start and could not.
    #[serde(default)]
    pub not_started: Vec<NotStarted>,
    /// Agent options changed; they take effect when the agent restarts.
    pub needs_agent_restart: bool,
    /// Which ones (`port`, `router_port`, …).
    #[serde(default)]
    pub agent_changes: Vec<String>,
    /// Settings of environments and apps that changed (`shop/production: auto_update,
    /// health_stable`); they apply from now on — the next update check, backup or deploy —
    /// without restarting anything.
    #[serde(default)]
    pub settings_changed: Vec<String>,
    /// The file's new revision.
    pub revision: String,
}

/// The config file as the agent last refused it: the first problem, located. The agent keeps
/// running the config it had until the file is fixed.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRejection {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
    /// How many problems in all.
    pub problems: usize,
    pub source: ConfigSource,
    /// RFC 3339 UTC time of the refusal.
    pub time: String,
}

impl ConfigRejection {
    /// "homeport.toml:12:9: apps.shop….port: expected a number".
    pub fn located(&self) -> String {
        let mut s = self.file.clone();
        if self.line > 0 {
            s.push_str(&format!(":{}:{}", self.line, self.column));
        }
        if !self.field.is_empty() {
            s.push_str(&format!(": {}", self.field));
        }
        s.push_str(&format!(": {}", self.message));
        s
    }
}
