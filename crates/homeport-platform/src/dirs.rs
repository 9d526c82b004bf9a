//! The per-user folders, by each OS's convention.
//!
//! | | Linux (XDG) | macOS |
//! |---|---|---|
//! | config file | `$XDG_CONFIG_HOME/homeport/homeport.toml`, else `~/.config/homeport/homeport.toml` | `$XDG_CONFIG_HOME/homeport/homeport.toml` if set, else `~/Library/Application Support/Homeport/homeport.toml` |
//! | data | `$XDG_DATA_HOME/homeport`, else `~/.local/share/homeport` | `$XDG_DATA_HOME/homeport` if set, else `~/Library/Application Support/Homeport` |
//! | service logs | `DATA/logs` | `~/Library/Logs/Homeport` with the default data folder, else `DATA/logs` |
//! | agent at login | `~/.config/systemd/user` | `~/Library/LaunchAgents` |
//!
//! `HOMEPORT_CONFIG` names the config file on every OS. An XDG variable set on macOS wins:
//! whoever set it asked for it (and the tests run that way on both OSes).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Which convention to follow; [`Convention::native`] for this OS. Both can be computed on
/// any OS, so the macOS folders are tested on Linux too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    Xdg,
    MacOs,
}

impl Convention {
    pub const fn native() -> Convention {
        if cfg!(target_os = "macos") {
            Convention::MacOs
        } else {
            Convention::Xdg
        }
    }
}

/// A user's folders, resolved from a home folder and environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folders {
    pub config_file: PathBuf,
    pub data: PathBuf,
    /// Where service logs go when the data folder is [`Folders::data`].
    pub logs: PathBuf,
    /// Where `homeport service install` puts the agent's login definition.
    pub service_dir: PathBuf,
}

impl Folders {
    /// Resolves the folders for `convention`, reading variables through `var`.
    pub fn resolve(convention: Convention, var: impl Fn(&str) -> Option<OsString>) -> Folders {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        let home = set("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
        let xdg = |name: &str| set(name).map(PathBuf::from).filter(|p| p.is_absolute());
        let library = home.join("Library");
        let (config_dir, data, logs) = match (convention, xdg("XDG_DATA_HOME")) {
            (Convention::Xdg, data) => {
                let data = data
                    .unwrap_or_else(|| home.join(".local/share"))
                    .join("homeport");
                let config = xdg("XDG_CONFIG_HOME")
                    .unwrap_or_else(|| home.join(".config"))
                    .join("homeport");
                let logs = data.join("logs");
                (config, data, logs)
            }
            (Convention::MacOs, data) => {
                let support = library.join("Application Support/Homeport");
                let config =
                    xdg("XDG_CONFIG_HOME").map_or_else(|| support.clone(), |x| x.join("homeport"));
                let (data, logs) = match data {
                    Some(x) => (x.join("homeport"), x.join("homeport/logs")),
                    None => (support, library.join("Logs/Homeport")),
                };
                (config, data, logs)
            }
        };
        let config_file =
            set("HOMEPORT_CONFIG").map_or_else(|| config_dir.join("homeport.toml"), PathBuf::from);
        let service_dir = match convention {
            Convention::Xdg => xdg("XDG_CONFIG_HOME")
                .unwrap_or_else(|| home.join(".config"))
                .join("systemd/user"),
            Convention::MacOs => library.join("LaunchAgents"),
        };
        Folders {
            config_file,
            data,
            logs,
            service_dir,
        }
    }

    /// This user's folders on this OS.
    pub fn current() -> Folders {
        Folders::resolve(Convention::native(), |name| std::env::var_os(name))
    }

    /// The service log folder for data folder `data`.
    pub fn logs_for(&self, data: &Path) -> PathBuf {
        if data == self.data {
            self.logs.clone()
        } else {
            data.join("logs")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn linux_follows_xdg() {
        let f = Folders::resolve(Convention::Xdg, env(&[("HOME", "/home/u")]));
        assert_eq!(
            f.config_file,
            Path::new("/home/u/.config/homeport/homeport.toml")
        );
        assert_eq!(f.data, Path::new("/home/u/.local/share/homeport"));
        assert_eq!(f.logs, Path::new("/home/u/.local/share/homeport/logs"));
        assert_eq!(f.service_dir, Path::new("/home/u/.config/systemd/user"));
        let f = Folders::resolve(
            Convention::Xdg,
            env(&[
                ("HOME", "/home/u"),
                ("XDG_CONFIG_HOME", "/c"),
                ("XDG_DATA_HOME", "/d"),
                ("HOMEPORT_CONFIG", "/etc/hp.toml"),
            ]),
        );
        assert_eq!(f.config_file, Path::new("/etc/hp.toml"));
        assert_eq!(f.data, Path::new("/d/homeport"));
        assert_eq!(f.service_dir, Path::new("/c/systemd/user"));
        // A relative XDG value is ignored, as the spec says.
        let f = Folders::resolve(
            Convention::Xdg,
            env(&[("HOME", "/home/u"), ("XDG_DATA_HOME", "rel")]),
        );
        assert_eq!(f.data, Path::new("/home/u/.local/share/homeport"));
    }

    #[test]
    fn macos_uses_the_library_unless_xdg_is_set() {
        let f = Folders::resolve(Convention::MacOs, env(&[("HOME", "/Users/u")]));
        assert_eq!(
            f.config_file,
            Path::new("/Users/u/Library/Application Support/Homeport/homeport.toml")
        );
        assert_eq!(
            f.data,
            Path::new("/Users/u/Library/Application Support/Homeport")
        );
        assert_eq!(f.logs, Path::new("/Users/u/Library/Logs/Homeport"));
        assert_eq!(f.service_dir, Path::new("/Users/u/Library/LaunchAgents"));
        assert_eq!(f.logs_for(&f.data.clone()), f.logs);
        assert_eq!(f.logs_for(Path::new("/srv/hp")), Path::new("/srv/hp/logs"));
        let f = Folders::resolve(
            Convention::MacOs,
            env(&[("HOME", "/Users/u"), ("XDG_DATA_HOME", "/x")]),
        );
        assert_eq!(f.data, Path::new("/x/homeport"));
        assert_eq!(f.logs, Path::new("/x/homeport/logs"));
    }
}
