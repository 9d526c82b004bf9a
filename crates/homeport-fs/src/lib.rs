//! Small file and token helpers that every Homeport crate needs the same way, with no Homeport
//! dependency, so that the crates that use them need not depend on one another for them.
//!
//! - [`atomic_write`] / [`replace_file`]: a file is either the old one or the new one after a
//!   crash at any moment (temp file, fsync, rename, fsync of the folder).
//! - [`sync_dir`]: make a rename or a new entry in a folder durable.
//! - [`create_private_dir`], [`create_private_file`]: data is created 0700 / 0600, never made
//!   readable to others first and tightened later.
//! - [`hex`], [`random_token`]: lowercase hex of bytes (checksums, revisions) and of random bytes
//!   from the OS (tokens, session ids).
//! - [`secure_data_dir`]: the agent's data folder and everything in it private, checked at every
//!   start; [`create_new_private`], [`open_append_private`]: data files created 0600 and never
//!   written through a symbolic link left in their place.
//! - [`inherit`]: the agent's own umask (077) and raised descriptor limit, and giving the
//!   programs it starts back what the agent started with.

pub mod inherit;
mod private;

pub use private::{
    DataDirError, Tightened, create_new_private, open_append_private, secure_data_dir,
};

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Writes `bytes` to `path` so that a crash at any moment leaves either the old file or the new
/// one, never a mix: write a temp file beside it, fsync it, rename it over, fsync the folder.
/// `mode` is applied to the temp file at creation, so the content is never readable by others.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    replace_file(path, bytes, mode, Durability::Disk)
}

/// How much a write must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A power loss: fsync the file and its folder. For config, tokens and state.
    Disk,
    /// A process crash only: temp file and rename, no fsync. For run records that describe live
    /// processes, which a power loss ends anyway; skipping two fsyncs keeps restarts fast.
    Process,
}

/// [`atomic_write`] with a choice of [`Durability`].
pub fn replace_file(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    durability: Durability,
) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if durability == Durability::Disk {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durability == Durability::Disk {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes the folder's entries (a rename, a new file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates a folder and its parents with mode 0700 for the ones it creates.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Opens `path` for writing, creating it with mode 0600 if it does not exist; an existing file
/// keeps its content.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// 32 random bytes from the OS as 64 hex digits: a token or session id no one can guess.
pub fn random_token() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(io::Error::other)?;
    Ok(hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_replaces_content_and_sets_mode() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("token");
        atomic_write(&p, b"one", 0o600)?;
        atomic_write(&p, b"two", 0o600)?;
        assert_eq!(fs::read(&p)?, b"two");
        assert_eq!(fs::metadata(&p)?.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            fs::read_dir(dir.path())?.count(),
            1,
            "no temp file left behind"
        );
        Ok(())
    }

    #[test]
    fn private_files_and_folders_are_created_for_the_owner_only() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let sub = dir.path().join("a/b");
        create_private_dir(&sub)?;
        assert_eq!(fs::metadata(&sub)?.permissions().mode() & 0o777, 0o700);
        let f = sub.join("lock");
        fs::write(&f, b"kept")?;
        drop(create_private_file(&f)?);
        assert_eq!(fs::read(&f)?, b"kept", "an existing file keeps its content");
        let g = sub.join("new");
        drop(create_private_file(&g)?);
        assert_eq!(fs::metadata(&g)?.permissions().mode() & 0o777, 0o600);
        Ok(())
    }

    #[test]
    fn hex_and_tokens() -> io::Result<()> {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        let (a, b) = (random_token()?, random_token()?);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        Ok(())
    }
}
