//! What the agent changes about its own process that the programs it starts must not inherit.
//!
//! The agent creates files with umask 077, so that every file it writes — state.db, backups,
//! safety copies, releases, run records — is private from the first byte, whatever code path
//! makes it. It also raises its soft descriptor limit to the hard one, for room under load.
//! Services, health commands, deploy steps and git get back the umask and the soft limit the
//! agent started with ([`restore`]): a user's app keeps writing files the way it always did, and a
//! program that still uses `select(2)` keeps the limit of 1,024 it was written for.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

static SAVED_UMASK: AtomicU32 = AtomicU32::new(0);
static UMASK_SAVED: AtomicBool = AtomicBool::new(false);
static SAVED_NOFILE: AtomicU64 = AtomicU64::new(0);
static NOFILE_SAVED: AtomicBool = AtomicBool::new(false);

/// Sets the process's umask to 077 and remembers the one it had, for [`restore`]. Returns it.
pub fn private_umask() -> u32 {
    // SAFETY: umask cannot fail; it only swaps the process's mask.
    let old = unsafe { libc::umask(0o077) };
    // mode_t is u32 here but u16 on macOS.
    #[allow(clippy::useless_conversion)]
    let old = u32::from(old);
    SAVED_UMASK.store(old, Ordering::Release);
    UMASK_SAVED.store(true, Ordering::Release);
    old
}

/// The soft and hard descriptor limits, before and after [`raise_descriptor_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorLimit {
    pub was: u64,
    pub now: u64,
    pub hard: u64,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit and remembers the old one, for [`restore`].
pub fn raise_descriptor_limit() -> io::Result<DescriptorLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let was = lim.rlim_cur;
    // macOS refuses more than OPEN_MAX for an unlimited hard limit.
    let mut want = lim.rlim_max;
    if cfg!(target_os = "macos") && want == libc::RLIM_INFINITY {
        want = 10_240;
    }
    if want > was {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = want;
        }
    }
    SAVED_NOFILE.store(was, Ordering::Release);
    NOFILE_SAVED.store(true, Ordering::Release);
    Ok(DescriptorLimit {
        was,
        now: lim.rlim_cur,
        hard: lim.rlim_max,
    })
}

/// Gives the calling process back the umask and soft descriptor limit the agent started with.
/// Meant for a child between fork and exec: it only reads atomics and makes two system calls,
/// all async-signal-safe. Does nothing where the agent changed nothing.
pub fn restore_in_child() -> io::Result<()> {
    if UMASK_SAVED.load(Ordering::Acquire) {
        let mask = SAVED_UMASK.load(Ordering::Acquire) as libc::mode_t;
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(mask) };
    }
    if NOFILE_SAVED.load(Ordering::Acquire) {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit use the struct we own.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return Err(io::Error::last_os_error());
            }
            lim.rlim_cur = SAVED_NOFILE.load(Ordering::Acquire).min(lim.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// The environment variable that carries the agent's starting umask and soft limit to a program
/// of Homeport's own that the agent starts without running any code between fork and exec (the
/// shim, spawned with posix_spawn): it calls [`restore_from_env`] first thing, and what it
/// starts inherits the restored values.
pub const ENV: &str = "HOMEPORT_INHERIT";

/// The value of [`ENV`] for a child: `umask=OCTAL nofile=N`, each part only if saved.
pub fn env_value() -> String {
    let mut parts = Vec::new();
    if UMASK_SAVED.load(Ordering::Acquire) {
        parts.push(format!("umask={:o}", SAVED_UMASK.load(Ordering::Acquire)));
    }
    if NOFILE_SAVED.load(Ordering::Acquire) {
        parts.push(format!("nofile={}", SAVED_NOFILE.load(Ordering::Acquire)));
    }
    parts.join(" ")
}

/// Applies what [`ENV`] says (see [`env_value`]) to this process. A part that is missing or
/// malformed changes nothing.
pub fn restore_from_env() -> io::Result<()> {
    let Ok(value) = std::env::var(ENV) else {
        return Ok(());
    };
    for part in value.split_whitespace() {
        match part.split_once('=') {
            Some(("umask", v)) => {
                if let Ok(mask) = u32::from_str_radix(v, 8) {
                    SAVED_UMASK.store(mask, Ordering::Release);
                    UMASK_SAVED.store(true, Ordering::Release);
                }
            }
            Some(("nofile", v)) => {
                if let Ok(n) = v.parse() {
                    SAVED_NOFILE.store(n, Ordering::Release);
                    NOFILE_SAVED.store(true, Ordering::Release);
                }
            }
            _ => {}
        }
    }
    restore_in_child()
}

/// Makes `cmd`'s program start with the umask and descriptor limit the agent started with.
pub fn restore(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: restore_in_child is async-signal-safe (see there).
    unsafe { cmd.pre_exec(restore_in_child) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_gets_the_umask_and_limit_the_agent_started_with() -> io::Result<()> {
        // This test changes its own process: it runs the checks in a child of the test binary's
        // shell, so the other tests keep their umask.
        let old = private_umask();
        let limits = raise_descriptor_limit()?;
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", "umask; ulimit -Sn"]);
        let out = restore(&mut cmd).output()?;
        // Put this process back as it was before asserting.
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(old as libc::mode_t) };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().map(|l| u32::from_str_radix(l.trim(), 8).ok()),
            Some(Some(old)),
            "{text}"
        );
        assert_eq!(
            lines.next().map(|l| l.trim().parse::<u64>().ok()),
            Some(Some(limits.was)),
            "{text}"
        );
        Ok(())
    }
}
