//! The one answer to "is production OK?": [`StatusSnapshot::overall`]. The tray's icon and
//! tooltip, the dashboard's headline (which gets it from the API) and `homeport status`'s summary
//! line all show this, so they can never disagree.
//!
//! Production comes first and alone decides whether things are *down*; a problem in another
//! environment makes the whole at most *degraded* and is named after production:
//! "production healthy · beta: web crash-looping". A production service that should run
//! (`autostart`) but was stopped by hand is not healthy: "production: web stopped by you".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Health, ServiceState, ServiceStatus, StatusSnapshot};

/// How things are, worst last.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Everything that should run runs and passes its checks.
    Healthy,
    /// Something is restarting, unhealthy, starting, stopped by hand, or a non-production
    /// environment has a problem.
    Degraded,
    /// A production service failed, crashed or exited and is not coming back by itself.
    Down,
}

impl Level {
    /// The word a person reads: "Healthy", "Degraded", "Down".
    pub fn word(self) -> &'static str {
        match self {
            Level::Healthy => "Healthy",
            Level::Degraded => "Degraded",
            Level::Down => "Down",
        }
    }
}

/// The overall state and its one-line reason.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub level: Level,
    /// "production healthy · beta: web crash-looping".
    pub reason: String,
}

/// Production's name among environments.
pub const PRODUCTION: &str = "production";

/// What is wrong with one service, in words, and how bad it is; `None` when nothing is.
fn problem(s: &ServiceStatus) -> Option<(Level, String)> {
    let name = &s.key.service;
    let since = |what: &str| match s.state_secs {
        Some(secs) if secs >= 60 => format!("{name} {what} for {} min", secs / 60),
        _ => format!("{name} {what}"),
    };
    let p = match s.state {
        ServiceState::Failed => (Level::Down, format!("{name} failed")),
        ServiceState::Crashed => (Level::Down, format!("{name} crashed")),
        ServiceState::Exited if s.autostart => (Level::Down, format!("{name} exited")),
        ServiceState::Stopped if s.autostart => (Level::Degraded, format!("{name} stopped by you")),
        ServiceState::BackingOff if s.restarts >= 3 => (Level::Degraded, since("crash-looping")),
        ServiceState::BackingOff => (Level::Degraded, format!("{name} restarting")),
        ServiceState::Unhealthy => (Level::Degraded, since("unhealthy")),
        ServiceState::Starting => (Level::Degraded, format!("{name} starting")),
        ServiceState::Stopping => (Level::Degraded, format!("{name} stopping")),
        ServiceState::Healthy | ServiceState::Running if s.health == Health::Unhealthy => {
            (Level::Degraded, since("unhealthy"))
        }
        ServiceState::Healthy
        | ServiceState::Running
        | ServiceState::Stopped
        | ServiceState::Exited => return None,
    };
    Some(p)
}

/// At most three problems of one environment, then how many more.
fn list(problems: &[String]) -> String {
    let mut out = problems
        .iter()
        .take(3)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if problems.len() > 3 {
        out.push_str(&format!(" and {} more", problems.len() - 3));
    }
    out
}

impl StatusSnapshot {
    /// Each environment's verdict, production first, then by app and name; as [`Self::overall`]
    /// judges it, so outside production (when there is one) nothing is worse than degraded.
    pub fn env_verdicts(&self) -> Vec<crate::EnvVerdict> {
        let has_production = self.services.iter().any(|s| s.key.env == PRODUCTION);
        let mut envs: BTreeMap<(bool, &str, &str), Vec<ServiceStatus>> = BTreeMap::new();
        for s in &self.services {
            envs.entry((s.key.env != PRODUCTION, &s.key.app, &s.key.env))
                .or_default()
                .push(s.clone());
        }
        envs.into_iter()
            .map(|((other, app, env), services)| {
                let mut verdict = StatusSnapshot {
                    agent: self.agent.clone(),
                    services,
                }
                .overall();
                if other && has_production {
                    verdict.level = verdict.level.min(Level::Degraded);
                }
                crate::EnvVerdict {
                    app: app.to_owned(),
                    env: env.to_owned(),
                    verdict,
                }
            })
            .collect()
    }

