//! Backups of database servers, through each server's own consistent dump tool:
//! PostgreSQL `pg_dump -Fc` per database plus `pg_dumpall --globals-only`, checked with
//! `pg_restore --list`; MariaDB `mariadb-dump --single-transaction --routines --events
//! --triggers`, checked for its completion line; Redis `BGSAVE` then a copy of the snapshot,
//! checked with `redis-check-rdb`.
//!
//! A dump is streamed from the tool through zstd into a `.partial` file while its SHA-256 is
//! computed, fsynced, checked, and only then renamed — the same promise as SQLite copies: a
//! failure (a full disk, a dead server, a killed agent) leaves nothing catalogued.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use homeport_db::{Conn, Engine, client};
use sha2::{Digest, Sha256};

use crate::{Artifact, ArtifactKind, BackupError};

/// A server to back up.
#[derive(Debug, Clone)]
pub struct ServerSource {
    pub conn: Conn,
    /// Every database on the server (one Homeport runs), or only the URL's (an external one).
    pub all_databases: bool,
    /// Redis: the snapshot file the server writes, when Homeport can read it.
    pub rdb_file: Option<PathBuf>,
}

impl From<homeport_db::DbError> for BackupError {
    fn from(e: homeport_db::DbError) -> Self {
        BackupError::Server(e.to_string())
    }
}

/// How long a Redis snapshot may take.
const BGSAVE_PATIENCE: Duration = Duration::from_secs(30 * 60);

/// Dumps every database of the server `name` into `dir`; one artifact per file.
pub fn dump_server(
    name: &str,
    src: &ServerSource,
    dir: &Path,
    compress: bool,
) -> Result<Vec<Artifact>, BackupError> {
    let conn = &src.conn;
    let mut out = Vec::new();
    match conn.engine {
        Engine::Postgres => {
            let dbs = if src.all_databases {
                client::pg_databases(conn)?
            } else {
                vec![conn.database.clone()]
            };
            for db in dbs {
                let c = conn.with_database(&db);
                let file = format!("{name}.{db}.pgdump");
                let mut a = stream_artifact(
                    name,
                    ArtifactKind::PostgresDump,
                    client::pg_dump(&c, compress)?,
                    conn,
                    dir,
                    &file,
                    compress,
                    |path, _| check_pg_dump(&conn.bins, path, compress),
                )?;
                a.database = Some(db);
                out.push(a);
            }
            let mut globals = client::pg_dumpall_globals(conn)?;
            if !src.all_databases {
                // Role passwords need a superuser, which an app's account on an external server
                // seldom is.
                globals.arg("--no-role-passwords");
            }
            out.push(stream_artifact(
                name,
                ArtifactKind::PostgresGlobals,
                globals,
                conn,
                dir,
                &format!("{name}.globals.sql"),
                compress,
                |_, _| Ok(()),
            )?);
        }
        Engine::Mariadb => {
            let dbs = if src.all_databases {
                mariadb_databases(conn)?
            } else {
                vec![conn.database.clone()]
            };
            for db in dbs {
                let c = conn.with_database(&db);
                let risky = client::mariadb_nontransactional(&c)?;
                let mut a = stream_artifact(
                    name,
                    ArtifactKind::MariadbDump,
                    client::mariadb_dump(&c)?,
                    conn,
                    dir,
                    &format!("{name}.{db}.sql"),
                    compress,
                    mariadb_dump_complete,
                )?;
                a.database = Some(db.clone());
                if !risky.is_empty() {
                    a.warning = Some(format!(
                        "{db}: {} not transactional, so their copy may not match the moment of \
                         the rest of the dump; convert them to InnoDB (ALTER TABLE … ENGINE=InnoDB)",
                        risky.join(", ")
                    ));
                }
                out.push(a);
            }
        }
        Engine::Redis => {
            let partial = dir.join(format!("{name}.rdb.partial"));
            let _ = fs::remove_file(&partial);
            match &src.rdb_file {
                Some(rdb) => {
                    client::redis_bgsave(conn, BGSAVE_PATIENCE)?;
                    copy_private(rdb, &partial)?;
                }
                None => client::redis_rdb_over_network(conn, &partial)?,
            }
            client::redis_check_rdb(&conn.bins, &partial)?;
            out.push(crate::finish(
                name,
                ArtifactKind::RedisRdb,
                &partial,
                &format!("{name}.rdb"),
                compress,
            )?);
        }
    }
    Ok(out)
}

fn mariadb_databases(conn: &Conn) -> Result<Vec<String>, BackupError> {
    let rows = client::query(
        &conn.with_database(""),
        "SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN \
         ('information_schema', 'performance_schema', 'mysql', 'sys') ORDER BY schema_name",
    )?;
    Ok(rows.lines().map(str::to_owned).collect())
}

fn copy_private(from: &Path, to: &Path) -> Result<(), BackupError> {
    let mut input = File::open(from).map_err(BackupError::io(from))?;
    let mut out = homeport_fs::create_new_private(to).map_err(BackupError::io(to))?;
    io::copy(&mut input, &mut out)
        .map_err(|e| BackupError::Write(to.to_path_buf(), e.to_string()))?;
    out.sync_all().map_err(BackupError::io(to))
}

