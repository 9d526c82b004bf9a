use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use homeport_types::ServiceKey;

/// A loaded, expanded and validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    pub agent: AgentSettings,
    pub envs: Vec<EnvSpec>,
    /// How each app is built and deployed (only apps that say so).
    pub apps: Vec<AppSpec>,
    /// Every service of every environment, sorted by key.
    pub services: Vec<ServiceSpec>,
    /// Environments that run on another host (`host = "NAME"`): not run by this agent, and not
    /// in `envs` or `services`; a deploy of one goes to that host's agent.
    pub remote_envs: Vec<RemoteEnv>,
}

/// An environment that runs on another host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEnv {
    pub app: String,
    pub env: String,
    pub host: String,
}

impl Config {
    /// The host `app/env` runs on, when it is another one.
    pub fn host_of(&self, app: &str, env: &str) -> Option<&str> {
        self.remote_envs
            .iter()
            .find(|r| r.app == app && r.env == env)
            .map(|r| r.host.as_str())
    }
}

impl Config {
    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| &s.key == key)
    }
}

/// The `[agent]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    /// Loopback port of the local API; 0 picks a free one.
    pub port: u16,
    /// Root of state.db, logs, run files and the API token.
    pub data_dir: PathBuf,
    /// A service's log file is rotated when it passes this size.
    pub log_max_bytes: u64,
    /// How many rotated log files to keep per service.
    pub log_keep: u32,
    /// Loopback port of the HTTP router that serves `APP.localhost` names; 0 turns it off.
    pub router_port: u16,
    /// Loopback port of the router's HTTPS listener (local CA), when wanted.
    pub https_port: Option<u16>,
    /// How often every running service's CPU, memory and health are sampled for its history;
    /// zero turns sampling off.
    pub sample_every: Duration,
    /// Apply the config file by itself when it is saved (default); otherwise only on
    /// `homeport reload`, SIGHUP or the settings screen.
    pub watch_config: bool,
}

/// How an app goes from its source checkout to a release (`[apps.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    pub name: String,
    /// The git checkout releases are built from.
    pub source: Option<PathBuf>,
    /// Commands run in the build folder before `build`; any failure stops the deploy.
    pub test: Vec<Vec<String>>,
    pub build: Vec<Vec<String>>,
    /// Paths (relative to the build folder) copied into each release.
    pub artifacts: Vec<String>,
    /// Command line run for each environment after its pre-deploy backup; placeholders
    /// `{release}` (the new release), `{db.NAME}`, `{data_dir}`, `{app}`, `{env}`.
    pub migrate: Option<String>,
    pub keep_releases: u32,
    /// Build the working tree as it is (labelled dirty) instead of the committed revision.
    pub allow_dirty: bool,
    /// Variables for the test, build, install and migrate steps, as written.
    pub step_env: BTreeMap<String, String>,
    /// Command lines run inside a new release's folder, at its final path, before it is
    /// complete (a virtualenv, dependencies); `{release}` and `{app}`, see [`install_argv`].
    ///
    /// [`install_argv`]: crate::install_argv
    pub install: Vec<String>,
    /// The release before a deploy runs on the schema its migration leaves (expand/contract
    /// migrations): a failed deploy rolls back the code and keeps the data.
    pub backward_compatible_migrations: bool,
}

