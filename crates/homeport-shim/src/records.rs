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

/// `shim.json`, rewritten in place at every start of the service.
///
/// Not a temp file and a rename, as other records are: on ext4 a rename over a file forces the
/// new file's data out to the disk and frees the old one (a discard, on SSDs mounted so), and
/// that made a restart several times dearer than spawning the service. The record is padded
/// to a fixed length and written with one `pwrite` at offset 0, so it is never torn and never
/// has leftovers of a longer one; JSON allows the trailing spaces.
pub struct RecordFile {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
}

/// Every record fits: two pids, two start marks, a boot id.
const RECORD_LEN: usize = 256;

impl RecordFile {
    pub fn new(path: std::path::PathBuf) -> Self {
        Self { path, file: None }
    }

    pub fn write(&mut self, rec: &ShimRecord) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut text = rec.to_json().into_bytes();
        if text.len() > RECORD_LEN {
            return Err(io::Error::other("the run record is too long"));
        }
        text.resize(RECORD_LEN, b' ');
        // Opened once; again if someone removed the file meanwhile (the agent clears finished runs).
        let gone = match &self.file {
            Some(f) => {
                use std::os::unix::fs::MetadataExt;
                f.metadata().map_or(true, |m| m.nlink() == 0)
            }
            None => true,
        };
        if gone {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::remove_file(&self.path);
            // New, 0600, and never through a link someone left in its place.
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&self.path)?;
            self.file = Some(file);
        }
        match &self.file {
            Some(f) => f.write_all_at(&text, 0),
            None => Err(io::Error::other("no run record file")),
        }
    }
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
    fn the_record_is_rewritten_in_place_and_reads_back_whole() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(RECORD_FILE);
        let mut file = RecordFile::new(path.clone());
        let rec = |pid: u32, boot: &str| ShimRecord {
            shim_pid: 1,
            pid,
            boot_id: boot.into(),
            shim_started: 2,
            started: 3,
        };
        file.write(&rec(4_000_000, "a-long-boot-id-0123456789"))?;
        file.write(&rec(7, "b"))?;
        let text = std::fs::read_to_string(&path)?;
        assert_eq!(text.len(), RECORD_LEN);
        assert_eq!(
            text.trim_end(),
            rec(7, "b").to_json(),
            "no leftover of the longer one"
        );
        // Removed by someone: written again, not into the void.
        std::fs::remove_file(&path)?;
        file.write(&rec(8, "c"))?;
        assert_eq!(
            std::fs::read_to_string(&path)?.trim_end(),
            rec(8, "c").to_json()
        );
        Ok(())
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(
            json_string("a\"b\\c\nd\u{1}"),
            r#""a\"b\\c\nd\u0001""#.replace("\\n", "\\u000a")
        );
    }
}
