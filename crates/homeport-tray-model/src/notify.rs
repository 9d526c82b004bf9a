//! Which desktop notifications to show, decided from successive status snapshots: a service
//! crashed and is being restarted, gave up after a crash loop, lost or regained its health; and
//! how deploys and backups ended, whoever started them (the tray, the CLI, the dashboard, a
//! schedule), from the agent's history.
//!
//! Coalesced and rate-limited: per service, at most one crash notice and one health notice per
//! [`Notifier::WINDOW`]; crashes in between are counted into the next notice ("crashed 7 times"),
//! a health change that flips back within the window is never shown, and a crash loop that ends
//! in the agent giving up says so at once. When one poll finds more than
//! [`Notifier::MAX_AT_ONCE`] things to say (say, every service of a restarted agent), [`coalesce`]
//! makes them one notice.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use homeport_types::{
    BackupInfo, BackupTrigger, DeployRecord, ExitReason, Health, ServiceKey, ServiceState,
    ServiceStatus, StatusSnapshot,
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
}

impl Notice {
    /// A backup finished (or could not be made).
    pub fn backup(target: &str, outcome: Result<&BackupInfo, &str>) -> Self {
        match outcome {
            Ok(b) => Notice {
                summary: if b.trigger == BackupTrigger::Scheduled {
                    format!("Scheduled backup of {target} done")
                } else {
                    format!("Backup of {target} done")
                },
                body: format!(
                    "{} in {:.1} s{}",
                    human_size(b.size),
                    b.duration_ms as f64 / 1000.0,
                    if b.verified { ", verified" } else { "" }
                ),
                urgency: Urgency::Normal,
                screen: Screen::Backups,
            },
            Err(e) => Notice {
                summary: format!("Backup of {target} failed"),
                body: e.to_owned(),
                urgency: Urgency::Critical,
                screen: Screen::Backups,
            },
        }
    }

    /// A deploy, promote, rollback or update ended.
    pub fn deploy(record: &DeployRecord) -> Self {
        let what = format!("{} of {}/{}", record.kind.as_str(), record.app, record.env);
        let what = capitalise(&what);
        if record.result == "succeeded" {
            Notice {
                summary: format!("{what} succeeded"),
                body: match &record.release {
                    Some(r) => format!("{r} is live"),
                    None => "done".into(),
                },
                urgency: Urgency::Normal,
                screen: Screen::Deploys,
            }
        } else {
            let error = record.error.as_deref().unwrap_or("no reason given");
            let serving = match &record.previous {
                Some(p) => format!(" {p} is still serving."),
                None => String::new(),
            };
            Notice {
                summary: format!("{what} failed"),
                body: format!("{error}.{serving}"),
                urgency: Urgency::Critical,
                screen: Screen::Deploys,
            }
        }
    }

    /// A start, stop or restart from the menu that the agent or a service refused.
    pub fn action_failed(action: &str, target: &str, error: &str) -> Self {
        Notice {
            summary: format!("Could not {action} {target}"),
            body: error.to_owned(),
            urgency: Urgency::Critical,
            screen: Screen::Overview,
        }
    }

    /// A deploy the agent refused or lost contact with before it produced a record.
    pub fn deploy_error(app: &str, env: &str, kind: &str, error: &str) -> Self {
        Notice {
            summary: capitalise(&format!("{kind} of {app}/{env} failed")),
            body: error.to_owned(),
            urgency: Urgency::Critical,
            screen: Screen::Deploys,
        }
    }
}

/// What the notifier remembers of one service.
#[derive(Debug, Clone)]
struct Track {
    state: ServiceState,
    restarts: u64,
    /// Crashes not yet told.
    pending_crashes: u64,
    last_crash_notice: Option<Instant>,
    /// The health condition last told (or seen first).
    told_healthy: bool,
    last_health_notice: Option<Instant>,
}

/// Turns successive status snapshots into notices.
#[derive(Debug, Default)]
pub struct Notifier {
    tracks: Option<HashMap<ServiceKey, Track>>,
    /// Finished deploys and backups already told, or there before the tray started.
    history: Option<History>,
}

#[derive(Debug, Default)]
struct History {
    deploys: HashSet<i64>,
    backups: HashSet<i64>,
}

impl Notifier {
    /// Per service and kind (crash, health), at most one notice in this long.
    pub const WINDOW: Duration = Duration::from_secs(60);
    /// More notices than this from one poll become one ([`coalesce`]).
    pub const MAX_AT_ONCE: usize = 3;

    pub fn new() -> Self {
        Self::default()
    }

