//! Archives of an environment's files: a tar of the listed paths, modes kept, sockets skipped.
//!
//! Each listed path is stored under a short name of its own (its file name, made unique), and
//! the archive begins with an index, `homeport-files.json`, that maps each name to the path it
//! was taken from. Nothing in the archive is absolute: a restore puts each name back at the path
//! the environment lists now, and `--to DIR` writes the names into a folder of one's choosing.
//! Archives written before the index existed hold each path without its leading `/`; they are
//! read as if each top-level path were named by that path.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::BackupError;

/// The first entry of an archive.
pub const INDEX: &str = "homeport-files.json";

/// One listed path of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its name inside the archive (a single path component).
    pub label: String,
    /// The path it was taken from.
    pub path: PathBuf,
}

/// Unique short names for `paths`: each one's file name, `-2`, `-3`… when two share one.
fn labels(paths: &[PathBuf]) -> Vec<FileEntry> {
    let mut out: Vec<FileEntry> = Vec::new();
    for p in paths {
        let base = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty() && n != INDEX)
            .unwrap_or_else(|| "files".to_owned());
        let mut label = base.clone();
        let mut n = 2;
        while out.iter().any(|e| e.label == label) {
            label = format!("{base}-{n}");
            n += 1;
        }
        out.push(FileEntry {
            label,
            path: p.clone(),
        });
    }
    out
}

pub(crate) fn write_tar(paths: &[PathBuf], dest: &Path) -> Result<Vec<FileEntry>, BackupError> {
    let out = File::create(dest).map_err(BackupError::io(dest))?;
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let index = labels(paths);
    let body = serde_json::to_vec_pretty(&index)
        .map_err(|e| BackupError::Archive(format!("cannot write the archive's index: {e}")))?;
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o600);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    header.set_cksum();
    tar.append_data(&mut header, INDEX, body.as_slice())
        .map_err(BackupError::io(dest))?;
    for entry in &index {
        let path = &entry.path;
        let meta = fs::symlink_metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BackupError::Missing(path.clone()),
            _ => BackupError::Io(path.clone(), e),
        })?;
        let name = Path::new(&entry.label);
        if meta.is_dir() {
            add_dir(&mut tar, path, name)?;
        } else if meta.is_file() || meta.file_type().is_symlink() {
            tar.append_path_with_name(path, name)
                .map_err(BackupError::io(path))?;
        }
    }
    tar.into_inner()
        .and_then(|f| f.sync_all())
        .map_err(BackupError::io(dest))?;
    Ok(index)
}

fn add_dir(tar: &mut tar::Builder<File>, dir: &Path, name: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::FileTypeExt;
    tar.append_dir(name, dir).map_err(BackupError::io(dir))?;
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(BackupError::io(dir))?
        .collect::<Result<_, _>>()
        .map_err(BackupError::io(dir))?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
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

/// The listed paths of a plain (decompressed) archive. An archive without an index (written
/// by an earlier agent) names each top-level entry by its path.
pub fn read_index(tar_path: &Path) -> Result<Vec<FileEntry>, BackupError> {
    let file = File::open(tar_path).map_err(BackupError::io(tar_path))?;
    let mut archive = tar::Archive::new(file);
    let bad = |e: std::io::Error| BackupError::Archive(format!("{}: {e}", tar_path.display()));
    let mut tops: Vec<FileEntry> = Vec::new();
    for (i, entry) in archive.entries().map_err(bad)?.enumerate() {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        if i == 0 && path == Path::new(INDEX) {
            let mut body = String::new();
            entry.read_to_string(&mut body).map_err(bad)?;
            return serde_json::from_str(&body).map_err(|e| {
                BackupError::Archive(format!("{}: its index: {e}", tar_path.display()))
            });
        }
        // Legacy: the archive stands for the whole path, so its label is that path.
        if !tops
            .iter()
            .any(|t| path.starts_with(&t.label) && !t.label.is_empty())
        {
            let label = path.to_string_lossy().trim_end_matches('/').to_owned();
            tops.push(FileEntry {
                path: Path::new("/").join(&label),
                label,
            });
        }
    }
    Ok(tops)
}

/// Writes the entry `label` of a plain archive (a folder with everything under it, or one file)
/// to `dest`, which must not exist: modes and times kept, nothing written outside `dest`.
pub fn unpack_entry(tar_path: &Path, label: &str, dest: &Path) -> Result<(), BackupError> {
    if dest.symlink_metadata().is_ok() {
        return Err(BackupError::Refused(format!(
            "{} exists; files are restored into a new place",
            dest.display()
        )));
    }
    let file = File::open(tar_path).map_err(BackupError::io(tar_path))?;
    let mut archive = tar::Archive::new(file);
    let bad = |e: std::io::Error| BackupError::Archive(format!("{}: {e}", tar_path.display()));
    let prefix = Path::new(label);
    let mut found = false;
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let Ok(rest) = path.strip_prefix(prefix) else {
            continue;
        };
        if !rest.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(BackupError::Archive(format!(
                "{}: entry {} leaves its folder",
                tar_path.display(),
                path.display()
            )));
        }
        let target = if rest.as_os_str().is_empty() {
            dest.to_path_buf()
        } else {
            dest.join(rest)
        };
        // Never through a link: every folder on the way is one this unpacking made.
        let mut up = target.parent();
        while let Some(dir) = up {
            if dir == dest.parent().unwrap_or(dest) {
                break;
            }
            if dir
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
            {
                return Err(BackupError::Archive(format!(
                    "{}: entry {} would be written through a symbolic link",
                    tar_path.display(),
                    path.display()
                )));
            }
            up = dir.parent();
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(BackupError::io(parent))?;
        }
        entry.set_preserve_mtime(true);
        entry.set_preserve_permissions(true);
        entry.unpack(&target).map_err(BackupError::io(&target))?;
        found = true;
    }
    if found {
        Ok(())
    } else {
        Err(BackupError::Refused(format!(
            "{} has nothing named {label}",
            tar_path.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_paths_with_one_name_get_two_labels() {
        let l = labels(&[
            PathBuf::from("/a/data"),
            PathBuf::from("/b/data"),
            PathBuf::from("/c/notes.txt"),
        ]);
        let names: Vec<&str> = l.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(names, ["data", "data-2", "notes.txt"]);
    }

    #[test]
    fn an_archive_puts_each_path_back_under_its_label() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        fs::create_dir_all(data.join("sub"))?;
        fs::write(data.join("sub/a.txt"), "a")?;
        std::os::unix::fs::symlink("sub/a.txt", data.join("link"))?;
        let note = dir.path().join("note.txt");
        fs::write(&note, "n")?;
        let tar = dir.path().join("files.tar");
        let index = write_tar(&[data.clone(), note.clone()], &tar)?;
        assert_eq!(read_index(&tar)?, index);
        let out = dir.path().join("out");
        unpack_entry(&tar, "data", &out)?;
        assert_eq!(fs::read_to_string(out.join("sub/a.txt"))?, "a");
        assert_eq!(fs::read_link(out.join("link"))?, Path::new("sub/a.txt"));
        unpack_entry(&tar, "note.txt", &dir.path().join("note2.txt"))?;
        assert_eq!(fs::read_to_string(dir.path().join("note2.txt"))?, "n");
        assert!(matches!(
            unpack_entry(&tar, "nothing", &dir.path().join("x")),
            Err(BackupError::Refused(_))
        ));
        Ok(())
    }
}
