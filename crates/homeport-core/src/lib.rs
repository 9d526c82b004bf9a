//! The composition root of the agent: supervisor + state store + log access + the features that
//! need all of them (deploys, backups, settings) behind one cheap-to-clone [`CoreHandle`].
//!
//! ```text
//!   API / CLI ──▶ CoreHandle ──▶ Supervisor ──▶ service tasks ──▶ shims ──▶ services
//!                    │               │ Hub::publish (state, health)
//!                    ├─ deploy.rs ───┤ Hub::emit (deploys, backups, restores, config, agent)
//!                    ├─ backups.rs ──┤      │
//!                    ├─ settings.rs ─┘      ├──▶ broadcast ──▶ /api/v1/events/stream
//!                    │                      └──▶ recorder thread ──▶ state.db (store.rs)
//!                    ├─ claims.rs: who holds an app, an environment, the config file
//!                    └─ logs.rs: log files (read, follow)
//! ```
//! Layout: `deploy.rs` is the deploy pipeline (lock → source → test → build → stage → back up →
//! migrate → switch → restart → health gate → roll back), here rather than in homeport-deploy
//! because it strings together the supervisor, backups, state.db and the blue-green switch,
//! which only the core owns; homeport-deploy keeps the release mechanics with no Homeport
//! dependency. `backups.rs` takes, catalogues, retains, verifies and restores backups and runs
//! the schedule; `settings.rs` stages and validates the settings screen's edits; `reload.rs`
//! applies the config file (after `homeport reload`, SIGHUP, an edit on disk or the settings
//! screen), and refuses a broken one without changing anything; `store.rs` is
//! state.db; `detail.rs` one service in full; `runtime.rs` the agent's own files (lock, token,
//! endpoint). Every outcome is published as one event (see homeport_types::Event).
//!
//! [`Core::start`] opens state.db, seeds the supervisor with the history it keeps, and re-adopts
//! services an earlier agent left running.

mod backups;
mod claims;
mod dbrestore;
mod deploy;
mod detail;
mod hosts;
mod lifecycle;
mod logs;
mod metrics;
mod preflight;
mod proxy;
mod reload;
mod remote_deploy;
pub mod routing;
pub mod runtime;
mod settings;
mod store;
pub mod time;
mod updates;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use homeport_config::Config;
use homeport_supervisor::{Options, Supervisor};
use homeport_types::{
    Action, ActionOutcome, AgentInfo, ConfigApplied, ConfigChange, ConfigPreview, ConfigView,
    Event, EventKind, ServiceKey, StatusSnapshot, Subject, Target,
};
use tokio::sync::mpsc;

