//! Service log files: one line per captured line, `TIME STREAM TEXT`, size-rotated.
//!
//! ```text
//! 2026-11-22T01:19:24.123456Z out listening on 127.0.0.1:8080
//! 2026-11-22T01:19:24.123502Z err warning: cache is cold
//! ```
//! The writer (in `homeport-shim`, which writes every log) rotates only between lines, so a line
//! is never split across files, and keeps the bytes of a line as they came (invalid UTF-8
//! included). `service.log` is current,
//! `service.log.1` the newest rotated file; `tail -F service.log` follows across rotations.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use homeport_types::{LogLine, Stream};

pub use homeport_shim::log::{LogWriter, open_log_file, rotated_path, timestamp};

/// Parses one line of a log file; lines that are not in the format are returned as stdout text.
pub fn parse_line(raw: &[u8]) -> LogLine {
    let text = String::from_utf8_lossy(raw);
    let mut parts = text.splitn(3, ' ');
    if let (Some(time), Some(tag), Some(rest)) = (parts.next(), parts.next(), parts.next())
        && let Some(stream) = Stream::from_tag(tag)
    {
        return LogLine {
            time: time.to_owned(),
            stream,
            text: rest.to_owned(),
        };
    }
    LogLine {
        time: String::new(),
        stream: Stream::Stdout,
        text: text.into_owned(),
    }
}

/// Which lines a reader wants.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// At most this many lines, the newest ones.
    pub tail: Option<usize>,
    /// Only lines at or after this RFC 3339 time (compared as text: the format sorts).
    pub since: Option<String>,
    /// Only lines before this time: with `tail`, pages back through history.
    pub until: Option<String>,
    pub grep: Option<regex::Regex>,
    /// How much work the search may do (None: no bound).
    pub budget: Option<Budget>,
}

/// A bound on the work of one search: CPU time of the thread that searches (not wall time, so a
/// busy machine does not cut searches short), and a flag the caller sets when its client went
/// away. Checked every few thousand lines.
#[derive(Debug, Clone)]
pub struct Budget {
    pub cpu: std::time::Duration,
    pub cancelled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Why a search stopped before it was done.
#[derive(Debug, thiserror::Error)]
pub enum Stopped {
    #[error(
        "the search stopped after {}s of work, {} MB into the history, with {found} matching lines: narrow it with a time (--since), fewer lines (-n) or a simpler pattern",
        .cpu.as_secs(), .read / 1_000_000
    )]
    OverBudget {
        cpu: std::time::Duration,
        read: u64,
        found: usize,
    },
    #[error("the search was cancelled: its client went away")]
    Cancelled,
}

impl Budget {
    /// CPU time this thread has used so far.
    fn thread_cpu() -> std::time::Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        std::time::Duration::new(
            u64::try_from(ts.tv_sec).unwrap_or(0),
            u32::try_from(ts.tv_nsec).unwrap_or(0),
        )
    }
}

/// Checks a [`Budget`] against the work done since `start` (thread CPU time at the start).
struct Meter<'a> {
    budget: Option<&'a Budget>,
    start: std::time::Duration,
    lines: u64,
    read: u64,
}

impl<'a> Meter<'a> {
    fn new(budget: Option<&'a Budget>) -> Self {
        Self {
            budget,
            start: Budget::thread_cpu(),
            lines: 0,
            read: 0,
        }
    }

    /// Counts one line of `len` bytes; every 4,096 lines, checks the budget.
    fn tick(&mut self, len: usize, found: usize) -> io::Result<()> {
        self.lines += 1;
        self.read += len as u64 + 1;
        let Some(b) = self.budget else {
            return Ok(());
        };
        if !self.lines.is_multiple_of(4096) {
            return Ok(());
        }
        if b.cancelled.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                Stopped::Cancelled,
            ));
        }
        let cpu = Budget::thread_cpu().saturating_sub(self.start);
        if cpu >= b.cpu {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                Stopped::OverBudget {
                    cpu,
                    read: self.read,
                    found,
                },
            ));
        }
        Ok(())
    }
}

