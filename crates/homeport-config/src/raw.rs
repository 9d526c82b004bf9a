//! The file as written: serde structs that mirror the TOML, with spans where validation needs them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// Keys each table accepts, for "did you mean" hints. Kept beside the structs they describe.
pub(crate) const TOP_KEYS: &[&str] = &["agent", "apps"];
pub(crate) const AGENT_KEYS: &[&str] = &[
    "port",
    "data_dir",
    "log_max_bytes",
    "log_keep",
    "router_port",
    "https_port",
    "sample_every",
    "watch_config",
];
pub(crate) const APP_KEYS: &[&str] = &[
    "env",
    "source",
    "test",
    "build",
    "artifacts",
    "migrate",
    "keep_releases",
    "allow_dirty",
    "step_env",
    "install",
    "backward_compatible_migrations",
];
pub(crate) const ENV_KEYS: &[&str] = &[
    "host",
    "autostart",
    "data_dir",
    "databases",
    "config_files",
    "env",
    "env_file",
    "secret_env",
    "files",
    "backup",
    "health_deadline",
    "health_stable",
    "restore_on_failure",
    "hostnames",
    "web",
    "drain",
    "auto_update",
    "notify",
    "services",
];
pub(crate) const AUTO_UPDATE_KEYS: &[&str] = &["every", "window"];
/// Keys of a database server entry: `databases.main = { postgres = "15", port = 5433 }`.
pub(crate) const DB_KEYS: &[&str] = &[
    "postgres",
    "mariadb",
    "mysql",
    "redis",
    "port",
    "dir",
    "bin",
    "user",
    "database",
    "url",
    "password_file",
];
pub(crate) const BACKUP_KEYS: &[&str] = &[
    "every",
    "at",
    "keep_last",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_safety",
    "compress",
];
pub(crate) const SERVICE_KEYS: &[&str] = &[
    "command",
    "shell",
    "cwd",
    "env",
    "env_file",
    "secret_env",
    "port",
    "ports",
    "health",
    "restart",
    "depends_on",
    "autostart",
    "stop_signal",
    "stop_timeout",
    "strategy",
];
pub(crate) const HEALTH_KEYS: &[&str] = &[
    "http",
    "tcp",
    "command",
    "interval",
    "timeout",
    "retries",
    "start_period",
];
pub(crate) const RESTART_KEYS: &[&str] = &[
    "policy",
    "backoff_min",
    "backoff_max",
    "reset_after",
    "max_failures",
    "window",
];

#[derive(Deserialize, Default)]
pub(crate) struct RawAgent {
    pub port: Option<Spanned<i64>>,
    pub data_dir: Option<String>,
    pub log_max_bytes: Option<Spanned<i64>>,
    pub log_keep: Option<Spanned<i64>>,
    pub router_port: Option<Spanned<i64>>,
    pub https_port: Option<Spanned<i64>>,
    pub sample_every: Option<Spanned<Dur>>,
    pub watch_config: Option<bool>,
}

