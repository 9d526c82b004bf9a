//! Releases of an app: where they come from and how an environment switches between them.
//!
//! - [`git`]: the source checkout — commit, branch, dirty flag, a clean worktree of a commit,
//!   fetching and fast-forwarding its upstream.
//! - [`run_step`]: one test or build command, its output line by line.
//! - [`stage`]: copies the declared artifacts into `releases/<id>/` with a manifest (commit,
//!   time, checksums, steps). Built in `<id>.partial` and renamed when complete, so a release
//!   directory is always whole.
//! - [`switch`]: points an environment's `current` at a release atomically — a new symlink is
//!   renamed over the old one, never unlink-then-link.
//! - [`prune`]: which releases to delete, never the protected ones.
//!
//! The mechanics only: it depends on no other Homeport crate. The pipeline that strings these
//! together with backups, the supervisor's restarts, health gates and rollback is in
//! homeport-core (`deploy.rs`), the one crate that owns all of those.

pub mod git;

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("artifact {0} was not built (not found in {1})")]
    MissingArtifact(String, PathBuf),
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] io::Error),
    #[error("{0}")]
    Git(String),
    #[error("`{step}` failed: {status}")]
    Step { step: String, status: String },
}

fn io_err(p: &Path) -> impl FnOnce(io::Error) -> DeployError + '_ {
    move |e| DeployError::Io(p.to_path_buf(), e)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactEntry {
    pub path: String,
    pub size: u64,
    /// SHA-256 of a file, or of the sorted list of `path sha256` lines of a folder's files.
    pub sha256: String,
}

/// `releases/<id>/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: String,
    pub app: String,
    pub commit: String,
    pub branch: String,
    pub dirty: bool,
    /// The app's version ([`git::version`], else the short commit); releases staged before
    /// versions were recorded have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// RFC 3339 UTC.
    pub time: String,
    /// The test and build commands that ran.
    pub steps: Vec<String>,
    pub artifacts: Vec<ArtifactEntry>,
}

pub const MANIFEST: &str = "manifest.json";

impl Manifest {
    /// The recorded version, or for a release staged before versions were recorded, the short
    /// commit (what `git describe` falls back to as well).
    pub fn version(&self) -> String {
        self.version
            .clone()
            .unwrap_or_else(|| self.commit.chars().take(7).collect())
    }
}

/// A new release id: UTC time to the millisecond (deploys of one app run one at a time, so it
/// is unique even when the same commit is deployed twice), then the short commit (and `-dirty`).
pub fn release_id(short_commit: &str, dirty: bool) -> String {
    let t = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let compact: String = t.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!(
        "{compact}-{short_commit}{}",
        if dirty { "-dirty" } else { "" }
    )
}

/// Runs one step in `dir`; each output line goes to `line`. Errors if it does not exit 0.
pub fn run_step(
    argv: &[String],
    dir: &Path,
    env: &[(String, String)],
    mut line: impl FnMut(&str),
) -> Result<(), DeployError> {
    let (program, args) = argv.split_first().ok_or_else(|| DeployError::Step {
        step: String::new(),
        status: "empty command".into(),
    })?;
    let shown = argv.join(" ");
    let mut child = homeport_fs::inherit::restore(&mut Command::new(program))
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| DeployError::Step {
            step: shown.clone(),
            status: format!("cannot run it: {e}"),
        })?;
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(e) = stderr {
            for l in BufReader::new(e).lines().map_while(Result::ok) {
                out.push(l);
            }
        }
        out
    });
    if let Some(out) = child.stdout.take() {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            line(&l);
        }
    }
    for l in err_thread.join().unwrap_or_default() {
        line(&l);
    }
    let status = child.wait().map_err(io_err(dir))?;
    if status.success() {
        Ok(())
    } else {
        Err(DeployError::Step {
            step: shown,
            status: status.to_string(),
        })
    }
}

/// Copies `artifacts` from `build_dir` into `releases/<manifest.id>/` and writes the manifest.
/// Fails, leaving nothing, if an artifact is missing or a copy fails (a full disk).
pub fn stage(
    build_dir: &Path,
    artifacts: &[String],
    releases: &Path,
    mut manifest: Manifest,
) -> Result<Manifest, DeployError> {
    for a in artifacts {
        if !build_dir.join(a).exists() {
            return Err(DeployError::MissingArtifact(
                a.clone(),
                build_dir.to_path_buf(),
            ));
        }
    }
    let final_dir = releases.join(&manifest.id);
    let work = releases.join(format!("{}.partial", manifest.id));
    let result = (|| {
        fs::create_dir_all(&work).map_err(io_err(&work))?;
        manifest.artifacts.clear();
        for a in artifacts {
            let (size, sha256) = copy_tree(&build_dir.join(a), &work.join(a))?;
            manifest.artifacts.push(ArtifactEntry {
                path: a.clone(),
                size,
                sha256,
            });
        }
        let body = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| DeployError::Io(work.clone(), io::Error::other(e)))?;
        homeport_fs::atomic_write(&work.join(MANIFEST), &body, 0o644).map_err(io_err(&work))?;
        fs::rename(&work, &final_dir).map_err(io_err(&final_dir))?;
        fs::File::open(releases)
            .and_then(|d| d.sync_all())
            .map_err(io_err(releases))?;
        Ok(manifest)
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&work);
    }
    result
}

fn owner_only(meta: &fs::Metadata) -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    fs::Permissions::from_mode(meta.permissions().mode() & 0o700)
}

