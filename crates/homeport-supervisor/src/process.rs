//! Processes seen from the agent: starting a shim, talking to it, re-adopting it, ending a
//! process group that lost its shim, and finding who holds a port.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use homeport_platform::{BACKEND_ENV, Backend};
use homeport_shim::proto::{Exit, Frames, FromShim, ToShim};
use homeport_types::ExitReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::fsutil::create_private_dir;
use crate::shim::{
    EXIT_FILE, ExitRecord, RECORD_FILE, SOCKET, SPEC_FILE, ShimCommand, ShimRecord, ShimSpec,
};

pub use homeport_platform::PortHolder;

/// How long a shim may take to answer a start (it spawns one process).
const ANSWER_LIMIT: Duration = Duration::from_secs(30);

/// A shim the agent is connected to, with the service it runs, if any.
#[derive(Debug)]
pub struct Proc {
    /// 0 if unknown (a re-adopted shim whose record is unreadable).
    pub shim_pid: u32,
    /// The running service's pid, which is also its process group id; `None` between runs.
    pub pid: Option<u32>,
    stream: UnixStream,
    frames: Frames,
}

impl Proc {
    /// The shim's next message; `None` once it is gone (its connection closed) or spoke
    /// nonsense. Cancel-safe: bytes read before a cancellation stay buffered.
    pub async fn recv(&mut self) -> Option<FromShim> {
        loop {
            match self.frames.next_body() {
                Ok(Some(body)) => {
                    return FromShim::decode(&body)
                        .inspect_err(|e| tracing::warn!("{e}"))
                        .ok();
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("{e}");
                    return None;
                }
            }
            let mut chunk = [0u8; 1024];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.frames.push(&chunk[..n]),
            }
        }
    }

    async fn send(&mut self, msg: &ToShim) -> io::Result<()> {
        self.stream.write_all(&msg.encode()).await
    }

    /// Starts the service through this shim; returns its pid.
    pub async fn start(&mut self, spec: &ShimSpec) -> Result<u32, SpawnError> {
        let gone = |detail: String| SpawnError::Shim(io::Error::other(detail));
        self.send(&ToShim::Spawn(spec.to_wire()))
            .await
            .map_err(|e| gone(format!("the log holder is gone: {e}")))?;
        loop {
            match tokio::time::timeout(ANSWER_LIMIT, self.recv()).await {
                Ok(Some(FromShim::Running { pid, .. })) => {
                    self.pid = Some(pid);
                    return Ok(pid);
                }
                Ok(Some(FromShim::SpawnFailed(e))) => return Err(SpawnError::Command(e)),
                Ok(Some(_)) => continue,
                Ok(None) => return Err(gone("the log holder ended".into())),
                Err(_) => {
                    return Err(gone(format!(
                        "the log holder did not answer within {}",
                        humantime::format_duration(ANSWER_LIMIT)
                    )));
                }
            }
        }
    }

    /// Asks the shim to send `signal` to the service's group, and SIGKILL after `timeout`;
    /// the shim then reports `Exited`.
    pub async fn stop(&mut self, signal: i32, timeout: Duration) -> io::Result<()> {
        self.send(&ToShim::Stop {
            signal,
            timeout_ms: timeout.as_millis() as u64,
        })
        .await
    }

    /// Waits for the service's exit; `None` if the shim went away first.
    pub async fn exited(&mut self) -> Option<Exit> {
        loop {
            match self.recv().await? {
                FromShim::Exited(e) => {
                    self.pid = None;
                    return Some(e);
                }
                _ => continue,
            }
        }
    }

    /// Lets the shim exit (its service has ended and the agent recorded how) and waits until it
    /// has, so that nothing of the service is left when this returns.
    pub async fn quit(mut self) {
        if self.send(&ToShim::Quit).await.is_err() {
            return;
        }
        let drained = async { while self.recv().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drained)
            .await
            .is_err()
        {
            tracing::warn!(shim = self.shim_pid, "a log holder did not exit when asked");
        }
    }

    /// Ends a shim that no longer answers, and its service's group.
    pub async fn kill(self, grace: Duration) {
        if self.shim_pid > 1 {
            // SAFETY: kill with integer arguments; the open connection shows the shim still runs.
            unsafe {
                libc::kill(self.shim_pid as libc::pid_t, libc::SIGKILL);
            }
        }
        if let Some(pid) = self.pid {
            kill_group(pid, grace).await;
        }
    }
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