/// One environment of one app.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvSpec {
    pub app: String,
    pub env: String,
    pub autostart: bool,
    pub data_dir: PathBuf,
    /// SQLite databases by name.
    pub databases: BTreeMap<String, PathBuf>,
    /// Database servers by name: run by Homeport, or external (backed up only).
    pub servers: BTreeMap<String, DbServer>,
    /// The environment's own config files, by name: `{config.NAME}`.
    pub config_files: BTreeMap<String, PathBuf>,
    /// Files and folders archived with each backup.
    pub files: Vec<PathBuf>,
    pub backup: BackupSettings,
    /// How long a deploy waits for the environment to be healthy.
    pub health_deadline: Duration,
    /// How long, once healthy, every service must stay up and healthy (no restart, no failed
    /// health check) before a deploy counts as succeeded.
    pub health_stable: Duration,
    /// The environment's variables as written (`env`, `secret_env`) and its `env_file`: what
    /// a migration gets, through [`step_env`].
    ///
    /// [`step_env`]: crate::step_env
    pub vars: BTreeMap<String, String>,
    pub secret_vars: BTreeMap<String, String>,
    pub env_file: Option<PathBuf>,
    /// Put the pre-deploy backup back when a deploy that ran a migration fails.
    pub restore_on_failure: bool,
    /// Names the router sends to this environment besides `ENV.APP.localhost` (and
    /// `APP.localhost` for production), lower case.
    pub hostnames: Vec<String>,
    /// The service the router sends requests to: `web = "..."`, or the one service with a port.
    pub web: Option<String>,
    /// After a blue-green switch, how long requests and WebSockets on the old instance may run.
    pub drain: Duration,
    /// Deploy the app's upstream commits to this environment by themselves
    /// (`auto_update = { every = "1h", window = "02:00-05:00" }`); off when absent.
    pub auto_update: Option<AutoUpdate>,
    /// Which desktop notifications this environment gets.
    pub notify: homeport_types::NotifyPolicy,
}

/// How an environment keeps itself current with its app's upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoUpdate {
    /// How often the upstream is fetched and checked (default one hour).
    pub every: Duration,
    /// When updates may start; any time when absent.
    pub window: Option<UpdateWindow>,
}

/// A daily window of local time (the agent's time zone), `start` to `end` in seconds after midnight; it wraps past
/// midnight when `end` is earlier than `start` (`22:00-04:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateWindow {
    pub start: u32,
    pub end: u32,
}

impl UpdateWindow {
    /// Whether `secs` (after local midnight) is inside the window.
    pub fn contains(&self, secs: u32) -> bool {
        if self.start <= self.end {
            (self.start..self.end).contains(&secs)
        } else {
            secs >= self.start || secs < self.end
        }
    }
}

impl std::fmt::Display for UpdateWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hm = |s: u32| format!("{:02}:{:02}", s / 3600, s % 3600 / 60);
        write!(f, "{}-{}", hm(self.start), hm(self.end))
    }
}

/// A database server of an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbServer {
    /// Run by Homeport as the service `db-NAME`.
    Managed(homeport_db::Server),
    /// A server Homeport does not run: backed up through its URL.
    External {
        engine: homeport_db::Engine,
        /// As written (it may carry a password: never logged).
        url: String,
        /// A file holding the password, when the URL has none.
        password_file: Option<PathBuf>,
    },
}

impl DbServer {
    pub fn engine(&self) -> homeport_db::Engine {
        match self {
            DbServer::Managed(s) => s.engine,
            DbServer::External { engine, .. } => *engine,
        }
    }

    /// How to reach it and log in.
    pub fn conn(&self) -> Result<homeport_db::Conn, homeport_db::DbError> {
        match self {
            DbServer::Managed(s) => s.conn(),
            DbServer::External {
                engine,
                url,
                password_file,
            } => {
                let p = homeport_db::parse_url(url).map_err(homeport_db::DbError::Refused)?;
                let password = match (&p.password, password_file) {
                    (Some(pw), _) => Some(pw.clone()),
                    (None, Some(f)) => Some(
                        std::fs::read_to_string(f)
                            .map_err(|e| homeport_db::DbError::Io(f.clone(), e))?
                            .trim()
                            .to_owned(),
                    ),
                    (None, None) => None,
                };
                Ok(homeport_db::Conn {
                    engine: *engine,
                    host: p.host,
                    port: p.port,
                    user: p.user,
                    password,
                    database: p.database,
                    bins: homeport_db::Bins::find(*engine, None, None)?,
                })
            }
        }
    }

    /// The service that runs it, if Homeport does.
    pub fn service_name(name: &str) -> String {
        format!("db-{name}")
    }
}

/// When and how an environment is backed up (`backup = { ... }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSettings {
    pub schedule: Option<BackupSchedule>,
    pub keep_last: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    /// Safety copies (what restores replaced) kept per environment; the newest is always kept.
    pub keep_safety: u32,
    pub compress: bool,
}

