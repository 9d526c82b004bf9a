//! Deploys: the pipeline and the state it owns.
//!
//! ```text
//!   Deploys ── owns ── the blue-green switches (one per blue-green service), the environments
//!      │               an earlier agent left mid-deploy
//!      └── run() ── pipeline.rs: source → test → build → stage → install → complete
//!                   activate.rs: back up → migrate → switch → restart / bring up the idle
//!                                instance → health gate (ready, then stable) → on failure roll
//!                                back: code, and data only where it must (see docs/deploys.md)
//!                   gate.rs:     the health gate and the blue-green switch
//!                   record.rs:   timing, streaming and recording every step
//! ```
//! Promote and rollback start at `activate`; update fast-forwards the source first. A deploy
//! holds its app's claim for its whole run and its environment's claim while it activates, so
//! no backup, restore or second deploy runs beside it.

mod activate;
mod gate;
mod pipeline;
mod record;

pub(crate) use pipeline::new_manifest;
pub(crate) use record::now;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use homeport_config::{AppSpec, EnvSpec};
use homeport_types::{DeployKind, DeployRecord, DeployRequest, ReleaseInfo, ServiceKey};
use tokio::sync::mpsc;

use crate::Core;
use crate::proxy::Proxy;

pub(crate) use gate::wait_ready;
pub(crate) use record::FAILED_STEP_TAIL;

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

/// The deploy pipeline's state: what must outlive one deploy.
#[derive(Default)]
pub(crate) struct Deploys {
    /// The switches of blue-green services: which instance is live, and its proxy or route.
    switches: Mutex<Vec<Arc<Proxy>>>,
    /// Environments whose deploy an earlier agent did not finish: restarted after autostart, so
    /// what runs is the release `current` names (re-adopted processes may run the other one).
    interrupted: Mutex<Vec<(String, String)>>,
}

impl Deploys {
    pub(crate) fn set_switches(&self, switches: Vec<Arc<Proxy>>) {
        *self.switches.lock().unwrap_or_else(PoisonError::into_inner) = switches;
    }

    pub(crate) fn switches(&self) -> Vec<Arc<Proxy>> {
        self.switches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn switches_of(&self, app: &str, env: &str) -> Vec<Arc<Proxy>> {
        self.switches()
            .into_iter()
            .filter(|p| p.app == app && p.env == env)
            .collect()
    }

    /// The live instance of every blue-green service.
    pub(crate) fn live_instances(&self) -> Vec<ServiceKey> {
        self.switches().iter().map(|p| p.active()).collect()
    }

    /// The blue-green switch an instance belongs to, and whether it is the live one.
    pub(crate) fn instance(&self, key: &ServiceKey) -> Option<(Arc<Proxy>, bool)> {
        self.switches()
            .into_iter()
            .find(|p| p.slots.contains(key))
            .map(|p| {
                let live = &p.active() == key;
                (p, live)
            })
    }

    pub(crate) fn set_interrupted(&self, envs: Vec<(String, String)>) {
        *self
            .interrupted
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = envs;
    }

    pub(crate) fn take_interrupted(&self) -> Vec<(String, String)> {
        std::mem::take(
            &mut *self
                .interrupted
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

pub(crate) fn app_dir(core: &Core, app: &str) -> PathBuf {
    core.config().agent.data_dir.join("apps").join(app)
}

pub(crate) fn current_link(core: &Core, app: &str, env: &str) -> PathBuf {
    app_dir(core, app).join(env).join("current")
}

/// Checks the request and takes the app's claim; the pipeline runs with [`run`].
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
    let shipped = req.kind == DeployKind::Deploy && req.release.is_some();
    if matches!(req.kind, DeployKind::Deploy | DeployKind::Update)
        && !shipped
        && app.source.is_none()
    {
        return Err(DeployRefused::Invalid(format!(
            "app {} has no `source` to build from",
            req.app
        )));
    }
    if req.git_ref.is_some() && (req.kind != DeployKind::Deploy || shipped) {
        return Err(DeployRefused::Invalid(
            "a git ref is only for `deploy` (update takes the upstream's head)".into(),
        ));
    }
    if let Some(r) = &req.git_ref
        && (r.is_empty() || r.starts_with('-') || r.chars().any(char::is_control))
    {
        return Err(DeployRefused::Invalid(format!(
            "{r:?} is not a branch, tag or commit"
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
    // Refused before it starts, so what cannot work is never a failed deploy in the history.
    if req.kind == DeployKind::Rollback
        && req.release.is_none()
        && pipeline::previous_release(core, &req.app, &req.env).is_none()
    {
        let runs = homeport_deploy::current(&current_link(core, &req.app, &req.env));
        return Err(DeployRefused::Invalid(match runs {
            Some(r) => format!(
                "{}/{} has no earlier release to roll back to: {r} is the only one it has run",
                req.app, req.env
            ),
            None => format!(
                "{}/{} runs no release yet: deploy it first (`homeport deploy {}`)",
                req.app, req.env, req.app
            ),
        }));
    }
    let claim = claim_app(
        core,
        &req.app,
        format!("{} to {}", req.kind.as_str(), req.env),
    )?;
    Ok((app, env, claim))
}

/// Takes `app` for one deploy, here or to another host; `what` tells whoever is refused
/// meanwhile what holds it.
pub(crate) fn claim_app(
    core: &Core,
    app: &str,
    what: String,
) -> Result<crate::claims::Claim, DeployRefused> {
    core.claims
        .try_claim(crate::claims::Scope::App(app.to_owned()), what)
        .map_err(|held| DeployRefused::Busy {
            app: app.to_owned(),
            what: held.what,
            since: held.since,
        })
}

/// Runs the pipeline for `req` (already checked by [`begin`]) and returns its record.
pub(crate) async fn run(
    core: &Core,
    req: DeployRequest,
    app: AppSpec,
    env: EnvSpec,
    tx: mpsc::Sender<homeport_types::DeployEvent>,
) -> DeployRecord {
    let link = current_link(core, &app.name, &env.env);
    let mut run = record::Run::new(core, &req, homeport_deploy::current(&link), tx);
    let result = pipeline::pipeline(&mut run, &req, &app, &env).await;
    run.finish(result).await
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
                        rollback_to: current
                            .as_ref()
                            .and_then(|_| pipeline::previous_release(core, &a.name, &e.env)),
                        current,
                        version,
                        auto_update: None,
                        host: None,
                    }
                })
                .chain(
                    config
                        .remote_envs
                        .iter()
                        .filter(|r| r.app == a.name)
                        .map(|r| homeport_types::EnvRelease {
                            env: r.env.clone(),
                            rollback_to: None,
                            current: None,
                            version: None,
                            auto_update: None,
                            host: Some(r.host.clone()),
                        }),
                )
                .collect(),
        })
        .collect()
}

/// Releases that passed a health gate in some environment.
pub(crate) fn good_releases(core: &Core, app: &str) -> BTreeSet<String> {
    core.store()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .succeeded_releases(app)
        .unwrap_or_default()
}
