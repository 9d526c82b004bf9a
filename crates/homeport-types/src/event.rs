//! What happened, as the agent publishes and records it: one [`Event`] for every outcome —
//! service states and health, deploys and their steps, backups, restores, config edits, the
//! agent starting and stopping. The hub records each in state.db and broadcasts it on
//! `/api/v1/events/stream`; clients map events to what they show and never re-derive outcomes
//! by polling history.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{
    BackupTrigger, ConfigSource, DeployKind, DeployResult, ExitReason, Health, HostState,
    ServiceKey, ServiceState, StepStatus, Target, Verdict,
};

/// Something that happened, to whom, and when.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 UTC time (of the first time, when `count` > 1).
    pub time: String,
    pub subject: Subject,
    #[serde(flatten)]
    pub kind: EventKind,
    /// How many times this happened in a row. state.db records transitions, not repetitions:
    /// a service that stays unhealthy is one row whose count grows, and a crash loop one group
    /// of rows (started → running → crashed → restarting), each counting its rounds. Live
    /// events are always 1.
    #[serde(default = "one")]
    pub count: u64,
    /// RFC 3339 UTC time of the last time, when `count` > 1; the event's fields are the last
    /// time's (pid, restarts, message).
    #[serde(default)]
    pub last_time: Option<String>,
}

fn one() -> u64 {
    1
}

impl Event {
    /// An event of `subject` now.
    pub fn now(subject: Subject, kind: EventKind, time: String) -> Self {
        Event {
            time,
            subject,
            kind,
            count: 1,
            last_time: None,
        }
    }

    /// The service this event is about, if it is about one.
    pub fn service(&self) -> Option<&ServiceKey> {
        match &self.subject {
            Subject::Service(k) => Some(k),
            _ => None,
        }
    }
}

/// Whom an event is about. Written as a string: `@agent`, `APP`, `APP/ENV` or
/// `APP/ENV/SERVICE` (names never contain `@` or `/`, so the forms cannot be confused).
#[cfg_attr(test, derive(ts_rs::TS), ts(type = "string"))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// The agent itself (its start and stop, config edits).
    Agent,
    App(String),
    /// An environment: deploys, backups, restores.
    Env {
        app: String,
        env: String,
    },
    Service(ServiceKey),
}

/// How the agent is written as a [`Subject`].
pub const AGENT_SUBJECT: &str = "@agent";

impl Subject {
    pub fn env(app: impl Into<String>, env: impl Into<String>) -> Self {
        Subject::Env {
            app: app.into(),
            env: env.into(),
        }
    }

    /// The environment this subject is in or is (`None` for the agent and an app).
    pub fn env_of(&self) -> Option<(&str, &str)> {
        match self {
            Subject::Env { app, env } => Some((app, env)),
            Subject::Service(k) => Some((&k.app, &k.env)),
            _ => None,
        }
    }

    /// Whether a history query for `target` includes this subject: the agent's events belong
    /// to `all` only; an app's include its environments' and services'.
    pub fn within(&self, target: &Target) -> bool {
        match (target, self) {
            (Target::All, _) => true,
            (_, Subject::Agent) => false,
            (Target::App(a), Subject::App(b)) => a == b,
            (Target::App(a), s) => s.env_of().is_some_and(|(app, _)| app == a),
            (Target::Env(a, e), s) => s.env_of() == Some((a.as_str(), e.as_str())),
            (Target::Service(k), Subject::Service(s)) => k == s,
            (Target::Service(_), _) => false,
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Agent => f.write_str(AGENT_SUBJECT),
            Subject::App(a) => f.write_str(a),
            Subject::Env { app, env } => write!(f, "{app}/{env}"),
            Subject::Service(k) => k.fmt(f),
        }
    }
}