    /// The notices that `status`, seen at `now`, calls for. The first snapshot only sets the
    /// baseline: what was already wrong before the tray started is on its icon, not in a notice.
    pub fn observe(&mut self, status: &StatusSnapshot, now: Instant) -> Vec<Notice> {
        let Some(tracks) = &mut self.tracks else {
            self.tracks = Some(
                status
                    .services
                    .iter()
                    .map(|s| (s.key.clone(), Track::first(s)))
                    .collect(),
            );
            return Vec::new();
        };
        let mut notices = Vec::new();
        for s in &status.services {
            let Some(t) = tracks.get_mut(&s.key) else {
                tracks.insert(s.key.clone(), Track::first(s));
                continue;
            };
            notices.extend(t.crash_notice(s, now));
            notices.extend(t.health_notice(s, now));
            t.state = s.state;
            t.restarts = s.restarts;
        }
        tracks.retain(|k, _| status.services.iter().any(|s| &s.key == k));
        notices
    }

    /// The notices that the agent's history of deploys and backups calls for: one per deploy
    /// that finished and per backup made since the first call (which sets the baseline).
    /// Backups taken by a deploy are told by the deploy's notice.
    pub fn observe_history(
        &mut self,
        deploys: &[DeployRecord],
        backups: &[BackupInfo],
    ) -> Vec<Notice> {
        let finished = deploys.iter().filter(|d| d.finished.is_some());
        let Some(told) = &mut self.history else {
            self.history = Some(History {
                deploys: finished.map(|d| d.id).collect(),
                backups: backups.iter().map(|b| b.id).collect(),
            });
            return Vec::new();
        };
        let mut notices = Vec::new();
        // Oldest first, as they happened.
        let mut new: Vec<&DeployRecord> = finished.filter(|d| told.deploys.insert(d.id)).collect();
        new.sort_by_key(|d| d.id);
        notices.extend(new.into_iter().map(Notice::deploy));
        let mut new: Vec<&BackupInfo> = backups
            .iter()
            .filter(|b| told.backups.insert(b.id))
            .collect();
        new.sort_by_key(|b| b.id);
        notices.extend(
            new.into_iter()
                .filter(|b| b.trigger != BackupTrigger::PreDeploy)
                .map(|b| Notice::backup(&format!("{}/{}", b.app, b.env), Ok(b))),
        );
        notices
    }
}

impl Track {
    fn first(s: &ServiceStatus) -> Self {
        Track {
            state: s.state,
            restarts: s.restarts,
            pending_crashes: 0,
            last_crash_notice: None,
            told_healthy: !is_unhealthy(s),
            last_health_notice: None,
        }
    }

    fn crash_notice(&mut self, s: &ServiceStatus, now: Instant) -> Option<Notice> {
        let was_up = self.state.is_up();
        let entered = |state| s.state == state && self.state != state;
        // A restart the agent scheduled counts itself in `restarts`; a crash it does not come
        // back from (no restart policy, or the last of a loop) does not.
        let mut crashes = s.restarts.saturating_sub(self.restarts);
        if was_up && (entered(ServiceState::Crashed) || entered(ServiceState::Failed)) {
            crashes += 1;
        }
        self.pending_crashes += crashes;
        let k = &s.key;
        if entered(ServiceState::Failed) {
            self.pending_crashes = 0;
            self.last_crash_notice = Some(now);
            return Some(Notice {
                summary: format!("{k} gave up"),
                body: format!(
                    "{}It crashed {} time{}; Homeport stopped restarting it.",
                    reason(s),
                    s.restarts.max(1),
                    plural(s.restarts.max(1))
                ),
                urgency: Urgency::Critical,
                screen: Screen::Logs(k.clone()),
            });
        }
        if entered(ServiceState::Crashed) {
            self.pending_crashes = 0;
            self.last_crash_notice = Some(now);
            return Some(Notice {
                summary: format!("{k} crashed"),
                body: format!("{}Its restart policy leaves it down.", reason(s)),
                urgency: Urgency::Critical,
                screen: Screen::Logs(k.clone()),
            });
        }
        let quiet = self
            .last_crash_notice
            .is_some_and(|t| now.duration_since(t) < Notifier::WINDOW);
        if self.pending_crashes == 0 || quiet {
            return None;
        }
        let n = std::mem::take(&mut self.pending_crashes);
        self.last_crash_notice = Some(now);
        Some(Notice {
            summary: if n == 1 {
                format!("{k} crashed")
            } else {
                format!("{k} crashed {n} times")
            },
            body: format!(
                "{}Homeport is restarting it (restart {}).",
                reason(s),
                s.restarts
            ),
            urgency: Urgency::Normal,
            screen: Screen::Logs(k.clone()),
        })
    }

