//! Automatic updates: an environment with `auto_update = { every, window }` checks its app's
//! upstream every `every`, and when it has commits the environment does not run, deploys them
//! through the same pipeline as a deploy by hand (`DeployKind::Update`: fast-forward, test,
//! build, back up, migrate, switch, health gate, roll back). Only inside the window, never
//! while the app is being deployed or the environment backed up or restored, never from a
//! dirty or diverged checkout (said once, as an event, until it changes).
//!
//! After a failed update, its commit is not tried again until the upstream moves or someone
//! deploys the environment by hand; after [`PAUSE_AFTER`] failures in a row the environment's
//! updates pause until [`resume`]. The streak, the failed commit and the pause are kept in
//! state.db, so a restarted agent neither forgets them nor retries.
//!
//! Each update is an `auto_update_started` and an `auto_update_finished` event on the
//! environment, around the deploy's own events; clients tell the finished one (and not the
//! deploy's) as the notice.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use homeport_config::{AutoUpdate, EnvSpec};
use homeport_deploy::git;
use homeport_types::{
    AutoUpdateState, DeployEvent, DeployKind, DeployRecord, DeployRequest, DeployResult, EventKind,
    Subject,
};

use crate::Core;

/// Failed automatic updates in a row that pause an environment's updates.
pub const PAUSE_AFTER: u32 = 2;

/// How often the scheduler looks at what is due.
const TICK: Duration = Duration::from_secs(1);

/// What state.db keeps of one environment's automatic updates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Streak {
    pub failures: u32,
    pub paused: bool,
    /// The commit whose update failed, and that update's deploy id.
    pub failed_commit: Option<String>,
    pub failed_deploy: Option<i64>,
    /// Why the last check could not update, while it cannot.
    pub refused: Option<String>,
    /// What the last check found to do and is waiting for (the window, a new commit).
    pub waiting: Option<String>,
    pub last_check: Option<String>,
}

/// The scheduler's wake-up and the environments it is updating now.
#[derive(Default)]
pub(crate) struct Updates {
    wake: tokio::sync::Notify,
    running: Mutex<HashSet<(String, String)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AutoUpdateError {
    #[error("no environment {0}; expected APP/ENV")]
    NotFound(String),
    #[error(
        "{0} has no automatic updates; add `auto_update = {{ every = \"1h\" }}` to its environment in the config"
    )]
    NotConfigured(String),
    #[error("cannot use state.db: {0}")]
    Store(#[from] rusqlite::Error),
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn short(commit: &str) -> String {
    commit.chars().take(7).collect()
}

/// Seconds since midnight on the clock of `tz`.
fn local_secs_of_day(t: SystemTime, tz: &jiff::tz::TimeZone) -> u32 {
    let Ok(ts) = jiff::Timestamp::try_from(t) else {
        return 0;
    };
    let time = ts.to_zoned(tz.clone()).time();
    u32::from(time.hour().unsigned_abs()) * 3600
        + u32::from(time.minute().unsigned_abs()) * 60
        + u32::from(time.second().unsigned_abs())
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn env_spec(core: &Core, app: &str, env: &str) -> Result<EnvSpec, AutoUpdateError> {
    core.config()
        .envs
        .iter()
        .find(|e| e.app == app && e.env == env)
        .cloned()
        .ok_or_else(|| AutoUpdateError::NotFound(format!("{app}/{env}")))
}

/// Where the environment's automatic updates stand, for the API.
pub(crate) fn state(core: &Core, env: &EnvSpec) -> Option<AutoUpdateState> {
    let settings = env.auto_update.as_ref()?;
    let s = load(core, &env.app, &env.env);
    Some(AutoUpdateState {
        every: humantime::format_duration(settings.every).to_string(),
        window: settings.window.map(|w| {
            format!(
                "{w} {}",
                crate::time::zone_name(&jiff::tz::TimeZone::system())
            )
        }),
        paused: s.paused,
        failures: s.failures,
        failed_commit: s.failed_commit,
        refused: s.refused,
        waiting: s.waiting,
        last_check: s.last_check,
    })
}

fn load(core: &Core, app: &str, env: &str) -> Streak {
    let store = core.store().lock().unwrap_or_else(PoisonError::into_inner);
    match store.auto_update(app, env) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("state.db: cannot read the automatic updates of {app}/{env}: {e}");
            Streak::default()
        }
    }
}

