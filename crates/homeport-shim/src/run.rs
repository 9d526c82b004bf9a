//! The shim's one thread: a poll loop over the control socket, the service's pipes and a
//! self-pipe that SIGCHLD writes to.
//!
//! A run ends in steps, each finished before the next: the main process is reaped; what is left
//! of its process group gets SIGTERM and, at the deadline, SIGKILL; then the descendants that
//! left the group (see `homeport-platform`'s backends) the same way; then the pipes are read to
//! their end (at most [`PIPE_GRACE`] longer: a daemon that survived could hold them forever);
//! then the log is flushed and the agent told. So when the agent hears `Exited`, nothing of the
//! run is left and every line it printed is in the file.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use homeport_platform::{BACKEND_ENV, Backend, Escapee};

use crate::log::{ERR, Lines, LogWriter, OUT, Stamp};
use crate::proto::{Exit, Frames, FromShim, Spec, ToShim};
use crate::records;

/// How long the pipes may stay open after everything of a run is gone.
pub const PIPE_GRACE: Duration = Duration::from_secs(2);
/// After SIGKILL, how long to wait for processes to vanish before reporting anyway (a process
/// stuck in the kernel cannot be helped).
const KILL_GRACE: Duration = Duration::from_secs(2);
/// Checks of a process group that is not ours to reap start this often and slow down to 20 ms.
const FIRST_TICK: Duration = Duration::from_millis(1);
const LAST_TICK: Duration = Duration::from_millis(20);
const READ_BUFFER: usize = 256 * 1024;
const PIPE_SIZE: usize = 1024 * 1024;

/// The control socket's name inside the run folder.
pub const SOCKET: &str = "ctl.sock";

/// Runs the shim for the run folder `run_dir`, its control connection on stdin; returns the
/// process's exit code.
pub fn run(run_dir: &Path) -> i32 {
    match Shim::start(run_dir).and_then(Shim::serve) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("homeport shim: {e}");
            1
        }
    }
}

struct Ctl {
    stream: UnixStream,
    frames: Frames,
    out: Vec<u8>,
}

struct Source {
    pipe: io::PipeReader,
    tag: &'static str,
    lines: Lines,
    run: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The main process runs.
    Running,
    /// It ended; its group is being emptied.
    Group,
    /// The group is gone; descendants that left it are being stopped.
    Escapees,
    /// Everything is gone; the pipes are being read to their end.
    Pipes,
}

struct Run {
    id: u64,
    pid: u32,
    exit: Option<Exit>,
    phase: Phase,
    /// When what is left gets SIGKILL; after that, when the shim stops waiting.
    kill_at: Option<Instant>,
    give_up_at: Option<Instant>,
    escapees: Vec<Escapee>,
    tick: Duration,
    pipes_deadline: Option<Instant>,
}

struct Shim {
    run_dir: PathBuf,
    record: records::RecordFile,
    backend: Backend,
    me: u32,
    boot_id: String,
    me_started: u64,
    listener: UnixListener,
    ctl: Option<Ctl>,
    wake: io::PipeReader,
    log: Option<LogWriter>,
    log_path: PathBuf,
    failed_lines: u64,
    reported_failures: u64,
    buf: Vec<u8>,
    sources: Vec<Source>,
    run: Option<Run>,
    runs: u64,
    stop_timeout: Duration,
    last_exit: Option<Exit>,
    spawn_error: Option<String>,
    quit: bool,
    /// Whether the last reap found children still running (only a subreaper's orphans are).
    children_left: bool,
}

static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigchld(_: libc::c_int) {
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let errno = homeport_platform::errno_location();
        // SAFETY: write and errno access are async-signal-safe; the byte is a static.
        unsafe {
            let saved = *errno;
            libc::write(fd, b"c".as_ptr().cast(), 1);
            *errno = saved;
        }
    }
}

extern "C" fn ignore(_: libc::c_int) {}