    fn health_notice(&mut self, s: &ServiceStatus, now: Instant) -> Option<Notice> {
        // Health means something only while the service is up and past its start.
        if !s.state.is_up() || s.state == ServiceState::Starting {
            return None;
        }
        let healthy = !is_unhealthy(s);
        let quiet = self
            .last_health_notice
            .is_some_and(|t| now.duration_since(t) < Notifier::WINDOW);
        if healthy == self.told_healthy || quiet {
            return None;
        }
        self.told_healthy = healthy;
        self.last_health_notice = Some(now);
        let k = &s.key;
        let detail = s.message.as_deref().unwrap_or("");
        Some(if healthy {
            Notice {
                summary: format!("{k} is healthy again"),
                body: "Its health check passes.".into(),
                urgency: Urgency::Normal,
                screen: Screen::Overview,
            }
        } else {
            Notice {
                summary: format!("{k} is unhealthy"),
                body: if detail.is_empty() {
                    "Its health check fails.".into()
                } else {
                    format!("Its health check fails: {detail}")
                },
                urgency: Urgency::Critical,
                screen: Screen::Logs(k.clone()),
            }
        })
    }
}

fn is_unhealthy(s: &ServiceStatus) -> bool {
    s.state == ServiceState::Unhealthy || s.health == Health::Unhealthy
}

/// "Last exit: exit code 3. ", from the last exit.
fn reason(s: &ServiceStatus) -> String {
    s.last_exit
        .map(|e: ExitReason| format!("Last exit: {e}. "))
        .unwrap_or_default()
}

