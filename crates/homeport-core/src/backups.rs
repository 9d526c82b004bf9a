//! Backups of environments: take (manually, on schedule, before a deploy), catalogue in
//! state.db, retain, verify, and restore with a safety copy — catalogued too, as a `safety`
//! backup — that comes back if the restored environment does not come up.
//!
//! The flow is the same for every kind of artifact (a database of some engine, or the
//! environment's files): stage and check beside the live copy → stop → safety copy → swap →
//! start → verify → put the safety copy back on failure. What differs by kind is in
//! homeport-backup.

use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::time::{Duration, SystemTime};

use homeport_backup::retention::{Candidate, Retention};
use homeport_backup::{Artifact, ArtifactKind, BackupMethod, BackupPlan, SetBuilder, restore};
use homeport_config::{BackupSchedule, DbServer, EnvSpec};
use homeport_types::{
    BackupFailure, BackupInfo, BackupTrigger, Discarded, EnvBackups, EventKind, RestoreOutcome,
    ServiceState, Subject, TableRows, Target, VerifyOutcome,
};

use crate::Core;

#[derive(Debug, thiserror::Error)]
pub enum BackupOpError {
    #[error("no environment {0}; expected APP/ENV")]
    NotFound(String),
    #[error("no backup {0}")]
    NoBackup(String),
    /// A backup that exists, but of another environment.
    #[error("{0}")]
    NotHere(String),
    #[error("a backup, restore or deploy of {0} is running; try again when it is done")]
    Busy(String),
    #[error(transparent)]
    Backup(#[from] homeport_backup::BackupError),
    #[error("{0}")]
    Refused(String),
    /// The backup was tried and failed (the event is published already).
    #[error("{0}")]
    Failed(String),
    #[error("restore of {env} failed: {why}; {rollback}")]
    RestoreFailed {
        env: String,
        why: String,
        rollback: String,
    },
    #[error("cannot use state.db: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("{0}")]
    Internal(String),
}

fn env_of<'a>(envs: &'a [EnvSpec], target: &Target) -> Result<&'a EnvSpec, BackupOpError> {
    match target {
        Target::Env(app, env) => envs
            .iter()
            .find(|e| &e.app == app && &e.env == env)
            .ok_or_else(|| BackupOpError::NotFound(target.to_string())),
        other => Err(BackupOpError::NotFound(other.to_string())),
    }
}

pub(crate) fn backups_root(core: &Core) -> PathBuf {
    core.config().agent.data_dir.join("backups")
}

fn safety_root(core: &Core, env: &EnvSpec) -> PathBuf {
    backups_root(core)
        .join(&env.app)
        .join(&env.env)
        .join("safety")
}

/// Verified, and no later check failed.
fn good(b: &BackupInfo) -> bool {
    b.verified && b.problem.is_none()
}

