//! The agent's own log. `homeport agent` writes what it says (warnings such as "autostart
//! failed: cannot run …") to a size-rotated file beside the service logs, whoever started it —
//! a terminal, `--detach`, the tray, systemd or launchd — so a desktop user whose tray started
//! the agent can read it; `homeport status` and the dashboard name the file.
//!
//! Lines said before the data folder is known to be safe to write are held in memory and
//! written once it is ([`AgentLog::attach`]). When the agent's stderr already is this file (the
//! tray, `--detach` and launchd send it there, so a panic lands in it too), lines are written
//! once, through here, and a rotation moves stderr to the new file.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A file is rotated past this size; with [`KEEP`] older ones at most 40 MiB in all.
const MAX_BYTES: u64 = 10 << 20;
/// How many rotated files (`agent.log.1`, …) are kept.
const KEEP: u32 = 3;

pub struct AgentLog {
    sink: Mutex<Sink>,
    stderr_is_log: bool,
}

enum Sink {
    /// Before [`AgentLog::attach`]: held until the file may be written.
    Pending(Vec<u8>),
    File(RotatingFile),
    /// The file could not be opened: what would go there goes to stderr.
    Stderr,
}

struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
    keep: u32,
}

impl AgentLog {
    /// A log that will be `path` once attached.
    pub fn new(path: &Path) -> AgentLog {
        AgentLog {
            sink: Mutex::new(Sink::Pending(Vec::new())),
            stderr_is_log: stderr_is(path),
        }
    }

    /// Whether this process's stderr is already the log file, so nothing else should write
    /// the same lines to stderr.
    pub fn stderr_is_log(&self) -> bool {
        self.stderr_is_log
    }

    /// Opens the file and writes what was held. On an error the held lines, and all later ones,
    /// go to stderr instead.
    pub fn attach(&self, path: &Path) -> io::Result<()> {
        self.attach_with(path, MAX_BYTES, KEEP)
    }

    fn attach_with(&self, path: &Path, max: u64, keep: u32) -> io::Result<()> {
        let opened = path
            .parent()
            .map_or(Ok(()), homeport_fs::create_private_dir)
            .and_then(|()| RotatingFile::open(path, max, keep));
        let mut sink = self.lock();
        let Sink::Pending(held) = std::mem::replace(&mut *sink, Sink::Stderr) else {
            return Ok(());
        };
        match opened {
            Ok(mut file) => {
                file.write(&held, self.stderr_is_log)?;
                *sink = Sink::File(file);
                Ok(())
            }
            Err(e) => {
                let _ = io::stderr().write_all(&held);
                Err(e)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sink> {
        self.sink
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// tracing's formatter writes each event with one `write_all`, so one lock per write keeps
/// events whole.
impl Write for &AgentLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut *self.lock() {
            Sink::Pending(held) => held.extend_from_slice(buf),
            Sink::File(file) => file.write(buf, self.stderr_is_log)?,
            Sink::Stderr => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl RotatingFile {
    fn open(path: &Path, max: u64, keep: u32) -> io::Result<RotatingFile> {
        let file = homeport_fs::open_append_private(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            size,
            max,
            keep,
        })
    }

    fn write(&mut self, buf: &[u8], stderr_is_log: bool) -> io::Result<()> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max {
            self.rotate(stderr_is_log)?;
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    /// `agent.log` → `agent.log.1` → … → `agent.log.KEEP`, the oldest dropped.
    fn rotate(&mut self, stderr_is_log: bool) -> io::Result<()> {
        for n in (1..self.keep).rev() {
            match std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = homeport_fs::open_append_private(&self.path)?;
        self.size = 0;
        if stderr_is_log {
            // SAFETY: dup2 onto fd 2 of a descriptor this process owns; a panic message written
            // meanwhile goes to either file, both of them this log.
            if unsafe { libc::dup2(self.file.as_raw_fd(), libc::STDERR_FILENO) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Whether this process's stderr is the file at `path`.
fn stderr_is(path: &Path) -> bool {
    let Ok(file) = std::fs::metadata(path) else {
        return false;
    };
    let Ok(stderr) = io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    File::from(stderr)
        .metadata()
        .is_ok_and(|err| err.dev() == file.dev() && err.ino() == file.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn lines_said_before_attaching_are_kept_and_the_file_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/agent.log");
        let log = AgentLog::new(&path);
        (&log).write_all(b"early line\n").unwrap();
        assert!(
            !path.exists(),
            "nothing is written before the folder is known to be safe"
        );
        log.attach_with(&path, 64, 2).unwrap();
        assert_eq!(read(&path), "early line\n");
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);

        for i in 0..12 {
            (&log)
                .write_all(format!("line {i:02} of the agent\n").as_bytes())
                .unwrap();
        }
        let (now, one, two) = (
            read(&path),
            read(&rotated(&path, 1)),
            read(&rotated(&path, 2)),
        );
        assert!(now.len() <= 64 && one.len() <= 64 && two.len() <= 64);
        assert!(now.ends_with("line 11 of the agent\n"), "{now}");
        assert!(
            !rotated(&path, 3).exists(),
            "only two rotated files are kept"
        );
        // Every line is whole and in order across the files that are kept.
        let all = format!("{two}{one}{now}");
        let numbers: Vec<&str> = all.lines().map(|l| &l[5..7]).collect();
        let mut sorted = numbers.clone();
        sorted.sort_unstable();
        assert_eq!(numbers, sorted);
        assert!(all.lines().all(|l| l.ends_with("of the agent")));
    }

    #[test]
    fn a_log_that_cannot_be_opened_sends_its_lines_to_stderr_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let log = AgentLog::new(&blocker.join("agent.log"));
        (&log).write_all(b"held\n").unwrap();
        assert!(log.attach(&blocker.join("agent.log")).is_err());
    }
}
