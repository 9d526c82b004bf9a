//! Finding a server's programs on the machine. Homeport never downloads one.
//!
//! Where it looks, in order: the config's `bin` folder; the places packages put them —
//! Debian/Ubuntu `/usr/lib/postgresql/VERSION/bin`, `/usr/sbin` and `/usr/bin`; Homebrew
//! `/opt/homebrew/opt/postgresql@VERSION/bin` (Apple silicon) and `/usr/local/opt/…` (Intel),
//! `/opt/homebrew/bin`, `/usr/local/bin`; Postgres.app
//! `/Applications/Postgres.app/Contents/Versions/VERSION/bin` — then `PATH`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{DbError, Engine};

/// The programs of one engine, found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bins {
    pub engine: Engine,
    tools: BTreeMap<&'static str, PathBuf>,
    /// Where it looked, for the message when a program is missing.
    searched: Vec<PathBuf>,
}

/// The programs each engine may need, each with the names it goes by (MariaDB still installs
/// MySQL's names on some systems).
fn tools(engine: Engine) -> &'static [(&'static str, &'static [&'static str])] {
    match engine {
        Engine::Postgres => &[
            ("server", &["postgres"]),
            ("init", &["initdb"]),
            ("ready", &["pg_isready"]),
            ("dump", &["pg_dump"]),
            ("dumpall", &["pg_dumpall"]),
            ("restore", &["pg_restore"]),
            ("client", &["psql"]),
        ],
        Engine::Mariadb => &[
            ("server", &["mariadbd", "mysqld"]),
            ("init", &["mariadb-install-db", "mysql_install_db"]),
            ("admin", &["mariadb-admin", "mysqladmin"]),
            ("dump", &["mariadb-dump", "mysqldump"]),
            ("client", &["mariadb", "mysql"]),
        ],
        Engine::Redis => &[
            ("server", &["redis-server"]),
            ("client", &["redis-cli"]),
            ("check", &["redis-check-rdb"]),
        ],
    }
}

fn search_dirs(engine: Engine, version: Option<&str>, bin_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = bin_dir.into_iter().map(Path::to_path_buf).collect();
    match engine {
        Engine::Postgres => {
            let versions: Vec<String> = match version {
                Some(v) => vec![v.to_owned()],
                // Client tools for an external server: the newest installed ones read every
                // older server (pg_dump refuses a server newer than itself).
                None => newest_first("/usr/lib/postgresql"),
            };
            for v in &versions {
                dirs.push(format!("/usr/lib/postgresql/{v}/bin").into());
                dirs.push(format!("/opt/homebrew/opt/postgresql@{v}/bin").into());
                dirs.push(format!("/usr/local/opt/postgresql@{v}/bin").into());
                dirs.push(format!("/Applications/Postgres.app/Contents/Versions/{v}/bin").into());
            }
        }
        Engine::Mariadb => {
            if let Some(v) = version {
                dirs.push(format!("/opt/homebrew/opt/mariadb@{v}/bin").into());
                dirs.push(format!("/usr/local/opt/mariadb@{v}/bin").into());
            }
            dirs.push("/usr/sbin".into());
        }
        Engine::Redis => {}
    }
    for d in ["/usr/bin", "/opt/homebrew/bin", "/usr/local/bin"] {
        dirs.push(d.into());
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

/// Numeric subfolders of `root`, highest first (`/usr/lib/postgresql/{16,15}`).
fn newest_first(root: &str) -> Vec<String> {
    let mut v: Vec<(u32, String)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.parse::<u32>().ok().map(|k| (k, n))
        })
        .collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.0));
    v.into_iter().map(|(_, n)| n).collect()
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Bins {
    /// Finds what is installed. Nothing fails here: a missing program is reported when it is
    /// needed ([`Bins::tool`]), naming where Homeport looked.
    pub fn find(
        engine: Engine,
        version: Option<&str>,
        bin_dir: Option<&Path>,
    ) -> Result<Bins, DbError> {
        let searched = search_dirs(engine, version, bin_dir);
        let mut found = BTreeMap::new();
        for (role, names) in tools(engine) {
            'role: for dir in &searched {
                for name in *names {
                    let p = dir.join(name);
                    if is_executable(&p) {
                        found.insert(*role, p);
                        break 'role;
                    }
                }
            }
        }
        Ok(Bins {
            engine,
            tools: found,
            searched,
        })
    }

    /// The program for `role` (`server`, `dump`, `client`…).
    pub fn tool(&self, role: &str) -> Result<&Path, DbError> {
        if let Some(p) = self.tools.get(role) {
            return Ok(p);
        }
        let names = tools(self.engine)
            .iter()
            .find(|(r, _)| *r == role)
            .map_or(role.to_owned(), |(_, n)| n.join(" or "));
        let shown: Vec<String> = self
            .searched
            .iter()
            .take(6)
            .map(|d| d.display().to_string())
            .collect();
        Err(DbError::NotInstalled(format!(
            "{names} ({}) is not installed: looked in {} and PATH. {}",
            self.engine,
            shown.join(", "),
            install_hint(self.engine)
        )))
    }

    /// The server's version as it reports it: `15.18`, `10.11.19`, `7.0.15`.
    pub fn server_version(&self) -> Result<String, DbError> {
        let server = self.tool("server")?;
        let out = Command::new(server)
            .arg("--version")
            .output()
            .map_err(DbError::io(server))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        parse_version(self.engine, &text).ok_or_else(|| {
            DbError::Failed(format!(
                "cannot read the version of {}: it printed {:?}",
                server.display(),
                text.trim()
            ))
        })
    }
}

