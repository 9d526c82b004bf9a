//! Which desktop notifications to show: a pure map from the agent's events to notices. A service
//! crashed and is being restarted, gave up after a crash loop, lost or regained its health; a
//! deploy, backup (manual, scheduled or failed) or restore ended, whoever started it; a config
//! edit was applied or refused. Nothing is re-derived from history: each outcome is one event.
//!
//! Coalesced and rate-limited: per service, at most one crash notice and one health notice per
//! [`Notifier::WINDOW`]; crashes in between are counted into the next notice ("crashed 7 times"),
//! told at the next crash or [`Notifier::tick`] after the window; a health change that flips
//! back within the window is never shown, and a crash loop that ends in the agent giving up says
//! so at once. When more than [`Notifier::MAX_AT_ONCE`] things are to be said at once (say,
//! every service of a restarted agent), [`coalesce`] makes them one notice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use homeport_types::{
    BackupTrigger, ConfigSource, DeployKind, DeployResult, Event, EventKind, ExitReason, Health,
    NotifyPolicy, ServiceKey, ServiceState, ServiceStatus, Subject,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Urgency {
    Normal,
    Critical,
}

/// The screen a click on a notice opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    Overview,
    Logs(ServiceKey),
    Deploys,
    Backups,
}

impl Screen {
    /// The dashboard's route for this screen.
    pub fn fragment(&self) -> String {
        match self {
            Screen::Overview => "#/".into(),
            Screen::Logs(k) => format!("#/logs?target={k}"),
            Screen::Deploys => "#/deploys".into(),
            Screen::Backups => "#/backups".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub summary: String,
    pub body: String,
    pub urgency: Urgency,
    pub screen: Screen,
    /// Something went wrong (what `notify = "failures"` keeps).
    pub failure: bool,
    /// The service it is about: its next notice replaces this one on screen.
    pub about: Option<ServiceKey>,
}

/// Rows a rollback's restore discarded, each with the safety copy that keeps them; empty when
/// nothing was lost.
fn kept_text(discarded: &[homeport_types::Discarded]) -> String {
    discarded
        .iter()
        .filter(|d| d.rows != Some(0))
        .map(|d| match d.rows {
            Some(n) => format!(
                " {n} row{} of {} written since the backup {} kept in {}.",
                if n == 1 { "" } else { "s" },
                d.database,
                if n == 1 { "is" } else { "are" },
                d.copy
            ),
            None => format!(
                " What {} held before the rollback is kept in {}.",
                d.database, d.copy
            ),
        })
        .collect()
}

impl Notice {
    /// A deploy, promote, rollback or update of `target` ended. Data its rollback discarded is
    /// always told, with where it is kept.
    pub fn deploy(
        target: &str,
        kind: DeployKind,
        result: DeployResult,
        release: Option<&str>,
        previous: Option<&str>,
        error: Option<&str>,
        discarded: &[homeport_types::Discarded],
    ) -> Self {
        let kept = kept_text(discarded);
        let what = capitalise(&format!("{} of {target}", kind.as_str()));
        if result == DeployResult::Succeeded {
            Notice {
                summary: format!("{what} succeeded"),
                body: match release {
                    Some(r) => format!("{r} is live"),
                    None => "done".into(),
                },
                urgency: Urgency::Normal,
                screen: Screen::Deploys,
                failure: false,
                about: None,
            }
        } else {
            let error = error.unwrap_or("no reason given");
            let serving = match previous {
                Some(p) => format!(" {p} is still serving."),
                None => String::new(),
            };
            Notice {
                summary: format!("{what} failed"),
                body: format!("{error}.{serving}{kept}"),
                urgency: Urgency::Critical,
                screen: Screen::Deploys,
                failure: true,
                about: None,
            }
        }
    }

    /// An automatic update of `target` ended ("shop/beta updated to 1a2b3c4 (3 commits)", or
    /// "shop/beta: update to 1a2b3c4 failed at the health gate; 9f8e7d6 still serves"). One that
    /// never began (a deploy by hand came first) is not news.
    #[allow(clippy::too_many_arguments)]
    pub fn auto_update(
        target: &str,
        result: DeployResult,
        commit: &str,
        version: Option<&str>,
        commits: u32,
        previous: Option<&str>,
        step: Option<&str>,
        error: Option<&str>,
        paused: bool,
        discarded: &[homeport_types::Discarded],
    ) -> Option<Self> {
        let short: String = commit.chars().take(7).collect();
        match result {
            DeployResult::Succeeded => Some(Notice {
                summary: format!(
                    "{target} updated to {short} ({commits} commit{})",
                    plural(u64::from(commits))
                ),
                body: match version {
                    Some(v) => format!("Version {v} is live."),
                    None => "It is live.".into(),
                },
                urgency: Urgency::Normal,
                screen: Screen::Deploys,
                failure: false,
                about: None,
            }),
            DeployResult::Failed => {
                let at = step.map(|s| format!(" at the {s}")).unwrap_or_default();
                let serves = match previous {
                    Some(p) => format!("; {p} still serves"),
                    None => String::new(),
                };
                let mut body = format!(
                    "{}.{}",
                    error.unwrap_or("no reason given"),
                    kept_text(discarded)
                );
                body.push_str(&format!(
                    " {short} is not tried again until the upstream moves."
                ));
                if paused {
                    body.push_str(&format!(
                        " Automatic updates of {target} are paused after failures in a row; resume them from the tray menu or the dashboard."
                    ));
                }
                Some(Notice {
                    summary: format!("{target}: update to {short} failed{at}{serves}"),
                    body,
                    urgency: Urgency::Critical,
                    screen: Screen::Deploys,
                    failure: true,
                    about: None,
                })
            }
            DeployResult::Running | DeployResult::Interrupted => None,
        }
    }

    /// A backup was made, with its size and time.
    pub fn backup_done(
        target: &str,
        trigger: BackupTrigger,
        size: u64,
        ms: u64,
        verified: bool,
    ) -> Self {
        Notice {
            summary: if trigger == BackupTrigger::Scheduled {
                format!("Scheduled backup of {target} done")
            } else {
                format!("Backup of {target} done")
            },
            body: format!(
                "{} in {:.1} s{}",
                human_size(size),
                ms as f64 / 1000.0,
                if verified { ", verified" } else { "" }
            ),
            urgency: Urgency::Normal,
            screen: Screen::Backups,
            failure: false,
            about: None,
        }
    }

    /// A backup could not be made.
    pub fn backup_failed(target: &str, trigger: BackupTrigger, error: &str) -> Self {
        Notice {
            summary: if trigger == BackupTrigger::Scheduled {
                format!("Scheduled backup of {target} failed")
            } else {
                format!("Backup of {target} failed")
            },
            body: error.to_owned(),
            urgency: Urgency::Critical,
            screen: Screen::Backups,
            failure: true,
            about: None,
        }
    }

    /// A start, stop or restart from the menu that the agent or a service refused.
    pub fn action_failed(action: &str, target: &str, error: &str) -> Self {
        Notice {
            summary: format!("Could not {action} {target}"),
            body: error.to_owned(),
            urgency: Urgency::Critical,
            screen: Screen::Overview,
            failure: true,
            about: None,
        }
    }

    /// A deploy the agent refused or lost contact with before it produced a record.
    pub fn deploy_error(app: &str, env: &str, kind: &str, error: &str) -> Self {
        Notice {
            summary: capitalise(&format!("{kind} of {app}/{env} failed")),
            body: error.to_owned(),
            urgency: Urgency::Critical,
            screen: Screen::Deploys,
            failure: true,
            about: None,
        }
    }
}

/// What the notifier remembers of one service.
#[derive(Debug, Clone, Default)]
struct Track {
    /// Crashes not yet told.
    pending_crashes: u64,
    last_crash_notice: Option<Instant>,
    /// The last restart count and exit seen, for the notice that tells pending crashes.
    restarts: u64,
    last_exit: Option<ExitReason>,
    /// The health condition last told, and the one now.
    told_healthy: bool,
    healthy: bool,
    health_detail: Option<String>,
    last_health_notice: Option<Instant>,
}

/// Turns the agent's events into notices.
#[derive(Debug, Default)]
pub struct Notifier {
    tracks: HashMap<ServiceKey, Track>,
    /// Environments updating themselves: their deploy is told by the update's own notice.
    /// Environments with an automatic update under way, with what its rollback discarded once
    /// the update's own deploy has finished (told in the update's notice).
    auto_updating: std::collections::HashMap<String, Vec<homeport_types::Discarded>>,
    /// Each environment's `notify`, from the last snapshot.
    policies: HashMap<(String, String), NotifyPolicy>,
}

impl Notifier {
    /// Per service and kind (crash, health), at most one notice in this long.
    pub const WINDOW: Duration = Duration::from_secs(60);
    /// More notices than this at once become one ([`coalesce`]).
    pub const MAX_AT_ONCE: usize = 3;

    pub fn new() -> Self {
        Self::default()
    }

    /// The notices `event`, seen at `now`, calls for, as its environment's `notify` wants them.
    pub fn on_event(&mut self, event: &Event, now: Instant) -> Vec<Notice> {
        let notices = self.notices_for(event, now);
        let env = match &event.subject {
            Subject::Service(k) => Some((k.app.clone(), k.env.clone())),
            Subject::Env { app, env } => Some((app.clone(), env.clone())),
            Subject::App(_) | Subject::Agent => None,
        };
        match env {
            Some(e) => self.as_wanted(&e, notices),
            None => notices,
        }
    }

    /// Takes each environment's `notify` from a status snapshot.
    pub fn policies(&mut self, services: &[ServiceStatus]) {
        self.policies = services
            .iter()
            .map(|s| ((s.key.app.clone(), s.key.env.clone()), s.notify))
            .collect();
    }

    /// Keeps what the environment's `notify` wants; outside production, failures are quiet.
    fn as_wanted(&self, (app, env): &(String, String), notices: Vec<Notice>) -> Vec<Notice> {
        let policy = self
            .policies
            .get(&(app.clone(), env.clone()))
            .copied()
            .unwrap_or_else(|| NotifyPolicy::default_for(env));
        notices
            .into_iter()
            .filter(|n| match policy {
                NotifyPolicy::All => true,
                NotifyPolicy::Failures => n.failure,
                NotifyPolicy::None => false,
            })
            .map(|mut n| {
                if env != homeport_types::PRODUCTION {
                    n.urgency = Urgency::Normal;
                }
                n
            })
            .collect()
    }

    fn notices_for(&mut self, event: &Event, now: Instant) -> Vec<Notice> {
        let target = event.subject.to_string();
        match (&event.subject, &event.kind) {
            (
                Subject::Service(k),
                EventKind::State {
                    from,
                    to,
                    exit,
                    restarts,
                    message,
                    ..
                },
            ) => {
                let t = self.track(k);
                t.restarts = *restarts;
                if exit.is_some() {
                    t.last_exit = *exit;
                }
                crash_notice(t, k, *from, *to, message.as_deref(), now)
                    .into_iter()
                    .collect()
            }
            (Subject::Service(k), EventKind::Health { health, message }) => {
                let t = self.track(k);
                t.healthy = *health != Health::Unhealthy;
                t.health_detail = message.clone();
                health_notice(t, k, now).into_iter().collect()
            }
            (_, EventKind::AutoUpdateStarted { .. }) => {
                self.auto_updating.insert(target, Vec::new());
                vec![]
            }
            (_, EventKind::DeployFinished { discarded, .. })
                if self.auto_updating.contains_key(&target) =>
            {
                self.auto_updating.insert(target, discarded.clone());
                vec![]
            }
            (
                _,
                EventKind::AutoUpdateFinished {
                    result,
                    commit,
                    version,
                    commits,
                    previous,
                    step,
                    error,
                    paused,
                    ..
                },
            ) => {
                let discarded = self.auto_updating.remove(&target).unwrap_or_default();
                Notice::auto_update(
                    &target,
                    *result,
                    commit,
                    version.as_deref(),
                    *commits,
                    previous.as_deref(),
                    step.as_deref(),
                    error.as_deref(),
                    *paused,
                    &discarded,
                )
                .into_iter()
                .collect()
            }
            (_, EventKind::AutoUpdateRefused { reason }) => vec![Notice {
                summary: format!("{target} was not updated automatically"),
                body: reason.clone(),
                urgency: Urgency::Normal,
                screen: Screen::Deploys,
                failure: true,
                about: None,
            }],
            (
                _,
                EventKind::DeployFinished {
                    kind,
                    result,
                    release,
                    previous,
                    error,
                    discarded,
                    ..
                },
            ) => {
                vec![Notice::deploy(
                    &target,
                    *kind,
                    *result,
                    release.as_deref(),
                    previous.as_deref(),
                    error.as_deref(),
                    discarded,
                )]
            }
            // A deploy's own backup is told by the deploy's notice.
            (
                _,
                EventKind::BackupFinished { trigger, .. } | EventKind::BackupFailed { trigger, .. },
            ) if *trigger == BackupTrigger::PreDeploy => {
                vec![]
            }
            (
                _,
                EventKind::BackupFinished {
                    trigger,
                    size,
                    duration_ms,
                    verified,
                    ..
                },
            ) => {
                vec![Notice::backup_done(
                    &target,
                    *trigger,
                    *size,
                    *duration_ms,
                    *verified,
                )]
            }
            (_, EventKind::BackupFailed { trigger, error }) => {
                vec![Notice::backup_failed(&target, *trigger, error)]
            }
            (
                _,
                EventKind::RestoreFinished {
                    backup,
                    safety_copies,
                    ..
                },
            ) => vec![Notice {
                summary: format!("{target} restored from backup {backup}"),
                body: match safety_copies.first() {
                    Some(s) => format!("The previous database is kept in {s}"),
                    None => "Its services run on the restored data.".into(),
                },
                urgency: Urgency::Normal,
                screen: Screen::Backups,
                failure: false,
                about: None,
            }],
            (_, EventKind::RestoreFailed { error, .. }) => vec![Notice {
                summary: format!("Restore of {target} failed"),
                body: error.clone(),
                urgency: Urgency::Critical,
                screen: Screen::Backups,
                failure: true,
                about: None,
            }],
            (
                _,
                EventKind::ConfigApplied {
                    source,
                    added,
                    removed,
                    restarted,
                    unchanged,
                    settings,
                    needs_agent_restart,
                },
            ) => vec![Notice {
                summary: format!("Config applied {}", source.describe()),
                body: config_applied_body(
                    added.len(),
                    removed.len(),
                    restarted.len(),
                    *unchanged,
                    settings,
                    *needs_agent_restart,
                ),
                urgency: Urgency::Normal,
                screen: Screen::Overview,
                failure: false,
                about: None,
            }],
            (
                _,
                EventKind::ConfigRejected {
                    file,
                    line,
                    column,
                    field,
                    message,
                    problems,
                    source,
                },
            ) => {
                let name = std::path::Path::new(file)
                    .file_name()
                    .map_or_else(|| file.clone(), |n| n.to_string_lossy().into_owned());
                let at = if *line > 0 {
                    format!("{name}:{line}:{column}")
                } else {
                    name.clone()
                };
                let field = if field.is_empty() {
                    String::new()
                } else {
                    format!("{field}: ")
                };
                let more = match problems {
                    0 | 1 => String::new(),
                    n => format!(" ({} more problem{})", n - 1, plural(*n as u64 - 1)),
                };
                vec![if *source == ConfigSource::Settings {
                    Notice {
                        summary: "Settings change refused".into(),
                        body: format!("{at}: {field}{message}{more}. Nothing changed."),
                        urgency: Urgency::Critical,
                        screen: Screen::Overview,
                        failure: true,
                        about: None,
                    }
                } else {
                    Notice {
                        summary: format!("{name} has a mistake: not applied"),
                        body: format!(
                            "{at}: {field}{message}{more}. The agent keeps running the config it had; fix the file and save it again."
                        ),
                        urgency: Urgency::Critical,
                        screen: Screen::Overview,
                        failure: true,
                        about: None,
                    }
                }]
            }
            _ => vec![],
        }
    }

    /// Notices held back by the window that are due at `now`: crashes counted since the last
    /// crash notice, and a health change that has lasted the window. Call it every few seconds.
    pub fn tick(&mut self, now: Instant) -> Vec<Notice> {
        let mut out = Vec::new();
        for (k, t) in &mut self.tracks {
            let quiet = t
                .last_crash_notice
                .is_some_and(|at| now.duration_since(at) < Notifier::WINDOW);
            let mut mine = Vec::new();
            if t.pending_crashes > 0 && !quiet {
                mine.push(crashes_told(t, k, now));
            }
            mine.extend(health_notice(t, k, now));
            out.push(((k.app.clone(), k.env.clone()), mine));
        }
        out.into_iter()
            .flat_map(|(env, mine)| self.as_wanted(&env, mine))
            .collect()
    }

    /// Forgets what the last snapshot does not name (a service removed from the config).
    pub fn retain(&mut self, keys: &[ServiceKey]) {
        self.tracks.retain(|k, _| keys.contains(k));
    }

    fn track(&mut self, k: &ServiceKey) -> &mut Track {
        self.tracks.entry(k.clone()).or_insert_with(|| Track {
            told_healthy: true,
            healthy: true,
            ..Track::default()
        })
    }
}

fn crash_notice(
    t: &mut Track,
    k: &ServiceKey,
    from: ServiceState,
    to: ServiceState,
    message: Option<&str>,
    now: Instant,
) -> Option<Notice> {
    let reason = reason(t.last_exit);
    match to {
        // It never ran: a refused start (its port is held, a file is missing) is not a crash.
        ServiceState::Failed if from == ServiceState::Starting => {
            t.pending_crashes = 0;
            t.last_crash_notice = Some(now);
            Some(Notice {
                summary: format!("{k} could not start"),
                body: match message {
                    Some(m) if !m.is_empty() => format!("{}.", m.trim_end_matches('.')),
                    _ => "It did not start; its log may say why.".into(),
                },
                urgency: Urgency::Critical,
                screen: Screen::Logs(k.clone()),
                failure: true,
                about: Some(k.clone()),
            })
        }
        ServiceState::Failed => {
            t.pending_crashes = 0;
            t.last_crash_notice = Some(now);
            let n = t.restarts.max(1);
            let why = message
                .filter(|_| !from.is_up())
                .map(|m| format!("{m}. "))
                .unwrap_or_default();
            Some(Notice {
                summary: format!("{k} gave up"),
                body: format!(
                    "{why}{reason}It crashed {n} time{}; Homeport stopped restarting it.",
                    plural(n)
                ),
                urgency: Urgency::Critical,
                screen: Screen::Logs(k.clone()),
                failure: true,
                about: Some(k.clone()),
            })
        }
        ServiceState::Crashed => {
            t.pending_crashes = 0;
            t.last_crash_notice = Some(now);
            Some(Notice {
                summary: format!("{k} crashed"),
                body: format!("{reason}Its restart policy leaves it down."),
                urgency: Urgency::Critical,
                screen: Screen::Logs(k.clone()),
                failure: true,
                about: Some(k.clone()),
            })
        }
        // An exit the agent restarts: a crash (or a failed health check's restart).
        ServiceState::BackingOff if from.is_up() => {
            t.pending_crashes += 1;
            let quiet = t
                .last_crash_notice
                .is_some_and(|at| now.duration_since(at) < Notifier::WINDOW);
            (!quiet).then(|| crashes_told(t, k, now))
        }
        _ => None,
    }
}

/// The notice for the crashes counted so far; resets the count.
fn crashes_told(t: &mut Track, k: &ServiceKey, now: Instant) -> Notice {
    let n = std::mem::take(&mut t.pending_crashes);
    t.last_crash_notice = Some(now);
    Notice {
        summary: if n == 1 {
            format!("{k} crashed")
        } else {
            format!("{k} crashed {n} times")
        },
        body: format!(
            "{}Homeport is restarting it (restart {}).",
            reason(t.last_exit),
            t.restarts
        ),
        urgency: Urgency::Normal,
        screen: Screen::Logs(k.clone()),
        failure: true,
        about: Some(k.clone()),
    }
}

fn health_notice(t: &mut Track, k: &ServiceKey, now: Instant) -> Option<Notice> {
    let quiet = t
        .last_health_notice
        .is_some_and(|at| now.duration_since(at) < Notifier::WINDOW);
    if t.healthy == t.told_healthy || quiet {
        return None;
    }
    t.told_healthy = t.healthy;
    t.last_health_notice = Some(now);
    Some(if t.healthy {
        Notice {
            summary: format!("{k} is healthy again"),
            body: "Its health check passes.".into(),
            urgency: Urgency::Normal,
            screen: Screen::Overview,
            failure: false,
            about: Some(k.clone()),
        }
    } else {
        Notice {
            summary: format!("{k} is unhealthy"),
            body: match t.health_detail.as_deref() {
                Some(d) if !d.is_empty() => format!("Its health check fails: {d}"),
                _ => "Its health check fails.".into(),
            },
            urgency: Urgency::Critical,
            screen: Screen::Logs(k.clone()),
            failure: true,
            about: Some(k.clone()),
        }
    })
}

/// "Last exit: exit code 3. ", from the last exit.
fn reason(e: Option<ExitReason>) -> String {
    e.map(|e| format!("Last exit: {e}. ")).unwrap_or_default()
}

/// Makes more than [`Notifier::MAX_AT_ONCE`] notices one: what arrived together (a burst of
/// events, one tick) goes through here once.
pub fn coalesce(notices: Vec<Notice>) -> Vec<Notice> {
    if notices.len() <= Notifier::MAX_AT_ONCE {
        return notices;
    }
    let urgency = notices
        .iter()
        .map(|n| n.urgency)
        .max()
        .unwrap_or(Urgency::Normal);
    let mut body: Vec<&str> = notices.iter().take(5).map(|n| n.summary.as_str()).collect();
    let more = notices.len().saturating_sub(5);
    let more_line = format!("and {more} more");
    if more > 0 {
        body.push(&more_line);
    }
    vec![Notice {
        summary: format!("{} things need attention", notices.len()),
        body: body.join("\n"),
        urgency,
        screen: Screen::Overview,
        failure: false,
        about: None,
    }]
}

/// "1 added, 2 restarted, 7 unchanged." and whether the agent must restart.
fn config_applied_body(
    added: usize,
    removed: usize,
    restarted: usize,
    unchanged: usize,
    settings: &[String],
    agent_restart: bool,
) -> String {
    let parts: Vec<String> = [
        (added, "added"),
        (removed, "removed"),
        (restarted, "restarted"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    let mut body = if parts.is_empty() {
        "No service changed".to_owned()
    } else {
        parts.join(", ")
    };
    body.push_str(&format!(", {unchanged} unchanged."));
    if !settings.is_empty() {
        body.push_str(&format!(" Applied from now on: {}.", settings.join("; ")));
    }
    if agent_restart {
        body.push_str(" Agent options apply when the agent restarts.");
    }
    body
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ServiceKey {
        ServiceKey::new("app", "production", "web")
    }

    fn state(from: ServiceState, to: ServiceState, restarts: u64) -> Event {
        Event {
            count: 1,
            last_time: None,
            time: String::new(),
            subject: Subject::Service(key()),
            kind: EventKind::State {
                from,
                to,
                pid: None,
                exit: matches!(to, BackingOff | Failed | Crashed).then_some(ExitReason::Code(3)),
                restarts,
                message: None,
            },
        }
    }

    fn health(h: Health) -> Event {
        Event {
            count: 1,
            last_time: None,
            time: String::new(),
            subject: Subject::Service(key()),
            kind: EventKind::Health {
                health: h,
                message: None,
            },
        }
    }

    fn env_event(kind: EventKind) -> Event {
        Event {
            count: 1,
            last_time: None,
            time: String::new(),
            subject: Subject::env("clauset", "production"),
            kind,
        }
    }

    use ServiceState::*;

    #[test]
    fn outside_production_only_failures_are_told_and_quietly_and_none_means_none() {
        let beta = ServiceKey::new("app", "beta", "web");
        let on = |ev: &mut Event| ev.subject = Subject::Service(beta.clone());
        let mut n = Notifier::new();
        let t0 = Instant::now();
        // A crash loop in beta: told (a crash is a failure), quietly, one bubble that updates.
        let mut crash = state(Healthy, BackingOff, 1);
        on(&mut crash);
        let got = n.on_event(&crash, t0);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].urgency, Urgency::Normal, "beta is not production");
        assert_eq!(
            got[0].about.as_ref(),
            Some(&beta),
            "it replaces beta/web's last notice"
        );
        // Healthy again is good news: not told under the default "failures".
        let mut fine = health(Health::Healthy);
        on(&mut fine);
        let mut sick = health(Health::Unhealthy);
        on(&mut sick);
        assert_eq!(n.on_event(&sick, t0).len(), 1);
        assert!(n.on_event(&fine, t0 + Notifier::WINDOW * 2).is_empty());
        // A backup made in beta is not news either; production's is.
        let done = |subject: Subject| Event {
            count: 1,
            last_time: None,
            time: String::new(),
            subject,
            kind: EventKind::BackupFinished {
                id: 1,
                trigger: BackupTrigger::Manual,
                size: 1,
                duration_ms: 1,
                verified: true,
            },
        };
        assert!(
            n.on_event(&done(Subject::env("app", "beta")), t0)
                .is_empty()
        );
        assert_eq!(
            n.on_event(&done(Subject::env("app", "production")), t0)
                .len(),
            1
        );
        // notify = "none": nothing at all.
        let mut quiet = ServiceStatus {
            key: beta.clone(),
            state: Healthy,
            health: Health::Healthy,
            pid: None,
            uptime_secs: None,
            state_secs: None,
            restarts: 0,
            last_exit: None,
            message: None,
            cpu_percent: None,
            rss_bytes: None,
            port: None,
            url: None,
            autostart: false,
            log_file: None,
            ports: Default::default(),
            instance: None,
            retry_in_secs: None,
            notify: NotifyPolicy::None,
        };
        n.policies(std::slice::from_ref(&quiet));
        let mut gave_up = state(BackingOff, Failed, 5);
        on(&mut gave_up);
        assert!(n.on_event(&gave_up, t0 + Notifier::WINDOW * 3).is_empty());
        // notify = "all" in beta: good news too, still quiet.
        quiet.notify = NotifyPolicy::All;
        n.policies(&[quiet]);
        let got = n.on_event(&done(Subject::env("app", "beta")), t0);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].urgency, Urgency::Normal);
    }

