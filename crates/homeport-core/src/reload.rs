//! Applying `homeport.toml` while the agent runs. `homeport reload`, SIGHUP, the file changing on
//! disk and the settings screen all end in [`apply`]: the whole file is validated first; a valid
//! one is applied service by service — added ones appear (and start if they autostart), removed
//! ones stop, changed ones restart (only those), the rest are not touched — and an invalid one
//! changes nothing: the agent keeps the config it runs, and says where the mistake is (file, line,
//! field) on the event stream, once per version of the file.
//!
//! The file is watched through its folder, not itself: editors such as vim save by writing a new
//! file and renaming it over the old one, which a watch on the old file would not see. Saves come
//! in bursts (a temp file, a rename, a chmod), so the watch waits for a short quiet spell before
//! reading, and reads only a version it has not applied or refused already.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use homeport_config::{Config, Diagnostic, Diagnostics};
use homeport_types::{
    ConfigApplied, ConfigRejection, ConfigSource, EventKind, NotStarted, ServiceKey, Subject,
};

use crate::{Core, START_WAIT};

/// How long the file must be quiet after a change before it is read.
const QUIET: Duration = Duration::from_millis(250);

/// What the agent knows of its config file's versions.
#[derive(Default)]
pub(crate) struct FileState {
    /// The revision last applied; `None` until the first reload (the file read at start is
    /// not hashed: it may have changed since, and the first look settles it).
    applied: Option<String>,
    /// The revision last refused, and why, while the file has a mistake.
    rejected: Option<(String, ConfigRejection)>,
}

/// The config file has mistakes: nothing changed.
#[derive(Debug, thiserror::Error)]
#[error(
    "{file} has {n} problem{s}; nothing changed, and the agent keeps running the config it had:\n{problems}",
    file = .0.0.first().map(|d| d.file.display().to_string()).unwrap_or_default(),
    n = .0.0.len(),
    s = if .0.0.len() == 1 { "" } else { "s" },
    problems = .0
)]
pub struct ReloadError(pub Diagnostics);

/// The revision of a file's contents, as the settings screen names them.
pub(crate) fn revision(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    homeport_fs::hex(&Sha256::digest(bytes))
}

impl Core {
    /// Reads `homeport.toml` again and applies it (see the module docs).
    pub async fn reload(&self, source: ConfigSource) -> Result<ConfigApplied, ReloadError> {
        let _one_at_a_time = self
            .claims
            .claim(crate::claims::Scope::Config, "config reload")
            .await;
        let (bytes, rev) = read(self, source)?;
        load_and_apply(self, bytes, rev, source).await
    }

    /// The config file's mistake, while the agent refuses it.
    pub fn config_rejected(&self) -> Option<ConfigRejection> {
        self.file_state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .rejected
            .as_ref()
            .map(|(_, r)| r.clone())
    }
}

/// Applies a version of the file that has been neither applied nor refused yet (the watch).
async fn reload_if_new(core: &Core) -> Result<(), ReloadError> {
    let _one_at_a_time = core
        .claims
        .claim(crate::claims::Scope::Config, "config reload")
        .await;
    let (bytes, rev) = read(core, ConfigSource::Watch)?;
    let seen = {
        let st = core
            .file_state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        st.applied.as_deref() == Some(rev.as_str())
            || st.rejected.as_ref().is_some_and(|(r, _)| *r == rev)
    };
    if !seen {
        load_and_apply(core, bytes, rev, ConfigSource::Watch).await?;
    }
    Ok(())
}

/// The file's bytes and revision; a file that cannot be read is refused like a broken one.
fn read(core: &Core, source: ConfigSource) -> Result<(Vec<u8>, String), ReloadError> {
    let path = core.config().file.clone();
    match std::fs::read(&path) {
        Ok(bytes) => {
            let rev = revision(&bytes);
            Ok((bytes, rev))
        }
        Err(e) => {
            let d = Diagnostic {
                file: path,
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("cannot read the config file: {e}"),
                help: None,
            };
            Err(reject(core, source, String::new(), Diagnostics(vec![d])))
        }
    }
}

async fn load_and_apply(
    core: &Core,
    bytes: Vec<u8>,
    rev: String,
    source: ConfigSource,
) -> Result<ConfigApplied, ReloadError> {
    let path = core.config().file.clone();
    match homeport_config::load_bytes(&path, bytes) {
        Ok(new) => Ok(apply(core, new, rev, source).await),
        Err(d) => Err(reject(core, source, rev, d)),
    }
}

