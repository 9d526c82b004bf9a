//! Archives of an environment's files: a tar of the listed paths, modes kept, sockets skipped.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::BackupError;

pub(crate) fn write_tar(paths: &[PathBuf], dest: &Path) -> Result<(), BackupError> {
    let out = File::create(dest).map_err(BackupError::io(dest))?;
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    for path in paths {
        let meta = fs::symlink_metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BackupError::Missing(path.clone()),
            _ => BackupError::Io(path.clone(), e),
        })?;
        // Inside the archive, each listed path keeps its absolute path without the leading `/`.
        let name = path.strip_prefix("/").unwrap_or(path);
        if meta.is_dir() {
            add_dir(&mut tar, path, name)?;
        } else if meta.is_file() || meta.file_type().is_symlink() {
            tar.append_path_with_name(path, name)
                .map_err(BackupError::io(path))?;
        }
    }
    tar.into_inner()
        .and_then(|f| f.sync_all())
        .map_err(BackupError::io(dest))
}

fn add_dir(tar: &mut tar::Builder<File>, dir: &Path, name: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::FileTypeExt;
    tar.append_dir(name, dir).map_err(BackupError::io(dir))?;
    for entry in fs::read_dir(dir).map_err(BackupError::io(dir))? {
        let entry = entry.map_err(BackupError::io(dir))?;
        let path = entry.path();
        let ty = entry.file_type().map_err(BackupError::io(&path))?;
        let child = name.join(entry.file_name());
        if ty.is_socket() || ty.is_fifo() || ty.is_block_device() || ty.is_char_device() {
            continue; // not data: a socket or device cannot be restored meaningfully
        }
        if ty.is_dir() {
            add_dir(tar, &path, &child)?;
        } else {
            tar.append_path_with_name(&path, &child)
                .map_err(BackupError::io(&path))?;
        }
    }
    Ok(())
}