pub use backups::BackupOpError;
pub use deploy::DeployRefused;
pub use homeport_supervisor::NotFound;
pub use hosts::{HostConn, HostUnavailable};
pub use logs::{LogCursor, LogError};
pub use metrics::{MetricsDb, MetricsError, MetricsQuery};
pub use reload::ReloadError;
pub use settings::{Editor, SettingsError};
pub use store::Store;
pub use updates::AutoUpdateError;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("cannot create the data folder {0}: {1}")]
    DataDir(PathBuf, #[source] std::io::Error),
    #[error("cannot open the state database {0}: {1}")]
    Store(PathBuf, #[source] rusqlite::Error),
}

/// The most events the recorder writes in one transaction.
const RECORD_BATCH: usize = 256;

/// How long a start waits for services to come up before answering.
pub const START_WAIT: Duration = Duration::from_secs(60);

pub struct Core {
    supervisor: Supervisor,
    store: Arc<Mutex<Store>>,
    started: Instant,

    /// Set when the agent begins to shut down: ends followers and event streams.
    stopping: tokio::sync::watch::Sender<bool>,
    _recorder: std::thread::JoinHandle<()>,
    /// Who holds an app (a deploy), an environment (a backup, restore or a deploy's
    /// activation) or the config file (an edit).
    claims: Arc<claims::Claims>,
    /// The deploy pipeline's state: blue-green switches, deploys an earlier agent left.
    deploys: deploy::Deploys,
    /// The HTTP router, when the config wants one (names, or a blue-green web service).
    router: Mutex<Option<homeport_router::Router>>,
    /// Which versions of the config file were applied or refused.
    file_state: Mutex<reload::FileState>,
    /// Events the recorder has written, against [`Hub::records_sent`].
    written: Arc<std::sync::atomic::AtomicU64>,
    /// Sampled history: the last hour in memory, roll-ups in state.db.
    metrics: metrics::Metrics,
    lifecycle: lifecycle::Lifecycle,
    /// The connections to other hosts (see `hosts.rs`).
    hosts: hosts::Hosts,
    /// The automatic updates' scheduler: its wake-up and the updates it runs.
    updates: updates::Updates,
}

/// The one handle the API, CLI and tray use.
pub type CoreHandle = Arc<Core>;

impl Core {
    /// Opens state.db and builds the supervisor, re-adopting running services. Starts nothing new.
    pub async fn start(config: Config, shim_exe: PathBuf) -> Result<CoreHandle, CoreError> {
        let data = config.agent.data_dir.clone();
        homeport_fs::create_private_dir(&data).map_err(|e| CoreError::DataDir(data.clone(), e))?;
        let db_path = data.join("state.db");
        let store = Store::open(&db_path).map_err(|e| CoreError::Store(db_path.clone(), e))?;
        let seeds = store
            .seeds()
            .map_err(|e| CoreError::Store(db_path.clone(), e))?;
        let store = Arc::new(Mutex::new(store));

        let (tx, mut rx) = mpsc::unbounded_channel();
        let recorder_store = Arc::clone(&store);
        let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let recorder_written = Arc::clone(&written);
        let recorder = std::thread::Builder::new()
            .name("state-recorder".into())
            .spawn(move || {
                // Whatever waits is written at once, in one transaction; nothing is held back
                // to make batches bigger, so an event is in state.db as soon as it would have
                // been one by one.
                let mut batch = Vec::new();
                while rx.blocking_recv_many(&mut batch, RECORD_BATCH) > 0 {
                    let mut store = recorder_store
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if let Err(e) = store.record_all(&batch) {
                        // The batch was rolled back as a whole: one event that cannot be written
                        // must not take the others with it.
                        tracing::warn!(
                            "cannot record {} events in one go ({e}); one by one",
                            batch.len()
                        );
                        for ev in &batch {
                            if let Err(e) = store.record(ev) {
                                tracing::error!("cannot record an event in state.db: {e}");
                            }
                        }
                    }
                    drop(store);
                    recorder_written
                        .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::AcqRel);
                    batch.clear();
                }
            })
            .map_err(|e| CoreError::DataDir(data.clone(), e))?;

        let metrics = metrics::Metrics::new(&config);
        let supervisor =
            Supervisor::new(Arc::new(config), Options { shim_exe, seeds }, Some(tx)).await;
        let core = Arc::new(Core {
            supervisor,
            store,
            started: Instant::now(),
            stopping: tokio::sync::watch::channel(false).0,
            _recorder: recorder,
            written,
            metrics,
            claims: Arc::default(),
            deploys: deploy::Deploys::default(),
            router: Mutex::new(None),
            file_state: Mutex::default(),
            lifecycle: lifecycle::Lifecycle::default(),
            hosts: hosts::Hosts::default(),
            updates: updates::Updates::default(),
        });
        core.emit(
            Subject::Agent,
            EventKind::AgentStarted {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                pid: std::process::id(),
            },
        );
        Ok(core)
    }

    /// Takes an environment for a backup, restore or deploy; refused while another runs.
    pub(crate) fn claim_env(
        &self,
        app: &str,
        env: &str,
        what: &str,
    ) -> Result<claims::Claim, BackupOpError> {
        self.claims
            .try_claim(claims::Scope::Env(app.to_owned(), env.to_owned()), what)
            .map_err(|_| BackupOpError::Busy(format!("{app}/{env}")))
    }

    /// Records and broadcasts an outcome (see [`homeport_supervisor::Hub::emit`]).
    pub(crate) fn emit(&self, subject: Subject, kind: EventKind) {
        let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        self.supervisor.hub().emit(Event {
            count: 1,
            last_time: None,
            time,
            subject,
            kind,
        });
    }

    /// The config in force (it changes when settings are applied).
    pub fn config(&self) -> Arc<Config> {
        self.supervisor.config()
    }

    pub(crate) fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    pub(crate) fn store(&self) -> &Arc<Mutex<Store>> {
        &self.store
    }

    /// Removes half-written backups a crash left, and starts the backup scheduler.
    pub fn start_background(self: &Arc<Self>) {
        if let Ok(envs) = self
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .interrupt_running_deploys()
            && !envs.is_empty()
        {
            tracing::warn!(
                "{} deploy(s) were interrupted when the agent stopped; their environments restart on the release `current` names",
                envs.len()
            );
            self.deploys.set_interrupted(envs);
        }
        let swept = homeport_backup::sweep_partials(&backups::backups_root(self));
        self.sweep_leftovers();
        if swept > 0 {
            tracing::warn!("removed {swept} unfinished backup file(s) left by a crash");
        }
        tokio::spawn(backups::scheduler(Arc::clone(self)));
        tokio::spawn(updates::scheduler(Arc::clone(self)));
        tokio::spawn(metrics::run(Arc::clone(self)));
        reload::watch(self);
        let config = self.config();
        let router = if routing::wanted(&config) {
            routing::build(self, &config)
        } else {
            None
        };
        let mut proxies = Vec::new();
        for blue in config
            .services
            .iter()
            .filter(|s| s.slot.as_ref().is_some_and(|sl| sl.slot == "blue"))
        {
            let Some(slot) = &blue.slot else { continue };
            let Some(green) = config.service(&slot.other) else {
                continue;
            };
            if let Some(p) = proxy::Proxy::new([blue, green], &config.agent.data_dir) {
                let p = Arc::new(p);
                match &router {
                    Some(r) if routing::is_http_proxy(&config, &p) => {
                        let key = homeport_router::RouteKey::new(&p.app, &p.env);
                        let who = format!("{}/{}/{}", p.app, p.env, p.service);
                        routing::listen(
                            self,
                            r,
                            p.public_port,
                            homeport_router::Listen::Pinned(key),
                            who,
                        );
                    }
                    _ => {
                        tokio::spawn(Arc::clone(&p).serve(self.shutdown_signal()));
                    }
                }
                proxies.push(p);
            }
        }
        if let Some(r) = &router {
            r.set_routes(&routing::specs(&config, &proxies));
            if config.agent.router_port != 0 {
                routing::listen(
                    self,
                    r,
                    config.agent.router_port,
                    homeport_router::Listen::Http,
                    "the router".into(),
                );
            }
            if let Some(port) = config.agent.https_port
                && r.ca().is_some()
            {
                routing::listen(
                    self,
                    r,
                    port,
                    homeport_router::Listen::Https,
                    "the router's HTTPS".into(),
                );
            }
        }
        *self.router.lock().unwrap_or_else(PoisonError::into_inner) = router;
        self.deploys.set_switches(proxies);
        self.reload_hosts();
    }

    /// Starts a deploy (or promote, rollback, update): checks it, takes the app's lock, and
    /// runs the pipeline in the background; progress comes on the returned receiver, ending with
    /// [`homeport_types::DeployEvent::Done`].
    pub fn deploy(
        self: &Arc<Self>,
        req: homeport_types::DeployRequest,
    ) -> Result<mpsc::Receiver<homeport_types::DeployEvent>, DeployRefused> {
        if let Some(host) = self.config().host_of(&req.app, &req.env) {
            return remote_deploy::start(self, req, host.to_owned());
        }
        let (app, env, claim) = deploy::begin(self, &req)?;
        let (tx, rx) = mpsc::channel(256);
        let core = Arc::clone(self);
        tokio::spawn(async move {
            let _app = claim;
            deploy::run(&core, req, app, env, tx).await;
        });
        Ok(rx)
    }

    /// Fetches the app's upstream: how many commits the source is (behind, ahead).
    pub async fn update_check(&self, app: &str) -> Result<(u32, u32), DeployRefused> {
        let source = self
            .config()
            .apps
            .iter()
            .find(|a| a.name == app)
            .and_then(|a| a.source.clone())
            .ok_or_else(|| DeployRefused::NotFound(format!("app {app} has no `source`")))?;
        tokio::task::spawn_blocking(move || homeport_deploy::git::fetch_behind(&source))
            .await
            .map_err(|e| DeployRefused::Invalid(e.to_string()))?
            .map_err(|e| DeployRefused::Invalid(e.to_string()))
    }

    /// Every app with its environments' current releases, versions and automatic updates.
    pub fn apps(&self) -> Vec<homeport_types::AppInfo> {
        let mut apps = deploy::apps(self);
        let config = self.config();
        for a in &mut apps {
            for e in &mut a.envs {
                if let Some(spec) = config
                    .envs
                    .iter()
                    .find(|x| x.app == a.name && x.env == e.env)
                {
                    e.auto_update = updates::state(self, spec);
                }
            }
        }
        apps
    }

    /// Lifts the pause of an environment's automatic updates (`APP/ENV`) and checks at once.
    pub fn resume_updates(
        &self,
        app: &str,
        env: &str,
    ) -> Result<homeport_types::AutoUpdateState, AutoUpdateError> {
        updates::resume(self, app, env)
    }

    pub fn releases(&self, app: &str) -> Result<Vec<homeport_types::ReleaseInfo>, DeployRefused> {
        deploy::releases(self, app)
    }

    /// The newest deploys of `app` (every app when empty) and environment, newest first.
    pub fn deploys(
        &self,
        app: &str,
        env: Option<&str>,
    ) -> Result<Vec<homeport_types::DeployRecord>, BackupOpError> {
        Ok(self
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .deploys(app, env, 100)?)
    }

    /// One deploy with everything its steps wrote.
    pub fn deploy_detail(
        &self,
        id: i64,
    ) -> Result<Option<homeport_types::DeployDetail>, BackupOpError> {
        Ok(self
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .deploy(id)?
            .map(|(record, output)| homeport_types::DeployDetail { record, output }))
    }

    /// Removes what a crash mid-restore or mid-deploy left: staged and half-copied databases
    /// beside the live ones, and build worktrees.
    fn sweep_leftovers(&self) {
        let config = self.config();
        for env in &config.envs {
            backups::sweep_leftovers(env);
        }
        for app in &config.apps {
            let builds = config
                .agent
                .data_dir
                .join("apps")
                .join(&app.name)
                .join("build");
            if builds.exists() {
                let _ = std::fs::remove_dir_all(&builds);
                if let Some(source) = &app.source {
                    let _ = homeport_fs::inherit::restore(&mut std::process::Command::new("git"))
                        .arg("-C")
                        .arg(source)
                        .args(["worktree", "prune"])
                        .status();
                }
            }
        }
    }

    /// Backs up an environment (`APP/ENV`) now.
    pub async fn backup(
        &self,
        target: &Target,
        trigger: homeport_types::BackupTrigger,
    ) -> Result<homeport_types::BackupInfo, BackupOpError> {
        backups::take(self, target, trigger).await
    }

    pub fn backups(
        &self,
        target: &Target,
    ) -> Result<Vec<homeport_types::EnvBackups>, BackupOpError> {
        backups::list(self, target)
    }

    pub async fn verify_backup(
        &self,
        id: i64,
    ) -> Result<homeport_types::VerifyOutcome, BackupOpError> {
        backups::verify(self, id).await
    }

    /// Restores an environment's databases and files from a backup, or only `database` or
    /// only the file `path`; with `to`, writes them out there instead (see
    /// `backups::restore_env`).
    pub async fn restore(
        &self,
        target: &Target,
        backup: Option<i64>,
        database: Option<&str>,
        path: Option<&str>,
        to: Option<&std::path::Path>,
    ) -> Result<homeport_types::RestoreOutcome, BackupOpError> {
        let sel = backups::Selection {
            database: database.map(str::to_owned),
            path: path.map(str::to_owned),
        };
        backups::restore_env(self, target, backup, sel, to).await
    }

    pub async fn autostart(&self) -> Vec<ActionOutcome> {
        let mut out = self.supervisor.autostart(START_WAIT).await;
        // Of a blue-green service, only the active instance runs.
        let active: Vec<ServiceKey> = self
            .deploys
            .switches()
            .iter()
            .filter(|p| p.autostart)
            .map(|p| p.active())
            .collect();
        for key in active {
            if let Ok(o) = self
                .supervisor
                .start(&Target::Service(key), START_WAIT)
                .await
            {
                out.extend(o);
            }
        }
        let interrupted = self.deploys.take_interrupted();
        for (app, env) in interrupted {
            // The deploy meant the environment to run: all of its services (of a blue-green
            // service, the active instance), on the release `current` names.
            let active: Vec<ServiceKey> = self.deploys.live_instances();
            let keys: Vec<ServiceKey> = self
                .config()
                .services
                .iter()
                .filter(|s| s.key.app == app && s.key.env == env)
                .filter(|s| s.slot.is_none() || active.contains(&s.key))
                .map(|s| s.key.clone())
                .collect();
            tracing::info!("restarting {app}/{env} after an interrupted deploy");
            out.extend(self.supervisor.restart_keys(&keys, START_WAIT).await);
        }
        out
    }

    /// The router, when one runs.
    pub fn router(&self) -> Option<homeport_router::Router> {
        self.router
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts the config's names and web services into the router (after a config change).
    pub(crate) fn refresh_routes(&self) {
        if let Some(r) = self.router() {
            r.set_routes(&routing::specs(&self.config(), &self.all_proxies()));
        }
    }

    pub(crate) fn all_proxies(&self) -> Vec<Arc<proxy::Proxy>> {
        self.deploys.switches()
    }

    pub fn status(&self) -> StatusSnapshot {
        self.snapshot_of(self.supervisor.status())
    }

    /// The current status and a receiver of every event after it, with nothing lost between.
    pub fn subscribe(&self) -> (StatusSnapshot, tokio::sync::broadcast::Receiver<Event>) {
        let (snaps, rx) = self.supervisor.hub().subscribe();
        (self.snapshot_of(self.supervisor.status_from(&snaps)), rx)
    }

    /// Recorded events within `target` (the agent's own belong to `all`), newest first, of
    /// the given kinds (`EventKind::name`; all when empty).
    pub fn events(
        &self,
        target: &Target,
        kinds: &[String],
        limit: usize,
    ) -> Result<Vec<Event>, LogError> {
        let config = self.config();
        let known = match target {
            Target::All => true,
            Target::App(a) => config.apps.iter().any(|x| &x.name == a),
            Target::Env(a, e) => config.envs.iter().any(|x| &x.app == a && &x.env == e),
            Target::Service(k) => config.service(k).is_some(),
        };
        if !known {
            self.supervisor.resolve(target)?;
        }
        let store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        store
            .recent_events(target, kinds, limit)
            .map_err(LogError::Store)
    }

    pub fn config_view(&self) -> Result<ConfigView, SettingsError> {
        settings::view(&self.config())
    }

    /// Validates `changes` by `editor` against the file at `revision` and shows what they would
    /// do.
    pub fn preview(
        &self,
        changes: &[ConfigChange],
        revision: &str,
        editor: Editor,
    ) -> Result<ConfigPreview, SettingsError> {
        settings::preview(self, changes, revision, editor)
    }

    /// Writes `changes` (validated again) and applies them, restarting only what changed.
    pub async fn apply(
        &self,
        changes: &[ConfigChange],
        revision: &str,
        editor: Editor,
    ) -> Result<ConfigApplied, SettingsError> {
        settings::apply(self, changes, revision, editor).await
    }

    fn snapshot_of(&self, mut services: Vec<homeport_types::ServiceStatus>) -> StatusSnapshot {
        // An environment's web service is opened by its name, through the router.
        let config = self.config();
        for s in &mut services {
            // A blue-green instance: the service's public port, and whether it is the live one.
            if let Some((p, live)) = self.deploys.instance(&s.key) {
                s.instance = Some(homeport_types::Instance {
                    colour: s
                        .key
                        .service
                        .rsplit('@')
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                    live,
                    port: p.port_of(&s.key),
                });
                s.port = Some(p.public_port);
            }
            let web = config
                .envs
                .iter()
                .find(|e| e.app == s.key.app && e.env == s.key.env)
                .and_then(|e| e.web.as_deref());
            let name = s.key.service.split('@').next().unwrap_or_default();
            if web == Some(name)
                && let Some(url) = routing::url(&config, &s.key.app, &s.key.env)
            {
                s.url = Some(url);
            }
        }
        StatusSnapshot {
            agent: AgentInfo {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                config_path: self.config().file.display().to_string(),
                uptime_secs: self.started.elapsed().as_secs(),
                service_manager: self.service_manager(),
                log: Some(
                    homeport_config::agent_log_path(&self.config().agent.data_dir)
                        .display()
                        .to_string(),
                ),
                config_rejected: self.config_rejected(),
            },
            services,
        }
    }

    pub async fn act(
        &self,
        action: Action,
        target: &Target,
    ) -> Result<Vec<ActionOutcome>, NotFound> {
        if action == Action::Stop {
            return self.supervisor.stop(target).await;
        }
        // Of a blue-green service only the live instance runs; the other one starts when named.
        let keys: Vec<ServiceKey> = self
            .supervisor
            .resolve(target)?
            .into_iter()
            .filter(|k| {
                *target == Target::Service(k.clone())
                    || self.deploys.instance(k).is_none_or(|(_, live)| live)
            })
            .collect();
        Ok(match action {
            Action::Restart => self.supervisor.restart_keys(&keys, START_WAIT).await,
            _ => self.supervisor.start_only(&keys, START_WAIT).await,
        })
    }

    /// Stops every service; the agent is exiting on request. Followers and event streams end
    /// first, so no client holds the exit up.
    pub async fn shutdown(&self) {
        self.emit(Subject::Agent, EventKind::AgentStopping);
        self.stopping.send_replace(true);
        self.supervisor.shutdown().await;
    }

    /// Resolves when the agent begins to shut down.
    pub fn shutdown_signal(&self) -> impl std::future::Future<Output = ()> + Send + use<> {
        let mut rx = self.stopping.subscribe();
        async move {
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    }

    /// The history of `q`'s services: CPU, memory, health latency, uptime, and what happened.
    /// Reads state.db: call it off the async workers.
    pub fn metrics(&self, q: &MetricsQuery) -> Result<homeport_types::MetricsReport, MetricsError> {
        metrics::report(self, q)
    }

    /// Waits (up to `limit`) until every event published so far is in state.db, and writes the
    /// minute of metrics in progress. The agent calls it after [`Core::shutdown`], so the last
    /// transitions (`stopped`) are never lost.
    pub fn flush_records(&self, limit: Duration) {
        self.metrics.flush();
        let deadline = Instant::now() + limit;
        let want = self.supervisor.hub().records_sent();
        while self.written.load(std::sync::atomic::Ordering::Acquire) < want
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// A size in words: `12.3 MiB`.
pub(crate) fn human_size(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
