//! Putting a database or files back.
//!
//! Two ways:
//! - **Swapped in**, with the services that use it stopped by the caller: the backup is
//!   extracted and checked beside what it replaces ([`extract_checked`], [`stage_files`]), a
//!   safety copy of the current state is taken (a backup set of its own), and the checked copy is
//!   renamed over the live one ([`replace_database`], [`swap_path`]): for a database, its old
//!   `-wal` and `-shm` files are removed first (they belong to the old database and would
//!   corrupt the new one). If the caller's health check then fails, it puts the safety copy back
//!   the same way.
//! - **Written in place** ([`restore_in_place`]), for a SQLite database whose users keep running:
//!   SQLite's backup API writes the backup's pages into the live database in one transaction,
//!   and the live database's current content is saved first, while that transaction already
//!   holds the write lock, so no commit can fall between the copy kept and the restore.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::{Artifact, ArtifactKind, BackupError, extract, integrity_check};

pub(crate) fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Copies `from` to a new private file `to` (`fs::copy` would give it `from`'s mode).
pub(crate) fn private_copy(from: &Path, to: &Path) -> Result<(), BackupError> {
    let mut input = fs::File::open(from).map_err(BackupError::io(from))?;
    let mut out = homeport_fs::create_new_private(to).map_err(BackupError::io(to))?;
    std::io::copy(&mut input, &mut out).map_err(BackupError::io(to))?;
    Ok(())
}

/// Replaces `db` with the plain SQLite file `source` (which is left in place). The database
/// keeps the mode it had: it is the app's file, not the agent's.
/// The source is used as it is: callers check it first (a staged backup) or want it back
/// exactly (a safety copy, which comes back with its own `-wal` if it has one).
pub fn replace_database(source: &Path, db: &Path) -> Result<(), BackupError> {
    let tmp = sidecar(db, ".restoring");
    let _ = fs::remove_file(&tmp);
    private_copy(source, &tmp)?;
    if let Ok(live) = fs::metadata(db) {
        fs::set_permissions(&tmp, live.permissions()).map_err(BackupError::io(&tmp))?;
    }
    // Backups are single files (rollback-journal mode); a database that ran in WAL mode gets it
    // back, so the service finds the database as it left it.
    if crate::sqlite::is_wal(db) {
        let conn =
            rusqlite::Connection::open(&tmp).map_err(|e| BackupError::Sqlite(tmp.clone(), e))?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(|e| BackupError::Sqlite(tmp.clone(), e))?;
    }
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(BackupError::io(&tmp))?;
    for s in ["-wal", "-shm", "-journal"] {
        let side = sidecar(db, s);
        match fs::remove_file(&side) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(BackupError::Io(side, e));
            }
            _ => {}
        }
    }
    fs::rename(&tmp, db).map_err(BackupError::io(db))?;
    for s in ["-wal", "-journal"] {
        let side = sidecar(source, s);
        if side.exists() {
            fs::copy(&side, sidecar(db, s)).map_err(BackupError::io(&side))?;
        }
    }
    if let Some(dir) = db.parent() {
        crate::sync_dir(dir)?;
    }
    Ok(())
}

/// Checks an artifact and extracts it to a plain file at `dest` (a SQLite database, a tar of
/// files, a server's dump or snapshot); refuses a corrupted one.
pub fn extract_checked(set_dir: &Path, a: &Artifact, dest: &Path) -> Result<(), BackupError> {
    let path = set_dir.join(&a.file);
    if !path.exists() {
        return Err(BackupError::Missing(path));
    }
    crate::check_sha256(&path, &a.sha256)?;
    extract(&path, a.compressed, dest)?;
    let checked = match a.kind {
        ArtifactKind::Sqlite => integrity_check(dest),
        ArtifactKind::Files => crate::read_index(dest).map(drop),
        // A server's dump or snapshot: its tools check it where it is loaded.
        _ => Ok(()),
    };
    if checked.is_err() {
        let _ = fs::remove_file(dest);
    }
    checked
}

/// A safety copy of a damaged database, stored as it was (see
/// [`crate::SetBuilder::add_database_as_is`]): put back byte for byte with its `-wal` and
/// `-journal`, unchecked. Anything else is extracted and checked.
pub fn put_back_database(set_dir: &Path, a: &Artifact, db: &Path) -> Result<(), BackupError> {
    let path = set_dir.join(&a.file);
    let tmp = sidecar(db, ".from-backup");
    let _ = fs::remove_file(&tmp);
    let result = if !a.compressed && integrity_check(&path).is_err() {
        crate::check_sha256(&path, &a.sha256).and_then(|()| replace_database(&path, db))
    } else {
        extract_checked(set_dir, a, &tmp).and_then(|()| replace_database(&tmp, db))
    };
    let _ = fs::remove_file(&tmp);
    result
}

