//! Linux: `/proc` for process facts and port holders, `prctl` for the subreaper, `close_range`.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, SystemTime};

use crate::{PortHolder, ProcInfo};

/// The fields of `/proc/PID/stat` after the parenthesised command name (which may itself hold
/// spaces and parentheses), so that `fields[0]` is field 3 (state).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// Field 22, starttime: clock ticks after boot.
pub fn start_mark(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Fields 14 and 15 (utime, stime: clock ticks), 22 (start time) and 24 (rss: pages) of
/// `/proc/PID/stat`. The rss there is the kernel's own counter, the figure `ps` and `top` show.
/// A zombie gives `None`, like a process that is gone.
pub fn usage(pid: u32) -> Option<crate::Usage> {
    let f = stat_fields(pid)?;
    // A zombie has ended; it only waits to be reaped.
    if f.first().is_some_and(|s| s == "Z") {
        return None;
    }
    let num = |i: usize| f.get(i)?.parse::<u64>().ok();
    let ticks = num(11)? + num(12)?;
    // SAFETY: sysconf has no preconditions.
    let (hz, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let hz = hz.max(1) as u64;
    Some(crate::Usage {
        mark: num(19)?,
        cpu: Duration::from_nanos(ticks.saturating_mul(1_000_000_000 / hz)),
        rss: num(21)?.saturating_mul(page.max(1) as u64),
    })
}

pub fn started_at(pid: u32) -> Option<SystemTime> {
    let ticks = start_mark(pid)?;
    let uptime: f64 = fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let age = (uptime - ticks as f64 / hz).max(0.0);
    SystemTime::now().checked_sub(Duration::from_secs_f64(age))
}

pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

pub fn is_zombie(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s == "Z"))
}

pub fn process_table() -> Vec<ProcInfo> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            // Fields 4 and 5: ppid and pgrp.
            let f = stat_fields(pid)?;
            Some(ProcInfo {
                pid,
                ppid: f.get(1)?.parse().ok()?,
                pgid: f.get(2)?.parse().ok()?,
            })
        })
        .collect()
}

pub fn grow_pipe(fd: BorrowedFd<'_>, bytes: usize) {
    // SAFETY: F_SETPIPE_SZ on a descriptor the caller holds; a failure leaves the pipe as it was.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes as libc::c_int);
    }
}

/// Descendants orphaned below this process are re-parented to it rather than to init.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Marks every descriptor from `first` up close-on-exec in one syscall; false where the kernel
/// lacks `close_range` (before 5.11), so the caller falls back to listing them.
pub fn cloexec_from(first: u32) -> bool {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) == 0
    }
}

/// The process listening on `port`, through `/proc/net/tcp*` (the socket's inode) and
/// `/proc/*/fd` (who holds that inode). `Some(unknown)` when the listener belongs to a process
/// this user cannot look into.
pub fn linux_listener(port: u16) -> Option<PortHolder> {
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
    Some(PortHolder::unknown())
}

/// Where this thread's `errno` lives, for a signal handler that must leave it as it found it.
pub fn errno_location() -> *mut libc::c_int {
    // SAFETY: no preconditions; the pointer is valid for the calling thread's lifetime.
    unsafe { libc::__errno_location() }
}
