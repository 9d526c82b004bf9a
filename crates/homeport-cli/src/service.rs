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
/// `Type=notify`: systemd counts the agent started once its API answers. Exit status 75 is
/// `homeport agent restart` asking to be started again with its services left running (an
/// upgrade).
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
         Type=notify\n\
         NotifyAccess=main\n\
         ExecStart=\"{}\" --config \"{}\" agent\n\
         ExecReload=/bin/kill -HUP $MAINPID\n\
         {env}\
         Environment={manager}=systemd\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         RestartForceExitStatus={restart}\n\
         SuccessExitStatus={restart}\n\
         KillMode=process\n\
         TimeoutStopSec=130\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        exe.display(),
        config.display(),
        manager = crate::agent::MANAGER_VAR,
        restart = crate::agent::EXIT_RESTART,
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
    let mut env = Dictionary::new();
    if let Some(p) = path_var {
        env.insert("PATH".into(), Value::String(p.into()));
    }
    // Tells the agent launchd runs it: `agent restart` then exits non-zero for KeepAlive.
    env.insert(
        crate::agent::MANAGER_VAR.into(),
        Value::String("launchd".into()),
    );
    d.insert("EnvironmentVariables".into(), Value::Dictionary(env));
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

pub fn unit_path() -> PathBuf {
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

pub async fn install(config: &Path) -> Result<(), Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::new(1, format!("cannot find my own binary: {e}")))?;
    refuse_build_folder(&exe, "homeport service install")?;
    let config = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
    let path = unit_path();
    let path_var = Some(captured_path());
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
    outln!(
        "  runs:  {} --config {} agent",
        exe.display(),
        config.display()
    )?;
    outln!("  PATH:  {}", path_var.as_deref().unwrap_or_default())?;
    outln!(
        "  (the PATH of this shell, so services find the tools they call at boot; run \
         `homeport service install` again after changing it)"
    )?;
    if let Some(agent) = running_agent(&config)
        .await
        .filter(|a| a.service_manager.is_none())
    {
        eprintln!(
            "{} an agent is already running outside the unit (pid {}). Two agents cannot share \
             a data folder: stop it first, leaving its services running for the unit's agent to \
             re-adopt:\n  homeport agent stop --keep-services",
            crate::style::paint_err("warning:", crate::style::warn()),
            agent.pid
        );
    }
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