/// Counts and hashes what is written through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// How much of a dump's plain end [`stream_artifact`] keeps for its check.
const TAIL: usize = 4096;

/// Runs a dump tool and streams its output into `dir/file[.zst]`, as `.partial` until it is
/// complete, synced and `check`ed (given the file and the last [`TAIL`] bytes of the plain
/// dump). The dump is read in a thread of its own, a few MiB ahead, so the tool never waits
/// while a chunk is compressed.
#[allow(clippy::too_many_arguments)]
fn stream_artifact(
    name: &str,
    kind: ArtifactKind,
    mut cmd: Command,
    conn: &Conn,
    dir: &Path,
    file: &str,
    compress: bool,
    check: impl FnOnce(&Path, &[u8]) -> Result<(), BackupError>,
) -> Result<Artifact, BackupError> {
    let file = if compress {
        format!("{file}.zst")
    } else {
        file.to_owned()
    };
    let partial = dir.join(format!("{file}.partial"));
    let _ = fs::remove_file(&partial);
    let out = homeport_fs::create_new_private(&partial).map_err(BackupError::io(&partial))?;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            BackupError::Server(format!("cannot run the dump of {}: {e}", conn.describe()))
        })?;
    let mut stderr = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let mut hashing = Hashing {
        inner: out,
        hash: Sha256::new(),
        size: 0,
    };
    let mut tail: Vec<u8> = Vec::with_capacity(2 * TAIL);
    let written: io::Result<()> = (|| {
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no output"))?;
        let chunks = read_ahead(stdout);
        if compress {
            let mut enc = zstd::Encoder::new(&mut hashing, 3)?;
            copy_chunks(chunks, &mut enc, &mut tail)?;
            enc.finish()?;
        } else {
            copy_chunks(chunks, &mut hashing, &mut tail)?;
        }
        hashing.flush()?;
        hashing.inner.sync_all()
    })();
    if let Err(e) = written {
        let _ = child.kill();
        let _ = child.wait();
        let _ = fs::remove_file(&partial);
        return Err(BackupError::Write(partial, e.to_string()));
    }
    let status = child.wait().map_err(BackupError::io(&partial))?;
    let stderr = errors.join().unwrap_or_default();
    if !status.success() {
        let _ = fs::remove_file(&partial);
        return Err(BackupError::Server(client::explain(conn, &stderr)));
    }
    if let Err(e) = check(&partial, &tail) {
        let _ = fs::remove_file(&partial);
        return Err(e);
    }
    let dest = dir.join(&file);
    fs::rename(&partial, &dest).map_err(BackupError::io(&dest))?;
    Ok(Artifact {
        name: name.to_owned(),
        kind,
        file,
        size: hashing.size,
        sha256: homeport_fs::hex(&hashing.hash.finalize()),
        compressed: compress,
        database: None,
        warning: None,
    })
}

/// Reads `from` in a thread of its own into chunks of 1 MiB (the last one shorter), at most 8
/// waiting.
fn read_ahead(
    mut from: impl Read + Send + 'static,
) -> std::sync::mpsc::IntoIter<io::Result<Vec<u8>>> {
    const CHUNK: usize = 1 << 20;
    let (tx, rx) = std::sync::mpsc::sync_channel(8);
    std::thread::spawn(move || {
        loop {
            let mut buf = Vec::with_capacity(CHUNK);
            let read = (&mut from).take(CHUNK as u64).read_to_end(&mut buf);
            let done = match read {
                Ok(_) => buf.len() < CHUNK,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            // The receiver gone (a failed write) ends the reading; the tool then gets EPIPE.
            if !buf.is_empty() && tx.send(Ok(buf)).is_err() {
                return;
            }
            if done {
                return;
            }
        }
    });
    rx.into_iter()
}

/// Writes the chunks to `to`, keeping the last [`TAIL`] bytes in `tail`.
fn copy_chunks(
    chunks: impl Iterator<Item = io::Result<Vec<u8>>>,
    to: &mut impl Write,
    tail: &mut Vec<u8>,
) -> io::Result<()> {
    for chunk in chunks {
        let chunk = chunk?;
        to.write_all(&chunk)?;
        tail.extend_from_slice(&chunk[chunk.len().saturating_sub(TAIL)..]);
        if tail.len() > TAIL {
            tail.drain(..tail.len() - TAIL);
        }
    }
    Ok(())
}

/// The plain content of an artifact file, decompressed on the fly.
pub fn open_plain(path: &Path, compressed: bool) -> Result<Box<dyn Read + Send>, BackupError> {
    let f = File::open(path).map_err(BackupError::io(path))?;
    Ok(if compressed {
        Box::new(zstd::Decoder::new(f).map_err(BackupError::io(path))?)
    } else {
        Box::new(f)
    })
}

/// Feeds the plain content of `path` to `cmd`'s standard input; fails with its error in words.
pub fn feed(
    mut cmd: Command,
    path: &Path,
    compressed: bool,
    what: &str,
) -> Result<String, BackupError> {
    let mut input = open_plain(path, compressed)?;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BackupError::Server(format!("cannot run {what}: {e}")))?;
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let out_reader = read_all(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err_reader = read_all(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let fed = child
        .stdin
        .take()
        .map(|mut stdin| io::copy(&mut input, &mut stdin));
    let status = child.wait().map_err(BackupError::io(path))?;
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    // A reader that has seen enough (pg_restore --list) may close its input early.
    if let Some(Err(e)) = fed
        && e.kind() != io::ErrorKind::BrokenPipe
        && status.success()
    {
        return Err(BackupError::Io(path.to_path_buf(), e));
    }
    if status.success() {
        Ok(out)
    } else {
        Err(BackupError::Server(format!(
            "{what} failed: {}",
            err.trim().lines().last().unwrap_or("no message")
        )))
    }
}

fn check_pg_dump(
    bins: &homeport_db::Bins,
    path: &Path,
    compressed: bool,
) -> Result<(), BackupError> {
    let listed = feed(
        client::pg_restore_list(bins)?,
        path,
        compressed,
        "pg_restore --list",
    )
    .map_err(|e| BackupError::Corrupt(path.to_path_buf(), e.to_string()))?;
    if listed.contains("; Archive created at") {
        Ok(())
    } else {
        Err(BackupError::Corrupt(
            path.to_path_buf(),
            "pg_restore --list shows no archive header".into(),
        ))
    }
}

/// A complete mariadb-dump ends with `-- Dump completed on …`.
fn check_mariadb_dump(path: &Path, compressed: bool) -> Result<(), BackupError> {
    let mut input = open_plain(path, compressed)?;
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf).map_err(BackupError::io(path))?;
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > TAIL {
            tail.drain(..tail.len() - TAIL);
        }
    }
    mariadb_dump_complete(path, &tail)
}

