//! The agent's side of the log holder (`homeport-shim`, see that crate): the spec the agent
//! keeps beside a running service, and the records a shim leaves behind.
//!
//! Files in RUN_DIR:
//! - `spec.json` ([`ShimSpec`]): written by the agent when it starts a service with a spec
//!   different from the last one, so that a later agent can tell that the config changed;
//! - `shim.json` ([`ShimRecord`]): the shim and service pids with their identities, written by
//!   the shim at every start;
//! - `exit.json` ([`ExitRecord`]): how the last run ended, written by a shim that exits while no
//!   agent is connected;
//! - `ctl.sock`: the shim's control socket; `shim.log`: the shim's own messages.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use homeport_shim::proto::{self, Exit};
use homeport_types::ExitReason;
use serde::{Deserialize, Serialize};

pub use homeport_shim::records::{EXIT_FILE, RECORD_FILE};
pub use homeport_shim::{SOCKET, run};

pub const SPEC_FILE: &str = "spec.json";

/// What the shim runs and where it writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShimSpec {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// Added to the shim's inherited environment.
    pub env: BTreeMap<String, String>,
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
    pub log_keep: u32,
    /// After the service's main process ends, what is left of its process group gets SIGTERM and,
    /// after this long, SIGKILL.
    pub stop_timeout_ms: u64,
}

impl ShimSpec {
    pub fn to_wire(&self) -> proto::Spec {
        proto::Spec {
            argv: self.argv.iter().map(OsString::from).collect(),
            cwd: self.cwd.clone(),
            env: self
                .env
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
            log_path: self.log_path.clone(),
            log_max_bytes: self.log_max_bytes,
            log_keep: self.log_keep,
            stop_timeout_ms: self.stop_timeout_ms,
        }
    }
}

/// `shim.json`, as [`homeport_shim::records::ShimRecord`] writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShimRecord {
    pub shim_pid: u32,
    /// The service's pid, which is also its process group id.
    pub pid: u32,
    /// The boot the record was written in (`homeport_platform::boot_id`).
    #[serde(default)]
    pub boot_id: String,
    /// Start marks (`homeport_platform::start_mark`) of the shim and the service.
    #[serde(default)]
    pub shim_started: u64,
    #[serde(default)]
    pub started: u64,
}

/// `exit.json`, as [`homeport_shim::records::ExitRecord`] writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub exit: Option<ExitReason>,
    /// Set when the service could not be started at all.
    pub spawn_error: Option<String>,
    /// RFC 3339 time of the exit.
    pub time: String,
}

pub fn exit_reason(e: Exit) -> ExitReason {
    match e {
        Exit::Code(c) => ExitReason::Code(c),
        Exit::Signal(s) => ExitReason::Signal(s),
        Exit::Lost => ExitReason::Lost,
    }
}

/// How to start a shim: the small `homeport-shim` beside the `homeport` binary, or, where it
/// is missing (a single-binary install), `homeport shim`, which runs the same code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

impl ShimCommand {
    pub fn locate(homeport: &Path) -> ShimCommand {
        let small = homeport.with_file_name("homeport-shim");
        if small.is_file() {
            ShimCommand {
                program: small,
                args: Vec::new(),
            }
        } else {
            ShimCommand {
                program: homeport.to_path_buf(),
                args: vec!["shim".into()],
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use homeport_shim::records;

    #[test]
    fn the_records_the_shim_writes_by_hand_parse_here() -> Result<(), serde_json::Error> {
        let rec = records::ShimRecord {
            shim_pid: 10,
            pid: 11,
            boot_id: "b-1".into(),
            shim_started: 5,
            started: 6,
        };
        let parsed: ShimRecord = serde_json::from_str(&rec.to_json())?;
        assert_eq!(
            parsed,
            ShimRecord {
                shim_pid: 10,
                pid: 11,
                boot_id: "b-1".into(),
                shim_started: 5,
                started: 6
            }
        );
        for (exit, want) in [
            (Some(Exit::Code(3)), Some(ExitReason::Code(3))),
            (Some(Exit::Signal(9)), Some(ExitReason::Signal(9))),
            (Some(Exit::Lost), Some(ExitReason::Lost)),
            (None, None),
        ] {
            let rec = records::ExitRecord {
                exit,
                spawn_error: Some("cannot run \"x\":\n\tgone".into()),
                time: "2026-01-01T00:00:00.000000Z".into(),
            };
            let parsed: ExitRecord = serde_json::from_str(&rec.to_json())?;
            assert_eq!(parsed.exit, want);
            assert_eq!(
                parsed.spawn_error.as_deref(),
                Some("cannot run \"x\":\n\tgone")
            );
        }
        Ok(())
    }

    #[test]
    fn log_stream_tags_match_the_readers() {
        use homeport_types::Stream;
        assert_eq!(homeport_shim::log::OUT, Stream::Stdout.tag());
        assert_eq!(homeport_shim::log::ERR, Stream::Stderr.tag());
    }
}