/// Applies a valid config: the one place every kind of config change goes through.
pub(crate) async fn apply(
    core: &Core,
    new: Config,
    rev: String,
    source: ConfigSource,
) -> ConfigApplied {
    let old = core.config();
    let agent_changes = agent_changes(&old, &new);
    let settings_changed = settings_changed(&old, &new);
    let file = new.file.display().to_string();
    let report = core.supervisor().reload(Arc::new(new), START_WAIT).await;
    core.refresh_routes();
    let (restarted, updated): (Vec<ServiceKey>, Vec<ServiceKey>) = report
        .changed
        .iter()
        .cloned()
        .partition(|k| report.restarted.contains(k));
    let not_started: Vec<NotStarted> = report
        .started
        .iter()
        .filter(|o| report.added.contains(&o.key) || restarted.contains(&o.key))
        .filter_map(|o| {
            o.error.clone().map(|error| NotStarted {
                key: o.key.clone(),
                error,
            })
        })
        .collect();
    let was_rejected = {
        let mut st = core
            .file_state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        st.applied = Some(rev.clone());
        st.rejected.take().is_some()
    };
    let applied = ConfigApplied {
        file,
        source,
        added: report.added,
        removed: report.removed,
        restarted,
        updated,
        unchanged: report.unchanged,
        not_started,
        needs_agent_restart: !agent_changes.is_empty(),
        agent_changes,
        settings_changed,
        revision: rev,
    };
    let changed = !(applied.added.is_empty()
        && applied.removed.is_empty()
        && applied.restarted.is_empty()
        && applied.updated.is_empty()
        && applied.agent_changes.is_empty()
        && applied.settings_changed.is_empty());
    tracing::info!(
        "{} applied {}: {} added, {} removed, {} restarted, {} changed but not running, {} unchanged{}{}",
        applied.file,
        source.describe(),
        applied.added.len(),
        applied.removed.len(),
        applied.restarted.len(),
        applied.updated.len(),
        applied.unchanged.len(),
        if applied.settings_changed.is_empty() {
            String::new()
        } else {
            format!(
                "; applied from now on: {}",
                applied.settings_changed.join("; ")
            )
        },
        if applied.needs_agent_restart {
            format!(
                "; {} apply when the agent restarts",
                applied.agent_changes.join(", ")
            )
        } else {
            String::new()
        }
    );
    for n in &applied.not_started {
        tracing::warn!(service = %n.key, "added, but could not start: {}", n.error);
    }
    // A save that changed nothing (a comment) is not news; one that fixes a refused file is.
    if changed || was_rejected {
        core.emit(
            Subject::Agent,
            EventKind::ConfigApplied {
                source,
                added: applied.added.clone(),
                removed: applied.removed.clone(),
                restarted: applied.restarted.clone(),
                unchanged: applied.unchanged.len(),
                settings: applied.settings_changed.clone(),
                needs_agent_restart: applied.needs_agent_restart,
            },
        );
    }
    applied
}

/// Records and says that the file at revision `rev` was refused; returns the error to answer.
fn reject(core: &Core, source: ConfigSource, rev: String, d: Diagnostics) -> ReloadError {
    let first = d.0.first().cloned().unwrap_or(Diagnostic {
        file: core.config().file.clone(),
        line: 0,
        column: 0,
        field: String::new(),
        message: "the config is invalid".into(),
        help: None,
    });
    let rejection = ConfigRejection {
        file: first.file.display().to_string(),
        line: first.line,
        column: first.column,
        field: first.field.clone(),
        message: first.message.clone(),
        problems: d.0.len(),
        source,
        time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
    };
    // The same mistake seen again by the watch (the editor saved twice) is said once.
    let repeat = {
        let mut st = core
            .file_state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let repeat = source == ConfigSource::Watch
            && st.rejected.as_ref().is_some_and(|(r, old)| {
                *r == rev
                    || (old.line, &old.field, &old.message)
                        == (first.line, &first.field, &first.message)
            });
        st.rejected = Some((rev, rejection.clone()));
        repeat
    };
    tracing::warn!(
        "not applied ({}): {}{}; the agent keeps running the config it had",
        source.describe(),
        rejection.located(),
        if d.0.len() > 1 {
            format!(" (and {} more)", d.0.len() - 1)
        } else {
            String::new()
        }
    );
    if !repeat {
        emit_rejected(core, &rejection);
    }
    ReloadError(d)
}

/// Says on the event stream that a config change was refused.
pub(crate) fn emit_rejected(core: &Core, r: &ConfigRejection) {
    core.emit(
        Subject::Agent,
        EventKind::ConfigRejected {
            file: r.file.clone(),
            line: r.line,
            column: r.column,
            field: r.field.clone(),
            message: r.message.clone(),
            problems: r.problems,
            source: r.source,
        },
    );
}

/// The agent options (and what only a new agent sets up) that differ: they take effect when
/// the agent restarts.
fn agent_changes(old: &Config, new: &Config) -> Vec<String> {
    let (a, b) = (&old.agent, &new.agent);
    let mut out = Vec::new();
    let mut differ = |name: &str, changed: bool| {
        if changed {
            out.push(name.to_owned());
        }
    };
    differ("port", a.port != b.port);
    differ("data_dir", a.data_dir != b.data_dir);
    differ("log_max_bytes", a.log_max_bytes != b.log_max_bytes);
    differ("log_keep", a.log_keep != b.log_keep);
    differ("router_port", a.router_port != b.router_port);
    differ("https_port", a.https_port != b.https_port);
    differ("watch_config", a.watch_config != b.watch_config);
    // The sampler's interval is set when the agent starts.
    differ("sample_every", a.sample_every != b.sample_every);
    // The proxies of blue-green services are set up when the agent starts.
    let slots = |c: &Config| -> Vec<ServiceKey> {
        c.services
            .iter()
            .filter(|s| s.slot.is_some())
            .map(|s| s.key.clone())
            .collect()
    };
    differ("blue-green services", slots(old) != slots(new));
    out
}