/// Whether a MariaDB dump ending with `tail` is complete: mariadb-dump's last line says so.
fn mariadb_dump_complete(path: &Path, tail: &[u8]) -> Result<(), BackupError> {
    if String::from_utf8_lossy(tail).contains("-- Dump completed") {
        Ok(())
    } else {
        Err(BackupError::Corrupt(
            path.to_path_buf(),
            "the dump does not end with mariadb-dump's completion line (cut short?)".into(),
        ))
    }
}

/// Re-checks a server artifact's content (its checksum is checked by the caller).
pub(crate) fn verify_content(path: &Path, a: &Artifact, dir: &Path) -> Result<(), BackupError> {
    match a.kind {
        ArtifactKind::PostgresDump => {
            let bins = homeport_db::Bins::find(Engine::Postgres, None, None)?;
            check_pg_dump(&bins, path, a.compressed)
        }
        ArtifactKind::MariadbDump => check_mariadb_dump(path, a.compressed),
        ArtifactKind::RedisRdb => {
            let bins = homeport_db::Bins::find(Engine::Redis, None, None)?;
            let tmp = dir.join(format!(".verify-{}.rdb", a.name));
            let _ = fs::remove_file(&tmp);
            let checked = crate::extract(path, a.compressed, &tmp)
                .and_then(|()| client::redis_check_rdb(&bins, &tmp).map_err(Into::into));
            let _ = fs::remove_file(&tmp);
            checked
        }
        ArtifactKind::PostgresGlobals | ArtifactKind::Sqlite | ArtifactKind::Files => Ok(()),
    }
}

/// Loads a dump artifact into `conn`'s database (which exists): `pg_restore` or the `mariadb`
/// client, fed the checked, decompressed dump.
pub fn load_dump(conn: &Conn, set_dir: &Path, a: &Artifact) -> Result<(), BackupError> {
    let path = set_dir.join(&a.file);
    crate::check_sha256(&path, &a.sha256)?;
    let (cmd, what) = match a.kind {
        ArtifactKind::PostgresDump => (client::pg_restore(conn)?, "pg_restore"),
        ArtifactKind::MariadbDump => (client::mariadb_load(conn)?, "loading the dump"),
        other => {
            return Err(BackupError::Server(format!(
                "{} ({other:?}) is not a dump to load",
                a.file
            )));
        }
    };
    feed(cmd, &path, a.compressed, what).map(drop)
}

/// Restores a PostgreSQL dump into a new scratch database on `conn`'s server, then drops it:
/// the proof that the dump restores, not only that it lists.
pub fn restore_into_scratch(conn: &Conn, set_dir: &Path, a: &Artifact) -> Result<(), BackupError> {
    let scratch = format!(
        "homeport_verify_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    client::create_database(conn, &scratch)?;
    let loaded = load_dump(&conn.with_database(&scratch), set_dir, a);
    let dropped = client::drop_database(conn, &scratch);
    loaded.map_err(|e| BackupError::Corrupt(set_dir.join(&a.file), e.to_string()))?;
    dropped.map_err(Into::into)
}