    /// The overall verdict: see the module's documentation.
    pub fn overall(&self) -> Verdict {
        if self.services.is_empty() {
            return Verdict {
                level: Level::Healthy,
                reason: "no services configured".into(),
            };
        }
        let has_production = self.services.iter().any(|s| s.key.env == PRODUCTION);
        // Production first, then the other environments by name; apps are named only when
        // there is more than one.
        let apps: std::collections::BTreeSet<&str> =
            self.services.iter().map(|s| s.key.app.as_str()).collect();
        let mut by_env: BTreeMap<(bool, &str, &str), Vec<String>> = BTreeMap::new();
        let mut level = Level::Healthy;
        for s in &self.services {
            let Some((l, text)) = problem(s) else {
                continue;
            };
            let production = s.key.env == PRODUCTION;
            // Outside production a problem is worth a look, never "down".
            level = level.max(if production || !has_production {
                l
            } else {
                l.min(Level::Degraded)
            });
            by_env
                .entry((!production, s.key.app.as_str(), s.key.env.as_str()))
                .or_default()
                .push(text);
        }
        let env_name = |app: &str, env: &str| {
            if apps.len() > 1 {
                format!("{app}/{env}")
            } else {
                env.to_owned()
            }
        };
        let mut parts: Vec<String> = Vec::new();
        if has_production && !by_env.keys().any(|(other, _, _)| !other) {
            let running = self
                .services
                .iter()
                .any(|s| s.key.env == PRODUCTION && s.state.is_up());
            parts.push(if running {
                "production healthy".into()
            } else {
                "production stopped".into()
            });
        }
        if !has_production && by_env.is_empty() {
            let running = self.services.iter().any(|s| s.state.is_up());
            parts.push(if running {
                "all healthy".into()
            } else {
                "nothing running".into()
            });
        }
        for ((_, app, env), problems) in &by_env {
            parts.push(format!("{}: {}", env_name(app, env), list(problems)));
        }
        Verdict {
            level,
            reason: parts.join(" · "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentInfo, ServiceKey};

    fn svc(env: &str, name: &str, state: ServiceState) -> ServiceStatus {
        ServiceStatus {
            key: ServiceKey::new("shop", env, name),
            state,
            health: match state {
                ServiceState::Healthy => Health::Healthy,
                ServiceState::Unhealthy => Health::Unhealthy,
                _ => Health::Unknown,
            },
            pid: None,
            uptime_secs: None,
            state_secs: None,
            restarts: 0,
            last_exit: None,
            message: None,
            cpu_percent: None,
            rss_bytes: None,
            port: None,
            ports: Default::default(),
            instance: None,
            url: None,
            autostart: env == PRODUCTION,
            log_file: None,
            retry_in_secs: None,
            notify: crate::NotifyPolicy::All,
        }
    }

    fn of(services: Vec<ServiceStatus>) -> Verdict {
        StatusSnapshot {
            agent: AgentInfo {
                pid: 1,
                version: "0".into(),
                config_path: String::new(),
                uptime_secs: 0,
                service_manager: None,
                log: None,
                config_rejected: None,
            },
            services,
        }
        .overall()
    }

    use ServiceState::*;

    #[test]
    fn each_environment_has_a_verdict_of_its_own_production_first() {
        let snapshot = StatusSnapshot {
            agent: AgentInfo {
                pid: 1,
                version: "0".into(),
                config_path: String::new(),
                uptime_secs: 0,
                service_manager: None,
                log: None,
                config_rejected: None,
            },
            services: vec![
                svc("beta", "web", Crashed),
                svc("production", "web", Healthy),
                svc("production", "worker", Failed),
            ],
        };
        let envs = snapshot.env_verdicts();
        let names: Vec<&str> = envs.iter().map(|e| e.env.as_str()).collect();
        assert_eq!(names, ["production", "beta"]);
        assert_eq!(envs[0].verdict.level, Level::Down);
        assert!(
            envs[0].verdict.reason.contains("worker failed"),
            "{:?}",
            envs[0]
        );
        // A crash outside production is worth a look, never "down".
        assert_eq!(envs[1].verdict.level, Level::Degraded);
        assert!(
            envs[1].verdict.reason.contains("web crashed"),
            "{:?}",
            envs[1]
        );
    }

    #[test]
    fn production_healthy() {
        let v = of(vec![
            svc("production", "web", Healthy),
            svc("production", "worker", Running),
            svc("beta", "web", Stopped),
        ]);
        assert_eq!(
            v,
            Verdict {
                level: Level::Healthy,
                reason: "production healthy".into()
            }
        );
    }

    #[test]
    fn a_beta_crash_loop_is_named_after_production_and_is_not_down() {
        let mut web = svc("beta", "web", BackingOff);
        web.restarts = 7;
        let v = of(vec![svc("production", "web", Healthy), web]);
        assert_eq!(v.level, Level::Degraded);
        assert_eq!(v.reason, "production healthy · beta: web crash-looping");
        let v = of(vec![
            svc("production", "web", Healthy),
            svc("beta", "web", Failed),
        ]);
        assert_eq!(
            v.level,
            Level::Degraded,
            "beta failing is not production down"
        );
        assert_eq!(v.reason, "production healthy · beta: web failed");
    }

    #[test]
    fn unhealthy_for_minutes() {
        let mut search = svc("production", "search", Unhealthy);
        search.state_secs = Some(200);
        let v = of(vec![svc("production", "web", Healthy), search]);
        assert_eq!(v.level, Level::Degraded);
        assert_eq!(v.reason, "production: search unhealthy for 3 min");
    }

    #[test]
    fn a_production_service_stopped_by_hand_is_not_healthy() {
        let v = of(vec![
            svc("production", "web", Healthy),
            svc("production", "worker", Stopped),
        ]);
        assert_eq!(v.level, Level::Degraded);
        assert_eq!(v.reason, "production: worker stopped by you");
        // One that is not meant to run on its own is simply off.
        let mut cron = svc("production", "cron", Stopped);
        cron.autostart = false;
        assert_eq!(
            of(vec![svc("production", "web", Healthy), cron]).level,
            Level::Healthy
        );
    }

    #[test]
    fn production_down_comes_first() {
        let v = of(vec![
            svc("beta", "web", Unhealthy),
            svc("production", "web", Crashed),
            svc("production", "api", Failed),
            svc("production", "worker", Exited),
        ]);
        assert_eq!(v.level, Level::Down);
        assert_eq!(
            v.reason,
            "production: web crashed, api failed, worker exited · beta: web unhealthy"
        );
    }

    #[test]
    fn many_problems_are_counted_and_apps_named_when_there_are_several() {
        let mut services: Vec<ServiceStatus> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|n| svc("production", n, Starting))
            .collect();
        let mut blog = svc("production", "web", Healthy);
        blog.key.app = "blog".into();
        services.push(blog);
        let v = of(services);
        assert_eq!(
            v.reason,
            "shop/production: a starting, b starting, c starting and 2 more"
        );
    }

    #[test]
    fn without_production_the_others_decide() {
        assert_eq!(of(vec![]).reason, "no services configured");
        let v = of(vec![svc("dev", "web", Running)]);
        assert_eq!(
            (v.level, v.reason.as_str()),
            (Level::Healthy, "all healthy")
        );
        let v = of(vec![svc("dev", "web", Crashed)]);
        assert_eq!(v.level, Level::Down);
        assert_eq!(v.reason, "dev: web crashed");
        let v = of(vec![svc("production", "web", Stopped)]
            .into_iter()
            .map(|mut s| {
                s.autostart = false;
                s
            })
            .collect());
        assert_eq!(
            (v.level, v.reason.as_str()),
            (Level::Healthy, "production stopped")
        );
    }
}