/// Makes more than [`Notifier::MAX_AT_ONCE`] notices one: what one poll gathered from both
/// [`Notifier::observe`] and [`Notifier::observe_history`] goes through here once.
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
    }]
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
    use crate::tests::snapshot as snap;

    fn svc(name: &str, state: ServiceState, restarts: u64) -> ServiceStatus {
        ServiceStatus {
            key: ServiceKey::new("app", "production", name),
            state,
            health: if state == ServiceState::Unhealthy {
                Health::Unhealthy
            } else {
                Health::Unknown
            },
            pid: None,
            uptime_secs: None,
            restarts,
            last_exit: (restarts > 0).then_some(ExitReason::Code(3)),
            message: None,
            cpu_percent: None,
            rss_bytes: None,
            port: None,
            url: None,
            autostart: true,
        }
    }

    /// Feeds one service's states at 2 s intervals (the tray's poll) and collects the notices.
    fn run(states: &[(ServiceState, u64)]) -> Vec<Notice> {
        let mut n = Notifier::new();
        let t0 = Instant::now();
        let mut out = Vec::new();
        for (i, &(state, restarts)) in states.iter().enumerate() {
            let at = t0 + Duration::from_secs(2 * i as u64);
            out.extend(n.observe(&snap(vec![svc("web", state, restarts)]), at));
        }
        out
    }

    use ServiceState::*;

    #[test]
    fn the_first_snapshot_is_a_baseline() {
        assert_eq!(run(&[(Failed, 5)]), vec![]);
        assert_eq!(run(&[(Unhealthy, 0), (Unhealthy, 0)]), vec![]);
    }

    #[test]
    fn a_crash_and_restart_is_one_normal_notice_that_opens_the_logs() {
        let got = run(&[(Healthy, 0), (BackingOff, 1), (Starting, 1), (Healthy, 1)]);
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
    fn a_crash_loop_is_one_notice_then_the_give_up() {
        // Fifty crashes in 100 s, then the agent gives up.
        let mut states = vec![(Healthy, 0)];
        for r in 1..=50 {
            states.push(if r % 2 == 0 {
                (Starting, r)
            } else {
                (BackingOff, r)
            });
        }
        states.push((Failed, 50));
        let got = run(&states);
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
        let got = run(&[(Running, 0), (Crashed, 0), (Crashed, 0), (Crashed, 0)]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].urgency, Urgency::Critical);
        assert!(got[0].body.contains("leaves it down"));
    }

    #[test]
    fn stopping_a_service_is_not_news() {
        assert_eq!(run(&[(Healthy, 0), (Stopping, 0), (Stopped, 0)]), vec![]);
    }

    #[test]
    fn health_lost_and_recovered_and_flapping_is_quiet() {
        let got = run(&[(Healthy, 0), (Unhealthy, 0), (Healthy, 0)]);
        let summaries: Vec<&str> = got.iter().map(|n| n.summary.as_str()).collect();
        // Recovery within the window of the loss is held back...
        assert_eq!(summaries, ["app/production/web is unhealthy"]);
        // ...and told once the window has passed.
        let mut n = Notifier::new();
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        assert!(
            n.observe(&snap(vec![svc("web", Healthy, 0)]), at(0))
                .is_empty()
        );
        assert_eq!(
            n.observe(&snap(vec![svc("web", Unhealthy, 0)]), at(2))
                .len(),
            1
        );
        assert!(
            n.observe(&snap(vec![svc("web", Healthy, 0)]), at(4))
                .is_empty()
        );
        let later = n.observe(&snap(vec![svc("web", Healthy, 0)]), at(70));
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].summary, "app/production/web is healthy again");
        // A flap that is back where it was told by the end of the window says nothing.
        assert!(
            n.observe(&snap(vec![svc("web", Unhealthy, 0)]), at(72))
                .is_empty()
        );
        assert!(
            n.observe(&snap(vec![svc("web", Healthy, 0)]), at(74))
                .is_empty()
        );
        assert!(
            n.observe(&snap(vec![svc("web", Healthy, 0)]), at(200))
                .is_empty()
        );
    }

    #[test]
    fn many_notices_at_once_become_one() {
        let mut n = Notifier::new();
        let t0 = Instant::now();
        let names = ["a", "b", "c", "d", "e", "f", "g"];
        let before = snap(names.iter().map(|s| svc(s, Healthy, 0)).collect());
        let after = snap(names.iter().map(|s| svc(s, BackingOff, 1)).collect());
        assert!(n.observe(&before, t0).is_empty());
        let got = coalesce(n.observe(&after, t0 + Duration::from_secs(2)));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].summary, "7 things need attention");
        assert!(got[0].body.ends_with("and 2 more"), "{}", got[0].body);
        assert_eq!(got[0].screen, Screen::Overview);
    }

    #[test]
    fn deploy_and_backup_outcomes() {
        let mut record = DeployRecord {
            id: 1,
            app: "clauset".into(),
            env: "production".into(),
            kind: homeport_types::DeployKind::Deploy,
            release: Some("r2".into()),
            previous: Some("r1".into()),
            commit: None,
            started: String::new(),
            finished: None,
            result: "succeeded".into(),
            error: None,
            steps: vec![],
            diagnostics: None,
        };
        let ok = Notice::deploy(&record);
        assert_eq!(ok.summary, "Deploy of clauset/production succeeded");
        assert_eq!(ok.body, "r2 is live");
        record.result = "failed".into();
        record.error = Some("health check failed".into());
        let bad = Notice::deploy(&record);
        assert_eq!(bad.summary, "Deploy of clauset/production failed");
        assert_eq!(bad.body, "health check failed. r1 is still serving.");
        assert_eq!(bad.urgency, Urgency::Critical);
        assert_eq!(bad.screen, Screen::Deploys);

        let failed = Notice::backup("clauset/production", Err("disk full"));
        assert_eq!(failed.screen, Screen::Backups);
        assert_eq!(failed.summary, "Backup of clauset/production failed");
        assert_eq!(failed.urgency, Urgency::Critical);
        assert_eq!(human_size(3 * 1024 * 1024 / 2), "1.5 MB");
    }

    fn backup(id: i64, trigger: BackupTrigger) -> BackupInfo {
        BackupInfo {
            id,
            app: "clauset".into(),
            env: "production".into(),
            time: String::new(),
            trigger,
            size: 2048,
            duration_ms: 1500,
            verified: true,
            dir: String::new(),
            artifacts: vec![],
        }
    }

    fn deploy(id: i64, result: &str) -> DeployRecord {
        DeployRecord {
            id,
            app: "clauset".into(),
            env: "production".into(),
            kind: homeport_types::DeployKind::Promote,
            release: Some(format!("r{id}")),
            previous: None,
            commit: None,
            started: String::new(),
            finished: (result != "running").then(String::new),
            result: result.into(),
            error: (result == "failed").then(|| "migrate failed".to_owned()),
            steps: vec![],
            diagnostics: None,
        }
    }

    #[test]
    fn deploys_and_backups_are_told_once_whoever_started_them() {
        let mut n = Notifier::new();
        // What happened before the tray started is not news.
        let old = n.observe_history(
            &[deploy(1, "succeeded")],
            &[backup(1, BackupTrigger::Manual)],
        );
        assert!(old.is_empty());
        // A deploy that is still running says nothing until it ends.
        let running = [deploy(2, "running"), deploy(1, "succeeded")];
        assert!(
            n.observe_history(&running, &[backup(1, BackupTrigger::Manual)])
                .is_empty()
        );
        let ended = [deploy(2, "failed"), deploy(1, "succeeded")];
        let backups = [
            backup(1, BackupTrigger::Manual),
            backup(2, BackupTrigger::PreDeploy),
            backup(3, BackupTrigger::Scheduled),
        ];
        let got = n.observe_history(&ended, &backups);
        let summaries: Vec<&str> = got.iter().map(|n| n.summary.as_str()).collect();
        assert_eq!(
            summaries,
            [
                "Promote of clauset/production failed",
                "Scheduled backup of clauset/production done"
            ]
        );
        assert_eq!(got[1].body, "2.0 KB in 1.5 s, verified");
        // Told once.
        assert!(n.observe_history(&ended, &backups).is_empty());
    }
}
