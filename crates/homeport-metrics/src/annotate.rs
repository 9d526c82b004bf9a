//! The events worth a mark on a chart, each as one [`Annotation`].

use std::collections::HashMap;
use std::time::UNIX_EPOCH;

use homeport_types::{
    Annotation, AnnotationKind, BackupTrigger, DeployKind, DeployResult, Event, EventKind, Health,
    ServiceState, Subject,
};

/// Event kinds that can give an annotation (what the store is asked for).
pub const KINDS: &[&str] = &[
    "state",
    "health",
    "deploy_finished",
    "backup_finished",
    "backup_failed",
    "restore_finished",
    "restore_failed",
    "agent_started",
];

/// Service states whose arrival can give an annotation.
pub const STATES: &[ServiceState] = &[
    ServiceState::BackingOff,
    ServiceState::Crashed,
    ServiceState::Failed,
    ServiceState::Stopped,
];

/// Annotations of `events` (oldest first). A health check passing is marked only when it failed
/// before (in these events): every start makes a service healthy, which is no news.
pub fn annotations(events: &[Event]) -> Vec<Annotation> {
    let mut failing: HashMap<&Subject, bool> = HashMap::new();
    let mut out = Vec::new();
    for ev in events {
        let Some(at) = seconds(&ev.time) else {
            continue;
        };
        // A run of the same event (a crash loop's rounds) is one row of history: one mark
        // that says how many times.
        let mark = |kind: AnnotationKind, label: String| Annotation {
            time: ev.time.clone(),
            at,
            subject: ev.subject.clone(),
            kind,
            label: if ev.count > 1 {
                format!("{label} (×{})", ev.count)
            } else {
                label
            },
        };
        let made = match &ev.kind {
            EventKind::State {
                from,
                to,
                exit,
                message,
                ..
            } => match to {
                ServiceState::BackingOff => Some(mark(
                    AnnotationKind::Restart,
                    match exit {
                        Some(e) => format!("{e}; restarted"),
                        None => "ended; restarted".to_owned(),
                    },
                )),
                ServiceState::Crashed => Some(mark(
                    AnnotationKind::Crash,
                    match exit {
                        Some(e) => format!("{e}; stays down"),
                        None => "crashed; stays down".to_owned(),
                    },
                )),
                ServiceState::Failed => Some(mark(
                    AnnotationKind::Crash,
                    message.clone().unwrap_or_else(|| "failed".to_owned()),
                )),
                ServiceState::Stopped if *from != ServiceState::Starting => {
                    Some(mark(AnnotationKind::Stop, "stopped".to_owned()))
                }
                _ => None,
            },
            EventKind::Health { health, message } => {
                let was_failing = failing.insert(&ev.subject, *health == Health::Unhealthy);
                match health {
                    Health::Unhealthy if was_failing != Some(true) => Some(mark(
                        AnnotationKind::Unhealthy,
                        match message {
                            Some(m) => format!("unhealthy: {m}"),
                            None => "unhealthy".to_owned(),
                        },
                    )),
                    Health::Healthy if was_failing == Some(true) => {
                        Some(mark(AnnotationKind::Healthy, "healthy again".to_owned()))
                    }
                    _ => None,
                }
            }
            EventKind::DeployFinished {
                kind,
                result,
                release,
                error,
                ..
            } => {
                let what = deploy_word(*kind);
                let release = release.as_deref().unwrap_or("a release");
                match result {
                    DeployResult::Succeeded if *kind == DeployKind::Rollback => Some(mark(
                        AnnotationKind::Rollback,
                        format!("rolled back to {release}"),
                    )),
                    DeployResult::Succeeded => Some(mark(
                        AnnotationKind::Deploy,
                        format!("{what} of {release} went live"),
                    )),
                    DeployResult::Failed | DeployResult::Interrupted => Some(mark(
                        AnnotationKind::DeployFailed,
                        match error {
                            Some(e) => format!("{what} failed: {e}"),
                            None => format!("{what} {}", result.as_str()),
                        },
                    )),
                    DeployResult::Running => None,
                }
            }
            EventKind::BackupFinished { id, trigger, .. } => Some(mark(
                AnnotationKind::Backup,
                format!("{} backup {id}", trigger_word(*trigger)),
            )),
            EventKind::BackupFailed { trigger, error } => Some(mark(
                AnnotationKind::BackupFailed,
                format!("{} backup failed: {error}", trigger_word(*trigger)),
            )),
            EventKind::RestoreFinished { backup, .. } => Some(mark(
                AnnotationKind::Restore,
                format!("restored from backup {backup}"),
            )),
            EventKind::RestoreFailed { error, .. } => Some(mark(
                AnnotationKind::RestoreFailed,
                format!("restore failed: {error}"),
            )),
            EventKind::AgentStarted { version, .. } => Some(mark(
                AnnotationKind::AgentStarted,
                format!("agent {version} started"),
            )),
            _ => None,
        };
        out.extend(made);
    }
    out
}

