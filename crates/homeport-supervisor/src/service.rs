//! One task per service: the single owner of its process, state and restart history.
//!
//! Everything that happens to a service arrives at this task as a message (a command from the
//! supervisor, the shim's exit, a health probe result, a backoff timer) and is applied through
//! [`ServiceState::on`]. No other code touches the process, so there are no locks around it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use homeport_config::{RestartMode, ServiceSpec};
use homeport_types::{
    AfterExit, Event, EventKind, ExitReason, Health, Input, ServiceKey, ServiceState, Subject,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::fsutil::{Durability, replace_file};
use crate::health::ProbeError;
use crate::hub::{Hub, ServiceSnapshot};
use crate::logfile::timestamp;
use crate::process::{self, Found, Proc};
use crate::restart::{Decision, RestartTracker};
use crate::shim::{SPEC_FILE, ShimCommand, ShimSpec};
use homeport_shim::proto::FromShim;

const FIRST_BOOT_PROBE: Duration = Duration::from_millis(50);
/// Until its first passing check, a service is probed at least this often, whatever its
/// `interval`: a slow starter is found ready within this of being ready, not an interval late.
const BOOT_PROBE_MAX: Duration = Duration::from_millis(250);

/// How waiting for dependencies ended.
enum Wait {
    Ready,
    /// A command other than Start arrived first.
    Interrupted(Command),
    /// A dependency went down for good (failed, crashed, exited or was stopped).
    DependencyDown(String),
}

/// Paths and limits a service task needs besides its spec.
#[derive(Debug, Clone)]
pub struct ServicePaths {
    pub shim: Arc<ShimCommand>,
    pub backend: homeport_platform::Backend,
    pub run_dir: PathBuf,
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
    pub log_keep: u32,
    /// `{release}`: the environment's `current` link, absent until its first deploy.
    pub release: PathBuf,
}

/// What the supervisor asks of a service task.
#[derive(Debug)]
pub enum Command {
    /// Start (if not up); replies once the process runs, or with why it could not.
    Start(oneshot::Sender<Result<(), String>>),
    /// Stop (if up); replies once the whole process group is gone.
    Stop(oneshot::Sender<()>),
}

/// The history a restarted agent keeps from state.db.
#[derive(Debug, Clone, Default)]
pub struct Seed {
    pub restarts: u64,
    pub last_exit: Option<ExitReason>,
}

pub struct ServiceTask {
    spec: ServiceSpec,
    paths: ServicePaths,
    hub: Arc<Hub>,
    http: reqwest::Client,
    rx: mpsc::Receiver<Command>,
    ready_tx: Arc<watch::Sender<ServiceState>>,
    deps: Vec<(ServiceKey, watch::Receiver<ServiceState>)>,

    snap: ServiceSnapshot,
    /// The shim, while one runs: with the service, or idle between a crash and its restart.
    proc: Option<Proc>,
    /// The spec last written to `spec.json`, so an unchanged one is not written again.
    written_spec: Option<ShimSpec>,
    started: Option<Instant>,
    tracker: RestartTracker,
    backoff_until: Option<tokio::time::Instant>,
    /// Replies owed to `Start` commands that arrived while waiting for dependencies.
    waiting_start: Vec<oneshot::Sender<Result<(), String>>>,
    /// A running probe; it answers with its result and how long it took.
    probe: Option<JoinHandle<(Result<(), ProbeError>, Duration)>>,
    next_probe: Option<tokio::time::Instant>,
    consecutive_failures: u32,
    /// Until the first passing probe, probes come quickly (doubling from 50 ms up to the
    /// interval), so dependents start as soon as a service is ready rather than an interval later.
    boot_delay: Duration,
    /// Set when a re-adopted process runs an older config; shown until it is restarted.
    drift_note: Option<String>,
}

impl ServiceTask {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        spec: ServiceSpec,
        paths: ServicePaths,
        hub: Arc<Hub>,
        rx: mpsc::Receiver<Command>,
        ready_tx: Arc<watch::Sender<ServiceState>>,
        deps: Vec<(ServiceKey, watch::Receiver<ServiceState>)>,
        seed: Seed,
        http: reqwest::Client,
    ) -> Self {
        let tracker = RestartTracker::new(spec.restart.clone());
        let snap = ServiceSnapshot {
            restarts: seed.restarts,
            last_exit: seed.last_exit,
            ..Default::default()
        };
        Self {
            spec,
            paths,
            hub,
            http,
            rx,
            ready_tx,
            deps,
            snap,
            proc: None,
            written_spec: None,
            started: None,
            tracker,
            backoff_until: None,
            waiting_start: Vec::new(),
            probe: None,
            next_probe: None,
            consecutive_failures: 0,
            boot_delay: FIRST_BOOT_PROBE,
            drift_note: None,
        }
    }

    /// Takes over whatever an earlier agent left running for this service.
    pub async fn adopt(&mut self) {
        match process::adopt(&self.paths.run_dir, self.spec.stop_timeout).await {
            Found::Nothing => {}
            Found::Alive(proc) => {
                let pid = proc.pid.unwrap_or_default();
                tracing::info!(service = %self.spec.key, pid, "re-adopted a running service");
                self.snap.pid = Some(pid);
                self.snap.started_at = homeport_platform::started_at(pid);
                self.started = Some(Instant::now());
                self.proc = Some(proc);
                self.apply(
                    Input::Start,
                    Some("re-adopted after an agent restart".into()),
                );
                // The config may have changed while no agent ran: say so rather than silently
                // keep an old command running.
                let drift = process::read_spec(&self.paths.run_dir).is_some_and(|running| {
                    running.argv != self.spec.command.argv()
                        || running.cwd != self.spec.cwd
                        || self
                            .spec
                            .env
                            .iter()
                            .any(|(k, v)| running.env.get(k) != Some(v))
                });
                let note = drift.then(|| {
                    "running with an older config; restart it to apply the new one".to_owned()
                });
                self.drift_note = note.clone();
                self.apply(
                    Input::Spawned {
                        checked: self.spec.health.is_some(),
                    },
                    note,
                );
                self.schedule_probe(Duration::ZERO);
            }
            Found::Ended(rec) => {
                let msg = rec.exit.map(|e| format!("{e} while the agent was down"));
                self.snap.last_exit = rec.exit;
                process::clear_run(&self.paths.run_dir);
                self.publish_message(msg);
            }
            Found::Idle(proc, exit) => {
                proc.quit().await;
                let msg = exit.map(|e| format!("{e} while the agent was down"));
                self.snap.last_exit = exit.or(self.snap.last_exit);
                process::clear_run(&self.paths.run_dir);
                self.publish_message(msg);
            }
            Found::Orphan { pid } => {
                tracing::warn!(service = %self.spec.key, pid, "its log holder died; stopping the unsupervised process group");
                process::kill_group(pid, self.spec.stop_timeout).await;
                process::clear_run(&self.paths.run_dir);
                self.snap.last_exit = Some(ExitReason::Lost);
                self.publish_message(Some(
                    "stopped: its log holder had died while the agent was down".into(),
                ));
            }
        }
    }

    pub async fn run(mut self) {
        loop {
            if self.snap.state == ServiceState::Starting && !self.running() {
                match self.wait_for_dependencies().await {
                    Wait::Ready => self.launch().await,
                    Wait::Interrupted(cmd) => {
                        if !self.handle(cmd).await {
                            return;
                        }
                    }
                    Wait::DependencyDown(why) => {
                        tracing::warn!(service = %self.spec.key, "cannot start: {why}");
                        self.apply(Input::SpawnFailed, Some(why.clone()));
                        for reply in self.waiting_start.drain(..) {
                            let _ = reply.send(Err(why.clone()));
                        }
                    }
                }
                continue;
            }
            let backoff = self
                .backoff_until
                .filter(|_| self.snap.state == ServiceState::BackingOff);
            let probe_due = self
                .next_probe
                .filter(|_| self.running() && self.probe.is_none());
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => if !self.handle(cmd).await { return },
                    // The supervisor is gone: the agent is exiting and leaves this service running.
                    None => return,
                },
                msg = recv(self.proc.as_mut()), if self.proc.is_some() => match msg {
                    Some(FromShim::Exited(e)) => self.on_exit(crate::shim::exit_reason(e), None).await,
                    Some(_) => {}
                    None => self.on_shim_gone().await,
                },
                () = sleep_until(backoff), if backoff.is_some() => {
                    self.backoff_until = None;
                    self.snap.restarts += 1;
                    self.apply(Input::BackoffElapsed, None);
                }
                () = sleep_until(probe_due), if probe_due.is_some() => {
                    let check = self.spec.health.clone();
                    let http = self.http.clone();
                    self.next_probe = None;
                    if let Some(check) = check {
                        let ctx = crate::health::ProbeContext { cwd: self.spec.cwd.clone(), env: self.spec.env.clone() };
                        self.probe = Some(tokio::spawn(async move {
                            let began = Instant::now();
                            let result = crate::health::probe(&check, &http, &ctx).await;
                            (result, began.elapsed())
                        }));
                    }
                }
                (r, took) = wait_probe(self.probe.as_mut()), if self.probe.is_some() => {
                    self.probe = None;
                    if r.is_ok() && self.running() {
                        self.hub.record_probe(&self.spec.key, took);
                    }
                    self.on_probe(r).await;
                }
            }
        }
    }

    /// Handles one command; returns false when the task should end.
    async fn handle(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Start(reply) => {
                if self.snap.state.is_up() && self.running() {
                    let _ = reply.send(Ok(()));
                } else {
                    self.tracker.reset();
                    self.backoff_until = None;
                    self.waiting_start.push(reply);
                    if self.snap.state != ServiceState::Starting {
                        self.apply(Input::Start, None);
                    }
                }
            }
            Command::Stop(reply) => {
                self.stop().await;
                let _ = reply.send(());
            }
        }
        true
    }

    /// Waits until every dependency is ready. Returns a command that arrived meanwhile.
    async fn wait_for_dependencies(&mut self) -> Wait {
        // Only transitions seen while waiting count: a dependency's state from before it was
        // (re)started says nothing about this start.
        for (_, rx) in &mut self.deps {
            rx.borrow_and_update();
        }
        loop {
            let pending: Vec<(String, ServiceState)> = self
                .deps
                .iter()
                .map(|(k, rx)| (k.service.clone(), *rx.borrow()))
                .filter(|(_, s)| !s.is_ready())
                .collect();
            if pending.is_empty() {
                return Wait::Ready;
            }
            let names: Vec<String> = pending.iter().map(|(n, s)| format!("{n} ({s})")).collect();
            self.publish_message(Some(format!("waiting for {}", names.join(", "))));
            let changed = futures_any(&mut self.deps);
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(Command::Start(reply)) => self.waiting_start.push(reply),
                    Some(other) => return Wait::Interrupted(other),
                    None => return Wait::Interrupted(Command::Stop(oneshot::channel().0)),
                },
                () = changed => {
                    let gone = self.deps.iter().find_map(|(k, rx)| {
                        let s = *rx.borrow();
                        s.is_settled_down().then(|| format!("dependency {} is {s}", k.service))
                    });
                    if let Some(why) = gone {
                        return Wait::DependencyDown(why);
                    }
                }
            }
        }
    }

    /// Checks ports, spawns the shim, and settles the `Start` replies.
    async fn launch(&mut self) {
        let result = self.try_launch().await;
        match &result {
            Ok(()) => {
                self.apply(
                    Input::Spawned {
                        checked: self.spec.health.is_some(),
                    },
                    None,
                );
                self.schedule_probe(Duration::ZERO);
            }
            Err(msg) => {
                tracing::warn!(service = %self.spec.key, "cannot start: {msg}");
                self.apply(Input::SpawnFailed, Some(msg.clone()));
            }
        }
        for reply in self.waiting_start.drain(..) {
            let _ = reply.send(result.clone());
        }
    }

    async fn try_launch(&mut self) -> Result<(), String> {
        let ports = self.spec.all_ports();
        if !ports.is_empty() {
            // Finding a port's holder scans /proc or runs lsof: keep it off the async workers.
            let held = tokio::task::spawn_blocking(move || {
                ports
                    .into_iter()
                    .find_map(|p| process::port_holder(p).map(|h| (p, h)))
            })
            .await
            .map_err(|e| format!("cannot check the ports: {e}"))?;
            if let Some((port, holder)) = held {
                return Err(format!("port {port} is already in use by {holder}"));
            }
        }
        if let Some(why) = no_release_yet(&self.spec, &self.paths.release) {
            return Err(why);
        }
        let mut env = self.spec.env.clone();
        for file in &self.spec.env_files {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read env file {}: {e}", file.display()))?;
            env.extend(parse_env_file(&text));
        }
        let spec = ShimSpec {
            argv: self.spec.command.argv(),
            cwd: self.spec.cwd.clone(),
            env,
            log_path: self.paths.log_path.clone(),
            log_max_bytes: self.paths.log_max_bytes,
            log_keep: self.paths.log_keep,
            stop_timeout_ms: self.spec.stop_timeout.as_millis() as u64,
        };
        let run_dir = &self.paths.run_dir;
        std::fs::create_dir_all(&spec.cwd)
            .map_err(|e| format!("cannot create {}: {e}", spec.cwd.display()))?;
        // After a crash the shim that ran the service is still there, idle: it starts the
        // service again at once, with no new process to start first.
        if self.proc.is_none() {
            let proc = process::start_shim(&self.paths.shim, run_dir, self.paths.backend)
                .await
                .map_err(|e| e.to_string())?;
            self.proc = Some(proc);
        }
        if self.written_spec.as_ref() != Some(&spec) {
            let body = serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?;
            replace_file(&run_dir.join(SPEC_FILE), &body, 0o600, Durability::Process)
                .map_err(|e| format!("cannot write {}: {e}", run_dir.join(SPEC_FILE).display()))?;
            self.written_spec = Some(spec.clone());
        }
        let Some(proc) = self.proc.as_mut() else {
            return Err("the log holder is gone".into());
        };
        let pid = match proc.start(&spec).await {
            Ok(pid) => pid,
            Err(e) => {
                let detail = match &e {
                    process::SpawnError::Shim(_) => {
                        let last = process::shim_log(run_dir);
                        self.proc = None;
                        if last.is_empty() {
                            e.to_string()
                        } else {
                            format!("{e}: {last}")
                        }
                    }
                    _ => e.to_string(),
                };
                return Err(detail);
            }
        };
        tracing::info!(service = %self.spec.key, pid, shim = proc.shim_pid, "started");
        self.snap.pid = Some(pid);
        self.snap.started_at = Some(SystemTime::now());
        self.snap.health = Health::Unknown;
        self.started = Some(Instant::now());
        self.consecutive_failures = 0;
        self.boot_delay = FIRST_BOOT_PROBE;
        Ok(())
    }

    /// Whether the service's process runs (a shim may be there, idle, while it does not).
    fn running(&self) -> bool {
        self.proc.as_ref().is_some_and(|p| p.pid.is_some())
    }

    /// Stops the process group: the stop signal, the grace period, then SIGKILL.
    async fn stop(&mut self) {
        for reply in self.waiting_start.drain(..) {
            let _ = reply.send(Err("stopped before it could start".into()));
        }
        if !self.running() {
            self.release_shim().await;
            if self.snap.state != ServiceState::Stopped && !self.snap.state.is_settled_down() {
                self.set_state(ServiceState::Stopped, None);
            }
            self.backoff_until = None;
            return;
        }
        self.apply(Input::Stop, None);
        let exit = self.terminate().await;
        self.on_exit(exit, None).await;
    }

    /// Has the shim send the stop signal to the group and SIGKILL after the grace period, and
    /// waits until everything of the service is gone.
    async fn terminate(&mut self) -> ExitReason {
        let grace = self.spec.stop_timeout;
        let Some(proc) = self.proc.as_mut() else {
            return ExitReason::Lost;
        };
        if let Err(e) = proc.stop(self.spec.stop_signal, grace).await {
            tracing::warn!(service = %self.spec.key, "cannot ask the log holder to stop it: {e}");
        }
        // The shim escalates to SIGKILL itself; allow for that, the pipes and some slack.
        let limit = grace + homeport_shim::PIPE_GRACE + Duration::from_secs(5);
        match tokio::time::timeout(limit, proc.exited()).await {
            Ok(Some(e)) => crate::shim::exit_reason(e),
            Ok(None) => {
                self.on_shim_vanished().await;
                ExitReason::Lost
            }
            Err(_) => {
                tracing::warn!(service = %self.spec.key, "its log holder did not stop it; killing both");
                if let Some(proc) = self.proc.take() {
                    proc.kill(grace).await;
                }
                process::clear_run(&self.paths.run_dir);
                ExitReason::Lost
            }
        }
    }

    /// The shim's connection closed while the service ran: nothing may run unseen.
    async fn on_shim_vanished(&mut self) {
        if let Some(proc) = self.proc.take()
            && let Some(pid) = proc.pid
        {
            process::kill_group(pid, self.spec.stop_timeout).await;
        }
        process::clear_run(&self.paths.run_dir);
    }

    /// The shim went away on its own.
    async fn on_shim_gone(&mut self) {
        if self.running() {
            tracing::warn!(service = %self.spec.key, "its log holder died; stopping what is left of it");
            self.on_shim_vanished().await;
            self.on_exit(ExitReason::Lost, None).await;
        } else {
            self.proc = None;
        }
    }

    /// Lets an idle shim exit and forgets the run.
    async fn release_shim(&mut self) {
        if let Some(proc) = self.proc.take() {
            proc.quit().await;
            process::clear_run(&self.paths.run_dir);
        }
    }

    /// The service ended (`exit`): record how, then follow the restart policy. `forced` says
    /// why the agent ended it itself (its health check failed), which is what a person needs to
    /// read rather than the exit status of the stop.
    async fn on_exit(&mut self, exit: ExitReason, forced: Option<String>) {
        if let Some(p) = self.probe.take() {
            p.abort();
        }
        self.next_probe = None;
        if let Some(proc) = self.proc.as_mut() {
            proc.pid = None;
        }
        let uptime = self.started.take().map_or(Duration::ZERO, |s| s.elapsed());
        self.snap.pid = None;
        self.snap.started_at = None;
        self.snap.last_exit = Some(exit);
        self.snap.health = Health::Unknown;
        if self.snap.state == ServiceState::Stopping {
            self.release_shim().await;
            self.apply(Input::Exited(AfterExit::stay_down(exit.success())), None);
            return;
        }
        let decision = self
            .tracker
            .on_exit(Instant::now(), uptime, exit, forced.is_some());
        let cause = forced.unwrap_or_else(|| exit.to_string());
        let (input, msg) = match decision {
            Decision::Restart(delay) => {
                self.backoff_until =
                    (!delay.is_zero()).then(|| tokio::time::Instant::now() + delay);
                self.snap.retry_at = (!delay.is_zero()).then(|| SystemTime::now() + delay);
                let msg = format!(
                    "{cause}; restarting in {}",
                    humantime::format_duration(delay)
                );
                (Input::Exited(AfterExit::Restart), msg)
            }
            Decision::GiveUp => {
                self.release_shim().await;
                let p = &self.spec.restart;
                let msg = format!(
                    "{cause}; gave up after {} failures within {}",
                    p.max_failures.unwrap_or_default(),
                    humantime::format_duration(p.window)
                );
                (Input::Exited(AfterExit::GiveUp), msg)
            }
            Decision::StayDown => {
                self.release_shim().await;
                (Input::Exited(AfterExit::stay_down(exit.success())), cause)
            }
        };
        tracing::info!(service = %self.spec.key, "{msg}");
        self.apply(input, Some(msg));
        if self.snap.state == ServiceState::BackingOff && self.backoff_until.is_none() {
            // No delay: restart now rather than on the timer's next tick.
            self.snap.restarts += 1;
            self.apply(Input::BackoffElapsed, None);
        }
    }

    async fn on_probe(&mut self, result: Result<(), ProbeError>) {
        let Some(check) = self.spec.health.clone() else {
            return;
        };
        if !self.running() {
            return;
        }
        match result {
            Ok(()) => {
                self.consecutive_failures = 0;
                self.snap.last_probe_failure = None;
                if self.snap.health != Health::Healthy {
                    self.set_health(Health::Healthy, None);
                }
                self.apply(Input::HealthPassed, None);
            }
            Err(ProbeError::NotRun(why)) => {
                // The agent's trouble, not the service's: try again later, count nothing.
                tracing::warn!(service = %self.spec.key, "could not run the health probe: {why}");
            }
            Err(ProbeError::Failed(reason)) => {
                let booting = self
                    .started
                    .is_some_and(|s| s.elapsed() < check.start_period)
                    && self.snap.health == Health::Unknown;
                self.snap.last_probe_failure = Some(reason.clone());
                if !booting {
                    self.consecutive_failures += 1;
                    self.snap.probe_failures += 1;
                    if self.consecutive_failures >= check.retries {
                        let msg = format!(
                            "health check failed {} times: {reason}",
                            self.consecutive_failures
                        );
                        self.set_health(Health::Unhealthy, Some(reason));
                        self.apply(Input::HealthFailed, Some(msg.clone()));
                        if self.spec.restart.mode != RestartMode::Never {
                            tracing::warn!(service = %self.spec.key, "unhealthy; restarting it");
                            let exit = self.terminate().await;
                            self.on_exit(exit, Some(msg)).await;
                            return;
                        }
                    } else {
                        if self.snap.state == ServiceState::Starting {
                            self.snap.message = Some(format!("starting: {reason}"));
                        }
                        // Counted where a deploy's gate looks, before the service is unhealthy.
                        self.hub.publish(&self.spec.key, self.snap.clone(), None);
                    }
                } else {
                    self.snap.message = Some(format!("starting: {reason}"));
                    self.hub.publish(&self.spec.key, self.snap.clone(), None);
                }
            }
        }
        if self.snap.health == Health::Healthy {
            self.schedule_probe(check.interval);
        } else {
            let most = check.interval.min(BOOT_PROBE_MAX);
            let delay = self.boot_delay.min(most);
            self.boot_delay = (self.boot_delay * 2).min(most);
            self.schedule_probe(delay);
        }
    }

    fn schedule_probe(&mut self, after: Duration) {
        if self.spec.health.is_some() && self.running() {
            self.next_probe = Some(tokio::time::Instant::now() + after);
        }
    }

    fn apply(&mut self, input: Input, message: Option<String>) {
        let next = self.snap.state.on(input);
        if next != self.snap.state {
            self.set_state(next, message);
        } else if message.is_some() {
            self.publish_message(message);
        }
    }

    fn set_state(&mut self, to: ServiceState, message: Option<String>) {
        let from = self.snap.state;
        if !to.is_up() {
            self.drift_note = None;
        }
        let message = message.or_else(|| self.drift_note.clone());
        self.snap.state = to;
        self.snap.state_since = Some(SystemTime::now());
        if to != ServiceState::BackingOff {
            self.snap.retry_at = None;
        }
        self.snap.message = message.clone();
        let event = Event {
            count: 1,
            last_time: None,
            time: timestamp(),
            subject: Subject::Service(self.spec.key.clone()),
            kind: EventKind::State {
                from,
                to,
                pid: self.snap.pid,
                exit: self.exit_for_event(to),
                restarts: self.snap.restarts,
                message,
            },
        };
        self.ready_tx.send_replace(to);
        self.hub
            .publish(&self.spec.key, self.snap.clone(), Some(event));
    }

    fn exit_for_event(&self, to: ServiceState) -> Option<ExitReason> {
        matches!(
            to,
            ServiceState::Stopped
                | ServiceState::Exited
                | ServiceState::Crashed
                | ServiceState::BackingOff
                | ServiceState::Failed
        )
        .then_some(self.snap.last_exit)
        .flatten()
    }

    fn set_health(&mut self, health: Health, message: Option<String>) {
        self.snap.health = health;
        let event = Event {
            count: 1,
            last_time: None,
            time: timestamp(),
            subject: Subject::Service(self.spec.key.clone()),
            kind: EventKind::Health { health, message },
        };
        self.hub
            .publish(&self.spec.key, self.snap.clone(), Some(event));
    }

    fn publish_message(&mut self, message: Option<String>) {
        if self.snap.message != message {
            self.snap.message = message;
            self.hub.publish(&self.spec.key, self.snap.clone(), None);
        }
    }

    /// Publishes the initial snapshot (before any command).
    pub fn publish_initial(&mut self) {
        self.hub.publish(&self.spec.key, self.snap.clone(), None);
    }
}

