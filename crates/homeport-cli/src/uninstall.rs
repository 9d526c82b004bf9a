//! `homeport uninstall [--data]`: takes Homeport off this computer's start-up — the agent and
//! its services stopped, the service unit and the tray's login entry removed — and deletes the
//! data folder only when asked. The binaries and the config file stay: the config is the user's
//! own file, and the binaries are removed the way they were installed (said at the end).

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use homeport_autostart::{Autostart, DESKTOP_BIN};
use homeport_types::AgentStopRequest;

use crate::Failure;

/// Whether a process exists (a zombie included).
pub fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    unsafe { libc::kill(pid, 0) == 0 }
}

pub async fn run(config: &Path, data: bool, yes: bool) -> Result<(), Failure> {
    let data_dir = homeport_config::agent_data_dir(config);
    // Confirm first, so a "no" changes nothing.
    if data && !yes {
        confirm(&data_dir)?;
    }

    // 1. The service unit: stopped and disabled by its manager, then removed.
    let unit = crate::service::unit_path();
    if unit.exists() {
        crate::service::stop_unit();
        std::fs::remove_file(&unit)
            .map_err(|e| Failure::new(1, format!("cannot remove {}: {e}", unit.display())))?;
        outln!("Removed the service unit {}", unit.display())?;
        if !cfg!(target_os = "macos") {
            run_tool("systemctl", &["--user", "daemon-reload"]);
        }
    } else {
        outln!("No service unit installed ({})", unit.display())?;
    }

    // 2. An agent still running (started by hand, by the tray, or a manager we could not reach):
    //    stopped with its services, as `homeport agent stop` would.
    if let Ok(client) = homeport_client::Client::discover(&data_dir)
        && let Ok(reply) = client.agent_stop(AgentStopRequest::default()).await
    {
        let deadline = std::time::Instant::now() + crate::SHUTDOWN_LIMIT;
        while alive(reply.pid) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        outln!("Stopped the agent (pid {}) and its services", reply.pid)?;
    }

    // 3. The tray's login entry.
    let entry =
        Autostart::new(Path::new(DESKTOP_BIN), None).map_err(|e| Failure::new(1, e.to_string()))?;
    if entry.is_enabled().unwrap_or(false) {
        entry
            .disable()
            .map_err(|e| Failure::new(1, e.to_string()))?;
        outln!("Removed the tray's login entry")?;
    } else {
        outln!("No login entry for the tray")?;
    }

    // 4. The data, only when asked.
    if data {
        match std::fs::remove_dir_all(&data_dir) {
            Ok(()) => outln!("Deleted the data folder {}", data_dir.display())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                outln!("No data folder at {}", data_dir.display())?
            }
            Err(e) => {
                return Err(Failure::new(
                    1,
                    format!("cannot delete {}: {e}", data_dir.display()),
                ));
            }
        };
    } else {
        outln!(
            "Kept the data folder {} (logs, releases, backups, state.db); \
             `homeport uninstall --data` deletes it",
            data_dir.display()
        )?;
    }
    outln!("Kept your config file {}", config.display())?;
    outln!("{}", remove_binaries_hint())?;
    Ok(())
}

/// Runs a service-manager command and says what happened; its absence is not an error (a
/// machine without a user session bus, a container).
pub fn run_tool(program: &str, args: &[&str]) {
    match std::process::Command::new(program).args(args).output() {
        Ok(o) if o.status.success() => {
            let _ = outln!("Ran: {program} {}", args.join(" "));
        }
        Ok(o) => eprintln!(
            "note: `{program} {}` said: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => eprintln!(
            "note: cannot run {program} ({e}); skipped `{program} {}`",
            args.join(" ")
        ),
    }
}

/// Asks before deleting data; refuses without a terminal to ask on.
fn confirm(data_dir: &Path) -> Result<(), Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            2,
            format!(
                "--data deletes {} (backups included); add --yes to confirm without a terminal",
                data_dir.display()
            ),
        ));
    }
    eprint!(
        "Delete {} — every log, release, backup and state.db? Type yes: ",
        data_dir.display()
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() != "yes" {
        return Err(Failure::new(1, "nothing was changed"));
    }
    Ok(())
}

/// How to remove the binaries, by where this one is installed.
fn remove_binaries_hint() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    if exe.starts_with("/usr/bin") {
        "The binaries came from the package: sudo apt remove homeport".to_owned()
    } else if exe.parent().is_some_and(|d| d.ends_with("lib/homeport")) {
        format!(
            "The binaries are in {}: remove them with `scripts/install.sh --uninstall`, or \
             delete that folder and the links ~/.local/bin/homeport and ~/.local/bin/homeport-desktop",
            exe.parent()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        )
    } else {
        format!(
            "The binary is {}: delete it when you no longer want it",
            exe.display()
        )
    }
}
