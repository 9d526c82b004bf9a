//! Releases of an app: where they come from and how an environment switches between them.
//!
//! - [`git`]: the source checkout — commit, branch, dirty flag, a clean worktree of a commit,
//!   fetching and fast-forwarding its upstream.
//! - [`run_step`]: one test, build, install or migrate command, its output line by line as it
//!   comes, stdout and stderr in the order they were written.
//! - [`stage`]: copies the declared artifacts into `releases/<id>/`; [`complete`] then makes it
//!   a release: identical files shared with earlier releases, every file read-only, and last a
//!   manifest (commit, time, checksums, steps). A folder without a manifest is not a release
//!   ([`list`] skips it, [`sweep_partials`] removes it), so a crash never leaves half a release
//!   that anything uses.
//! - [`Objects`]: the app's store of release files by checksum, so identical files across
//!   releases are one file on disk (hard links).
//! - [`switch`]: points an environment's `current` at a release atomically — a new symlink is
//!   renamed over the old one, never unlink-then-link.
//! - [`prune`]: which releases to delete, failed ones first, never the protected ones.
//!
//! The mechanics only: it depends on no other Homeport crate. The pipeline that strings these
//! together with backups, the supervisor's restarts, health gates and rollback is in
//! homeport-core (`deploy/`), the one crate that owns all of those.

pub mod git;
mod objects;

pub use objects::Objects;

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

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
    #[error("release {release}: {what}")]
    Damaged { release: String, what: String },
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
    /// The test, build and install commands that ran.
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

/// How long the output of a step that has exited is still read: a process it left behind may
/// hold the pipe open forever.
const OUTPUT_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Runs one step in `dir`, with `env` added to the agent's environment; each output line goes
/// to `line` as it is written. stdout and stderr share one pipe, so their lines arrive in the
/// order the step wrote them (a program that buffers its stdout when it is not a terminal still
/// writes it late). Errors if it does not exit 0.
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
    let (reader, writer) = io::pipe().map_err(io_err(dir))?;
    let mut cmd = Command::new(program);
    homeport_fs::inherit::restore(&mut cmd);
    cmd.args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(writer.try_clone().map_err(io_err(dir))?)
        .stderr(writer);
    let spawned = cmd.spawn();
    // The command holds our copies of the pipe's write end: without this the output never ends.
    drop(cmd);
    let mut child = spawned.map_err(|e| DeployError::Step {
        step: shown.clone(),
        status: format!("cannot run it: {e}"),
    })?;
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        loop {
            let mut buf = Vec::new();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send(buf).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut exited = None;
    let mut stop_reading_at: Option<Instant> = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                line(text.trim_end_matches(['\n', '\r']));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if exited.is_none()
            && let Some(status) = child.try_wait().map_err(io_err(dir))?
        {
            exited = Some(status);
            stop_reading_at = Some(Instant::now() + OUTPUT_AFTER_EXIT);
        }
        if stop_reading_at.is_some_and(|t| Instant::now() > t) {
            break;
        }
    }
    let status = match exited {
        Some(s) => s,
        None => child.wait().map_err(io_err(dir))?,
    };
    if status.success() {
        Ok(())
    } else {
        Err(DeployError::Step {
            step: shown,
            status: status.to_string(),
        })
    }
}

/// Copies `artifacts` from `build_dir` into `releases/<manifest.id>/` — each file from the
/// app's store when an identical one is there — and returns the folder. It is not a release
/// until [`complete`]; on failure nothing is left. Artifacts are built in `<id>.partial` and
/// renamed, so steps run in the release afterwards ([`complete`]'s caller's `install`) see its
/// final path.
pub fn stage(
    build_dir: &Path,
    artifacts: &[String],
    releases: &Path,
    objects: &Objects,
    manifest: &mut Manifest,
) -> Result<PathBuf, DeployError> {
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
            let (size, sha256) = copy_tree(&build_dir.join(a), &work.join(a), objects)?;
            manifest.artifacts.push(ArtifactEntry {
                path: a.clone(),
                size,
                sha256,
            });
        }
        fs::rename(&work, &final_dir).map_err(io_err(&final_dir))?;
        Ok(final_dir.clone())
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&work);
    }
    result
}