/// Puts the checked copy `staged` (a file or folder beside `live`, on its file system) in place
/// of `live`: a file by one rename; a folder by moving the old one aside to `LIVE.replaced`,
/// renaming the new one in and removing the old. A crash between the two renames leaves
/// `LIVE.replaced` and no `LIVE`, which [`repair_swap`] undoes.
pub fn swap_path(staged: &Path, live: &Path) -> Result<(), BackupError> {
    let staged_dir = staged.symlink_metadata().is_ok_and(|m| m.is_dir());
    let live_meta = live.symlink_metadata().ok();
    let live_dir = live_meta.as_ref().is_some_and(fs::Metadata::is_dir);
    if staged_dir || live_dir {
        let aside = sidecar(live, ".replaced");
        if aside.symlink_metadata().is_ok() {
            remove_any(&aside)?;
        }
        if live_meta.is_some() {
            fs::rename(live, &aside).map_err(BackupError::io(live))?;
        }
        if let Err(e) = fs::rename(staged, live) {
            if live_meta.is_some() {
                let _ = fs::rename(&aside, live);
            }
            return Err(BackupError::Io(live.to_path_buf(), e));
        }
        if live_meta.is_some() {
            remove_any(&aside)?;
        }
    } else {
        fs::rename(staged, live).map_err(BackupError::io(live))?;
    }
    if let Some(dir) = live.parent() {
        crate::sync_dir(dir)?;
    }
    Ok(())
}

/// Finishes or undoes a [`swap_path`] a crash interrupted, and removes a staged copy left
/// beside `live`.
pub fn repair_swap(live: &Path) {
    let aside = sidecar(live, ".replaced");
    if aside.symlink_metadata().is_ok() {
        if live.symlink_metadata().is_ok() {
            let _ = remove_any(&aside);
        } else {
            let _ = fs::rename(&aside, live);
        }
    }
    let staged = sidecar(live, ".from-backup");
    if staged.symlink_metadata().is_ok() {
        let _ = remove_any(&staged);
    }
}

fn remove_any(p: &Path) -> Result<(), BackupError> {
    let is_dir = p.symlink_metadata().is_ok_and(|m| m.is_dir());
    if is_dir {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    }
    .map_err(BackupError::io(p))
}

/// Checks a files artifact and writes its entry `label` beside `live` (as `LIVE.from-backup`),
/// ready for [`swap_path`]; `tar` is where the plain archive is extracted to first.
pub fn stage_files(
    set_dir: &Path,
    a: &Artifact,
    tar: &Path,
    label: &str,
    live: &Path,
) -> Result<PathBuf, BackupError> {
    let staged = sidecar(live, ".from-backup");
    if staged.symlink_metadata().is_ok() {
        remove_any(&staged)?;
    }
    if !tar.exists() {
        extract_checked(set_dir, a, tar)?;
    }
    if let Some(parent) = live.parent() {
        fs::create_dir_all(parent).map_err(BackupError::io(parent))?;
    }
    crate::archive::unpack_entry(tar, label, &staged)?;
    Ok(staged)
}

