//! Process supervision: runs every configured service, keeps it up, and captures its output.
//!
//! # Layout
//! - [`Supervisor`]: the set of services of one [`Config`]; starts and stops targets in
//!   dependency order, reports status, publishes events through its [`Hub`].
//! - `service`: one task per service, the single owner of its process and state machine
//!   ([`homeport_types::ServiceState::on`]); restart decisions in `restart`, probes in `health`.
//! - [`shim`]: the agent's side of the per-service log holder (`homeport-shim`), which owns the
//!   service's pipes and outlives the agent, so an agent crash loses neither the service nor its
//!   logs: the spec and the records it leaves.
//! - `process`: starting, talking to and re-adopting shims; ending orphaned process groups; port
//!   holders. What differs by OS is in `homeport-platform`.
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
pub mod usage;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use homeport_config::{Config, ServiceSpec};
use homeport_types::{ActionOutcome, Event, ServiceKey, ServiceState, ServiceStatus, Target};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

pub use homeport_platform::Backend;
pub use hub::{Hub, ServiceSnapshot};
pub use process::{PortHolder, port_holder};
pub use service::{Seed, parse_env_file};

use service::{Command, ServicePaths, ServiceTask};

/// How the supervisor finds its helper binary and where it keeps files.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `homeport` binary; shims are `homeport-shim` beside it, or `homeport shim`.
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
    /// Shared with the task, and kept across a reload that replaces the task, so dependents that
    /// wait on this service keep a live receiver.
    ready: Arc<watch::Sender<ServiceState>>,
}

/// What [`Supervisor::reload`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReloadReport {
    pub added: Vec<ServiceKey>,
    pub removed: Vec<ServiceKey>,
    pub changed: Vec<ServiceKey>,
    /// Changed services that were running, stopped and started again with their new spec.
    pub restarted: Vec<ServiceKey>,
    /// Services whose spec did not change: not touched.
    pub unchanged: Vec<ServiceKey>,
    /// How the starts went: of the restarted services, and of added ones that autostart.
    pub started: Vec<ActionOutcome>,
}

pub struct Supervisor {
    /// Swapped whole by [`Supervisor::reload`]; readers clone the `Arc`.
    config: RwLock<Arc<Config>>,
    /// The lock is held only to look up or swap handles, never across an await.
    services: RwLock<BTreeMap<ServiceKey, Handle>>,
    hub: Arc<Hub>,
    /// Who belongs to each service's group, and the readings `status` compares against.
    usage: Mutex<StatusUsage>,
    shim: Arc<shim::ShimCommand>,
    backend: Backend,
    http: reqwest::Client,
    /// Reloads run one at a time.
    reloading: tokio::sync::Mutex<()>,
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
        stop_unknown_runs(&config.agent.data_dir.join("run"), &config).await;
        let shim = Arc::new(shim::ShimCommand::locate(&opts.shim_exe));
        tracing::debug!(shim = %shim.program.display(), "log holder");
        let sup = Self {
            config: RwLock::new(Arc::clone(&config)),
            services: RwLock::new(BTreeMap::new()),
            hub,
            usage: Mutex::default(),
            shim,
            backend: Backend::current(),
            http: health::client(),
            reloading: tokio::sync::Mutex::new(()),
        };
        let readies: HashMap<ServiceKey, Arc<watch::Sender<ServiceState>>> = config
            .services
            .iter()
            .map(|s| {
                (
                    s.key.clone(),
                    Arc::new(watch::channel(ServiceState::Stopped).0),
                )
            })
            .collect();
        let mut tasks = Vec::new();
        for spec in &config.services {
            let seed = opts.seeds.get(&spec.key).cloned().unwrap_or_default();
            tasks.push(sup.make_task(&config, spec, seed, &readies));
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
        sup
    }

