//! The log holder: a tiny process that runs one service and owns its output.
//!
//! The agent never holds a service's pipes itself. It starts `homeport shim RUN_DIR`, and the shim
//! (in its own session) spawns the service in a new session, writes every line of its stdout and
//! stderr to the service's log file, waits for it, and records how it ended. Because the shim, not
//! the agent, holds the pipes, an agent that is killed or upgraded loses no log line and does not
//! take production down with it: the restarted agent re-adopts the running shims (see
//! `process::adopt`). The same idea as containerd's shim or conmon.
//!
//! Files in RUN_DIR, each written atomically:
//! - `spec.json` ([`ShimSpec`]): written by the agent before the start;
//! - `shim.json` ([`ShimRecord`]): the shim and service pids, written once the service runs;
//! - `exit.json` ([`ExitRecord`]): how the service ended, written after its logs are flushed.
//!
//! The shim is plain std threads, so its memory stays small next to the service it watches.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use homeport_platform::Backend;
use homeport_types::{ExitReason, Stream};
use nix::sys::signal::{SigHandler, Signal, killpg, signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::fsutil::{Durability, replace_file};
use crate::logfile::{LogWriter, timestamp};

/// What the shim runs and where it writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimSpec {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// Added to the shim's inherited environment.
    pub env: BTreeMap<String, String>,
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
    pub log_keep: u32,
    /// After the service's main process ends, what is left of its process group gets SIGTERM and,
    /// after this long, SIGKILL.
    pub stop_timeout_ms: u64,
}

/// Written by the shim once the service runs; the agent uses it to re-adopt. A pid alone is
/// not an identity (pids are reused, and after a reboot they start over), so the record also
/// holds the boot and the kernel's start time of both processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShimRecord {
    pub shim_pid: u32,
    /// The service's pid, which is also its process group and session id.
    pub pid: u32,
    /// `/proc/sys/kernel/random/boot_id` when the record was written.
    #[serde(default)]
    pub boot_id: String,
    /// Start times (clock ticks since boot, `/proc/PID/stat` field 22) of the shim and the service.
    #[serde(default)]
    pub shim_started: u64,
    #[serde(default)]
    pub started: u64,
}

/// Written by the shim after the service ended and its output was flushed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub exit: Option<ExitReason>,
    /// Set when the service could not be started at all.
    pub spawn_error: Option<String>,
    /// RFC 3339 time of the exit.
    pub time: String,
}

/// The first line the shim prints on its stdout: the agent waits for it after spawning.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Handshake {
    Running { pid: u32 },
    SpawnFailed { error: String },
}

pub const SPEC_FILE: &str = "spec.json";
pub const RECORD_FILE: &str = "shim.json";
pub const EXIT_FILE: &str = "exit.json";

/// Lines longer than this are written in pieces, so one endless line cannot exhaust memory.
const MAX_LINE: usize = 1024 * 1024;

/// Runs the shim for the spec in `run_dir`; returns the shim's exit code.
pub fn run(run_dir: &Path) -> i32 {
    match run_inner(run_dir) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("homeport shim: {e}");
            1
        }
    }
}

fn run_inner(run_dir: &Path) -> io::Result<()> {
    // Terminal signals are not ours: the agent stops a service by signalling its process group.
    // SAFETY: setting dispositions to SIG_IGN before any thread starts is sound.
    unsafe {
        for sig in [
            Signal::SIGINT,
            Signal::SIGHUP,
            Signal::SIGTERM,
            Signal::SIGPIPE,
        ] {
            signal(sig, SigHandler::SigIgn).map_err(io::Error::other)?;
        }
    }
    // A session of its own keeps the shim (and so the service) out of reach of the terminal's
    // Ctrl-C and hangup, which are meant for the agent. The agent spawns the shim without running
    // code between fork and exec, so the shim does this itself, first.
    nix::unistd::setsid().map_err(|e| io::Error::other(format!("cannot start a session: {e}")))?;
    let backend = Backend::current();
    backend.close_inherited_fds();
    // Descendants that the service orphans (double-forked daemons, children of a crashed parent)
    // become ours instead of init's: we reap them and stop them with the service.
    if let Err(e) = backend.collect_orphans() {
        eprintln!(
            "homeport shim: cannot become a child subreaper ({e}); processes that the service \
             orphans will not be stopped with it"
        );
    }
    let spec: ShimSpec =
        serde_json::from_slice(&fs::read(run_dir.join(SPEC_FILE))?).map_err(io::Error::other)?;
    let _ = fs::remove_file(run_dir.join(EXIT_FILE));
    let log = Arc::new(Mutex::new(LogWriter::open(
        &spec.log_path,
        spec.log_max_bytes,
        spec.log_keep,
    )?));

    let (out_r, out_w) = io::pipe()?;
    let (err_r, err_w) = io::pipe()?;
    grow_pipe(&out_r);
    grow_pipe(&err_r);
    let mut cmd = Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .current_dir(&spec.cwd)
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(out_w)
        .stderr(err_w);
    // SAFETY: only async-signal-safe calls between fork and exec, and no allocation: errors are
    // plain errno values.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            for sig in [libc::SIGINT, libc::SIGHUP, libc::SIGTERM, libc::SIGPIPE] {
                if libc::signal(sig, libc::SIG_DFL) == libc::SIG_ERR {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let error = format!("cannot run {:?}: {e}", spec.argv[0]);
            write_exit(run_dir, None, Some(error.clone()))?;
            handshake(&Handshake::SpawnFailed { error });
            return Ok(());
        }
    };
    drop(cmd); // closes our copies of the pipes' write ends
    let pid = child.id();
    replace_file(
        &run_dir.join(RECORD_FILE),
        &serde_json::to_vec(&ShimRecord {
            shim_pid: std::process::id(),
            pid,
            boot_id: homeport_platform::boot_id(),
            shim_started: homeport_platform::start_mark(std::process::id()).unwrap_or(0),
            started: homeport_platform::start_mark(pid).unwrap_or(0),
        })
        .map_err(io::Error::other)?,
        0o600,
        Durability::Process,
    )?;
    handshake(&Handshake::Running { pid });

    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    for (pipe, stream) in [(out_r, Stream::Stdout), (err_r, Stream::Stderr)] {
        let log = Arc::clone(&log);
        let done = done_tx.clone();
        thread::spawn(move || {
            pump(pipe, stream, &log);
            let _ = done.send(());
        });
    }
    drop(done_tx);

    let status = child.wait()?;
    let exit = match (status.code(), status.signal()) {
        (Some(code), _) => ExitReason::Code(code),
        (None, Some(sig)) => ExitReason::Signal(sig),
        (None, None) => ExitReason::Lost,
    };
    let grace = Duration::from_millis(spec.stop_timeout_ms);
    reap_group(pid, grace);
    stop_descendants(backend, grace);
    // The pipes reach EOF once every process that held them is gone; a daemon that escaped the
    // group could hold them forever, so give up waiting after a while.
    let deadline = Instant::now() + Duration::from_secs(2);
    for _ in 0..2 {
        if done_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_err()
        {
            break;
        }
    }
    if let Ok(mut log) = log.lock() {
        log.flush()?;
    }
    write_exit(run_dir, Some(exit), None)
}

