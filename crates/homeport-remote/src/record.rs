//! What Homeport keeps about each enrolled host, in the data folder (never in the config file,
//! which people publish): `hosts/NAME/host.json`, the pinned key in `hosts/NAME/known_hosts`,
//! and while connected the SSH control socket and the forwarded agent socket beside them. The
//! folder is 0700, the files 0600.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dest::{Destination, check_name};

/// Under the data folder.
pub const HOSTS_DIR: &str = "hosts";

/// `hosts/NAME/host.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub name: String,
    /// As the user gave it to `homeport host add`.
    pub destination: String,
    /// `SHA256:…` of the pinned host key (its line is in `known_hosts`).
    pub fingerprint: String,
    /// `ED25519`, `ECDSA`, `RSA`.
    pub key_type: String,
    pub os: String,
    pub arch: String,
    /// The home folder of the user Homeport logs in as there.
    pub home: String,
    /// The `homeport` binary there.
    pub remote_bin: String,
    /// The PATH of a login shell there, which the host's agent runs with.
    pub path: String,
    /// What starts the agent there: `systemd`, `launchd` or `detached` (no service manager
    /// for the user: the agent runs until the host reboots).
    pub run_by: String,
    /// The version installed by the last `host add`.
    pub version: String,
    /// When it was enrolled (RFC 3339 UTC).
    pub enrolled: String,
}

impl HostRecord {
    pub fn destination(&self) -> Result<Destination, crate::dest::BadDestination> {
        self.destination.parse()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("no host {0} is enrolled; add it with `homeport host add {0} user@host`")]
    Unknown(String),
    #[error("{0}")]
    BadName(String),
    #[error("cannot read {0}: {1}")]
    Unreadable(PathBuf, String),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, #[source] std::io::Error),
}

/// The files of one host.
#[derive(Debug, Clone)]
pub struct HostFiles {
    pub dir: PathBuf,
}

impl HostFiles {
    pub fn new(data: &Path, name: &str) -> Self {
        Self {
            dir: data.join(HOSTS_DIR).join(name),
        }
    }

    pub fn record(&self) -> PathBuf {
        self.dir.join("host.json")
    }

    /// The pinned host key: the only one `ssh` accepts for this host.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// An SSH control socket (ControlMaster): `tag` keeps the agent's long-lived connection and
    /// a CLI's own ones apart.
    pub fn control(&self, tag: &str) -> PathBuf {
        self.dir.join(format!("{tag}.ctl"))
    }

    /// The local end of the forward to the host agent's API (a Unix socket only this user
    /// can connect to).
    pub fn forward(&self, tag: &str) -> PathBuf {
        self.dir.join(format!("{tag}.sock"))
    }
}

/// The name SSH files the host key under in our known_hosts (`HostKeyAlias`): the same
/// whatever address or port reaches the host.
pub fn key_alias(name: &str) -> String {
    format!("homeport-{name}")
}

pub fn load(data: &Path, name: &str) -> Result<HostRecord, RecordError> {
    check_name(name).map_err(RecordError::BadName)?;
    let path = HostFiles::new(data, name).record();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RecordError::Unknown(name.to_owned()));
        }
        Err(e) => return Err(RecordError::Unreadable(path, e.to_string())),
    };
    serde_json::from_slice(&bytes).map_err(|e| RecordError::Unreadable(path, e.to_string()))
}

/// Every enrolled host, by name. A folder without a readable record (an enrolment that was
/// interrupted) is skipped.
pub fn list(data: &Path) -> Vec<HostRecord> {
    let mut out: Vec<HostRecord> = std::fs::read_dir(data.join(HOSTS_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| load(data, &e.file_name().to_string_lossy()).ok())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Makes `hosts/NAME/` (0700, and its parents private too).
pub fn create_dir(data: &Path, name: &str) -> Result<HostFiles, RecordError> {
    check_name(name).map_err(RecordError::BadName)?;
    let files = HostFiles::new(data, name);
    for dir in [data.to_path_buf(), data.join(HOSTS_DIR), files.dir.clone()] {
        homeport_fs::create_private_dir(&dir).map_err(|e| RecordError::Write(dir.clone(), e))?;
    }
    Ok(files)
}

pub fn save(data: &Path, record: &HostRecord) -> Result<(), RecordError> {
    let files = create_dir(data, &record.name)?;
    let path = files.record();
    let body = serde_json::to_vec_pretty(record)
        .map_err(|e| RecordError::Write(path.clone(), std::io::Error::other(e)))?;
    homeport_fs::atomic_write(&path, &body, 0o600).map_err(|e| RecordError::Write(path, e))
}

/// Forgets a host: its record, its pinned key and any sockets left.
pub fn remove(data: &Path, name: &str) -> Result<(), RecordError> {
    check_name(name).map_err(RecordError::BadName)?;
    let files = HostFiles::new(data, name);
    if !files.record().exists() {
        return Err(RecordError::Unknown(name.to_owned()));
    }
    std::fs::remove_dir_all(&files.dir).map_err(|e| RecordError::Write(files.dir.clone(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> HostRecord {
        HostRecord {
            name: name.into(),
            destination: "ana@vps:2222".into(),
            fingerprint: "SHA256:abc".into(),
            key_type: "ED25519".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            home: "/home/ana".into(),
            remote_bin: "/home/ana/.local/lib/homeport/homeport".into(),
            path: "/usr/bin:/bin".into(),
            run_by: "systemd".into(),
            version: "0.1.0".into(),
            enrolled: "2026-12-01T10:00:00Z".into(),
        }
    }

    #[test]
    fn records_are_private_listed_by_name_and_removed_whole()
    -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        save(&data, &record("vps"))?;
        save(&data, &record("mini"))?;
        std::fs::create_dir_all(data.join("hosts/half"))?;
        let names: Vec<String> = list(&data).into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["mini", "vps"]);
        let files = HostFiles::new(&data, "vps");
        assert_eq!(
            std::fs::metadata(&files.dir)?.permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(files.record())?.permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load(&data, "vps")?, record("vps"));
        assert!(matches!(load(&data, "nope"), Err(RecordError::Unknown(_))));
        assert!(matches!(load(&data, "../x"), Err(RecordError::BadName(_))));
        remove(&data, "vps")?;
        assert!(!files.dir.exists());
        assert!(matches!(remove(&data, "vps"), Err(RecordError::Unknown(_))));
        Ok(())
    }
}
