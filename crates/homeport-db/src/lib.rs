//! Database servers beside SQLite: PostgreSQL, MariaDB (and MySQL's tools) and Redis.
//!
//! Homeport never downloads a server: it uses the binaries installed on the machine (Debian's
//! packages, Homebrew, Postgres.app) and runs each managed server in its own folder, on its own
//! loopback port, under the supervisor like any other service.
//!
//! # Layout
//! - [`Engine`]: which server, and what differs between them (stop signal, URL scheme).
//! - [`bins`]: finding a server's programs and their version.
//! - [`Server`]: a managed server — its folder (`data/`, `run/`, `password`, `version`), its port,
//!   its URL. [`serve`] initialises it on first start (initdb / mariadb-install-db / a Redis
//!   config), refuses a data folder made by another major version, and execs the server;
//!   `homeport db serve` is the service's command. [`ping`] is its health check.
//! - [`Conn`]: how to reach a server, managed or external (a URL), and [`client`]: the
//!   operations backups and restores run against it — queries, dump commands, loading a dump —
//!   through the server's own tools, with the password in the child's environment, never on
//!   its command line.

pub mod bins;
pub mod client;
mod serve;
mod url;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use bins::Bins;
pub use serve::{ping, serve};
pub use url::parse_url;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    NotInstalled(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] io::Error),
}

impl DbError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(io::Error) -> DbError + '_ {
        move |e| DbError::Io(path.to_path_buf(), e)
    }
}

/// Which database server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Engine {
    Postgres,
    Mariadb,
    Redis,
}

impl Engine {
    pub const ALL: [Engine; 3] = [Engine::Postgres, Engine::Mariadb, Engine::Redis];

    /// The key that names it in the config (`postgres = "15"`).
    pub fn key(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mariadb => "mariadb",
            Engine::Redis => "redis",
        }
    }

    /// Its name as people write it.
    pub fn label(self) -> &'static str {
        match self {
            Engine::Postgres => "PostgreSQL",
            Engine::Mariadb => "MariaDB",
            Engine::Redis => "Redis",
        }
    }

    /// A config key or URL scheme (`postgresql://`, `mysql://`, `redis://`).
    pub fn parse(s: &str) -> Option<Engine> {
        match s {
            "postgres" | "postgresql" => Some(Engine::Postgres),
            "mariadb" | "mysql" => Some(Engine::Mariadb),
            "redis" => Some(Engine::Redis),
            _ => None,
        }
    }

    /// The signal that stops it quickly and cleanly: PostgreSQL's "fast" shutdown is SIGINT
    /// (SIGTERM waits for every client to disconnect); MariaDB and Redis shut down on SIGTERM
    /// (Redis saves its dataset first).
    pub fn stop_signal(self) -> i32 {
        match self {
            Engine::Postgres => libc::SIGINT,
            Engine::Mariadb | Engine::Redis => libc::SIGTERM,
        }
    }

    fn scheme(self) -> &'static str {
        match self {
            Engine::Postgres => "postgresql",
            Engine::Mariadb => "mysql",
            Engine::Redis => "redis",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The account Homeport creates in a managed PostgreSQL or MariaDB server.
pub const ADMIN_USER: &str = "homeport";

/// A server Homeport runs: `databases.main = { postgres = "15", port = 5433 }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The database's name in the config (`main`).
    pub name: String,
    pub engine: Engine,
    /// The major version asked for: `"15"`, `"10.11"`, `"7"`.
    pub version: String,
    pub port: u16,
    /// Its folder: `data/` (the server's own), `run/` (socket, pid), `password`, `version`.
    pub dir: PathBuf,
    /// Where its programs are, when not in the usual places.
    pub bin_dir: Option<PathBuf>,
    /// The database created in it (PostgreSQL, MariaDB); `0` for Redis.
    pub database: String,
    /// The account the server runs as when the agent runs as root.
    pub user: Option<String>,
}

impl Server {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    pub fn password_file(&self) -> PathBuf {
        self.dir.join("password")
    }

    /// Where Redis writes its snapshot.
    pub fn rdb_file(&self) -> PathBuf {
        self.data_dir().join("dump.rdb")
    }

    /// The connection URL dependents get as `{db.NAME}`.
    pub fn url(&self, password: &str) -> String {
        match self.engine {
            Engine::Redis => format!("redis://:{password}@127.0.0.1:{}/0", self.port),
            e => format!(
                "{}://{ADMIN_USER}:{password}@127.0.0.1:{}/{}",
                e.scheme(),
                self.port,
                self.database
            ),
        }
    }

    /// How Homeport itself reaches it (backups, restores, health checks).
    pub fn conn(&self) -> Result<Conn, DbError> {
        let password = password(&self.dir).map_err(DbError::io(&self.password_file()))?;
        Ok(Conn {
            engine: self.engine,
            host: "127.0.0.1".into(),
            port: self.port,
            user: match self.engine {
                Engine::Redis => String::new(),
                _ => ADMIN_USER.into(),
            },
            password: Some(password),
            database: self.database.clone(),
            bins: Bins::find(self.engine, Some(&self.version), self.bin_dir.as_deref())?,
        })
    }

