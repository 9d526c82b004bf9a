//! Processes seen from the agent: starting a shim, watching it, re-adopting it, signalling the
//! service's process group, and finding who holds a port.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::fsutil::{Durability, create_private_dir, replace_file};
use crate::shim::{
    self, EXIT_FILE, ExitRecord, Handshake, RECORD_FILE, SPEC_FILE, ShimRecord, ShimSpec,
};

/// A running service as the agent knows it: its shim (which outlives the agent) and its pid.
#[derive(Debug)]
pub struct Proc {
    pub shim_pid: u32,
    /// The service's main pid, which is also its process group id.
    pub pid: u32,
    exited: AsyncFd<OwnedFd>,
}

impl Proc {
    /// Resolves once the shim has exited (and so the service has, and its logs are flushed).
    pub async fn wait_shim(&self) {
        // A pidfd becomes readable when its process exits.
        loop {
            match self.exited.readable().await {
                Ok(mut guard) => {
                    if poll_readable(self.exited.get_ref()) {
                        return;
                    }
                    guard.clear_ready();
                }
                Err(_) => return,
            }
        }
    }

    /// Sends `sig` to the service's whole process group.
    pub fn signal_group(&self, sig: i32) -> io::Result<()> {
        let sig = Signal::try_from(sig).map_err(io::Error::other)?;
        match killpg(Pid::from_raw(self.pid as i32), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(io::Error::from(e)),
        }
    }
}

fn poll_readable(fd: &OwnedFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    unsafe { libc::poll(&mut pfd, 1, 0) > 0 }
}

/// A pidfd for `pid`, to learn when it exits even though it is not (or no longer) our child.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; on success it returns a new fd that we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn watch_pidfd(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd stays open and keeps its number until the AsyncFd that owns it drops.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

/// Why a start failed before the service ran.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot prepare {0}: {1}")]
    Prepare(PathBuf, #[source] io::Error),
    #[error("cannot start the log holder: {0}")]
    Shim(#[source] io::Error),
    #[error("{0}")]
    Command(String),
}

/// Starts a shim for `spec` in `run_dir` and waits for it to report the service's pid.
pub async fn spawn(shim_exe: &Path, run_dir: &Path, spec: &ShimSpec) -> Result<Proc, SpawnError> {
    create_private_dir(run_dir).map_err(|e| SpawnError::Prepare(run_dir.to_path_buf(), e))?;
    fs::create_dir_all(&spec.cwd).map_err(|e| SpawnError::Prepare(spec.cwd.clone(), e))?;
    for f in [RECORD_FILE, EXIT_FILE] {
        let _ = fs::remove_file(run_dir.join(f));
    }
    let body =
        serde_json::to_vec_pretty(spec).map_err(|e| SpawnError::Shim(io::Error::other(e)))?;
    replace_file(&run_dir.join(SPEC_FILE), &body, 0o600, Durability::Process)
        .map_err(|e| SpawnError::Prepare(run_dir.to_path_buf(), e))?;
    let shim_log = fs::File::create(run_dir.join("shim.log")).map_err(SpawnError::Shim)?;

    let mut cmd = std::process::Command::new(shim_exe);
    cmd.arg("shim")
        .arg(run_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(shim_log);
    // SAFETY: setsid is async-signal-safe. A session of its own keeps the shim (and so the
    // service) out of reach of the terminal's Ctrl-C and hangup, which are meant for the agent.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(io::Error::other)?;
            crate::shim::close_inherited_fds();
            Ok(())
        });
    }
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(SpawnError::Shim)?;
    let shim_pid = child
        .id()
        .ok_or_else(|| SpawnError::Shim(io::Error::other("shim exited at once")))?;
    // Open the pidfd while the shim is still our unreaped child, so its pid cannot be reused first.
    let pidfd = pidfd_open(shim_pid).map_err(SpawnError::Shim)?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| SpawnError::Shim(io::Error::other("no stdout")))?;
    let mut line = String::new();
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await;
    // Tokio reaps the shim in the background when it exits; we watch it through the pidfd.
    drop(child);
    match read {
        Ok(Ok(n)) if n > 0 => {}
        _ => {
            let detail = fs::read_to_string(run_dir.join("shim.log")).unwrap_or_default();
            return Err(SpawnError::Shim(io::Error::other(format!(
                "no handshake from the log holder: {}",
                detail.trim()
            ))));
        }
    }
    match serde_json::from_str::<Handshake>(line.trim()) {
        Ok(Handshake::Running { pid }) => {
            let exited = watch_pidfd(pidfd).map_err(SpawnError::Shim)?;
            Ok(Proc {
                shim_pid,
                pid,
                exited,
            })
        }
        Ok(Handshake::SpawnFailed { error }) => Err(SpawnError::Command(error)),
        Err(e) => Err(SpawnError::Shim(io::Error::other(format!(
            "bad handshake {line:?}: {e}"
        )))),
    }
}

/// What a restarted agent finds in a service's run folder.
#[derive(Debug)]
pub enum Found {
    /// Nothing ran, or the folder was cleaned up.
    Nothing,
    /// The shim still runs: re-adopted.
    Alive(Proc),
    /// The service ended while no agent watched; here is how.
    Ended(ExitRecord),
    /// The shim is gone without a record but the service may still run: it was killed.
    Orphan { pid: u32 },
}