fn install(
    sig: libc::c_int,
    handler: extern "C" fn(libc::c_int),
    flags: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a zeroed sigaction with a plain handler and an empty mask is valid.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = flags;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Shim {
    fn start(run_dir: &Path) -> io::Result<Shim> {
        // A session of its own keeps the shim (and so the service) out of reach of the terminal's
        // Ctrl-C and hangup, which are meant for the agent. The agent runs no code between fork
        // and exec, so the shim does this itself, first. It fails only if the shim already leads
        // a group (started by hand from a shell), where it changes nothing that matters.
        // SAFETY: setsid has no preconditions.
        if unsafe { libc::setsid() } == -1 {
            eprintln!(
                "homeport shim: cannot start a session ({}); continuing in this one",
                io::Error::last_os_error()
            );
        }
        // What the service inherits from us: the umask and descriptor limit the agent started
        // with, not the agent's own.
        if let Err(e) = homeport_fs::inherit::restore_from_env() {
            eprintln!("homeport shim: cannot restore the descriptor limit: {e}");
        }
        let backend = Backend::current();
        backend.close_inherited_fds();
        // The agent binds the control socket before it starts us and hands the listener over
        // as stdout (an agent of an earlier version, or a test, passes /dev/null: then we bind
        // it ourselves below). Taken first, before stdout is pointed at /dev/null.
        let inherited = inherited_listener()?;
        // The control connection arrives as stdin; move it above stderr so that 0 is always
        // /dev/null, as a service's stdin is.
        // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we own, or -1.
        let ctl_fd = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3) };
        if ctl_fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just gave us this descriptor.
        let ctl = unsafe { UnixStream::from_raw_fd(ctl_fd) };
        let null = std::fs::File::open("/dev/null")?;
        for fd in [0, 1] {
            // SAFETY: dup2 onto stdin and stdout, which this process owns.
            if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // Descendants that the service orphans (double-forked daemons, children of a crashed
        // parent) become ours instead of init's, where the backend can: we reap them and stop
        // them with the service.
        if let Err(e) = backend.collect_orphans() {
            eprintln!(
                "homeport shim: cannot become a child subreaper ({e}); processes that the \
                 service orphans will not be stopped with it"
            );
        }
        let (wake, wake_w) = io::pipe()?;
        set_nonblocking(wake.as_raw_fd())?;
        set_nonblocking(wake_w.as_raw_fd())?;
        // The write end lives as long as the process: the handler may run at any time.
        WAKE_FD.store(OwnedFd::from(wake_w).into_raw_fd(), Ordering::Relaxed);
        install(
            libc::SIGCHLD,
            on_sigchld,
            libc::SA_RESTART | libc::SA_NOCLDSTOP,
        )?;
        // Terminal signals are not ours: the agent stops a service by asking. A handler rather
        // than SIG_IGN, because handlers reset to the default in the service at exec — also
        // when whoever started the agent ignored one (a script's background job ignores SIGINT
        // and SIGQUIT; nohup, SIGHUP), which exec alone would pass on to every service.
        for sig in [libc::SIGINT, libc::SIGHUP, libc::SIGTERM, libc::SIGQUIT] {
            install(sig, ignore, libc::SA_RESTART)?;
        }

        std::env::set_current_dir(run_dir)?;
        let listener = match inherited {
            Some(l) => l,
            None => {
                // Bound by its short relative name, so the run folder's path may be of any
                // length.
                let _ = std::fs::remove_file(SOCKET);
                UnixListener::bind(SOCKET)?
            }
        };
        listener.set_nonblocking(true)?;
        ctl.set_nonblocking(true)?;
        let me = std::process::id();
        Ok(Shim {
            run_dir: run_dir.to_path_buf(),
            record: records::RecordFile::new(run_dir.join(records::RECORD_FILE)),
            backend,
            me,
            boot_id: homeport_platform::boot_id(),
            me_started: homeport_platform::start_mark(me).unwrap_or(0),
            listener,
            ctl: Some(Ctl {
                stream: ctl,
                frames: Frames::default(),
                out: Vec::new(),
            }),
            wake,
            log: None,
            log_path: PathBuf::new(),
            failed_lines: 0,
            reported_failures: 0,
            buf: Vec::new(),
            sources: Vec::new(),
            run: None,
            runs: 0,
            stop_timeout: Duration::from_secs(10),
            last_exit: None,
            spawn_error: None,
            quit: false,
            children_left: true,
        })
    }

    fn serve(mut self) -> io::Result<()> {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        loop {
            if self.run.is_none() && (self.quit || self.ctl.is_none()) {
                return self.finish();
            }
            fds.clear();
            let pfd = |fd: RawFd, events: libc::c_short| libc::pollfd {
                fd,
                events,
                revents: 0,
            };
            fds.push(pfd(self.wake.as_raw_fd(), libc::POLLIN));
            fds.push(pfd(self.listener.as_raw_fd(), libc::POLLIN));
            let ctl_events = match &self.ctl {
                Some(c) if c.out.is_empty() => libc::POLLIN,
                Some(_) => libc::POLLIN | libc::POLLOUT,
                None => 0,
            };
            fds.push(pfd(
                self.ctl.as_ref().map_or(-1, |c| c.stream.as_raw_fd()),
                ctl_events,
            ));
            for s in &self.sources {
                fds.push(pfd(s.pipe.as_raw_fd(), libc::POLLIN));
            }
            let timeout = self.next_deadline().map_or(-1, |d| {
                let ms = d
                    .saturating_duration_since(Instant::now())
                    .as_micros()
                    .div_ceil(1000);
                ms.min(60_000) as libc::c_int
            });
            // SAFETY: `fds` is a valid array of pollfd of the given length.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let ready = |i: usize| fds[i].revents != 0;
            // Output first, so lines a service printed before it died are in the log before its
            // exit is reported.
            let pipes_ready: Vec<usize> =
                (0..self.sources.len()).filter(|i| ready(3 + i)).collect();
            let mut closed = Vec::new();
            for i in pipes_ready {
                if !self.pump(i) {
                    closed.push(i);
                }
            }
            for i in closed.into_iter().rev() {
                let mut s = self.sources.remove(i);
                self.end_source(&mut s);
            }
            if ready(0) {
                let mut sink = [0u8; 64];
                while matches!(self.wake.read(&mut sink), Ok(n) if n > 0) {}
            }
            // Reap on every pass: a wake byte may be consumed before the exit it announces can
            // be collected, and subreaper orphans exit without a word.
            self.reap();
            // The connection we have first: what a dead agent sent before it died (a start) is
            // done before a new agent's connection replaces it, and `fds[2]` describes this one.
            if ready(2) {
                self.on_ctl(fds[2].revents);
            }
            if ready(1) {
                self.accept();
            }
            self.progress();
            self.flush_ctl();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let run = self.run.as_ref()?;
        let tick = match run.phase {
            Phase::Group | Phase::Escapees => Some(Instant::now() + run.tick),
            _ => None,
        };
        [run.kill_at, run.give_up_at, run.pipes_deadline, tick]
            .into_iter()
            .flatten()
            .min()
    }

    /// Reads one pipe; false at its end.
    fn pump(&mut self, i: usize) -> bool {
        if self.buf.is_empty() {
            self.buf = vec![0; READ_BUFFER];
        }
        let n = loop {
            match self.sources[i].pipe.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        };
        if n == 0 {
            return false;
        }
        let Some(log) = self.log.as_mut() else {
            return true;
        };
        let source = &mut self.sources[i];
        let prefix = prefix(&Stamp::now(), source.tag);
        source.lines.feed(
            &self.buf[..n],
            prefix.as_bytes(),
            log,
            &mut self.failed_lines,
        );
        // Flush whenever the pipe runs dry, so `tail -f` sees lines promptly without a flush per
        // line.
        if n < self.buf.len() && log.flush().is_err() {
            self.failed_lines += 1;
        }
        self.note_failures();
        true
    }

    fn end_source(&mut self, s: &mut Source) {
        if let Some(log) = self.log.as_mut() {
            let prefix = prefix(&Stamp::now(), s.tag);
            s.lines
                .finish(prefix.as_bytes(), log, &mut self.failed_lines);
            if log.flush().is_err() {
                self.failed_lines += 1;
            }
        }
        self.note_failures();
    }

    /// A line that cannot be written (a full disk) must not stop the service, but must not
    /// vanish without a trace: the first loss and every doubling go to shim.log.
    fn note_failures(&mut self) {
        let n = self.failed_lines;
        if n > self.reported_failures
            && (self.reported_failures == 0 || n >= 2 * self.reported_failures)
        {
            eprintln!(
                "homeport shim: cannot write to {} ({n} lines lost so far)",
                self.log_path.display()
            );
            self.reported_failures = n;
        }
    }

    /// Collects every child that ended: the main process, or an orphan we adopted as subreaper.
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid > 0 {
                if let Some(run) = self.run.as_mut()
                    && run.pid == pid as u32
                    && run.exit.is_none()
                {
                    run.exit = Some(exit_of(status));
                    self.enter_group();
                }
                continue;
            }
            if pid == 0 {
                self.children_left = true;
                return;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => self.children_left = false,
                _ => {}
            }
            return;
        }
    }

    /// The main process ended: empty what is left of its group.
    fn enter_group(&mut self) {
        let backend = self.backend;
        let stop_timeout = self.stop_timeout;
        let Some(run) = self.run.as_mut() else { return };
        run.phase = Phase::Group;
        run.tick = FIRST_TICK;
        if homeport_platform::group_alive(run.pid) {
            run.escapees.extend(backend.escapees_before(run.pid));
            let _ = backend.signal_group(run.pid, libc::SIGTERM);
            let at = Instant::now() + stop_timeout;
            run.kill_at = Some(run.kill_at.map_or(at, |k| k.min(at)));
        }
    }

    /// Moves the ending run forward as far as it can go now.
    fn progress(&mut self) {
        let now = Instant::now();
        loop {
            let backend = self.backend;
            let Some(run) = self.run.as_mut() else { return };
            match run.phase {
                Phase::Running => {
                    // A stop's deadline passed.
                    if run.kill_at.is_some_and(|k| now >= k) {
                        let _ = backend.signal_group(run.pid, libc::SIGKILL);
                        for e in &run.escapees {
                            e.signal(libc::SIGKILL);
                        }
                        run.kill_at = None;
                    }
                    return;
                }
                Phase::Group => {
                    if homeport_platform::group_alive(run.pid) && !self.waited_out(now) {
                        return;
                    }
                    self.enter_escapees(now);
                }
                Phase::Escapees => {
                    run.escapees.retain(Escapee::alive);
                    if !run.escapees.is_empty() && !self.waited_out(now) {
                        return;
                    }
                    let Some(run) = self.run.as_mut() else { return };
                    run.phase = Phase::Pipes;
                    run.kill_at = None;
                    run.give_up_at = None;
                    run.pipes_deadline = Some(now + PIPE_GRACE);
                }
                Phase::Pipes => {
                    let id = run.id;
                    let open = self.sources.iter().any(|s| s.run == id);
                    if open && run.pipes_deadline.is_some_and(|d| now < d) {
                        return;
                    }
                    self.complete(id);
                    return;
                }
            }
        }
    }

    /// The group is gone: stop the descendants that left it.
    fn enter_escapees(&mut self, now: Instant) {
        let (backend, me, stop_timeout) = (self.backend, self.me, self.stop_timeout);
        // With no child left at all (the common case) there is no orphan to look for.
        let children_left = self.children_left;
        let Some(run) = self.run.as_mut() else { return };
        run.phase = Phase::Escapees;
        run.kill_at = None;
        run.give_up_at = None;
        run.tick = FIRST_TICK;
        if children_left {
            run.escapees.extend(backend.escapees_after(me, run.pid));
        }
        run.escapees.retain(Escapee::alive);
        if !run.escapees.is_empty() {
            for e in &run.escapees {
                e.signal(libc::SIGTERM);
            }
            run.kill_at = Some(now + stop_timeout);
        }
    }

    /// Whether waiting for processes to end is over: at the deadline SIGKILL goes out, and a
    /// short while later the shim stops waiting. Until then, checks slow down.
    fn waited_out(&mut self, now: Instant) -> bool {
        let backend = self.backend;
        let Some(run) = self.run.as_mut() else {
            return true;
        };
        if run.kill_at.is_some_and(|k| now >= k) {
            if run.phase == Phase::Group {
                let _ = backend.signal_group(run.pid, libc::SIGKILL);
            }
            for e in &run.escapees {
                e.signal(libc::SIGKILL);
            }
            run.kill_at = None;
            run.give_up_at = Some(now + KILL_GRACE);
            run.tick = FIRST_TICK;
            return false;
        }
        if run.give_up_at.is_some_and(|g| now >= g) {
            return true;
        }
        run.tick = (run.tick * 2).min(LAST_TICK);
        false
    }

    /// Everything of run `id` is gone: drop what a surviving process still holds open, and
    /// report how it ended.
    fn complete(&mut self, id: u64) {
        let (done, keep): (Vec<Source>, Vec<Source>) = std::mem::take(&mut self.sources)
            .into_iter()
            .partition(|s| s.run == id);
        self.sources = keep;
        for mut s in done {
            self.end_source(&mut s);
        }
        let exit = self.run.take().and_then(|r| r.exit).unwrap_or(Exit::Lost);
        self.last_exit = Some(exit);
        self.send(&FromShim::Exited(exit));
    }

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if stream.set_nonblocking(true).is_ok() {
                // One agent at a time: a new connection means the old one's agent is gone.
                self.ctl = Some(Ctl {
                    stream,
                    frames: Frames::default(),
                    out: Vec::new(),
                });
            }
        }
    }

    fn on_ctl(&mut self, revents: libc::c_short) {
        let mut gone = revents & (libc::POLLERR | libc::POLLNVAL) != 0;
        let mut msgs = Vec::new();
        if let Some(ctl) = self.ctl.as_mut() {
            let mut chunk = [0u8; 4096];
            loop {
                match ctl.stream.read(&mut chunk) {
                    Ok(0) => {
                        gone = true;
                        break;
                    }
                    Ok(n) => ctl.frames.push(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        gone = true;
                        break;
                    }
                }
            }
            loop {
                match ctl.frames.next_body() {
                    Ok(Some(body)) => match ToShim::decode(&body) {
                        Ok(m) => msgs.push(m),
                        Err(e) => {
                            eprintln!("homeport shim: {e}");
                            gone = true;
                            break;
                        }
                    },
                    Ok(None) => break,
                    Err(e) => {
                        eprintln!("homeport shim: {e}");
                        gone = true;
                        break;
                    }
                }
            }
        }
        for m in msgs {
            self.handle(m);
        }
        if gone {
            self.ctl = None;
        }
    }

    fn handle(&mut self, msg: ToShim) {
        match msg {
            ToShim::Spawn(spec) => {
                let reply = self.spawn(&spec);
                self.send(&reply);
            }
            ToShim::Stop { signal, timeout_ms } => {
                let backend = self.backend;
                if let Some(run) = self.run.as_mut()
                    && run.phase == Phase::Running
                {
                    run.escapees.extend(backend.escapees_before(run.pid));
                    let _ = backend.signal_group(run.pid, signal);
                    run.kill_at = Some(Instant::now() + Duration::from_millis(timeout_ms));
                }
            }
            ToShim::Quit => self.quit = true,
            ToShim::Hello => match &self.run {
                Some(r) if r.phase == Phase::Running => {
                    let reply = FromShim::Running {
                        pid: r.pid,
                        started: homeport_platform::start_mark(r.pid).unwrap_or(0),
                    };
                    self.send(&reply);
                }
                // Ending: `Exited` follows when it has ended.
                Some(_) => {}
                None => self.send(&FromShim::Idle(self.last_exit)),
            },
        }
    }

    fn spawn(&mut self, spec: &Spec) -> FromShim {
        if self.run.is_some() {
            return FromShim::SpawnFailed("the service is already running".into());
        }
        match self.try_spawn(spec) {
            Ok((pid, started)) => {
                self.spawn_error = None;
                FromShim::Running { pid, started }
            }
            Err(e) => {
                self.spawn_error = Some(e.clone());
                FromShim::SpawnFailed(e)
            }
        }
    }

    fn try_spawn(&mut self, spec: &Spec) -> Result<(u32, u64), String> {
        let (program, args) = spec.argv.split_first().ok_or("the command is empty")?;
        if self.log.is_none() || self.log_path != spec.log_path {
            let log = LogWriter::open(&spec.log_path, spec.log_max_bytes, spec.log_keep)
                .map_err(|e| format!("cannot open the log {}: {e}", spec.log_path.display()))?;
            self.log = Some(log);
            self.log_path = spec.log_path.clone();
        }
        self.stop_timeout = Duration::from_millis(spec.stop_timeout_ms);
        let pipes = || -> io::Result<_> {
            let (out_r, out_w) = io::pipe()?;
            let (err_r, err_w) = io::pipe()?;
            for r in [&out_r, &err_r] {
                homeport_platform::grow_pipe(r.as_fd(), PIPE_SIZE);
                set_nonblocking(r.as_raw_fd())?;
            }
            Ok((out_r, out_w, err_r, err_w))
        };
        let (out_r, out_w, err_r, err_w) =
            pipes().map_err(|e| format!("cannot create the service's pipes: {e}"))?;
        // A group of its own, so a stop reaches everything it starts; no code between fork and
        // exec, so std can use posix_spawn. The terminal signals the shim catches are reset to
        // their defaults by exec; SIGPIPE and the signal mask std resets itself.
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(&spec.cwd)
            .env_remove(BACKEND_ENV)
            .env_remove(homeport_fs::inherit::ENV)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out_w)
            .stderr(err_w);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {program:?}: {e}"))?;
        drop(cmd); // our copies of the pipes' write ends
        let pid = child.id();
        // The child is reaped through waitpid(-1) with every other child; the handle is not
        // needed.
        drop(child);
        let started = homeport_platform::start_mark(pid).unwrap_or(0);
        self.runs += 1;
        let id = self.runs;
        for (pipe, tag) in [(out_r, OUT), (err_r, ERR)] {
            self.sources.push(Source {
                pipe,
                tag,
                lines: Lines::default(),
                run: id,
            });
        }
        self.run = Some(Run {
            id,
            pid,
            exit: None,
            phase: Phase::Running,
            kill_at: None,
            give_up_at: None,
            escapees: Vec::new(),
            tick: FIRST_TICK,
            pipes_deadline: None,
        });
        let record = records::ShimRecord {
            shim_pid: self.me,
            pid,
            boot_id: self.boot_id.clone(),
            shim_started: self.me_started,
            started,
        };
        if let Err(e) = self.record.write(&record) {
            eprintln!("homeport shim: cannot write the run record: {e}");
        }
        Ok((pid, started))
    }

    fn send(&mut self, msg: &FromShim) {
        if let Some(ctl) = self.ctl.as_mut() {
            ctl.out.extend_from_slice(&msg.encode());
        }
        self.flush_ctl();
    }

    fn flush_ctl(&mut self) {
        let Some(ctl) = self.ctl.as_mut() else { return };
        while !ctl.out.is_empty() {
            match ctl.stream.write(&ctl.out) {
                Ok(n) => {
                    ctl.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.ctl = None;
                    return;
                }
            }
        }
    }

    /// Nothing runs and nobody will ask again: leave the record of how the last run ended for
    /// the next agent (unless the agent asked us to quit, having recorded it), and exit.
    fn finish(self) -> io::Result<()> {
        if !self.quit && (self.last_exit.is_some() || self.spawn_error.is_some()) {
            let rec = records::ExitRecord {
                exit: self.last_exit,
                spawn_error: self.spawn_error.clone(),
                time: Stamp::now().as_str().to_owned(),
            };
            records::write(&self.run_dir.join(records::EXIT_FILE), &rec.to_json())?;
        }
        let _ = std::fs::remove_file(SOCKET);
        Ok(())
    }
}

