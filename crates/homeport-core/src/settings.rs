//! The settings screen's edits of `homeport.toml`: stage the change, validate it as a whole,
//! show it as a diff, then write it atomically and apply it — or discard it.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use homeport_config::edit::{EditError, apply_changes};
use homeport_config::{Config, Diagnostic};
use homeport_types::{
    AgentSettingsView, ConfigApplied, ConfigChange, ConfigPreview, ConfigSource, ConfigView,
    EnvView, Problem, ServiceKey, ServiceView,
};

use crate::Core;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file changed on disk since the screen read it.
    #[error("{0} changed since it was read; reload the settings and make the change again")]
    Conflict(String),
    /// The change makes the config invalid.
    #[error("the change makes the config invalid: {}", .0.iter().map(|p| format!("{}: {}", p.field, p.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    /// A change names something the file does not have.
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error("cannot read or write {0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The editor may not make this change.
    #[error("{0}")]
    Forbidden(String),
}

/// Who makes a settings change, which decides what it may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Editor {
    /// The user through the CLI or the tray app (they hold the API token): anything
    /// homeport.toml may say.
    Owner,
    /// A browser session: ports and agent options, and database paths only inside the
    /// environment's own data folder. A database path elsewhere would let whoever holds the
    /// session have the agent back up, and so copy out, any SQLite file of the user's (browser
    /// cookie stores and histories are SQLite files too).
    Browser,
}

pub fn revision(text: &str) -> String {
    crate::reload::revision(text.as_bytes())
}

fn read(path: &Path) -> Result<String, SettingsError> {
    std::fs::read_to_string(path).map_err(|e| SettingsError::Io(path.display().to_string(), e))
}

pub(crate) fn view(config: &Config) -> Result<ConfigView, SettingsError> {
    let text = read(&config.file)?;
    let envs = config
        .envs
        .iter()
        .map(|e| EnvView {
            app: e.app.clone(),
            env: e.env.clone(),
            autostart: e.autostart,
            databases: e
                .databases
                .iter()
                .map(|(k, v)| (k.clone(), v.display().to_string()))
                .collect(),
            services: config
                .services
                .iter()
                .filter(|s| s.key.app == e.app && s.key.env == e.env)
                .map(|s| ServiceView {
                    service: s.key.service.clone(),
                    port: s.port,
                    secret_env: s.secret_env.iter().cloned().collect(),
                })
                .collect(),
        })
        .collect();
    Ok(ConfigView {
        file: config.file.display().to_string(),
        revision: revision(&text),
        agent: AgentSettingsView {
            port: config.agent.port,
            log_max_bytes: config.agent.log_max_bytes,
            log_keep: config.agent.log_keep,
            data_dir: config.agent.data_dir.display().to_string(),
        },
        envs,
    })
}

/// A staged change: the new text, its config if valid, and what is wrong with it.
struct Staged {
    old_text: String,
    new_text: String,
    new_config: Option<Config>,
    problems: Vec<Problem>,
    /// What the editor may not change (a problem too).
    forbidden: Option<String>,
}

fn problem(d: &Diagnostic) -> Problem {
    Problem {
        field: d.field.clone(),
        line: d.line,
        column: d.column,
        message: d.message.clone(),
        help: d.help.clone(),
    }
}

fn stage(
    core: &Core,
    changes: &[ConfigChange],
    rev: &str,
    editor: Editor,
) -> Result<Staged, SettingsError> {
    let config = core.config();
    let old_text = read(&config.file)?;
    if revision(&old_text) != rev {
        return Err(SettingsError::Conflict(config.file.display().to_string()));
    }
    let new_text = apply_changes(&old_text, changes)?;
    let (new_config, mut problems) = match homeport_config::load_str(&config.file, &new_text) {
        Ok(c) => (Some(c), Vec::new()),
        Err(d) => (None, d.0.iter().map(problem).collect()),
    };
    // A port the file does not clash on may still be held by a process outside Homeport.
    let ours: BTreeSet<u32> = core
        .supervisor()
        .status()
        .iter()
        .filter_map(|s| s.pid)
        .collect();
    for change in changes {
        if let ConfigChange::Port {
            app,
            env,
            service,
            port,
        } = change
        {
            let key = ServiceKey::new(app, env, service);
            let unchanged = config.service(&key).is_some_and(|s| s.port == Some(*port));
            if unchanged {
                continue;
            }
            if let Some(holder) = homeport_supervisor::port_holder(*port)
                && holder.pid.is_none_or(|p| !ours.contains(&p))
            {
                problems.push(Problem {
                    field: change.field(),
                    line: 0,
                    column: 0,
                    message: format!("port {port} is in use by {holder}"),
                    help: None,
                });
            }
        }
    }
    let mut forbidden = None;
    if let (Editor::Browser, Some(new)) = (editor, &new_config) {
        for change in changes {
            let ConfigChange::Database { app, env, name, .. } = change else {
                continue;
            };
            let Some(spec) = new.envs.iter().find(|e| &e.app == app && &e.env == env) else {
                continue;
            };
            let Some(path) = spec.databases.get(name) else {
                continue;
            };
            if !inside(path, &spec.data_dir) {
                let message = format!(
                    "from a browser, a database can only be put in the environment's data folder ({}); \
                     to use {}, change it in the tray app's window or in homeport.toml",
                    spec.data_dir.display(),
                    path.display()
                );
                problems.push(Problem {
                    field: change.field(),
                    line: 0,
                    column: 0,
                    message: message.clone(),
                    help: None,
                });
                forbidden.get_or_insert(message);
            }
        }
    }
    Ok(Staged {
        old_text,
        new_text,
        new_config,
        problems,
        forbidden,
    })
}

