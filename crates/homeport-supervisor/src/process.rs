//! Processes seen from the agent: starting a shim, watching it, re-adopting it, signalling the
//! service's process group, and finding who holds a port.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use homeport_platform::Backend;
pub use homeport_platform::PortHolder;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::fsutil::{Durability, create_private_dir, replace_file};
use crate::shim::{EXIT_FILE, ExitRecord, Handshake, RECORD_FILE, SPEC_FILE, ShimRecord, ShimSpec};

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
        Backend::current().signal_group(self.pid, sig).map(drop)
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

    // No code runs between fork and exec in this multi-threaded process (where only
    // async-signal-safe calls would be allowed): the shim moves itself into a session of its own
    // and closes what it inherited, and std can spawn it with posix_spawn.
    let mut cmd = std::process::Command::new(shim_exe);
    cmd.arg("shim")
        .arg(run_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(shim_log);
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
    let same_boot = !rec.boot_id.is_empty() && rec.boot_id == homeport_platform::boot_id();
    // The pid, its start time and the shim's command line naming this run folder together
    // prove the shim is ours; checked again after opening the pidfd, which pins the process.
    let shim_is_ours = || {
        same_boot
            && homeport_platform::start_mark(rec.shim_pid) == Some(rec.shim_started)
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
        && homeport_platform::start_mark(rec.pid) == Some(rec.started)
        && homeport_platform::leads_group(rec.pid);
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
    let backend = Backend::current();
    if !matches!(backend.signal_group(pgid, libc::SIGTERM), Ok(true)) {
        return;
    }
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        if !homeport_platform::group_alive(pgid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = backend.signal_group(pgid, libc::SIGKILL);
}

/// Whether `port` can be listened on; if not, who holds it.
pub fn port_holder(port: u16) -> Option<PortHolder> {
    Backend::current().port_holder(port)
}
