//! The agent's data folder holds production data, logs and the API token: it and everything in
//! it belong to the agent's user alone. [`secure_data_dir`] checks that at every agent start and
//! makes private whatever is not (a folder made before the agent first ran, a file copied in with
//! its mode, a file an older version left readable); [`create_new_private`] creates a file for
//! data without ever writing through a link someone left in its place.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the data folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "the data folder {0} belongs to another user (uid {1}); the agent keeps its data only in a folder of its own user's: set [agent] data_dir to another folder"
    )]
    NotOurs(PathBuf, u32),
    #[error(
        "the data folder {0} can be written by other users (mode {1:04o}), so someone may have left files or links in it; check what it holds, then run `chmod 700 {0}`"
    )]
    WritableByOthers(PathBuf, u32),
    #[error("the data folder {0} is not a folder")]
    NotAFolder(PathBuf),
    #[error("cannot make {0} private: {1}")]
    Io(PathBuf, #[source] io::Error),
}

/// What [`secure_data_dir`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tightened {
    /// Folders and files that other users could read or enter, now private.
    pub made_private: Vec<PathBuf>,
    /// Entries of another user's found inside (left as they are: not ours to change).
    pub foreign: Vec<PathBuf>,
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

fn egid() -> u32 {
    // SAFETY: getegid cannot fail and touches no memory.
    unsafe { libc::getegid() }
}

/// Creates `dir` (0700) if it is missing; refuses it if it belongs to another user or others can
/// write it; then makes it and everything in it private: folders 0700, files without any group or
/// other permission (an executable in a release stays executable by its owner). Symbolic links
/// are not followed.
pub fn secure_data_dir(dir: &Path) -> Result<Tightened, DataDirError> {
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |e| DataDirError::Io(p, e)
    };
    crate::create_private_dir(dir).map_err(io_err(dir))?;
    // The folder itself may be a link (a data folder on another disk); what it names counts.
    let meta = fs::metadata(dir).map_err(io_err(dir))?;
    if !meta.is_dir() {
        return Err(DataDirError::NotAFolder(dir.to_path_buf()));
    }
    if meta.uid() != euid() {
        return Err(DataDirError::NotOurs(dir.to_path_buf(), meta.uid()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    // Group-writable is fine only for the user's own group (a private group, as Debian makes).
    if mode & 0o002 != 0 || (mode & 0o020 != 0 && meta.gid() != egid()) {
        return Err(DataDirError::WritableByOthers(dir.to_path_buf(), mode));
    }
    let mut out = Tightened::default();
    tighten(dir, &meta, &mut out).map_err(io_err(dir))?;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(DataDirError::Io(d, e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err(&d))?;
            let path = entry.path();
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                // Gone meanwhile (a log rotated, a temp file renamed): nothing to do.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(DataDirError::Io(path, e)),
            };
            if meta.file_type().is_symlink() {
                continue;
            }
            if meta.uid() != euid() {
                out.foreign.push(path);
                continue;
            }
            tighten(&path, &meta, &mut out).map_err(io_err(&path))?;
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(out)
}

fn tighten(path: &Path, meta: &fs::Metadata, out: &mut Tightened) -> io::Result<()> {
    let mode = meta.permissions().mode() & 0o7777;
    let private = if meta.is_dir() { 0o700 } else { mode & 0o700 };
    if mode != private && mode & 0o077 != 0 {
        match fs::set_permissions(path, fs::Permissions::from_mode(private)) {
            Ok(()) => out.made_private.push(path.to_path_buf()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Creates `path` for writing: new (never an existing file, never through a symbolic link left
/// in its place) and 0600 from the first byte.
pub fn create_new_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Opens `path` to append to it, creating it 0600; refuses (with a message that says so) when
/// `path` is a symbolic link, so what is written never lands in a file the link names.
pub fn open_append_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| refused_link(path, e))
}

/// ELOOP from O_NOFOLLOW, said in words.
fn refused_link(path: &Path, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        io::Error::new(
            e.kind(),
            format!(
                "{} is a symbolic link; refusing to write through it (remove it, and the agent makes a new file)",
                path.display()
            ),
        )
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> io::Result<u32> {
        Ok(fs::symlink_metadata(p)?.permissions().mode() & 0o777)
    }

    #[test]
    fn a_data_folder_made_readable_is_made_private_without_following_links()
    -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let data = tmp.path().join("data");
        fs::create_dir_all(data.join("logs/a"))?;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755))?;
        fs::set_permissions(data.join("logs"), fs::Permissions::from_mode(0o755))?;
        fs::set_permissions(data.join("logs/a"), fs::Permissions::from_mode(0o750))?;
        fs::write(data.join("state.db"), "x")?;
        fs::set_permissions(data.join("state.db"), fs::Permissions::from_mode(0o644))?;
        fs::write(data.join("logs/a/web.log"), "x")?;
        fs::set_permissions(
            data.join("logs/a/web.log"),
            fs::Permissions::from_mode(0o664),
        )?;
        fs::write(data.join("server"), "#!/bin/sh")?;
        fs::set_permissions(data.join("server"), fs::Permissions::from_mode(0o755))?;
        // A link out of the folder: what it names is not the agent's to change.
        let outside = tmp.path().join("outside");
        fs::write(&outside, "x")?;
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o644))?;
        std::os::unix::fs::symlink(&outside, data.join("link"))?;

        let t = secure_data_dir(&data)?;
        assert_eq!(mode(&data)?, 0o700);
        assert_eq!(mode(&data.join("logs"))?, 0o700);
        assert_eq!(mode(&data.join("logs/a"))?, 0o700);
        assert_eq!(mode(&data.join("state.db"))?, 0o600);
        assert_eq!(mode(&data.join("logs/a/web.log"))?, 0o600);
        assert_eq!(
            mode(&data.join("server"))?,
            0o700,
            "still executable by its owner"
        );
        assert_eq!(mode(&outside)?, 0o644);
        assert_eq!(t.made_private.len(), 6, "{t:?}");
        assert_eq!(
            secure_data_dir(&data)?,
            Tightened::default(),
            "nothing left to do"
        );
        Ok(())
    }

    #[test]
    fn a_data_folder_others_can_write_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let data = tmp.path().join("data");
        fs::create_dir(&data)?;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o777))?;
        let err = secure_data_dir(&data).err().ok_or("accepted")?;
        assert!(
            matches!(err, DataDirError::WritableByOthers(_, 0o777)),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 700"), "{err}");
        Ok(())
    }

    #[test]
    fn new_private_files_are_never_written_through_a_link() -> Result<(), Box<dyn std::error::Error>>
    {
        let tmp = tempfile::tempdir()?;
        let target = tmp.path().join("bashrc");
        fs::write(&target, "mine\n")?;
        let log = tmp.path().join("web.log");
        std::os::unix::fs::symlink(&target, &log)?;
        let err = open_append_private(&log)
            .err()
            .ok_or("opened through the link")?;
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(create_new_private(&log).is_err());
        // A dangling link is refused too, and creates nothing where it points.
        let dangling = tmp.path().join("copy.db");
        std::os::unix::fs::symlink(tmp.path().join("nowhere.db"), &dangling)?;
        assert!(create_new_private(&dangling).is_err());
        assert!(!tmp.path().join("nowhere.db").exists());
        assert_eq!(fs::read_to_string(&target)?, "mine\n");
        let fresh = tmp.path().join("fresh.log");
        drop(open_append_private(&fresh)?);
        assert_eq!(mode(&fresh)?, 0o600);
        Ok(())
    }
}
