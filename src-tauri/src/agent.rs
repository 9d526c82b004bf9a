//! Finding the agent, starting it when none answers, and the desktop's openers.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use homeport_client::{Client, ClientError};

/// The variable with which the tray turns GDK's GL off for itself (see `main`).
pub const GDK_GL: &str = "GDK_GL";
/// Set when the tray set [`GDK_GL`] itself: the processes it starts must not inherit it (the
/// window may use GL; the agent passes its environment on to the services).
pub static GL_DISABLED_HERE: AtomicBool = AtomicBool::new(false);

/// Removes from `cmd`'s environment what the tray set for itself alone.
pub fn clean_env(cmd: &mut Command) {
    if GL_DISABLED_HERE.load(Ordering::SeqCst) {
        cmd.env_remove(GDK_GL);
    }
}

/// How long after starting an agent the tray waits before starting another.
const RESTART_GAP: Duration = Duration::from_secs(15);

/// The agent this tray talks to, started by the tray if it was not running.
pub struct Agent {
    last_start: Option<Instant>,
}

impl Agent {
    pub fn new() -> Self {
        Self { last_start: None }
    }

    /// A client of the agent; when no agent runs, starts one (at most once per [`RESTART_GAP`])
    /// and says why the tray is disconnected meanwhile.
    pub fn connect(&mut self) -> Result<Client, String> {
        match client() {
            Ok(c) => Ok(c),
            Err(reason) => {
                if self.last_start.is_none_or(|t| t.elapsed() >= RESTART_GAP) {
                    self.last_start = Some(Instant::now());
                    match start_agent() {
                        Ok(bin) => tracing::info!("no agent answered ({reason}); started {bin}"),
                        Err(e) => return Err(format!("{reason}; cannot start one: {e}")),
                    }
                }
                Err(reason)
            }
        }
    }
}

struct Config {
    path: PathBuf,
    /// Given with `--config` or `$HOMEPORT_CONFIG` rather than found by default: the login
    /// entry passes it on.
    explicit: bool,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Sets the config file from `--config PATH` in `argv`, else the default one
/// (`$HOMEPORT_CONFIG`, else `~/.config/homeport/homeport.toml`). Call once, first.
pub fn set_config(argv: &[String]) -> &'static Path {
    let given = argv
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| argv.get(i + 1))
        .map(PathBuf::from);
    let explicit = given.is_some() || std::env::var_os("HOMEPORT_CONFIG").is_some();
    let path = given.unwrap_or_else(homeport_config::default_config_path);
    let path = std::path::absolute(&path).unwrap_or(path);
    let config = CONFIG.get_or_init(|| Config { explicit, path });
    &config.path
}

pub fn config_path() -> PathBuf {
    CONFIG
        .get()
        .map_or_else(homeport_config::default_config_path, |c| c.path.clone())
}

/// The agent's data folder, where its address and token are.
pub fn data_dir() -> PathBuf {
    homeport_config::agent_data_dir(&config_path())
}

/// A client of the agent of the configured data folder.
pub fn client() -> Result<Client, String> {
    discover(&data_dir())
}

/// A client of the agent whose data folder is `dir`, or why there is none, in words for the
/// tray and its window.
pub fn discover(dir: &Path) -> Result<Client, String> {
    Client::discover(dir).map_err(|e| match e {
        ClientError::NotRunning(_) => "the agent is not running".to_owned(),
        other => other.to_string(),
    })
}

/// The `homeport` binary: beside this one (as packaged), else on `PATH`.
fn homeport_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("homeport")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("homeport"))
}

/// Starts `homeport agent` in a session of its own, so that neither the tray's exit nor the end
/// of the desktop session that started the tray reaches it.
fn start_agent() -> std::io::Result<String> {
    let bin = homeport_bin();
    let mut cmd = Command::new(&bin);
    clean_env(&mut cmd);
    // The agent keeps its own log; its stdout and stderr go there too, so what it says before
    // that log is open (a config it cannot read) or on a panic is not lost.
    let log = homeport_config::agent_log_path(&data_dir());
    let output = log
        .parent()
        .map_or(Ok(()), |dir| {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
        })
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&log)
        });
    let (out, err) = match output.and_then(|f| Ok((f.try_clone()?, f))) {
        Ok((out, err)) => (Stdio::from(out), Stdio::from(err)),
        Err(e) => {
            tracing::warn!("cannot open the agent's log {}: {e}", log.display());
            (Stdio::null(), Stdio::null())
        }
    };
    cmd.arg("--config")
        .arg(config_path())
        .arg("agent")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    // The agent outlives this wait; reaping it when it ends keeps no zombie in the tray.
    std::thread::spawn(move || child.wait());
    Ok(bin.display().to_string())
}

/// Opens `url` with the desktop's opener.
pub fn open_browser(url: &str) -> Result<(), String> {
    homeport_client::open_in_browser(url).map_err(|e| e.to_string())
}

/// The login entry for this binary, with this tray's config file when it was given one.
pub fn autostart() -> Result<homeport_autostart::Autostart, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // After a package upgrade replaced the running binary, Linux names it "… (deleted)"; the
    // entry is for the file now at that path.
    let exe = match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(s) => PathBuf::from(s),
        None => exe,
    };
    let config = CONFIG
        .get()
        .filter(|c| c.explicit)
        .map(|c| c.path.as_path());
    homeport_autostart::Autostart::new(&exe, config).map_err(|e| e.to_string())
}

pub fn autostart_enabled() -> bool {
    autostart().and_then(|l| l.is_enabled().map_err(|e| e.to_string())) == Ok(true)
}

pub fn set_autostart(on: bool) -> Result<(), String> {
    let l = autostart()?;
    if on { l.enable() } else { l.disable() }.map_err(|e| e.to_string())
}
