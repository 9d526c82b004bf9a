//! Backups you can trust: consistent online copies of live SQLite databases and archives of
//! files, checked, checksummed, retained, and restorable.
//!
//! # Layout
//! - [`take`] and [`SetBuilder`]: one backup set of an environment — every database (SQLite's
//!   online backup API, WAL-safe, while the service keeps writing) and a `files.tar.zst` of its
//!   files — into `BACKUPS/<app>/<env>/<time>/`. Each artifact is written as `NAME.partial`,
//!   checked (`PRAGMA integrity_check`), fsynced, compressed if asked, checksummed (SHA-256) and
//!   only then renamed to its final name; the set's folder appears under its final name last. A
//!   crash at any point leaves at most `*.partial` files, which [`sweep_partials`] removes and
//!   which nothing ever catalogues or restores.
//! - [`verify`]: re-checks an artifact's checksum and, for a database, its integrity.
//! - [`restore`]: puts a database or files back — swapped in with the services stopped, or a
//!   database written in place under its running users — and keeps what it replaces.
//! - [`diff`]: which rows a restore discarded, per table.
//! - [`retention`]: which backups to delete — a pure function.
//! - [`schedule`]: when the next backup is due — a pure function that runs a missed backup once.
//!
//! Each artifact has a kind ([`ArtifactKind`]): one per database engine, and `files`. What is
//! engine-specific — taking a consistent copy, checking it, putting it back — is chosen by the
//! kind; the catalogue, checksums, compression, retention and the restore flow are not.

mod archive;
pub mod diff;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod server;
mod sqlite;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use archive::{FileEntry, read_index, unpack_entry};
pub use homeport_types::ArtifactKind;
pub use server::ServerSource;
pub use sqlite::{
    BackupMethod, backup_database, backup_database_within, integrity_check, is_sqlite,
};

/// One file of a backup set, as the catalogue keeps it.
pub type Artifact = homeport_types::BackupArtifact;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} is not a SQLite database")]
    NotSqlite(PathBuf),
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("{path} stayed locked by another connection for {waited:?}; try again when it is free")]
    Locked { path: PathBuf, waited: Duration },
    #[error("the copy of {0} failed its integrity check: {1}")]
    Corrupt(PathBuf, String),
    #[error("{path}: checksum mismatch (expected {expected}, found {found})")]
    Checksum {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{0}: {1}")]
    Sqlite(PathBuf, #[source] rusqlite::Error),
    #[error("cannot write the backup copy {0}: {1} (is the disk full?)")]
    Write(PathBuf, String),
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] io::Error),
    /// The archive is damaged (unreadable, or an entry that would leave its folder).
    #[error("{0}")]
    Archive(String),
    /// What was asked cannot be done as asked (a place that exists, a name the backup lacks);
    /// the backup itself is fine.
    #[error("{0}")]
    Refused(String),
    /// A database server's tool failed; the message says what happened in words.
    #[error("{0}")]
    Server(String),
}

impl BackupError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
        move |e| BackupError::Io(path.to_path_buf(), e)
    }

    /// The backup itself is bad (its files do not match what was recorded, or a copy is
    /// damaged), as opposed to a problem of the moment (a locked database, a full disk).
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            BackupError::Checksum { .. } | BackupError::Corrupt(..) | BackupError::Archive(_)
        ) || matches!(self, BackupError::Missing(_))
    }
}

/// What an environment backs up.
#[derive(Debug, Clone)]
pub struct BackupPlan {
    /// SQLite databases by name.
    pub databases: Vec<(String, PathBuf)>,
    /// Database servers by name.
    pub servers: Vec<(String, ServerSource)>,
    /// Files and folders archived together.
    pub files: Vec<PathBuf>,
    /// Compress artifacts with zstd.
    pub compress: bool,
}

/// A finished backup set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSet {
    pub dir: PathBuf,
    pub artifacts: Vec<Artifact>,
    pub duration_ms: u64,
}

/// Takes one backup set into a new folder under `env_dir`.
pub fn take(
    plan: &BackupPlan,
    env_dir: &Path,
    method: BackupMethod,
) -> Result<BackupSet, BackupError> {
    let mut set = SetBuilder::new(env_dir, plan.compress)?;
    for (name, db) in &plan.databases {
        set.add_database(name, db, method)?;
    }
    for (name, src) in &plan.servers {
        set.add_server(name, src)?;
    }
    if !plan.files.is_empty() {
        set.add_files(&plan.files)?;
    }
    set.commit()
}

