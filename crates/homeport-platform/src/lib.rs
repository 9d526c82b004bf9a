//! What differs by operating system when Homeport supervises processes, behind one interface.
//!
//! # Two process backends, both tested on Linux
//! - [`Backend::Linux`]: the log holder (shim) is a child subreaper, so descendants a service
//!   orphans are re-parented to it and stopped with the service; port holders come from
//!   `/proc/net`; inherited descriptors are closed with one `close_range`.
//! - [`Backend::Portable`]: only what macOS has as well. No subreaper: descendants that leave the
//!   service's process group are found by walking the process table (parent links) before the
//!   group is stopped, and are signalled after re-checking their identity; port holders come from
//!   `lsof`; a group that `killpg` refuses is signalled process by process.
//!
//! macOS always uses the portable backend. Linux uses its own unless `HOMEPORT_PROCESS_BACKEND`
//! says `portable`; CI runs the end-to-end tests a second time that way, so the path macOS takes
//! is exercised on the project's Linux machines.
//!
//! # Below both backends: facts read differently per OS
//! A process's start time (with the boot id, its identity: pids are reused, start times are not),
//! the process table, the boot id — `os/linux.rs` (`/proc`) and `os/macos.rs` (libproc, sysctl).
//! Those two files are the only ones with OS-specific calls. [`dirs`] holds the per-user folders.
//!
//! Nothing here watches a process for exit: the agent learns that a shim ended when the shim's
//! control socket closes, which works the same everywhere (see `homeport-shim`).

pub mod dirs;
mod os;
mod portable;

use std::io;
use std::sync::OnceLock;
use std::time::SystemTime;

/// How processes are supervised; see the crate documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Linux,
    Portable,
}

/// One row of the process table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
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

impl PortHolder {
    fn unknown() -> Self {
        Self {
            pid: None,
            name: None,
        }
    }
}

/// A process found outside the service's group that belongs to the service, remembered with its
/// start time so that a signal never reaches a process that reused its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escapee {
    pub pid: u32,
    mark: Option<u64>,
}

impl Escapee {
    pub fn new(pid: u32) -> Self {
        Self {
            pid,
            mark: start_mark(pid),
        }
    }

    /// Whether the same process still runs (zombies count as gone).
    pub fn alive(&self) -> bool {
        self.mark.is_some() && start_mark(self.pid) == self.mark && !is_zombie(self.pid)
    }

    /// Signals it if it is still the same process.
    pub fn signal(&self, sig: i32) {
        if self.alive() {
            // SAFETY: kill with integer arguments.
            unsafe {
                libc::kill(self.pid as libc::pid_t, sig);
            }
        }
    }
}

/// The environment variable that forces a backend: `linux` or `portable`.
pub const BACKEND_ENV: &str = "HOMEPORT_PROCESS_BACKEND";

impl Backend {
    /// The backend this OS uses unless told otherwise.
    pub const fn native() -> Backend {
        if cfg!(target_os = "linux") {
            Backend::Linux
        } else {
            Backend::Portable
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Linux => "linux",
            Backend::Portable => "portable",
        }
    }

    /// A backend by name; `linux` only on Linux.
    pub fn parse(name: &str) -> Option<Backend> {
        match name {
            "linux" if cfg!(target_os = "linux") => Some(Backend::Linux),
            "portable" => Some(Backend::Portable),
            _ => None,
        }
    }

    /// The backend [`BACKEND_ENV`] asks for, or the native one; an unknown name is an error that
    /// says what would work.
    pub fn from_env() -> Result<Backend, String> {
        match std::env::var(BACKEND_ENV) {
            Err(_) => Ok(Backend::native()),
            Ok(v) if v.is_empty() => Ok(Backend::native()),
            Ok(v) => Backend::parse(&v).ok_or_else(|| {
                let known = if cfg!(target_os = "linux") {
                    "linux or portable"
                } else {
                    "portable"
                };
                format!("{BACKEND_ENV}={v:?} is not a process backend here; use {known}")
            }),
        }
    }

    /// The backend of this process, read from the environment once (the native one if the
    /// variable names none; the agent refuses to start on a bad name before anyone asks).
    pub fn current() -> Backend {
        static CURRENT: OnceLock<Backend> = OnceLock::new();
        *CURRENT.get_or_init(|| Backend::from_env().unwrap_or(Backend::native()))
    }

