//! The agent's files beside state.db: the single-instance lock, the API token and `agent.json`,
//! which tells clients where the agent listens.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use homeport_fs::atomic_write;
use homeport_types::AgentEndpoint;
use nix::fcntl::{Flock, FlockArg};

use homeport_types::files::{ENDPOINT as ENDPOINT_FILE, LOCK as LOCK_FILE, TOKEN as TOKEN_FILE};

/// Held for the agent's lifetime; the kernel releases it if the agent dies, even by SIGKILL.
pub struct InstanceLock {
    _lock: Flock<File>,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another homeport agent is already running{}", .0.as_ref().map(|e| format!(" (pid {}, listening on http://{})", e.pid, e.addr)).unwrap_or_default())]
    AlreadyRunning(Option<AgentEndpoint>),
    #[error("cannot lock {0}: {1}")]
    Io(PathBuf, #[source] io::Error),
}

impl InstanceLock {
    pub fn acquire(data_dir: &Path) -> Result<Self, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let mut file =
            homeport_fs::create_private_file(&path).map_err(|e| LockError::Io(path.clone(), e))?;
        // A client checks that an agent runs by trying the lock itself and letting go at once
        // (`Client::discover`, `homeport agent stop`): a starting agent that meets such a probe
        // tries again for a moment. A running agent holds it for good.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(Self { _lock: lock, path }),
                Err((f, nix::errno::Errno::EWOULDBLOCK))
                    if std::time::Instant::now() < deadline =>
                {
                    file = f;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(LockError::AlreadyRunning(read_endpoint(data_dir)));
                }
                Err((_, e)) => return Err(LockError::Io(path, e.into())),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads the API token, creating a random one (0600) on first use.
pub fn load_or_create_token(data_dir: &Path) -> io::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    match fs::read_to_string(&path) {
        Ok(t) if t.trim().len() >= 32 => {
            // Tighten a token file someone loosened by hand.
            if fs::metadata(&path)?.permissions().mode() & 0o077 != 0 {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
            }
            return Ok(t.trim().to_owned());
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = homeport_fs::random_token()?;
    atomic_write(&path, token.as_bytes(), 0o600)?;
    Ok(token)
}

pub fn read_token(data_dir: &Path) -> io::Result<String> {
    fs::read_to_string(data_dir.join(TOKEN_FILE)).map(|t| t.trim().to_owned())
}

pub fn write_endpoint(data_dir: &Path, ep: &AgentEndpoint) -> io::Result<()> {
    let body = serde_json::to_vec(ep).map_err(io::Error::other)?;
    atomic_write(&data_dir.join(ENDPOINT_FILE), &body, 0o600)
}

pub fn read_endpoint(data_dir: &Path) -> Option<AgentEndpoint> {
    serde_json::from_slice(&fs::read(data_dir.join(ENDPOINT_FILE)).ok()?).ok()
}

pub fn remove_endpoint(data_dir: &Path) {
    let _ = fs::remove_file(data_dir.join(ENDPOINT_FILE));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        write_endpoint(
            dir.path(),
            &AgentEndpoint {
                pid: 7,
                addr: "127.0.0.1:9".into(),
            },
        )?;
        let first = InstanceLock::acquire(dir.path())?;
        let second = InstanceLock::acquire(dir.path());
        let msg = second.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("already running") && msg.contains("pid 7"),
            "{msg}"
        );
        drop(first);
        assert!(InstanceLock::acquire(dir.path()).is_ok());
        Ok(())
    }

    #[test]
    fn the_token_is_random_private_and_stable() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let t1 = load_or_create_token(dir.path())?;
        assert_eq!(t1.len(), 64);
        assert_eq!(load_or_create_token(dir.path())?, t1);
        assert_eq!(
            fs::metadata(dir.path().join(TOKEN_FILE))?
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let other = tempfile::tempdir()?;
        assert_ne!(load_or_create_token(other.path())?, t1);
        Ok(())
    }
}