/// Ends what is left of the service's process group: SIGTERM, then SIGKILL after `grace`.
fn reap_group(pgid: u32, grace: Duration) {
    let group = Pid::from_raw(pgid as i32);
    if killpg(group, Signal::SIGTERM).is_err() {
        return; // nobody left
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        reap_zombies();
        if killpg(group, None).is_err() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = killpg(group, Signal::SIGKILL);
    thread::sleep(Duration::from_millis(20));
    reap_zombies();
}

/// Descendants that left the service's process group (with `setsid`) were re-parented to us as
/// subreaper; they belong to the service and end with it.
fn stop_descendants(backend: Backend, grace: Duration) {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    // The common case, no child left at all, costs one syscall instead of a process-table scan.
    if waitpid(None, Some(WaitPidFlag::WNOHANG)) == Err(nix::errno::Errno::ECHILD) {
        return;
    }
    let me = std::process::id();
    let kids = backend.escapees_after(me, 0);
    if kids.is_empty() {
        return;
    }
    for k in &kids {
        k.signal(libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        reap_zombies();
        if !kids.iter().any(homeport_platform::Escapee::alive) {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    for k in &kids {
        k.signal(libc::SIGKILL);
    }
    thread::sleep(Duration::from_millis(20));
    reap_zombies();
}

/// Collects the exit status of every finished child, so none lingers as a zombie.
fn reap_zombies() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

fn write_exit(
    run_dir: &Path,
    exit: Option<ExitReason>,
    spawn_error: Option<String>,
) -> io::Result<()> {
    let rec = ExitRecord {
        exit,
        spawn_error,
        time: timestamp(),
    };
    replace_file(
        &run_dir.join(EXIT_FILE),
        &serde_json::to_vec(&rec).map_err(io::Error::other)?,
        0o600,
        Durability::Process,
    )
}

/// Tells the agent how the start went, then lets go of stdout so a dead agent cannot hurt us.
fn handshake(h: &Handshake) {
    if let Ok(mut line) = serde_json::to_vec(h) {
        line.push(b'\n');
        let mut out = io::stdout().lock();
        let _ = out.write_all(&line);
        let _ = out.flush();
    }
    if let Ok(devnull) = fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&devnull);
    }
}

/// Copies one pipe into the log, line by line. Lines of one read share one timestamp: they
/// arrived together, and formatting the time once per read keeps the shim fast.
fn pump(mut pipe: io::PipeReader, stream: Stream, log: &Mutex<LogWriter>) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let stamp = timestamp();
        let Ok(mut log) = log.lock() else { return };
        let mut chunk = &buf[..n];
        while let Some(i) = chunk.iter().position(|b| *b == b'\n') {
            let line = &chunk[..i];
            let line = if partial.is_empty() {
                line
            } else {
                partial.extend_from_slice(line);
                partial.as_slice()
            };
            note_failure(log.write_line(&stamp, stream, strip_cr(line)));
            partial.clear();
            chunk = &chunk[i + 1..];
        }
        partial.extend_from_slice(chunk);
        if partial.len() >= MAX_LINE {
            note_failure(log.write_line(&stamp, stream, &partial));
            partial.clear();
        }
        // Flush while the pipe is idle, so `tail -f` sees lines promptly without a flush per line.
        if n < buf.len() {
            let _ = log.flush();
        }
    }
    if let Ok(mut log) = log.lock() {
        if !partial.is_empty() {
            note_failure(log.write_line(&timestamp(), stream, &partial));
        }
        let _ = log.flush();
    }
}

/// A line that cannot be written (disk full, say) must not stop the service, but it must not
/// vanish without a trace either: the first failure of each kind goes to shim.log, with a count.
fn note_failure(r: io::Result<()>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static FAILED: AtomicU64 = AtomicU64::new(0);
    if let Err(e) = r {
        let n = FAILED.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1 || n.is_power_of_two() {
            eprintln!("homeport shim: cannot write a log line ({n} lost so far): {e}");
        }
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A larger pipe lets a chatty service write ahead while the shim writes the file.
fn grow_pipe(pipe: &io::PipeReader) {
    use std::os::fd::AsFd;
    homeport_platform::grow_pipe(pipe.as_fd(), 1024 * 1024);
}
