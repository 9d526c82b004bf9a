//! Putting a release live, and taking it back: back up → migrate → switch → restart (and bring
//! up the idle instance of each blue-green service) → health gate; on failure, roll back.
//!
//! The promise about data is that a write a client saw acknowledged is never lost silently:
//! - a migration that fails before the database changed (no commit since the backup, by
//!   `PRAGMA data_version`) restores nothing, and the old release never stops;
//! - a migration that fails after changing it gets the pre-deploy backup written back in place
//!   under the still-running old release (no stop), and whatever that discards is reported;
//! - after a successful migration, a failure rolls the code back only when the app declares its
//!   migrations backward compatible (or `restore_on_failure = false`): every write stays;
//!   otherwise the backup comes back (the old release needs the old schema) and every row the
//!   restore discards — what the new release and anyone else wrote since the backup — is
//!   counted and kept in a safety backup, named in the record, the CLI, the dashboard and the
//!   notification.

use std::path::{Path, PathBuf};

use homeport_config::{AppSpec, EnvSpec};
use homeport_types::{BackupTrigger, DeployKind, Discarded, Target};

use super::gate::{self, Switched};
use super::record::Run;
use super::{PipelineError, app_dir, current_link};
use crate::Core;

/// Connections held open on an environment's databases from just before its pre-deploy backup,
/// to tell afterwards whether anything committed to them since (`PRAGMA data_version` changes
/// when another connection commits).
struct Watch {
    dbs: Vec<(rusqlite::Connection, i64)>,
    /// The environment's databases that did not exist then.
    missing: Vec<PathBuf>,
}

