//! Putting a database back.
//!
//! The services that use the database are stopped by the caller first. Then: a safety copy of
//! the current database is made with SQLite's backup API (so committed data still in its `-wal`
//! file is included), the backup is extracted and checked beside the database, the old `-wal` and
//! `-shm` files are removed (they belong to the old database and would corrupt the new one), and
//! the checked copy is renamed over the database. If the caller's health check then fails, it
//! puts the safety copy back the same way.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Artifact, BackupError, BackupMethod, backup_database, extract, integrity_check};

fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Makes a safety copy of `db` (if it exists) into `safety`: with the backup API, so what is
/// still in its `-wal` is included. A database too damaged for that — the very case a restore is
/// for — is copied raw instead, with its `-wal`, `-shm` and `-journal`, so nothing is lost.
pub fn safety_copy(db: &Path, safety: &Path) -> Result<Option<PathBuf>, BackupError> {
    if !db.exists() {
        return Ok(None);
    }
    if let Some(dir) = safety.parent() {
        homeport_fs::create_private_dir(dir).map_err(BackupError::io(dir))?;
    }
    let online =
        backup_database(db, safety, BackupMethod::BackupApi).and_then(|()| integrity_check(safety));
    if online.is_err() {
        let _ = fs::remove_file(safety);
        private_copy(db, safety)?;
        for s in ["-wal", "-shm", "-journal"] {
            let side = sidecar(db, s);
            if side.exists() {
                private_copy(&side, &sidecar(safety, s))?;
            }
        }
    }
    Ok(Some(safety.to_path_buf()))
}

/// Copies `from` to a new private file `to` (`fs::copy` would give it `from`'s mode).
fn private_copy(from: &Path, to: &Path) -> Result<(), BackupError> {
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

/// Checks an artifact and extracts it to a plain SQLite file at `dest`; refuses a corrupted one.
pub fn extract_checked(set_dir: &Path, a: &Artifact, dest: &Path) -> Result<(), BackupError> {
    let path = set_dir.join(&a.file);
    crate::check_sha256(&path, &a.sha256)?;
    extract(&path, a.compressed, dest)?;
    integrity_check(dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BackupPlan, take};
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
        let safety =
            safety_copy(&db, &dir.path().join("safety/app.db"))?.ok_or("no safety copy")?;
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
        replace_database(&safety, &db)?;
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
        let rel = data.strip_prefix("/")?.display().to_string();
        assert!(
            names.contains(&(format!("{rel}/sub/a.txt"), 0o640)),
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
        let safety =
            safety_copy(&db, &dir.path().join("safety/app.db"))?.ok_or("no safety copy")?;
        assert_eq!(
            fs::read(&safety)?,
            b"this used to be a database",
            "kept byte for byte"
        );
        Ok(())
    }
}
