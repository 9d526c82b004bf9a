//! `homeport service install|uninstall|status`: run the headless agent from the user's service
//! manager (a systemd user unit on Linux, a launchd LaunchAgent on macOS), for machines without a
//! desktop session or a tray.
//!
//! On macOS, install and uninstall also load and unload the LaunchAgent (`launchctl bootstrap`
//! and `bootout`, in the GUI domain of the user, or the user domain when nobody is logged in at
//! the screen — a Mac mini reached over SSH). On Linux they print the `systemctl` commands.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use homeport_platform::dirs::{Convention, Folders};

use crate::Failure;

/// The LaunchAgent's label, and so its file name.
pub const LABEL: &str = "dev.homeport.agent";

/// The systemd user unit. `KillMode=process`: stopping or restarting the unit signals the agent
/// only; the agent stops services itself on SIGTERM, and when it crashes and systemd restarts it,
/// the services (in the same cgroup) must survive to be re-adopted. `PATH` is the one of the
/// shell that installed it: a service manager's own is too short to find the tools apps need.
pub fn systemd_unit(exe: &Path, config: &Path, path_var: Option<&str>) -> String {
    let env = path_var
        .map(|p| {
            // Inside a quoted assignment: backslashes and quotes escaped, `%` doubled (systemd's
            // specifiers).
            let p = p
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('%', "%%");
            format!("Environment=\"PATH={p}\"\n")
        })
        .unwrap_or_default();
    format!(
        "[Unit]\n\
         Description=Homeport agent: keeps your own apps running\n\
         After=network.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart=\"{}\" --config \"{}\" agent\n\
         {env}\
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
/// agent exits; `KeepAlive` restarts the agent if it crashes (not after a clean exit);
/// `EnvironmentVariables.PATH`: launchd starts agents with `/usr/bin:/bin:/usr/sbin:/sbin`, which
/// lacks Homebrew's `/opt/homebrew/bin` and every other place an app's tools live.
pub fn launchd_plist(exe: &Path, config: &Path, log: &Path, path_var: Option<&str>) -> String {
    use plist::{Dictionary, Value};
    let s = |p: &Path| Value::String(p.to_string_lossy().into_owned());
    let mut keep_alive = Dictionary::new();
    keep_alive.insert("SuccessfulExit".into(), Value::Boolean(false));
    let mut d = Dictionary::new();
    d.insert("Label".into(), Value::String(LABEL.into()));
    d.insert(
        "ProgramArguments".into(),
        Value::Array(vec![
            s(exe),
            Value::String("--config".into()),
            s(config),
            Value::String("agent".into()),
        ]),
    );
    d.insert("RunAtLoad".into(), Value::Boolean(true));
    d.insert("KeepAlive".into(), Value::Dictionary(keep_alive));
    d.insert("AbandonProcessGroup".into(), Value::Boolean(true));
    if let Some(p) = path_var {
        let mut env = Dictionary::new();
        env.insert("PATH".into(), Value::String(p.into()));
        d.insert("EnvironmentVariables".into(), Value::Dictionary(env));
    }
    d.insert("StandardOutPath".into(), s(log));
    d.insert("StandardErrorPath".into(), s(log));
    let mut out = Vec::new();
    // Writing a dictionary of strings and booleans into memory cannot fail.
    let _ = Value::Dictionary(d).to_writer_xml(&mut out);
    out.push(b'\n');
    String::from_utf8_lossy(&out).into_owned()
}

/// The launchctl commands that (re)load the LaunchAgent at `plist` for user `uid`, in order of
/// preference: the GUI session's domain, else the user's (no one logged in at the screen).
pub fn launchctl_bootstrap(uid: u32, plist: &Path) -> Vec<Vec<OsString>> {
    ["gui", "user"]
        .into_iter()
        .map(|domain| {
            vec![
                "bootstrap".into(),
                format!("{domain}/{uid}").into(),
                plist.as_os_str().to_owned(),
            ]
        })
        .collect()
}

/// The launchctl commands that unload it, in the same order.
pub fn launchctl_bootout(uid: u32) -> Vec<Vec<OsString>> {
    ["gui", "user"]
        .into_iter()
        .map(|domain| vec!["bootout".into(), format!("{domain}/{uid}/{LABEL}").into()])
        .collect()
}

fn folders() -> Folders {
    Folders::current()
}

fn unit_path() -> PathBuf {
    let f = folders();
    match Convention::native() {
        Convention::MacOs => f.service_dir.join(format!("{LABEL}.plist")),
        Convention::Xdg => f.service_dir.join("homeport.service"),
    }
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Runs the first of `tries` that launchctl accepts; the error of the last one otherwise.
fn launchctl(tries: &[Vec<OsString>]) -> Result<(), String> {
    let mut last = String::from("launchctl was not run");
    for args in tries {
        match Command::new("launchctl").args(args).output() {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => {
                last = format!(
                    "launchctl {} failed: {}",
                    args.iter()
                        .map(|a| a.to_string_lossy())
                        .collect::<Vec<_>>()
                        .join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Err(e) => last = format!("cannot run launchctl: {e}"),
        }
    }
    Err(last)
}

pub fn install(config: &Path) -> Result<(), Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::new(1, format!("cannot find my own binary: {e}")))?;
    let config = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
    let path = unit_path();
    let path_var = std::env::var("PATH").ok();
    let macos = Convention::native() == Convention::MacOs;
    let text = if macos {
        let logs = folders().logs;
        homeport_fs::create_private_dir(&logs)
            .map_err(|e| Failure::new(1, format!("cannot create {}: {e}", logs.display())))?;
        launchd_plist(&exe, &config, &logs.join("agent.log"), path_var.as_deref())
    } else {
        systemd_unit(&exe, &config, path_var.as_deref())
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::new(1, format!("cannot create {}: {e}", dir.display())))?;
    }
    homeport_fs::atomic_write(&path, text.as_bytes(), 0o644)
        .map_err(|e| Failure::new(1, format!("cannot write {}: {e}", path.display())))?;
    outln!("Wrote {}", path.display())?;
    if macos {
        // A loaded older copy would keep running the old definition.
        let _ = launchctl(&launchctl_bootout(uid()));
        launchctl(&launchctl_bootstrap(uid(), &path)).map_err(|e| {
            Failure::new(
                1,
                format!(
                    "{e}; the file is written, load it with: launchctl bootstrap gui/$(id -u) {}",
                    path.display()
                ),
            )
        })?;
        outln!(
            "Loaded: the agent runs now and at every login (launchctl print gui/$(id -u)/{LABEL})"
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
    let path = unit_path();
    if Convention::native() == Convention::MacOs {
        // Unloading stops the agent, which stops its services first.
        match launchctl(&launchctl_bootout(uid())) {
            Ok(()) => outln!("Unloaded {LABEL}")?,
            Err(_) => outln!("{LABEL} was not loaded")?,
        };
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
    let path = unit_path();
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
            Some("/home/u/.cargo/bin:/usr/bin"),
        );
        assert!(u.contains("ExecStart=\"/opt/home port/homeport\" --config \"/home/u/.config/homeport/homeport.toml\" agent"));
        assert!(u.contains("KillMode=process"));
        assert!(u.contains("Restart=on-failure"));
        assert!(u.contains("WantedBy=default.target"));
        assert!(u.contains("Environment=\"PATH=/home/u/.cargo/bin:/usr/bin\"\n"));
    }

    /// The plist as launchd reads it: parsed back by a plist parser, and linted by macOS's own
    /// `plutil` where it exists.
    #[test]
    fn the_plist_parses_runs_the_agent_and_abandons_the_process_group() {
        let text = launchd_plist(
            Path::new("/Apps/A&B <x>/homeport"),
            Path::new("/Users/u/Library/Application Support/Homeport/homeport.toml"),
            Path::new("/Users/u/Library/Logs/Homeport/agent.log"),
            Some("/opt/homebrew/bin:/usr/bin:/bin"),
        );
        assert!(text.starts_with("<?xml"));
        let v = plist::Value::from_reader_xml(text.as_bytes()).expect("a valid plist");
        let d = v.as_dictionary().expect("a dictionary");
        let get = |k: &str| d.get(k).unwrap_or_else(|| panic!("no {k}"));
        assert_eq!(get("Label").as_string(), Some(LABEL));
        let args: Vec<&str> = get("ProgramArguments")
            .as_array()
            .expect("array")
            .iter()
            .filter_map(plist::Value::as_string)
            .collect();
        assert_eq!(
            args,
            [
                "/Apps/A&B <x>/homeport",
                "--config",
                "/Users/u/Library/Application Support/Homeport/homeport.toml",
                "agent"
            ]
        );
        assert_eq!(get("AbandonProcessGroup").as_boolean(), Some(true));
        assert_eq!(get("RunAtLoad").as_boolean(), Some(true));
        let keep = get("KeepAlive").as_dictionary().expect("dictionary");
        assert_eq!(
            keep.get("SuccessfulExit")
                .and_then(plist::Value::as_boolean),
            Some(false)
        );
        let env = get("EnvironmentVariables")
            .as_dictionary()
            .expect("dictionary");
        assert_eq!(
            env.get("PATH").and_then(plist::Value::as_string),
            Some("/opt/homebrew/bin:/usr/bin:/bin")
        );
        assert_eq!(
            get("StandardErrorPath").as_string(),
            Some("/Users/u/Library/Logs/Homeport/agent.log")
        );
        if let Ok(plutil) = which("plutil") {
            let dir = tempfile::tempdir().expect("temp dir");
            let file = dir.path().join(format!("{LABEL}.plist"));
            std::fs::write(&file, &text).expect("write");
            let out = Command::new(plutil)
                .arg("-lint")
                .arg(&file)
                .output()
                .expect("plutil");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }

    fn which(name: &str) -> Result<PathBuf, ()> {
        std::env::split_paths(&std::env::var_os("PATH").ok_or(())?)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .ok_or(())
    }

    #[test]
    fn launchctl_loads_in_the_gui_domain_first_then_the_user_one() {
        let load = launchctl_bootstrap(501, Path::new("/Users/u/Library/LaunchAgents/x.plist"));
        assert_eq!(
            load,
            [
                vec![
                    OsString::from("bootstrap"),
                    "gui/501".into(),
                    "/Users/u/Library/LaunchAgents/x.plist".into()
                ],
                vec![
                    OsString::from("bootstrap"),
                    "user/501".into(),
                    "/Users/u/Library/LaunchAgents/x.plist".into()
                ],
            ]
        );
        assert_eq!(
            launchctl_bootout(501)[0],
            [
                OsString::from("bootout"),
                "gui/501/dev.homeport.agent".into()
            ]
        );
    }
}