impl Watch {
    fn open(env: &EnvSpec) -> Watch {
        let dbs = env
            .databases
            .values()
            .filter(|p| p.exists())
            .filter_map(|p| {
                let c = rusqlite::Connection::open_with_flags(
                    p,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .ok()?;
                let v = data_version(&c)?;
                Some((c, v))
            })
            .collect();
        let missing = env
            .databases
            .values()
            .filter(|p| !p.exists())
            .cloned()
            .collect();
        Watch { dbs, missing }
    }

    /// Whether any database changed since [`Watch::open`]; a database that cannot be asked
    /// counts as changed.
    fn changed(&self) -> bool {
        self.missing.iter().any(|p| p.exists())
            || self
                .dbs
                .iter()
                .any(|(c, v)| data_version(c).is_none_or(|now| now != *v))
    }
}

fn data_version(c: &rusqlite::Connection) -> Option<i64> {
    c.query_row("PRAGMA data_version", [], |r| r.get(0)).ok()
}

/// What a failed migration did to the data.
enum MigrationUndo {
    /// Nothing committed since the backup: nothing to put back.
    Unchanged,
    /// Put back in place; what that discarded.
    Restored(Vec<Discarded>),
    /// Left as the migration left it.
    Kept(&'static str),
}

/// Back up → migrate → switch → restart → health gate; undo on failure.
pub(super) async fn activate(
    run: &mut Run<'_>,
    app: &AppSpec,
    env: &EnvSpec,
    release: &str,
    kind: DeployKind,
) -> Result<(), PipelineError> {
    let core = run.core;
    let target = Target::Env(env.app.clone(), env.env.clone());
    // The environment is the deploy's until it ends: no backup or restore runs meanwhile.
    let _env = core.claim_env(&env.app, &env.env, "deploy")?;
    let link = current_link(core, &app.name, &env.env);
    let release_dir = app_dir(core, &app.name).join("releases").join(release);
    let previous = run.record.previous.clone();
    let migrates = kind != DeployKind::Rollback && app.migrate.is_some();

    // The app's database servers run before anything touches their data (a first deploy's
    // migration creates the schema in them).
    if !crate::dbrestore::server_keys(core, env).is_empty() {
        run.step("database servers", async {
            Ok(crate::dbrestore::ensure_servers(core, env).await?)
        })
        .await?;
    }
    // Databases that do not exist yet (a first deploy creates them) have nothing to back up.
    let watch = migrates.then(|| Watch::open(env));
    let has_server = env.servers.values().any(|s| match s {
        homeport_config::DbServer::Managed(m) => m.data_dir().exists(),
        homeport_config::DbServer::External { .. } => true,
    });
    let backup = if !env.databases.values().any(|p| p.exists()) && !has_server {
        None
    } else {
        let t = target.clone();
        Some(
            run.step("backup", async move {
                Ok(core.backup(&t, BackupTrigger::PreDeploy).await?)
            })
            .await?
            .id,
        )
    };
    // The database servers' write marks, read after their backup: what the old release wrote
    // in between is not the migration's, and a Redis snapshot moves its mark.
    let marks = if migrates && !env.servers.is_empty() {
        Some(crate::dbrestore::write_marks(env).await)
    } else {
        None
    };

    if migrates && let Some(line) = &app.migrate {
        // The config's own expander: the same placeholders and errors as `config check`.
        let argv = homeport_config::migrate_argv(line, env, &release_dir)
            .map_err(PipelineError::Migrate)?;
        let vars = migrate_env(app, env, &release_dir);
        if let Err(why) = run
            .command_step("migrate", vec![argv], release_dir.clone(), vars)
            .await
        {
            let mut changed = watch.as_ref().is_some_and(Watch::changed);
            drop(watch);
            if let Some(before) = &marks {
                changed |= crate::dbrestore::marks_moved(
                    before,
                    &crate::dbrestore::write_marks(env).await,
                );
            }
            return Err(undo_migration(run, env, backup, changed, why).await);
        }
    }

    let mut switched: Vec<Switched> = Vec::new();
    let outcome: Result<(), PipelineError> = async {
        let (l, r) = (link.clone(), release_dir.clone());
        run.step(
            "switch",
            async move { Ok(homeport_deploy::switch(&l, &r)?) },
        )
        .await?;
        let keys = gate::restarted(core, &env.app, &env.env);
        let deadline = env.health_deadline;
        run.step("restart", async {
            gate::restart(core, &keys, deadline).await
        })
        .await?;
        for p in core.deploys.switches_of(&env.app, &env.env) {
            let step = format!("switch {} (blue-green)", p.service);
            let (deadline, stable) = (env.health_deadline, env.health_stable);
            let how = run
                .step(&step, async {
                    gate::bring_up_idle(core, &p, deadline, stable).await
                })
                .await?;
            run.say(&step, how).await;
            let (s, note) = gate::switch_to_idle(core, &p, env.drain).await;
            run.say(&step, note).await;
            switched.push(s);
        }
        let keys = gate::gated(core, &env.app, &env.env);
        let (deadline, stable) = (env.health_deadline, env.health_stable);
        let how = run
            .step("health gate", async {
                gate::health_gate(core, &keys, deadline, stable).await
            })
            .await?;
        run.say("health gate", how).await;
        Ok(())
    }
    .await;
    if outcome.is_ok() {
        for s in &switched {
            gate::retire(core, s).await;
        }
        return Ok(());
    }
    let Err(why) = outcome else { return Ok(()) };
    Err(roll_back(
        run,
        app,
        env,
        RollBack {
            why,
            backup,
            migrated: migrates,
            previous,
            switched,
        },
    )
    .await)
}

/// The environment a migration runs in: the app's `step_env`, the environment's variables with
/// their placeholders filled in for the new release, and where it all is.
fn migrate_env(app: &AppSpec, env: &EnvSpec, release: &Path) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = app
        .step_env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.extend(homeport_config::step_env(env, release).vars);
    vars
}

/// A migration failed: the old release never stopped. Puts the backup back in place if the
/// database changed, and says what that did.
async fn undo_migration(
    run: &mut Run<'_>,
    env: &EnvSpec,
    backup: Option<i64>,
    changed: bool,
    why: PipelineError,
) -> PipelineError {
    let core = run.core;
    let undo_started = run.begin_step("roll back").await;
    let undo: Result<MigrationUndo, String> = match backup {
        _ if !changed => Ok(MigrationUndo::Unchanged),
        None => Ok(MigrationUndo::Kept("there was no database before the deploy to go back to")),
        Some(_) if !env.restore_on_failure => Ok(MigrationUndo::Kept(
            "restore_on_failure = false keeps the database as the migration left it",
        )),
        Some(id) => crate::backups::restore_in_place(core, env, id)
            .await
            .map(MigrationUndo::Restored)
            .map_err(|e| {
                format!(
                    "putting the database from before the deploy back failed: {e}; it is as the migration left it, and backup {id} holds it as it was"
                )
            }),
    };
    run.end_step(
        "roll back",
        undo_started,
        undo.as_ref().err().cloned(),
        vec![],
    )
    .await;
    let why = Box::new(why);
    match undo {
        Ok(MigrationUndo::Unchanged) => PipelineError::RolledBack {
            why,
            what: "the previous release kept running; the database had not changed, so nothing was restored".into(),
        },
        Ok(MigrationUndo::Kept(because)) => PipelineError::RolledBack {
            why,
            what: format!("the previous release kept running; {because}"),
        },
        Ok(MigrationUndo::Restored(d)) => {
            let what = format!(
                "the previous release kept running; the database from before the deploy was put back in place, without stopping it{}",
                discarded_words(&d)
            );
            run.discarded(d);
            PipelineError::RolledBack { why, what }
        }
        Err(undo) => PipelineError::RollbackFailed { why, undo },
    }
}

/// What a restore discarded, for the end of a sentence; the record's `discarded` has the
/// tables and the copy's path.
pub(crate) fn discarded_words(d: &[Discarded]) -> String {
    let lost: Vec<String> = d
        .iter()
        .filter(|d| d.rows != Some(0))
        .map(|d| {
            let what = match d.rows {
                Some(n) => format!(
                    "{n} row{} written since the backup {} discarded from {}",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "was" } else { "were" },
                    d.database
                ),
                None if d.server => format!(
                    "what was written to {} since the backup was discarded",
                    d.database
                ),
                None => format!(
                    "what was written to {} since the backup was discarded (too large to count)",
                    d.database
                ),
            };
            match d.backup {
                Some(id) => format!("{what} (kept in safety backup {id})"),
                None => what,
            }
        })
        .collect();
    if lost.is_empty() {
        "; nothing written since the backup was lost".into()
    } else {
        format!("; {}", lost.join("; "))
    }
}

