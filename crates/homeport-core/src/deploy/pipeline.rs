//! From the source to a release: update → resolve → checkout → test → build → stage → install →
//! complete; then the release is activated ([`super::activate`]) and old releases pruned.

use std::collections::BTreeSet;
use std::path::Path;

use homeport_config::{AppSpec, EnvSpec};
use homeport_deploy::{Manifest, Objects, git};
use homeport_types::{DeployKind, DeployRequest, DeployResult};

use super::record::{Run, now};
use super::{PipelineError, app_dir, current_link, good_releases};
use crate::Core;

/// What test, build and install steps run with, besides the agent's own environment.
fn step_env(app: &AppSpec, env: &EnvSpec) -> Vec<(String, String)> {
    let mut vars = vec![
        ("HOMEPORT_APP".to_owned(), app.name.clone()),
        ("HOMEPORT_ENV".to_owned(), env.env.clone()),
    ];
    vars.extend(app.step_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars
}

pub(super) async fn pipeline(
    run: &mut Run<'_>,
    req: &DeployRequest,
    app: &AppSpec,
    env: &EnvSpec,
) -> Result<(), PipelineError> {
    let core = run.core;
    let releases = app_dir(core, &app.name).join("releases");
    homeport_deploy::sweep_partials(&releases, None);
    let release = match req.kind {
        // A release built on another computer and copied here (`homeport deploy` of an
        // environment with `host = …` there): taken in only whole and unchanged.
        DeployKind::Deploy if req.release.is_some() => {
            receive(run, app, req.release.clone().unwrap_or_default()).await?
        }
        DeployKind::Deploy | DeployKind::Update => build(run, req, app, env).await?,
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
    let result = super::activate::activate(run, app, env, &release, req.kind).await;
    // Failed deploys leave releases too; pruning keeps what matters either way.
    prune(core, app, &release, result.is_ok());
    result
}

/// The manifest of a release built from `info`, here or for another host: what it was built from
/// and by which steps; its artifacts are added as they are staged.
pub(crate) fn new_manifest(
    id: &str,
    app: &AppSpec,
    info: &git::SourceInfo,
    dirty: bool,
) -> Manifest {
    Manifest {
        id: id.to_owned(),
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
            .chain(app.install.iter().cloned())
            .collect(),
        artifacts: vec![],
    }
}

/// Builds a new release from the source; returns its id.
async fn build(
    run: &mut Run<'_>,
    req: &DeployRequest,
    app: &AppSpec,
    env: &EnvSpec,
) -> Result<String, PipelineError> {
    let core = run.core;
    let releases = app_dir(core, &app.name).join("releases");
    let source = app
        .source
        .clone()
        .ok_or_else(|| PipelineError::NoRelease(format!("app {} has no `source`", app.name)))?;
    if req.kind == DeployKind::Update {
        let s = source.clone();
        run.step("update source", async move {
            tokio::task::spawn_blocking(move || git::fast_forward(&s)).await??;
            Ok(())
        })
        .await?;
    }
    let (s, r) = (source.clone(), req.git_ref.clone());
    let info = run
        .step("resolve source", async move {
            Ok(tokio::task::spawn_blocking(move || match r {
                Some(r) => git::resolve_ref(&s, &r),
                None => git::resolve(&s),
            })
            .await??)
        })
        .await?;
    run.record.commit = Some(info.commit.clone());
    // A ref names a commit: always built clean. Otherwise `allow_dirty` builds the working tree.
    let working_tree = app.allow_dirty && req.git_ref.is_none();
    let dirty = working_tree && info.dirty;
    let id = homeport_deploy::release_id(&info.short, dirty);
    let build_dir = if working_tree {
        source.clone()
    } else {
        app_dir(core, &app.name).join("build").join(&id)
    };
    if !working_tree {
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
    let vars = step_env(app, env);
    let built = async {
        if !app.test.is_empty() {
            let (steps, dir, e) = (app.test.clone(), build_dir.clone(), vars.clone());
            run.command_step("test", steps, dir, e).await?;
        }
        if !app.build.is_empty() {
            let (steps, dir, e) = (app.build.clone(), build_dir.clone(), vars.clone());
            run.command_step("build", steps, dir, e).await?;
        }
        let mut manifest = new_manifest(&id, app, &info, dirty);
        let objects = objects_of(core, &app.name);
        let (b, arts, rel) = (build_dir.clone(), app.artifacts.clone(), releases.clone());
        let (dir, manifest) = run
            .step("stage", async move {
                Ok(tokio::task::spawn_blocking(move || {
                    let dir = homeport_deploy::stage(&b, &arts, &rel, &objects, &mut manifest)?;
                    Ok::<_, homeport_deploy::DeployError>((dir, manifest))
                })
                .await??)
            })
            .await?;
        let installed = install(run, app, &dir).await;
        if installed.is_err() {
            homeport_deploy::discard(&dir);
        }
        installed?;
        let objects = objects_of(core, &app.name);
        let d = dir.clone();
        let completed =
            tokio::task::spawn_blocking(move || homeport_deploy::complete(&d, &objects, &manifest))
                .await;
        match completed {
            Ok(Ok(saved)) if saved > 0 => {
                run.say(
                    "stage",
                    format!(
                        "{} shared with earlier releases (identical files are stored once)",
                        crate::human_size(saved)
                    ),
                )
                .await;
                Ok(())
            }
            Ok(Ok(_)) => Ok::<(), PipelineError>(()),
            Ok(Err(e)) => {
                homeport_deploy::discard(&dir);
                Err(e.into())
            }
            Err(e) => {
                homeport_deploy::discard(&dir);
                Err(e.into())
            }
        }
    }
    .await;
    if !working_tree {
        let (s, d) = (source.clone(), build_dir.clone());
        let _ = tokio::task::spawn_blocking(move || git::remove_worktree(&s, &d)).await;
    }
    built?;
    Ok(id)
}

/// Takes a shipped release from `apps/APP/incoming/ID` into `releases/ID` once it matches its
/// manifest, runs the app's `install` there (at the release's final path, as for a release built
/// here) and completes it; a release already here is checked the same way. Only a plain release
/// id is accepted: never a path from the request. Returns the id.
async fn receive(run: &mut Run<'_>, app: &AppSpec, id: String) -> Result<String, PipelineError> {
    let plain = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !id.starts_with('.')
        && !id.ends_with(".partial");
    if !plain {
        return Err(PipelineError::NoRelease(format!(
            "{id:?} is not a release id"
        )));
    }
    let dir = app_dir(run.core, &app.name);
    let i = id.clone();
    let (m, fresh) = run
        .step("receive", async move {
            tokio::task::spawn_blocking(move || {
                let incoming = dir.join("incoming").join(&i);
                let releases = dir.join("releases");
                let target = releases.join(&i);
                let io = |p: &Path| {
                    let p = p.to_path_buf();
                    move |e| homeport_deploy::DeployError::Io(p, e)
                };
                if incoming.exists() {
                    let m = homeport_deploy::verify(&incoming)?;
                    if target.exists() {
                        // The same release shipped again: the one here is kept (it may run).
                        let _ = std::fs::remove_dir_all(&incoming);
                    } else {
                        std::fs::create_dir_all(&releases).map_err(io(&releases))?;
                        std::fs::rename(&incoming, &target).map_err(io(&target))?;
                        // Not a release until it is complete, as one built here: a crash
                        // before that leaves a folder that is swept, not half a release.
                        let manifest = target.join(homeport_deploy::MANIFEST);
                        std::fs::remove_file(&manifest).map_err(io(&manifest))?;
                        homeport_fs::sync_dir(&releases).map_err(io(&releases))?;
                        return Ok::<_, PipelineError>((m, true));
                    }
                }
                if target.exists() {
                    return Ok((homeport_deploy::verify(&target)?, false));
                }
                Err(PipelineError::NoRelease(format!(
                    "release {i} was not shipped here ({} is missing)",
                    incoming.display()
                )))
            })
            .await?
        })
        .await?;
    run.record.commit = Some(m.commit.clone());
    run.say(
        "receive",
        format!(
            "release {} of commit {} ({}), checksums match its manifest",
            m.id,
            &m.commit[..m.commit.len().min(12)],
            m.branch
        ),
    )
    .await;
    if fresh {
        let target = app_dir(run.core, &app.name).join("releases").join(&id);
        let installed = install(run, app, &target).await;
        if installed.is_err() {
            homeport_deploy::discard(&target);
        }
        installed?;
        let objects = objects_of(run.core, &app.name);
        let d = target.clone();
        let completed =
            tokio::task::spawn_blocking(move || homeport_deploy::complete(&d, &objects, &m)).await;
        if !matches!(completed, Ok(Ok(_))) {
            homeport_deploy::discard(&target);
        }
        completed??;
    }
    Ok(id)
}

/// The app's `install` commands, run in the new release's own folder at its final path (a
/// virtualenv made there keeps working: its scripts name that path).
async fn install(run: &mut Run<'_>, app: &AppSpec, dir: &Path) -> Result<(), PipelineError> {
    if app.install.is_empty() {
        return Ok(());
    }
    let steps = app
        .install
        .iter()
        .map(|line| homeport_config::install_argv(line, &app.name, dir))
        .collect::<Result<Vec<_>, String>>()
        .map_err(PipelineError::NoRelease)?;
    let mut vars = vec![
        ("HOMEPORT_APP".to_owned(), app.name.clone()),
        ("HOMEPORT_RELEASE".to_owned(), dir.display().to_string()),
    ];
    vars.extend(app.step_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    run.command_step("install", steps, dir.to_path_buf(), vars)
        .await
}

pub(super) fn objects_of(core: &Core, app: &str) -> Objects {
    Objects::new(&app_dir(core, app).join("objects"))
}

/// The release that was live before the current one.
pub(super) fn previous_release(core: &Core, app: &str, env: &str) -> Option<String> {
    let store = core
        .store()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let current = homeport_deploy::current(&current_link(core, app, env));
    store
        .deploys(app, Some(env), 100)
        .ok()?
        .into_iter()
        .filter(|d| d.result == DeployResult::Succeeded && d.release == current)
        .find_map(|d| d.previous)
}

/// Deletes releases beyond `keep_releases` — those that never passed a health gate first —
/// never one an environment runs, was running before its last deploy, or last passed a health
/// gate; then the stored files no release uses any more.
fn prune(core: &Core, app: &AppSpec, this: &str, succeeded: bool) {
    let releases = app_dir(core, &app.name).join("releases");
    let all = homeport_deploy::list(&releases);
    let mut protected = BTreeSet::new();
    let config = core.config();
    for env in config.envs.iter().filter(|e| e.app == app.name) {
        protected.extend(homeport_deploy::current(&current_link(
            core, &app.name, &env.env,
        )));
        let store = core
            .store()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(deploys) = store.deploys(&app.name, Some(&env.env), 200) {
            let last_good = deploys.iter().find(|d| d.result == DeployResult::Succeeded);
            protected.extend(last_good.and_then(|d| d.release.clone()));
            protected.extend(last_good.and_then(|d| d.previous.clone()));
        }
    }
    let mut good = good_releases(core, &app.name);
    // The deploy that just finished is not in state.db as succeeded yet.
    if succeeded {
        protected.insert(this.to_owned());
        good.insert(this.to_owned());
    }
    for id in homeport_deploy::prune(&all, app.keep_releases as usize, &protected, &good) {
        let _ = std::fs::remove_dir_all(releases.join(&id));
        tracing::info!(app = %app.name, release = %id, "pruned release");
    }
    objects_of(core, &app.name).collect_garbage();
}
