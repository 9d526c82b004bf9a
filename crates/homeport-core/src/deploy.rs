//! The deploy pipeline: lock → source → test → build → stage → back up → migrate → switch →
//! restart → health gate → prune; on failure after the backup: diagnostics, switch back,
//! database restored if a migration ran, restart, verify. Promote and rollback reuse the part
//! from the backup on; update fast-forwards the source first. Every step is timed, streamed to
//! the caller and recorded in state.db.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::time::{Duration, Instant, SystemTime};

use homeport_config::{AppSpec, EnvSpec};
use homeport_deploy::{Manifest, git};
use homeport_types::{
    BackupTrigger, DeployEvent, DeployKind, DeployRecord, DeployRequest, DeployResult, EventKind,
    ReleaseInfo, StepRecord, StepStatus, Subject, Target,
};
use tokio::sync::mpsc;

use crate::Core;
use homeport_supervisor::logfile::LogQuery;

#[derive(Debug, thiserror::Error)]
pub enum DeployRefused {
    #[error("a {what} of {app} started at {since} is running; wait for it to finish")]
    Busy {
        app: String,
        what: String,
        since: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

/// Why a deploy, promote, rollback or update failed; its text is what the record, the CLI and
/// the notification say.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The source, a build step, staging or the switch.
    #[error(transparent)]
    Release(#[from] homeport_deploy::DeployError),
    /// The backup before migrating, or the environment was taken by a backup or restore.
    #[error(transparent)]
    Backup(#[from] crate::BackupOpError),
    /// Nothing to roll out: no such release, none to promote, none to go back to.
    #[error("{0}")]
    NoRelease(String),
    /// The migrate command line cannot be used.
    #[error("the migrate command: {0}")]
    Migrate(String),
    /// A service did not start, or did not become and stay ready.
    #[error("{0}")]
    NotReady(String),
    /// A step's worker ended without an answer (a panic).
    #[error("a step stopped unexpectedly: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// It failed, and the environment was put back as it was.
    #[error("{why}; {what}")]
    RolledBack {
        why: Box<PipelineError>,
        what: String,
    },
    /// It failed, and putting the environment back failed too.
    #[error("{why}; rolling back failed too: {undo}")]
    RollbackFailed {
        why: Box<PipelineError>,
        undo: String,
    },
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

pub(crate) fn app_dir(core: &Core, app: &str) -> PathBuf {
    core.config().agent.data_dir.join("apps").join(app)
}

fn current_link(core: &Core, app: &str, env: &str) -> PathBuf {
    app_dir(core, app).join(env).join("current")
}

/// Checks the request and takes the app's lock; the pipeline runs with [`run`].
pub(crate) fn begin(
    core: &Core,
    req: &DeployRequest,
) -> Result<(AppSpec, EnvSpec, crate::claims::Claim), DeployRefused> {
    let config = core.config();
    let env = config
        .envs
        .iter()
        .find(|e| e.app == req.app && e.env == req.env)
        .cloned()
        .ok_or_else(|| {
            DeployRefused::NotFound(format!("no environment {}/{}", req.app, req.env))
        })?;
    let app = config
        .apps
        .iter()
        .find(|a| a.name == req.app)
        .cloned()
        .ok_or_else(|| DeployRefused::NotFound(format!("no app {}", req.app)))?;
    if matches!(req.kind, DeployKind::Deploy | DeployKind::Update) && app.source.is_none() {
        return Err(DeployRefused::Invalid(format!(
            "app {} has no `source` to build from",
            req.app
        )));
    }
    if req.kind == DeployKind::Promote {
        let from = req.from_env.as_deref().ok_or_else(|| {
            DeployRefused::Invalid("promote needs the environment to promote from".into())
        })?;
        if from == req.env {
            return Err(DeployRefused::Invalid(
                "promote from and to the same environment".into(),
            ));
        }
    }
    let claim = core
        .claims
        .try_claim(
            crate::claims::Scope::App(req.app.clone()),
            format!("{} to {}", req.kind.as_str(), req.env),
        )
        .map_err(|held| DeployRefused::Busy {
            app: req.app.clone(),
            what: held.what,
            since: held.since,
        })?;
    Ok((app, env, claim))
}

/// Collects timings and output, streams them, and keeps the record.
struct Run<'a> {
    core: &'a Core,
    tx: mpsc::Sender<DeployEvent>,
    record: DeployRecord,
    output: Vec<String>,
}

impl Run<'_> {
    async fn emit(&self, e: DeployEvent) {
        let _ = self.tx.send(e).await;
    }

    fn save(&mut self) {
        let store = self
            .core
            .store()
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Ok(id) = store.save_deploy(&self.record) {
            self.record.id = id;
        }
    }

    async fn step<T, F>(&mut self, name: &str, work: F) -> Result<T, PipelineError>
    where
        F: std::future::Future<Output = Result<T, PipelineError>>,
    {
        let started = self.begin_step(name).await;
        let r = work.await;
        self.end_step(name, started, r.as_ref().err().map(ToString::to_string))
            .await;
        r
    }

    /// A step made of commands: timed and recorded like [`Run::step`], its output streamed.
    async fn command_step(
        &mut self,
        name: &str,
        steps: Vec<Vec<String>>,
        dir: PathBuf,
        env: Vec<(String, String)>,
    ) -> Result<(), PipelineError> {
        let started = self.begin_step(name).await;
        let r = self.commands(name, steps, dir, env).await;
        self.end_step(name, started, r.as_ref().err().map(ToString::to_string))
            .await;
        r
    }

    /// One line of a step's output, streamed and kept with the record.
    async fn say(&mut self, step: &str, line: String) {
        self.output.push(line.clone());
        self.emit(DeployEvent::Output {
            step: step.into(),
            line,
        })
        .await;
    }

    /// Streams a step's progress to the caller and publishes it as an event.
    async fn step_event(
        &self,
        name: &str,
        status: StepStatus,
        ms: Option<u64>,
        detail: Option<String>,
    ) {
        self.core.emit(
            self.subject(),
            EventKind::DeployStep {
                id: self.record.id,
                kind: self.record.kind,
                step: name.into(),
                status,
                ms,
                detail: detail.clone(),
            },
        );
        self.emit(DeployEvent::Step {
            name: name.into(),
            status,
            ms,
            detail,
        })
        .await;
    }

    fn subject(&self) -> Subject {
        Subject::env(&self.record.app, &self.record.env)
    }

    async fn begin_step(&self, name: &str) -> Instant {
        self.step_event(name, StepStatus::Started, None, None).await;
        Instant::now()
    }

    /// Records a finished step, streams its end, and saves the record.
    async fn end_step(&mut self, name: &str, started: Instant, error: Option<String>) {
        let ms = started.elapsed().as_millis() as u64;
        let detail = error.clone();
        self.record.steps.push(StepRecord {
            name: name.into(),
            ok: error.is_none(),
            ms,
            detail: detail.clone(),
        });
        let status = if error.is_none() {
            StepStatus::Ok
        } else {
            StepStatus::Failed
        };
        self.save();
        self.step_event(name, status, Some(ms), detail).await;
    }

    /// Runs commands in a blocking thread, streaming each output line.
    async fn commands(
        &mut self,
        name: &str,
        steps: Vec<Vec<String>>,
        dir: PathBuf,
        env: Vec<(String, String)>,
    ) -> Result<(), PipelineError> {
        let (ltx, mut lrx) = mpsc::channel::<String>(1024);
        let worker = tokio::task::spawn_blocking(move || {
            for argv in &steps {
                let _ = ltx.blocking_send(format!("$ {}", argv.join(" ")));
                homeport_deploy::run_step(argv, &dir, &env, |l| {
                    let _ = ltx.blocking_send(l.to_owned());
                })?;
            }
            Ok::<(), PipelineError>(())
        });
        let tx = self.tx.clone();
        let step = name.to_owned();
        let mut lines = Vec::new();
        while let Some(line) = lrx.recv().await {
            let _ = tx
                .send(DeployEvent::Output {
                    step: step.clone(),
                    line: line.clone(),
                })
                .await;
            lines.push(format!("[{step}] {line}"));
        }
        self.output.extend(lines);
        worker.await?
    }
}

/// Runs the pipeline for `req` (already checked by [`begin`]) and returns its record.
pub(crate) async fn run(
    core: &Core,
    req: DeployRequest,
    app: AppSpec,
    env: EnvSpec,
    tx: mpsc::Sender<DeployEvent>,
) -> DeployRecord {
    let link = current_link(core, &app.name, &env.env);
    let record = DeployRecord {
        id: 0,
        app: app.name.clone(),
        env: env.env.clone(),
        kind: req.kind,
        release: None,
        previous: homeport_deploy::current(&link),
        commit: None,
        started: now(),
        finished: None,
        result: DeployResult::Running,
        error: None,
        steps: vec![],
        diagnostics: None,
    };
    let mut run = Run {
        core,
        tx,
        record,
        output: Vec::new(),
    };
    run.save();
    core.emit(
        run.subject(),
        EventKind::DeployStarted {
            id: run.record.id,
            kind: run.record.kind,
        },
    );
    let result = pipeline(&mut run, &req, &app, &env).await;
    run.record.finished = Some(now());
    match result {
        Ok(()) => run.record.result = DeployResult::Succeeded,
        Err(e) => {
            run.record.result = DeployResult::Failed;
            run.record.error = Some(e.to_string());
        }
    }
    run.save();
    let r = &run.record;
    core.emit(
        run.subject(),
        EventKind::DeployFinished {
            id: r.id,
            kind: r.kind,
            result: r.result,
            release: r.release.clone(),
            previous: r.previous.clone(),
            error: r.error.clone(),
        },
    );
    let done = run.record.clone();
    run.emit(DeployEvent::Done {
        record: done.clone(),
    })
    .await;
    done
}

async fn pipeline(
    run: &mut Run<'_>,
    req: &DeployRequest,
    app: &AppSpec,
    env: &EnvSpec,
) -> Result<(), PipelineError> {
    let core = run.core;
    let releases = app_dir(core, &app.name).join("releases");
    homeport_deploy::sweep_partials(&releases);
    let release = match req.kind {
        DeployKind::Deploy | DeployKind::Update => {
            let source = app.source.clone().ok_or_else(|| {
                PipelineError::NoRelease(format!("app {} has no `source`", app.name))
            })?;
            if req.kind == DeployKind::Update {
                let s = source.clone();
                run.step("update source", async move {
                    tokio::task::spawn_blocking(move || git::fast_forward(&s)).await??;
                    Ok(())
                })
                .await?;
            }
            let s = source.clone();
            let info = run
                .step("resolve source", async move {
                    Ok(tokio::task::spawn_blocking(move || git::resolve(&s)).await??)
                })
                .await?;
            run.record.commit = Some(info.commit.clone());
            let dirty = app.allow_dirty && info.dirty;
            let id = homeport_deploy::release_id(&info.short, dirty);
            // The committed revision in a clean worktree, unless the app asks for its working tree.
            let build_dir = if app.allow_dirty {
                source.clone()
            } else {
                app_dir(core, &app.name).join("build").join(&id)
            };
            if !app.allow_dirty {
                let (s, c, d) = (source.clone(), info.commit.clone(), build_dir.clone());
                run.step("checkout", async move {
                    let parent = d.parent().unwrap_or(Path::new("/")).to_path_buf();
                    tokio::task::spawn_blocking(move || {
                        std::fs::create_dir_all(&parent)
                            .map_err(|e| homeport_deploy::DeployError::Io(parent.clone(), e))?;
                        git::worktree(&s, &c, &d)
                    })
                    .await??;
                    Ok(())
                })
                .await?;
            }
            let step_env = vec![
                ("HOMEPORT_APP".to_owned(), app.name.clone()),
                ("HOMEPORT_ENV".to_owned(), env.env.clone()),
            ];
            let built = async {
                if !app.test.is_empty() {
                    let (steps, dir, e) = (app.test.clone(), build_dir.clone(), step_env.clone());
                    run.command_step("test", steps, dir, e).await?;
                }
                if !app.build.is_empty() {
                    let (steps, dir, e) = (app.build.clone(), build_dir.clone(), step_env.clone());
                    run.command_step("build", steps, dir, e).await?;
                }
                let manifest = Manifest {
                    id: id.clone(),
                    app: app.name.clone(),
                    commit: info.commit.clone(),
                    branch: info.branch.clone(),
                    dirty,
                    version: Some(if dirty {
                        format!("{}-dirty", info.version)
                    } else {
                        info.version.clone()
                    }),
                    time: now(),
                    steps: app
                        .test
                        .iter()
                        .chain(&app.build)
                        .map(|s| s.join(" "))
                        .collect(),
                    artifacts: vec![],
                };
                let (b, arts, rel) = (build_dir.clone(), app.artifacts.clone(), releases.clone());
                run.step("stage", async move {
                    Ok(tokio::task::spawn_blocking(move || {
                        homeport_deploy::stage(&b, &arts, &rel, manifest)
                    })
                    .await??)
                })
                .await
                .map(drop)
            }
            .await;
            if !app.allow_dirty {
                let (s, d) = (source.clone(), build_dir.clone());
                let _ = tokio::task::spawn_blocking(move || git::remove_worktree(&s, &d)).await;
            }
            built?;
            id
        }
        DeployKind::Promote => {
            let from = req.from_env.clone().unwrap_or_default();
            homeport_deploy::current(&current_link(core, &app.name, &from)).ok_or_else(|| {
                PipelineError::NoRelease(format!("{}/{from} runs no release to promote", app.name))
            })?
        }
        DeployKind::Rollback => match &req.release {
            Some(r) => r.clone(),
            None => previous_release(core, &app.name, &env.env).ok_or_else(|| {
                PipelineError::NoRelease("there is no earlier release to roll back to".into())
            })?,
        },
    };
    // Only ids of releases that exist: never a path from the request.
    if !homeport_deploy::list(&releases)
        .iter()
        .any(|m| m.id == release)
    {
        return Err(PipelineError::NoRelease(format!(
            "release {release} does not exist (see `homeport releases {}`)",
            app.name
        )));
    }
    run.record.release = Some(release.clone());
    let result = activate(run, app, env, &release, req.kind != DeployKind::Rollback).await;
    // Failed deploys leave releases too; pruning keeps what matters either way.
    prune(core, app, &release, result.is_ok());
    result
}

/// The release that was live before the current one.
fn previous_release(core: &Core, app: &str, env: &str) -> Option<String> {
    let store = core.store().lock().unwrap_or_else(PoisonError::into_inner);
    let current = homeport_deploy::current(&current_link(core, app, env));
    store
        .deploys(app, Some(env), 100)
        .ok()?
        .into_iter()
        .filter(|d| d.result == DeployResult::Succeeded && d.release == current)
        .find_map(|d| d.previous)
}

/// Back up → migrate → switch → restart → health gate; undo on failure.
async fn activate(
    run: &mut Run<'_>,
    app: &AppSpec,
    env: &EnvSpec,
    release: &str,
    migrate: bool,
) -> Result<(), PipelineError> {
    let core = run.core;
    let target = Target::Env(env.app.clone(), env.env.clone());
    // The environment is the deploy's until it ends: no backup or restore runs meanwhile.
    let _env = core.claim_env(&env.app, &env.env, "deploy")?;
    let link = current_link(core, &app.name, &env.env);
    let release_dir = app_dir(core, &app.name).join("releases").join(release);
    let previous = run.record.previous.clone();

    // Databases that do not exist yet (a first deploy creates them) have nothing to back up.
    let backup = if !env.databases.values().any(|p| p.exists()) {
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

    let mut migrated = false;
    let mut flipped: Vec<std::sync::Arc<crate::proxy::Proxy>> = Vec::new();
    let outcome: Result<(), PipelineError> = async {
        if migrate && let Some(line) = &app.migrate {
            // The config's own expander: the same placeholders and errors as `config check`.
            let argv = homeport_config::migrate_argv(line, env, &release_dir)
                .map_err(PipelineError::Migrate)?;
            migrated = true;
            run.command_step("migrate", vec![argv], release_dir.clone(), vec![])
                .await?;
        }
        let (l, r) = (link.clone(), release_dir.clone());
        run.step(
            "switch",
            async move { Ok(homeport_deploy::switch(&l, &r)?) },
        )
        .await?;
        let (app_name, env_name) = (env.app.clone(), env.env.clone());
        run.step("restart", async move {
            restart_env(core, &app_name, &env_name).await
        })
        .await?;
        for p in core.proxies_of(&env.app, &env.env) {
            let (deadline, drain) = (env.health_deadline, env.drain);
            let name = p.service.clone();
            let step = format!("switch {name} (blue-green)");
            let note = run
                .step(&step, async { swap(core, &p, deadline, drain).await })
                .await?;
            run.say(&step, note).await;
            flipped.push(p);
        }
        let (t, deadline) = (target.clone(), env.health_deadline);
        run.step("health gate", async move {
            health_gate(core, &t, deadline).await
        })
        .await
    }
    .await;
    let Err(why) = outcome else { return Ok(()) };

    // Undo: diagnostics first, while the failed release's state is still there.
    run.record.diagnostics = Some(diagnostics(core, &target, &run.output));
    let undo_started = run.begin_step("roll back").await;
    let restore_db = migrated && env.restore_on_failure && backup.is_some();
    // Every undo step runs even if one fails; the errors are reported together.
    let undo: Result<(), String> = async {
        let mut errors: Vec<String> = Vec::new();
        if restore_db || previous.is_none() {
            // The database is swapped only with nothing running on it.
            let _ = core.supervisor().stop(&target).await;
        }
        let switched = match &previous {
            Some(prev) => homeport_deploy::switch(
                &link,
                &app_dir(core, &app.name).join("releases").join(prev),
            )
            .map_err(|e| e.to_string()),
            None => match std::fs::remove_file(&link) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            },
        };
        if let Err(e) = switched {
            errors.push(format!("switching back: {e}"));
        }
        if restore_db
            && let Some(id) = backup
            && let Err(e) = crate::backups::restore_in_place(core, env, id).await
        {
            errors.push(format!("restoring the database: {e}"));
        }
        if previous.is_some() {
            if let Err(e) = restart_env(core, &env.app, &env.env).await {
                errors.push(e.to_string());
            }
            for p in core.proxies_of(&env.app, &env.env) {
                let back = if restore_db {
                    // Everything was stopped: the active instance starts on the previous release.
                    let t = Target::Service(p.active());
                    core.supervisor()
                        .start(&t, Duration::from_secs(60))
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                } else if flipped.iter().any(|f| std::sync::Arc::ptr_eq(f, &p)) {
                    // An instance made active by this deploy runs the failed release: swap back.
                    swap(core, &p, env.health_deadline, env.drain)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                } else {
                    Ok(())
                };
                if let Err(e) = back {
                    errors.push(e);
                }
            }
            if let Err(e) = health_gate(core, &target, env.health_deadline).await {
                errors.push(e.to_string());
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
    .await;
    let what = match (&previous, restore_db) {
        (Some(p), true) => {
            format!("switched back to {p} and restored the database from before the deploy")
        }
        (Some(p), false) => format!("switched back to {p}"),
        (None, _) => "there was no earlier release; the environment is stopped".into(),
    };
    run.end_step("roll back", undo_started, undo.as_ref().err().cloned())
        .await;
    let why = Box::new(why);
    match undo {
        Ok(()) => Err(PipelineError::RolledBack { why, what }),
        Err(undo) => Err(PipelineError::RollbackFailed { why, undo }),
    }
}

/// Waits until every service of `target` is ready; fails early when one goes down. Of a
/// blue-green service only the active instance counts; the other is idle on purpose.
async fn health_gate(
    core: &Core,
    target: &Target,
    deadline: Duration,
) -> Result<(), PipelineError> {
    let active: Vec<homeport_types::ServiceKey> =
        core.all_proxies().iter().map(|p| p.active()).collect();
    let keys: Vec<homeport_types::ServiceKey> = core
        .config()
        .services
        .iter()
        .filter(|s| target.contains(&s.key) && (s.slot.is_none() || active.contains(&s.key)))
        .map(|s| s.key.clone())
        .collect();
    crate::wait_ready(core, &keys, deadline)
        .await
        .map_err(PipelineError::NotReady)
}

fn diagnostics(core: &Core, target: &Target, output: &[String]) -> String {
    let mut d = String::from("== step output ==\n");
    for l in output.iter().rev().take(500).rev() {
        d.push_str(l);
        d.push('\n');
    }
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

/// Deletes releases beyond `keep_releases`, never one an environment runs, was running before
/// its last deploy, or last passed a health gate.
fn prune(core: &Core, app: &AppSpec, this: &str, succeeded: bool) {
    let releases = app_dir(core, &app.name).join("releases");
    let all = homeport_deploy::list(&releases);
    let mut protected = BTreeSet::new();
    let config = core.config();
    for env in config.envs.iter().filter(|e| e.app == app.name) {
        protected.extend(homeport_deploy::current(&current_link(
            core, &app.name, &env.env,
        )));
        let store = core.store().lock().unwrap_or_else(PoisonError::into_inner);
        if let Ok(deploys) = store.deploys(&app.name, Some(&env.env), 200) {
            let last_good = deploys.iter().find(|d| d.result == DeployResult::Succeeded);
            protected.extend(last_good.and_then(|d| d.release.clone()));
            protected.extend(last_good.and_then(|d| d.previous.clone()));
        }
    }
    // The deploy that just finished is not in state.db as succeeded yet.
    if succeeded {
        protected.insert(this.to_owned());
    }
    for id in homeport_deploy::prune(&all, app.keep_releases as usize, &protected) {
        let _ = std::fs::remove_dir_all(releases.join(&id));
        tracing::info!(app = %app.name, release = %id, "pruned release");
    }
}

pub(crate) fn releases(core: &Core, app: &str) -> Result<Vec<ReleaseInfo>, DeployRefused> {
    let config = core.config();
    if !config.apps.iter().any(|a| a.name == app) {
        return Err(DeployRefused::NotFound(format!("no app {app}")));
    }
    let currents: Vec<(String, Option<String>)> = config
        .envs
        .iter()
        .filter(|e| e.app == app)
        .map(|e| {
            (
                e.env.clone(),
                homeport_deploy::current(&current_link(core, app, &e.env)),
            )
        })
        .collect();
    let mut out: Vec<ReleaseInfo> = homeport_deploy::list(&app_dir(core, app).join("releases"))
        .into_iter()
        .map(|m| ReleaseInfo {
            current_in: currents
                .iter()
                .filter(|(_, c)| c.as_deref() == Some(&m.id))
                .map(|(e, _)| e.clone())
                .collect(),
            version: m.version(),
            id: m.id,
            commit: m.commit,
            branch: m.branch,
            dirty: m.dirty,
            time: m.time,
        })
        .collect();
    out.reverse();
    Ok(out)
}

pub(crate) fn apps(core: &Core) -> Vec<homeport_types::AppInfo> {
    let config = core.config();
    config
        .apps
        .iter()
        .map(|a| homeport_types::AppInfo {
            name: a.name.clone(),
            deployable: a.source.is_some(),
            envs: config
                .envs
                .iter()
                .filter(|e| e.app == a.name)
                .map(|e| {
                    let current = homeport_deploy::current(&current_link(core, &a.name, &e.env));
                    let version = current.as_ref().and_then(|r| {
                        homeport_deploy::read_manifest(
                            &app_dir(core, &a.name).join("releases").join(r),
                        )
                        .map(|m| m.version())
                    });
                    homeport_types::EnvRelease {
                        env: e.env.clone(),
                        current,
                        version,
                        auto_update: None,
                    }
                })
                .collect(),
        })
        .collect()
}

/// Restarts the environment's services, except the instances of blue-green services (which
/// [`swap`] handles without downtime).
async fn restart_env(core: &Core, app: &str, env: &str) -> Result<(), PipelineError> {
    let config = core.config();
    let keys: Vec<homeport_types::ServiceKey> = config
        .services
        .iter()
        .filter(|s| s.key.app == app && s.key.env == env && s.slot.is_none())
        .map(|s| s.key.clone())
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let outcomes = core
        .supervisor()
        .restart_keys(&keys, Duration::from_secs(60))
        .await;
    match outcomes.iter().find(|o| o.error.is_some()) {
        Some(o) => Err(PipelineError::NotReady(format!(
            "{}: {}",
            o.key,
            o.error.clone().unwrap_or_default()
        ))),
        None => Ok(()),
    }
}

/// Starts the inactive instance (it runs what `current` names now), waits until it is ready,
/// makes it active, drains the old one (up to `drain`) and stops it. If the new instance does not
/// come up, it is stopped and the old one keeps serving: no request is refused either way. Says
/// how the old instance drained.
async fn swap(
    core: &Core,
    p: &crate::proxy::Proxy,
    deadline: Duration,
    drain: Duration,
) -> Result<String, PipelineError> {
    let next = p.inactive();
    let t = Target::Service(next.clone());
    let _ = core.supervisor().stop(&t).await;
    let started = core
        .supervisor()
        .start(&t, Duration::from_secs(60))
        .await
        .map_err(|e| PipelineError::NotReady(e.to_string()))?;
    if let Some(o) = started.iter().find(|o| o.error.is_some()) {
        return Err(PipelineError::NotReady(format!(
            "{}: {}",
            o.key,
            o.error.clone().unwrap_or_default()
        )));
    }
    if let Err(e) = crate::wait_ready(core, std::slice::from_ref(&next), deadline).await {
        let _ = core.supervisor().stop(&t).await;
        return Err(PipelineError::NotReady(e));
    }
    let old = p.flip();
    let began = std::time::Instant::now();
    let route = core
        .router()
        .filter(|_| crate::routing::is_http_proxy(&core.config(), p))
        .and_then(|r| r.route(&homeport_router::RouteKey::new(&p.app, &p.env)));
    let note = match route {
        // Every request from now on, kept-alive connections included, goes to the new instance.
        Some(route) => {
            let new = std::net::SocketAddr::from(([127, 0, 0, 1], p.port_of(&next)));
            match route.flip(Some(new)) {
                Some(d) => {
                    let outcome = d.wait(drain).await;
                    if outcome.drained {
                        format!("{old} drained in {} ms", began.elapsed().as_millis())
                    } else {
                        format!(
                            "{old} still had {} request(s) at the {} s drain deadline; {} WebSocket(s) closed",
                            outcome.left,
                            drain.as_secs(),
                            outcome.tunnels_closed
                        )
                    }
                }
                None => format!("{old} had no requests"),
            }
        }
        None => {
            p.drain(&old, drain).await;
            format!(
                "{old}'s connections ended or reached the {} s drain deadline",
                drain.as_secs()
            )
        }
    };
    let _ = core.supervisor().stop(&Target::Service(old)).await;
    Ok(note)
}