#[derive(Deserialize, Default)]
pub(crate) struct RawEnv {
    /// Runs on another host (`homeport host add NAME …`), not here.
    pub host: Option<Spanned<String>>,
    pub autostart: Option<bool>,
    pub data_dir: Option<String>,
    #[serde(default)]
    pub databases: BTreeMap<String, Spanned<RawDatabase>>,
    #[serde(default)]
    pub config_files: BTreeMap<String, String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
    pub env_file: Option<Spanned<String>>,
    #[serde(default)]
    pub files: Vec<Spanned<String>>,
    pub backup: Option<Spanned<RawBackup>>,
    pub health_deadline: Option<Dur>,
    pub health_stable: Option<Dur>,
    pub restore_on_failure: Option<bool>,
    #[serde(default)]
    pub hostnames: Vec<Spanned<String>>,
    pub web: Option<Spanned<String>>,
    pub drain: Option<Dur>,
    pub auto_update: Option<Spanned<RawAutoUpdate>>,
    pub notify: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
pub(crate) struct RawAutoUpdate {
    pub every: Option<Dur>,
    pub window: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct RawApp {
    pub source: Option<Spanned<String>>,
    #[serde(default)]
    pub test: Vec<Spanned<String>>,
    #[serde(default)]
    pub build: Vec<Spanned<String>>,
    #[serde(default)]
    pub artifacts: Vec<Spanned<String>>,
    pub migrate: Option<Spanned<String>>,
    pub keep_releases: Option<u32>,
    pub allow_dirty: Option<bool>,
    #[serde(default)]
    pub step_env: BTreeMap<String, String>,
    #[serde(default)]
    pub install: Vec<Spanned<String>>,
    pub backward_compatible_migrations: Option<bool>,
}

#[derive(Deserialize, Default)]
pub(crate) struct RawBackup {
    pub every: Option<Dur>,
    pub at: Option<String>,
    pub keep_last: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_safety: Option<u32>,
    pub compress: Option<bool>,
}

#[derive(Deserialize)]
pub(crate) struct RawService {
    pub command: Spanned<RawCommand>,
    #[serde(default)]
    pub shell: bool,
    pub cwd: Option<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
    pub env_file: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    #[serde(default)]
    pub ports: BTreeMap<String, Spanned<i64>>,
    pub health: Option<Spanned<RawHealth>>,
    pub restart: Option<RawRestart>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    pub autostart: Option<bool>,
    pub stop_signal: Option<Spanned<Signal>>,
    pub stop_timeout: Option<Dur>,
    pub strategy: Option<Spanned<String>>,
}

/// `main = "~/app.db"` (SQLite) or a table naming a server.
pub(crate) enum RawDatabase {
    Path(String),
    Server(Box<RawServerDb>),
}

/// A database server: Homeport runs it (`postgres = "15", port = 5433`) or only backs it up
/// (`url = "postgresql://…"`).
#[derive(Deserialize, Default)]
pub(crate) struct RawServerDb {
    pub postgres: Option<RawVersion>,
    pub mariadb: Option<RawVersion>,
    pub mysql: Option<RawVersion>,
    pub redis: Option<RawVersion>,
    pub port: Option<i64>,
    pub dir: Option<String>,
    pub bin: Option<String>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub url: Option<String>,
    pub password_file: Option<String>,
}

impl<'de> Deserialize<'de> for RawDatabase {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawDatabase;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    r#"a SQLite file's path, or a server such as { postgres = "15", port = 5433 }"#,
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDatabase, E> {
                Ok(RawDatabase::Path(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawDatabase, A::Error> {
                RawServerDb::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|s| RawDatabase::Server(Box::new(s)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A server version: `"15"`, `"10.11"` or `15`.
pub(crate) struct RawVersion(pub String);

impl<'de> Deserialize<'de> for RawVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawVersion;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a version such as "15" or "10.11""#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawVersion, E> {
                Ok(RawVersion(v.trim().to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawVersion, E> {
                Ok(RawVersion(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawVersion, E> {
                Ok(RawVersion(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawVersion, E> {
                // 10.10 would read as 10.1: a version is text.
                Err(E::custom(format!(
                    "write the version in quotes (\"{v}\" as a number loses trailing zeros)"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// `command = "bin --flag"` (split like a shell would, but never run by one) or `["bin", "--flag"]`.
pub(crate) enum RawCommand {
    Line(String),
    Argv(Vec<String>),
}

impl<'de> Deserialize<'de> for RawCommand {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCommand;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command line string or an array of arguments")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawCommand, E> {
                Ok(RawCommand::Line(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawCommand, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = seq.next_element::<String>()? {
                    argv.push(arg);
                }
                Ok(RawCommand::Argv(argv))
            }
        }
        d.deserialize_any(V)
    }
}

/// `health = "/health"` or a table.
pub(crate) struct RawHealth {
    pub http: Option<String>,
    pub tcp: Option<RawTcp>,
    pub command: Option<RawCommand>,
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
    pub retries: Option<u32>,
    pub start_period: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawTcp {
    Flag(bool),
    Port(i64),
}

#[derive(Deserialize)]
struct RawHealthTable {
    http: Option<String>,
    tcp: Option<RawTcp>,
    command: Option<RawCommand>,
    interval: Option<Dur>,
    timeout: Option<Dur>,
    retries: Option<u32>,
    start_period: Option<Dur>,
}

impl<'de> Deserialize<'de> for RawHealth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHealth;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an HTTP path or URL, or a table with one of `http`, `tcp`, `command`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawHealth, E> {
                Ok(RawHealth {
                    http: Some(v.to_owned()),
                    tcp: None,
                    command: None,
                    interval: None,
                    timeout: None,
                    retries: None,
                    start_period: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawHealth, A::Error> {
                let t = RawHealthTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawHealth {
                    http: t.http,
                    tcp: t.tcp,
                    command: t.command,
                    interval: t.interval,
                    timeout: t.timeout,
                    retries: t.retries,
                    start_period: t.start_period,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `restart = "always"` or a table.
#[derive(Default)]
pub(crate) struct RawRestart {
    pub policy: Option<Spanned<String>>,
    pub backoff_min: Option<Dur>,
    pub backoff_max: Option<Dur>,
    pub reset_after: Option<Dur>,
    pub max_failures: Option<Spanned<MaxFailures>>,
    pub window: Option<Dur>,
}

/// `max_failures`: a count, or `"unlimited"` to never give up.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MaxFailures {
    Count(i64),
    Unlimited,
    Other(String),
}

impl<'de> Deserialize<'de> for MaxFailures {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MaxFailures;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a number of failures, or "unlimited""#)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MaxFailures, E> {
                Ok(MaxFailures::Count(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MaxFailures, E> {
                Ok(MaxFailures::Count(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MaxFailures, E> {
                Ok(if v == "unlimited" {
                    MaxFailures::Unlimited
                } else {
                    MaxFailures::Other(v.to_owned())
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct RawRestartTable {
    policy: Option<Spanned<String>>,
    backoff_min: Option<Dur>,
    backoff_max: Option<Dur>,
    reset_after: Option<Dur>,
    max_failures: Option<Spanned<MaxFailures>>,
    window: Option<Dur>,
}

impl<'de> Deserialize<'de> for RawRestart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A bare string carries no span of its own here; validation reports it at the service.
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRestart;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#""never", "on-failure", "always", or a table with `policy`"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawRestart, E> {
                Ok(RawRestart {
                    policy: Some(Spanned::new(0..0, v.to_owned())),
                    ..Default::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRestart, A::Error> {
                let t = RawRestartTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawRestart {
                    policy: t.policy,
                    backoff_min: t.backoff_min,
                    backoff_max: t.backoff_max,
                    reset_after: t.reset_after,
                    max_failures: t.max_failures,
                    window: t.window,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration written as `"500ms"`, `"10s"`, `"2m"`, `"1h 30m"`, or a number of seconds.
#[derive(Clone, Copy)]
pub(crate) struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a duration such as "500ms", "10s" or "5m""#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                humantime::parse_duration(v).map(Dur).map_err(|e| {
                    E::custom(format!(
                        "invalid duration {v:?}: {e}; expected e.g. \"10s\""
                    ))
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                u64::try_from(v)
                    .map(|s| Dur(Duration::from_secs(s)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                Ok(Dur(Duration::from_secs(v)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A signal name: `"SIGTERM"`, `"TERM"`, `"INT"`…
pub(crate) struct Signal(pub i32);

impl<'de> Deserialize<'de> for Signal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        parse_signal(&name).map(Signal).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown signal {name:?}; expected one of SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGKILL"
            ))
        })
    }
}

/// The number of a signal given by name, with or without the `SIG` prefix.
pub fn parse_signal(name: &str) -> Option<i32> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    Some(match bare {
        "HUP" => libc_sig::HUP,
        "INT" => libc_sig::INT,
        "QUIT" => libc_sig::QUIT,
        "KILL" => libc_sig::KILL,
        "USR1" => libc_sig::USR1,
        "USR2" => libc_sig::USR2,
        "TERM" => libc_sig::TERM,
        _ => return None,
    })
}

/// Linux and macOS agree on these numbers.
mod libc_sig {
    pub const HUP: i32 = 1;
    pub const INT: i32 = 2;
    pub const QUIT: i32 = 3;
    pub const KILL: i32 = 9;
    #[cfg(target_os = "macos")]
    pub const USR1: i32 = 30;
    #[cfg(target_os = "macos")]
    pub const USR2: i32 = 31;
    #[cfg(not(target_os = "macos"))]
    pub const USR1: i32 = 10;
    #[cfg(not(target_os = "macos"))]
    pub const USR2: i32 = 12;
    pub const TERM: i32 = 15;
}