fn deploy_word(kind: DeployKind) -> &'static str {
    match kind {
        DeployKind::Deploy => "deploy",
        DeployKind::Promote => "promotion",
        DeployKind::Rollback => "rollback",
        DeployKind::Update => "update",
    }
}

fn trigger_word(t: BackupTrigger) -> &'static str {
    match t {
        BackupTrigger::Manual => "manual",
        BackupTrigger::Scheduled => "scheduled",
        BackupTrigger::PreDeploy => "pre-deploy",
        BackupTrigger::Safety => "safety",
    }
}

/// Unix seconds of an RFC 3339 time.
pub fn seconds(rfc3339: &str) -> Option<f64> {
    let t = humantime::parse_rfc3339_weak(rfc3339.trim_end_matches('Z')).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use homeport_types::{ExitReason, ServiceKey};

    fn ev(time: &str, subject: Subject, kind: EventKind) -> Event {
        Event::now(subject, kind, time.into())
    }

    fn state(from: ServiceState, to: ServiceState, exit: Option<ExitReason>) -> EventKind {
        EventKind::State {
            from,
            to,
            pid: None,
            exit,
            restarts: 1,
            message: None,
        }
    }

    #[test]
    fn restarts_deploys_backups_and_health_flips_are_marked() {
        let web = Subject::Service(ServiceKey::new("shop", "production", "web"));
        let env = Subject::env("shop", "production");
        let health = |h: Health| EventKind::Health {
            health: h,
            message: (h == Health::Unhealthy).then(|| "GET /health: HTTP 503".to_owned()),
        };
        let events = vec![
            ev(
                "2026-03-01T10:00:00.000001Z",
                web.clone(),
                health(Health::Healthy),
            ),
            ev(
                "2026-03-01T10:01:00Z",
                web.clone(),
                state(
                    ServiceState::Healthy,
                    ServiceState::BackingOff,
                    Some(ExitReason::Code(3)),
                ),
            ),
            ev(
                "2026-03-01T10:01:01Z",
                web.clone(),
                state(ServiceState::BackingOff, ServiceState::Starting, None),
            ),
            ev(
                "2026-03-01T10:02:00Z",
                web.clone(),
                health(Health::Unhealthy),
            ),
            ev(
                "2026-03-01T10:02:05Z",
                web.clone(),
                health(Health::Unhealthy),
            ),
            ev("2026-03-01T10:03:00Z", web.clone(), health(Health::Healthy)),
            ev(
                "2026-03-01T11:00:00.5Z",
                env.clone(),
                EventKind::DeployFinished {
                    id: 4,
                    kind: DeployKind::Deploy,
                    result: DeployResult::Succeeded,
                    release: Some("r42".into()),
                    previous: Some("r41".into()),
                    error: None,
                    discarded: vec![],
                },
            ),
            ev(
                "2026-03-01T12:00:00Z",
                env.clone(),
                EventKind::DeployFinished {
                    id: 5,
                    kind: DeployKind::Rollback,
                    result: DeployResult::Succeeded,
                    release: Some("r41".into()),
                    previous: Some("r42".into()),
                    error: None,
                    discarded: vec![],
                },
            ),
            ev(
                "2026-03-01T13:00:00Z",
                env,
                EventKind::BackupFailed {
                    trigger: BackupTrigger::Scheduled,
                    error: "disk full".into(),
                },
            ),
            ev(
                "2026-03-01T14:00:00Z",
                web,
                state(ServiceState::Stopping, ServiceState::Stopped, None),
            ),
        ];
        let got: Vec<(AnnotationKind, String)> = annotations(&events)
            .into_iter()
            .map(|a| (a.kind, a.label))
            .collect();
        assert_eq!(
            got,
            vec![
                (AnnotationKind::Restart, "exit code 3; restarted".into()),
                (
                    AnnotationKind::Unhealthy,
                    "unhealthy: GET /health: HTTP 503".into()
                ),
                (AnnotationKind::Healthy, "healthy again".into()),
                (AnnotationKind::Deploy, "deploy of r42 went live".into()),
                (AnnotationKind::Rollback, "rolled back to r41".into()),
                (
                    AnnotationKind::BackupFailed,
                    "scheduled backup failed: disk full".into()
                ),
                (AnnotationKind::Stop, "stopped".into()),
            ]
        );
        assert!(AnnotationKind::Restart.is_bad() && !AnnotationKind::Deploy.is_bad());
    }

    #[test]
    fn times_read_as_unix_seconds() {
        assert_eq!(seconds("1970-01-01T00:01:00Z"), Some(60.0));
        assert_eq!(seconds("1970-01-01T00:01:00.500Z"), Some(60.5));
        assert_eq!(seconds("yesterday"), None);
    }
}
