//! The agent's connections to other hosts (enrolled with `homeport host add`): one task per host
//! holds a [`homeport_remote::Connection`] (an SSH master, the host agent's token in memory, a
//! forward from a private socket), follows the host agent's event stream to know its verdict,
//! and reconnects when SSH drops (1 s, doubling to 30 s). Every client of this agent — the CLI,
//! the dashboard, the tray — reaches a host through it: the API proxies
//! `/api/v1/hosts/NAME/api/v1/…` to [`Hosts::client`]. A change of a host's state (connected,
//! its agent down, unreachable) is an event.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use homeport_client::{Client, Update};
use homeport_remote::{Connection, HostRecord, record};
use homeport_types::{EventKind, HostInfo, HostState, StatusReport, Subject};
use tokio::sync::{Notify, watch};

use crate::Core;

/// Why a host cannot be reached through this agent now.
#[derive(Debug, thiserror::Error)]
pub enum HostUnavailable {
    #[error("no host {0} is enrolled; add it with `homeport host add {0} user@host`")]
    Unknown(String),
    #[error("{host} is {state} since {since}{why}; Homeport keeps trying", why = reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Down {
        host: String,
        state: HostState,
        since: String,
        reason: Option<String>,
    },
}

struct Status {
    state: HostState,
    since: SystemTime,
    reason: Option<String>,
    version: Option<String>,
    report: Option<StatusReport>,
    /// The host agent through the forward, while it answers.
    client: Option<Client>,
    /// The SSH connection (its control socket) and what the host said of itself, while
    /// connected: for copying releases and running `homeport remote …` there.
    ssh: Option<homeport_remote::Ssh>,
    hello: Option<homeport_types::RemoteHello>,
}

/// A host as a deploy to it needs it.
#[derive(Clone)]
pub struct HostConn {
    pub record: HostRecord,
    pub client: Client,
    pub ssh: homeport_remote::Ssh,
    pub hello: homeport_types::RemoteHello,
}

/// One host's link.
struct Link {
    record: HostRecord,
    status: Mutex<Status>,
    /// Wakes the task early: a request found the agent gone, or it should end.
    kick: Notify,
    stop: watch::Sender<bool>,
}

impl Link {
    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn info(&self) -> HostInfo {
        let s = self.lock();
        HostInfo {
            name: self.record.name.clone(),
            destination: self.record.destination.clone(),
            os: self.record.os.clone(),
            arch: self.record.arch.clone(),
            state: s.state,
            since: humantime::format_rfc3339_seconds(s.since).to_string(),
            reason: s.reason.clone(),
            version: s.version.clone(),
            overall: s
                .report
                .as_ref()
                .filter(|_| s.state == HostState::Connected)
                .map(|r| r.overall.clone()),
            envs: s
                .report
                .as_ref()
                .filter(|_| s.state == HostState::Connected)
                .map(|r| r.snapshot.env_verdicts())
                .unwrap_or_default(),
        }
    }
}

/// Every link of this agent.
#[derive(Default)]
pub(crate) struct Hosts {
    links: Mutex<BTreeMap<String, Arc<Link>>>,
}

impl Hosts {
    fn links(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Link>>> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How long to wait before connecting again after the `n`th failure in a row.
fn backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.min(5)).min(Duration::from_secs(30))
}

impl Core {
    fn data_dir(&self) -> PathBuf {
        self.config().agent.data_dir.clone()
    }

    /// Reads the enrolled hosts again: links for new ones, none for removed ones, a new link
    /// for one whose record changed (enrolled again).
    pub fn reload_hosts(self: &Arc<Self>) -> Vec<HostInfo> {
        let records = record::list(&self.data_dir());
        let mut links = self.hosts.links();
        links.retain(|name, link| {
            let keep = records.iter().any(|r| &r.name == name && *r == link.record);
            if !keep {
                link.stop.send_replace(true);
                link.kick.notify_one();
            }
            keep
        });
        for r in records {
            if links.contains_key(&r.name) {
                continue;
            }
            let link = Arc::new(Link {
                record: r.clone(),
                status: Mutex::new(Status {
                    state: HostState::Connecting,
                    since: SystemTime::now(),
                    reason: None,
                    version: None,
                    report: None,
                    client: None,
                    ssh: None,
                    hello: None,
                }),
                kick: Notify::new(),
                stop: watch::channel(false).0,
            });
            tokio::spawn(run_link(Arc::downgrade(self), Arc::clone(&link)));
            links.insert(r.name, link);
        }
        links.values().map(|l| l.info()).collect()
    }

