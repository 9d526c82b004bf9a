//! The health gate — every service ready within the deadline, then ready with no restart, exit
//! or failed health check for the stability window — and the blue-green switch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use homeport_types::{ServiceKey, ServiceState, ServiceStatus, Target};

use super::PipelineError;
use crate::Core;
use crate::proxy::Proxy;

const POLL: Duration = Duration::from_millis(50);

fn seconds(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

/// What happened to a service that went down, in words: never a state name, never "restarting
/// in …" for something the deploy is about to undo.
fn went_down(s: &ServiceStatus) -> String {
    let name = &s.key.service;
    let message = s.message.clone().unwrap_or_default();
    // "exit code 3; restarting in 500ms" → "exit code 3".
    let cause = message
        .split("; restarting in")
        .next()
        .unwrap_or_default()
        .split("; gave up after")
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    match s.state {
        ServiceState::Stopped => format!("{name} was stopped"),
        ServiceState::Failed if s.last_exit.is_none() => format!("{name} could not start: {cause}"),
        _ if cause.starts_with("health check failed") => {
            format!("{name} was restarted because its {cause}")
        }
        _ => match s.last_exit {
            Some(exit) => format!("{name} exited ({exit})"),
            None if !cause.is_empty() => format!("{name} went down: {cause}"),
            None => format!("{name} went down"),
        },
    }
}

/// Why a service is not ready yet: its last health check, or what it waits for.
fn not_ready(s: &ServiceStatus, last_probe: Option<&str>) -> String {
    match (last_probe, s.message.as_deref()) {
        (Some(p), _) => format!("its last health check: {p}"),
        (None, Some(m)) if !m.is_empty() => m.to_owned(),
        _ => format!("it is {}", s.state),
    }
}

/// Waits until every service in `keys` is ready (healthy, or running without a health check)
/// within `deadline`. Fails at once, saying what happened, when one goes down; at the deadline,
/// names the services that held it up and why — a service's dependents wait for it, so the
/// ones not waiting on another are named first.
pub(crate) async fn wait_ready(
    core: &Core,
    keys: &[ServiceKey],
    deadline: Duration,
) -> Result<(), String> {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        let status = core.supervisor().status();
        let mine: Vec<&ServiceStatus> = status.iter().filter(|s| keys.contains(&s.key)).collect();
        // Unhealthy is not yet down: a slow starter may pass within the deadline (a liveness
        // restart shows as backing off).
        if let Some(bad) = mine
            .iter()
            .find(|s| s.state.is_settled_down() || s.state == ServiceState::BackingOff)
        {
            return Err(went_down(bad));
        }
        if mine.iter().all(|s| s.state.is_ready()) {
            return Ok(());
        }
        if tokio::time::Instant::now() > end {
            return Err(describe_not_ready(core, &mine, deadline));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn describe_not_ready(core: &Core, mine: &[&ServiceStatus], deadline: Duration) -> String {
    let config = core.config();
    let waiting: Vec<&&ServiceStatus> = mine.iter().filter(|s| !s.state.is_ready()).collect();
    let blocked_by = |s: &ServiceStatus| -> Vec<String> {
        config
            .service(&s.key)
            .map(|spec| {
                spec.depends_on
                    .iter()
                    .filter(|d| waiting.iter().any(|w| &w.key == *d))
                    .map(|d| d.service.clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (roots, dependents): (Vec<&&ServiceStatus>, Vec<&&ServiceStatus>) =
        waiting.iter().partition(|s| blocked_by(s).is_empty());
    let mut parts: Vec<String> = roots
        .iter()
        .map(|s| {
            let probe = core.supervisor().last_probe_failure(&s.key);
            let mut line = format!(
                "{} was not ready within {}: {}",
                s.key.service,
                seconds(deadline),
                not_ready(s, probe.as_deref())
            );
            let waiters: Vec<&str> = dependents
                .iter()
                .filter(|d| blocked_by(d).contains(&s.key.service))
                .map(|d| d.key.service.as_str())
                .collect();
            if !waiters.is_empty() {
                line.push_str(&format!(" ({} waits for it)", waiters.join(", ")));
            }
            line
        })
        .collect();
    if parts.is_empty() {
        parts = waiting
            .iter()
            .map(|s| {
                format!(
                    "{} was not ready within {}",
                    s.key.service,
                    seconds(deadline)
                )
            })
            .collect();
    }
    parts.join("; ")
}

/// How a service was when the stability window began.
#[derive(Debug, Clone, PartialEq)]
struct Baseline {
    pid: Option<u32>,
    restarts: u64,
    probe_failures: u64,
}

/// Watches `keys` for `window` after they are ready: a restart, an exit, a new process or a
/// failed health check fails it, saying which and when.
pub(crate) async fn stays_ready(
    core: &Core,
    keys: &[ServiceKey],
    window: Duration,
) -> Result<(), String> {
    if window.is_zero() || keys.is_empty() {
        return Ok(());
    }
    let begun = tokio::time::Instant::now();
    let base = |s: &ServiceStatus| Baseline {
        pid: s.pid,
        restarts: s.restarts,
        probe_failures: core.supervisor().probe_failures(&s.key),
    };
    let baseline: BTreeMap<ServiceKey, Baseline> = core
        .supervisor()
        .status()
        .iter()
        .filter(|s| keys.contains(&s.key))
        .map(|s| (s.key.clone(), base(s)))
        .collect();
    loop {
        let at = begun.elapsed();
        for s in core
            .supervisor()
            .status()
            .iter()
            .filter(|s| keys.contains(&s.key))
        {
            let Some(b) = baseline.get(&s.key) else {
                continue;
            };
            let when = format!(
                "{} into the {} stability window",
                seconds(at),
                seconds(window)
            );
            let now = base(s);
            if !s.state.is_ready() || now.pid != b.pid || now.restarts != b.restarts {
                let what = if s.state.is_ready() || s.state == ServiceState::Starting {
                    format!("{} restarted", s.key.service)
                } else {
                    went_down(s)
                };
                return Err(format!("{what} {when}"));
            }
            if now.probe_failures != b.probe_failures {
                let why = core
                    .supervisor()
                    .last_probe_failure(&s.key)
                    .unwrap_or_else(|| "no answer".into());
                return Err(format!(
                    "{}'s health check failed {when}: {why}",
                    s.key.service
                ));
            }
        }
        if at >= window {
            return Ok(());
        }
        tokio::time::sleep(POLL.min(window - at)).await;
    }
}

/// The gate: ready within `deadline`, then stable for `stable`.
pub(super) async fn health_gate(
    core: &Core,
    keys: &[ServiceKey],
    deadline: Duration,
    stable: Duration,
) -> Result<String, PipelineError> {
    wait_ready(core, keys, deadline)
        .await
        .map_err(PipelineError::NotReady)?;
    stays_ready(core, keys, stable)
        .await
        .map_err(PipelineError::NotReady)?;
    Ok(if stable.is_zero() {
        "ready".to_owned()
    } else {
        format!("ready, and stayed ready for {}", seconds(stable))
    })
}

/// The services of an environment the gate checks: all but blue-green instances, and the live
/// instance of each blue-green service.
pub(super) fn gated(core: &Core, app: &str, env: &str) -> Vec<ServiceKey> {
    let live = core.deploys.live_instances();
    core.config()
        .services
        .iter()
        .filter(|s| s.key.app == app && s.key.env == env)
        .filter(|s| s.slot.is_none() || live.contains(&s.key))
        .map(|s| s.key.clone())
        .collect()
}

/// The services of an environment a deploy restarts: all but blue-green instances (switched
/// without downtime instead) and database servers (not part of a release, and a restore works
/// through them).
pub(super) fn restarted(core: &Core, app: &str, env: &str) -> Vec<ServiceKey> {
    core.config()
        .services
        .iter()
        .filter(|s| s.key.app == app && s.key.env == env && s.slot.is_none())
        .filter(|s| s.database.is_none())
        .map(|s| s.key.clone())
        .collect()
}

/// Starts `keys` again (dependents stop first; dependencies start first). A service that could
/// not start at all fails it; one still starting at `deadline` is left to the gate, which says
/// why.
pub(super) async fn restart(
    core: &Core,
    keys: &[ServiceKey],
    deadline: Duration,
) -> Result<(), PipelineError> {
    if keys.is_empty() {
        return Ok(());
    }
    let outcomes = core.supervisor().restart_keys(keys, deadline).await;
    let failed = outcomes.iter().find(|o| {
        o.error
            .as_deref()
            .is_some_and(|e| !e.starts_with("still starting"))
    });
    match failed {
        Some(o) => Err(PipelineError::NotReady(format!(
            "{} could not start: {}",
            o.key.service,
            o.error.clone().unwrap_or_default()
        ))),
        None => Ok(()),
    }
}

/// Starts the idle instance of a blue-green service (it runs what `current` names now) and
/// waits until it is ready and has stayed ready for `stable`, while the live one keeps serving.
/// If it does not, it is stopped: nothing ever reached it.
pub(super) async fn bring_up_idle(
    core: &Core,
    p: &Proxy,
    deadline: Duration,
    stable: Duration,
) -> Result<String, PipelineError> {
    let next = p.inactive();
    let t = Target::Service(next.clone());
    let _ = core.supervisor().stop(&t).await;
    let up = async {
        let started = core
            .supervisor()
            .start(&t, deadline)
            .await
            .map_err(|e| PipelineError::NotReady(e.to_string()))?;
        if let Some(o) = started.iter().find(|o| {
            o.error
                .as_deref()
                .is_some_and(|e| !e.starts_with("still starting"))
        }) {
            return Err(PipelineError::NotReady(format!(
                "{} could not start: {}",
                o.key.service,
                o.error.clone().unwrap_or_default()
            )));
        }
        health_gate(core, std::slice::from_ref(&next), deadline, stable).await
    }
    .await;
    if up.is_err() {
        let _ = core.supervisor().stop(&t).await;
    }
    up.map(|how| format!("{next} is {how}, before any request reached it"))
}

/// A blue-green service switched by this deploy: the instance that was live keeps running
/// until the deploy succeeds, so switching back costs nothing.
pub(super) struct Switched {
    pub(super) proxy: Arc<Proxy>,
    pub(super) old: ServiceKey,
}

/// Makes the idle instance live: every request from now on (kept-alive connections included)
/// goes to it; what runs on the old one finishes there (up to `drain`). The old instance keeps
/// running. Says how it drained.
pub(super) async fn switch_to_idle(
    core: &Core,
    p: &Arc<Proxy>,
    drain: Duration,
) -> (Switched, String) {
    let new = p.inactive();
    let old = p.flip();
    let note = route(core, p, &old, &new, drain).await;
    (
        Switched {
            proxy: Arc::clone(p),
            old,
        },
        note,
    )
}

/// Sends requests back to the instance that was live before the deploy (still running) and
/// stops the one the deploy started.
pub(super) async fn switch_back(core: &Core, s: &Switched, drain: Duration) -> String {
    let new = s.proxy.active();
    if new != s.old {
        let from = s.proxy.flip();
        let note = route(core, &s.proxy, &from, &s.old, drain).await;
        let _ = core.supervisor().stop(&Target::Service(from.clone())).await;
        format!("{note}; {} serves again", s.old)
    } else {
        format!("{} serves", s.old)
    }
}

/// The deploy succeeded: the instance that was live before stops.
pub(super) async fn retire(core: &Core, s: &Switched) {
    let _ = core
        .supervisor()
        .stop(&Target::Service(s.old.clone()))
        .await;
}

/// Points the service's route (or TCP proxy) from `old` to `new` and waits for `old` to drain.
async fn route(
    core: &Core,
    p: &Proxy,
    old: &ServiceKey,
    new: &ServiceKey,
    drain: Duration,
) -> String {
    let began = std::time::Instant::now();
    let route = core
        .router()
        .filter(|_| crate::routing::is_http_proxy(&core.config(), p))
        .and_then(|r| r.route(&homeport_router::RouteKey::new(&p.app, &p.env)));
    match route {
        Some(route) => {
            let to = std::net::SocketAddr::from(([127, 0, 0, 1], p.port_of(new)));
            match route.flip(Some(to)) {
                Some(d) => {
                    let outcome = d.wait(drain).await;
                    if outcome.drained {
                        format!("{old} drained in {} ms", began.elapsed().as_millis())
                    } else {
                        format!(
                            "{old} still had {} request(s) at the {} s drain deadline; {} WebSocket(s) closed",
                            outcome.left,
                            drain.as_secs(),
                            outcome.tunnels_closed
                        )
                    }
                }
                None => format!("{old} had no requests"),
            }
        }
        None => {
            p.drain(old, drain).await;
            format!(
                "{old}'s connections ended or reached the {} s drain deadline",
                drain.as_secs()
            )
        }
    }
}