async fn recv(proc: Option<&mut Proc>) -> Option<FromShim> {
    match proc {
        Some(p) => p.recv().await,
        None => std::future::pending().await,
    }
}

async fn wait_probe(
    probe: Option<&mut JoinHandle<(Result<(), ProbeError>, Duration)>>,
) -> (Result<(), ProbeError>, Duration) {
    match probe {
        Some(h) => h.await.unwrap_or_else(|e| {
            (
                Err(ProbeError::NotRun(format!("probe task failed: {e}"))),
                Duration::ZERO,
            )
        }),
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves when any dependency's state changes.
async fn futures_any(deps: &mut [(ServiceKey, watch::Receiver<ServiceState>)]) {
    if deps.is_empty() {
        return std::future::pending().await;
    }
    let futs = deps.iter_mut().map(|(_, rx)| {
        Box::pin(async move {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    });
    futures_util::future::select_all(futs).await;
}

/// `KEY=VALUE` lines; `#` comments, blank lines and an `export ` prefix are allowed; quotes around
/// the value are removed.
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_owned(), v.to_owned()))
        })
        .collect()
}

/// Why a service that runs from `{release}` cannot start before its environment's first
/// deploy: said in those words, instead of the system's "No such file or directory" about a
/// path the user never wrote.
fn no_release_yet(spec: &homeport_config::ServiceSpec, release: &Path) -> Option<String> {
    if std::fs::symlink_metadata(release).is_ok() {
        return None;
    }
    let name = release.to_string_lossy();
    let uses =
        spec.cwd.starts_with(release) || spec.command.argv().iter().any(|a| a.contains(&*name));
    uses.then(|| {
        let k = &spec.key;
        let env = if k.env == "production" {
            String::new()
        } else {
            format!(" --env {}", k.env)
        };
        format!(
            "no release yet: {}/{} has never been deployed — run `homeport deploy {}{env}`",
            k.app, k.env, k.app
        )
    })
}

#[cfg(test)]
mod tests {
    use super::parse_env_file;

    #[test]
    fn env_files_allow_comments_export_and_quotes() {
        let got = parse_env_file("# c\n\nexport A=1\nB = \"two words\"\nC='x=y'\nnot a pair\n");
        assert_eq!(
            got,
            [
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x=y".into())
            ]
        );
    }
}