fn save(core: &Core, app: &str, env: &str, s: &Streak) {
    let store = core.store().lock().unwrap_or_else(PoisonError::into_inner);
    if let Err(e) = store.save_auto_update(app, env, s) {
        tracing::error!("state.db: cannot save the automatic updates of {app}/{env}: {e}");
    }
}

/// Lifts a pause: the streak starts again from nothing and the upstream is checked at once.
/// The commit that failed last is still not retried until the upstream moves or someone deploys
/// by hand.
pub(crate) fn resume(
    core: &Core,
    app: &str,
    env: &str,
) -> Result<AutoUpdateState, AutoUpdateError> {
    let spec = env_spec(core, app, env)?;
    if spec.auto_update.is_none() {
        return Err(AutoUpdateError::NotConfigured(format!("{app}/{env}")));
    }
    let mut s = load(core, app, env);
    let was_paused = s.paused;
    s.paused = false;
    s.failures = 0;
    {
        let store = core.store().lock().unwrap_or_else(PoisonError::into_inner);
        store.save_auto_update(app, env, &s)?;
    }
    if was_paused {
        core.emit(Subject::env(app, env), EventKind::AutoUpdatesResumed);
    }
    core.updates.wake.notify_one();
    state(core, &spec).ok_or_else(|| AutoUpdateError::NotConfigured(format!("{app}/{env}")))
}

/// Checks each environment with automatic updates when its interval has passed, and starts
/// the updates that are due; ends when the agent stops.
pub(crate) async fn scheduler(core: Arc<Core>) {
    let mut stop = std::pin::pin!(core.shutdown_signal());
    // When each environment was last checked; the first check is right after the agent starts.
    let mut checked: HashMap<(String, String), Instant> = HashMap::new();
    loop {
        let config = core.config();
        for env in &config.envs {
            let Some(settings) = &env.auto_update else {
                continue;
            };
            let key = (env.app.clone(), env.env.clone());
            let due = checked
                .get(&key)
                .is_none_or(|t| t.elapsed() >= settings.every);
            if !due || busy(&core, &env.app, &env.env) {
                continue;
            }
            let Some(app) = config.apps.iter().find(|a| a.name == env.app) else {
                continue;
            };
            let Some(source) = app.source.clone() else {
                continue;
            };
            let mut s = load(&core, &env.app, &env.env);
            checked.insert(key, Instant::now());
            check(&core, env, settings, &source, &mut s).await;
        }
        let wake = core.updates.wake.notified();
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            () = wake => checked.clear(),
            () = &mut stop => return,
        }
    }
}

/// A deploy of the app, or a backup or restore of the environment, is running, or an update of
/// it is: the check waits for the next tick.
fn busy(core: &Core, app: &str, env: &str) -> bool {
    core.claims.held(&crate::claims::Scope::App(app.to_owned()))
        || core
            .claims
            .held(&crate::claims::Scope::Env(app.to_owned(), env.to_owned()))
        || core
            .updates
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&(app.to_owned(), env.to_owned()))
}

/// What one check of the upstream found.
struct Found {
    upstream: String,
    /// Commits the upstream has that the environment's release lacks.
    commits: u32,
    dirty: bool,
    behind: u32,
    ahead: u32,
}

fn look(source: &Path, running: Option<&str>) -> Result<Option<Found>, String> {
    let (behind, ahead) = git::fetch_behind(source).map_err(|e| e.to_string())?;
    let upstream = git::upstream_commit(source).map_err(|e| e.to_string())?;
    if running == Some(upstream.as_str()) {
        return Ok(None);
    }
    // A release built from a commit the clone no longer has counts as behind by what the
    // checkout is behind.
    let commits = match running {
        Some(c) => git::count_new(source, c, &upstream).unwrap_or(behind.max(1)),
        None => git::count_new(source, "", &upstream).unwrap_or(1),
    };
    if commits == 0 {
        return Ok(None);
    }
    let dirty = git::resolve(source).map_err(|e| e.to_string())?.dirty;
    Ok(Some(Found {
        upstream,
        commits,
        dirty,
        behind,
        ahead,
    }))
}