/// Starts a shim for `run_dir`, connected to this agent; it runs nothing until asked.
pub async fn start_shim(
    shim: &ShimCommand,
    run_dir: &Path,
    backend: Backend,
) -> Result<Proc, SpawnError> {
    create_private_dir(run_dir).map_err(|e| SpawnError::Prepare(run_dir.to_path_buf(), e))?;
    for f in [RECORD_FILE, EXIT_FILE] {
        let _ = fs::remove_file(run_dir.join(f));
    }
    let shim_log = fs::File::create(run_dir.join("shim.log")).map_err(SpawnError::Shim)?;
    // The control socket is bound here, before the shim exists, and handed to it: from the
    // moment there is a shim, a new agent that looks in the run folder reaches it (its
    // connection waits until the shim accepts). A shim that bound the socket itself would be
    // invisible while it starts — to an agent that replaced a killed one just then, the run
    // folder would look empty, and a second shim's socket would cut the first one off.
    let listener = bind_control_socket(run_dir).await?;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(SpawnError::Shim)?;
    // No code runs between fork and exec in this multi-threaded process (where only
    // async-signal-safe calls would be allowed): the shim moves itself into a session of its own
    // and closes what it inherited, and std can spawn it with posix_spawn.
    let mut cmd = std::process::Command::new(&shim.program);
    cmd.args(&shim.args)
        .arg(run_dir)
        .env(BACKEND_ENV, backend.name())
        .env(homeport_fs::inherit::ENV, homeport_fs::inherit::env_value())
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::from(OwnedFd::from(listener)))
        .stderr(shim_log);
    // The command (and with it our copies of the shim's end and of the listener) is dropped
    // right after the spawn: the shim alone holds them.
    let child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(SpawnError::Shim)?;
    // Tokio reaps the shim in the background when it exits; the connection tells us when.
    let shim_pid = child.id().unwrap_or(0);
    drop(child);
    ours.set_nonblocking(true).map_err(SpawnError::Shim)?;
    let stream = UnixStream::from_std(ours).map_err(SpawnError::Shim)?;
    Ok(Proc {
        shim_pid,
        pid: None,
        stream,
        frames: Frames::default(),
    })
}