/// Copies a file or folder (keeping symlinks, and the owner's part of each mode: a release is in
/// the agent's data folder, where nothing is for other users), returning total size and
/// checksum.
fn copy_tree(src: &Path, dest: &Path) -> Result<(u64, String), DeployError> {
    let meta = fs::symlink_metadata(src).map_err(io_err(src))?;
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    if meta.file_type().is_symlink() {
        let target = fs::read_link(src).map_err(io_err(src))?;
        std::os::unix::fs::symlink(&target, dest).map_err(io_err(dest))?;
        return Ok((
            0,
            homeport_fs::hex(&Sha256::digest(target.as_os_str().as_encoded_bytes())),
        ));
    }
    if meta.is_dir() {
        fs::create_dir_all(dest).map_err(io_err(dest))?;
        fs::set_permissions(dest, owner_only(&meta)).map_err(io_err(dest))?;
        let mut entries: Vec<_> = fs::read_dir(src).map_err(io_err(src))?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        let mut total = 0;
        let mut h = Sha256::new();
        for e in entries {
            let (size, sum) = copy_tree(&e.path(), &dest.join(e.file_name()))?;
            total += size;
            h.update(format!("{} {sum}\n", e.file_name().to_string_lossy()));
        }
        return Ok((total, homeport_fs::hex(&h.finalize())));
    }
    fs::copy(src, dest).map_err(io_err(dest))?;
    fs::set_permissions(dest, owner_only(&meta)).map_err(io_err(dest))?;
    let mut f = fs::File::open(dest).map_err(io_err(dest))?;
    f.sync_all().map_err(io_err(dest))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(dest))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok((meta.len(), homeport_fs::hex(&h.finalize())))
}

pub fn read_manifest(release_dir: &Path) -> Option<Manifest> {
    serde_json::from_slice(&fs::read(release_dir.join(MANIFEST)).ok()?).ok()
}

/// Every complete release of an app, oldest first.
pub fn list(releases: &Path) -> Vec<Manifest> {
    let mut out: Vec<Manifest> = fs::read_dir(releases)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".partial"))
        .filter_map(|e| read_manifest(&e.path()))
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Points `current` (a symlink) at `release_dir` atomically: a new link is made beside it and
/// renamed over it, so `current` names the old release or the new one at every instant.
pub fn switch(current: &Path, release_dir: &Path) -> Result<(), DeployError> {
    let dir = current.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = dir.join(format!(".current.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(release_dir, &tmp).map_err(io_err(&tmp))?;
    fs::rename(&tmp, current).map_err(io_err(current))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// The release id `current` points at.
pub fn current(current: &Path) -> Option<String> {
    fs::read_link(current)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// Ids to delete beyond the newest `keep`, never one in `protected`.
pub fn prune(all: &[Manifest], keep: usize, protected: &BTreeSet<String>) -> Vec<String> {
    let mut newest_first: Vec<&Manifest> = all.iter().collect();
    newest_first.sort_by(|a, b| b.id.cmp(&a.id));
    newest_first
        .iter()
        .skip(keep)
        .filter(|m| !protected.contains(&m.id))
        .map(|m| m.id.clone())
        .collect()
}

/// Removes half-staged releases a crash left.
pub fn sweep_partials(releases: &Path) {
    for e in fs::read_dir(releases).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().ends_with(".partial") {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str) -> Manifest {
        Manifest {
            id: id.into(),
            app: "a".into(),
            commit: "c".into(),
            branch: "main".into(),
            dirty: false,
            version: None,
            time: "t".into(),
            steps: vec![],
            artifacts: vec![],
        }
    }

    #[test]
    fn staging_copies_artifacts_with_checksums_or_fails_whole()
    -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let build = dir.path().join("build");
        fs::create_dir_all(build.join("out/static"))?;
        fs::write(build.join("out/app"), "#!/bin/sh\n")?;
        fs::set_permissions(build.join("out/app"), fs::Permissions::from_mode(0o755))?;
        fs::write(build.join("out/static/index.html"), "hi")?;
        let releases = dir.path().join("releases");
        let m = stage(&build, &["out".into()], &releases, manifest("r1"))?;
        assert_eq!(m.artifacts.len(), 1);
        assert_eq!(m.artifacts[0].size, 12);
        let mode = fs::metadata(releases.join("r1/out/app"))?
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o700,
            "still executable by its owner, by no one else"
        );
        assert_eq!(read_manifest(&releases.join("r1")), Some(m));

        let err = stage(
            &build,
            &["out".into(), "missing".into()],
            &releases,
            manifest("r2"),
        );
        assert!(matches!(err, Err(DeployError::MissingArtifact(..))));
        assert!(!releases.join("r2").exists() && !releases.join("r2.partial").exists());
        Ok(())
    }

    #[test]
    fn switching_is_atomic_and_readable() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (r1, r2) = (
            dir.path().join("releases/r1"),
            dir.path().join("releases/r2"),
        );
        fs::create_dir_all(&r1)?;
        fs::create_dir_all(&r2)?;
        let cur = dir.path().join("prod/current");
        switch(&cur, &r1)?;
        assert_eq!(current(&cur).as_deref(), Some("r1"));
        switch(&cur, &r2)?;
        assert_eq!(current(&cur).as_deref(), Some("r2"));
        assert_eq!(
            fs::read_dir(dir.path().join("prod"))?.count(),
            1,
            "no temporary link left"
        );
        Ok(())
    }

    #[test]
    fn pruning_keeps_the_newest_and_the_protected() {
        let all: Vec<Manifest> = ["r1", "r2", "r3", "r4", "r5"]
            .iter()
            .map(|i| manifest(i))
            .collect();
        let protected: BTreeSet<String> = ["r1".to_owned()].into();
        assert_eq!(prune(&all, 2, &protected), ["r3", "r2"]);
    }
}
