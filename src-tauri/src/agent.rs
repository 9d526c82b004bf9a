//! Finding the agent, starting it when none answers, and the desktop's openers.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use homeport_client::{Client, ClientError};
use homeport_types::StatusSnapshot;

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

    /// The agent's status; when no agent runs, starts one (at most once per [`RESTART_GAP`]) and
    /// says why the tray is disconnected meanwhile.
    pub async fn status(&mut self) -> Result<StatusSnapshot, String> {
        match client() {
            Ok(c) => c.status().await.map_err(|e| e.to_string()),
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

/// A client of the agent of the configured data folder.
pub fn client() -> Result<Client, String> {
    let config = homeport_config::default_config_path();
    Client::discover(&homeport_config::agent_data_dir(&config)).map_err(|e| match e {
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
    cmd.arg("agent")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()?;
    Ok(bin.display().to_string())
}

/// Opens `url` with the desktop's opener.
pub fn open_browser(url: &str) -> Result<(), String> {
    homeport_client::open_in_browser(url).map_err(|e| e.to_string())
}

fn launcher() -> Result<auto_launch::AutoLaunch, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let exe = exe.to_str().ok_or("the app's path is not UTF-8")?;
    if exe.contains(char::is_whitespace) {
        // auto-launch writes the Exec line unquoted.
        return Err(format!(
            "cannot start at login from a path with spaces: {exe}"
        ));
    }
    auto_launch::AutoLaunchBuilder::new()
        .set_app_name("Homeport")
        .set_app_path(exe)
        .set_args(&["--minimized"])
        .build()
        .map_err(|e| e.to_string())
}

pub fn autostart_enabled() -> bool {
    launcher().and_then(|l| l.is_enabled().map_err(|e| e.to_string())) == Ok(true)
}

pub fn set_autostart(on: bool) -> Result<(), String> {
    let l = launcher()?;
    if on { l.enable() } else { l.disable() }.map_err(|e| e.to_string())
}