/// The listening Unix socket the agent passed as stdout, if it passed one: a Unix stream socket
/// with no peer. (Not `SO_ACCEPTCONN`, which macOS's getsockopt does not answer.)
fn inherited_listener() -> io::Result<Option<UnixListener>> {
    // SAFETY: fstat into a zeroed struct we own.
    let is_socket = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(1, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    };
    if !is_socket {
        return Ok(None);
    }
    let mut kind: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into an int of the size given.
    let rc = unsafe {
        libc::getsockopt(
            1,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&raw mut kind).cast(),
            &mut len,
        )
    };
    if rc != 0 || kind != libc::SOCK_STREAM {
        return Ok(None);
    }
    // A connected socket has a peer; a listening one does not (ENOTCONN on Linux and macOS).
    // SAFETY: getpeername into a zeroed sockaddr_storage of the size given.
    let connected = unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        libc::getpeername(1, (&raw mut addr).cast(), &mut len) == 0
    };
    if connected {
        return Ok(None);
    }
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we own, or -1.
    let fd = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor, a stream socket.
    let listener = unsafe { UnixListener::from_raw_fd(fd) };
    // One of another family (TCP) is not ours to serve on.
    if listener.local_addr().is_err() {
        return Ok(None);
    }
    Ok(Some(listener))
}

fn prefix(stamp: &Stamp, tag: &str) -> String {
    let mut p = String::with_capacity(40);
    p.push_str(stamp.as_str());
    p.push(' ');
    p.push_str(tag);
    p.push(' ');
    p
}

fn exit_of(status: libc::c_int) -> Exit {
    if libc::WIFEXITED(status) {
        Exit::Code(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Lost
    }
}
