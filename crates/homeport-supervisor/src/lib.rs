//! Process supervision: runs every configured service, keeps it up, and captures its output.
//!
//! # Layout
//! - [`Supervisor`]: the set of services of one [`Config`]; starts and stops targets in
//!   dependency order, reports status, publishes events through its [`Hub`].
//! - `service`: one task per service, the single owner of its process and state machine
//!   ([`homeport_types::ServiceState::on`]); restart decisions in `restart`, probes in `health`.
//! - [`shim`]: the per-service log holder process (`homeport shim`), which owns the service's
//!   pipes and outlives the agent, so an agent crash loses neither the service nor its logs.
//! - `process`: spawning, re-adopting and signalling shims and process groups; port holders.
//! - [`logfile`]: the rotated, line-framed log files and their readers.
//!
//! # Files under the data dir
//! `run/<app>/<env>/<service>/{spec,shim,exit}.json` (see [`shim`]) and
//! `logs/<app>/<env>/<service>.log[.N]`.

pub mod fsutil;
mod health;
mod hub;
pub mod logfile;
mod process;
mod restart;
mod service;
pub mod shim;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use homeport_config::{Config, ServiceSpec};
use homeport_types::{ActionOutcome, Event, ServiceKey, ServiceState, ServiceStatus, Target};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

pub use hub::{Hub, ServiceSnapshot};
pub use process::{PortHolder, port_holder};
pub use service::{Seed, parse_env_file};

use service::{Command, ServicePaths, ServiceTask};

/// How the supervisor finds its helper binary and where it keeps files.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `homeport` binary, run as `homeport shim RUN_DIR`.
    pub shim_exe: PathBuf,
    /// History from state.db, so restart counts survive agent restarts.
    pub seeds: HashMap<ServiceKey, Seed>,
}

/// No configured service matches a target.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no service matches {0}")]
pub struct NotFound(pub Target);

struct Handle {
    spec: ServiceSpec,
    tx: mpsc::Sender<Command>,
}

pub struct Supervisor {
    config: Arc<Config>,
    services: BTreeMap<ServiceKey, Handle>,
    hub: Arc<Hub>,
    sampler: Sampler,
}

