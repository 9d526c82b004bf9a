//! A deploy of an environment that runs on another host (`host = "NAME"` in this config): this
//! agent prepares it, the host's agent runs it.
//!
//! ```text
//! check the host ─▶ (push the commit) ─▶ its config ─▶ preflight there ─▶ build here ─▶ ship
//!      (version)      (--build-on-host)   merge-config   disk, tools        test, build,   rsync over
//!                                         (restart if     on its agent's    stage          the SSH
//!                                          it changed)    PATH                             connection
//!                                                                       ─▶ deploy there: receive (checksums) → back up →
//!                                                                          migrate → switch → health gate → roll back
//! ```
//! Everything from "deploy there" on is the host agent's own pipeline, so it finishes (or rolls
//! back) whatever happens to the SSH connection. When the connection drops, this agent says so
//! and re-attaches once the host is back: it finds the deploy by its release, follows its step
//! events on the host's event stream, and ends with the record the host kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use homeport_config::HostFragment;
use homeport_deploy::git;
use homeport_remote::ssh::{line, quote};
use homeport_types::{
    DeployEvent, DeployKind, DeployRecord, DeployRequest, DeployResult, EventKind, StepRecord,
    StepStatus,
};
use tokio::sync::mpsc;

use crate::deploy::{FAILED_STEP_TAIL, now};
use crate::hosts::HostConn;
use crate::{Core, DeployRefused};

/// How long a dropped connection may take to come back before the deploy is left to the host
/// (it goes on there either way).
const REATTACH_FOR: Duration = Duration::from_secs(15 * 60);

/// Room to leave on the host beyond the release itself.
const DISK_MARGIN: u64 = 64 << 20;

/// Checks the request, takes the app here (one deploy of an app at a time from this
/// computer), and runs the rest in the background.
pub(crate) fn start(
    core: &Arc<Core>,
    req: DeployRequest,
    host: String,
) -> Result<mpsc::Receiver<DeployEvent>, DeployRefused> {
    let config = core.config();
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
    let claim = crate::deploy::claim_app(
        core,
        &req.app,
        format!("{} to {} on {host}", req.kind.as_str(), req.env),
    )?;
    let (tx, rx) = mpsc::channel(256);
    let core = Arc::clone(core);
    tokio::spawn(async move {
        let _app = claim;
        let mut run = Relay {
            tx,
            steps: Vec::new(),
        };
        let started = now();
        let clock = Instant::now();
        let result = pipeline(&core, &mut run, &req, &app, &host).await;
        let record = match result {
            Ok(r) => r,
            Err(error) => DeployRecord {
                id: 0,
                app: req.app.clone(),
                env: req.env.clone(),
                kind: req.kind,
                release: None,
                previous: None,
                commit: None,
                started,
                finished: Some(now()),
                result: DeployResult::Failed,
                error: Some(error),
                steps: run.steps.clone(),
                diagnostics: None,
                ms: Some(clock.elapsed().as_millis() as u64),
                discarded: Vec::new(),
            },
        };
        let _ = run
            .tx
            .send(DeployEvent::Done {
                record: Box::new(record),
            })
            .await;
    });
    Ok(rx)
}

/// Streams this agent's part of the deploy to the caller.
struct Relay {
    tx: mpsc::Sender<DeployEvent>,
    steps: Vec<StepRecord>,
}

impl Relay {
    async fn send(&self, e: DeployEvent) {
        let _ = self.tx.send(e).await;
    }

    async fn say(&self, step: &str, line: impl Into<String>) {
        self.send(DeployEvent::Output {
            step: step.into(),
            line: line.into(),
        })
        .await;
    }

    async fn step<T, F>(&mut self, name: &str, work: F) -> Result<T, String>
    where
        F: std::future::Future<Output = Result<T, String>>,
    {
        self.send(DeployEvent::Step {
            name: name.into(),
            status: StepStatus::Started,
            ms: None,
            detail: None,
        })
        .await;
        let t = Instant::now();
        let r = work.await;
        let ms = t.elapsed().as_millis() as u64;
        let detail = r.as_ref().err().cloned();
        self.steps.push(StepRecord {
            name: name.into(),
            ok: r.is_ok(),
            ms,
            detail: detail.clone(),
            output: Vec::new(),
        });
        self.send(DeployEvent::Step {
            name: name.into(),
            status: if r.is_ok() {
                StepStatus::Ok
            } else {
                StepStatus::Failed
            },
            ms: Some(ms),
            detail,
        })
        .await;
        r
    }

