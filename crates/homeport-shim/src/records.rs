//! The files a shim leaves in its run folder for an agent that was not there to hear it. The
//! agent reads them with serde (`homeport-supervisor`'s `shim` module); the shim writes them by
//! hand, to stay small.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::proto::Exit;

/// The shim and service pids with their identities, rewritten at each start.
pub const RECORD_FILE: &str = "shim.json";
/// How the last run ended, written when the shim exits with no agent to tell.
pub const EXIT_FILE: &str = "exit.json";

/// Who runs: a pid alone is not an identity (pids are reused, and after a reboot they start
/// over), so the boot and the start marks of both processes go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimRecord {
    pub shim_pid: u32,
    /// The service's pid, which is also its process group id.
    pub pid: u32,
    pub boot_id: String,
    pub shim_started: u64,
    pub started: u64,
}

impl ShimRecord {
    pub fn to_json(&self) -> String {
        format!(
            "{{\"shim_pid\":{},\"pid\":{},\"boot_id\":{},\"shim_started\":{},\"started\":{}}}",
            self.shim_pid,
            self.pid,
            json_string(&self.boot_id),
            self.shim_started,
            self.started
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitRecord {
    pub exit: Option<Exit>,
    /// Set when the service could not be started at all.
    pub spawn_error: Option<String>,
    /// RFC 3339 time the record was written.
    pub time: String,
}

impl ExitRecord {
    /// In the shape of `homeport_types::ExitReason` (`{"kind":"code","value":3}`).
    pub fn to_json(&self) -> String {
        let exit = match self.exit {
            None => "null".to_owned(),
            Some(Exit::Code(c)) => format!("{{\"kind\":\"code\",\"value\":{c}}}"),
            Some(Exit::Signal(s)) => format!("{{\"kind\":\"signal\",\"value\":{s}}}"),
            Some(Exit::Lost) => "{\"kind\":\"lost\"}".to_owned(),
        };
        let error = self
            .spawn_error
            .as_deref()
            .map_or_else(|| "null".to_owned(), json_string);
        format!(
            "{{\"exit\":{exit},\"spawn_error\":{error},\"time\":{}}}",
            json_string(&self.time)
        )
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Replaces `path` so that a crash leaves the old file or the new one (temp file and rename,
/// 0600). No fsync: the records describe live processes, which a power loss ends anyway, and a
/// restart must stay fast.
pub fn write(path: &Path, text: &str) -> io::Result<()> {
    homeport_fs::replace_file(
        path,
        text.as_bytes(),
        0o600,
        homeport_fs::Durability::Process,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(
            json_string("a\"b\\c\nd\u{1}"),
            r#""a\"b\\c\nd\u0001""#.replace("\\n", "\\u000a")
        );
    }
}