impl FromStr for Subject {
    type Err = crate::TargetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == AGENT_SUBJECT {
            return Ok(Subject::Agent);
        }
        match s.parse::<Target>()? {
            Target::All => Err(crate::TargetParseError(s.to_owned())),
            Target::App(a) => Ok(Subject::App(a)),
            Target::Env(app, env) => Ok(Subject::Env { app, env }),
            Target::Service(k) => Ok(Subject::Service(k)),
        }
    }
}

impl Serialize for Subject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What happened. The `type` tag names the kind in JSON and in state.db.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum EventKind {
    /// A service moved from one state to another.
    State {
        from: ServiceState,
        to: ServiceState,
        pid: Option<u32>,
        exit: Option<ExitReason>,
        /// Restarts so far, counting the one this transition may begin.
        restarts: u64,
        message: Option<String>,
    },
    /// A service's health probe result differed from the previous one.
    Health {
        health: Health,
        message: Option<String>,
    },
    /// A deploy, promote, rollback or update of an environment began.
    DeployStarted {
        /// The deploy's id in the history (`GET /api/v1/deploys`).
        id: i64,
        kind: DeployKind,
    },
    /// A step of a deploy began or ended.
    DeployStep {
        id: i64,
        kind: DeployKind,
        step: String,
        status: StepStatus,
        ms: Option<u64>,
        detail: Option<String>,
    },
    /// A deploy ended.
    DeployFinished {
        id: i64,
        kind: DeployKind,
        result: DeployResult,
        /// The release it rolled out, when it got that far.
        release: Option<String>,
        /// The release live before it (still serving when it failed).
        previous: Option<String>,
        error: Option<String>,
        /// Data its rollback discarded, and where it is kept (see [`crate::Discarded`]).
        #[serde(default)]
        discarded: Vec<crate::Discarded>,
    },
    /// A backup of an environment was made and verified.
    BackupFinished {
        id: i64,
        trigger: BackupTrigger,
        size: u64,
        duration_ms: u64,
        verified: bool,
    },
    /// A backup of an environment could not be made (a scheduled one too).
    BackupFailed {
        trigger: BackupTrigger,
        error: String,
    },
    /// An environment's databases were put back from a backup.
    RestoreFinished {
        backup: i64,
        restored: Vec<String>,
        safety_copies: Vec<String>,
    },
    /// A restore failed; `error` says what was put back.
    RestoreFailed { backup: Option<i64>, error: String },
    /// The config file was applied: services added, removed, restarted (see
    /// [`crate::ConfigApplied`] for every field).
    ConfigApplied {
        #[serde(default)]
        source: ConfigSource,
        #[serde(default)]
        added: Vec<ServiceKey>,
        #[serde(default)]
        removed: Vec<ServiceKey>,
        restarted: Vec<ServiceKey>,
        /// How many services were left alone.
        #[serde(default)]
        unchanged: usize,
        /// Settings of environments and apps that apply from now on
        /// (`shop/production: health_stable`).
        #[serde(default)]
        settings: Vec<String>,
        needs_agent_restart: bool,
    },
    /// An edit of the config was refused; nothing changed, and the agent keeps the config it
    /// had. The first problem, located.
    ConfigRejected {
        file: String,
        line: usize,
        column: usize,
        field: String,
        message: String,
        /// How many problems in all.
        problems: usize,
        #[serde(default)]
        source: ConfigSource,
    },
    /// An environment's automatic update began: its app's upstream has `commits` commits up to
    /// `commit` that the environment does not run. Its deploy's events follow.
    AutoUpdateStarted { commit: String, commits: u32 },
    /// An automatic update ended.
    AutoUpdateFinished {
        /// Its deploy in the history, when one began.
        id: Option<i64>,
        result: DeployResult,
        /// The commit it rolled out or tried to.
        commit: String,
        /// That commit's version, when a release was staged.
        version: Option<String>,
        commits: u32,
        /// The short commit the environment ran before (still running when it failed).
        previous: Option<String>,
        /// The step that failed.
        step: Option<String>,
        error: Option<String>,
        /// This failure paused the environment's automatic updates.
        paused: bool,
    },
    /// The upstream has new commits, but the environment cannot be updated automatically (a
    /// dirty or diverged checkout); told once per reason.
    AutoUpdateRefused { reason: String },
    /// Someone resumed an environment's paused automatic updates.
    AutoUpdatesResumed,
    /// The agent started (or restarted and re-adopted its services).
    AgentStarted { version: String, pid: u32 },
    /// The agent is stopping on request.
    AgentStopping,
    /// The connection to another host changed: connected, its agent down, or unreachable
    /// (`reason` says why, in words); or, while connected, the level of its agent's verdict
    /// changed (`overall`: healthy, degraded, down).
    Host {
        host: String,
        state: HostState,
        reason: Option<String>,
        #[serde(default)]
        overall: Option<Verdict>,
    },
}