impl Supervisor {
    /// Creates one task per service, re-adopting what an earlier agent left running and stopping
    /// anything it left running that the config no longer names. Starts nothing new.
    pub async fn new(
        config: Arc<Config>,
        opts: Options,
        record: Option<mpsc::UnboundedSender<Event>>,
    ) -> Self {
        let hub = Arc::new(Hub::new(record));
        let data = &config.agent.data_dir;
        stop_unknown_runs(&data.join("run"), &config).await;

        let mut ready: HashMap<ServiceKey, watch::Receiver<ServiceState>> = HashMap::new();
        let mut senders = Vec::new();
        for spec in &config.services {
            let (tx, rx) = watch::channel(ServiceState::Stopped);
            ready.insert(spec.key.clone(), rx);
            senders.push(tx);
        }
        let http = health::client();
        let mut services = BTreeMap::new();
        let mut tasks = Vec::new();
        for (spec, ready_tx) in config.services.iter().zip(senders) {
            let k = &spec.key;
            let paths = ServicePaths {
                shim_exe: opts.shim_exe.clone(),
                run_dir: data.join("run").join(&k.app).join(&k.env).join(&k.service),
                log_path: log_path(data, k),
                log_max_bytes: config.agent.log_max_bytes,
                log_keep: config.agent.log_keep,
            };
            let deps = spec
                .depends_on
                .iter()
                .filter_map(|d| ready.get(d).map(|rx| (d.clone(), rx.clone())))
                .collect();
            let (tx, rx) = mpsc::channel(16);
            let seed = opts.seeds.get(k).cloned().unwrap_or_default();
            let mut task = ServiceTask::new(
                spec.clone(),
                paths,
                Arc::clone(&hub),
                rx,
                ready_tx,
                deps,
                seed,
                http.clone(),
            );
            task.publish_initial();
            tasks.push(task);
            services.insert(
                k.clone(),
                Handle {
                    spec: spec.clone(),
                    tx,
                },
            );
        }
        // Adopt in parallel: an orphaned group may take its grace period to stop.
        let mut adopting = JoinSet::new();
        for mut task in tasks {
            adopting.spawn(async move {
                task.adopt().await;
                task
            });
        }
        while let Some(Ok(task)) = adopting.join_next().await {
            tokio::spawn(task.run());
        }
        Self {
            config,
            services,
            hub,
            sampler: Sampler::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The services a target names, or [`NotFound`].
    pub fn resolve(&self, target: &Target) -> Result<Vec<ServiceKey>, NotFound> {
        let keys: Vec<ServiceKey> = self
            .services
            .keys()
            .filter(|k| target.contains(k))
            .cloned()
            .collect();
        if keys.is_empty() && *target != Target::All {
            return Err(NotFound(target.clone()));
        }
        Ok(keys)
    }

    /// Starts the services of `target` and what they depend on. Services start in parallel; each
    /// waits for its dependencies to be ready. Returns once each has started or failed to, or
    /// after `timeout` (then the outcome says it is still starting).
    pub async fn start(
        &self,
        target: &Target,
        timeout: Duration,
    ) -> Result<Vec<ActionOutcome>, NotFound> {
        let keys = self.resolve(target)?;
        let keys = self.with_dependencies(&keys);
        Ok(self.start_keys(&keys, timeout).await)
    }

    /// Starts every service whose config says `autostart`.
    pub async fn autostart(&self, timeout: Duration) -> Vec<ActionOutcome> {
        let keys: Vec<ServiceKey> = self
            .services
            .values()
            .filter(|h| h.spec.autostart)
            .map(|h| h.spec.key.clone())
            .collect();
        let keys = self.with_dependencies(&keys);
        self.start_keys(&keys, timeout).await
    }

    async fn start_keys(&self, keys: &[ServiceKey], timeout: Duration) -> Vec<ActionOutcome> {
        let mut waits = Vec::new();
        for k in keys {
            let Some(h) = self.services.get(k) else {
                continue;
            };
            let (tx, rx) = oneshot::channel();
            let sent = h.tx.send(Command::Start(tx)).await.is_ok();
            waits.push((k.clone(), sent, rx));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out = Vec::new();
        for (key, sent, rx) in waits {
            let error = if !sent {
                Some("the service task has ended".to_owned())
            } else {
                match tokio::time::timeout_at(deadline, rx).await {
                    Ok(Ok(Ok(()))) => None,
                    Ok(Ok(Err(e))) => Some(e),
                    Ok(Err(_)) => Some("the service task has ended".to_owned()),
                    Err(_) => None, // still waiting for its dependencies; its state says so
                }
            };
            out.push(self.outcome(key, error));
        }
        out
    }

    /// Stops the services of `target`, dependents before what they depend on.
    pub async fn stop(&self, target: &Target) -> Result<Vec<ActionOutcome>, NotFound> {
        let keys = self.resolve(target)?;
        Ok(self.stop_keys(&keys).await)
    }

    async fn stop_keys(&self, keys: &[ServiceKey]) -> Vec<ActionOutcome> {
        let graph: BTreeMap<ServiceKey, Vec<ServiceKey>> = self
            .services
            .iter()
            .map(|(k, h)| (k.clone(), h.spec.depends_on.clone()))
            .collect();
        let mut out = Vec::new();
        for layer in stop_layers(keys, &graph) {
            let mut waits = Vec::new();
            for k in layer {
                let Some(h) = self.services.get(&k) else {
                    continue;
                };
                let (tx, rx) = oneshot::channel();
                if h.tx.send(Command::Stop(tx)).await.is_ok() {
                    waits.push((k, rx));
                }
            }
            for (k, rx) in waits {
                let _ = rx.await;
                out.push(self.outcome(k, None));
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Stops, then starts, the services of `target`.
    pub async fn restart(
        &self,
        target: &Target,
        timeout: Duration,
    ) -> Result<Vec<ActionOutcome>, NotFound> {
        let keys = self.resolve(target)?;
        self.stop_keys(&keys).await;
        let keys = self.with_dependencies(&keys);
        Ok(self.start_keys(&keys, timeout).await)
    }

    /// Stops every service, in dependency order; used when the agent is asked to exit.
    pub async fn shutdown(&self) {
        let keys: Vec<ServiceKey> = self.services.keys().cloned().collect();
        self.stop_keys(&keys).await;
    }

    fn outcome(&self, key: ServiceKey, error: Option<String>) -> ActionOutcome {
        let state = self
            .hub
            .snapshot()
            .get(&key)
            .map_or(ServiceState::Stopped, |s| s.state);
        ActionOutcome { key, state, error }
    }

    fn with_dependencies(&self, keys: &[ServiceKey]) -> Vec<ServiceKey> {
        let mut seen: BTreeSet<ServiceKey> = BTreeSet::new();
        let mut todo: Vec<ServiceKey> = keys.to_vec();
        while let Some(k) = todo.pop() {
            if seen.insert(k.clone())
                && let Some(h) = self.services.get(&k)
            {
                todo.extend(h.spec.depends_on.iter().cloned());
            }
        }
        seen.into_iter().collect()
    }

    /// Status of every service, with CPU and memory sampled now (at most once per second).
    pub fn status(&self) -> Vec<ServiceStatus> {
        let snaps = self.hub.snapshot();
        let pids: Vec<u32> = snaps.values().filter_map(|s| s.pid).collect();
        let usage = self.sampler.sample(&pids);
        self.services
            .values()
            .map(|h| {
                let snap = snaps.get(&h.spec.key).cloned().unwrap_or_default();
                status_of(
                    &h.spec,
                    &snap,
                    snap.pid.and_then(|p| usage.get(&p).copied()),
                )
            })
            .collect()
    }

    /// The log file of a service.
    pub fn log_path(&self, key: &ServiceKey) -> PathBuf {
        log_path(&self.config.agent.data_dir, key)
    }
}

fn log_path(data: &Path, k: &ServiceKey) -> PathBuf {
    data.join("logs")
        .join(&k.app)
        .join(&k.env)
        .join(format!("{}.log", k.service))
}

fn status_of(
    spec: &ServiceSpec,
    snap: &ServiceSnapshot,
    usage: Option<(f32, u64)>,
) -> ServiceStatus {
    ServiceStatus {
        key: spec.key.clone(),
        state: snap.state,
        health: snap.health,
        pid: snap.pid,
        uptime_secs: snap
            .started_at
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| d.as_secs()),
        restarts: snap.restarts,
        last_exit: snap.last_exit,
        message: snap.message.clone(),
        cpu_percent: usage.map(|u| u.0),
        rss_bytes: usage.map(|u| u.1),
        port: spec.port,
        url: spec.url(),
        autostart: spec.autostart,
    }
}

/// Orders a stop: each layer holds services that nothing still running (in `keys`) depends on.
pub fn stop_layers(
    keys: &[ServiceKey],
    graph: &BTreeMap<ServiceKey, Vec<ServiceKey>>,
) -> Vec<Vec<ServiceKey>> {
    let mut left: BTreeSet<ServiceKey> = keys.iter().cloned().collect();
    let mut layers = Vec::new();
    while !left.is_empty() {
        let needed: BTreeSet<&ServiceKey> = left
            .iter()
            .flat_map(|k| graph.get(k).into_iter().flatten())
            .filter(|d| left.contains(*d))
            .collect();
        let layer: Vec<ServiceKey> = left
            .iter()
            .filter(|k| !needed.contains(k))
            .cloned()
            .collect();
        // A cycle cannot pass config validation; stop the rest together rather than loop.
        let layer = if layer.is_empty() {
            left.iter().cloned().collect()
        } else {
            layer
        };
        for k in &layer {
            left.remove(k);
        }
        layers.push(layer);
    }
    layers
}

/// Stops services an earlier agent left running that the current config does not name.
async fn stop_unknown_runs(run_root: &Path, config: &Config) {
    let known: BTreeSet<PathBuf> = config
        .services
        .iter()
        .map(|s| {
            run_root
                .join(&s.key.app)
                .join(&s.key.env)
                .join(&s.key.service)
        })
        .collect();
    let Ok(apps) = std::fs::read_dir(run_root) else {
        return;
    };
    let dirs = apps
        .flatten()
        .flat_map(|a| std::fs::read_dir(a.path()).into_iter().flatten().flatten())
        .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
        .map(|s| s.path())
        .filter(|p| !known.contains(p));
    for dir in dirs {
        match process::adopt(&dir) {
            process::Found::Alive(proc) => {
                tracing::warn!(run = %dir.display(), pid = proc.pid, "stopping a service that is no longer configured");
                let _ = proc.signal_group(libc::SIGTERM);
                if tokio::time::timeout(Duration::from_secs(10), proc.wait_shim())
                    .await
                    .is_err()
                {
                    let _ = proc.signal_group(libc::SIGKILL);
                    proc.wait_shim().await;
                }
            }
            process::Found::Orphan { pid } => {
                process::kill_group(pid, Duration::from_secs(10)).await
            }
            _ => {}
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// CPU and memory of service processes, refreshed only when someone asks, at most once a second.
#[derive(Default)]
struct Sampler {
    inner: Mutex<SamplerState>,
}

#[derive(Default)]
struct SamplerState {
    system: Option<sysinfo::System>,
    last: Option<Instant>,
    cache: HashMap<u32, (f32, u64)>,
}

impl Sampler {
    fn sample(&self, pids: &[u32]) -> HashMap<u32, (f32, u64)> {
        use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate};
        let mut st = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = st
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
            && pids.iter().all(|p| st.cache.contains_key(p));
        if fresh {
            return st.cache.clone();
        }
        let wanted: Vec<Pid> = pids.iter().map(|p| Pid::from_u32(*p)).collect();
        if st.system.is_none() {
            st.system = sysinfo::System::new().ok();
        }
        let Some(system) = st.system.as_mut() else {
            return HashMap::new();
        };
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&wanted),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        let cache: HashMap<u32, (f32, u64)> = wanted
            .iter()
            .filter_map(|p| {
                system
                    .process(*p)
                    .map(|proc| (p.as_u32(), (proc.cpu_usage(), proc.memory())))
            })
            .collect();
        st.cache = cache.clone();
        st.last = Some(Instant::now());
        cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> ServiceKey {
        ServiceKey::new("a", "p", s)
    }

    #[test]
    fn dependents_stop_before_their_dependencies() {
        // web -> api -> db, worker -> db
        let graph: BTreeMap<ServiceKey, Vec<ServiceKey>> = [
            (k("web"), vec![k("api")]),
            (k("api"), vec![k("db")]),
            (k("worker"), vec![k("db")]),
            (k("db"), vec![]),
        ]
        .into_iter()
        .collect();
        let all: Vec<ServiceKey> = graph.keys().cloned().collect();
        assert_eq!(
            stop_layers(&all, &graph),
            vec![vec![k("web"), k("worker")], vec![k("api")], vec![k("db")]]
        );
        // Only what was asked for is stopped, still in order.
        assert_eq!(
            stop_layers(&[k("db"), k("api")], &graph),
            vec![vec![k("api")], vec![k("db")]]
        );
    }
}