    /// The arguments of `homeport db serve|ping` that describe this server (no secret: the
    /// password is read from its file).
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            "--name".into(),
            self.name.clone(),
            "--engine".into(),
            self.engine.key().into(),
            "--version".into(),
            self.version.clone(),
            "--port".into(),
            self.port.to_string(),
            "--dir".into(),
            self.dir.display().to_string(),
            "--database".into(),
            self.database.clone(),
        ];
        if let Some(b) = &self.bin_dir {
            a.extend(["--bin".into(), b.display().to_string()]);
        }
        if let Some(u) = &self.user {
            a.extend(["--user".into(), u.clone()]);
        }
        a
    }

    /// The inverse of [`Server::to_args`].
    pub fn from_args(args: &[String]) -> Result<Server, String> {
        let mut it = args.iter();
        let (mut name, mut engine, mut version, mut port, mut dir, mut database) =
            (None, None, None, None, None, None);
        let (mut bin_dir, mut user) = (None, None);
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .clone();
            match flag.as_str() {
                "--name" => name = Some(value),
                "--engine" => {
                    engine = Some(
                        Engine::parse(&value).ok_or_else(|| format!("unknown engine {value}"))?,
                    )
                }
                "--version" => version = Some(value),
                "--port" => port = Some(value.parse().map_err(|_| format!("bad port {value}"))?),
                "--dir" => dir = Some(PathBuf::from(value)),
                "--database" => database = Some(value),
                "--bin" => bin_dir = Some(PathBuf::from(value)),
                "--user" => user = Some(value),
                other => return Err(format!("unknown option {other}")),
            }
        }
        let missing = |what: &str| format!("--{what} is missing");
        Ok(Server {
            name: name.ok_or_else(|| missing("name"))?,
            engine: engine.ok_or_else(|| missing("engine"))?,
            version: version.ok_or_else(|| missing("version"))?,
            port: port.ok_or_else(|| missing("port"))?,
            dir: dir.ok_or_else(|| missing("dir"))?,
            database: database.ok_or_else(|| missing("database"))?,
            bin_dir,
            user,
        })
    }
}

/// The password of the managed server in `dir`: read from `dir/password`, or made (random,
/// 0600) the first time. It appears in `{db.NAME}` and is never logged.
pub fn password(dir: &Path) -> io::Result<String> {
    let file = dir.join("password");
    match std::fs::read_to_string(&file) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    homeport_fs::create_private_dir(dir)?;
    // 24 hex digits (96 bits): no character that needs quoting in a URL, SQL or a config file.
    let token = homeport_fs::random_token()?;
    let secret = &token[..24];
    let tmp = dir.join(".password.new");
    let _ = std::fs::remove_file(&tmp);
    {
        use std::io::Write;
        let mut f = homeport_fs::create_new_private(&tmp)?;
        f.write_all(secret.as_bytes())?;
        f.sync_all()?;
    }
    // Two processes making it at once: the first one's stays, and both read it back.
    match std::fs::hard_link(&tmp, &file) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    }
    let _ = std::fs::remove_file(&tmp);
    homeport_fs::sync_dir(dir)?;
    Ok(std::fs::read_to_string(&file)?.trim().to_owned())
}

/// How to reach a server and log in.
#[derive(Clone)]
pub struct Conn {
    pub engine: Engine,
    pub host: String,
    pub port: u16,
    /// Empty for Redis without ACL users.
    pub user: String,
    pub password: Option<String>,
    /// The database (PostgreSQL, MariaDB) or the database number (Redis).
    pub database: String,
    pub bins: Bins,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password.
        write!(f, "{}", self.describe())
    }
}

impl Conn {
    /// `PostgreSQL main at 127.0.0.1:5433` — for messages.
    pub fn describe(&self) -> String {
        match self.engine {
            Engine::Redis => format!("Redis at {}:{}", self.host, self.port),
            e => format!("{e} {} at {}:{}", self.database, self.host, self.port),
        }
    }

    /// The same server, another database.
    pub fn with_database(&self, database: &str) -> Conn {
        Conn {
            database: database.to_owned(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() -> Result<(), String> {
        let s = Server {
            name: "main".into(),
            engine: Engine::Mariadb,
            version: "10.11".into(),
            port: 3307,
            dir: "/tmp/x y".into(),
            bin_dir: Some("/opt/bin".into()),
            database: "shop".into(),
            user: Some("mysql".into()),
        };
        assert_eq!(Server::from_args(&s.to_args())?, s);
        Ok(())
    }

    #[test]
    fn a_password_is_made_once_private_and_kept() -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("main");
        let one = password(&db)?;
        let two = password(&db)?;
        assert_eq!(one, two);
        assert_eq!(one.len(), 24);
        let mode = std::fs::metadata(db.join("password"))?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        Ok(())
    }

    #[test]
    fn urls_carry_the_port_and_database() {
        let s = Server {
            name: "main".into(),
            engine: Engine::Postgres,
            version: "15".into(),
            port: 5433,
            dir: "/x".into(),
            bin_dir: None,
            database: "main".into(),
            user: None,
        };
        assert_eq!(s.url("pw"), "postgresql://homeport:pw@127.0.0.1:5433/main");
        let r = Server {
            engine: Engine::Redis,
            database: "0".into(),
            ..s
        };
        assert_eq!(r.url("pw"), "redis://:pw@127.0.0.1:5433/0");
    }
}