/// Looks for a service that an earlier agent started, and re-adopts it if its shim still runs.
pub fn adopt(run_dir: &Path) -> Found {
    let Ok(bytes) = fs::read(run_dir.join(RECORD_FILE)) else {
        return Found::Nothing;
    };
    let Ok(rec) = serde_json::from_slice::<ShimRecord>(&bytes) else {
        return Found::Nothing;
    };
    // A record of an earlier boot describes processes that no longer exist; their pids may
    // belong to anything now.
    let same_boot = !rec.boot_id.is_empty() && rec.boot_id == shim::boot_id();
    // The pid, its start time and the shim's command line naming this run folder together
    // prove the shim is ours; checked again after opening the pidfd, which pins the process.
    let shim_is_ours = || {
        same_boot
            && shim::start_ticks(rec.shim_pid) == Some(rec.shim_started)
            && is_our_shim(rec.shim_pid, run_dir)
    };
    if shim_is_ours()
        && let Ok(fd) = pidfd_open(rec.shim_pid)
        && shim_is_ours()
        && let Ok(exited) = watch_pidfd(fd)
    {
        return Found::Alive(Proc {
            shim_pid: rec.shim_pid,
            pid: rec.pid,
            exited,
        });
    }
    if let Ok(bytes) = fs::read(run_dir.join(EXIT_FILE))
        && let Ok(exit) = serde_json::from_slice::<ExitRecord>(&bytes)
    {
        return Found::Ended(exit);
    }
    // The shim is gone without a record. Only a process that is provably the service — same
    // boot, same start time, still leading its own group — may be signalled.
    let service_is_ours = same_boot
        && rec.pid > 1
        && shim::start_ticks(rec.pid) == Some(rec.started)
        && nix::unistd::getpgid(Some(Pid::from_raw(rec.pid as i32)))
            .is_ok_and(|g| g.as_raw() as u32 == rec.pid);
    if service_is_ours {
        Found::Orphan { pid: rec.pid }
    } else {
        clear_run(run_dir);
        Found::Nothing
    }
}

/// The spec a running shim was started with.
pub fn read_spec(run_dir: &Path) -> Option<ShimSpec> {
    serde_json::from_slice(&fs::read(run_dir.join(SPEC_FILE)).ok()?).ok()
}

/// Reads the exit record a shim left, once it has exited.
pub fn read_exit(run_dir: &Path) -> Option<ExitRecord> {
    serde_json::from_slice(&fs::read(run_dir.join(EXIT_FILE)).ok()?).ok()
}

/// Forgets a finished run, so a later agent does not mistake it for a live one.
pub fn clear_run(run_dir: &Path) {
    for f in [RECORD_FILE, EXIT_FILE] {
        let _ = fs::remove_file(run_dir.join(f));
    }
}

fn is_our_shim(pid: u32, run_dir: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.get(1) == Some(&&b"shim"[..])
        && args.get(2) == Some(&run_dir.as_os_str().as_encoded_bytes())
}

/// Ends a process group that lost its shim: SIGTERM, then SIGKILL after `grace`.
pub async fn kill_group(pgid: u32, grace: Duration) {
    let group = Pid::from_raw(pgid as i32);
    if killpg(group, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        if killpg(group, None).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = killpg(group, Signal::SIGKILL);
}

/// Who holds a TCP port: pid and process name, when this user can see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortHolder {
    pub pid: Option<u32>,
    pub name: Option<String>,
}

impl std::fmt::Display for PortHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.pid, &self.name) {
            (Some(pid), Some(name)) => write!(f, "pid {pid} ({name})"),
            (Some(pid), None) => write!(f, "pid {pid}"),
            _ => f.write_str("a process this user cannot see"),
        }
    }
}

/// Whether `port` can be listened on; if not, who holds it.
pub fn port_holder(port: u16) -> Option<PortHolder> {
    // A listener in /proc/net names the holder; binding the wildcard address catches the rest
    // (it fails if any local address holds the port).
    if let Some(holder) = find_listener(port) {
        return Some(holder);
    }
    match std::net::TcpListener::bind(("0.0.0.0", port)) {
        Ok(_) => None,
        Err(_) => Some(PortHolder {
            pid: None,
            name: None,
        }),
    }
}

/// Finds the process listening on `port` through /proc/net and /proc/*/fd.
fn find_listener(port: u16) -> Option<PortHolder> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT; state 0A is LISTEN; column 9 is the inode.
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let Some(p) = local
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok())
            else {
                continue;
            };
            if p == port && *state == "0A" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path())
                && inodes.iter().any(|i| target.as_os_str() == i.as_str())
            {
                let name = fs::read_to_string(entry.path().join("comm"))
                    .ok()
                    .map(|s| s.trim().to_owned());
                return Some(PortHolder {
                    pid: Some(pid),
                    name,
                });
            }
        }
    }
    Some(PortHolder {
        pid: None,
        name: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_port_names_its_holder() -> io::Result<()> {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        let holder = port_holder(port).expect("port is held");
        assert_eq!(holder.pid, Some(std::process::id()));
        assert!(holder.name.is_some());
        drop(l);
        assert_eq!(port_holder(port), None);
        Ok(())
    }
}