impl LogQuery {
    pub fn matches(&self, line: &LogLine) -> bool {
        self.since
            .as_ref()
            .is_none_or(|s| line.time.as_str() >= s.as_str())
            && self
                .until
                .as_ref()
                .is_none_or(|u| line.time.as_str() < u.as_str())
            && self.grep.as_ref().is_none_or(|re| re.is_match(&line.text))
    }
}

/// Which file a follower is in: its inode and, where the file system records it, its birth
/// time — inode numbers are reused as soon as rotation deletes a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    ino: u64,
    born: Option<std::time::SystemTime>,
}

impl FileId {
    pub fn of_meta(meta: &fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            ino: meta.ino(),
            born: meta.created().ok(),
        }
    }

    pub fn of(path: &Path) -> Option<Self> {
        fs::metadata(path).ok().map(|m| Self::of_meta(&m))
    }
}

/// Where a follower continues: a byte offset in a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub offset: u64,
    pub ino: Option<FileId>,
    /// With no file yet (`ino` is None): files born after this time are new to the follower.
    pub after: Option<std::time::SystemTime>,
}

/// Reads the lines of a service's log (current file and its rotations, oldest first) that match
/// `query`, and returns them with the position just past the last complete line of the current
/// file, from which a follower continues without a gap or a repeat.
pub fn read_lines(
    path: &Path,
    keep: u32,
    query: &LogQuery,
) -> io::Result<(Vec<LogLine>, Position)> {
    let want = query.tail.unwrap_or(usize::MAX);
    let mut newest_first: Vec<LogLine> = Vec::new();
    let mut meter = Meter::new(query.budget.as_ref());
    // If the log does not exist yet, everything written from now on is new to a follower —
    // even what lands in a rotated file before the follower first looks.
    let mut end = Position {
        after: Some(std::time::SystemTime::now()),
        ..Position::default()
    };
    // Newest file first, so a small tail reads only the end of the current file.
    for n in 0..=keep {
        let p = if n == 0 {
            path.to_path_buf()
        } else {
            rotated_path(path, n)
        };
        let mut file = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let mut len = meta.len();
        if n == 0 {
            // A line being written is not complete yet; the follower will read it whole.
            len = complete_prefix(&mut file, len)?;
            end = Position {
                offset: len,
                ino: Some(FileId::of_meta(&meta)),
                after: None,
            };
            if want == 0 {
                return Ok((Vec::new(), end)); // only the position was wanted
            }
        }
        for raw in lines_backwards(&mut file, len)? {
            meter.tick(raw.len(), newest_first.len())?;
            let line = parse_line(&raw);
            if let Some(since) = &query.since
                && !line.time.is_empty()
                && line.time.as_str() < since.as_str()
            {
                newest_first.reverse();
                return Ok((newest_first, end));
            }
            if query.matches(&line) {
                newest_first.push(line);
                if newest_first.len() >= want {
                    newest_first.reverse();
                    return Ok((newest_first, end));
                }
            }
        }
    }
    newest_first.reverse();
    Ok((newest_first, end))
}

/// The length of the part of `file[..len]` that ends with a newline.
fn complete_prefix(file: &mut File, len: u64) -> io::Result<u64> {
    let mut pos = len;
    let mut byte = [0u8; 1];
    while pos > 0 {
        file.seek(SeekFrom::Start(pos - 1))?;
        file.read_exact(&mut byte)?;
        if byte[0] == b'\n' {
            break;
        }
        pos -= 1;
    }
    Ok(pos)
}

