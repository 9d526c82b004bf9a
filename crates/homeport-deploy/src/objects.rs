//! The app's store of release files by content: `objects/<sha256>-<mode>`, each hard-linked into
//! every release that has that file. Four identical builds cost the disk one copy; a file leaves
//! the store when no release links it any more ([`Objects::collect_garbage`]).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{DeployError, io_err, release_mode, sha256_file};

pub struct Objects {
    dir: PathBuf,
}

impl Objects {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn key(&self, sha: &str, mode: u32) -> PathBuf {
        self.dir.join(format!("{sha}-{mode:o}"))
    }

    fn ensure_dir(&self) -> Result<(), DeployError> {
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))
    }

    /// Puts the file `src` (checksum `sha`) at `dest` with `mode`: a link to the store's copy,
    /// which is made first if the store has none. Returns whether the store already had it.
    pub(crate) fn place(
        &self,
        src: &Path,
        sha: &str,
        mode: u32,
        dest: &Path,
    ) -> Result<bool, DeployError> {
        self.ensure_dir()?;
        let key = self.key(sha, mode);
        let had = key.exists();
        if !had {
            let tmp = self.dir.join(format!(".new-{sha}-{}", std::process::id()));
            let _ = fs::remove_file(&tmp);
            fs::copy(src, &tmp).map_err(io_err(&tmp))?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(io_err(&tmp))?;
            fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&tmp))?;
            fs::rename(&tmp, &key).map_err(io_err(&key))?;
        }
        link_or_copy(&key, dest)?;
        Ok(had)
    }

    /// Brings every regular file under `dir` that is not yet in the store into it: replaced by a
    /// link to an identical stored file, or added to the store as it is. Each becomes read-only.
    /// Returns the bytes saved.
    pub(crate) fn absorb_tree(&self, dir: &Path) -> Result<u64, DeployError> {
        self.ensure_dir()?;
        let mut saved = 0;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).map_err(io_err(&d))? {
                let e = e.map_err(io_err(&d))?;
                let path = e.path();
                let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                // Links are kept as links; a file with other names is already stored.
                if !meta.is_file() || meta.nlink() > 1 {
                    continue;
                }
                let sha = sha256_file(&path)?;
                let mode = release_mode(meta.permissions().mode());
                let key = self.key(&sha, mode);
                if key.exists() {
                    let tmp = path.with_file_name(format!(
                        ".{}.stored",
                        path.file_name()
                            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                    ));
                    let _ = fs::remove_file(&tmp);
                    link_or_copy(&key, &tmp)?;
                    fs::rename(&tmp, &path).map_err(io_err(&path))?;
                    saved += meta.len();
                } else {
                    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                        .map_err(io_err(&path))?;
                    // The store keeps it under its checksum; a failed link only loses sharing.
                    let _ = fs::hard_link(&path, &key);
                }
            }
        }
        Ok(saved)
    }

    /// Removes stored files no release links any more; returns how many.
    pub fn collect_garbage(&self) -> usize {
        let mut removed = 0;
        for e in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let orphan = e.metadata().is_ok_and(|m| m.is_file() && m.nlink() <= 1);
            // `.new-*`: a copy a crash left before it was renamed into the store.
            if (orphan || name.starts_with(".new-")) && fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

/// A hard link; a copy where the file system cannot link (another device, too many links).
fn link_or_copy(from: &Path, to: &Path) -> Result<(), DeployError> {
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to).map_err(io_err(to))?;
    Ok(())
}
