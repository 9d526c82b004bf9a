//! `homeport service install|uninstall|status`: run the headless agent from the user's service
//! manager (a systemd user unit on Linux, a launchd LaunchAgent on macOS), for machines without a
//! desktop session or a tray.

use std::path::{Path, PathBuf};

use crate::Failure;

/// The systemd user unit. `KillMode=process`: stopping or restarting the unit signals the agent
/// only; the agent stops services itself on SIGTERM, and when it crashes and systemd restarts it,
/// the services (in the same cgroup) must survive to be re-adopted.
pub fn systemd_unit(exe: &Path, config: &Path) -> String {
    format!(
        "[Unit]\n\
         Description=Homeport agent: keeps your own apps running\n\
         After=network.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart=\"{}\" --config \"{}\" agent\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         KillMode=process\n\
         TimeoutStopSec=130\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        exe.display(),
        config.display()
    )
}

/// The launchd LaunchAgent. `AbandonProcessGroup`: launchd must not kill the services when the
/// agent exits; `KeepAlive` restarts the agent if it crashes.
pub fn launchd_plist(exe: &Path, config: &Path, log: &Path) -> String {
    let esc = |s: String| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key><string>dev.homeport.agent</string>
  <key>ProgramArguments</key>
  <array>
    <string>{}</string>
    <string>--config</string>
    <string>{}</string>
    <string>agent</string>
  </array>
  <key>RunAtLoad</key><true/>
  <key>KeepAlive</key><dict><key>SuccessfulExit</key><false/></dict>
  <key>AbandonProcessGroup</key><true/>
  <key>StandardErrorPath</key><string>{}</string>
</dict>
</plist>
"#,
        esc(exe.display().to_string()),
        esc(config.display().to_string()),
        esc(log.display().to_string())
    )
}

fn home() -> Result<PathBuf, Failure> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| Failure::new(1, "HOME is not set"))
}

fn unit_path() -> Result<PathBuf, Failure> {
    if cfg!(target_os = "macos") {
        return Ok(home()?.join("Library/LaunchAgents/dev.homeport.agent.plist"));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .map_or_else(|| home().map(|h| h.join(".config")), Ok)?;
    Ok(config.join("systemd/user/homeport.service"))
}

pub fn install(config: &Path) -> Result<(), Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::new(1, format!("cannot find my own binary: {e}")))?;
    let config = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
    let path = unit_path()?;
    let text = if cfg!(target_os = "macos") {
        launchd_plist(
            &exe,
            &config,
            &home()?.join("Library/Logs/homeport-agent.log"),
        )
    } else {
        systemd_unit(&exe, &config)
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::new(1, format!("cannot create {}: {e}", dir.display())))?;
    }
    homeport_fs::atomic_write(&path, text.as_bytes(), 0o644)
        .map_err(|e| Failure::new(1, format!("cannot write {}: {e}", path.display())))?;
    outln!("Wrote {}", path.display())?;
    if cfg!(target_os = "macos") {
        outln!(
            "Start it now and at every login:\n  launchctl load -w {}",
            path.display()
        )?;
    } else {
        outln!(
            "Start it now and at every login:\n  systemctl --user daemon-reload && systemctl --user enable --now homeport\n\
             To keep it running while you are logged out (a server, a Mac mini under the desk):\n  loginctl enable-linger $USER"
        )?;
    }
    Ok(())
}

pub fn uninstall() -> Result<(), Failure> {
    let path = unit_path()?;
    if cfg!(target_os = "macos") {
        outln!("First: launchctl unload -w {}", path.display())?;
    } else {
        outln!("First: systemctl --user disable --now homeport")?;
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {
            outln!("Removed {}", path.display())?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            outln!("{} was not installed", path.display())?;
        }
        Err(e) => {
            return Err(Failure::new(
                1,
                format!("cannot remove {}: {e}", path.display()),
            ));
        }
    }
    Ok(())
}

pub fn status() -> Result<(), Failure> {
    let path = unit_path()?;
    if path.exists() {
        outln!("installed: {}", path.display())?;
        Ok(())
    } else {
        Err(Failure::new(
            1,
            format!("not installed ({} does not exist)", path.display()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_keeps_services_alive_across_agent_restarts() {
        let u = systemd_unit(
            Path::new("/opt/home port/homeport"),
            Path::new("/home/u/.config/homeport/homeport.toml"),
        );
        assert!(u.contains("ExecStart=\"/opt/home port/homeport\" --config \"/home/u/.config/homeport/homeport.toml\" agent"));
        assert!(u.contains("KillMode=process"));
        assert!(u.contains("Restart=on-failure"));
        assert!(u.contains("WantedBy=default.target"));
    }

    #[test]
    fn the_plist_escapes_paths_and_abandons_the_process_group() {
        let p = launchd_plist(
            Path::new("/Apps/A&B/homeport"),
            Path::new("/c.toml"),
            Path::new("/l.log"),
        );
        assert!(p.contains("<string>/Apps/A&amp;B/homeport</string>"));
        assert!(p.contains("<key>AbandonProcessGroup</key><true/>"));
        assert!(p.starts_with("<?xml"));
    }
}
