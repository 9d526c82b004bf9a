//! Online copies of live SQLite databases.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::BackupError;

/// How to copy a live database. Both read one consistent snapshot; in WAL mode neither blocks
/// the service's writers (docs/benchmarks.md measures both under load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupMethod {
    /// SQLite's online backup API, all pages in one step: one read transaction, so it always
    /// completes, even under constant writes. The default.
    BackupApi,
    /// `VACUUM INTO`: also one read transaction; writes a compacted copy.
    VacuumInto,
}

/// How long a database may stay locked (e.g. `locking_mode = EXCLUSIVE`) before the backup gives up.
const LOCK_PATIENCE: Duration = Duration::from_secs(10);

/// Whether `path` starts with SQLite's file header.
pub fn is_sqlite(path: &Path) -> Result<bool, BackupError> {
    let mut f = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BackupError::Missing(path.to_path_buf()),
        _ => BackupError::Io(path.to_path_buf(), e),
    })?;
    let mut head = [0u8; 16];
    let n = f.read(&mut head).map_err(BackupError::io(path))?;
    Ok(n == 16 && &head == b"SQLite format 3\0")
}

/// Copies the live database `src` to `dest` (a new file), consistently. A database locked by
/// another connection is retried for up to 10 s, then reported.
pub fn backup_database(src: &Path, dest: &Path, method: BackupMethod) -> Result<(), BackupError> {
    backup_database_within(src, dest, method, LOCK_PATIENCE)
}

/// [`backup_database`] with a chosen patience for a locked database.
pub fn backup_database_within(
    src: &Path,
    dest: &Path,
    method: BackupMethod,
    patience: Duration,
) -> Result<(), BackupError> {
    if !is_sqlite(src)? {
        return Err(BackupError::NotSqlite(src.to_path_buf()));
    }
    let sql = |e| BackupError::Sqlite(src.to_path_buf(), e);
    // No-create: a backup never makes the database it copies. (Not read-only: a reader of a WAL
    // database must be able to use its shared-memory file; nothing is written to the database.)
    let from = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    from.busy_timeout(Duration::from_millis(200)).map_err(sql)?;
    let started = Instant::now();
    loop {
        let attempt = match method {
            BackupMethod::BackupApi => backup_api(&from, dest),
            BackupMethod::VacuumInto => vacuum_into(&from, dest),
        };
        match attempt {
            Ok(()) => return Ok(()),
            Err(Attempt::Busy) if started.elapsed() < patience => {
                let _ = std::fs::remove_file(dest);
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(Attempt::Busy) => {
                let _ = std::fs::remove_file(dest);
                return Err(BackupError::Locked {
                    path: src.to_path_buf(),
                    waited: started.elapsed(),
                });
            }
            Err(Attempt::Failed(e)) => {
                let _ = std::fs::remove_file(dest);
                return Err(BackupError::Sqlite(src.to_path_buf(), e));
            }
            Err(Attempt::WriteFailed(e)) => {
                let _ = std::fs::remove_file(dest);
                return Err(BackupError::Write(dest.to_path_buf(), e.to_string()));
            }
        }
    }
}

enum Attempt {
    Busy,
    Failed(rusqlite::Error),
    /// Writing the copy failed (a full disk, a file-size limit).
    WriteFailed(rusqlite::Error),
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn classify(e: rusqlite::Error) -> Attempt {
    // The source is only read; I/O failures and a full disk are the copy's.
    let io = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::SystemIoFailure | rusqlite::ErrorCode::DiskFull)
    );
    if is_busy(&e) {
        Attempt::Busy
    } else if io {
        Attempt::WriteFailed(e)
    } else {
        Attempt::Failed(e)
    }
}

fn backup_api(from: &Connection, dest: &Path) -> Result<(), Attempt> {
    let mut to = Connection::open(dest).map_err(Attempt::Failed)?;
    {
        let backup = Backup::new(from, &mut to).map_err(classify)?;
        match backup.step(-1).map_err(classify)? {
            StepResult::Done => {}
            StepResult::Busy | StepResult::Locked => return Err(Attempt::Busy),
            // step(-1) copies every page; More cannot happen, but is not success either.
            _ => return Err(Attempt::Busy),
        }
    }
    self_contained(&to)
}

/// The copy inherits the source's WAL mode; a backup must be one file, with no `-wal`/`-shm`.
fn self_contained(conn: &Connection) -> Result<(), Attempt> {
    conn.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))
        .map_err(classify)
}

fn vacuum_into(from: &Connection, dest: &Path) -> Result<(), Attempt> {
    let dest_str = dest
        .to_str()
        .ok_or_else(|| Attempt::Failed(rusqlite::Error::InvalidPath(dest.to_path_buf())))?;
    from.execute("VACUUM INTO ?1", [dest_str])
        .map(drop)
        .map_err(classify)?;
    let copy = Connection::open(dest).map_err(Attempt::Failed)?;
    self_contained(&copy)
}

/// Whether a database file is in WAL mode (its header's read/write versions are 2).
pub fn is_wal(path: &Path) -> bool {
    let mut head = [0u8; 20];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head[18] == 2
        && head[19] == 2
}

/// `PRAGMA integrity_check` on a copy.
pub fn integrity_check(path: &Path) -> Result<(), BackupError> {
    if !is_sqlite(path)? {
        return Err(BackupError::Corrupt(
            path.to_path_buf(),
            "not a SQLite file".into(),
        ));
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| BackupError::Sqlite(path.to_path_buf(), e))?;
    let result: Result<Vec<String>, _> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
    match result {
        Ok(rows) if rows == ["ok"] => Ok(()),
        Ok(rows) => Err(BackupError::Corrupt(path.to_path_buf(), rows.join("; "))),
        Err(e) => Err(BackupError::Corrupt(path.to_path_buf(), e.to_string())),
    }
}