    /// Builds the task of one service and registers its handle; the caller spawns it.
    fn make_task(
        &self,
        config: &Config,
        spec: &ServiceSpec,
        seed: Seed,
        readies: &HashMap<ServiceKey, Arc<watch::Sender<ServiceState>>>,
    ) -> ServiceTask {
        let k = &spec.key;
        let data = &config.agent.data_dir;
        let paths = ServicePaths {
            shim: Arc::clone(&self.shim),
            backend: self.backend,
            run_dir: data.join("run").join(&k.app).join(&k.env).join(&k.service),
            log_path: log_path(data, k),
            log_max_bytes: config.agent.log_max_bytes,
            log_keep: config.agent.log_keep,
            release: data.join("apps").join(&k.app).join(&k.env).join("current"),
        };
        let deps = spec
            .depends_on
            .iter()
            .filter_map(|d| readies.get(d).map(|tx| (d.clone(), tx.subscribe())))
            .collect();
        let ready = readies
            .get(k)
            .cloned()
            .unwrap_or_else(|| Arc::new(watch::channel(ServiceState::Stopped).0));
        let (tx, rx) = mpsc::channel(16);
        let mut task = ServiceTask::new(
            spec.clone(),
            paths,
            Arc::clone(&self.hub),
            rx,
            Arc::clone(&ready),
            deps,
            seed,
            self.http.clone(),
        );
        task.publish_initial();
        self.write_services().insert(
            k.clone(),
            Handle {
                spec: spec.clone(),
                tx,
                ready,
            },
        );
        task
    }

