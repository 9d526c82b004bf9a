//! Backups of environments: take (manually, on schedule, before a deploy), catalogue in
//! state.db, retain, verify, and restore with a safety copy that comes back if the restored
//! environment does not come up.

use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::time::{Duration, SystemTime};

use homeport_backup::retention::{Candidate, Retention};
use homeport_backup::{Artifact, ArtifactKind, BackupMethod, BackupPlan, restore};
use homeport_config::{BackupSchedule, EnvSpec};
use homeport_types::{
    BackupArtifact, BackupInfo, BackupTrigger, EnvBackups, EventKind, RestoreOutcome, ServiceState,
    Subject, Target, VerifyOutcome,
};

use crate::Core;

#[derive(Debug, thiserror::Error)]
pub enum BackupOpError {
    #[error("no environment {0}; expected APP/ENV")]
    NotFound(String),
    #[error("no backup {0}")]
    NoBackup(String),
    #[error("a backup, restore or deploy of {0} is running; try again when it is done")]
    Busy(String),
    #[error(transparent)]
    Backup(#[from] homeport_backup::BackupError),
    #[error("{0}")]
    Refused(String),
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

fn artifact_info(a: &Artifact) -> BackupArtifact {
    BackupArtifact {
        name: a.name.clone(),
        kind: match a.kind {
            ArtifactKind::Database => homeport_types::ArtifactKind::Database,
            ArtifactKind::Files => homeport_types::ArtifactKind::Files,
        },
        file: a.file.clone(),
        size: a.size,
        sha256: a.sha256.clone(),
        compressed: a.compressed,
    }
}

fn artifact_of(b: &BackupArtifact) -> Artifact {
    Artifact {
        name: b.name.clone(),
        kind: match b.kind {
            homeport_types::ArtifactKind::Database => ArtifactKind::Database,
            homeport_types::ArtifactKind::Files => ArtifactKind::Files,
        },
        file: b.file.clone(),
        size: b.size,
        sha256: b.sha256.clone(),
        compressed: b.compressed,
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
    let plan = BackupPlan {
        // Before a deploy or on schedule, a database that does not exist yet (its service has
        // not created it) has nothing to keep; a manual backup says it is missing.
        databases: env
            .databases
            .iter()
            .filter(|(_, p)| trigger == BackupTrigger::Manual || p.exists())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        files: env.files.clone(),
        compress: env.backup.compress,
    };
    if plan.databases.is_empty() && plan.files.is_empty() {
        return Err(BackupOpError::Refused(format!(
            "{target} lists no `databases` or `files` to back up"
        )));
    }
    let subject = Subject::env(&env.app, &env.env);
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
    made
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
    let mut info = BackupInfo {
        id: 0,
        app: env.app.clone(),
        env: env.env.clone(),
        time,
        trigger,
        size: set.artifacts.iter().map(|a| a.size).sum(),
        duration_ms: set.duration_ms,
        verified: true,
        dir: set.dir.display().to_string(),
        artifacts: set.artifacts.iter().map(artifact_info).collect(),
    };
    {
        let store = core.store().lock().unwrap_or_else(PoisonError::into_inner);
        info.id = store.add_backup(&info)?;
    }
    tracing::info!(
        backup = info.id,
        "backed up {target} ({} bytes in {} ms)",
        info.size,
        info.duration_ms
    );
    prune(core, env)?;
    Ok(info)
}

/// Deletes what the environment's retention does not keep: folder first, then the row, so a
/// crash in between leaves a row whose `verify` says its files are gone, never an orphan file.
fn prune(core: &Core, env: &EnvSpec) -> Result<(), BackupOpError> {
    let store = core.store().lock().unwrap_or_else(PoisonError::into_inner);
    let list = store.backups(Some((&env.app, &env.env)))?;
    let candidates: Vec<Candidate> = list
        .iter()
        .map(|b| Candidate {
            id: b.id,
            time: humantime::parse_rfc3339_weak(&b.time)
                .ok()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64),
            verified: b.verified,
        })
        .collect();
    let policy = Retention {
        keep_last: env.backup.keep_last as usize,
        keep_daily: env.backup.keep_daily as usize,
        keep_weekly: env.backup.keep_weekly as usize,
        keep_monthly: env.backup.keep_monthly as usize,
    };
    for id in homeport_backup::retention::to_delete(&candidates, &policy) {
        if let Some(b) = list.iter().find(|b| b.id == id) {
            let _ = std::fs::remove_dir_all(&b.dir);
            store.delete_backup(id)?;
            tracing::info!(backup = id, "deleted by retention");
        }
    }
    Ok(())
}

fn describe(s: &BackupSchedule) -> String {
    match s {
        BackupSchedule::Every(d) => format!("every {}", humantime::format_duration(*d)),
        BackupSchedule::DailyAt(secs) => {
            format!("daily at {:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
        }
    }
}

fn schedule_of(s: &BackupSchedule) -> homeport_backup::schedule::Schedule {
    match *s {
        BackupSchedule::Every(d) => homeport_backup::schedule::Schedule::Every(d),
        BackupSchedule::DailyAt(secs) => homeport_backup::schedule::Schedule::DailyAt(secs),
    }
}

fn last_time(list: &[BackupInfo]) -> Option<SystemTime> {
    list.iter()
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
                    .next_due(last_time(&backups))
                    .max(SystemTime::now());
                humantime::format_rfc3339_seconds(due).to_string()
            });
            Ok(EnvBackups {
                app: e.app.clone(),
                env: e.env.clone(),
                schedule: e.backup.schedule.as_ref().map(describe),
                next_due,
                backups,
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
    let problems = tokio::task::spawn_blocking(move || {
        let dir = PathBuf::from(&checked.dir);
        checked
            .artifacts
            .iter()
            .filter_map(|a| {
                homeport_backup::verify(&dir, &artifact_of(a))
                    .err()
                    .map(|e| e.to_string())
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| BackupOpError::Internal(e.to_string()))?;
    let ok = problems.is_empty();
    core.store()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .set_backup_verified(id, ok)?;
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
            if schedule.is_due(last, SystemTime::now()) {
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

pub(crate) async fn restore_env(
    core: &Core,
    target: &Target,
    backup: Option<i64>,
    database: Option<&str>,
    to: Option<&Path>,
) -> Result<RestoreOutcome, BackupOpError> {
    let config = core.config();
    let env = env_of(&config.envs, target)?.clone();
    let info = {
        let store = core.store().lock().unwrap_or_else(PoisonError::into_inner);
        match backup {
            Some(id) => store
                .backup(id)?
                .filter(|b| b.app == env.app && b.env == env.env),
            None => store
                .backups(Some((&env.app, &env.env)))?
                .into_iter()
                .find(|b| b.verified),
        }
        .ok_or_else(|| {
            BackupOpError::NoBackup(
                backup.map_or_else(|| format!("verified for {target}"), |id| id.to_string()),
            )
        })?
    };
    let dir = PathBuf::from(&info.dir);
    let dbs: Vec<Artifact> = info
        .artifacts
        .iter()
        .map(artifact_of)
        .filter(|a| a.kind == ArtifactKind::Database && database.is_none_or(|d| d == a.name))
        .collect();
    if dbs.is_empty() {
        return Err(BackupOpError::Refused(format!(
            "backup {} has no database{}",
            info.id,
            database.map(|d| format!(" named {d}")).unwrap_or_default()
        )));
    }

    // Inspection copy: nothing live is touched.
    if let Some(to) = to {
        if dbs.len() > 1 {
            return Err(BackupOpError::Refused(
                "the backup has several databases: name one with `database`".into(),
            ));
        }
        if to.exists() {
            return Err(BackupOpError::Refused(format!(
                "{} exists; restore into a new file",
                to.display()
            )));
        }
        let (a, to2, dir2) = (dbs[0].clone(), to.to_path_buf(), dir.clone());
        tokio::task::spawn_blocking(move || restore::extract_checked(&dir2, &a, &to2))
            .await
            .map_err(|e| BackupOpError::Internal(e.to_string()))??;
        return Ok(RestoreOutcome {
            backup: info.id,
            restored: vec![to.display().to_string()],
            safety_copies: vec![],
        });
    }

    let _running = core.claim_env(&env.app, &env.env, "restore")?;
    let done = restore_live(core, &env, &info, &dir, &dbs).await;
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

/// Stops the environment, swaps the checked databases in with safety copies, restarts what ran
/// and checks it comes up; puts the old databases back if it does not.
async fn restore_live(
    core: &Core,
    env: &EnvSpec,
    info: &BackupInfo,
    dir: &Path,
    dbs: &[Artifact],
) -> Result<RestoreOutcome, BackupOpError> {
    // Check every artifact before anything stops.
    let staged = stage_restore(env, dir, dbs).await?;
    let env_target = Target::Env(env.app.clone(), env.env.clone());
    let were_up: Vec<_> = core
        .supervisor()
        .status()
        .into_iter()
        .filter(|s| env_target.contains(&s.key))
        .filter(|s| s.state.is_up() || s.state == ServiceState::BackingOff)
        .map(|s| s.key)
        .collect();
    let _ = core.supervisor().stop(&env_target).await;
    let safety_dir = safety_dir(core, env);
    let swapped = match swap_in(staged, safety_dir.clone()).await {
        Ok(s) => s,
        Err(e) => {
            restart(core, &were_up).await;
            return Err(e);
        }
    };

    // Start what ran before and check it comes up; otherwise put the old databases back.
    if let Some(why) = start_and_check(core, &were_up).await {
        let _ = core.supervisor().stop(&env_target).await;
        let rollback = match put_back(swapped).await {
            Ok(()) => match start_and_check(core, &were_up).await {
                None => "the previous database is back in place and its services run".to_owned(),
                Some(w) => format!(
                    "the previous database is back in place, but its services did not come up: {w}"
                ),
            },
            Err(e) => format!(
                "putting the previous database back failed too: {e}; safety copies are in {}",
                safety_dir.display()
            ),
        };
        return Err(BackupOpError::RestoreFailed {
            env: env_target.to_string(),
            why,
            rollback,
        });
    }
    Ok(RestoreOutcome {
        backup: info.id,
        restored: swapped
            .iter()
            .map(|(l, _)| l.display().to_string())
            .collect(),
        safety_copies: swapped
            .iter()
            .filter_map(|(_, s)| s.as_ref().map(|p| p.display().to_string()))
            .collect(),
    })
}

/// A database to put in place: the artifact, the live path, the checked copy beside it.
type Staged = Vec<(Artifact, PathBuf, PathBuf)>;
/// What was swapped: the live path and its safety copy (None: it did not exist before).
type Swapped = Vec<(PathBuf, Option<PathBuf>)>;

fn safety_dir(core: &Core, env: &EnvSpec) -> PathBuf {
    let stamp = humantime::format_rfc3339_millis(SystemTime::now())
        .to_string()
        .replace(':', "-");
    backups_root(core)
        .join(&env.app)
        .join(&env.env)
        .join("safety")
        .join(stamp)
}

/// Checks each artifact and extracts it beside its live database; nothing live changes.
async fn stage_restore(
    env: &EnvSpec,
    dir: &Path,
    dbs: &[Artifact],
) -> Result<Staged, BackupOpError> {
    let staged: Staged = dbs
        .iter()
        .map(|a| {
            let live = env.databases.get(&a.name).cloned().ok_or_else(|| {
                BackupOpError::Refused(format!(
                    "{}/{} no longer has a database named {}",
                    env.app, env.env, a.name
                ))
            })?;
            let mut tmp = live.as_os_str().to_owned();
            tmp.push(".from-backup");
            Ok((a.clone(), live, PathBuf::from(tmp)))
        })
        .collect::<Result<_, BackupOpError>>()?;
    let (s2, d2) = (staged.clone(), dir.to_path_buf());
    let checked = tokio::task::spawn_blocking(move || {
        s2.iter().try_for_each(|(a, _, tmp)| {
            // A copy left by a restore that crashed: made again from the backup.
            let _ = std::fs::remove_file(tmp);
            restore::extract_checked(&d2, a, tmp)
        })
    })
    .await
    .map_err(|e| BackupOpError::Internal(e.to_string()))?;
    if let Err(e) = checked {
        for (_, _, tmp) in &staged {
            let _ = std::fs::remove_file(tmp);
        }
        return Err(e.into());
    }
    Ok(staged)
}

/// With the services stopped: a safety copy of each live database, then the staged copy in its
/// place. If one fails, the ones already swapped are put back, so the environment never runs
/// on a mix of restored and live databases.
async fn swap_in(staged: Staged, safety_dir: PathBuf) -> Result<Swapped, BackupOpError> {
    tokio::task::spawn_blocking(move || {
        let mut done: Swapped = Vec::new();
        let mut failure = None;
        for (a, live, tmp) in &staged {
            let step = restore::safety_copy(live, &safety_dir.join(format!("{}.db", a.name)))
                .and_then(|safety| {
                    restore::replace_database(tmp, live)?;
                    Ok(safety)
                });
            match step {
                Ok(safety) => done.push((live.clone(), safety)),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        for (_, _, tmp) in &staged {
            let _ = std::fs::remove_file(tmp);
        }
        match failure {
            None => Ok(done),
            Some(e) => {
                let undone = put_back_blocking(&done);
                Err(match undone {
                    Ok(()) => BackupOpError::Backup(e),
                    Err(u) => BackupOpError::Refused(format!(
                        "{e}; putting back the databases already restored failed too: {u}"
                    )),
                })
            }
        }
    })
    .await
    .map_err(|e| BackupOpError::Internal(e.to_string()))?
}

fn put_back_blocking(swapped: &Swapped) -> Result<(), homeport_backup::BackupError> {
    for (live, safety) in swapped {
        match safety {
            Some(s) => restore::replace_database(s, live)?,
            // It did not exist before the restore: remove what the restore put there.
            None => {
                let _ = std::fs::remove_file(live);
            }
        }
    }
    Ok(())
}

async fn put_back(swapped: Swapped) -> Result<(), BackupOpError> {
    tokio::task::spawn_blocking(move || put_back_blocking(&swapped))
        .await
        .map_err(|e| BackupOpError::Internal(e.to_string()))?
        .map_err(Into::into)
}

/// For a failed deploy: puts the pre-deploy backup's databases back while the environment's
/// services are stopped. Unlike a user's restore it never undoes itself because of how the
/// services then run — the point is to get the old schema back under the old release.
pub(crate) async fn restore_for_deploy(
    core: &Core,
    env: &EnvSpec,
    backup: i64,
) -> Result<(), BackupOpError> {
    let info = core
        .store()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .backup(backup)?
        .ok_or_else(|| BackupOpError::NoBackup(backup.to_string()))?;
    let dbs: Vec<Artifact> = info
        .artifacts
        .iter()
        .map(artifact_of)
        .filter(|a| a.kind == ArtifactKind::Database)
        .collect();
    let staged = stage_restore(env, Path::new(&info.dir), &dbs).await?;
    swap_in(staged, safety_dir(core, env)).await.map(drop)
}

async fn restart(core: &Core, keys: &[homeport_types::ServiceKey]) {
    for k in keys {
        let _ = core
            .supervisor()
            .start(&Target::Service(k.clone()), Duration::from_secs(60))
            .await;
    }
}

/// Starts `keys` and waits (up to a minute) until each is ready; the reason if one is not.
async fn start_and_check(core: &Core, keys: &[homeport_types::ServiceKey]) -> Option<String> {
    restart(core, keys).await;
    crate::wait_ready(core, keys, Duration::from_secs(60))
        .await
        .err()
}