/// Writes the checked plain SQLite file `source` into the live database `db` through SQLite's
/// backup API, while other connections keep it open: they wait (their busy timeout) for the one
/// write transaction and then see the restored database; a WAL database stays in WAL mode.
/// `keep` runs once that transaction holds the write lock and before it commits: it saves
/// what the database holds now, knowing no writer can commit in between. If `keep` fails,
/// nothing is written. Gives up after `patience` if the write lock cannot be had.
///
/// Fails with [`BackupError::Sqlite`] when SQLite cannot write in place (a WAL database whose
/// page size the backup does not share); the caller then swaps with the services stopped.
pub fn restore_in_place<T>(
    source: &Path,
    db: &Path,
    patience: Duration,
    keep: impl FnOnce() -> Result<T, BackupError>,
) -> Result<T, BackupError> {
    let sql = |p: &Path| {
        let p = p.to_path_buf();
        move |e| BackupError::Sqlite(p, e)
    };
    let from = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sql(source))?;
    let mut to =
        Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(sql(db))?;
    to.busy_timeout(Duration::from_millis(100))
        .map_err(sql(db))?;
    let started = Instant::now();
    let backup = Backup::new(&from, &mut to).map_err(sql(db))?;
    // Zero pages: takes the write transaction on `db` and copies nothing yet.
    loop {
        match backup.step(0).map_err(sql(db))? {
            StepResult::Busy | StepResult::Locked if started.elapsed() < patience => {
                std::thread::sleep(Duration::from_millis(20));
            }
            StepResult::Busy | StepResult::Locked => {
                return Err(BackupError::Locked {
                    path: db.to_path_buf(),
                    waited: started.elapsed(),
                });
            }
            _ => break,
        }
    }
    let kept = keep()?;
    loop {
        match backup.step(-1).map_err(sql(db))? {
            StepResult::Done => break,
            // Committing waits for readers of a rollback-journal database to finish.
            _ if started.elapsed() < patience + Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                return Err(BackupError::Locked {
                    path: db.to_path_buf(),
                    waited: started.elapsed(),
                });
            }
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BackupMethod, BackupPlan, take};
    use rusqlite::Connection;

    fn rows(db: &Path) -> i64 {
        Connection::open(db)
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)))
            .unwrap_or(-1)
    }

    #[test]
    fn a_backup_of_a_wal_database_restores_with_its_committed_rows()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("app.db");
        let live = Connection::open(&db)?;
        live.pragma_update(None, "journal_mode", "WAL")?;
        live.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);")?;
        // The rows are still in the WAL: a plain `cp` of app.db would miss them.
        let plan = BackupPlan {
            databases: vec![("app".into(), db.clone())],
            servers: vec![],
            files: vec![],
            compress: true,
        };
        let set = take(&plan, &dir.path().join("backups"), BackupMethod::BackupApi)?;
        live.execute("INSERT INTO t VALUES (4)", [])?;
        drop(live);
        assert_eq!(rows(&db), 4);

        let art = &set.artifacts[0];
        crate::verify(&set.dir, art)?;
        let plain = dir.path().join("restore.db");
        extract_checked(&set.dir, art, &plain)?;
        let mut safety = crate::SetBuilder::new(&dir.path().join("safety"), true)?;
        safety.add_database_as_is("app", &db)?;
        let safety = safety.commit()?;
        replace_database(&plain, &db)?;
        assert_eq!(rows(&db), 3, "the backup's rows");
        assert!(!sidecar(&db, "-wal").exists());
        assert!(
            crate::sqlite::is_wal(&db),
            "the restored database is in WAL mode again"
        );
        let leftovers: Vec<_> = fs::read_dir(&set.dir)?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "a backup is one file: {leftovers:?}");
        put_back_database(&safety.dir, &safety.artifacts[0], &db)?;
        assert_eq!(rows(&db), 4, "the safety copy has the newest row");
        Ok(())
    }

    #[test]
    fn a_corrupted_backup_is_flagged_and_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("app.db");
        Connection::open(&db)?.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")?;
        let plan = BackupPlan {
            databases: vec![("app".into(), db.clone())],
            servers: vec![],
            files: vec![],
            compress: false,
        };
        let set = take(&plan, &dir.path().join("b"), BackupMethod::BackupApi)?;
        let art = &set.artifacts[0];
        let path = set.dir.join(&art.file);
        let mut bytes = fs::read(&path)?;
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&path, bytes)?;
        assert!(matches!(
            crate::verify(&set.dir, art),
            Err(BackupError::Checksum { .. })
        ));
        assert!(matches!(
            extract_checked(&set.dir, art, &dir.path().join("x.db")),
            Err(BackupError::Checksum { .. })
        ));
        Ok(())
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_named() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let not = dir.path().join("notes.txt");
        fs::write(&not, "hello, this is not a database")?;
        let plan = BackupPlan {
            databases: vec![("notes".into(), not.clone())],
            servers: vec![],
            files: vec![],
            compress: false,
        };
        let err = take(&plan, &dir.path().join("b"), BackupMethod::BackupApi)
            .err()
            .ok_or("no error")?;
        assert_eq!(
            err.to_string(),
            format!("{} is not a SQLite database", not.display())
        );
        assert_eq!(
            fs::read_dir(dir.path().join("b"))?.count(),
            0,
            "nothing left behind"
        );
        Ok(())
    }

    #[test]
    fn a_database_held_exclusively_fails_after_bounded_retries()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("app.db");
        let holder = Connection::open(&db)?;
        holder.execute_batch("CREATE TABLE t(x); PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);")?;
        let started = std::time::Instant::now();
        let patience = std::time::Duration::from_secs(1);
        let err = crate::backup_database_within(
            &db,
            &dir.path().join("copy.db"),
            BackupMethod::BackupApi,
            patience,
        )
        .err()
        .ok_or("no error")?;
        assert!(matches!(err, BackupError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("stayed locked"), "{err}");
        assert!(
            started.elapsed() >= patience,
            "it retried for its whole patience"
        );
        assert!(!dir.path().join("copy.db").exists());
        Ok(())
    }

    #[test]
    fn files_are_archived_with_modes_and_without_sockets() -> Result<(), Box<dyn std::error::Error>>
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        fs::create_dir_all(data.join("sub"))?;
        fs::write(data.join("sub/a.txt"), "a")?;
        fs::set_permissions(data.join("sub/a.txt"), fs::Permissions::from_mode(0o640))?;
        let _sock = std::os::unix::net::UnixListener::bind(data.join("app.sock"))?;
        let plan = BackupPlan {
            databases: vec![],
            servers: vec![],
            files: vec![data.clone()],
            compress: true,
        };
        let set = take(&plan, &dir.path().join("b"), BackupMethod::BackupApi)?;
        let art = &set.artifacts[0];
        crate::verify(&set.dir, art)?;
        let tar_path = dir.path().join("files.tar");
        extract(&set.dir.join(&art.file), true, &tar_path)?;
        let mut archive = tar::Archive::new(fs::File::open(&tar_path)?);
        let mut names = Vec::new();
        for e in archive.entries()? {
            let e = e?;
            names.push((e.path()?.display().to_string(), e.header().mode()? & 0o777));
        }
        assert!(
            names.contains(&("data/sub/a.txt".to_owned(), 0o640)),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|(n, _)| n.ends_with("app.sock")),
            "{names:?}"
        );
        Ok(())
    }
}