/// The complete lines of `file[..len]`, last first, read in blocks from the end.
fn lines_backwards(file: &mut File, len: u64) -> io::Result<impl Iterator<Item = Vec<u8>>> {
    const BLOCK: u64 = 64 * 1024;
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut pos = len;
    let mut carry: Vec<u8> = Vec::new();
    // Reading everything backwards is bounded by the file size, which rotation bounds.
    while pos > 0 {
        let start = pos.saturating_sub(BLOCK);
        let mut buf = vec![0; (pos - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        buf.extend_from_slice(&carry);
        let mut parts: Vec<&[u8]> = buf.split(|b| *b == b'\n').collect();
        // The first part may continue in the previous block.
        carry = parts.remove(0).to_vec();
        for p in parts.into_iter().rev() {
            if !p.is_empty() {
                lines.push(p.to_vec());
            }
        }
        pos = start;
    }
    if !carry.is_empty() {
        lines.push(carry);
    }
    Ok(lines.into_iter())
}

/// What a follower read in one step.
#[derive(Debug, Default)]
pub struct Followed {
    pub lines: Vec<LogLine>,
    /// Lines were lost: the file the follower was in rotated out of `keep` before it was read.
    pub lost: bool,
}

/// Follows a log across rotations: reads up to about `max_bytes` of complete lines after `pos`
/// and advances it. When the file at `pos` was rotated, its rest is read from wherever it is now
/// (`.1` … `.keep`) before the newer files, so a slow follower loses nothing while its file
/// still exists.
pub fn read_new_lines(
    path: &Path,
    keep: u32,
    pos: &mut Position,
    max_bytes: u64,
) -> io::Result<Followed> {
    let ino_of = FileId::of;
    let Some(current) = ino_of(path) else {
        return Ok(Followed::default());
    };
    let mut out = Followed::default();
    if pos.ino.is_none() {
        // First sight of a log that did not exist when following began: start with the oldest
        // file born since then (a fast writer may have rotated already).
        let born_since = |p: &Path| {
            fs::metadata(p)
                .ok()
                .and_then(|m| m.created().ok())
                .zip(pos.after)
                .is_some_and(|(b, a)| b >= a)
        };
        let first = (1..=keep)
            .rev()
            .map(|n| rotated_path(path, n))
            .find(|p| p.exists() && born_since(p));
        pos.ino = Some(first.as_deref().and_then(ino_of).unwrap_or(current));
        pos.offset = 0;
    }
    if pos.ino != Some(current) {
        // Where is our file now? `.n` for some n, or gone.
        let found = (1..=keep).find(|n| ino_of(&rotated_path(path, *n)) == pos.ino);
        match found {
            Some(n) => {
                let file = rotated_path(path, n);
                let (lines, next, at_end) = read_from(&file, pos.offset, max_bytes)?;
                out.lines = lines;
                pos.offset = next;
                if at_end {
                    // Done with it: continue with the next newer file from its start.
                    let newer = if n == 1 {
                        path.to_path_buf()
                    } else {
                        rotated_path(path, n - 1)
                    };
                    *pos = Position {
                        offset: 0,
                        ino: ino_of(&newer),
                        after: None,
                    };
                }
                return Ok(out);
            }
            None => {
                out.lost = true;
                let oldest = (1..=keep)
                    .rev()
                    .map(|n| rotated_path(path, n))
                    .find(|p| p.exists());
                let start = oldest.unwrap_or_else(|| path.to_path_buf());
                *pos = Position {
                    offset: 0,
                    ino: ino_of(&start),
                    after: None,
                };
                return Ok(out);
            }
        }
    }
    let (lines, next, _) = read_from(path, pos.offset, max_bytes)?;
    out.lines = lines;
    pos.offset = next;
    Ok(out)
}

/// Complete lines from `offset`, stopping after about `max_bytes`; also whether it reached the
/// end of the file.
fn read_from(path: &Path, offset: u64, max_bytes: u64) -> io::Result<(Vec<LogLine>, u64, bool)> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut lines = Vec::new();
    let mut pos = offset;
    let mut buf = Vec::new();
    while pos - offset < max_bytes {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break; // a partial line is read again next time, once complete
        }
        pos += n as u64;
        lines.push(parse_line(&buf[..n - 1]));
    }
    Ok((lines, pos, pos >= len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_stops_at_its_budget_or_when_cancelled() -> io::Result<()> {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("svc.log");
        let mut w = LogWriter::open(&path, 1 << 30, 1)?;
        for i in 0..10_000 {
            w.write_line(
                "2026-01-01T00:00:00.000000Z",
                Stream::Stdout.tag(),
                format!("line {i}").as_bytes(),
            )?;
        }
        w.flush()?;
        let cancelled = Arc::new(AtomicBool::new(false));
        let re = regex::Regex::new("no such line").map_err(io::Error::other)?;
        let query = |cpu| LogQuery {
            grep: Some(re.clone()),
            budget: Some(Budget {
                cpu,
                cancelled: Arc::clone(&cancelled),
            }),
            ..Default::default()
        };
        let free = query(std::time::Duration::from_secs(3600));
        assert!(read_lines(&path, 1, &free)?.0.is_empty(), "read to the end");
        let none = query(std::time::Duration::ZERO);
        let err = read_lines(&path, 1, &none)
            .err()
            .ok_or(io::Error::other("no stop"))?;
        assert!(err.to_string().contains("narrow it"), "{err}");
        cancelled.store(true, Ordering::Relaxed);
        let err = read_lines(&path, 1, &free)
            .err()
            .ok_or(io::Error::other("no stop"))?;
        assert!(err.to_string().contains("went away"), "{err}");
        Ok(())
    }

    #[test]
    fn rotation_keeps_every_line_whole_and_in_order() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("svc.log");
        let mut w = LogWriter::open(&path, 4096, 100)?;
        for i in 0..2000 {
            w.write_line(
                &timestamp(),
                Stream::Stdout.tag(),
                format!("line {i:05} {}", "x".repeat(i % 50)).as_bytes(),
            )?;
        }
        w.flush()?;
        assert!(rotated_path(&path, 3).exists(), "it rotated several times");
        let (lines, end) = read_lines(&path, 100, &LogQuery::default())?;
        assert_eq!(end.offset, fs::metadata(&path)?.len());
        assert_eq!(lines.len(), 2000);
        for (i, l) in lines.iter().enumerate() {
            assert!(
                l.text.starts_with(&format!("line {i:05} ")),
                "line {i} is {:?}",
                l.text
            );
        }
        Ok(())
    }

    #[test]
    fn tail_grep_and_since_select_lines() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("svc.log");
        let mut w = LogWriter::open(&path, 1 << 20, 2)?;
        w.write_line(
            "2026-01-01T00:00:00.000000Z",
            Stream::Stdout.tag(),
            b"old hello",
        )?;
        w.write_line(
            "2026-01-02T00:00:00.000000Z",
            Stream::Stderr.tag(),
            b"new error \xff bytes",
        )?;
        w.write_line(
            "2026-01-03T00:00:00.000000Z",
            Stream::Stdout.tag(),
            b"new hello",
        )?;
        w.flush()?;
        let q = LogQuery {
            tail: Some(0),
            ..Default::default()
        };
        let (none, end) = read_lines(&path, 2, &q)?;
        assert!(none.is_empty());
        assert_eq!(end.offset, fs::metadata(&path)?.len());
        let q = LogQuery {
            tail: Some(1),
            ..Default::default()
        };
        assert_eq!(
            read_lines(&path, 2, &q)?
                .0
                .iter()
                .map(|l| l.text.as_str())
                .collect::<Vec<_>>(),
            ["new hello"]
        );
        let q = LogQuery {
            grep: Some(regex::Regex::new("hello").map_err(io::Error::other)?),
            ..Default::default()
        };
        assert_eq!(read_lines(&path, 2, &q)?.0.len(), 2);
        let q = LogQuery {
            since: Some("2026-01-02".into()),
            ..Default::default()
        };
        let got = read_lines(&path, 2, &q)?.0;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].stream, Stream::Stderr);
        assert_eq!(
            got[0].text, "new error \u{fffd} bytes",
            "invalid UTF-8 is kept, shown replaced"
        );
        Ok(())
    }

    /// Reads everything a follower can get now.
    fn drain(path: &Path, keep: u32, pos: &mut Position) -> io::Result<(Vec<String>, bool)> {
        let mut all = Vec::new();
        let mut lost = false;
        for _ in 0..1000 {
            let got = read_new_lines(path, keep, pos, 100)?;
            lost |= got.lost;
            if got.lines.is_empty() && !got.lost {
                let again = read_new_lines(path, keep, pos, 100)?;
                if again.lines.is_empty() && !again.lost {
                    break;
                }
                all.extend(again.lines.into_iter().map(|l| l.text));
                continue;
            }
            all.extend(got.lines.into_iter().map(|l| l.text));
        }
        Ok((all, lost))
    }

    #[test]
    fn a_slow_follower_loses_nothing_across_several_rotations() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("svc.log");
        let mut w = LogWriter::open(&path, 200, 10)?;
        w.write_line("t", Stream::Stdout.tag(), b"first")?;
        w.flush()?;
        let mut pos = Position::default();
        let (got, _) = drain(&path, 10, &mut pos)?;
        assert_eq!(got, ["first"]);
        for i in 0..20 {
            w.write_line(
                "t",
                Stream::Stdout.tag(),
                format!("more {i:02} {}", "y".repeat(40)).as_bytes(),
            )?;
        }
        w.flush()?;
        assert!(
            rotated_path(&path, 3).exists(),
            "several rotations happened meanwhile"
        );
        let (got, lost) = drain(&path, 10, &mut pos)?;
        assert!(!lost);
        let want: Vec<String> = (0..20)
            .map(|i| format!("more {i:02} {}", "y".repeat(40)))
            .collect();
        assert_eq!(got, want);
        Ok(())
    }

    #[test]
    fn a_follower_left_behind_by_rotation_is_told() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("svc.log");
        let mut w = LogWriter::open(&path, 100, 1)?;
        w.write_line("t", Stream::Stdout.tag(), b"first")?;
        w.flush()?;
        let mut pos = Position::default();
        drain(&path, 1, &mut pos)?;
        for i in 0..10 {
            w.write_line(
                "t",
                Stream::Stdout.tag(),
                format!("line {i} {}", "z".repeat(40)).as_bytes(),
            )?;
        }
        w.flush()?;
        let (got, lost) = drain(&path, 1, &mut pos)?;
        assert!(lost, "its file was rotated away");
        assert!(
            got.last().is_some_and(|l| l.starts_with("line 9")),
            "it continues with what exists: {got:?}"
        );
        Ok(())
    }

    #[test]
    fn a_follower_of_a_log_not_yet_written_sees_lines_from_before_its_first_look() -> io::Result<()>
    {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("svc.log");
        // Following starts before the service has written anything.
        let (_, mut pos) = read_lines(
            &path,
            5,
            &LogQuery {
                tail: Some(0),
                ..Default::default()
            },
        )?;
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut w = LogWriter::open(&path, 300, 5)?;
        for i in 0..12 {
            w.write_line(
                "t",
                Stream::Stdout.tag(),
                format!("early {i:02} {}", "q".repeat(40)).as_bytes(),
            )?;
        }
        w.flush()?;
        assert!(
            rotated_path(&path, 1).exists(),
            "it rotated before the follower looked"
        );
        let (got, lost) = drain(&path, 5, &mut pos)?;
        assert!(!lost);
        assert_eq!(got.len(), 12, "{got:?}");
        assert!(got[0].starts_with("early 00"));
        Ok(())
    }
}