    fn read_services(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<ServiceKey, Handle>> {
        self.services.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_services(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<ServiceKey, Handle>> {
        self.services
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Applies a new config: stops and forgets removed services, replaces changed ones
    /// (restarting those that were running), adds new ones (starting those marked autostart).
    /// Unchanged services are not touched. Agent-wide settings (port, log limits) apply to
    /// services whose spec changes, and to all at the next agent start.
    pub async fn reload(&self, new: Arc<Config>, timeout: Duration) -> ReloadReport {
        let _one_at_a_time = self.reloading.lock().await;
        let old = self.config();
        let new_specs: BTreeMap<&ServiceKey, &ServiceSpec> =
            new.services.iter().map(|s| (&s.key, s)).collect();
        let mut report = ReloadReport::default();
        for spec in &old.services {
            match new_specs.get(&spec.key) {
                None => report.removed.push(spec.key.clone()),
                Some(n) if *n != spec => report.changed.push(spec.key.clone()),
                Some(_) => report.unchanged.push(spec.key.clone()),
            }
        }
        let old_keys: BTreeSet<&ServiceKey> = old.services.iter().map(|s| &s.key).collect();
        report.added = new
            .services
            .iter()
            .filter(|s| !old_keys.contains(&s.key))
            .map(|s| s.key.clone())
            .collect();

        let snaps = self.hub.snapshot();
        let was_up = |k: &ServiceKey| {
            snaps
                .get(k)
                .is_some_and(|s| s.state.is_up() || s.state == ServiceState::BackingOff)
        };
        report.restarted = report
            .changed
            .iter()
            .filter(|k| was_up(k))
            .cloned()
            .collect();

        let replaced: Vec<ServiceKey> = report
            .removed
            .iter()
            .chain(&report.changed)
            .cloned()
            .collect();
        self.stop_keys(&replaced).await;
        let mut readies: HashMap<ServiceKey, Arc<watch::Sender<ServiceState>>> = HashMap::new();
        {
            let mut services = self.write_services();
            for k in &replaced {
                // Dropping the handle closes the task's queue; the stopped task then ends.
                if let Some(h) = services.remove(k)
                    && report.changed.contains(k)
                {
                    readies.insert(k.clone(), h.ready);
                }
            }
            for (k, h) in services.iter() {
                readies.insert(k.clone(), Arc::clone(&h.ready));
            }
        }
        for k in &report.removed {
            self.hub.remove(k);
        }
        for spec in &new.services {
            readies
                .entry(spec.key.clone())
                .or_insert_with(|| Arc::new(watch::channel(ServiceState::Stopped).0));
        }
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&new);
        for spec in new
            .services
            .iter()
            .filter(|s| report.changed.contains(&s.key) || report.added.contains(&s.key))
        {
            let seed = snaps
                .get(&spec.key)
                .map(|s| Seed {
                    restarts: s.restarts,
                    last_exit: s.last_exit,
                })
                .unwrap_or_default();
            let task = self.make_task(&new, spec, seed, &readies);
            tokio::spawn(task.run());
        }
        let mut to_start = report.restarted.clone();
        to_start.extend(
            new.services
                .iter()
                .filter(|s| s.autostart && report.added.contains(&s.key))
                .map(|s| s.key.clone()),
        );
        if !to_start.is_empty() {
            let keys = self.with_dependencies(&to_start);
            report.started = self.start_keys(&keys, timeout).await;
        }
        report
    }

    /// The services a target names, or [`NotFound`].
    pub fn resolve(&self, target: &Target) -> Result<Vec<ServiceKey>, NotFound> {
        let keys: Vec<ServiceKey> = self
            .read_services()
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
            .read_services()
            .values()
            .filter(|h| h.spec.autostart)
            .map(|h| h.spec.key.clone())
            .collect();
        let keys = self.with_dependencies(&keys);
        self.start_keys(&keys, timeout).await
    }

    /// The command queues of `keys`, looked up under the lock and used after it.
    fn senders(&self, keys: &[ServiceKey]) -> Vec<(ServiceKey, mpsc::Sender<Command>)> {
        let services = self.read_services();
        keys.iter()
            .filter_map(|k| services.get(k).map(|h| (k.clone(), h.tx.clone())))
            .collect()
    }

    /// Starts exactly these services and what they depend on (see [`Supervisor::start`]).
    pub async fn start_only(&self, keys: &[ServiceKey], timeout: Duration) -> Vec<ActionOutcome> {
        let keys = self.with_dependencies(keys);
        self.start_keys(&keys, timeout).await
    }

    /// Failed health checks of a service since the agent started (see
    /// [`ServiceSnapshot::probe_failures`]).
    pub fn probe_failures(&self, key: &ServiceKey) -> u64 {
        self.hub.snapshot().get(key).map_or(0, |s| s.probe_failures)
    }

    /// What the service's last failed health check said, until one passes.
    pub fn last_probe_failure(&self, key: &ServiceKey) -> Option<String> {
        self.hub
            .snapshot()
            .get(key)
            .and_then(|s| s.last_probe_failure.clone())
    }

    async fn start_keys(&self, keys: &[ServiceKey], timeout: Duration) -> Vec<ActionOutcome> {
        let mut waits = Vec::new();
        for (k, tx) in self.senders(keys) {
            let (reply, rx) = oneshot::channel();
            let sent = tx.send(Command::Start(reply)).await.is_ok();
            waits.push((k, sent, rx));
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
                    Err(_) => Some(format!(
                        "still starting after {}",
                        humantime::format_duration(timeout)
                    )),
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
            .read_services()
            .iter()
            .map(|(k, h)| (k.clone(), h.spec.depends_on.clone()))
            .collect();
        let mut out = Vec::new();
        for layer in stop_layers(keys, &graph) {
            let mut waits = Vec::new();
            for (k, tx) in self.senders(&layer) {
                let (reply, rx) = oneshot::channel();
                if tx.send(Command::Stop(reply)).await.is_ok() {
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

    /// Stops, then starts, exactly these services (dependents stop first; dependencies start too).
    pub async fn restart_keys(&self, keys: &[ServiceKey], timeout: Duration) -> Vec<ActionOutcome> {
        self.stop_keys(keys).await;
        let keys = self.with_dependencies(keys);
        self.start_keys(&keys, timeout).await
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
        let keys: Vec<ServiceKey> = self.read_services().keys().cloned().collect();
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
        let services = self.read_services();
        let mut seen: BTreeSet<ServiceKey> = BTreeSet::new();
        let mut todo: Vec<ServiceKey> = keys.to_vec();
        while let Some(k) = todo.pop() {
            if seen.insert(k.clone())
                && let Some(h) = services.get(&k)
            {
                todo.extend(h.spec.depends_on.iter().cloned());
            }
        }
        seen.into_iter().collect()
    }

    /// Status of every service, with CPU and memory read now (at most once per second).
    pub fn status(&self) -> Vec<ServiceStatus> {
        self.status_from(&self.hub.snapshot())
    }

    /// Status built from a hub snapshot (see [`Hub::subscribe`]).
    pub fn status_from(&self, snaps: &BTreeMap<ServiceKey, ServiceSnapshot>) -> Vec<ServiceStatus> {
        let pids: Vec<u32> = snaps.values().filter_map(|s| s.pid).collect();
        let usage = self
            .usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .read(&pids);
        let config = self.config();
        let data = config.agent.data_dir.clone();
        self.read_services()
            .values()
            .map(|h| {
                let snap = snaps.get(&h.spec.key).cloned().unwrap_or_default();
                let mut status = status_of(
                    &h.spec,
                    &snap,
                    snap.pid.and_then(|p| usage.get(&p).copied()),
                );
                status.log_file = Some(log_path(&data, &h.spec.key).display().to_string());
                let k = &h.spec.key;
                status.notify = config
                    .envs
                    .iter()
                    .find(|e| e.app == k.app && e.env == k.env)
                    .map_or_else(
                        || homeport_types::NotifyPolicy::default_for(&k.env),
                        |e| e.notify,
                    );
                status
            })
            .collect()
    }

    /// CPU and memory of every running service, measured against `meter`'s previous reading
    /// (the caller's own, so its intervals are exactly its own). Reads a few small files per
    /// service: call it off the async workers.
    pub fn sample(&self, meter: &mut usage::Meter) -> BTreeMap<ServiceKey, usage::ServiceUsage> {
        let snaps = self.hub.snapshot();
        let pids: Vec<u32> = snaps.values().filter_map(|s| s.pid).collect();
        let readings = self
            .usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .groups
            .read(&pids);
        let by_pid = meter.measure(&readings, false);
        snaps
            .iter()
            .filter_map(|(k, s)| Some((k.clone(), *by_pid.get(&s.pid?)?)))
            .collect()
    }

    /// The log file of a service.
    pub fn log_path(&self, key: &ServiceKey) -> PathBuf {
        log_path(&self.config().agent.data_dir, key)
    }
}

/// `DATA/logs/APP/ENV/SERVICE.log`; on macOS with the default data folder,
/// `~/Library/Logs/Homeport/APP/ENV/SERVICE.log`, where Console.app looks.
fn log_path(data: &Path, k: &ServiceKey) -> PathBuf {
    homeport_platform::dirs::Folders::current()
        .logs_for(data)
        .join(&k.app)
        .join(&k.env)
        .join(format!("{}.log", k.service))
}

fn status_of(
    spec: &ServiceSpec,
    snap: &ServiceSnapshot,
    usage: Option<usage::ServiceUsage>,
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
        state_secs: snap
            .state_since
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| d.as_secs()),
        restarts: snap.restarts,
        last_exit: snap.last_exit,
        message: snap.message.clone(),
        cpu_percent: usage.and_then(|u| u.cpu_percent),
        rss_bytes: usage.map(|u| u.rss),
        port: spec.port,
        ports: spec.ports.clone(),
        instance: None,
        url: spec.url(),
        autostart: spec.autostart,
        log_file: None,
        notify: homeport_types::NotifyPolicy::default_for(&spec.key.env),
        retry_in_secs: (snap.state == ServiceState::BackingOff)
            .then_some(snap.retry_at)
            .flatten()
            .map(|t| {
                // Rounded up: "in 0 s" while it is still waiting would read as a hang.
                let left = t.duration_since(SystemTime::now()).unwrap_or_default();
                left.as_secs() + u64::from(left.subsec_nanos() > 0)
            }),
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
        match process::adopt(&dir, Duration::from_secs(10)).await {
            process::Found::Alive(mut proc) => {
                tracing::warn!(run = %dir.display(), pid = proc.pid, "stopping a service that is no longer configured");
                let limit = Duration::from_secs(10);
                let stopped = async {
                    proc.stop(libc::SIGTERM, limit).await.ok()?;
                    proc.exited().await
                };
                if tokio::time::timeout(limit + Duration::from_secs(5), stopped)
                    .await
                    .ok()
                    .flatten()
                    .is_some()
                {
                    proc.quit().await;
                } else {
                    proc.kill(limit).await;
                }
            }
            process::Found::Idle(proc, _) => proc.quit().await,
            process::Found::Orphan { pid } => {
                process::kill_group(pid, Duration::from_secs(10)).await
            }
            _ => {}
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// What `status` shows of CPU and memory: read when someone asks, at most once a second.
#[derive(Default)]
struct StatusUsage {
    groups: usage::Groups,
    meter: usage::Meter,
    last: Option<Instant>,
    cache: HashMap<u32, usage::ServiceUsage>,
}

impl StatusUsage {
    fn read(&mut self, pids: &[u32]) -> HashMap<u32, usage::ServiceUsage> {
        let fresh = self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
            && pids.iter().all(|p| self.cache.contains_key(p));
        if !fresh {
            let readings = self.groups.read(pids);
            self.cache = self.meter.measure(&readings, true);
            self.last = Some(Instant::now());
        }
        self.cache.clone()
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