/// Makes a staged folder a release: files that steps run in it added (a virtualenv, say) are
/// shared with identical ones of earlier releases, every file becomes read-only (a release never
/// changes; what an app writes belongs in its data folder), and the manifest is written last.
/// Returns how many bytes the store saved.
pub fn complete(dir: &Path, objects: &Objects, manifest: &Manifest) -> Result<u64, DeployError> {
    let saved = objects.absorb_tree(dir)?;
    let body = serde_json::to_vec_pretty(manifest)
        .map_err(|e| DeployError::Io(dir.to_path_buf(), io::Error::other(e)))?;
    homeport_fs::atomic_write(&dir.join(MANIFEST), &body, 0o400).map_err(io_err(dir))?;
    if let Some(parent) = dir.parent() {
        homeport_fs::sync_dir(parent).map_err(io_err(parent))?;
    }
    Ok(saved)
}

/// Removes a folder that did not become a release.
pub fn discard(dir: &Path) {
    let _ = fs::remove_dir_all(dir);
}

/// A release's files: only their owner may read and run them, nobody may write them.
fn release_mode(mode: u32) -> u32 {
    mode & 0o500
}

/// Copies a file or folder (keeping symlinks), returning total size and checksum. Files come
/// from `objects` (a hard link) when an identical one is there, and are added to it otherwise.
fn copy_tree(src: &Path, dest: &Path, objects: &Objects) -> Result<(u64, String), DeployError> {
    use std::os::unix::fs::PermissionsExt;
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
        // Folders stay writable by their owner: install steps add to them.
        fs::set_permissions(
            dest,
            fs::Permissions::from_mode(meta.permissions().mode() & 0o700 | 0o700),
        )
        .map_err(io_err(dest))?;
        let mut entries: Vec<_> = fs::read_dir(src).map_err(io_err(src))?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        let mut total = 0;
        let mut h = Sha256::new();
        for e in entries {
            let (size, sum) = copy_tree(&e.path(), &dest.join(e.file_name()), objects)?;
            total += size;
            h.update(format!("{} {sum}\n", e.file_name().to_string_lossy()));
        }
        return Ok((total, homeport_fs::hex(&h.finalize())));
    }
    let sha = sha256_file(src)?;
    objects.place(src, &sha, release_mode(meta.permissions().mode()), dest)?;
    Ok((meta.len(), sha))
}

pub(crate) fn sha256_file(path: &Path) -> Result<String, DeployError> {
    let mut f = fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(homeport_fs::hex(&h.finalize()))
}

/// The size and checksum of a file or folder as [`stage`] records them, read without copying.
fn tree_sum(path: &Path) -> Result<(u64, String), DeployError> {
    let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path).map_err(io_err(path))?;
        return Ok((
            0,
            homeport_fs::hex(&Sha256::digest(target.as_os_str().as_encoded_bytes())),
        ));
    }
    if meta.is_dir() {
        let mut entries: Vec<_> = fs::read_dir(path)
            .map_err(io_err(path))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        let mut total = 0;
        let mut h = Sha256::new();
        for e in entries {
            let (size, sum) = tree_sum(&e.path())?;
            total += size;
            h.update(format!("{} {sum}\n", e.file_name().to_string_lossy()));
        }
        return Ok((total, homeport_fs::hex(&h.finalize())));
    }
    Ok((meta.len(), sha256_file(path)?))
}