/// The commit the environment's current release was built from.
fn running_commit(core: &Core, app: &str, env: &str) -> Option<String> {
    let dir = core.config().agent.data_dir.join("apps").join(app);
    let release = homeport_deploy::current(&dir.join(env).join("current"))?;
    homeport_deploy::read_manifest(&dir.join("releases").join(release)).map(|m| m.commit)
}

async fn check(
    core: &Arc<Core>,
    env: &EnvSpec,
    settings: &AutoUpdate,
    source: &Path,
    s: &mut Streak,
) {
    let (app_name, env_name) = (env.app.clone(), env.env.clone());
    let subject = Subject::env(&app_name, &env_name);
    s.last_check = Some(now_rfc3339());
    let running = running_commit(core, &app_name, &env_name);
    let src: PathBuf = source.to_path_buf();
    let r = running.clone();
    let found = tokio::task::spawn_blocking(move || look(&src, r.as_deref()))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let found = match found {
        Ok(Some(f)) => f,
        Ok(None) => {
            s.refused = None;
            s.waiting = None;
            save(core, &app_name, &env_name, s);
            return;
        }
        Err(why) => {
            refuse(
                core,
                &subject,
                s,
                format!("cannot check the upstream: {why}"),
            );
            save(core, &app_name, &env_name, s);
            return;
        }
    };
    let target = short(&found.upstream);
    let what = format!(
        "{target} ({} new commit{})",
        found.commits,
        plural(found.commits)
    );
    let refusal = if found.dirty {
        Some(format!(
            "{} has uncommitted changes; commit or stash them, and {what} is deployed at the next check",
            source.display()
        ))
    } else if found.ahead > 0 && found.behind > 0 {
        Some(format!(
            "{} has diverged from its upstream ({} local, {} upstream commits); merge or rebase by hand",
            source.display(),
            found.ahead,
            found.behind
        ))
    } else if found.ahead > 0 {
        Some(format!(
            "{} has {} local commit{} its upstream lacks; automatic updates deploy only what the upstream has: push them, or deploy by hand",
            source.display(),
            found.ahead,
            plural(found.ahead)
        ))
    } else {
        None
    };
    if let Some(why) = refusal {
        s.waiting = None;
        refuse(core, &subject, s, why);
        save(core, &app_name, &env_name, s);
        return;
    }
    s.refused = None;
    // Paused: the upstream is still looked at, so the pause can say what waits for it.
    if s.paused {
        s.waiting = Some(format!("{what} waits until automatic updates are resumed"));
        save(core, &app_name, &env_name, s);
        return;
    }
    // A deploy by hand since the failed update lifts the block on its commit.
    if let Some(failed) = s.failed_deploy {
        let newer = core
            .store()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .deploys(&app_name, Some(&env_name), 1)
            .ok()
            .and_then(|d| d.first().map(|d| d.id))
            .is_some_and(|id| id > failed);
        if newer {
            s.failed_commit = None;
            s.failed_deploy = None;
        }
    }
    if s.failed_commit.as_deref() == Some(found.upstream.as_str()) {
        s.waiting = Some(format!(
            "the update to {target} failed; it is tried again when the upstream moves or after a deploy by hand"
        ));
        save(core, &app_name, &env_name, s);
        return;
    }
    let tz = jiff::tz::TimeZone::system();
    if let Some(w) = settings.window
        && !w.contains(local_secs_of_day(SystemTime::now(), &tz))
    {
        s.waiting = Some(format!(
            "{what} waits for the window {w} {}",
            crate::time::zone_name(&tz)
        ));
        save(core, &app_name, &env_name, s);
        return;
    }
    s.waiting = None;
    save(core, &app_name, &env_name, s);
    start(core, &app_name, &env_name, found, running).await;
}

/// Says why the environment cannot update, once per reason.
fn refuse(core: &Core, subject: &Subject, s: &mut Streak, why: String) {
    if s.refused.as_deref() != Some(why.as_str()) {
        tracing::warn!("automatic update of {subject}: {why}");
        core.emit(
            subject.clone(),
            EventKind::AutoUpdateRefused {
                reason: why.clone(),
            },
        );
    }
    s.refused = Some(why);
}