/// Whether `path` is inside `dir`, with the symbolic links in what exists of either resolved: a
/// link inside the folder that points out of it does not count as inside.
fn inside(path: &Path, dir: &Path) -> bool {
    fn real(p: &Path) -> Option<std::path::PathBuf> {
        let mut existing = p;
        let mut rest = Vec::new();
        loop {
            if let Ok(c) = existing.canonicalize() {
                return Some(rest.iter().rev().fold(c, |acc, part| acc.join(part)));
            }
            rest.push(existing.file_name()?.to_owned());
            existing = existing.parent()?;
        }
    }
    let no_dots = path
        .components()
        .all(|c| !matches!(c, std::path::Component::ParentDir));
    match (real(path), real(dir)) {
        (Some(p), Some(d)) => no_dots && p != d && p.starts_with(&d),
        _ => false,
    }
}

pub(crate) fn preview(
    core: &Core,
    changes: &[ConfigChange],
    rev: &str,
    editor: Editor,
) -> Result<ConfigPreview, SettingsError> {
    let staged = stage(core, changes, rev, editor)?;
    let file = core.config().file.display().to_string();
    let diff = similar::TextDiff::from_lines(&staged.old_text, &staged.new_text)
        .unified_diff()
        .context_radius(2)
        .header(&file, &file)
        .to_string();
    let restart = match &staged.new_config {
        Some(new) => changed_running(core, new),
        None => Vec::new(),
    };
    Ok(ConfigPreview {
        valid: staged.problems.is_empty() && staged.new_config.is_some(),
        problems: staged.problems,
        diff,
        restart,
        revision: rev.to_owned(),
    })
}

/// Running services whose spec differs in `new`.
fn changed_running(core: &Core, new: &Config) -> Vec<ServiceKey> {
    let old = core.config();
    core.supervisor()
        .status()
        .into_iter()
        .filter(|s| s.state.is_up() || s.state == homeport_types::ServiceState::BackingOff)
        .filter(|s| old.service(&s.key) != new.service(&s.key))
        .filter(|s| new.service(&s.key).is_some())
        .map(|s| s.key)
        .collect()
}

pub(crate) async fn apply(
    core: &Core,
    changes: &[ConfigChange],
    rev: &str,
    editor: Editor,
) -> Result<ConfigApplied, SettingsError> {
    let _one_at_a_time = core
        .claims
        .claim(crate::claims::Scope::Config, "config edit")
        .await;
    let staged = stage(core, changes, rev, editor)?;
    if let Some(why) = staged.forbidden {
        return Err(SettingsError::Forbidden(why));
    }
    let new = match staged.new_config {
        Some(c) if staged.problems.is_empty() => c,
        _ => {
            if let Some(first) = staged.problems.first() {
                // The file was not touched: this refusal is the screen's, not the file's.
                crate::reload::emit_rejected(
                    core,
                    &homeport_types::ConfigRejection {
                        file: core.config().file.display().to_string(),
                        line: first.line,
                        column: first.column,
                        field: first.field.clone(),
                        message: first.message.clone(),
                        problems: staged.problems.len(),
                        source: ConfigSource::Settings,
                        time: humantime::format_rfc3339_millis(std::time::SystemTime::now())
                            .to_string(),
                    },
                );
            }
            return Err(SettingsError::Invalid(staged.problems));
        }
    };
    let path = core.config().file.clone();
    let mode = std::fs::metadata(&path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o600);
    homeport_fs::atomic_write(&path, staged.new_text.as_bytes(), mode)
        .map_err(|e| SettingsError::Io(path.display().to_string(), e))?;
    // The same way as `homeport reload` and an edit on disk: one apply for every change.
    Ok(crate::reload::apply(
        core,
        new,
        revision(&staged.new_text),
        ConfigSource::Settings,
    )
    .await)
}