    /// Runs commands here, streaming each output line under `step`; returns the last lines too,
    /// kept with the step when it fails.
    async fn commands(
        &mut self,
        step: &str,
        steps: Vec<Vec<String>>,
        dir: PathBuf,
        env: Vec<(String, String)>,
    ) -> (Result<(), String>, Vec<String>) {
        let (ltx, mut lrx) = mpsc::channel::<String>(1024);
        let worker = tokio::task::spawn_blocking(move || {
            for argv in &steps {
                let _ = ltx.blocking_send(format!("$ {}", argv.join(" ")));
                homeport_deploy::run_step(argv, &dir, &env, |l| {
                    let _ = ltx.blocking_send(l.to_owned());
                })
                .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        });
        let tx = self.tx.clone();
        let name = step.to_owned();
        let lines = async move {
            let mut tail = std::collections::VecDeque::new();
            while let Some(line) = lrx.recv().await {
                if tail.len() == FAILED_STEP_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
                let _ = tx
                    .send(DeployEvent::Output {
                        step: name.clone(),
                        line,
                    })
                    .await;
            }
            tail
        };
        let (r, tail) = tokio::join!(worker, lines);
        (r.map_err(|e| e.to_string()).and_then(|r| r), tail.into())
    }
}

/// The host, connected, or why not.
fn connected(core: &Core, host: &str) -> Result<HostConn, String> {
    core.host_conn(host)
        .map_err(|e| format!("{e}; nothing was deployed"))
}

async fn pipeline(
    core: &Arc<Core>,
    run: &mut Relay,
    req: &DeployRequest,
    app: &homeport_config::AppSpec,
    host: &str,
) -> Result<DeployRecord, String> {
    let conn = run
        .step(&format!("check {host}"), async {
            let conn = connected(core, host)?;
            let ours = env!("CARGO_PKG_VERSION");
            if conn.hello.version != ours {
                return Err(format!(
                    "{host} runs homeport {} and this computer {ours}; upgrade it first: \
                     homeport host add {host} {}",
                    conn.hello.version, conn.record.destination
                ));
            }
            Ok(conn)
        })
        .await?;
    run.say(
        &format!("check {host}"),
        format!(
            "{host}: homeport {} on {}/{}, data in {}",
            conn.hello.version, conn.hello.os, conn.hello.arch, conn.hello.data_dir
        ),
    )
    .await;

    // Rollbacks and promotes between the host's own environments are the host's business.
    let promote_from_here = req.kind == DeployKind::Promote
        && req.from_env.as_deref().is_some_and(|f| {
            core.config()
                .envs
                .iter()
                .any(|e| e.app == req.app && e.env == f)
        });
    if req.kind == DeployKind::Rollback || (req.kind == DeployKind::Promote && !promote_from_here) {
        let mut there = req.clone();
        there.build_on_host = false;
        return deploy_there(core, run, host, conn, there, None).await;
    }

    let same_platform =
        conn.hello.os == std::env::consts::OS && conn.hello.arch == std::env::consts::ARCH;
    let build_there = (req.build_on_host || !same_platform) && !promote_from_here;
    if build_there && !same_platform {
        run.say(
            &format!("check {host}"),
            format!(
                "{host} is {}/{} and this computer {}/{}: the release is built there",
                conn.hello.os,
                conn.hello.arch,
                std::env::consts::OS,
                std::env::consts::ARCH
            ),
        )
        .await;
    }

    let source = app.source.clone();
    if req.kind == DeployKind::Update
        && let Some(s) = source.clone()
    {
        run.step("update source", async move {
            tokio::task::spawn_blocking(move || git::fast_forward(&s))
                .await
                .map_err(|e| e.to_string())?
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await?;
    }

    let remote_source = format!("{}/apps/{}/source", conn.hello.data_dir, app.name);
    if build_there {
        let s = source.clone().ok_or("no source")?;
        let c = conn.clone();
        let (rs, r) = (remote_source.clone(), req.git_ref.clone());
        run.step(&format!("push source to {host}"), async move {
            push_source(&c, &s, &rs, r).await
        })
        .await?;
    }

    // The host's config: the environments this config puts there, as written here.
    let how = if build_there {
        HostFragment::BuiltThere {
            source: &remote_source,
        }
    } else {
        HostFragment::Shipped
    };
    let text = std::fs::read_to_string(&core.config().file)
        .map_err(|e| format!("cannot read {}: {e}", core.config().file.display()))?;
    let fragment = homeport_config::host_fragment(&text, host, &how)?
        .ok_or_else(|| format!("the config puts no environment on {host}"))?;
    let config_step = format!("config on {host}");
    let changed = run
        .step(&config_step, push_config(&conn, &fragment))
        .await?;
    let conn = if changed {
        run.say(
            &config_step,
            format!(
                "{host}'s config changed: its agent restarts to read it (its services keep running)"
            ),
        )
        .await;
        run.step(
            &format!("restart the agent on {host}"),
            restart_agent(core, host, &conn),
        )
        .await?
    } else {
        run.say(&config_step, "unchanged").await;
        conn
    };

    let pre = run
        .step(&format!("preflight on {host}"), async {
            let p = conn
                .client
                .preflight(&req.app, &req.env)
                .await
                .map_err(|e| e.to_string())?;
            if !p.missing.is_empty() {
                let list: Vec<String> = p
                    .missing
                    .iter()
                    .map(|m| format!("`{}` (for {})", m.program, m.needed_by))
                    .collect();
                return Err(format!(
                    "on {host}, the agent's PATH ({}) has no {}; install them there, or enrol it \
                     again from a login whose PATH has them (homeport host add {host} {})",
                    p.path,
                    list.join(", "),
                    conn.record.destination
                ));
            }
            Ok(p)
        })
        .await?;

    if build_there {
        let there = DeployRequest {
            app: req.app.clone(),
            env: req.env.clone(),
            kind: DeployKind::Deploy,
            from_env: None,
            release: None,
            git_ref: None,
            build_on_host: false,
        };
        return deploy_there(core, run, host, conn, there, None).await;
    }

    // Built here (or the release a local environment runs, for a promote), then shipped.
    let (id, dir) = if promote_from_here {
        let from = req.from_env.clone().unwrap_or_default();
        let link = core
            .config()
            .agent
            .data_dir
            .join("apps")
            .join(&app.name)
            .join(&from)
            .join("current");
        let id = homeport_deploy::current(&link)
            .ok_or_else(|| format!("{}/{from} runs no release to promote", app.name))?;
        let dir = crate::deploy::app_dir(core, &app.name)
            .join("releases")
            .join(&id);
        (id, dir)
    } else {
        build_here(core, run, app, &req.env, req.git_ref.clone()).await?
    };
    let size = dir_size(&dir);
    if let Some(free) = pre.free_bytes
        && free < size + DISK_MARGIN
    {
        return Err(format!(
            "{host} has {} free in {} and the release needs {} (and room to spare); free some \
             space there (old backups, `homeport releases {}`)",
            human(free),
            conn.hello.data_dir,
            human(size),
            app.name
        ));
    }
    let ship_step = format!("ship to {host}");
    let c = conn.clone();
    let (app_name, rid, rdir) = (app.name.clone(), id.clone(), dir.clone());
    let took = run
        .step(
            &ship_step,
            async move { ship(&c, &app_name, &rid, &rdir).await },
        )
        .await?;
    run.say(
        &ship_step,
        format!(
            "{} in {:.1} s ({}/s) with rsync over the SSH connection",
            human(size),
            took.as_secs_f64(),
            human((size as f64 / took.as_secs_f64().max(0.001)) as u64)
        ),
    )
    .await;
    let there = DeployRequest {
        app: req.app.clone(),
        env: req.env.clone(),
        kind: DeployKind::Deploy,
        from_env: None,
        release: Some(id.clone()),
        git_ref: None,
        build_on_host: false,
    };
    deploy_there(core, run, host, conn, there, Some(id)).await
}

fn human(b: u64) -> String {
    let mb = b as f64 / (1024.0 * 1024.0);
    if mb >= 1.0 {
        format!("{mb:.1} MiB")
    } else {
        format!("{:.0} KiB", b as f64 / 1024.0)
    }
}

fn dir_size(p: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if meta.is_dir() {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| dir_size(&e.path()))
            .sum()
    } else {
        meta.len()
    }
}

/// Test, build and stage here, as a local deploy does; the release lands in this agent's
/// `apps/APP/releases/` (and `homeport releases APP` lists it).
async fn build_here(
    core: &Core,
    run: &mut Relay,
    app: &homeport_config::AppSpec,
    env: &str,
    git_ref: Option<String>,
) -> Result<(String, PathBuf), String> {
    let source = app.source.clone().ok_or("no source")?;
    let (s, r) = (source.clone(), git_ref.clone());
    let info = run
        .step("resolve source", async move { resolve(s, r).await })
        .await?;
    // A ref names a commit: always built clean. Otherwise `allow_dirty` builds the working tree.
    let working_tree = app.allow_dirty && git_ref.is_none();
    let dirty = working_tree && info.dirty;
    let id = homeport_deploy::release_id(&info.short, dirty);
    let app_dir = crate::deploy::app_dir(core, &app.name);
    let releases = app_dir.join("releases");
    let build_dir = if working_tree {
        source.clone()
    } else {
        app_dir.join("build").join(&id)
    };
    if !working_tree {
        let (s, c, d) = (source.clone(), info.commit.clone(), build_dir.clone());
        run.step("checkout", async move {
            tokio::task::spawn_blocking(move || {
                if let Some(parent) = d.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                git::worktree(&s, &c, &d).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())?
        })
        .await?;
    }
    let step_env = vec![
        ("HOMEPORT_APP".to_owned(), app.name.clone()),
        ("HOMEPORT_ENV".to_owned(), env.to_owned()),
    ];
    let built = async {
        for (what, steps) in [("test", &app.test), ("build", &app.build)] {
            if steps.is_empty() {
                continue;
            }
            let (steps, dir, e) = (steps.clone(), build_dir.clone(), step_env.clone());
            let started = Instant::now();
            run.send(DeployEvent::Step {
                name: what.into(),
                status: StepStatus::Started,
                ms: None,
                detail: None,
            })
            .await;
            let (r, tail) = run.commands(what, steps, dir, e).await;
            let ms = started.elapsed().as_millis() as u64;
            run.steps.push(StepRecord {
                name: what.into(),
                ok: r.is_ok(),
                ms,
                detail: r.as_ref().err().cloned(),
                output: if r.is_err() { tail } else { Vec::new() },
            });
            run.send(DeployEvent::Step {
                name: what.into(),
                status: if r.is_ok() {
                    StepStatus::Ok
                } else {
                    StepStatus::Failed
                },
                ms: Some(ms),
                detail: r.as_ref().err().cloned(),
            })
            .await;
            r?;
        }
        let mut manifest = crate::deploy::new_manifest(&id, app, &info, dirty);
        // The app's `install` runs on the host, in the release at its path there.
        let objects = homeport_deploy::Objects::new(&app_dir.join("objects"));
        let (b, arts, rel) = (build_dir.clone(), app.artifacts.clone(), releases.clone());
        run.step("stage", async move {
            tokio::task::spawn_blocking(move || {
                let dir = homeport_deploy::stage(&b, &arts, &rel, &objects, &mut manifest)?;
                let done = homeport_deploy::complete(&dir, &objects, &manifest);
                if done.is_err() {
                    homeport_deploy::discard(&dir);
                }
                done.map(drop)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
        })
        .await
    }
    .await;
    if !working_tree {
        let (s, d) = (source.clone(), build_dir.clone());
        let _ = tokio::task::spawn_blocking(move || git::remove_worktree(&s, &d)).await;
    }
    built?;
    Ok((id.clone(), releases.join(&id)))
}

/// `homeport remote merge-config` there: whether the file changed.
async fn push_config(conn: &HostConn, fragment: &str) -> Result<bool, String> {
    // With the PATH the agent there runs with: programs are looked up as it will.
    let path = format!("PATH={}", conn.record.path);
    let cmd = line(&[
        "env",
        &path,
        &conn.record.remote_bin,
        "remote",
        "merge-config",
    ])
    .map_err(|e| e.to_string())?;
    match conn.ssh.run(&cmd, Some(fragment.as_bytes())).await {
        Ok(out) => Ok(out.lines().any(|l| l.trim() == "changed")),
        Err(homeport_remote::SshError::Remote { detail, .. }) => Err(format!(
            "{}'s agent refused this config's environments for it: {detail}",
            conn.record.name
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// `homeport agent restart` there (services keep running), then waits until this agent is
/// connected to the new one.
async fn restart_agent(core: &Core, host: &str, conn: &HostConn) -> Result<HostConn, String> {
    let before = core.host_agent_pid(host);
    let path = format!("PATH={}", conn.record.path);
    let cmd = line(&["env", &path, &conn.record.remote_bin, "agent", "restart"])
        .map_err(|e| e.to_string())?;
    conn.ssh.run(&cmd, None).await.map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(c) = core.host_conn(host)
            && core.host_agent_pid(host) != before
        {
            return Ok(c);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the agent on {host} did not come back within 90 s of its restart"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The commit the local checkout is at, pushed into a checkout there that the host's agent
/// builds from.
async fn push_source(
    conn: &HostConn,
    local: &Path,
    remote: &str,
    git_ref: Option<String>,
) -> Result<(), String> {
    let info = resolve(local.to_path_buf(), git_ref).await?;
    let init = format!(
        "sh -c 'umask 077; test -d \"$1/.git\" || git init -q \"$1\"' sh {}",
        quote(remote).map_err(|e| e.to_string())?
    );
    conn.ssh.run(&init, None).await.map_err(|e| e.to_string())?;
    let dest = conn.ssh.dest.clone();
    let host = if dest.host.contains(':') {
        format!("[{}]", dest.host)
    } else {
        dest.host.clone()
    };
    let url = format!(
        "ssh://{}{host}{remote}",
        dest.user
            .as_ref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default()
    );
    let rsh = conn.ssh.rsh().map_err(|e| e.to_string())?;
    let mut git_cmd = std::process::Command::new("git");
    homeport_fs::inherit::restore(&mut git_cmd);
    let out = tokio::process::Command::from(git_cmd)
        .arg("-C")
        .arg(local)
        .args(["push", "--quiet", "--force", &url])
        .arg(format!("{}:refs/heads/homeport-deploy", info.commit))
        .env("GIT_SSH_COMMAND", rsh)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git push to {} failed: {}",
            conn.record.name,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let checkout = format!(
        "sh -c 'git -C \"$1\" checkout -q --detach -f \"$2\"' sh {} {}",
        quote(remote).map_err(|e| e.to_string())?,
        quote(&info.commit).map_err(|e| e.to_string())?
    );
    conn.ssh
        .run(&checkout, None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The commit to deploy: `git_ref`'s, or what the source has checked out.
async fn resolve(source: PathBuf, git_ref: Option<String>) -> Result<git::SourceInfo, String> {
    tokio::task::spawn_blocking(move || match git_ref {
        Some(r) => git::resolve_ref(&source, &r),
        None => git::resolve(&source),
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

/// Copies the release into `apps/APP/incoming/ID` there with rsync over the SSH connection
/// (from the files of the release running there, when one does: only what changed crosses).
async fn ship(conn: &HostConn, app: &str, id: &str, dir: &Path) -> Result<Duration, String> {
    let started = Instant::now();
    let incoming = format!("{}/apps/{app}/incoming", conn.hello.data_dir);
    let releases = format!("{}/apps/{app}/releases", conn.hello.data_dir);
    let prep = format!(
        "sh -c 'umask 077; command -v rsync >/dev/null || {{ echo \"rsync is not installed\" >&2; exit 3; }}; \
         mkdir -p \"$1\" && rm -rf \"$1/$2\" && ls -1 \"$3\" 2>/dev/null | tail -n 1; true' sh {} {} {}",
        quote(&incoming).map_err(|e| e.to_string())?,
        quote(id).map_err(|e| e.to_string())?,
        quote(&releases).map_err(|e| e.to_string())?
    );
    let newest = match conn.ssh.run(&prep, None).await {
        Ok(out) => out
            .lines()
            .last()
            .map(str::trim)
            .unwrap_or_default()
            .to_owned(),
        Err(homeport_remote::SshError::Remote { detail, .. }) if detail.contains("rsync") => {
            return Err(format!(
                "{} has no rsync: install it there (apt install rsync), Homeport ships releases with it",
                conn.record.name
            ));
        }
        Err(e) => return Err(e.to_string()),
    };
    let rsh = conn.ssh.rsh().map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new("rsync");
    homeport_fs::inherit::restore(&mut cmd);
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.args(["--archive", "--delete", "--compress", "-e", &rsh]);
    if !newest.is_empty() && !newest.ends_with(".partial") {
        cmd.arg(format!("--copy-dest={releases}/{newest}"));
    }
    cmd.arg(format!("{}/", dir.display()))
        .arg(format!("{}:{incoming}/{id}/", conn.ssh.dest.ssh_target()))
        .stdin(std::process::Stdio::null());
    let out = cmd.output().await.map_err(|e| {
        format!("cannot run rsync here ({e}); install it (apt install rsync), Homeport ships releases with it")
    })?;
    if !out.status.success() {
        return Err(format!(
            "rsync to {} failed: {}",
            conn.record.name,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(started.elapsed())
}

/// Starts the deploy on the host's agent and relays its steps until it ends; re-attaches when
/// the connection drops meanwhile.
async fn deploy_there(
    core: &Core,
    run: &mut Relay,
    host: &str,
    conn: HostConn,
    req: DeployRequest,
    release: Option<String>,
) -> Result<DeployRecord, String> {
    let there = format!("on {host}");
    // The newest deploy of the app there before this one: after a drop, this one is the next.
    let before = conn
        .client
        .deploys(Some(&req.app))
        .await
        .ok()
        .and_then(|all| all.iter().map(|r| r.id).max())
        .unwrap_or(0);
    let mut events = Box::pin(
        conn.client
            .deploy(&req)
            .await
            .map_err(|e| format!("{host}'s agent did not start the deploy: {e}"))?,
    );
    let broke = loop {
        match events.next().await {
            Some(Ok(DeployEvent::Done { record })) => return Ok(*record),
            Some(Ok(DeployEvent::Step {
                name,
                status,
                ms,
                detail,
            })) => {
                run.send(DeployEvent::Step {
                    name: format!("{name} {there}"),
                    status,
                    ms,
                    detail,
                })
                .await;
            }
            Some(Ok(DeployEvent::Output { step, line })) => {
                run.say(&format!("{step} {there}"), line).await;
            }
            Some(Err(e)) => break e.to_string(),
            None => break "the stream ended before the deploy did".to_owned(),
        }
    };
    drop(events);
    let note = format!(
        "the connection to {host} broke ({broke}); the deploy goes on there by itself — re-attaching"
    );
    run.say(&format!("deploy {there}"), note).await;
    core.host_failed(host);
    reattach(core, run, host, &req, release.as_deref(), before).await
}

/// Finds the deploy on the host once it is reachable again and follows it to its end.
async fn reattach(
    core: &Core,
    run: &mut Relay,
    host: &str,
    req: &DeployRequest,
    release: Option<&str>,
    before: i64,
) -> Result<DeployRecord, String> {
    let there = format!("on {host}");
    let deadline = Instant::now() + REATTACH_FOR;
    let mut told = false;
    loop {
        if Instant::now() > deadline {
            return Err(format!(
                "{host} did not come back within {} min; the deploy went on there by itself: see `homeport --host {host} status` and `homeport --host {host} releases {}`",
                REATTACH_FOR.as_secs() / 60,
                req.app
            ));
        }
        let Ok(conn) = core.host_conn(host) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        // Events first, then the record: an end between the two is not missed.
        let Ok(events) = conn.client.events().await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let Ok(records) = conn.client.deploys(Some(&req.app)).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let mine = records.into_iter().find(|r| {
            r.env == req.env
                && r.id > before
                && match release {
                    Some(id) => r.release.as_deref() == Some(id),
                    None => true,
                }
        });
        let Some(record) = mine else {
            return Err(format!(
                "the connection to {host} broke before its agent started the deploy; nothing was deployed there"
            ));
        };
        if record.result != DeployResult::Running {
            run.say(
                &format!("deploy {there}"),
                format!(
                    "re-attached: deploy #{} on {host} had ended ({})",
                    record.id,
                    record.result.as_str()
                ),
            )
            .await;
            return Ok(record);
        }
        if !told {
            run.say(
                &format!("deploy {there}"),
                format!(
                    "re-attached to deploy #{} on {host}, at step {}",
                    record.id,
                    record
                        .steps
                        .last()
                        .map_or("(none yet)", |s| s.name.as_str())
                ),
            )
            .await;
            told = true;
        }
        let mut events = Box::pin(events);
        while let Some(update) = events.next().await {
            let ev = match update {
                Ok(homeport_client::Update::Event(ev)) => ev,
                Ok(homeport_client::Update::Snapshot(_)) => continue,
                _ => break,
            };
            match ev.kind {
                EventKind::DeployStep {
                    id,
                    step,
                    status,
                    ms,
                    detail,
                    ..
                } if id == record.id => {
                    run.send(DeployEvent::Step {
                        name: format!("{step} {there}"),
                        status,
                        ms,
                        detail,
                    })
                    .await;
                }
                EventKind::DeployFinished { id, .. } if id == record.id => {
                    if let Ok(all) = conn.client.deploys(Some(&req.app)).await
                        && let Some(done) = all.into_iter().find(|r| r.id == record.id)
                    {
                        return Ok(done);
                    }
                    break;
                }
                _ => {}
            }
        }
        // The stream ended again: try once more.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