/// A backup set being built in `TIME.partial/`: artifacts are added one by one, and
/// [`SetBuilder::commit`] renames the folder to its final name. Dropped uncommitted, it removes
/// what it wrote.
pub struct SetBuilder {
    env_dir: PathBuf,
    final_dir: PathBuf,
    work: PathBuf,
    compress: bool,
    started: Instant,
    artifacts: Vec<Artifact>,
    committed: bool,
}

impl SetBuilder {
    pub fn new(env_dir: &Path, compress: bool) -> Result<Self, BackupError> {
        let stamp = humantime::format_rfc3339_millis(SystemTime::now())
            .to_string()
            .replace(':', "-");
        let final_dir = env_dir.join(&stamp);
        let work = env_dir.join(format!("{stamp}.partial"));
        homeport_fs::create_private_dir(env_dir).map_err(BackupError::io(env_dir))?;
        fs::create_dir_all(&work).map_err(BackupError::io(&work))?;
        Ok(Self {
            env_dir: env_dir.to_path_buf(),
            final_dir,
            work,
            compress,
            started: Instant::now(),
            artifacts: Vec::new(),
            committed: false,
        })
    }

    /// Where a plain copy of database `name` may be written before [`Self::add_database_copy`].
    pub fn plain_path(&self, name: &str) -> PathBuf {
        self.work.join(format!("{name}.db.partial"))
    }

    /// The folder the set will have once committed.
    pub fn final_dir(&self) -> &Path {
        &self.final_dir
    }

    /// A consistent online copy of the live database `db`.
    pub fn add_database(
        &mut self,
        name: &str,
        db: &Path,
        method: BackupMethod,
    ) -> Result<Artifact, BackupError> {
        let partial = self.plain_path(name);
        backup_database(db, &partial, method)?;
        self.add_database_copy(name)
    }

    /// The plain copy already written at [`Self::plain_path`]: checked, then finished.
    pub fn add_database_copy(&mut self, name: &str) -> Result<Artifact, BackupError> {
        let partial = self.plain_path(name);
        integrity_check(&partial)?;
        let a = finish(
            name,
            ArtifactKind::Sqlite,
            &partial,
            &format!("{name}.db"),
            self.compress,
        )?;
        self.artifacts.push(a.clone());
        Ok(a)
    }

    /// A copy of a live database kept whatever state it is in: an online copy when SQLite can
    /// read it, else its bytes as they are (with its `-wal` and `-journal`, stored beside it),
    /// so a damaged database — the very case a restore is for — loses nothing.
    pub fn add_database_as_is(&mut self, name: &str, db: &Path) -> Result<Artifact, BackupError> {
        let partial = self.plain_path(name);
        let online = backup_database(db, &partial, BackupMethod::BackupApi)
            .and_then(|()| integrity_check(&partial));
        if online.is_ok() {
            return self.add_database_copy(name);
        }
        let _ = fs::remove_file(&partial);
        restore::private_copy(db, &partial)?;
        for side in ["-wal", "-journal"] {
            let from = restore::sidecar(db, side);
            if from.exists() {
                restore::private_copy(&from, &self.work.join(format!("{name}.db{side}")))?;
            }
        }
        // Stored plain, so it can be put back byte for byte with its sidecars.
        let a = finish(
            name,
            ArtifactKind::Sqlite,
            &partial,
            &format!("{name}.db"),
            false,
        )?;
        self.artifacts.push(a.clone());
        Ok(a)
    }

    /// Every database of a server, each through the server's own dump tool.
    pub fn add_server(
        &mut self,
        name: &str,
        src: &ServerSource,
    ) -> Result<Vec<Artifact>, BackupError> {
        let made = server::dump_server(name, src, &self.work, self.compress)?;
        self.artifacts.extend(made.iter().cloned());
        Ok(made)
    }

    /// An archive of `paths` (files and folders), as `files.tar`.
    pub fn add_files(&mut self, paths: &[PathBuf]) -> Result<Artifact, BackupError> {
        let partial = self.work.join("files.tar.partial");
        archive::write_tar(paths, &partial)?;
        let a = finish(
            "files",
            ArtifactKind::Files,
            &partial,
            "files.tar",
            self.compress,
        )?;
        self.artifacts.push(a.clone());
        Ok(a)
    }

    pub fn artifacts(&self) -> &[Artifact] {
        &self.artifacts
    }

    /// Makes the set whole: fsynced, then renamed to its final name.
    pub fn commit(mut self) -> Result<BackupSet, BackupError> {
        sync_dir(&self.work)?;
        fs::rename(&self.work, &self.final_dir).map_err(BackupError::io(&self.final_dir))?;
        sync_dir(&self.env_dir)?;
        self.committed = true;
        Ok(BackupSet {
            dir: self.final_dir.clone(),
            artifacts: std::mem::take(&mut self.artifacts),
            duration_ms: self.started.elapsed().as_millis() as u64,
        })
    }
}