    /// Whether `port` can be listened on; if not, who holds it.
    pub fn port_holder(self, port: u16) -> Option<PortHolder> {
        let found = match self {
            #[cfg(target_os = "linux")]
            Backend::Linux => os::linux_listener(port),
            _ => portable::lsof_listener(port),
        };
        if found.is_some() {
            return found;
        }
        // Binding the wildcard address catches what the lookup cannot see (another user's
        // listener, a missing lsof): it fails if any local address holds the port.
        match std::net::TcpListener::bind(("0.0.0.0", port)) {
            Ok(_) => None,
            Err(_) => Some(PortHolder::unknown()),
        }
    }

    /// Makes this process collect what its descendants orphan, where the OS allows it: Linux's
    /// child subreaper. The portable backend collects nothing this way and walks the process
    /// table instead ([`Backend::escapees_before`]).
    pub fn collect_orphans(self) -> io::Result<()> {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Linux => os::set_child_subreaper(),
            _ => Ok(()),
        }
    }

    /// Marks every descriptor above stderr close-on-exec, so nothing this process inherited
    /// (a pipe a script waits on, say) reaches a service.
    pub fn close_inherited_fds(self) {
        #[cfg(target_os = "linux")]
        if self == Backend::Linux && os::cloexec_from(3) {
            return;
        }
        portable::cloexec_listed_fds();
    }

    /// Sends `sig` to process group `pgid`. `Ok(false)`: the group no longer exists. Where the
    /// OS refuses the group as a whole (macOS answers EPERM for a group that holds a zombie), the
    /// portable backend signals its members one by one.
    pub fn signal_group(self, pgid: u32, sig: i32) -> io::Result<bool> {
        if pgid <= 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "refusing to signal process group 0 or 1",
            ));
        }
        // SAFETY: killpg with integer arguments.
        if unsafe { libc::killpg(pgid as libc::pid_t, sig) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ESRCH) => Ok(false),
            Some(libc::EPERM) if self == Backend::Portable => {
                Ok(portable::signal_members(pgid, sig) > 0 || group_alive(pgid))
            }
            _ => Err(err),
        }
    }

    /// Processes outside group `pgid` that descend from its members, found before the group is
    /// signalled (the portable backend: once a member dies, its children lose the link). The
    /// Linux backend finds them afterwards as re-parented children instead.
    pub fn escapees_before(self, pgid: u32) -> Vec<Escapee> {
        match self {
            Backend::Linux => Vec::new(),
            Backend::Portable => portable::descendants_outside(&process_table(), pgid)
                .into_iter()
                .map(Escapee::new)
                .collect(),
        }
    }

    /// Processes re-parented to `me` (a subreaper) that are not in group `pgid`: what the service
    /// orphaned. Only the Linux backend has them.
    pub fn escapees_after(self, me: u32, pgid: u32) -> Vec<Escapee> {
        match self {
            Backend::Linux => process_table()
                .into_iter()
                .filter(|p| p.ppid == me && p.pgid != pgid)
                .map(|p| Escapee::new(p.pid))
                .collect(),
            Backend::Portable => Vec::new(),
        }
    }
}

/// When `pid` started, in units that only need to compare equal across reads (clock ticks since
/// boot on Linux, microseconds since the epoch on macOS); `None` if it does not exist.
pub fn start_mark(pid: u32) -> Option<u64> {
    os::start_mark(pid)
}

/// What one process has used: CPU time so far and resident memory now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Its [`start_mark`], so that a pid reused by another process is not taken for it.
    pub mark: u64,
    /// User and system CPU time since it started.
    pub cpu: std::time::Duration,
    /// Resident memory, bytes.
    pub rss: u64,
}

/// CPU time and memory of `pid`; `None` if it does not run (gone, a zombie, or a process this
/// user cannot see).
/// One small read per process (`/proc/PID/stat` on Linux, `proc_pidinfo` on macOS): cheap
/// enough to sample every service every few seconds.
pub fn usage(pid: u32) -> Option<Usage> {
    os::usage(pid)
}

/// When `pid` started, as a wall-clock time.
pub fn started_at(pid: u32) -> Option<SystemTime> {
    os::started_at(pid)
}

/// An id of the current boot, to tell records of an earlier boot ("" if unknown).
pub fn boot_id() -> String {
    os::boot_id()
}

/// Every process this user can see.
pub fn process_table() -> Vec<ProcInfo> {
    os::process_table()
}