    /// Every enrolled host and how its connection is.
    pub fn hosts(&self) -> Vec<HostInfo> {
        self.hosts.links().values().map(|l| l.info()).collect()
    }

    /// A client of the agent on `name`, through the connection this agent holds.
    pub fn host_client(&self, name: &str) -> Result<Client, HostUnavailable> {
        let link = self
            .hosts
            .links()
            .get(name)
            .cloned()
            .ok_or_else(|| HostUnavailable::Unknown(name.to_owned()))?;
        let s = link.lock();
        match (&s.client, s.state) {
            (Some(c), HostState::Connected) => Ok(c.clone()),
            _ => Err(HostUnavailable::Down {
                host: name.to_owned(),
                state: s.state,
                since: humantime::format_rfc3339_seconds(s.since).to_string(),
                reason: s.reason.clone(),
            }),
        }
    }

    /// Everything a deploy to `name` needs, while it is connected.
    pub fn host_conn(&self, name: &str) -> Result<HostConn, HostUnavailable> {
        let client = self.host_client(name)?;
        let link = self
            .hosts
            .links()
            .get(name)
            .cloned()
            .ok_or_else(|| HostUnavailable::Unknown(name.to_owned()))?;
        let s = link.lock();
        match (&s.ssh, &s.hello) {
            (Some(ssh), Some(hello)) => Ok(HostConn {
                record: link.record.clone(),
                client,
                ssh: ssh.clone(),
                hello: hello.clone(),
            }),
            _ => Err(HostUnavailable::Down {
                host: name.to_owned(),
                state: s.state,
                since: humantime::format_rfc3339_seconds(s.since).to_string(),
                reason: s.reason.clone(),
            }),
        }
    }

    /// The pid of `name`'s agent as this agent last saw it.
    pub fn host_agent_pid(&self, name: &str) -> Option<u32> {
        let link = self.hosts.links().get(name).cloned()?;
        let s = link.lock();
        s.report.as_ref().map(|r| r.snapshot.agent.pid)
    }

    /// A request to `name` failed to connect: check the link now rather than at its next tick.
    pub fn host_failed(&self, name: &str) {
        if let Some(link) = self.hosts.links().get(name) {
            link.kick.notify_one();
        }
    }
}

/// Records a new state; a change of state is an event.
fn set(core: &Weak<Core>, link: &Link, state: HostState, reason: Option<String>) {
    let (changed, overall) = {
        let mut s = link.lock();
        let changed = s.state != state;
        if changed {
            s.since = SystemTime::now();
        }
        s.state = state;
        s.reason = reason.clone();
        if state != HostState::Connected {
            s.client = None;
            s.ssh = None;
        }
        let overall = (state == HostState::Connected)
            .then(|| s.report.as_ref().map(|r| r.overall.clone()))
            .flatten();
        (changed, overall)
    };
    if changed && let Some(core) = core.upgrade() {
        if state == HostState::Connected {
            tracing::info!(host = %link.record.name, "connected to the host's agent");
        } else {
            tracing::warn!(host = %link.record.name, "{state}: {}", reason.as_deref().unwrap_or(""));
        }
        core.emit(
            Subject::Agent,
            EventKind::Host {
                host: link.record.name.clone(),
                state,
                reason,
                overall,
            },
        );
    }
}

/// Waits `d`, or until kicked, stopped, or the agent shuts down; false when the link should end.
async fn pause(core: &Weak<Core>, link: &Link, d: Duration) -> bool {
    let Some(shutdown) = core.upgrade().map(|c| c.shutdown_signal()) else {
        return false;
    };
    let mut stop = link.stop.subscribe();
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = link.kick.notified() => {}
        _ = stop.wait_for(|s| *s) => return false,
        _ = shutdown => return false,
    }
    !*link.stop.borrow()
}