impl Drop for SetBuilder {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.work);
        }
    }
}

/// fsync, compress (to a second partial file), checksum, rename to the final name.
fn finish(
    name: &str,
    kind: ArtifactKind,
    partial: &Path,
    file: &str,
    compress: bool,
) -> Result<Artifact, BackupError> {
    let dir = partial.parent().unwrap_or(Path::new("."));
    let (source, file) = if compress {
        let zpartial = dir.join(format!("{file}.zst.partial"));
        compress_file(partial, &zpartial)?;
        fs::remove_file(partial).map_err(BackupError::io(partial))?;
        (zpartial, format!("{file}.zst"))
    } else {
        (partial.to_path_buf(), file.to_owned())
    };
    File::open(&source)
        .and_then(|f| f.sync_all())
        .map_err(BackupError::io(&source))?;
    let sha256 = sha256_file(&source)?;
    let size = fs::metadata(&source)
        .map_err(BackupError::io(&source))?
        .len();
    let dest = dir.join(&file);
    fs::rename(&source, &dest).map_err(BackupError::io(&dest))?;
    Ok(Artifact {
        name: name.to_owned(),
        kind,
        file,
        size,
        sha256,
        compressed: compress,
        database: None,
        warning: None,
    })
}

fn compress_file(src: &Path, dest: &Path) -> Result<(), BackupError> {
    let mut input = File::open(src).map_err(BackupError::io(src))?;
    let out = File::create(dest).map_err(BackupError::io(dest))?;
    let mut enc = zstd::Encoder::new(out, 3).map_err(BackupError::io(dest))?;
    io::copy(&mut input, &mut enc).map_err(BackupError::io(dest))?;
    enc.finish()
        .and_then(|mut f| f.flush())
        .map_err(BackupError::io(dest))?;
    Ok(())
}

/// Writes the plain content of an artifact to a new file `dest` (decompressing it if needed):
/// 0600, refused if `dest` exists or is a symbolic link.
pub fn extract(artifact_path: &Path, compressed: bool, dest: &Path) -> Result<(), BackupError> {
    let mut input = File::open(artifact_path).map_err(BackupError::io(artifact_path))?;
    // A copy of production data: private, and never through a link left where it goes.
    let mut out = homeport_fs::create_new_private(dest).map_err(BackupError::io(dest))?;
    if compressed {
        let mut dec = zstd::Decoder::new(input).map_err(BackupError::io(artifact_path))?;
        io::copy(&mut dec, &mut out).map_err(BackupError::io(dest))?;
    } else {
        io::copy(&mut input, &mut out).map_err(BackupError::io(dest))?;
    }
    out.sync_all().map_err(BackupError::io(dest))
}

pub fn sha256_file(path: &Path) -> Result<String, BackupError> {
    let mut f = File::open(path).map_err(BackupError::io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(BackupError::io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(homeport_fs::hex(&h.finalize()))
}

/// Fails unless the file's SHA-256 is `expected`.
pub fn check_sha256(path: &Path, expected: &str) -> Result<(), BackupError> {
    let found = sha256_file(path)?;
    if found == expected {
        Ok(())
    } else {
        Err(BackupError::Checksum {
            path: path.to_path_buf(),
            expected: expected.to_owned(),
            found,
        })
    }
}

/// Re-checks an artifact: its checksum, and what its kind can check of its content (a
/// database's integrity, an archive's index).
pub fn verify(set_dir: &Path, a: &Artifact) -> Result<(), BackupError> {
    let path = set_dir.join(&a.file);
    if !path.exists() {
        return Err(BackupError::Missing(path));
    }
    check_sha256(&path, &a.sha256)?;
    let tmp = set_dir.join(format!(".verify-{}", a.file));
    let _ = fs::remove_file(&tmp);
    if a.kind.is_server() {
        return server::verify_content(&path, a, set_dir);
    }
    let checked = extract(&path, a.compressed, &tmp).and_then(|()| match a.kind {
        ArtifactKind::Sqlite => integrity_check(&tmp),
        ArtifactKind::Files => read_index(&tmp).map(drop),
        _ => Ok(()),
    });
    let _ = fs::remove_file(&tmp);
    checked
}

/// Removes what a crash left half-written under `root` (`*.partial` files and folders).
pub fn sweep_partials(root: &Path) -> usize {
    let mut removed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let partial = p.extension().is_some_and(|x| x == "partial");
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if partial {
                let gone = if is_dir {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                removed += usize::from(gone.is_ok());
            } else if is_dir {
                stack.push(p);
            }
        }
    }
    removed
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    homeport_fs::sync_dir(dir).map_err(BackupError::io(dir))
}
