//! Deploys, releases and their records.

use serde::{Deserialize, Serialize};

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
