//! Backups and restores as the API lists and requests them.

use serde::{Deserialize, Serialize};

use crate::Target;

/// Why a backup was taken.
#[cfg_attr(test, derive(ts_rs::TS))]
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
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupArtifact {
    /// The database's name, or `files`.
    pub name: String,
    pub kind: ArtifactKind,
    pub file: String,
    pub size: u64,
    pub sha256: String,
    pub compressed: bool,
}

/// A catalogued backup of one environment.
#[cfg_attr(test, derive(ts_rs::TS))]
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
#[cfg_attr(test, derive(ts_rs::TS))]
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
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRequest {
    /// `APP/ENV`.
    pub target: Target,
}

/// Body of `POST /api/v1/restore`.
#[cfg_attr(test, derive(ts_rs::TS))]
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

#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreOutcome {
    pub backup: i64,
    /// Databases put in place (or the file written, with `to`).
    pub restored: Vec<String>,
    /// Safety copies of the databases that were replaced.
    pub safety_copies: Vec<String>,
}

#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyOutcome {
    pub id: i64,
    pub ok: bool,
    pub problems: Vec<String>,
}

/// What one file of a backup holds.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// A copy of one SQLite database.
    Database,
    /// An archive of the environment's `files`.
    Files,
}
