//! Starting the tray app at login, through the auto-launch crate: an XDG autostart entry
//! (`~/.config/autostart/Homeport.desktop`) on Linux, a LaunchAgent on macOS, the `Run` registry
//! key on Windows. Shared by the tray's "Start at login" item and `homeport autostart`.
//!
//! The entry runs `homeport-desktop --minimized`, plus `--config PATH` when the config is not
//! the default one: at login the tray opens no window, and the agent it starts brings up the
//! autostart services.

use std::fmt;
use std::path::{Path, PathBuf};

/// The name of the entry (`Homeport.desktop`).
pub const NAME: &str = "Homeport";
/// The tray app's binary.
pub const DESKTOP_BIN: &str = "homeport-desktop";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The path cannot go in the entry as it is written (not UTF-8, or with spaces that the
    /// entry would not quote).
    Path(PathBuf, &'static str),
    /// The platform refused (file system, registry, launchd).
    Platform(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Path(p, why) => write!(f, "cannot start {} at login: {why}", p.display()),
            Error::Platform(e) => write!(f, "start at login: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// The login entry that starts the tray app at `exe`.
pub struct Autostart {
    launcher: auto_launch::AutoLaunch,
    args: Vec<String>,
    exe: String,
}

impl Autostart {
    /// The entry for the tray app at `exe`, using the config file `config` (`None`: the default).
    pub fn new(exe: &Path, config: Option<&Path>) -> Result<Self, Error> {
        let text = |p: &Path| -> Result<String, Error> {
            let s = p
                .to_str()
                .ok_or_else(|| Error::Path(p.to_owned(), "the path is not UTF-8"))?;
            // auto-launch writes the command line unquoted.
            if s.contains(char::is_whitespace) {
                return Err(Error::Path(p.to_owned(), "the path contains spaces"));
            }
            Ok(s.to_owned())
        };
        let exe_text = text(exe)?;
        let mut args = vec!["--minimized".to_owned()];
        if let Some(c) = config {
            args.push("--config".into());
            args.push(text(c)?);
        }
        let launcher = auto_launch::AutoLaunchBuilder::new()
            .set_app_name(NAME)
            .set_app_path(&exe_text)
            .set_args(&args)
            .build()
            .map_err(|e| Error::Platform(e.to_string()))?;
        Ok(Self {
            launcher,
            args,
            exe: exe_text,
        })
    }

    pub fn is_enabled(&self) -> Result<bool, Error> {
        self.launcher
            .is_enabled()
            .map_err(|e| Error::Platform(e.to_string()))
    }

    pub fn enable(&self) -> Result<(), Error> {
        self.launcher
            .enable()
            .map_err(|e| Error::Platform(e.to_string()))
    }

    pub fn disable(&self) -> Result<(), Error> {
        if !self.is_enabled()? {
            return Ok(());
        }
        self.launcher
            .disable()
            .map_err(|e| Error::Platform(e.to_string()))
    }

    /// The command line the entry runs.
    pub fn command(&self) -> String {
        std::iter::once(self.exe.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Where the entry is written, on Linux: `$HOME/.config/autostart/Homeport.desktop` (auto-launch
/// does not follow `XDG_CONFIG_HOME`).
pub fn entry_path() -> Option<PathBuf> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let home = std::env::var_os("HOME")?;
    Some(
        PathBuf::from(home)
            .join(".config/autostart")
            .join(format!("{NAME}.desktop")),
    )
}

/// The tray app: `$HOMEPORT_DESKTOP` when set (and nothing else if it names no file), else
/// `homeport-desktop` in the folder of `beside` (the running binary, as packaged), else the first
/// on `PATH`.
pub fn find_desktop(beside: &Path) -> Option<PathBuf> {
    find_desktop_in(
        beside,
        std::env::var_os("HOMEPORT_DESKTOP"),
        std::env::var_os("PATH"),
    )
}

/// [`find_desktop`] with the variables it reads given, so tests do not depend on theirs.
fn find_desktop_in(
    beside: &Path,
    desktop: Option<std::ffi::OsString>,
    path: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    if let Some(p) = desktop {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let near = beside.parent().map(|d| d.join(DESKTOP_BIN));
    if let Some(p) = near.filter(|p| p.is_file()) {
        return Some(p);
    }
    std::env::split_paths(&path?)
        .map(|d| d.join(DESKTOP_BIN))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_the_entry_cannot_hold_are_refused_by_name() {
        let e = Autostart::new(Path::new("/opt/My Apps/homeport-desktop"), None)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("cannot start /opt/My Apps/homeport-desktop at login: the path contains spaces")
        );
        let e = Autostart::new(
            Path::new("/usr/bin/homeport-desktop"),
            Some(Path::new("/home/me/my config.toml")),
        );
        assert!(e.is_err());
    }

    #[test]
    fn the_command_starts_minimised_with_the_chosen_config() {
        let a = Autostart::new(Path::new("/usr/bin/homeport-desktop"), None).map(|a| a.command());
        assert_eq!(a, Ok("/usr/bin/homeport-desktop --minimized".to_owned()));
        let a = Autostart::new(
            Path::new("/usr/bin/homeport-desktop"),
            Some(Path::new("/srv/homeport.toml")),
        )
        .map(|a| a.command());
        assert_eq!(
            a,
            Ok("/usr/bin/homeport-desktop --minimized --config /srv/homeport.toml".to_owned())
        );
    }

    #[test]
    fn the_tray_is_found_beside_the_running_binary_unless_named() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let tray = dir.path().join(DESKTOP_BIN);
        std::fs::write(&tray, "").unwrap_or_else(|e| panic!("{e}"));
        let me = dir.path().join("homeport");
        assert_eq!(find_desktop_in(&me, None, None), Some(tray.clone()));
        // $HOMEPORT_DESKTOP wins when set, and only a file it names counts.
        let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let named = other.path().join("my-tray");
        std::fs::write(&named, "").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            find_desktop_in(&me, Some(named.clone().into()), None),
            Some(named)
        );
        assert_eq!(
            find_desktop_in(&me, Some(other.path().join("missing").into()), None),
            None
        );
        // Else the first on PATH.
        let elsewhere = other.path().join("bin/homeport");
        assert_eq!(find_desktop_in(&elsewhere, None, None), None);
        assert_eq!(
            find_desktop_in(&elsewhere, None, Some(dir.path().into())),
            Some(tray)
        );
    }
}