fn epoch_secs(time: &str) -> i64 {
    humantime::parse_rfc3339_weak(time)
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

/// Records that a check of backup `id` failed, so a plain restore never picks it again and
/// retention never keeps it in place of a good one.
fn mark_failed(core: &Core, id: i64, problem: &str) {
    let store = core.store().lock().unwrap_or_else(PoisonError::into_inner);
    if let Err(e) = store.set_backup_checked(id, Some(problem)) {
        tracing::error!(
            backup = id,
            "cannot record that the backup failed its check: {e}"
        );
    }
}

pub(crate) async fn take(
    core: &Core,
    target: &Target,
    trigger: BackupTrigger,
) -> Result<BackupInfo, BackupOpError> {
    let config = core.config();
    let env = env_of(&config.envs, target)?.clone();
    // A deploy holds the environment itself and takes its pre-deploy backup inside that claim.
    let _running = if trigger == BackupTrigger::PreDeploy {
        None
    } else {
        Some(core.claim_env(&env.app, &env.env, "backup")?)
    };
    let subject = Subject::env(&env.app, &env.env);
    let servers = match server_sources(&env, trigger) {
        Ok(s) => s,
        Err(e) => {
            // A server that cannot be reached is a failed backup, told as loudly as any.
            core.emit(
                subject,
                EventKind::BackupFailed {
                    trigger,
                    error: e.to_string(),
                },
            );
            core.flush_records(Duration::from_secs(1));
            return Err(BackupOpError::Failed(e.to_string()));
        }
    };
    let plan = BackupPlan {
        // Before a deploy or on schedule, a database that does not exist yet (its service has
        // not created it) has nothing to keep; a manual backup says it is missing.
        databases: env
            .databases
            .iter()
            .filter(|(_, p)| trigger == BackupTrigger::Manual || p.exists())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        servers,
        files: env.files.clone(),
        compress: env.backup.compress,
    };
    if plan.databases.is_empty() && plan.servers.is_empty() && plan.files.is_empty() {
        return Err(BackupOpError::Refused(nothing_listed(&target.to_string())));
    }
    let made = make(core, &env, plan, trigger).await;
    match &made {
        Ok(info) => core.emit(
            subject,
            EventKind::BackupFinished {
                id: info.id,
                trigger,
                size: info.size,
                duration_ms: info.duration_ms,
                verified: info.verified,
            },
        ),
        Err(e) => core.emit(
            subject,
            EventKind::BackupFailed {
                trigger,
                error: e.to_string(),
            },
        ),
    }
    // The list of backups (which names the last failure) reads state.db: the outcome is there
    // before the caller hears of it.
    core.flush_records(Duration::from_secs(1));
    made
}

/// What to back up of each database server of `env`. A managed server never started (no data
/// folder yet) has nothing to keep, except when a person asks.
fn server_sources(
    env: &EnvSpec,
    trigger: BackupTrigger,
) -> Result<Vec<(String, homeport_backup::ServerSource)>, BackupOpError> {
    let mut out = Vec::new();
    for (name, server) in &env.servers {
        let source = match server {
            DbServer::Managed(s) => {
                if trigger != BackupTrigger::Manual && !s.data_dir().exists() {
                    continue;
                }
                homeport_backup::ServerSource {
                    conn: s
                        .conn()
                        .map_err(|e| BackupOpError::Refused(e.to_string()))?,
                    all_databases: true,
                    rdb_file: Some(s.rdb_file()),
                }
            }
            DbServer::External { .. } => homeport_backup::ServerSource {
                conn: server
                    .conn()
                    .map_err(|e| BackupOpError::Refused(format!("database {name}: {e}")))?,
                all_databases: false,
                rdb_file: None,
            },
        };
        out.push((name.clone(), source));
    }
    Ok(out)
}

/// Takes the backup `plan` describes, catalogues it, and applies retention.
async fn make(
    core: &Core,
    env: &EnvSpec,
    plan: BackupPlan,
    trigger: BackupTrigger,
) -> Result<BackupInfo, BackupOpError> {
    let target = Target::Env(env.app.clone(), env.env.clone());
    let dir = backups_root(core).join(&env.app).join(&env.env);
    let time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let set = tokio::task::spawn_blocking(move || {
        homeport_backup::take(&plan, &dir, BackupMethod::BackupApi)
    })
    .await
    .map_err(|e| BackupOpError::Internal(e.to_string()))??;
    let info = catalogue(core, env, time, trigger, set, true)?;
    tracing::info!(
        backup = info.id,
        "backed up {target} ({} bytes in {} ms)",
        info.size,
        info.duration_ms
    );
    for w in info.artifacts.iter().filter_map(|a| a.warning.as_ref()) {
        tracing::warn!(backup = info.id, "backup of {target}: {w}");
    }
    prune(core, env)?;
    Ok(info)
}

/// Adds a finished set to state.db.
fn catalogue(
    core: &Core,
    env: &EnvSpec,
    time: String,
    trigger: BackupTrigger,
    set: homeport_backup::BackupSet,
    verified: bool,
) -> Result<BackupInfo, BackupOpError> {
    let mut info = BackupInfo {
        id: 0,
        app: env.app.clone(),
        env: env.env.clone(),
        time,
        trigger,
        size: set.artifacts.iter().map(|a| a.size).sum(),
        duration_ms: set.duration_ms,
        verified,
        problem: (!verified).then(|| {
            "kept as it was: the database could not be read, so it was not checked".to_owned()
        }),
        dir: set.dir.display().to_string(),
        artifacts: set.artifacts,
    };
    let store = core.store().lock().unwrap_or_else(PoisonError::into_inner);
    info.id = store.add_backup(&info)?;
    Ok(info)
}

/// Deletes what the environment's retention does not keep — backups by its policy (a failed
/// one never takes a good one's place), safety copies by `keep_safety` (never the newest):
/// folder first, then the row, so a crash in between leaves a row whose `verify` says its files
/// are gone, never an orphan file.
fn prune(core: &Core, env: &EnvSpec) -> Result<(), BackupOpError> {
    let store = core.store().lock().unwrap_or_else(PoisonError::into_inner);
    let list = store.backups(Some((&env.app, &env.env)))?;
    let candidate = |b: &BackupInfo| Candidate {
        id: b.id,
        time: epoch_secs(&b.time),
        good: good(b),
    };
    let (safety, regular): (Vec<&BackupInfo>, Vec<&BackupInfo>) = list
        .iter()
        .partition(|b| b.trigger == BackupTrigger::Safety);
    let policy = Retention {
        keep_last: env.backup.keep_last as usize,
        keep_daily: env.backup.keep_daily as usize,
        keep_weekly: env.backup.keep_weekly as usize,
        keep_monthly: env.backup.keep_monthly as usize,
    };
    let regular: Vec<Candidate> = regular.into_iter().map(candidate).collect();
    let safety: Vec<Candidate> = safety.into_iter().map(candidate).collect();
    let doomed = homeport_backup::retention::to_delete(&regular, &policy)
        .into_iter()
        .chain(homeport_backup::retention::safety_to_delete(
            &safety,
            env.backup.keep_safety as usize,
        ));
    for id in doomed {
        if let Some(b) = list.iter().find(|b| b.id == id) {
            let _ = std::fs::remove_dir_all(&b.dir);
            store.delete_backup(id)?;
            tracing::info!(
                backup = id,
                trigger = b.trigger.as_str(),
                "deleted by retention"
            );
        }
    }
    Ok(())
}

/// Why an environment cannot be backed up at all: the same words for the refusal and for the
/// dashboard, which offers no "back up now" then.
fn nothing_listed(target: &str) -> String {
    format!("{target} lists no `databases` or `files` to back up")
}

fn describe(s: &BackupSchedule) -> String {
    match s {
        BackupSchedule::Every(d) => format!("every {}", humantime::format_duration(*d)),
        BackupSchedule::DailyAt(secs) => format!(
            "daily at {:02}:{:02} {}",
            secs / 3600,
            secs % 3600 / 60,
            crate::time::zone_name(&jiff::tz::TimeZone::system())
        ),
    }
}

fn schedule_of(s: &BackupSchedule) -> homeport_backup::schedule::Schedule {
    match *s {
        BackupSchedule::Every(d) => homeport_backup::schedule::Schedule::Every(d),
        BackupSchedule::DailyAt(secs) => homeport_backup::schedule::Schedule::DailyAt(secs),
    }
}

/// When the environment was last backed up (safety copies are not backups of the schedule).
fn last_time(list: &[BackupInfo]) -> Option<SystemTime> {
    list.iter()
        .filter(|b| b.trigger != BackupTrigger::Safety)
        .filter_map(|b| humantime::parse_rfc3339_weak(&b.time).ok())
        .max()
}

pub(crate) fn list(core: &Core, target: &Target) -> Result<Vec<EnvBackups>, BackupOpError> {
    let config = core.config();
    let envs: Vec<&EnvSpec> = match target {
        Target::All => config.envs.iter().collect(),
        Target::App(app) => config.envs.iter().filter(|e| &e.app == app).collect(),
        t => vec![env_of(&config.envs, t)?],
    };
    if envs.is_empty() {
        return Err(BackupOpError::NotFound(target.to_string()));
    }
    let store = core.store().lock().unwrap_or_else(PoisonError::into_inner);
    envs.into_iter()
        .map(|e| {
            let backups = store.backups(Some((&e.app, &e.env)))?;
            let next_due = e.backup.schedule.as_ref().map(|s| {
                let due = schedule_of(s)
                    .next_due(last_time(&backups), &jiff::tz::TimeZone::system())
                    .max(SystemTime::now());
                humantime::format_rfc3339_seconds(due).to_string()
            });
            // The newest outcome decides: a failure after the last backup is still news.
            let target = Target::Env(e.app.clone(), e.env.clone());
            let last_failure = store
                .recent_events(
                    &target,
                    &["backup_finished".to_owned(), "backup_failed".to_owned()],
                    1,
                )?
                .into_iter()
                .next()
                .and_then(|ev| match ev.kind {
                    EventKind::BackupFailed { trigger, error } => Some(BackupFailure {
                        time: ev.time,
                        trigger,
                        error,
                    }),
                    _ => None,
                });
            Ok(EnvBackups {
                app: e.app.clone(),
                env: e.env.clone(),
                schedule: e.backup.schedule.as_ref().map(describe),
                next_due,
                backups,
                last_failure,
                nothing_to_back_up: (e.databases.is_empty()
                    && e.servers.is_empty()
                    && e.files.is_empty())
                .then(|| nothing_listed(&format!("{}/{}", e.app, e.env))),
            })
        })
        .collect()
}

pub(crate) async fn verify(core: &Core, id: i64) -> Result<VerifyOutcome, BackupOpError> {
    let info = core
        .store()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .backup(id)?
        .ok_or_else(|| BackupOpError::NoBackup(id.to_string()))?;
    let checked = info.clone();
    // A PostgreSQL dump is verified by restoring it: into a scratch database on the managed
    // server it came from, dropped afterwards.
    let scratch_servers: std::collections::BTreeMap<String, homeport_db::Conn> = core
        .config()
        .envs
        .iter()
        .find(|e| e.app == info.app && e.env == info.env)
        .map(|e| {
            e.servers
                .iter()
                .filter_map(|(n, s)| match s {
                    DbServer::Managed(m) if m.engine == homeport_db::Engine::Postgres => {
                        m.conn().ok().map(|c| (n.clone(), c))
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let problems = tokio::task::spawn_blocking(move || {
        let dir = PathBuf::from(&checked.dir);
        checked
            .artifacts
            .iter()
            .filter_map(|a| {
                homeport_backup::verify(&dir, a)
                    .and_then(|()| match scratch_servers.get(&a.name) {
                        Some(conn) if a.kind == ArtifactKind::PostgresDump => {
                            homeport_backup::server::restore_into_scratch(conn, &dir, a)
                        }
                        _ => Ok(()),
                    })
                    .err()
                    .map(|e| e.to_string())
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| BackupOpError::Internal(e.to_string()))?;
    let ok = problems.is_empty();
    let problem = (!ok).then(|| problems.join("; "));
    core.store()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .set_backup_checked(id, problem.as_deref())?;
    Ok(VerifyOutcome { id, ok, problems })
}

/// Runs scheduled backups: checks every 5 s against the wall clock, so a backup missed while
/// the machine slept runs once on wake.
pub(crate) async fn scheduler(core: std::sync::Arc<Core>) {
    let mut stop = std::pin::pin!(core.shutdown_signal());
    // When a scheduled backup last failed, per environment: it is tried again one interval
    // later, not at every tick (each failure is an event and a notification).
    let mut failed: std::collections::HashMap<(String, String), SystemTime> =
        std::collections::HashMap::new();
    loop {
        let config = core.config();
        for env in config.envs.iter().filter(|e| e.backup.schedule.is_some()) {
            let Some(schedule) = env.backup.schedule.as_ref().map(schedule_of) else {
                continue;
            };
            let key = (env.app.clone(), env.env.clone());
            let last = {
                let store = core.store().lock().unwrap_or_else(PoisonError::into_inner);
                store
                    .backups(Some((&env.app, &env.env)))
                    .ok()
                    .and_then(|l| last_time(&l))
            };
            let last = last.max(failed.get(&key).copied());
            if schedule.is_due(last, SystemTime::now(), &jiff::tz::TimeZone::system()) {
                let target = Target::Env(env.app.clone(), env.env.clone());
                match take(&core, &target, BackupTrigger::Scheduled).await {
                    // Nothing exists yet to back up: try again on the next tick, quietly.
                    Err(BackupOpError::Refused(why)) => {
                        tracing::debug!("scheduled backup of {target}: {why}")
                    }
                    Err(e) => {
                        tracing::warn!("scheduled backup of {target} failed: {e}");
                        failed.insert(key, SystemTime::now());
                    }
                    Ok(_) => {
                        failed.remove(&key);
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = &mut stop => return,
        }
    }
}

/// Which part of a backup a restore puts back.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selection {
    /// Only this database.
    pub database: Option<String>,
    /// Only this one of the environment's `files` (its path or its name in the archive).
    pub path: Option<String>,
}

/// The backup a restore of `env` uses: `id` (which must be this environment's), or the newest
/// good backup that is not a safety copy.
fn pick(core: &Core, env: &EnvSpec, id: Option<i64>) -> Result<BackupInfo, BackupOpError> {
    let store = core.store().lock().unwrap_or_else(PoisonError::into_inner);
    let target = format!("{}/{}", env.app, env.env);
    match id {
        Some(id) => match store.backup(id)? {
            Some(b) if b.app == env.app && b.env == env.env => Ok(b),
            Some(b) => Err(BackupOpError::NotHere(format!(
                "backup {id} belongs to {app}/{e}, not {target}; restore it with `homeport restore {app}/{e} {id}`",
                app = b.app,
                e = b.env
            ))),
            None => Err(BackupOpError::NoBackup(format!(
                "{id} (see `homeport backups {target}`)"
            ))),
        },
        None => store
            .backups(Some((&env.app, &env.env)))?
            .into_iter()
            .find(|b| good(b) && b.trigger != BackupTrigger::Safety)
            .ok_or_else(|| BackupOpError::NoBackup(format!("verified for {target}"))),
    }
}

/// One part of a backup to put back: a database, or one listed path of its files.
#[derive(Debug, Clone)]
enum Part {
    Database {
        artifact: Artifact,
        live: PathBuf,
    },
    Files {
        artifact: Artifact,
        /// Its name in the archive.
        label: String,
        live: PathBuf,
    },
}

impl Part {
    fn live(&self) -> &Path {
        match self {
            Part::Database { live, .. } | Part::Files { live, .. } => live,
        }
    }
}

/// The parts of `info` that `sel` names, each matched with where it goes now. The archive's
/// index is read from `tar` (a plain copy extracted and checked here if the backup has files).
fn parts(
    env: &EnvSpec,
    info: &BackupInfo,
    sel: &Selection,
    tar: &Path,
) -> Result<Vec<Part>, BackupOpError> {
    let dir = Path::new(&info.dir);
    let mut out = Vec::new();
    let want_dbs = sel.path.is_none();
    let want_files = sel.database.is_none();
    // A server's databases are restored through the server (see dbrestore).
    let mut servers = false;
    for a in &info.artifacts {
        if a.kind.is_server() {
            servers |= a.kind.is_database()
                && want_dbs
                && sel.database.as_deref().is_none_or(|d| d == a.name);
            continue;
        }
        if a.kind.is_database() && want_dbs {
            if sel.database.as_deref().is_some_and(|d| d != a.name) {
                continue;
            }
            let live = env.databases.get(&a.name).cloned().ok_or_else(|| {
                BackupOpError::Refused(format!(
                    "{}/{} no longer has a database named {}; write the backup's copy out with --to",
                    env.app, env.env, a.name
                ))
            })?;
            out.push(Part::Database {
                artifact: a.clone(),
                live,
            });
        } else if a.kind == ArtifactKind::Files && want_files {
            restore::extract_checked(dir, a, tar)?;
            let index = homeport_backup::read_index(tar)?;
            let mut matched = false;
            for entry in &index {
                let wanted = sel
                    .path
                    .as_deref()
                    .is_none_or(|p| p == entry.label || Path::new(p) == entry.path.as_path());
                if !wanted {
                    continue;
                }
                matched = true;
                // Back where the environment lists it; a path it no longer lists is left out
                // (write it out with --to).
                if env.files.iter().any(|f| f == &entry.path) {
                    out.push(Part::Files {
                        artifact: a.clone(),
                        label: entry.label.clone(),
                        live: entry.path.clone(),
                    });
                } else if sel.path.is_some() {
                    return Err(BackupOpError::Refused(format!(
                        "{}/{} no longer lists {} in `files`; write it out with --to DIR",
                        env.app,
                        env.env,
                        entry.path.display()
                    )));
                }
            }
            if let Some(p) = &sel.path
                && !matched
            {
                let names: Vec<String> = index
                    .iter()
                    .map(|e| format!("{} ({})", e.path.display(), e.label))
                    .collect();
                return Err(BackupOpError::Refused(format!(
                    "backup {} has no file {p}; it has {}",
                    info.id,
                    names.join(", ")
                )));
            }
        }
    }
    if out.is_empty() && !servers {
        let what = match (&sel.database, &sel.path) {
            (Some(d), _) => format!("no database named {d}"),
            (_, Some(p)) => format!("no file {p}"),
            _ => "nothing the environment still lists".to_owned(),
        };
        return Err(BackupOpError::Refused(format!(
            "backup {} has {what}",
            info.id
        )));
    }
    Ok(out)
}

pub(crate) async fn restore_env(
    core: &Core,
    target: &Target,
    backup: Option<i64>,
    sel: Selection,
    to: Option<&Path>,
) -> Result<RestoreOutcome, BackupOpError> {
    let config = core.config();
    let env = env_of(&config.envs, target)?.clone();
    let info = pick(core, &env, backup)?;
    if let Some(to) = to {
        return write_out(core, &info, &sel, to).await;
    }
    let _running = core.claim_env(&env.app, &env.env, "restore")?;
    let done = restore_live(core, &env, &info, &sel).await;
    let subject = Subject::env(&env.app, &env.env);
    match &done {
        Ok(out) => core.emit(
            subject,
            EventKind::RestoreFinished {
                backup: out.backup,
                restored: out.restored.clone(),
                safety_copies: out.safety_copies.clone(),
            },
        ),
        Err(e) => core.emit(
            subject,
            EventKind::RestoreFailed {
                backup: Some(info.id),
                error: e.to_string(),
            },
        ),
    }
    done
}

/// A check of the backup's own files failed: it is marked failed before the error goes on.
fn checked<T>(
    core: &Core,
    id: i64,
    r: Result<T, homeport_backup::BackupError>,
) -> Result<T, BackupOpError> {
    r.map_err(|e| {
        if e.is_damage() {
            mark_failed(core, id, &e.to_string());
        }
        BackupOpError::Backup(e)
    })
}

/// Writes the selected part of a backup out for inspection; nothing live is touched. One
/// database goes to the file `to`; anything else into the folder `to` (new, or empty):
/// `NAME.db` per database and each of the files under its name in the archive.
async fn write_out(
    core: &Core,
    info: &BackupInfo,
    sel: &Selection,
    to: &Path,
) -> Result<RestoreOutcome, BackupOpError> {
    let dbs: Vec<&Artifact> = info
        .artifacts
        .iter()
        .filter(|a| a.kind.is_database() && sel.path.is_none())
        .filter(|a| sel.database.as_deref().is_none_or(|d| d == a.name))
        .collect();
    let files: Vec<&Artifact> = info
        .artifacts
        .iter()
        .filter(|a| a.kind == ArtifactKind::Files && sel.database.is_none())
        .collect();
    if dbs.is_empty() && files.is_empty() {
        return Err(BackupOpError::Refused(format!(
            "backup {} has {}",
            info.id,
            match &sel.database {
                Some(d) => format!("no database named {d}"),
                None => "nothing to write out".to_owned(),
            }
        )));
    }
    let dir = PathBuf::from(&info.dir);
    let (id, to) = (info.id, to.to_path_buf());
    let (dbs, files): (Vec<Artifact>, Vec<Artifact>) = (
        dbs.into_iter().cloned().collect(),
        files.into_iter().cloned().collect(),
    );
    let path = sel.path.clone();
    let written = tokio::task::spawn_blocking(move || {
        if files.is_empty() && dbs.len() == 1 && !to.is_dir() {
            if to.symlink_metadata().is_ok() {
                return Err(homeport_backup::BackupError::Refused(format!(
                    "{} exists; restore into a new file",
                    to.display()
                )));
            }
            restore::extract_checked(&dir, &dbs[0], &to)?;
            return Ok(vec![to.display().to_string()]);
        }
        let empty = std::fs::read_dir(&to).map(|mut d| d.next().is_none());
        match empty {
            Ok(true) => {}
            Ok(false) => {
                return Err(homeport_backup::BackupError::Refused(format!(
                    "{} is not empty; write the backup out into a new or empty folder",
                    to.display()
                )));
            }
            Err(_) if to.symlink_metadata().is_ok() => {
                return Err(homeport_backup::BackupError::Refused(format!(
                    "{} exists and is not a folder; write the backup out into a new or empty folder",
                    to.display()
                )));
            }
            Err(_) => homeport_fs::create_private_dir(&to)
                .map_err(|e| homeport_backup::BackupError::Io(to.clone(), e))?,
        }
        let mut out = Vec::new();
        for a in &dbs {
            // A server's dump keeps its own name (`main.shop.pgdump`), plain.
            let name = if a.kind.is_server() {
                a.file.trim_end_matches(".zst").to_owned()
            } else {
                format!("{}.db", a.name)
            };
            let dest = to.join(name);
            restore::extract_checked(&dir, a, &dest)?;
            out.push(dest.display().to_string());
        }
        for a in &files {
            let tar = to.join(".files.tar");
            let r = restore::extract_checked(&dir, a, &tar).and_then(|()| {
                let index = homeport_backup::read_index(&tar)?;
                let mut wrote = Vec::new();
                for e in index.iter().filter(|e| {
                    path.as_deref()
                        .is_none_or(|p| p == e.label || Path::new(p) == e.path.as_path())
                }) {
                    let dest = to.join(&e.label);
                    homeport_backup::unpack_entry(&tar, &e.label, &dest)?;
                    wrote.push(format!("{} (from {})", dest.display(), e.path.display()));
                }
                Ok(wrote)
            });
            let _ = std::fs::remove_file(&tar);
            out.extend(r?);
        }
        Ok(out)
    })
    .await
    .map_err(|e| BackupOpError::Internal(e.to_string()))?;
    Ok(RestoreOutcome {
        backup: info.id,
        restored: checked(core, id, written)?,
        safety_copies: vec![],
        safety_backup: None,
    })
}

/// Checks the parts of a backup and stages each beside what it replaces: nothing live changes.
/// Returns what to swap in: (part, staged copy).
async fn stage(
    core: &Core,
    info: &BackupInfo,
    parts: Vec<Part>,
    tar: PathBuf,
) -> Result<Vec<(Part, PathBuf)>, BackupOpError> {
    let dir = PathBuf::from(&info.dir);
    let staged = tokio::task::spawn_blocking(move || {
        let mut done: Vec<(Part, PathBuf)> = Vec::new();
        for part in parts {
            let r = match &part {
                Part::Database { artifact, live } => {
                    let tmp = sidecar(live, ".from-backup");
                    // A copy left by a restore that crashed: made again from the backup.
                    let _ = std::fs::remove_file(&tmp);
                    restore::extract_checked(&dir, artifact, &tmp).map(|()| tmp)
                }
                Part::Files {
                    artifact,
                    label,
                    live,
                } => restore::stage_files(&dir, artifact, &tar, label, live),
            };
            match r {
                Ok(p) => done.push((part, p)),
                Err(e) => {
                    for (_, p) in &done {
                        remove_any(p);
                    }
                    return Err(e);
                }
            }
        }
        Ok(done)
    })
    .await
    .map_err(|e| BackupOpError::Internal(e.to_string()))?;
    checked(core, info.id, staged)
}

fn sidecar(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn remove_any(p: &Path) {
    if p.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        let _ = std::fs::remove_dir_all(p);
    } else {
        let _ = std::fs::remove_file(p);
    }
}

/// A safety backup of what `parts` would replace, as it is now (with the services stopped):
/// catalogued with trigger `safety`. `None` when nothing exists yet to keep.
async fn keep_safety_copy(
    core: &Core,
    env: &EnvSpec,
    parts: &[Part],
    servers: Vec<(String, homeport_backup::ServerSource)>,
) -> Result<Option<BackupInfo>, BackupOpError> {
    let dbs: Vec<(String, PathBuf)> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Database { artifact, live } if live.exists() => {
                Some((artifact.name.clone(), live.clone()))
            }
            _ => None,
        })
        .collect();
    let files: Vec<PathBuf> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Files { live, .. } if live.symlink_metadata().is_ok() => Some(live.clone()),
            _ => None,
        })
        .collect();
    if dbs.is_empty() && files.is_empty() && servers.is_empty() {
        return Ok(None);
    }
    let root = safety_root(core, env);
    let compress = env.backup.compress;
    let time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let (set, damaged) = tokio::task::spawn_blocking(move || {
        let mut set = SetBuilder::new(&root, compress)?;
        let mut damaged = false;
        for (name, live) in &dbs {
            set.add_database_as_is(name, live)?;
            damaged |= homeport_backup::integrity_check(live).is_err();
        }
        for (name, src) in &servers {
            set.add_server(name, src)?;
        }
        if !files.is_empty() {
            set.add_files(&files)?;
        }
        Ok::<_, homeport_backup::BackupError>((set.commit()?, damaged))
    })
    .await
    .map_err(|e| BackupOpError::Internal(e.to_string()))??;
    let info = catalogue(core, env, time, BackupTrigger::Safety, set, !damaged)?;
    Ok(Some(info))
}

/// Puts the parts of a (safety) backup back with the services stopped.
async fn put_back(info: &BackupInfo, parts: Vec<Part>) -> Result<(), BackupOpError> {
    let dir = PathBuf::from(&info.dir);
    tokio::task::spawn_blocking(move || {
        let tar = dir.join(".put-back.tar");
        let r = parts.iter().try_for_each(|p| match p {
            Part::Database { artifact, live } => restore::put_back_database(&dir, artifact, live),
            Part::Files {
                artifact,
                label,
                live,
            } => restore::stage_files(&dir, artifact, &tar, label, live)
                .and_then(|staged| restore::swap_path(&staged, live)),
        });
        let _ = std::fs::remove_file(&tar);
        r
    })
    .await
    .map_err(|e| BackupOpError::Internal(e.to_string()))?
    .map_err(Into::into)
}

/// The parts of a safety backup that stand for `parts` (the same names and labels).
fn safety_parts(safety: &BackupInfo, parts: &[Part]) -> Result<Vec<Part>, BackupOpError> {
    let dir = Path::new(&safety.dir);
    let tar = dir.join(".index.tar");
    let index = match safety
        .artifacts
        .iter()
        .find(|a| a.kind == ArtifactKind::Files)
    {
        Some(a) => {
            let r = restore::extract_checked(dir, a, &tar)
                .and_then(|()| homeport_backup::read_index(&tar))
                .map(|i| (a.clone(), i));
            let _ = std::fs::remove_file(&tar);
            Some(r?)
        }
        None => None,
    };
    let mut out = Vec::new();
    for p in parts {
        match p {
            Part::Database { artifact, live } => {
                if let Some(a) = safety.artifacts.iter().find(|a| a.name == artifact.name) {
                    out.push(Part::Database {
                        artifact: a.clone(),
                        live: live.clone(),
                    });
                }
            }
            Part::Files { live, .. } => {
                if let Some((a, index)) = &index
                    && let Some(e) = index.iter().find(|e| &e.path == live)
                {
                    out.push(Part::Files {
                        artifact: a.clone(),
                        label: e.label.clone(),
                        live: live.clone(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Swaps staged copies in, in order. If one fails, the ones already swapped are put back from
/// the safety copy, so the environment never runs on a mix of restored and live data.
async fn swap_all(
    staged: Vec<(Part, PathBuf)>,
    safety: Option<&BackupInfo>,
) -> Result<Vec<Part>, BackupOpError> {
    let (swapped, failure) = tokio::task::spawn_blocking(move || {
        let mut done: Vec<Part> = Vec::new();
        let mut failure = None;
        let mut rest = staged.iter();
        for (part, copy) in rest.by_ref() {
            let r = match part {
                Part::Database { live, .. } => {
                    let r = restore::replace_database(copy, live);
                    let _ = std::fs::remove_file(copy);
                    r
                }
                Part::Files { live, .. } => restore::swap_path(copy, live),
            };
            match r {
                Ok(()) => done.push(part.clone()),
                Err(e) => {
                    remove_any(copy);
                    failure = Some(e);
                    break;
                }
            }
        }
        for (_, copy) in rest {
            remove_any(copy);
        }
        (done, failure)
    })
    .await
    .map_err(|e| BackupOpError::Internal(e.to_string()))?;
    let Some(e) = failure else { return Ok(swapped) };
    // Databases that did not exist before have no safety copy: what the restore put there goes.
    let undone = match safety {
        Some(s) => {
            let back = safety_parts(s, &swapped)?;
            for p in swapped
                .iter()
                .filter(|p| !back.iter().any(|b| b.live() == p.live()))
            {
                remove_any(p.live());
            }
            put_back(s, back).await
        }
        None => {
            for p in &swapped {
                remove_any(p.live());
            }
            Ok(())
        }
    };
    Err(match undone {
        Ok(()) => BackupOpError::Backup(e),
        Err(u) => BackupOpError::Refused(format!(
            "{e}; putting back what was already restored failed too: {u}"
        )),
    })
}

/// Stops the environment, swaps the checked parts in after a safety copy, restarts what ran and
/// checks it comes up; puts the safety copy back if it does not.
async fn restore_live(
    core: &Core,
    env: &EnvSpec,
    info: &BackupInfo,
    sel: &Selection,
) -> Result<RestoreOutcome, BackupOpError> {
    let env_target = Target::Env(env.app.clone(), env.env.clone());
    let work = backups_root(core).join(&env.app).join(&env.env);
    std::fs::create_dir_all(&work).map_err(|e| BackupOpError::Internal(e.to_string()))?;
    let tar = work.join(format!(".restoring-{}.tar", info.id));
    let _ = std::fs::remove_file(&tar);
    // Check every part and stage it before anything stops.
    let staged = match parts(env, info, sel, &tar) {
        Ok(parts) => stage(core, info, parts, tar.clone()).await,
        Err(BackupOpError::Backup(b)) => {
            if b.is_damage() {
                mark_failed(core, info.id, &b.to_string());
            }
            Err(BackupOpError::Backup(b))
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&tar);
    let staged = staged?;
    let parts: Vec<Part> = staged.iter().map(|(p, _)| p.clone()).collect();
    // A server's databases: loaded beside the live ones through the server, which runs.
    let server_arts = if sel.path.is_none() {
        crate::dbrestore::selected(&info.artifacts, sel.database.as_deref())
    } else {
        Vec::new()
    };
    let server_staged = async {
        if server_arts.is_empty() {
            return Ok(Vec::new());
        }
        crate::dbrestore::ensure_servers(core, env).await?;
        let dir = PathBuf::from(&info.dir);
        crate::dbrestore::stage(env, &dir, &server_arts).await
    }
    .await;
    let server_staged = match server_staged {
        Ok(s) => s,
        Err(e) => {
            for (_, copy) in &staged {
                remove_any(copy);
            }
            return Err(e);
        }
    };

    // The app's services stop; its database servers keep running (a restore works through them).
    let were_up: Vec<_> = core
        .supervisor()
        .status()
        .into_iter()
        .filter(|s| env_target.contains(&s.key))
        .filter(|s| !is_server(core, &s.key))
        .filter(|s| s.state.is_up() || s.state == ServiceState::BackingOff)
        .map(|s| s.key)
        .collect();
    stop_app(core, env).await;
    let sources = crate::dbrestore::safety_sources(&server_staged);
    let safety = match keep_safety_copy(core, env, &parts, sources).await {
        Ok(s) => s,
        Err(e) => {
            for (_, copy) in &staged {
                remove_any(copy);
            }
            for s in server_staged {
                crate::dbrestore::discard(s).await;
            }
            restart(core, &were_up).await;
            return Err(BackupOpError::Refused(format!(
                "the safety copy of what the restore would replace could not be made, so nothing was restored: {e}"
            )));
        }
    };
    if let Err(e) = swap_all(staged, safety.as_ref()).await {
        for s in server_staged {
            crate::dbrestore::discard(s).await;
        }
        restart(core, &were_up).await;
        return Err(e);
    }
    // A failed swap of a server is put back by `swap` itself; the files' parts then go back too.
    let (server_swapped, why) =
        match crate::dbrestore::swap(core, server_staged, safety.as_ref()).await {
            Ok(s) => (s, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
    let copies: Vec<String> = safety
        .as_ref()
        .map(|s| {
            s.artifacts
                .iter()
                .map(|a| Path::new(&s.dir).join(&a.file).display().to_string())
                .collect()
        })
        .unwrap_or_default();

    // Start what ran before and check it comes up; otherwise put the old state back.
    let why = match why {
        Some(w) => Some(w),
        None => start_and_check(core, &were_up, env.health_deadline).await,
    };
    if let Some(why) = why {
        stop_app(core, env).await;
        let servers_back = crate::dbrestore::put_back(core, server_swapped, safety.as_ref()).await;
        let back = match &safety {
            Some(s) => match safety_parts(s, &parts) {
                Ok(b) => {
                    for p in parts
                        .iter()
                        .filter(|p| !b.iter().any(|x| x.live() == p.live()))
                    {
                        remove_any(p.live());
                    }
                    put_back(s, b).await
                }
                Err(e) => Err(e),
            },
            None => {
                for p in &parts {
                    remove_any(p.live());
                }
                Ok(())
            }
        };
        let rollback = match back.and(servers_back) {
            Ok(()) => match start_and_check(core, &were_up, env.health_deadline).await {
                None => "the previous database is back in place and its services run".to_owned(),
                Some(w) => format!(
                    "the previous database is back in place, but its services did not come up: {w}"
                ),
            },
            Err(e) => format!(
                "putting the previous database back failed too: {e}; the safety copy is backup {} ({})",
                safety.as_ref().map_or(0, |s| s.id),
                copies.join(", ")
            ),
        };
        return Err(BackupOpError::RestoreFailed {
            env: env_target.to_string(),
            why,
            rollback,
        });
    }
    crate::dbrestore::finish(server_swapped).await;
    let _ = prune(core, env);
    let mut restored: Vec<String> = parts
        .iter()
        .map(|p| p.live().display().to_string())
        .collect();
    restored.extend(server_arts.iter().map(|a| match &a.database {
        Some(db) => format!("{} ({db})", a.name),
        None => a.name.clone(),
    }));
    Ok(RestoreOutcome {
        backup: info.id,
        restored,
        safety_copies: copies,
        safety_backup: safety.map(|s| s.id),
    })
}

fn is_server(core: &Core, key: &homeport_types::ServiceKey) -> bool {
    core.config()
        .service(key)
        .is_some_and(|s| s.database.is_some())
}

/// Stops the environment's services but its database servers.
async fn stop_app(core: &Core, env: &EnvSpec) {
    let keys: Vec<_> = core
        .config()
        .services
        .iter()
        .filter(|s| s.key.app == env.app && s.key.env == env.env && s.database.is_none())
        .map(|s| s.key.clone())
        .collect();
    for k in keys {
        let _ = core.supervisor().stop(&Target::Service(k)).await;
    }
}

/// For a failed deploy: writes the pre-deploy backup's databases into the live ones in place,
/// under whatever runs on them (nothing stops), keeping the databases as they were just before
/// in a safety backup, and says per database which rows that discarded. Unlike a user's
/// restore it never undoes itself because of how the services then run — the point is to get
/// the old schema back under the old release.
pub(crate) async fn restore_in_place(
    core: &Core,
    env: &EnvSpec,
    backup: i64,
) -> Result<Vec<Discarded>, BackupOpError> {
    let info = core
        .store()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .backup(backup)?
        .ok_or_else(|| BackupOpError::NoBackup(backup.to_string()))?;
    let sel = Selection::default();
    let parts: Vec<Part> = parts(env, &info, &sel, Path::new("/nonexistent"))?
        .into_iter()
        .filter(|p| matches!(p, Part::Database { .. }))
        .collect();
    let mut discarded = restore_servers_in_place(core, env, &info).await?;
    if parts.is_empty() {
        return Ok(discarded);
    }
    let staged = stage(core, &info, parts, PathBuf::new()).await?;
    let root = safety_root(core, env);
    let compress = env.backup.compress;
    let time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let done = tokio::task::spawn_blocking(move || {
        let mut set = SetBuilder::new(&root, compress)?;
        let mut found = Vec::new();
        let result = (|| {
            for (part, copy) in &staged {
                let Part::Database { artifact, live } = part else {
                    continue;
                };
                let plain = set.plain_path(&artifact.name);
                restore::restore_in_place(copy, live, Duration::from_secs(30), || {
                    homeport_backup::backup_database(live, &plain, BackupMethod::BackupApi)
                })?;
                let tables = homeport_backup::diff::discarded_rows(&plain, copy)?;
                let a = set.add_database_copy(&artifact.name)?;
                found.push((artifact.name.clone(), live.clone(), tables, a.file));
            }
            Ok::<_, homeport_backup::BackupError>(())
        })();
        for (_, copy) in &staged {
            let _ = std::fs::remove_file(copy);
        }
        result?;
        Ok::<_, homeport_backup::BackupError>((set.commit()?, found))
    })
    .await
    .map_err(|e| BackupOpError::Internal(e.to_string()))??;
    let (set, found) = done;
    let dir = set.dir.clone();
    let safety = catalogue(core, env, time, BackupTrigger::Safety, set, true)?;
    let _ = prune(core, env);
    discarded.extend(found.into_iter().map(|(database, live, tables, file)| {
        let tables: Option<Vec<TableRows>> = tables.map(|t| {
            t.into_iter()
                .map(|r| TableRows {
                    table: r.table,
                    rows: r.rows,
                })
                .collect()
        });
        Discarded {
            database,
            path: live.display().to_string(),
            rows: tables.as_ref().map(|t| t.iter().map(|r| r.rows).sum()),
            tables: tables.unwrap_or_default(),
            backup: Some(safety.id),
            copy: dir.join(file).display().to_string(),
            server: false,
        }
    }));
    Ok(discarded)
}

/// The servers' part of [`restore_in_place`]: each database of the pre-deploy backup restored
/// beside the live one and swapped in, after a safety dump of the live one. What it discarded is
/// not counted per row; the safety backup keeps it.
async fn restore_servers_in_place(
    core: &Core,
    env: &EnvSpec,
    info: &BackupInfo,
) -> Result<Vec<Discarded>, BackupOpError> {
    // Only into the servers Homeport runs: an external server is backed up, never restored
    // into (its pre-deploy backup keeps it as it was).
    let arts: Vec<_> = crate::dbrestore::selected(&info.artifacts, None)
        .into_iter()
        .filter(|a| matches!(env.servers.get(&a.name), Some(DbServer::Managed(_))))
        .collect();
    if arts.is_empty() {
        return Ok(Vec::new());
    }
    crate::dbrestore::ensure_servers(core, env).await?;
    let staged = crate::dbrestore::stage(env, Path::new(&info.dir), &arts).await?;
    let sources = crate::dbrestore::safety_sources(&staged);
    let safety = match keep_safety_copy(core, env, &[], sources).await {
        Ok(s) => s,
        Err(e) => {
            for s in staged {
                crate::dbrestore::discard(s).await;
            }
            return Err(e);
        }
    };
    let swapped = crate::dbrestore::swap(core, staged, safety.as_ref()).await?;
    crate::dbrestore::finish(swapped).await;
    Ok(arts
        .iter()
        .map(|a| Discarded {
            database: a.name.clone(),
            path: a.database.clone().unwrap_or_else(|| a.name.clone()),
            rows: None,
            tables: Vec::new(),
            backup: safety.as_ref().map(|s| s.id),
            copy: safety
                .as_ref()
                .and_then(|s| {
                    s.artifacts
                        .iter()
                        .find(|x| x.name == a.name && x.database == a.database)
                        .map(|x| Path::new(&s.dir).join(&x.file).display().to_string())
                })
                .unwrap_or_default(),
            server: true,
        })
        .collect())
}

/// Removes what a crash mid-restore left beside an environment's live data: staged copies, and
/// a folder swap half done.
pub(crate) fn sweep_leftovers(env: &EnvSpec) {
    for db in env.databases.values() {
        for suffix in [".from-backup", ".restoring"] {
            let _ = std::fs::remove_file(sidecar(db, suffix));
        }
    }
    for f in &env.files {
        restore::repair_swap(f);
    }
}

async fn restart(core: &Core, keys: &[homeport_types::ServiceKey]) {
    for k in keys {
        let _ = core
            .supervisor()
            .start(&Target::Service(k.clone()), Duration::from_secs(60))
            .await;
    }
}

/// Starts `keys` and waits (up to `deadline`) until each is ready; the reason if one is not.
async fn start_and_check(
    core: &Core,
    keys: &[homeport_types::ServiceKey],
    deadline: Duration,
) -> Option<String> {
    restart(core, keys).await;
    crate::deploy::wait_ready(core, keys, deadline).await.err()
}
