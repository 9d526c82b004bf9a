//! A connection to another host's agent: one SSH master (ControlMaster), the host's
//! `homeport remote hello` read over it (where the agent listens, and its token), and a local
//! forward from a Unix socket in our data folder (0600: only this user can connect) to the
//! agent's loopback port there. The token lives in this process's memory only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use homeport_client::Client;
use homeport_types::RemoteHello;

use crate::record::{HostFiles, HostRecord};
use crate::ssh::{Master, Ssh, SshError, quote};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("{host}: {detail}")]
    BadHello { host: String, detail: String },
    #[error("{0}")]
    Record(#[from] crate::record::RecordError),
}

impl LinkError {
    pub fn is_transient(&self) -> bool {
        match self {
            LinkError::Ssh(e) => e.is_transient(),
            LinkError::BadHello { .. } => true,
            LinkError::Record(_) => false,
        }
    }
}

/// The agent there, as reached through the forward.
#[derive(Debug, Clone)]
struct Api {
    addr: std::net::SocketAddr,
    token: String,
}

/// A live connection to a host.
pub struct Connection {
    master: Master,
    record: HostRecord,
    sock: PathBuf,
    hello: RemoteHello,
    api: Option<Api>,
}

/// How long a first login may take (a slow network, a ProxyJump).
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(30);

/// The `ssh` for an enrolled host, with its pinned key.
pub fn ssh_for(data: &Path, record: &HostRecord) -> Result<Ssh, LinkError> {
    let files = HostFiles::new(data, &record.name);
    let dest = record.destination().map_err(|e| {
        LinkError::Ssh(SshError::Other {
            dest: record.destination.clone(),
            detail: e.to_string(),
        })
    })?;
    Ok(Ssh::new(&record.name, dest, &files).pinned(&record.fingerprint))
}

/// Runs `homeport remote hello` there: versions, folders, where the agent listens, and (with
/// `token`) its token.
pub async fn hello(ssh: &Ssh, remote_bin: &str, token: bool) -> Result<RemoteHello, LinkError> {
    let mut line = format!("{} remote hello", quote(remote_bin)?);
    if token {
        line.push_str(" --token");
    }
    let out = ssh.run(&line, None).await?;
    // A login shell's rc files may print lines of their own before ours.
    let json = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| LinkError::BadHello {
            host: ssh.name.clone(),
            detail: format!(
                "`{line}` printed no answer: {}",
                out.trim().chars().take(200).collect::<String>()
            ),
        })?;
    serde_json::from_str(json).map_err(|e| LinkError::BadHello {
        host: ssh.name.clone(),
        detail: format!("`{line}` answered something this version cannot read ({e})"),
    })
}

/// A loopback `host:port`, parsed.
fn loopback(addr: &str) -> Option<std::net::SocketAddr> {
    let sa: std::net::SocketAddr = addr.parse().ok()?;
    sa.ip().is_loopback().then_some(sa)
}

impl Connection {
    /// Logs in (as `tag`: the agent's link and a CLI's own use different sockets), reads the
    /// hello and, when an agent runs there, forwards to it.
    pub async fn open(data: &Path, record: &HostRecord, tag: &str) -> Result<Self, LinkError> {
        let files = HostFiles::new(data, &record.name);
        let ssh = ssh_for(data, record)?.with_control(files.control(tag));
        let master = Master::start(ssh, CONNECT_DEADLINE).await?;
        let hello = hello(master.ssh(), &record.remote_bin, true).await?;
        let mut c = Connection {
            master,
            record: record.clone(),
            sock: files.forward(tag),
            hello,
            api: None,
        };
        c.attach().await?;
        Ok(c)
    }

    /// Points the forward at the agent the hello names (if any).
    async fn attach(&mut self) -> Result<(), LinkError> {
        let want = match (&self.hello.agent, &self.hello.token) {
            (Some(ep), Some(token)) => {
                let addr = loopback(&ep.addr).ok_or_else(|| LinkError::BadHello {
                    host: self.record.name.clone(),
                    detail: format!("its agent listens on {}, not on loopback", ep.addr),
                })?;
                Some(Api {
                    addr,
                    token: token.clone(),
                })
            }
            _ => None,
        };
        let same = match (&self.api, &want) {
            (Some(a), Some(b)) => a.addr == b.addr,
            _ => false,
        };
        if !same {
            if let Some(old) = self.api.take() {
                let _ = self.master.cancel_forward(&self.sock, old.addr).await;
            }
            if let Some(api) = &want {
                self.master.forward(&self.sock, api.addr).await?;
            }
        }
        self.api = want;
        Ok(())
    }

    /// Reads the hello again (the agent there may have stopped, or started on another port)
    /// and moves the forward if it must.
    pub async fn refresh(&mut self) -> Result<(), LinkError> {
        self.hello = hello(self.master.ssh(), &self.record.remote_bin, true).await?;
        self.attach().await
    }

    pub fn hello(&self) -> &RemoteHello {
        &self.hello
    }

    /// Whether an agent answers there (as the last hello said).
    pub fn agent_running(&self) -> bool {
        self.api.is_some()
    }

    /// A client of the agent there, through the forward.
    pub fn client(&self) -> Option<Client> {
        let api = self.api.as_ref()?;
        Some(Client::over_unix_socket(
            &self.sock,
            &api.addr.to_string(),
            &api.token,
        ))
    }

    /// The socket, address and token a proxy sends requests with (the agent's link).
    pub fn endpoint(&self) -> Option<(PathBuf, String, String)> {
        let api = self.api.as_ref()?;
        Some((self.sock.clone(), api.addr.to_string(), api.token.clone()))
    }

    pub fn master(&self) -> &Master {
        &self.master
    }

    pub fn master_mut(&mut self) -> &mut Master {
        &mut self.master
    }

    pub fn record(&self) -> &HostRecord {
        &self.record
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_loopback_agent_is_forwarded_to() {
        let port = |a: &str| loopback(a).map(|s| s.port());
        assert_eq!(port("127.0.0.1:7747"), Some(7747));
        assert_eq!(port("[::1]:7747"), Some(7747));
        assert_eq!(port("0.0.0.0:7747"), None);
        assert_eq!(port("10.0.0.2:7747"), None);
        assert_eq!(port("nonsense"), None);
    }
}