/// The log holder's own last words, for a start that failed.
pub fn shim_log(run_dir: &Path) -> String {
    fs::read_to_string(run_dir.join("shim.log"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// What a restarted agent finds in a service's run folder.
#[derive(Debug)]
pub enum Found {
    /// Nothing ran, or the folder was cleaned up.
    Nothing,
    /// The shim still runs its service: re-adopted.
    Alive(Proc),
    /// The shim still runs but its service has ended (the agent died while deciding).
    Idle(Proc, Option<ExitReason>),
    /// The service ended while no agent watched; here is how.
    Ended(ExitRecord),
    /// The shim is gone without a record but the service may still run: it was killed.
    Orphan { pid: u32 },
}

/// Looks for a service that an earlier agent started, and re-adopts it if its shim still runs.
/// `patience`: how long a shim that is ending a run may take to say how it ended.
pub async fn adopt(run_dir: &Path, patience: Duration) -> Found {
    let rec = fs::read(run_dir.join(RECORD_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<ShimRecord>(&b).ok());
    // Only a live shim answers on the socket, and only this user can reach it (0700 folder):
    // an answer is proof enough that this is our shim, whatever happened to pids meanwhile.
    if let Ok(stream) = connect(&run_dir.join(SOCKET)).await {
        let mut proc = Proc {
            shim_pid: rec.as_ref().map_or(0, |r| r.shim_pid),
            pid: None,
            stream,
            frames: Frames::default(),
        };
        if proc.send(&ToShim::Hello).await.is_ok() {
            // A shim answers at once, unless it is still starting (its socket waits for it) or
            // ending a run (it answers when the run has ended).
            let answer = match tokio::time::timeout(Duration::from_secs(1), proc.recv()).await {
                Ok(answer) => Ok(answer),
                Err(_) => {
                    tracing::info!(
                        run = %run_dir.display(),
                        "its log holder has not answered yet; waiting up to {}",
                        humantime::format_duration(patience + Duration::from_secs(5))
                    );
                    tokio::time::timeout(patience + Duration::from_secs(5), proc.recv()).await
                }
            };
            match answer {
                Ok(Some(FromShim::Running { pid, .. })) => {
                    proc.pid = Some(pid);
                    return Found::Alive(proc);
                }
                Ok(Some(FromShim::Idle(e))) => {
                    return Found::Idle(proc, e.map(crate::shim::exit_reason));
                }
                Ok(Some(FromShim::Exited(e))) => {
                    return Found::Idle(proc, Some(crate::shim::exit_reason(e)));
                }
                _ => tracing::warn!(run = %run_dir.display(), "a log holder did not answer"),
            }
        }
    }
    if let Some(exit) = read_exit(run_dir) {
        return Found::Ended(exit);
    }
    let Some(rec) = rec else {
        return Found::Nothing;
    };
    // The shim is gone without a record. Only a process that is provably the service — same
    // boot, same start time, still leading its own group — may be signalled; a record of an
    // earlier boot describes processes that no longer exist, whose pids may belong to anything.
    let same_boot = !rec.boot_id.is_empty() && rec.boot_id == homeport_platform::boot_id();
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

/// Binds `RUN_DIR/ctl.sock` for a shim about to start. A socket that still accepts connections
/// is never replaced: a shim holds it (stuck, since it did not answer a new agent), and
/// unlinking it would leave that shim and its service running where no agent can reach them.
async fn bind_control_socket(
    run_dir: &Path,
) -> Result<std::os::unix::net::UnixListener, SpawnError> {
    let path = run_dir.join(SOCKET);
    if connect(&path).await.is_ok() {
        return Err(SpawnError::Shim(io::Error::other(format!(
            "a log holder of an earlier agent still holds {} but does not answer; end it \
             (`lsof {}` names it) and start the service again",
            path.display(),
            path.display()
        ))));
    }
    let bind = || {
        let short = ShortPath::new(&path)?;
        let _ = fs::remove_file(short.path());
        std::os::unix::net::UnixListener::bind(short.path())
    };
    bind().map_err(|e| SpawnError::Prepare(path.clone(), e))
}

/// Connects to a shim's control socket.
pub async fn connect(path: &Path) -> io::Result<UnixStream> {
    let short = ShortPath::new(path)?;
    UnixStream::connect(short.path()).await
}

/// A socket's path short enough for the kernel. A socket's path is limited to about 100 bytes
/// and a run folder may be deeper: then the socket is reached through a short symlink to its
/// folder in the temp folder, removed on drop (the 0700 run folder still decides who may reach
/// the socket).
struct ShortPath {
    path: PathBuf,
    link: Option<PathBuf>,
}

impl ShortPath {
    fn new(path: &Path) -> io::Result<ShortPath> {
        const SHORT_ENOUGH: usize = 100;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io::Error::other(format!(
                "{} names no socket",
                path.display()
            )));
        };
        if path.as_os_str().len() < SHORT_ENOUGH {
            return Ok(ShortPath {
                path: path.to_path_buf(),
                link: None,
            });
        }
        let mut n = 0u32;
        let link = loop {
            let candidate = std::env::temp_dir().join(format!(
                "homeport-{}-{}-{n}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos())
            ));
            match std::os::unix::fs::symlink(dir, &candidate) {
                Ok(()) => break candidate,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                Err(e) => return Err(e),
            }
        };
        Ok(ShortPath {
            path: link.join(name),
            link: Some(link),
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ShortPath {
    fn drop(&mut self) {
        if let Some(link) = &self.link {
            let _ = fs::remove_file(link);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_deeper_than_the_path_limit_is_bound_reached_and_never_taken_over()
    -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let deep = dir.path().join("x".repeat(60)).join("y".repeat(60));
        fs::create_dir_all(&deep)?;
        let path = deep.join(SOCKET);
        assert!(path.as_os_str().len() > 110);
        let listener = bind_control_socket(&deep)
            .await
            .map_err(|e| io::Error::other(e.to_string()))?;
        assert!(path.exists(), "bound in the run folder itself");
        let mut ours = connect(&path).await?;
        let (mut theirs, _) = listener.accept()?;
        ours.write_all(b"hi").await?;
        let mut got = [0u8; 2];
        std::io::Read::read_exact(&mut theirs, &mut got)?;
        assert_eq!(&got, b"hi");

        // While someone holds the socket, a second log holder's socket does not replace it.
        let refused = bind_control_socket(&deep).await;
        assert!(
            matches!(&refused, Err(SpawnError::Shim(e)) if e.to_string().contains("still holds")),
            "{refused:?}"
        );
        // Once nobody does, its file is stale and is replaced. A process another test forks in
        // the meantime holds a copy of the listener until it execs, so wait for that to pass.
        drop(listener);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let again = loop {
            let again = bind_control_socket(&deep).await;
            if again.is_ok() || tokio::time::Instant::now() > deadline {
                break again;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(again.is_ok(), "{again:?}");

        let leftover = fs::read_dir(std::env::temp_dir())?
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("homeport-{}-", std::process::id()))
            })
            .count();
        assert_eq!(leftover, 0, "the symlinks are removed");
        Ok(())
    }
}