/// Checks a release folder against its manifest: every artifact there, with the size and
/// checksum recorded when it was staged (a release copied from another computer arrives whole
/// and unchanged, or is refused). Returns the manifest.
pub fn verify(release_dir: &Path) -> Result<Manifest, DeployError> {
    let name = release_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let damaged = |what: String| DeployError::Damaged {
        release: name.clone(),
        what,
    };
    let m = read_manifest(release_dir).ok_or_else(|| damaged(format!("no readable {MANIFEST}")))?;
    if m.id != name {
        return Err(damaged(format!("its manifest names release {}", m.id)));
    }
    for a in &m.artifacts {
        let p = release_dir.join(&a.path);
        if !p.starts_with(release_dir) || a.path.split('/').any(|c| c == "..") {
            return Err(damaged(format!(
                "artifact {} points outside the release",
                a.path
            )));
        }
        if fs::symlink_metadata(&p).is_err() {
            return Err(damaged(format!("{} is missing", a.path)));
        }
        let (size, sum) = tree_sum(&p)?;
        if size != a.size || sum != a.sha256 {
            return Err(damaged(format!(
                "{} does not match its checksum (manifest {} bytes, sha256 {}…; found {size} bytes, {}…)",
                a.path,
                a.size,
                &a.sha256[..a.sha256.len().min(12)],
                &sum[..sum.len().min(12)]
            )));
        }
    }
    Ok(m)
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

/// Ids to delete so that at most `keep` releases remain besides the protected ones: releases
/// that once passed a health gate (`good`) are kept before those that never did, newest first
/// within each, and a protected one is never deleted.
pub fn prune(
    all: &[Manifest],
    keep: usize,
    protected: &BTreeSet<String>,
    good: &BTreeSet<String>,
) -> Vec<String> {
    let mut ranked: Vec<&Manifest> = all.iter().collect();
    ranked.sort_by(|a, b| {
        good.contains(&b.id)
            .cmp(&good.contains(&a.id))
            .then(b.id.cmp(&a.id))
    });
    ranked
        .iter()
        .skip(keep)
        .filter(|m| !protected.contains(&m.id))
        .map(|m| m.id.clone())
        .collect()
}

/// Removes what a crash left of releases being made: `.partial` folders, and folders that never
/// got their manifest. `keep` (a release being made right now) is left alone.
pub fn sweep_partials(releases: &Path, keep: Option<&str>) {
    for e in fs::read_dir(releases).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if keep == Some(name.as_str()) || !e.path().is_dir() {
            continue;
        }
        if name.ends_with(".partial") || !e.path().join(MANIFEST).exists() {
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
        let objects = Objects::new(&dir.path().join("objects"));
        let mut m = manifest("r1");
        let staged = stage(&build, &["out".into()], &releases, &objects, &mut m)?;
        assert!(
            list(&releases).is_empty(),
            "not a release before it is complete"
        );
        complete(&staged, &objects, &m)?;
        assert_eq!(m.artifacts.len(), 1);
        assert_eq!(m.artifacts[0].size, 12);
        let mode = fs::metadata(releases.join("r1/out/app"))?
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o500,
            "still runnable by its owner, by no one else, and written by nobody"
        );
        assert_eq!(read_manifest(&releases.join("r1")), Some(m));

        let err = stage(
            &build,
            &["out".into(), "missing".into()],
            &releases,
            &objects,
            &mut manifest("r2"),
        );
        assert!(matches!(err, Err(DeployError::MissingArtifact(..))));
        assert!(!releases.join("r2").exists() && !releases.join("r2.partial").exists());
        Ok(())
    }

    #[test]
    fn identical_files_of_two_releases_are_one_file() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir()?;
        let build = dir.path().join("build");
        fs::create_dir_all(build.join("out"))?;
        fs::write(build.join("out/big"), vec![7u8; 100_000])?;
        fs::write(build.join("out/version"), "1")?;
        let releases = dir.path().join("releases");
        let objects = Objects::new(&dir.path().join("objects"));
        let mut ids = Vec::new();
        for (i, version) in ["1", "2"].iter().enumerate() {
            fs::write(build.join("out/version"), version)?;
            let mut m = manifest(&format!("r{i}"));
            let staged = stage(&build, &["out".into()], &releases, &objects, &mut m)?;
            // A file an install step made in the release, the same in both.
            fs::write(staged.join("venv.cfg"), "home = /usr/bin")?;
            complete(&staged, &objects, &m)?;
            ids.push(m.id);
        }
        let ino = |id: &str, f: &str| fs::metadata(releases.join(id).join(f)).map(|m| m.ino());
        assert_eq!(ino("r0", "out/big")?, ino("r1", "out/big")?);
        assert_eq!(ino("r0", "venv.cfg")?, ino("r1", "venv.cfg")?);
        assert_ne!(ino("r0", "out/version")?, ino("r1", "out/version")?);
        assert_eq!(fs::read_to_string(releases.join("r1/out/version"))?, "2");
        // Once a release is gone, what only it used leaves the store.
        fs::remove_dir_all(releases.join("r0"))?;
        assert_eq!(objects.collect_garbage(), 1, "the old version file");
        fs::remove_dir_all(releases.join("r1"))?;
        assert_eq!(objects.collect_garbage(), 3);
        Ok(())
    }

    #[test]
    fn step_output_arrives_in_the_order_it_was_written() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let script = "echo out1; echo err1 >&2; echo out2; echo err2 >&2; exit 3";
        let mut lines = Vec::new();
        let r = run_step(
            &["sh".into(), "-c".into(), script.into()],
            dir.path(),
            &[("X".into(), "y".into())],
            |l| lines.push(l.to_owned()),
        );
        assert_eq!(lines, ["out1", "err1", "out2", "err2"]);
        assert!(matches!(r, Err(DeployError::Step { .. })));
        Ok(())
    }

    #[test]
    fn a_step_that_leaves_a_process_holding_its_output_still_ends()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut lines = Vec::new();
        run_step(
            &["sh".into(), "-c".into(), "sleep 30 & echo done".into()],
            dir.path(),
            &[],
            |l| lines.push(l.to_owned()),
        )?;
        assert_eq!(lines, ["done"]);
        Ok(())
    }

    #[test]
    fn a_release_is_verified_against_its_manifest() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let build = dir.path().join("build");
        fs::create_dir_all(build.join("out/static"))?;
        fs::write(build.join("out/app"), "#!/bin/sh\n")?;
        fs::write(build.join("out/static/index.html"), "hi")?;
        std::os::unix::fs::symlink("app", build.join("out/link"))?;
        let releases = dir.path().join("releases");
        let objects = Objects::new(&dir.path().join("objects"));
        let mut m = manifest("r1");
        let staged = stage(&build, &["out".into()], &releases, &objects, &mut m)?;
        complete(&staged, &objects, &m)?;
        assert_eq!(verify(&releases.join("r1"))?, m);
        // One byte changed, a file added, a file gone: each refused, naming the artifact. A
        // release's files are read-only, so a change replaces the file.
        let page = releases.join("r1/out/static/index.html");
        fs::remove_file(&page)?;
        fs::write(&page, "ho")?;
        let err = verify(&releases.join("r1")).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("out does not match")),
            "{err:?}"
        );
        fs::remove_file(&page)?;
        fs::write(&page, "hi")?;
        fs::write(releases.join("r1/out/extra"), "x")?;
        assert!(verify(&releases.join("r1")).is_err());
        fs::remove_file(releases.join("r1/out/extra"))?;
        assert!(verify(&releases.join("r1")).is_ok());
        fs::remove_dir_all(releases.join("r1/out"))?;
        let err = verify(&releases.join("r1")).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("out is missing")),
            "{err:?}"
        );
        // A folder renamed to another release's name.
        let mut m2 = manifest("r2");
        let staged = stage(&build, &["out".into()], &releases, &objects, &mut m2)?;
        complete(&staged, &objects, &m2)?;
        fs::rename(releases.join("r2"), releases.join("r3"))?;
        assert!(verify(&releases.join("r3")).is_err());
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
    fn pruning_keeps_good_releases_before_failed_ones_and_the_protected() {
        let all: Vec<Manifest> = ["r1", "r2", "r3", "r4", "r5"]
            .iter()
            .map(|i| manifest(i))
            .collect();
        let none = BTreeSet::new();
        let protected: BTreeSet<String> = ["r1".to_owned()].into();
        assert_eq!(prune(&all, 2, &protected, &none), ["r3", "r2"]);
        // r5, r4 and r3 failed their gates: the good ones are kept first.
        let good: BTreeSet<String> = ["r1".to_owned(), "r2".to_owned()].into();
        assert_eq!(prune(&all, 2, &none, &good), ["r5", "r4", "r3"]);
        assert_eq!(prune(&all, 3, &none, &good), ["r4", "r3"]);
    }
}