impl Default for BackupSettings {
    fn default() -> Self {
        Self {
            schedule: None,
            keep_last: 10,
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 6,
            keep_safety: 3,
            compress: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupSchedule {
    /// `every = "6h"`: so long after the last backup.
    Every(Duration),
    /// `at = "03:30"`: daily at this local time, in seconds after midnight.
    DailyAt(u32),
}

/// How to run a process: an argv vector, or a line for `/bin/sh -c` when the config says `shell = true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandSpec {
    Argv(Vec<String>),
    Shell(String),
}

impl CommandSpec {
    /// The argv to exec.
    pub fn argv(&self) -> Vec<String> {
        match self {
            CommandSpec::Argv(v) => v.clone(),
            CommandSpec::Shell(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
        }
    }
}

/// A fully expanded service: every placeholder substituted, every path absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub key: ServiceKey,
    pub command: CommandSpec,
    pub cwd: PathBuf,
    /// Variables added to the agent's environment, in order: environment-wide, env file, service.
    pub env: BTreeMap<String, String>,
    /// Names in `env` whose values are secret: never logged, shown masked.
    pub secret_env: std::collections::BTreeSet<String>,
    /// Read when the service starts, so edits apply on the next start.
    pub env_files: Vec<PathBuf>,
    /// The main port (`port`), if any.
    pub port: Option<u16>,
    /// Named extra ports (`ports = { admin = 9001 }`).
    pub ports: BTreeMap<String, u16>,
    pub health: Option<HealthCheck>,
    pub restart: RestartPolicy,
    /// Services of the same environment that must be ready first.
    pub depends_on: Vec<ServiceKey>,
    /// Started when the agent starts.
    pub autostart: bool,
    pub stop_signal: i32,
    pub stop_timeout: Duration,
    pub data_dir: PathBuf,
    /// Set for the two instances of a `strategy = "blue-green"` service.
    pub slot: Option<SlotSpec>,
    /// Set for the service that runs the environment's database server of this name: deploys
    /// and restores keep it running while they stop the app's services.
    pub database: Option<String>,
}

/// One of the two instances of a blue-green service. The agent's proxy listens on the public
/// port and forwards to the active instance; a deploy starts the other one, switches, drains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSpec {
    /// The service's name in the config (`web` for `web@blue`).
    pub service: String,
    pub public_port: u16,
    /// `blue` or `green`.
    pub slot: String,
    /// The other instance.
    pub other: ServiceKey,
    /// Whether the service starts with the agent (the instances' own `autostart` is false:
    /// the agent starts the active one).
    pub autostart: bool,
}

impl ServiceSpec {
    /// Every port this service listens on.
    pub fn all_ports(&self) -> Vec<u16> {
        self.port
            .into_iter()
            .chain(self.ports.values().copied())
            .collect()
    }

    /// Where a browser can reach it, when it has a port.
    pub fn url(&self) -> Option<String> {
        self.port.map(|p| format!("http://127.0.0.1:{p}/"))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum HealthProbe {
    /// GET this URL; any 2xx or 3xx passes.
    Http(String),
    /// Connect to this loopback port.
    Tcp(u16),
    /// Run this command; exit status 0 passes.
    Command(CommandSpec),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub probe: HealthProbe,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures that mark the service unhealthy and restart it.
    pub retries: u32,
    /// Failures in this time after a start do not count: the service is still booting.
    pub start_period: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartMode {
    Never,
    OnFailure,
    Always,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RestartPolicy {
    pub mode: RestartMode,
    /// First backoff delay (the floor).
    pub backoff_min: Duration,
    /// Largest backoff delay (the cap).
    pub backoff_max: Duration,
    /// Uptime after which a run counts as stable and the backoff starts again from the floor.
    pub reset_after: Duration,
    /// Give up ("failed") after this many failures within `window`; `None`: never give up.
    pub max_failures: Option<u32>,
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            mode: RestartMode::OnFailure,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            reset_after: Duration::from_secs(60),
            max_failures: Some(5),
            window: Duration::from_secs(120),
        }
    }
}