struct RollBack {
    why: PipelineError,
    backup: Option<i64>,
    migrated: bool,
    previous: Option<String>,
    switched: Vec<Switched>,
}

/// The release failed after the switch: diagnostics, the previous release back (a blue-green
/// service's old instance never stopped, so it just takes the requests again), the data back
/// only where the old release cannot run on it, and a check that it all runs.
async fn roll_back(run: &mut Run<'_>, app: &AppSpec, env: &EnvSpec, r: RollBack) -> PipelineError {
    let core = run.core;
    let target = Target::Env(env.app.clone(), env.env.clone());
    // Diagnostics first, while the failed release's state is still there.
    run.record.diagnostics = Some(diagnostics(core, &target, &run.step_output_text()));
    let undo_started = run.begin_step("roll back").await;
    let link = current_link(core, &app.name, &env.env);
    let restore = r.migrated
        && r.backup.is_some()
        && env.restore_on_failure
        && !app.backward_compatible_migrations;
    let mut errors: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut discarded = Vec::new();

    // Blue-green: back to the instance that never stopped.
    for s in &r.switched {
        notes.push(gate::switch_back(core, s, env.drain).await);
    }
    // Idle instances this deploy started but never switched to.
    for p in core.deploys.switches_of(&env.app, &env.env) {
        if !r
            .switched
            .iter()
            .any(|s| std::sync::Arc::ptr_eq(&s.proxy, &p))
        {
            let _ = core.supervisor().stop(&Target::Service(p.inactive())).await;
        }
    }
    // The failed release stops before the data goes back, so nothing writes to the old schema
    // with new code.
    let others = gate::restarted(core, &env.app, &env.env);
    for k in &others {
        let _ = core.supervisor().stop(&Target::Service(k.clone())).await;
    }
    let switched_back = match &r.previous {
        Some(prev) => {
            homeport_deploy::switch(&link, &app_dir(core, &app.name).join("releases").join(prev))
                .map_err(|e| e.to_string())
        }
        None => match std::fs::remove_file(&link) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
            _ => Ok(()),
        },
    };
    if let Err(e) = switched_back {
        errors.push(format!("switching back: {e}"));
    }
    if restore && let Some(id) = r.backup {
        match crate::backups::restore_in_place(core, env, id).await {
            Ok(d) => discarded = d,
            Err(e) => errors.push(format!(
                "putting the database from before the deploy back: {e}; backup {id} holds it"
            )),
        }
    }
    if r.previous.is_some() {
        if let Err(e) = gate::restart(core, &others, env.health_deadline).await {
            errors.push(e.to_string());
        }
        let keys = gate::gated(core, &env.app, &env.env);
        if let Err(e) = gate::wait_ready(core, &keys, env.health_deadline).await {
            errors.push(format!("the previous release is not ready either: {e}"));
        }
    }
    run.end_step(
        "roll back",
        undo_started,
        (!errors.is_empty()).then(|| errors.join("; ")),
        vec![],
    )
    .await;
    for n in notes {
        run.say("roll back", n).await;
    }
    let data = if !r.migrated {
        String::new()
    } else if restore {
        format!(
            " and put the database from before the deploy back (the previous release needs its schema){}",
            discarded_words(&discarded)
        )
    } else if app.backward_compatible_migrations {
        "; the database keeps the migration and every write since (the app declares its migrations backward compatible)".into()
    } else if !env.restore_on_failure {
        "; the database keeps the migration and every write since (restore_on_failure = false)"
            .into()
    } else {
        String::new()
    };
    run.discarded(discarded);
    let what = match &r.previous {
        Some(p) => format!("switched back to {p}, which is running{data}"),
        None => format!("there was no earlier release; the environment is stopped{data}"),
    };
    let why = Box::new(r.why);
    if errors.is_empty() {
        PipelineError::RolledBack { why, what }
    } else {
        PipelineError::RollbackFailed {
            why,
            undo: errors.join("; "),
        }
    }
}

fn diagnostics(core: &Core, target: &Target, output: &str) -> String {
    use homeport_supervisor::logfile::LogQuery;
    let mut d = output.to_owned();
    for s in core
        .supervisor()
        .status()
        .iter()
        .filter(|s| target.contains(&s.key))
    {
        let exit = s
            .last_exit
            .map_or_else(|| "none".to_owned(), |e| e.to_string());
        d.push_str(&format!(
            "== {} ({}, last exit: {exit}) ==\n",
            s.key, s.state
        ));
        let q = LogQuery {
            tail: Some(200),
            ..Default::default()
        };
        if let Ok((lines, _)) = core.logs(&Target::Service(s.key.clone()), &q) {
            for l in lines {
                d.push_str(&format!("{} {}\n", l.line.time, l.line.text));
            }
        }
    }
    d
}