/// Removes the unit. On Linux only once nothing runs from it: while the unit runs the agent, it
/// says what to run, in order. On macOS it unloads the LaunchAgent itself first.
pub async fn uninstall(config: &Path) -> Result<(), Failure> {
    let path = unit_path();
    let macos = Convention::native() == Convention::MacOs;
    if macos {
        // Unloading stops the agent, which stops its services first.
        match launchctl(&launchctl_bootout(uid())) {
            Ok(()) => outln!("Unloaded {LABEL}")?,
            Err(_) => outln!("{LABEL} was not loaded")?,
        };
    } else if let Some(agent) = running_agent(config).await
        && agent.service_manager.is_some()
    {
        return Err(Failure::new(
            1,
            format!(
                "the agent (pid {}) runs from {}; removing the file now would leave it running \
                 with nothing to stop it at logout. In this order:\n  \
                 1. systemctl --user disable --now homeport   (stops the agent and its services)\n  \
                 2. homeport service uninstall\n  \
                 3. systemctl --user daemon-reload\n\
                 To keep the services running instead, start an agent by hand in between: \
                 `homeport agent stop --keep-services`, then `homeport agent --detach`.",
                agent.pid,
                path.display()
            ),
        ));
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {
            outln!("Removed {}", path.display())?;
            if !macos {
                outln!("Now run: systemctl --user daemon-reload")?;
            }
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

/// Stops and disables the unit through its service manager, for `homeport uninstall`: on macOS
/// the LaunchAgent is unloaded; on Linux `systemctl --user disable --now homeport`. Says what
/// happened; a machine without a user session bus is not an error.
pub fn stop_unit() {
    if Convention::native() == Convention::MacOs {
        match launchctl(&launchctl_bootout(uid())) {
            Ok(()) => {
                let _ = outln!("Unloaded {LABEL}");
            }
            Err(e) => eprintln!("note: {e}"),
        }
        return;
    }
    crate::uninstall::run_tool("systemctl", &["--user", "disable", "--now", "homeport"]);
}

/// The running agent of this config's data folder, if any.
async fn running_agent(config: &Path) -> Option<homeport_types::AgentInfo> {
    let data = homeport_config::agent_data_dir(config);
    let client = homeport_client::Client::discover(&data).ok()?;
    Some(client.status().await.ok()?.agent)
}

/// This shell's PATH for the unit: absolute folders only (a relative entry would resolve against
/// whatever folder the agent runs in), each once, in order.
pub fn captured_path() -> String {
    let raw = std::env::var_os("PATH").unwrap_or_default();
    let mut seen: Vec<PathBuf> = Vec::new();
    for p in std::env::split_paths(&raw) {
        if p.is_absolute() && !seen.contains(&p) {
            seen.push(p);
        }
    }
    if seen.is_empty() {
        return "/usr/local/bin:/usr/bin:/bin".to_owned();
    }
    std::env::join_paths(seen)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The cargo target folder `exe` is in, if any: its root holds cargo's `CACHEDIR.TAG` or
/// `.rustc_info.json`.
pub fn build_folder(exe: &Path) -> Option<PathBuf> {
    exe.ancestors().skip(1).find_map(|dir| {
        let tagged = std::fs::read_to_string(dir.join("CACHEDIR.TAG"))
            .is_ok_and(|t| t.contains("8a477f597d28d172789f06886806bc55"));
        (tagged || dir.join(".rustc_info.json").is_file()).then(|| dir.to_path_buf())
    })
}

/// Refuses to write a path inside a build folder into a unit or a login entry: `cargo clean` or
/// the next build removes or replaces it, and the agent would not start at the next login.
pub fn refuse_build_folder(exe: &Path, what: &str) -> Result<(), Failure> {
    let Some(dir) = build_folder(exe) else {
        return Ok(());
    };
    Err(Failure::new(
        1,
        format!(
            "{} is inside the build folder {}, which `cargo clean` or the next build \
             replaces; {what} will not write it into a file that runs at login. Install Homeport \
             first — `./scripts/install.sh` (into ~/.local/bin) or the .deb — and run `{what}` \
             from the installed binary",
            exe.display(),
            dir.display()
        ),
    ))
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
        assert!(u.contains("ExecReload=/bin/kill -HUP $MAINPID"));
        assert!(u.contains("Restart=on-failure"));
        assert!(u.contains("WantedBy=default.target"));
        assert!(u.contains("Environment=\"PATH=/home/u/.cargo/bin:/usr/bin\"\n"));
        assert!(u.contains("Type=notify"));
        assert!(u.contains("Environment=HOMEPORT_SERVICE_MANAGER=systemd"));
        assert!(u.contains("RestartForceExitStatus=75") && u.contains("SuccessExitStatus=75"));
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
            env.get("HOMEPORT_SERVICE_MANAGER")
                .and_then(plist::Value::as_string),
            Some("launchd")
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

    #[test]
    fn a_cargo_target_folder_is_recognised() {
        let root = tempfile::tempdir().expect("temp dir");
        let target = root.path().join("target");
        let bin = target.join("debug/homeport");
        std::fs::create_dir_all(bin.parent().expect("parent")).expect("dirs");
        assert_eq!(build_folder(&bin), None);
        std::fs::write(
            target.join("CACHEDIR.TAG"),
            "Signature: 8a477f597d28d172789f06886806bc55\n# cargo\n",
        )
        .expect("tag");
        assert_eq!(build_folder(&bin), Some(target));
    }
}
