//! Writing a service's log: one line per captured line, `TIME STREAM TEXT`, size-rotated.
//!
//! ```text
//! 2026-11-22T01:19:24.123456Z out listening on 127.0.0.1:8080
//! 2026-11-22T01:19:24.123502Z err warning: cache is cold
//! ```
//! The writer rotates only between lines, so a line is never split across files, and keeps the
//! bytes of a line as they came (invalid UTF-8 included). `service.log` is current,
//! `service.log.1` the newest rotated file. Readers live in the supervisor's `logfile` module.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The stream tags, as the supervisor's readers parse them.
pub const OUT: &str = "out";
pub const ERR: &str = "err";

/// Lines longer than this are written in pieces, so one endless line cannot exhaust memory.
pub const MAX_LINE: usize = 1024 * 1024;

/// Opens (creating, 0600) a log file for appending. Every log file the shim writes is opened
/// here. Never through a symbolic link: a log replaced by a link to `~/.bashrc` is refused, not
/// appended to.
pub fn open_log_file(path: &Path) -> io::Result<File> {
    homeport_fs::open_append_private(path)
}

/// Appends lines to a log file, rotating it past `max_bytes` and keeping `keep` old files.
pub struct LogWriter {
    path: PathBuf,
    file: io::BufWriter<File>,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

const BUFFER: usize = 256 * 1024;

impl LogWriter {
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            homeport_fs::create_private_dir(dir)?;
        }
        let file = open_log_file(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file: io::BufWriter::with_capacity(BUFFER, file),
            size,
            max_bytes,
            keep,
        })
    }

    /// Writes one line: `stamp` (see [`Stamp`]), the stream tag, the bytes, a newline.
    pub fn write_line(&mut self, stamp: &str, tag: &str, line: &[u8]) -> io::Result<()> {
        let prefix = format!("{stamp} {tag} ");
        self.write_prefixed(prefix.as_bytes(), line)
    }

    /// Writes `prefix` (stamp and tag, with their spaces), the bytes, a newline.
    pub fn write_prefixed(&mut self, prefix: &[u8], line: &[u8]) -> io::Result<()> {
        let len = (prefix.len() + line.len() + 1) as u64;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(prefix)?;
        self.file.write_all(line)?;
        self.file.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let numbered = |n: u32| rotated_path(&self.path, n);
        if self.keep == 0 {
            fs::remove_file(&self.path)?;
        } else {
            let _ = fs::remove_file(numbered(self.keep));
            for n in (1..self.keep).rev() {
                match fs::rename(numbered(n), numbered(n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            fs::rename(&self.path, numbered(1))?;
        }
        self.file = io::BufWriter::with_capacity(BUFFER, open_log_file(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

/// `service.log.N`.
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// A time as written at the start of each line (RFC 3339, UTC, microseconds), formatted without
/// allocating.
#[derive(Clone, Copy)]
pub struct Stamp {
    buf: [u8; 32],
    len: usize,
}

impl Stamp {
    pub fn now() -> Stamp {
        Stamp::at(SystemTime::now())
    }

    pub fn at(t: SystemTime) -> Stamp {
        let mut s = Stamp {
            buf: [0; 32],
            len: 0,
        };
        let mut cursor = io::Cursor::new(&mut s.buf[..]);
        // 27 bytes always fit; a time before 1970 or after 9999 is not a log line's.
        let _ = write!(cursor, "{}", humantime::format_rfc3339_micros(t));
        s.len = cursor.position() as usize;
        s
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// [`Stamp::now`] as a `String`.
pub fn timestamp() -> String {
    Stamp::now().as_str().to_owned()
}

/// Splits one stream's bytes into lines and writes them, holding a line that has not ended yet.
#[derive(Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Writes the complete lines in `chunk` with `prefix`, keeping the rest for the next call.
    /// A failed write is counted in `failed` and the line dropped: the service must not stop
    /// because its disk is full, but the loss must be seen (the shim reports it in shim.log).
    pub fn feed(&mut self, chunk: &[u8], prefix: &[u8], log: &mut LogWriter, failed: &mut u64) {
        let mut rest = chunk;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let line = &rest[..i];
            let result = if self.partial.is_empty() {
                log.write_prefixed(prefix, strip_cr(line))
            } else {
                self.partial.extend_from_slice(line);
                let r = log.write_prefixed(prefix, strip_cr(&self.partial));
                self.partial.clear();
                r
            };
            *failed += u64::from(result.is_err());
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() >= MAX_LINE {
            *failed += u64::from(log.write_prefixed(prefix, &self.partial).is_err());
            self.partial.clear();
        }
    }

    /// Writes a last line that ended without a newline.
    pub fn finish(&mut self, prefix: &[u8], log: &mut LogWriter, failed: &mut u64) {
        if !self.partial.is_empty() {
            *failed += u64::from(log.write_prefixed(prefix, &self.partial).is_err());
            self.partial = Vec::new();
        }
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_rfc3339_micros() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_764_000_000_123_456);
        assert_eq!(Stamp::at(t).as_str(), "2025-11-24T16:00:00.123456Z");
        assert_eq!(timestamp().len(), 27);
    }

    #[test]
    fn lines_are_split_joined_and_bounded() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("s.log");
        let mut log = LogWriter::open(&path, 1 << 30, 1)?;
        let mut lines = Lines::default();
        let mut failed = 0;
        lines.feed(b"one\r\ntw", b"T out ", &mut log, &mut failed);
        lines.feed(b"o\n\nthr", b"T out ", &mut log, &mut failed);
        lines.feed(&vec![b'x'; MAX_LINE], b"T out ", &mut log, &mut failed);
        lines.feed(b"end", b"T out ", &mut log, &mut failed);
        lines.finish(b"T out ", &mut log, &mut failed);
        log.flush()?;
        let text = fs::read(&path)?;
        let got: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
        assert_eq!(got[0], b"T out one");
        assert_eq!(got[1], b"T out two");
        assert_eq!(got[2], b"T out ");
        assert_eq!(
            got[3].len(),
            6 + 3 + MAX_LINE,
            "a long line is cut at the limit"
        );
        assert_eq!(got[4], b"T out end");
        assert_eq!(failed, 0);
        Ok(())
    }
}