/// Starts the update's deploy and, in the background, follows it to its end.
async fn start(core: &Arc<Core>, app: &str, env: &str, found: Found, running: Option<String>) {
    let subject = Subject::env(app, env);
    let req = DeployRequest {
        app: app.to_owned(),
        env: env.to_owned(),
        kind: DeployKind::Update,
        from_env: None,
        release: None,
        git_ref: None,
        build_on_host: false,
    };
    let key = (app.to_owned(), env.to_owned());
    core.updates
        .running
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key.clone());
    core.emit(
        subject.clone(),
        EventKind::AutoUpdateStarted {
            commit: found.upstream.clone(),
            commits: found.commits,
        },
    );
    let rx = match core.deploy(req) {
        Ok(rx) => rx,
        Err(e) => {
            // A deploy by hand began in between: this check ends, the next one looks again.
            tracing::info!("automatic update of {subject} not started: {e}");
            core.emit(
                subject,
                EventKind::AutoUpdateFinished {
                    id: None,
                    result: DeployResult::Interrupted,
                    commit: found.upstream,
                    version: None,
                    commits: found.commits,
                    previous: running.as_deref().map(short),
                    step: None,
                    error: Some(e.to_string()),
                    paused: false,
                },
            );
            core.updates
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
            return;
        }
    };
    let core = Arc::clone(core);
    tokio::spawn(async move {
        let record = finish_of(rx).await;
        finished(&core, &key.0, &key.1, &found, running.as_deref(), record);
        core.updates
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
    });
}

async fn finish_of(mut rx: tokio::sync::mpsc::Receiver<DeployEvent>) -> Option<DeployRecord> {
    while let Some(ev) = rx.recv().await {
        if let DeployEvent::Done { record } = ev {
            return Some(*record);
        }
    }
    None
}

/// Keeps the streak and tells the outcome.
fn finished(
    core: &Core,
    app: &str,
    env: &str,
    found: &Found,
    running: Option<&str>,
    record: Option<DeployRecord>,
) {
    let mut s = load(core, app, env);
    let commit = record
        .as_ref()
        .and_then(|r| r.commit.clone())
        .unwrap_or_else(|| found.upstream.clone());
    let result = record
        .as_ref()
        .map_or(DeployResult::Interrupted, |r| r.result);
    let version = record
        .as_ref()
        .and_then(|r| r.release.as_ref())
        .and_then(|rel| {
            let dir = core.config().agent.data_dir.join("apps").join(app);
            homeport_deploy::read_manifest(&dir.join("releases").join(rel)).map(|m| m.version())
        });
    // The step that failed (not the rollback after it).
    let step = record.as_ref().and_then(|r| {
        r.steps
            .iter()
            .find(|st| !st.ok && st.name != "roll back")
            .map(|st| st.name.clone())
    });
    match result {
        DeployResult::Succeeded => {
            s.failures = 0;
            s.failed_commit = None;
            s.failed_deploy = None;
        }
        DeployResult::Failed => {
            s.failures += 1;
            s.failed_commit = Some(commit.clone());
            s.failed_deploy = record.as_ref().map(|r| r.id);
            if s.failures >= PAUSE_AFTER {
                s.paused = true;
            }
        }
        // The agent stopped under it: neither a success nor the commit's fault.
        DeployResult::Running | DeployResult::Interrupted => {}
    }
    save(core, app, env, &s);
    core.emit(
        Subject::env(app, env),
        EventKind::AutoUpdateFinished {
            id: record.as_ref().map(|r| r.id),
            result,
            commit,
            version,
            commits: found.commits,
            previous: running.map(short),
            step,
            error: record.and_then(|r| r.error),
            paused: s.paused && result == DeployResult::Failed,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_of_day_is_read_on_the_local_clock() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(3 * 86_400 + 2 * 3600 + 61);
        assert_eq!(
            local_secs_of_day(t, &jiff::tz::TimeZone::UTC),
            2 * 3600 + 61
        );
        // 1970-01-04 02:01:01 UTC is 03:01:01 in Berlin (CET, UTC+1).
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").expect("Europe/Berlin");
        assert_eq!(local_secs_of_day(t, &berlin), 3 * 3600 + 61);
    }
}
