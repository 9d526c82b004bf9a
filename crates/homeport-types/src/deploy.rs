//! Deploys, releases and their records.

use serde::{Deserialize, Serialize};

/// What a deploy request does.
#[cfg_attr(test, derive(ts_rs::TS))]
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
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    pub app: String,
    pub env: String,
    pub kind: DeployKind,
    /// Promote: the environment whose release to roll out.
    #[serde(default)]
    pub from_env: Option<String>,
    /// Rollback: the release to go back to (default: the one live before the current one).
    /// Deploy: a release built on another computer and copied into this agent's
    /// `apps/APP/incoming/` (an environment with `host = …` there), checked against its manifest.
    #[serde(default)]
    pub release: Option<String>,
    /// Deploy: the branch, tag or commit to build (default: what the source has checked out).
    #[serde(default)]
    pub git_ref: Option<String>,
    /// For an environment on another host: build there from the pushed commit instead of
    /// here (which is what happens anyway when the host's OS or architecture differ).
    #[serde(default)]
    pub build_on_host: bool,
}

#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub ok: bool,
    pub ms: u64,
    pub detail: Option<String>,
    /// The last lines a failed command step wrote.
    #[serde(default)]
    pub output: Vec<String>,
}

/// A deploy, promote, rollback or update, as state.db keeps it.
#[cfg_attr(test, derive(ts_rs::TS))]
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
    pub result: DeployResult,
    pub error: Option<String>,
    pub steps: Vec<StepRecord>,
    /// Step output, the last log lines of each service and their exits, when it failed.
    pub diagnostics: Option<String>,
    /// How long it took in all, once finished.
    #[serde(default)]
    pub ms: Option<u64>,
    /// Data its rollback discarded from each database, and where it is kept.
    #[serde(default)]
    pub discarded: Vec<Discarded>,
}

/// One deploy with everything its steps wrote (`GET /api/v1/deploys/{id}`).
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployDetail {
    pub record: DeployRecord,
    /// `[step] line`, oldest first (the newest lines, when there were very many).
    pub output: Vec<String>,
}

/// Data a deploy's rollback discarded from one database by putting its pre-deploy backup back,
/// and where the database as it was just before is kept.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discarded {
    /// The database's name in the environment's `databases`.
    pub database: String,
    /// The live database's path.
    pub path: String,
    /// Rows it held before the rollback that it no longer holds (new or changed since the
    /// backup); `None` when the database was too large to compare.
    pub rows: Option<u64>,
    /// The same, per table (only tables that lost rows).
    pub tables: Vec<TableRows>,
    /// The safety backup that holds the database as it was just before (see `homeport backups`).
    pub backup: Option<i64>,
    /// The file of that backup holding this database.
    pub copy: String,
    /// A database server's database (PostgreSQL, MariaDB, Redis) rather than a SQLite file: its
    /// rows are not compared, so `rows` is `None` whatever its size.
    #[serde(default)]
    pub server: bool,
}

/// Rows of one table.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRows {
    pub table: String,
    pub rows: u64,
}

/// One line of a deploy's live stream (NDJSON from `POST /api/v1/deploy`).
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum DeployEvent {
    Step {
        name: String,
        status: StepStatus,
        ms: Option<u64>,
        detail: Option<String>,
    },
    Output {
        step: String,
        line: String,
    },
    Done {
        record: Box<DeployRecord>,
    },
}

/// An app as the Deploys screen needs it.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    pub name: String,
    /// It has a `source` to build and deploy from.
    pub deployable: bool,
    pub envs: Vec<EnvRelease>,
}

#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvRelease {
    pub env: String,
    pub current: Option<String>,
    /// The app's version in the current release (its nearest tag, else the short commit).
    #[serde(default)]
    pub version: Option<String>,
    /// Automatic updates, when the environment has them (`auto_update = { ... }`).
    #[serde(default)]
    pub auto_update: Option<AutoUpdateState>,
    /// The other host it runs on (`host = "NAME"`); a deploy of it from here ships there.
    #[serde(default)]
    pub host: Option<String>,
    /// The release a rollback would go back to; none when there is no earlier one.
    #[serde(default)]
    pub rollback_to: Option<String>,
}

/// Where an environment's automatic updates stand.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoUpdateState {
    /// How often the upstream is checked, as written (`"1h"`).
    pub every: String,
    /// The daily window updates may start in, on the agent's local clock, with its zone
    /// (`"02:00-05:00 Europe/Berlin"`), when there is one.
    pub window: Option<String>,
    /// Paused after failures in a row: nothing updates until someone resumes.
    pub paused: bool,
    /// Automatic updates that failed in a row.
    pub failures: u32,
    /// The commit whose update failed, not tried again until the upstream moves or someone
    /// deploys by hand.
    pub failed_commit: Option<String>,
    /// Why the last check could not update (a dirty or diverged checkout), until one can.
    pub refused: Option<String>,
    /// What the last check found to do and is waiting for: the window, or a new commit after
    /// a failed one.
    pub waiting: Option<String>,
    /// When the upstream was last checked (RFC 3339 UTC).
    pub last_check: Option<String>,
}

/// Body of `POST /api/v1/auto-update/resume`.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeRequest {
    pub app: String,
    pub env: String,
}

/// A release of an app.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    pub id: String,
    /// The app's version: its nearest tag (`1.5.0-rc1+3`), else the short commit.
    #[serde(default)]
    pub version: String,
    pub commit: String,
    pub branch: String,
    pub dirty: bool,
    pub time: String,
    /// Environments whose `current` is this release.
    pub current_in: Vec<String>,
}

/// How a deploy ended, or that it has not.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployResult {
    Running,
    Succeeded,
    Failed,
    /// The agent stopped while it ran.
    Interrupted,
}

impl DeployResult {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployResult::Running => "running",
            DeployResult::Succeeded => "succeeded",
            DeployResult::Failed => "failed",
            DeployResult::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            DeployResult::Running,
            DeployResult::Succeeded,
            DeployResult::Failed,
            DeployResult::Interrupted,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// Where a step of a deploy is.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Started,
    Ok,
    Failed,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Started => "started",
            StepStatus::Ok => "ok",
            StepStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for StepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