/// Whether `pid` has exited but not been reaped.
pub fn is_zombie(pid: u32) -> bool {
    os::is_zombie(pid)
}

/// Whether any process is in group `pgid` (zombies included).
pub fn group_alive(pgid: u32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks.
    let rc = unsafe { libc::killpg(pgid as libc::pid_t, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether `pid` leads its own process group (as a service's main process does).
pub fn leads_group(pid: u32) -> bool {
    // SAFETY: getpgid with an integer argument.
    pid > 1 && unsafe { libc::getpgid(pid as libc::pid_t) } == pid as libc::pid_t
}

/// Where this thread's `errno` lives: a signal handler saves and restores it around its calls.
pub fn errno_location() -> *mut libc::c_int {
    os::errno_location()
}

/// Asks for a larger pipe buffer, so a chatty service writes ahead while its log is written.
/// Only Linux can; elsewhere pipes grow by themselves up to a fixed size.
pub fn grow_pipe(fd: std::os::fd::BorrowedFd<'_>, bytes: usize) {
    os::grow_pipe(fd, bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_port_names_its_holder_with_each_backend() -> io::Result<()> {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        for backend in [Backend::native(), Backend::Portable] {
            let holder = backend.port_holder(port);
            let holder = holder.ok_or_else(|| io::Error::other("the port looks free"))?;
            if backend == Backend::Portable && !portable::lsof_installed() {
                assert_eq!(
                    holder,
                    PortHolder::unknown(),
                    "without lsof, only that it is held"
                );
                continue;
            }
            assert_eq!(holder.pid, Some(std::process::id()), "{backend:?}");
            assert!(holder.name.is_some(), "{backend:?}");
        }
        drop(l);
        assert_eq!(Backend::native().port_holder(port), None);
        assert_eq!(Backend::Portable.port_holder(port), None);
        Ok(())
    }

    #[test]
    fn identity_and_the_process_table_describe_this_process() {
        let me = std::process::id();
        let mark = start_mark(me);
        assert!(mark.is_some());
        assert_eq!(start_mark(me), mark, "stable across reads");
        let started = started_at(me).expect("a start time");
        let age = SystemTime::now()
            .duration_since(started)
            .unwrap_or_default();
        assert!(age.as_secs() < 3600, "started {age:?} ago");
        assert!(!boot_id().is_empty());
        let row = process_table().into_iter().find(|p| p.pid == me);
        // SAFETY: getppid and getpgrp have no preconditions.
        let (ppid, pgid) = unsafe { (libc::getppid(), libc::getpgrp()) };
        assert_eq!(
            row,
            Some(ProcInfo {
                pid: me,
                ppid: ppid as u32,
                pgid: pgid as u32
            })
        );
        assert_eq!(start_mark(u32::MAX / 2), None);
    }

    #[test]
    fn usage_counts_the_cpu_a_process_burns_and_its_memory() {
        let me = std::process::id();
        let before = usage(me).expect("this process's usage");
        assert_eq!(Some(before.mark), start_mark(me));
        // Touch 32 MiB and spin for 300 ms of CPU time.
        let block = vec![1u8; 32 << 20];
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box((x, &block));
        let after = usage(me).expect("this process's usage");
        let burnt = after.cpu.saturating_sub(before.cpu);
        // Scheduling on a loaded machine may give the loop less than its wall time.
        assert!(
            burnt >= std::time::Duration::from_millis(50),
            "{burnt:?} of CPU for a 300 ms spin"
        );
        assert!(
            after.rss >= 32 << 20,
            "rss {} with 32 MiB touched",
            after.rss
        );
        assert_eq!(usage(u32::MAX / 2), None);
    }

    #[test]
    fn backends_are_named_and_unknown_names_refused() {
        assert_eq!(Backend::parse("portable"), Some(Backend::Portable));
        assert_eq!(
            Backend::parse(Backend::native().name()),
            Some(Backend::native())
        );
        assert_eq!(Backend::parse("kqueue"), None);
    }

    #[test]
    fn signalling_a_group_that_is_gone_says_so_and_never_touches_group_one() {
        for backend in [Backend::native(), Backend::Portable] {
            assert!(backend.signal_group(1, 0).is_err());
            assert!(backend.signal_group(0, 0).is_err());
            // A pid far above pid_max names no group.
            assert!(
                !backend
                    .signal_group(u32::MAX / 2, 0)
                    .expect("ESRCH is not an error")
            );
        }
    }
}
