//! The real `homeport-shim` binary driven over its control socket, as the agent drives it, with
//! each process backend.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use homeport_shim::proto::{Exit, Frames, FromShim, Spec, ToShim};

const DEADLINE: Duration = Duration::from_secs(30);

fn backends() -> Vec<&'static str> {
    if cfg!(target_os = "linux") {
        vec!["linux", "portable"]
    } else {
        vec!["portable"]
    }
}

struct Shim {
    child: Child,
    conn: UnixStream,
    frames: Frames,
    _dir: tempfile::TempDir,
    run: PathBuf,
    log: PathBuf,
    backend: &'static str,
}

impl Shim {
    fn start(backend: &'static str) -> Shim {
        let dir = tempfile::tempdir().expect("temp dir");
        let run = dir.path().join("run");
        std::fs::create_dir(&run).expect("run dir");
        let (conn, theirs) = UnixStream::pair().expect("socket pair");
        let child = Command::new(env!("CARGO_BIN_EXE_homeport-shim"))
            .arg(&run)
            .env("HOMEPORT_PROCESS_BACKEND", backend)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(run.join("shim.log")).expect("shim.log"))
            .spawn()
            .expect("spawn homeport-shim");
        conn.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let log = dir.path().join("logs/svc.log");
        Shim {
            child,
            conn,
            frames: Frames::default(),
            _dir: dir,
            run,
            log,
            backend,
        }
    }

    fn spec(&self, script: &str) -> Spec {
        Spec {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            cwd: self.run.clone(),
            env: vec![("GREETING".into(), "hello".into())],
            log_path: self.log.clone(),
            log_max_bytes: 1 << 20,
            log_keep: 2,
            stop_timeout_ms: 2000,
        }
    }

    fn send(&mut self, m: &ToShim) {
        self.conn.write_all(&m.encode()).expect("send to the shim");
    }

    fn recv(&mut self) -> Option<FromShim> {
        loop {
            if let Some(body) = self.frames.next_body().expect("frame") {
                return Some(FromShim::decode(&body).expect("message"));
            }
            let mut chunk = [0u8; 512];
            match self.conn.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.frames.push(&chunk[..n]),
                Err(e) => panic!(
                    "[{}] no answer from the shim: {e}\n{}",
                    self.backend,
                    self.shim_log()
                ),
            }
        }
    }

    fn start_service(&mut self, script: &str) -> u32 {
        let spec = self.spec(script);
        self.send(&ToShim::Spawn(spec));
        match self.recv() {
            Some(FromShim::Running { pid, started }) => {
                assert!(started > 0);
                pid
            }
            other => panic!("[{}] expected Running, got {other:?}", self.backend),
        }
    }

    fn exited(&mut self) -> Exit {
        match self.recv() {
            Some(FromShim::Exited(e)) => e,
            other => panic!("[{}] expected Exited, got {other:?}", self.backend),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn shim_log(&self) -> String {
        std::fs::read_to_string(self.run.join("shim.log")).unwrap_or_default()
    }

    /// Waits until the shim process has exited.
    fn wait_gone(&mut self) {
        let start = Instant::now();
        while self.child.try_wait().expect("try_wait").is_none() {
            assert!(
                start.elapsed() < DEADLINE,
                "[{}] the shim did not exit",
                self.backend
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 && !homeport_platform::is_zombie(pid)
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_run_is_logged_reaped_and_started_again_by_the_same_shim() {
    for backend in backends() {
        let mut shim = Shim::start(backend);
        let first =
            shim.start_service("echo \"$GREETING one\"; echo two >&2; printf partial; exit 3");
        assert_eq!(shim.exited(), Exit::Code(3));
        let log = shim.log_text();
        assert!(log.contains(" out hello one\n"), "[{backend}] {log}");
        assert!(log.contains(" err two\n"), "[{backend}] {log}");
        assert!(
            log.ends_with(" out partial\n"),
            "[{backend}] the last unended line too: {log}"
        );
        let record = std::fs::read_to_string(shim.run.join("shim.json")).expect("shim.json");
        assert!(record.contains(&format!("\"pid\":{first}")), "{record}");

        let second = shim.start_service("kill -9 $$");
        assert_ne!(first, second);
        assert_eq!(shim.exited(), Exit::Signal(9));

        shim.send(&ToShim::Quit);
        assert_eq!(shim.recv(), None, "[{backend}] the shim exits when told");
        shim.wait_gone();
        assert!(
            !shim.run.join("exit.json").exists(),
            "the agent was told; no record needed"
        );
        assert!(!shim.run.join("ctl.sock").exists(), "the socket is removed");
    }
}

#[test]
fn a_stop_ends_the_group_and_the_daemon_that_left_it() {
    for backend in backends() {
        let mut shim = Shim::start(backend);
        let pid = shim.start_service("sleep 1000 & setsid sleep 1000 & echo \"daemon $!\"; wait");
        let log = shim.log.clone();
        let mut daemon = 0;
        wait_until("the daemon's pid is logged", || {
            daemon = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .split("daemon ")
                .nth(1)
                .and_then(|r| r.trim().parse().ok())
                .unwrap_or(0);
            daemon > 0
        });
        wait_until("the daemon runs in a session of its own", || {
            // SAFETY: getsid with an integer argument.
            let sid = unsafe { libc::getsid(daemon as libc::pid_t) };
            sid == daemon as libc::pid_t
        });
        assert!(alive(pid) && alive(daemon));
        shim.send(&ToShim::Stop {
            signal: libc::SIGTERM,
            timeout_ms: 2000,
        });
        assert_eq!(shim.exited(), Exit::Signal(libc::SIGTERM), "[{backend}]");
        assert!(
            !homeport_platform::group_alive(pid),
            "[{backend}] the group is gone"
        );
        assert!(!alive(daemon), "[{backend}] the daemon is gone too");
    }
}

#[test]
fn a_service_that_ignores_the_stop_signal_is_killed_at_the_deadline() {
    for backend in backends() {
        let mut shim = Shim::start(backend);
        shim.start_service("trap '' TERM; echo ready; while :; do sleep 0.05; done");
        let log = shim.log.clone();
        wait_until("the trap is set", || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("ready")
        });
        let asked = Instant::now();
        shim.send(&ToShim::Stop {
            signal: libc::SIGTERM,
            timeout_ms: 300,
        });
        assert_eq!(shim.exited(), Exit::Signal(libc::SIGKILL), "[{backend}]");
        assert!(asked.elapsed() >= Duration::from_millis(300));
    }
}

#[test]
fn a_new_agent_connects_and_learns_what_runs() {
    for backend in backends() {
        let mut shim = Shim::start(backend);
        let pid = shim.start_service("exec sleep 1000");
        // The agent dies: its connection closes. The service goes on.
        let (dead, _) = UnixStream::pair().expect("pair");
        drop(std::mem::replace(&mut shim.conn, dead));
        std::thread::sleep(Duration::from_millis(50));
        assert!(alive(pid), "[{backend}] the service outlives the agent");
        let conn = UnixStream::connect(shim.run.join("ctl.sock")).expect("connect to the shim");
        conn.set_read_timeout(Some(DEADLINE)).expect("timeout");
        shim.conn = conn;
        shim.frames = Frames::default();
        shim.send(&ToShim::Hello);
        match shim.recv() {
            Some(FromShim::Running { pid: p, .. }) => assert_eq!(p, pid),
            other => panic!("[{backend}] {other:?}"),
        }
        shim.send(&ToShim::Stop {
            signal: libc::SIGTERM,
            timeout_ms: 2000,
        });
        assert_eq!(shim.exited(), Exit::Signal(libc::SIGTERM));
        shim.send(&ToShim::Hello);
        assert_eq!(
            shim.recv(),
            Some(FromShim::Idle(Some(Exit::Signal(libc::SIGTERM))))
        );
    }
}

#[test]
fn with_no_agent_to_tell_the_exit_is_left_in_a_record() {
    for backend in backends() {
        let mut shim = Shim::start(backend);
        shim.start_service("sleep 0.2; exit 4");
        let (dead, _) = UnixStream::pair().expect("pair");
        drop(std::mem::replace(&mut shim.conn, dead));
        shim.wait_gone();
        let record = std::fs::read_to_string(shim.run.join("exit.json")).expect("exit.json");
        assert!(
            record.contains(r#""exit":{"kind":"code","value":4}"#),
            "{record}"
        );
    }
}

#[test]
fn a_command_that_cannot_run_is_reported_and_the_shim_stays() {
    for backend in backends() {
        let mut shim = Shim::start(backend);
        let mut spec = shim.spec("");
        spec.argv = vec!["/nonexistent/server".into()];
        shim.send(&ToShim::Spawn(spec));
        match shim.recv() {
            Some(FromShim::SpawnFailed(e)) => {
                assert!(e.contains("cannot run \"/nonexistent/server\""), "{e}")
            }
            other => panic!("[{backend}] {other:?}"),
        }
        shim.start_service("exit 0");
        assert_eq!(shim.exited(), Exit::Code(0));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn the_service_starts_clean_signals_default_no_stray_descriptors() {
    for backend in backends() {
        let mut shim = Shim::start(backend);
        let pid = shim.start_service("exec sleep 1000");
        // Only once `sleep` sleeps: while a program starts, the loader and its locale setup
        // hold files open on descriptor 3 for a moment (libc.so.6, /etc/ld.so.cache, locale
        // files), which a look too early takes for an inherited one.
        wait_until("the service sleeps", || {
            std::fs::read_to_string(format!("/proc/{pid}/syscall"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<libc::c_long>().ok())
                .is_some_and(|n| n == libc::SYS_clock_nanosleep || n == libc::SYS_nanosleep)
        });
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        // glibc's posix_spawn leaves its two internal signals (32, 33) ignored in every program
        // it starts, std's Command included; they are glibc's own and reinstalled on use.
        let ignored = u64::from_str_radix(&field("SigIgn:"), 16).expect("hex");
        assert_eq!(
            ignored & !(0b11 << 31),
            0,
            "[{backend}] nothing ignored: {ignored:x}"
        );
        assert_eq!(
            field("SigBlk:"),
            "0000000000000000",
            "[{backend}] nothing blocked"
        );
        let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("fds")
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        fds.sort_unstable();
        assert_eq!(fds, [0, 1, 2], "[{backend}]");
        // Its own group, in the shim's session (not the test's).
        // SAFETY: getpgid and getsid with integer arguments.
        let (pgid, sid) = unsafe { (libc::getpgid(pid as i32), libc::getsid(pid as i32)) };
        assert_eq!(pgid as u32, pid);
        assert_eq!(sid as u32, shim.child.id());
        shim.send(&ToShim::Stop {
            signal: libc::SIGTERM,
            timeout_ms: 2000,
        });
        assert_eq!(shim.exited(), Exit::Signal(libc::SIGTERM));
    }
}