#[cfg(test)]
mod damaged {
    use super::*;

    #[test]
    fn a_damaged_live_database_still_gets_a_safety_copy() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let db = dir.path().join("app.db");
        fs::write(&db, b"this used to be a database")?;
        fs::write(sidecar(&db, "-wal"), b"and its wal")?;
        let mut safety = crate::SetBuilder::new(&dir.path().join("safety"), true)?;
        safety.add_database_as_is("app", &db)?;
        let safety = safety.commit()?;
        let a = &safety.artifacts[0];
        assert_eq!(
            fs::read(safety.dir.join(&a.file))?,
            b"this used to be a database",
            "kept byte for byte"
        );
        fs::write(&db, b"something else")?;
        fs::remove_file(sidecar(&db, "-wal"))?;
        put_back_database(&safety.dir, a, &db)?;
        assert_eq!(fs::read(&db)?, b"this used to be a database");
        assert_eq!(fs::read(sidecar(&db, "-wal"))?, b"and its wal");
        Ok(())
    }
}

#[cfg(test)]
mod in_place {
    use super::*;
    use rusqlite::Connection;

    fn count(c: &Connection) -> i64 {
        c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap_or(-1)
    }

    #[test]
    fn a_live_wal_database_is_restored_under_its_open_connections()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let backup = dir.path().join("backup.db");
        Connection::open(&backup)?.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")?;
        let db = dir.path().join("live.db");
        let app = Connection::open(&db)?;
        app.pragma_update(None, "journal_mode", "WAL")?;
        app.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);")?;
        let writer = Connection::open(&db)?;
        writer.busy_timeout(Duration::ZERO)?;
        let kept = restore_in_place(&backup, &db, Duration::from_secs(5), || {
            // The write lock is taken and nothing is written yet: a reader sees the old rows,
            // a writer cannot commit.
            let reader = Connection::open(&db).map_err(|e| BackupError::Sqlite(db.clone(), e))?;
            let before = count(&reader);
            let blocked = writer.execute("INSERT INTO t VALUES (99)", []).is_err();
            Ok((before, blocked))
        })?;
        assert_eq!(kept, (3, true));
        assert_eq!(
            count(&app),
            1,
            "the open connection sees the restored database"
        );
        let mode: String = app.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        assert_eq!(mode, "wal");
        app.execute("INSERT INTO t VALUES (4)", [])?;
        assert_eq!(count(&writer), 2, "and it writes on");
        Ok(())
    }

    #[test]
    fn nothing_is_written_when_keeping_the_old_content_fails()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let backup = dir.path().join("backup.db");
        Connection::open(&backup)?.execute_batch("CREATE TABLE t(x);")?;
        let db = dir.path().join("live.db");
        let app = Connection::open(&db)?;
        app.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);")?;
        let r: Result<(), _> = restore_in_place(&backup, &db, Duration::from_secs(5), || {
            Err(BackupError::Write(db.clone(), "no room".into()))
        });
        assert!(r.is_err());
        assert_eq!(count(&app), 2);
        Ok(())
    }
}
