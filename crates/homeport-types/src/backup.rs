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
    /// What a restore replaced, kept before it was replaced (a safety copy): restoring it undoes
    /// the restore. Kept by its own retention and never picked by a plain `restore`.
    Safety,
}

impl BackupTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupTrigger::Manual => "manual",
            BackupTrigger::Scheduled => "scheduled",
            BackupTrigger::PreDeploy => "pre_deploy",
            BackupTrigger::Safety => "safety",
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
    /// The server's database a dump holds (PostgreSQL, MariaDB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub database: Option<String>,
    /// What the backup could not promise (a MariaDB table that is not transactional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub warning: Option<String>,
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
    /// Why its last check failed (a checksum mismatch, a damaged copy, a missing file): a failed
    /// backup is never picked by a plain `restore` and never kept by retention in place of a
    /// good one.
    #[serde(default)]
    pub problem: Option<String>,
    pub dir: String,
    pub artifacts: Vec<BackupArtifact>,
}

/// The backups of one environment, with its schedule.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvBackups {
    pub app: String,
    pub env: String,
    /// `every 6h`, `daily at 03:30 Europe/Berlin` (the agent's local time and zone), or none.
    pub schedule: Option<String>,
    /// RFC 3339 UTC time of the next scheduled backup.
    pub next_due: Option<String>,
    /// Newest first.
    pub backups: Vec<BackupInfo>,
    /// The last backup attempt, when it failed (no backup has succeeded since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub last_failure: Option<BackupFailure>,
    /// Why "back up now" cannot work here (nothing is listed to back up), when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub nothing_to_back_up: Option<String>,
}

/// A backup that was tried and failed.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFailure {
    /// RFC 3339 UTC.
    pub time: String,
    pub trigger: BackupTrigger,
    pub error: String,
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
    /// Only this database; default: everything in the backup.
    pub database: Option<String>,
    /// Only this one of the environment's `files` (its path, or its name in the archive);
    /// default: everything in the backup.
    #[serde(default)]
    pub path: Option<String>,
    /// Write the backup out here for inspection instead of replacing anything live: a new file
    /// when one database is restored, else a new (or empty) folder.
    pub to: Option<String>,
}

#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreOutcome {
    pub backup: i64,
    /// Databases and files put in place (or what was written, with `to`).
    pub restored: Vec<String>,
    /// Safety copies of what was replaced (files of the safety backup).
    pub safety_copies: Vec<String>,
    /// The safety copy's id in the catalogue: restoring it undoes this restore.
    #[serde(default)]
    pub safety_backup: Option<i64>,
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
    /// A copy of one SQLite database (written `database` by earlier agents). The alias is left
    /// out of this crate's own tests, where ts-rs, which cannot read it, derives the TypeScript.
    #[cfg_attr(not(test), serde(alias = "database"))]
    Sqlite,
    /// An archive of the environment's `files`.
    Files,
    /// `pg_dump -Fc` of one database of a PostgreSQL server.
    PostgresDump,
    /// `pg_dumpall --globals-only` of a PostgreSQL server: roles and tablespaces.
    PostgresGlobals,
    /// `mariadb-dump` of one database.
    MariadbDump,
    /// A Redis snapshot (RDB).
    RedisRdb,
}

impl ArtifactKind {
    /// It holds a database (of any engine), named in the environment's `databases`. A
    /// PostgreSQL server's globals (its roles) go with its dumps but are not restored alone.
    pub fn is_database(self) -> bool {
        !matches!(self, ArtifactKind::Files | ArtifactKind::PostgresGlobals)
    }

    /// It is a database server's (restored through the server, not by swapping a file).
    pub fn is_server(self) -> bool {
        matches!(
            self,
            ArtifactKind::PostgresDump
                | ArtifactKind::PostgresGlobals
                | ArtifactKind::MariadbDump
                | ArtifactKind::RedisRdb
        )
    }
}