    #[test]
    fn a_refused_start_says_why_it_could_not_start_not_that_it_gave_up() {
        let mut n = Notifier::new();
        let mut ev = state(Starting, Failed, 0);
        if let EventKind::State { message, .. } = &mut ev.kind {
            *message = Some("port 23040 is already in use by pid 2894 (python3)".into());
        }
        let got = n.on_event(&ev, Instant::now());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].summary, "app/production/web could not start");
        assert_eq!(
            got[0].body,
            "port 23040 is already in use by pid 2894 (python3)."
        );
        assert!(!got[0].body.contains("crashed") && !got[0].body.contains("Last exit"));
    }

    #[test]
    fn a_crash_and_restart_is_one_normal_notice_that_opens_the_logs() {
        let mut n = Notifier::new();
        let t0 = Instant::now();
        let mut got = n.on_event(&state(Healthy, BackingOff, 1), t0);
        got.extend(n.on_event(&state(BackingOff, Starting, 1), t0));
        got.extend(n.on_event(&state(Starting, Healthy, 1), t0));
        got.extend(n.tick(t0 + Duration::from_secs(120)));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].summary, "app/production/web crashed");
        assert_eq!(
            got[0].body,
            "Last exit: exit code 3. Homeport is restarting it (restart 1)."
        );
        assert_eq!(got[0].urgency, Urgency::Normal);
        assert_eq!(got[0].screen.fragment(), "#/logs?target=app/production/web");
    }

    #[test]
    fn a_crash_loop_is_one_notice_per_minute_then_the_give_up() {
        // Fifty crashes, one every 2 s, then the agent gives up.
        let mut n = Notifier::new();
        let t0 = Instant::now();
        let mut got = Vec::new();
        for r in 1..=50u64 {
            let at = t0 + Duration::from_secs(2 * r);
            got.extend(n.on_event(&state(Running, BackingOff, r), at));
            got.extend(n.on_event(&state(BackingOff, Starting, r), at));
            got.extend(n.on_event(&state(Starting, Running, r), at));
            got.extend(n.tick(at));
        }
        got.extend(n.on_event(&state(Running, Failed, 50), t0 + Duration::from_secs(102)));
        let summaries: Vec<&str> = got.iter().map(|n| n.summary.as_str()).collect();
        // The first crash at once; the ones in the next minute counted into one more notice;
        // the give-up at once.
        assert_eq!(
            summaries,
            [
                "app/production/web crashed",
                "app/production/web crashed 30 times",
                "app/production/web gave up"
            ],
            "{got:#?}"
        );
        assert_eq!(got[2].urgency, Urgency::Critical);
        assert!(got[2].body.contains("crashed 50 times"), "{}", got[2].body);
    }

    #[test]
    fn a_crash_without_restart_is_critical_and_said_once() {
        let mut n = Notifier::new();
        let t0 = Instant::now();
        let got = n.on_event(&state(Running, Crashed, 0), t0);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].urgency, Urgency::Critical);
        assert!(got[0].body.contains("leaves it down"));
        assert!(n.tick(t0 + Duration::from_secs(300)).is_empty());
    }

    #[test]
    fn stopping_a_service_is_not_news() {
        let mut n = Notifier::new();
        let t0 = Instant::now();
        assert!(n.on_event(&state(Healthy, Stopping, 0), t0).is_empty());
        assert!(n.on_event(&state(Stopping, Stopped, 0), t0).is_empty());
        assert!(n.tick(t0 + Duration::from_secs(300)).is_empty());
    }

    #[test]
    fn health_lost_and_recovered_and_flapping_is_quiet() {
        let mut n = Notifier::new();
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let lost = n.on_event(&health(Health::Unhealthy), at(2));
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].summary, "app/production/web is unhealthy");
        // Recovery within the window of the loss is held back...
        assert!(n.on_event(&health(Health::Healthy), at(4)).is_empty());
        assert!(n.tick(at(30)).is_empty());
        // ...and told once the window has passed.
        let later = n.tick(at(70));
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].summary, "app/production/web is healthy again");
        // A flap that is back where it was told by the end of the window says nothing.
        assert!(n.on_event(&health(Health::Unhealthy), at(72)).is_empty());
        assert!(n.on_event(&health(Health::Healthy), at(74)).is_empty());
        assert!(n.tick(at(200)).is_empty());
    }

    #[test]
    fn many_notices_at_once_become_one() {
        let mut n = Notifier::new();
        let t0 = Instant::now();
        let mut got = Vec::new();
        for name in ["a", "b", "c", "d", "e", "f", "g"] {
            let mut ev = state(Healthy, BackingOff, 1);
            ev.subject = Subject::Service(ServiceKey::new("app", "production", name));
            got.extend(n.on_event(&ev, t0));
        }
        let got = coalesce(got);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].summary, "7 things need attention");
        assert!(got[0].body.ends_with("and 2 more"), "{}", got[0].body);
        assert_eq!(got[0].screen, Screen::Overview);
    }

    #[test]
    fn deploy_backup_restore_and_config_outcomes() {
        let mut n = Notifier::new();
        let now = Instant::now();
        let finished = |result, error: Option<&str>| {
            env_event(EventKind::DeployFinished {
                id: 1,
                kind: DeployKind::Deploy,
                result,
                release: Some("r2".into()),
                previous: Some("r1".into()),
                error: error.map(str::to_owned),
                discarded: vec![],
            })
        };
        let ok = n.on_event(&finished(DeployResult::Succeeded, None), now);
        assert_eq!(ok[0].summary, "Deploy of clauset/production succeeded");
        assert_eq!(ok[0].body, "r2 is live");
        let bad = n.on_event(
            &finished(DeployResult::Failed, Some("health check failed")),
            now,
        );
        assert_eq!(bad[0].summary, "Deploy of clauset/production failed");
        assert_eq!(bad[0].body, "health check failed. r1 is still serving.");
        assert_eq!(bad[0].urgency, Urgency::Critical);
        assert_eq!(bad[0].screen, Screen::Deploys);
        // What a rollback discarded is told with where it is kept.
        let lost = env_event(EventKind::DeployFinished {
            id: 2,
            kind: DeployKind::Deploy,
            result: DeployResult::Failed,
            release: Some("r2".into()),
            previous: Some("r1".into()),
            error: Some("health gate failed".into()),
            discarded: vec![homeport_types::Discarded {
                database: "main".into(),
                path: "/srv/main.db".into(),
                rows: Some(3),
                tables: vec![],
                backup: Some(9),
                copy: "/data/backups/safety/x/main.db.zst".into(),
                server: false,
            }],
        });
        let told = n.on_event(&lost, now);
        assert!(
            told[0].body.ends_with(
                "3 rows of main written since the backup are kept in /data/backups/safety/x/main.db.zst."
            ),
            "{}",
            told[0].body
        );

        let done = |trigger| {
            env_event(EventKind::BackupFinished {
                id: 3,
                trigger,
                size: 2048,
                duration_ms: 1500,
                verified: true,
            })
        };
        let got = n.on_event(&done(BackupTrigger::Scheduled), now);
        assert_eq!(
            got[0].summary,
            "Scheduled backup of clauset/production done"
        );
        assert_eq!(got[0].body, "2.0 KB in 1.5 s, verified");
        assert!(n.on_event(&done(BackupTrigger::PreDeploy), now).is_empty());
        let failed = n.on_event(
            &env_event(EventKind::BackupFailed {
                trigger: BackupTrigger::Scheduled,
                error: "disk full".into(),
            }),
            now,
        );
        assert_eq!(
            failed[0].summary,
            "Scheduled backup of clauset/production failed"
        );
        assert_eq!(failed[0].urgency, Urgency::Critical);
        assert_eq!(failed[0].screen, Screen::Backups);
        let restored = n.on_event(
            &env_event(EventKind::RestoreFinished {
                backup: 3,
                restored: vec!["/d/main.db".into()],
                safety_copies: vec!["/s/main.db".into()],
            }),
            now,
        );
        assert_eq!(
            restored[0].summary,
            "clauset/production restored from backup 3"
        );
        let rejected = n.on_event(
            &Event {
                count: 1,
                last_time: None,
                time: String::new(),
                subject: Subject::Agent,
                kind: EventKind::ConfigRejected {
                    file: "/h/homeport.toml".into(),
                    line: 12,
                    column: 8,
                    field: "apps.a.env.p.services.web.port".into(),
                    message: "port 80000 is out of range".into(),
                    problems: 1,
                    source: ConfigSource::Watch,
                },
            },
            now,
        );
        assert_eq!(
            rejected[0].summary,
            "homeport.toml has a mistake: not applied"
        );
        assert_eq!(
            rejected[0].body,
            "homeport.toml:12:8: apps.a.env.p.services.web.port: port 80000 is out of range. The agent keeps running the config it had; fix the file and save it again."
        );
        assert_eq!(rejected[0].urgency, Urgency::Critical);
        let applied = n.on_event(
            &Event {
                count: 1,
                last_time: None,
                time: String::new(),
                subject: Subject::Agent,
                kind: EventKind::ConfigApplied {
                    source: ConfigSource::Reload,
                    added: vec![key()],
                    removed: vec![],
                    restarted: vec![key(), key()],
                    unchanged: 7,
                    settings: vec!["a/p: health_stable".into()],
                    needs_agent_restart: false,
                },
            },
            now,
        );
        assert_eq!(applied[0].summary, "Config applied on `homeport reload`");
        assert_eq!(
            applied[0].body,
            "1 added, 2 restarted, 7 unchanged. Applied from now on: a/p: health_stable."
        );
        assert_eq!(human_size(3 * 1024 * 1024 / 2), "1.5 MB");
    }

    #[test]
    fn an_automatic_update_is_one_notice_not_two() {
        let mut n = Notifier::new();
        let now = Instant::now();
        let started = env_event(EventKind::AutoUpdateStarted {
            commit: "1a2b3c4d5e6f".into(),
            commits: 3,
        });
        assert!(n.on_event(&started, now).is_empty());
        let deploy_done = env_event(EventKind::DeployFinished {
            id: 4,
            kind: DeployKind::Update,
            result: DeployResult::Succeeded,
            release: Some("r3".into()),
            previous: Some("r2".into()),
            error: None,
            discarded: vec![],
        });
        assert!(
            n.on_event(&deploy_done, now).is_empty(),
            "the update's own notice tells it"
        );
        let finished = |result, paused| {
            env_event(EventKind::AutoUpdateFinished {
                id: Some(4),
                result,
                commit: "1a2b3c4d5e6f".into(),
                version: Some("1.5.0".into()),
                commits: 3,
                previous: Some("9f8e7d6".into()),
                step: (result == DeployResult::Failed).then(|| "health gate".into()),
                error: (result == DeployResult::Failed)
                    .then(|| "web is unhealthy; switched back to r2".into()),
                paused,
            })
        };
        let ok = n.on_event(&finished(DeployResult::Succeeded, false), now);
        assert_eq!(ok.len(), 1);
        assert_eq!(
            ok[0].summary,
            "clauset/production updated to 1a2b3c4 (3 commits)"
        );
        assert_eq!(ok[0].body, "Version 1.5.0 is live.");
        // Once the update is told, a deploy by hand is told as before.
        assert_eq!(n.on_event(&deploy_done, now).len(), 1);

        // A failed update whose rollback put the database back says what that discarded and
        // where it is kept, as a deploy by hand does.
        n.on_event(&started, now);
        let rolled_back = env_event(EventKind::DeployFinished {
            id: 5,
            kind: DeployKind::Update,
            result: DeployResult::Failed,
            release: Some("r4".into()),
            previous: Some("r3".into()),
            error: Some("web is unhealthy".into()),
            discarded: vec![homeport_types::Discarded {
                database: "main".into(),
                path: "/srv/main.db".into(),
                rows: Some(2),
                tables: vec![],
                backup: Some(11),
                copy: "/data/backups/safety/y/main.db.zst".into(),
                server: false,
            }],
        });
        assert!(n.on_event(&rolled_back, now).is_empty());
        let bad = n.on_event(&finished(DeployResult::Failed, true), now);
        assert_eq!(bad.len(), 1);
        assert_eq!(
            bad[0].summary,
            "clauset/production: update to 1a2b3c4 failed at the health gate; 9f8e7d6 still serves"
        );
        assert!(bad[0].body.contains("paused"), "{}", bad[0].body);
        assert!(
            bad[0].body.contains(
                "2 rows of main written since the backup are kept in /data/backups/safety/y/main.db.zst."
            ),
            "{}",
            bad[0].body
        );
        assert_eq!(bad[0].urgency, Urgency::Critical);
        let refused = n.on_event(
            &env_event(EventKind::AutoUpdateRefused {
                reason: "/src has uncommitted changes".into(),
            }),
            now,
        );
        assert_eq!(refused[0].body, "/src has uncommitted changes");
    }
}
