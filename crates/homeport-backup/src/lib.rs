//! Backups you can trust: consistent online copies of live SQLite databases and archives of
//! files, checked, checksummed, retained, and restorable.
//!
//! # Layout
//! - [`take`]: one backup set of an environment — every database (SQLite's online backup API,
//!   WAL-safe, while the service keeps writing) and a `files.tar.zst` of its files — into
//!   `BACKUPS/<app>/<env>/<time>/`. Each artifact is written as `NAME.partial`, checked
//!   (`PRAGMA integrity_check`), fsynced, compressed if asked, checksummed (SHA-256) and only then
//!   renamed to its final name; the set's folder appears under its final name last. A crash at any
//!   point leaves at most `*.partial` files, which [`sweep_partials`] removes and which nothing
//!   ever catalogues or restores.
//! - [`verify`]: re-checks an artifact's checksum and, for a database, its integrity.
//! - [`restore`]: puts a database back (see there for the safety copy).
//! - [`retention`]: which backups to delete — a pure function.
//! - [`schedule`]: when the next backup is due — a pure function that runs a missed backup once.

mod archive;
pub mod restore;
pub mod retention;
pub mod schedule;
mod sqlite;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use sqlite::{
    BackupMethod, backup_database, backup_database_within, integrity_check, is_sqlite,
};

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
}

impl BackupError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
        move |e| BackupError::Io(path.to_path_buf(), e)
    }
}

/// What an environment backs up.
#[derive(Debug, Clone)]
pub struct BackupPlan {
    /// SQLite databases by name.
    pub databases: Vec<(String, PathBuf)>,
    /// Files and folders archived together.
    pub files: Vec<PathBuf>,
    /// Compress artifacts with zstd.
    pub compress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    Database,
    Files,
}

/// One file of a backup set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// The database's name, or `files`.
    pub name: String,
    pub kind: ArtifactKind,
    /// File name inside the set's folder.
    pub file: String,
    pub size: u64,
    pub sha256: String,
    pub compressed: bool,
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
    let started = Instant::now();
    let stamp = humantime::format_rfc3339_millis(SystemTime::now())
        .to_string()
        .replace(':', "-");
    let final_dir = env_dir.join(&stamp);
    // The set is built in a `.partial` folder and renamed when complete.
    let work = env_dir.join(format!("{stamp}.partial"));
    fs::create_dir_all(&work).map_err(BackupError::io(&work))?;
    let result = (|| {
        let mut artifacts = Vec::new();
        for (name, db) in &plan.databases {
            artifacts.push(database_artifact(name, db, &work, plan.compress, method)?);
        }
        if !plan.files.is_empty() {
            artifacts.push(files_artifact(&plan.files, &work, plan.compress)?);
        }
        sync_dir(&work)?;
        fs::rename(&work, &final_dir).map_err(BackupError::io(&final_dir))?;
        sync_dir(env_dir)?;
        Ok(artifacts)
    })();
    match result {
        Ok(artifacts) => Ok(BackupSet {
            dir: final_dir,
            artifacts,
            duration_ms: started.elapsed().as_millis() as u64,
        }),
        Err(e) => {
            let _ = fs::remove_dir_all(&work);
            Err(e)
        }
    }
}

fn database_artifact(
    name: &str,
    db: &Path,
    dir: &Path,
    compress: bool,
    method: BackupMethod,
) -> Result<Artifact, BackupError> {
    let partial = dir.join(format!("{name}.db.partial"));
    backup_database(db, &partial, method)?;
    integrity_check(&partial)?;
    finish(
        name,
        ArtifactKind::Database,
        &partial,
        &format!("{name}.db"),
        compress,
    )
}

fn files_artifact(paths: &[PathBuf], dir: &Path, compress: bool) -> Result<Artifact, BackupError> {
    let partial = dir.join("files.tar.partial");
    archive::write_tar(paths, &partial)?;
    finish(
        "files",
        ArtifactKind::Files,
        &partial,
        "files.tar",
        compress,
    )
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

/// Re-checks an artifact: its checksum, and a database's integrity.
pub fn verify(set_dir: &Path, a: &Artifact) -> Result<(), BackupError> {
    let path = set_dir.join(&a.file);
    if !path.exists() {
        return Err(BackupError::Missing(path));
    }
    check_sha256(&path, &a.sha256)?;
    if a.kind == ArtifactKind::Database {
        let tmp = set_dir.join(format!(".verify-{}.db", a.name));
        let checked = extract(&path, a.compressed, &tmp).and_then(|()| integrity_check(&tmp));
        let _ = fs::remove_file(&tmp);
        checked?;
    }
    Ok(())
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