impl EventKind {
    /// The `type` tag of this kind, as JSON and state.db write it.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::State { .. } => "state",
            EventKind::Health { .. } => "health",
            EventKind::DeployStarted { .. } => "deploy_started",
            EventKind::DeployStep { .. } => "deploy_step",
            EventKind::DeployFinished { .. } => "deploy_finished",
            EventKind::BackupFinished { .. } => "backup_finished",
            EventKind::BackupFailed { .. } => "backup_failed",
            EventKind::RestoreFinished { .. } => "restore_finished",
            EventKind::RestoreFailed { .. } => "restore_failed",
            EventKind::ConfigApplied { .. } => "config_applied",
            EventKind::ConfigRejected { .. } => "config_rejected",
            EventKind::AutoUpdateStarted { .. } => "auto_update_started",
            EventKind::AutoUpdateFinished { .. } => "auto_update_finished",
            EventKind::AutoUpdateRefused { .. } => "auto_update_refused",
            EventKind::AutoUpdatesResumed => "auto_updates_resumed",
            EventKind::AgentStarted { .. } => "agent_started",
            EventKind::AgentStopping => "agent_stopping",
            EventKind::Host { .. } => "host",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_print_parse_and_scope() {
        for s in ["@agent", "shop", "shop/beta", "shop/beta/web"] {
            let subject: Subject = s.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(subject.to_string(), s);
        }
        assert!("all".parse::<Subject>().is_err());
        let web = Subject::Service(ServiceKey::new("shop", "beta", "web"));
        let beta = Subject::env("shop", "beta");
        let t = |s: &str| s.parse::<Target>().unwrap_or_else(|e| panic!("{e}"));
        assert!(web.within(&t("shop")) && web.within(&t("shop/beta")));
        assert!(beta.within(&t("shop/beta")) && beta.within(&t("all")));
        assert!(!beta.within(&t("shop/beta/web")) && !beta.within(&t("shop/production")));
        assert!(Subject::Agent.within(&Target::All) && !Subject::Agent.within(&t("shop")));
    }

    #[test]
    fn events_are_flat_json_with_a_type_tag() -> Result<(), serde_json::Error> {
        let ev = Event {
            count: 1,
            last_time: None,
            time: "2026-12-01T10:00:00Z".into(),
            subject: Subject::env("shop", "production"),
            kind: EventKind::DeployFinished {
                id: 7,
                kind: DeployKind::Promote,
                result: DeployResult::Failed,
                release: Some("r2".into()),
                previous: Some("r1".into()),
                error: Some("health gate: web is crashed".into()),
                discarded: vec![],
            },
        };
        let json = serde_json::to_value(&ev)?;
        assert_eq!(json["type"], "deploy_finished");
        assert_eq!(json["subject"], "shop/production");
        assert_eq!(json["result"], "failed");
        assert_eq!(ev.kind.name(), "deploy_finished");
        assert_eq!(serde_json::from_value::<Event>(json)?, ev);
        Ok(())
    }
}