/// The settings of environments and apps that changed, as `shop/production: auto_update,
/// health_stable`. Nothing needs restarting for them: the update checker, the backup schedule,
/// the deploy pipeline and the router read the config they need each time they act, so they
/// apply from now on (the next check, backup or deploy).
fn settings_changed(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for b in &new.envs {
        let Some(a) = old.envs.iter().find(|a| a.app == b.app && a.env == b.env) else {
            continue;
        };
        let fields: Vec<&str> = [
            ("autostart", a.autostart != b.autostart),
            ("databases", a.databases != b.databases),
            (
                "files",
                a.files != b.files || a.config_files != b.config_files,
            ),
            ("backup", a.backup != b.backup),
            ("health_deadline", a.health_deadline != b.health_deadline),
            ("health_stable", a.health_stable != b.health_stable),
            (
                "restore_on_failure",
                a.restore_on_failure != b.restore_on_failure,
            ),
            ("hostnames", a.hostnames != b.hostnames || a.web != b.web),
            ("drain", a.drain != b.drain),
            ("auto_update", a.auto_update != b.auto_update),
            ("notify", a.notify != b.notify),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect();
        if !fields.is_empty() {
            out.push(format!("{}/{}: {}", b.app, b.env, fields.join(", ")));
        }
    }
    for b in &new.apps {
        let Some(a) = old.apps.iter().find(|a| a.name == b.name) else {
            continue;
        };
        let fields: Vec<&str> = [
            ("source", a.source != b.source),
            ("test", a.test != b.test),
            ("build", a.build != b.build),
            ("artifacts", a.artifacts != b.artifacts),
            ("install", a.install != b.install),
            ("migrate", a.migrate != b.migrate),
            ("keep_releases", a.keep_releases != b.keep_releases),
            ("allow_dirty", a.allow_dirty != b.allow_dirty),
            ("step_env", a.step_env != b.step_env),
            (
                "backward_compatible_migrations",
                a.backward_compatible_migrations != b.backward_compatible_migrations,
            ),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect();
        if !fields.is_empty() {
            out.push(format!("{}: {}", b.name, fields.join(", ")));
        }
    }
    out
}

/// Watches the config file and applies each new valid version of it; says once about each
/// invalid one. Runs until the agent stops.
pub(crate) fn watch(core: &Arc<Core>) {
    let file = core.config().file.clone();
    if !core.config().agent.watch_config {
        tracing::info!(
            "not watching {} (`watch_config = false`): apply edits with `homeport reload`",
            file.display()
        );
        return;
    }
    // A config kept in a dotfiles repository is often a symbolic link: its target's folder is
    // where the editor writes.
    let target = std::fs::canonicalize(&file).ok().filter(|t| *t != file);
    let watched: Vec<PathBuf> = std::iter::once(file.clone()).chain(target).collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let names = watched.clone();
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && ev.paths.iter().any(|p| names.iter().any(|n| same(p, n)))
        {
            // One pending wake-up is enough: the reader reads the file as it is then.
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(
                "cannot watch {} for edits ({e}); apply them with `homeport reload`",
                file.display()
            );
            return;
        }
    };
    let mut dirs: Vec<&Path> = watched.iter().filter_map(|p| p.parent()).collect();
    dirs.dedup();
    for dir in dirs {
        if let Err(e) =
            notify::Watcher::watch(&mut watcher, dir, notify::RecursiveMode::NonRecursive)
        {
            tracing::warn!(
                "cannot watch {} for edits of {} ({e}); apply them with `homeport reload`",
                dir.display(),
                file.display()
            );
        }
    }
    // Weak, and only upgraded to apply: the agent's end never waits for the watch.
    let stop = core.shutdown_signal();
    let core = Arc::downgrade(core);
    tokio::spawn(async move {
        let _watching = watcher;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                r = rx.recv() => if r.is_none() { return },
                () = &mut stop => return,
            }
            // Wait until the editor is done: no change for a moment.
            loop {
                match tokio::time::timeout(QUIET, rx.recv()).await {
                    Ok(Some(())) => {}
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let Some(core) = core.upgrade() else { return };
            // A refusal has been logged and said on the event stream already.
            let _ = reload_if_new(&core).await;
        }
    });
}

/// Whether a path a watch reports (the watched folder joined with the entry's name) is `file`.
fn same(reported: &Path, file: &Path) -> bool {
    if reported == file {
        return true;
    }
    let folder = |p: &Path| p.parent().and_then(|d| std::fs::canonicalize(d).ok());
    reported.file_name() == file.file_name() && folder(reported) == folder(file)
}