/// The version number in a server's `--version` line.
pub fn parse_version(engine: Engine, text: &str) -> Option<String> {
    let token = match engine {
        // "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
        Engine::Postgres => text.split(')').nth(1)?.split_whitespace().next()?,
        // "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64"
        Engine::Mariadb => {
            let mut words = text.split_whitespace();
            words.find(|w| *w == "Ver")?;
            words.next()?.split('-').next()?
        }
        // "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=…"
        Engine::Redis => text.split_whitespace().find_map(|w| w.strip_prefix("v="))?,
    };
    token
        .chars()
        .next()
        .filter(char::is_ascii_digit)
        .map(|_| token.to_owned())
}

/// The major version that decides whether a data folder can be read: `15`, `10.11`, `7`.
pub fn major(engine: Engine, version: &str) -> String {
    let parts: Vec<&str> = version.split('.').collect();
    match engine {
        Engine::Mariadb => parts.iter().take(2).copied().collect::<Vec<_>>().join("."),
        Engine::Postgres | Engine::Redis => parts.first().copied().unwrap_or("").to_owned(),
    }
}

/// Whether the installed `found` version is the `wanted` one (`"15"` matches `15.18`).
pub fn matches(wanted: &str, found: &str) -> bool {
    found == wanted
        || found
            .strip_prefix(wanted)
            .is_some_and(|rest| rest.starts_with('.'))
}

pub fn install_hint(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => {
            "Install it: on Debian/Ubuntu `apt install postgresql-VERSION`; on macOS `brew install \
             postgresql@VERSION` or Postgres.app, or name its folder with `bin = \"…\"`"
        }
        Engine::Mariadb => {
            "Install it: on Debian/Ubuntu `apt install mariadb-server mariadb-client`; on macOS \
             `brew install mariadb@VERSION`, or name its folder with `bin = \"…\"`"
        }
        Engine::Redis => {
            "Install it: on Debian/Ubuntu `apt install redis-server redis-tools`; on macOS `brew \
             install redis`, or name its folder with `bin = \"…\"`"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_each_servers_banner() {
        assert_eq!(
            parse_version(
                Engine::Postgres,
                "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"
            )
            .as_deref(),
            Some("15.18")
        );
        assert_eq!(
            parse_version(
                Engine::Mariadb,
                "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64"
            )
            .as_deref(),
            Some("10.11.19")
        );
        assert_eq!(
            parse_version(
                Engine::Redis,
                "Redis server v=7.0.15 sha=00000000:0 bits=64"
            )
            .as_deref(),
            Some("7.0.15")
        );
        assert_eq!(major(Engine::Mariadb, "10.11.19"), "10.11");
        assert_eq!(major(Engine::Postgres, "15.18"), "15");
        assert!(matches("15", "15.18"));
        assert!(!matches("1", "15.18"));
        assert!(matches("10.11", "10.11.19"));
        assert!(!matches("10.1", "10.11.19"));
    }

    #[test]
    fn a_missing_program_names_where_it_was_looked_for() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(DbError::io(Path::new("tmp")))?;
        let bins = Bins {
            engine: Engine::Postgres,
            tools: BTreeMap::new(),
            searched: vec![dir.path().to_path_buf()],
        };
        let e = bins
            .tool("dump")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("pg_dump (PostgreSQL) is not installed"), "{e}");
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
        assert!(e.contains("apt install postgresql"), "{e}");
        Ok(())
    }
}