async fn run_link(core: Weak<Core>, link: Arc<Link>) {
    let mut failures = 0u32;
    let tag = "agent";
    loop {
        if *link.stop.borrow() {
            return;
        }
        let Some(data) = core.upgrade().map(|c| c.data_dir()) else {
            return;
        };
        let mut conn = match Connection::open(&data, &link.record, tag).await {
            Ok(c) => c,
            Err(e) => {
                set(&core, &link, HostState::Unreachable, Some(e.to_string()));
                let wait = backoff(failures);
                failures += 1;
                if !pause(&core, &link, wait).await {
                    return;
                }
                continue;
            }
        };
        failures = 0;
        // Connected over SSH: follow the agent there for as long as the connection lasts.
        let mut agent_failures = 0u32;
        loop {
            if conn.master_mut().has_exited() {
                break;
            }
            let Some(client) = conn.client() else {
                set(
                    &core,
                    &link,
                    HostState::AgentDown,
                    Some(format!(
                        "SSH is up but no agent runs on {} (data folder {})",
                        link.record.name,
                        conn.hello().data_dir
                    )),
                );
                if !pause(&core, &link, backoff(agent_failures.min(2))).await {
                    return;
                }
                agent_failures += 1;
                if conn.master_mut().has_exited() {
                    break;
                }
                if let Err(e) = conn.refresh().await {
                    tracing::debug!(host = %link.record.name, "hello failed: {e}");
                }
                continue;
            };
            match follow(&core, &link, &mut conn, client).await {
                Followed::Stop => return,
                Followed::Ended(why) => {
                    if conn.master_mut().has_exited() {
                        break;
                    }
                    set(&core, &link, HostState::AgentDown, Some(why));
                    if !pause(&core, &link, backoff(agent_failures.min(2))).await {
                        return;
                    }
                    agent_failures += 1;
                    if conn.master_mut().has_exited() {
                        break;
                    }
                    if let Err(e) = conn.refresh().await {
                        tracing::debug!(host = %link.record.name, "hello failed: {e}");
                    }
                }
            }
        }
        let why = conn.master_mut().closed().await;
        drop(conn);
        set(&core, &link, HostState::Unreachable, Some(why.to_string()));
        if !pause(&core, &link, backoff(0)).await {
            return;
        }
    }
}

enum Followed {
    Stop,
    Ended(String),
}

/// Follows the host agent's event stream: connected while it flows, its verdict kept current.
async fn follow(core: &Weak<Core>, link: &Link, conn: &mut Connection, client: Client) -> Followed {
    let events = match client.events().await {
        Ok(e) => e,
        Err(e) => return Followed::Ended(format!("its agent does not answer: {e}")),
    };
    let mut events = Box::pin(events);
    let Some(shutdown) = core.upgrade().map(|c| c.shutdown_signal()) else {
        return Followed::Stop;
    };
    tokio::pin!(shutdown);
    let mut stop = link.stop.subscribe();
    loop {
        tokio::select! {
            next = events.next() => match next {
                Some(Ok(Update::Snapshot(report))) => {
                    {
                        let mut s = link.lock();
                        s.version = Some(report.snapshot.agent.version.clone());
                        s.report = Some(report);
                        s.client = Some(client.clone());
                        s.ssh = Some(conn.master().ssh().clone());
                        s.hello = Some(conn.hello().clone());
                    }
                    set(core, link, HostState::Connected, None);
                }
                Some(Ok(Update::Event(ev))) => {
                    let turned = {
                        let mut s = link.lock();
                        s.report.as_mut().and_then(|r| {
                            let levels = |r: &homeport_types::StatusReport| {
                                r.snapshot
                                    .env_verdicts()
                                    .into_iter()
                                    .map(|e| (e.app, e.env, e.verdict.level))
                                    .collect::<Vec<_>>()
                            };
                            let before = (r.overall.level, levels(r));
                            r.snapshot.apply(&ev);
                            r.overall = r.snapshot.overall();
                            (before != (r.overall.level, levels(r))).then(|| r.overall.clone())
                        })
                    };
                    // The host's production, or one of its environments, turned healthy,
                    // degraded or down: said here too, so the tray and the timeline need not
                    // ask every host now and then.
                    if let Some(v) = turned
                        && let Some(core) = core.upgrade()
                    {
                        core.emit(
                            Subject::Agent,
                            EventKind::Host {
                                host: link.record.name.clone(),
                                state: HostState::Connected,
                                reason: None,
                                overall: Some(v),
                            },
                        );
                    }
                }
                Some(Ok(Update::Disconnected(why))) => return Followed::Ended(why),
                Some(Err(e)) => return Followed::Ended(format!("the connection to its agent broke: {e}")),
                None => return Followed::Ended("its agent closed the event stream (it stopped or restarted)".into()),
            },
            why = conn.master_mut().closed() => {
                return Followed::Ended(why.to_string());
            }
            _ = stop.wait_for(|s| *s) => return Followed::Stop,
            _ = &mut shutdown => return Followed::Stop,
        }
    }
}
