//! The portable backend's own ways: only POSIX calls, the process table, and `lsof`.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{PortHolder, ProcInfo, process_table};

/// `lsof` can stall on an unreachable network mount; a start must not wait on it for long.
const LSOF_LIMIT: Duration = Duration::from_secs(5);

#[cfg(test)]
pub fn lsof_installed() -> bool {
    lsof_path().is_some()
}

fn lsof_path() -> Option<std::path::PathBuf> {
    // macOS ships it in /usr/sbin, which is not on every PATH.
    let dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    dirs.into_iter()
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|d| d.join("lsof"))
        .find(|p| p.is_file())
}

/// The listener on `port` as `lsof` sees it: `-F pc` prints `pPID` and `cCOMMAND` lines.
pub fn lsof_listener(port: u16) -> Option<PortHolder> {
    let lsof = lsof_path()?;
    let mut child = Command::new(lsof)
        .args(["-nP", "-w", "-Fpc", "-sTCP:LISTEN"])
        .arg(format!("-iTCP:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + LSOF_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut out = String::new();
    use std::io::Read;
    child.stdout.take()?.read_to_string(&mut out).ok()?;
    parse_lsof(&out)
}

fn parse_lsof(out: &str) -> Option<PortHolder> {
    let mut pid = None;
    let mut name = None;
    for line in out.lines() {
        match line.split_at_checked(1) {
            Some(("p", v)) if pid.is_none() => pid = v.parse().ok(),
            Some(("c", v)) if name.is_none() => name = Some(v.to_owned()),
            _ => {}
        }
    }
    pid.map(|pid| PortHolder {
        pid: Some(pid),
        name,
    })
}

/// Marks every descriptor above stderr close-on-exec, listing them in `/dev/fd` (macOS and
/// Linux both have it). Marking rather than closing keeps the listing's own descriptor usable.
pub fn cloexec_listed_fds() {
    let Ok(dir) = std::fs::read_dir("/dev/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: fcntl on a descriptor number; one that is not open just fails with EBADF.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Signals each member of group `pgid` on its own; returns how many were signalled.
pub fn signal_members(pgid: u32, sig: i32) -> usize {
    process_table()
        .into_iter()
        .filter(|p| p.pgid == pgid)
        // SAFETY: kill with integer arguments.
        .filter(|p| unsafe { libc::kill(p.pid as libc::pid_t, sig) } == 0)
        .count()
}

/// Processes outside group `pgid` whose parent chain reaches one of its members.
pub fn descendants_outside(table: &[ProcInfo], pgid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in table {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let group: HashMap<u32, u32> = table.iter().map(|p| (p.pid, p.pgid)).collect();
    let mut seen: HashSet<u32> = HashSet::new();
    let mut todo: Vec<u32> = table
        .iter()
        .filter(|p| p.pgid == pgid)
        .map(|p| p.pid)
        .collect();
    let mut out = Vec::new();
    while let Some(pid) = todo.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            if seen.insert(child) {
                if group.get(&child) != Some(&pgid) {
                    out.push(child);
                }
                todo.push(child);
            }
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, ppid: u32, pgid: u32) -> ProcInfo {
        ProcInfo { pid, ppid, pgid }
    }

    #[test]
    fn descendants_that_left_the_group_are_found_through_live_parents() {
        let table = [
            p(1, 0, 1),
            p(100, 50, 100),  // the service, leading group 100
            p(101, 100, 100), // a worker in the group: killpg reaches it
            p(200, 100, 200), // a daemon that called setsid
            p(201, 200, 200), // and its child
            p(300, 101, 300), // escaped from the worker
            p(400, 1, 400),   // unrelated
            p(500, 1, 100),   // a group member whose parent died: its children count too
            p(501, 500, 501),
        ];
        assert_eq!(descendants_outside(&table, 100), vec![200, 201, 300, 501]);
        assert_eq!(descendants_outside(&table, 999), Vec::<u32>::new());
    }

    #[test]
    fn lsof_field_output_is_read() {
        assert_eq!(
            parse_lsof("p2894\ncpython3\nf5\n"),
            Some(PortHolder {
                pid: Some(2894),
                name: Some("python3".into())
            })
        );
        assert_eq!(parse_lsof(""), None);
    }

    #[test]
    fn listed_descriptors_become_close_on_exec() -> std::io::Result<()> {
        let (r, _w) = std::io::pipe()?;
        use std::os::fd::AsRawFd;
        let fd = r.as_raw_fd();
        // SAFETY: clearing FD_CLOEXEC on a pipe this test owns.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        cloexec_listed_fds();
        // SAFETY: reading the flags of the same pipe.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        Ok(())
    }
}
