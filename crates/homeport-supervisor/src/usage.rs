//! CPU and memory of services: every process of a service's process group, and their
//! descendants that left it, summed.
//!
//! Reading a process costs one small file read on Linux (`/proc/PID/stat`), so each reading
//! reads only the processes already known to belong to a service. Who belongs is found by one
//! pass over the process table, done again every [`RESCAN`] and whenever a service has a new
//! main process (a start or a restart). A process a service starts between two passes is
//! counted from the next pass on.
//!
//! CPU is a rate, so it needs two readings: a [`Meter`] keeps the previous one. The metrics
//! sampler and `status` each keep their own, so one never shortens the other's interval.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use homeport_platform::Usage;

/// How often the process table is read again to find processes services started.
pub const RESCAN: Duration = Duration::from_secs(30);

/// The members of each service's process group, by the group's leader (the service's main
/// process).
#[derive(Default)]
pub struct Groups {
    members: HashMap<u32, Vec<u32>>,
    scanned: Option<Instant>,
}

/// Usage of each process of a group, by pid.
pub type Reading = Vec<(u32, Usage)>;

impl Groups {
    /// Reads every process of the groups `leaders` lead. A leader that no longer runs gives an
    /// empty reading.
    pub fn read(&mut self, leaders: &[u32]) -> HashMap<u32, Reading> {
        let stale = self.scanned.is_none_or(|t| t.elapsed() >= RESCAN)
            || leaders.iter().any(|l| !self.members.contains_key(l));
        if stale {
            self.scan(leaders);
        } else {
            self.members.retain(|l, _| leaders.contains(l));
        }
        let mut out = HashMap::new();
        for leader in leaders {
            let Some(members) = self.members.get_mut(leader) else {
                continue;
            };
            let mut reading = Vec::with_capacity(members.len());
            members.retain(|pid| match homeport_platform::usage(*pid) {
                Some(u) => {
                    reading.push((*pid, u));
                    true
                }
                None => false,
            });
            out.insert(*leader, reading);
        }
        out
    }

    /// One pass over the process table: each leader's group, and every descendant of a member
    /// (a child that started a session of its own is still the service's).
    fn scan(&mut self, leaders: &[u32]) {
        let table = homeport_platform::process_table();
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for p in &table {
            children.entry(p.ppid).or_default().push(p.pid);
        }
        self.members.clear();
        for &leader in leaders {
            let mut seen: HashSet<u32> = HashSet::new();
            let mut todo: Vec<u32> = vec![leader];
            todo.extend(table.iter().filter(|p| p.pgid == leader).map(|p| p.pid));
            let mut members = Vec::new();
            while let Some(pid) = todo.pop() {
                if pid <= 1 || !seen.insert(pid) {
                    continue;
                }
                members.push(pid);
                todo.extend(children.get(&pid).into_iter().flatten());
            }
            // The leader first: it is read even when the table missed it (it just started).
            members.sort_by_key(|p| (*p != leader, *p));
            self.members.insert(leader, members);
        }
        self.scanned = Some(Instant::now());
    }
}

/// CPU and memory of one service at one reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceUsage {
    /// Percent of one core since the meter's previous reading; `None` at a meter's first
    /// reading (unless it was asked for lifetime averages then).
    pub cpu_percent: Option<f32>,
    pub rss: u64,
}

/// Turns readings into CPU rates: remembers each process's CPU time at the previous reading.
#[derive(Default)]
pub struct Meter {
    prev: HashMap<u32, (u64, Duration)>,
    at: Option<Instant>,
}

impl Meter {
    /// CPU and memory per leader. A process seen at the previous reading (same pid, same start)
    /// adds the CPU it used since; one not seen then adds nothing this time. A service none of
    /// whose processes was seen has no rate yet (`None`), unless `lifetime_first`: then it
    /// shows each process's average since it started (what `ps` shows), so a first look is not
    /// blank.
    pub fn measure(
        &mut self,
        readings: &HashMap<u32, Reading>,
        lifetime_first: bool,
    ) -> HashMap<u32, ServiceUsage> {
        let now = Instant::now();
        let elapsed = self.at.map(|t| now.duration_since(t));
        let mut next = HashMap::new();
        let mut out = HashMap::new();
        for (leader, reading) in readings {
            if reading.is_empty() {
                continue;
            }
            let mut cpu = Duration::ZERO;
            let mut known = false;
            let mut rss = 0u64;
            for (pid, u) in reading {
                rss += u.rss;
                next.insert(*pid, (u.mark, u.cpu));
                match (elapsed, self.prev.get(pid)) {
                    (Some(_), Some((mark, before))) if *mark == u.mark => {
                        cpu += u.cpu.saturating_sub(*before);
                        known = true;
                    }
                    _ => {}
                }
            }
            let percent = match elapsed {
                Some(e) if known => Some(if e.is_zero() {
                    0.0
                } else {
                    (cpu.as_secs_f64() * 100.0 / e.as_secs_f64()) as f32
                }),
                _ if lifetime_first => lifetime(reading),
                _ => None,
            };
            out.insert(
                *leader,
                ServiceUsage {
                    cpu_percent: percent,
                    rss,
                },
            );
        }
        self.prev = next;
        self.at = Some(now);
        out
    }
}

/// Average CPU of a group's processes since each started.
fn lifetime(reading: &Reading) -> Option<f32> {
    let mut total = 0.0f64;
    for (pid, u) in reading {
        let age = homeport_platform::started_at(*pid)
            .and_then(|t| SystemTime::now().duration_since(t).ok())?;
        if age.as_secs_f64() > 0.0 {
            total += u.cpu.as_secs_f64() * 100.0 / age.as_secs_f64();
        }
    }
    Some(total as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_counts_its_children_and_a_meter_measures_their_cpu() {
        use std::os::unix::process::CommandExt;
        // A group of its own with a busy child: `sh` leads it, `yes` spins below it.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "yes > /dev/null & wait"])
            .process_group(0)
            .spawn()
            .expect("sh");
        let leader = child.id();
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut groups, reading) = loop {
            // Until `yes` has started (a fresh scan each time).
            let mut groups = Groups::default();
            let r = groups.read(&[leader]);
            if r.get(&leader).is_some_and(|r| r.len() >= 2) || Instant::now() > deadline {
                break (groups, r);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            reading[&leader].len() >= 2,
            "sh and yes: {:?}",
            reading[&leader]
        );
        let mut meter = Meter::default();
        let first = meter.measure(&reading, false);
        assert_eq!(first[&leader].cpu_percent, None, "no rate from one reading");
        assert!(first[&leader].rss > 0);
        std::thread::sleep(Duration::from_millis(500));
        let second = meter.measure(&groups.read(&[leader]), false);
        let cpu = second[&leader].cpu_percent.expect("a rate");
        // `yes` spins a whole core; on a loaded machine it gets less, never nothing.
        assert!(cpu > 5.0, "cpu {cpu}%");
        let lifetime = Meter::default().measure(&groups.read(&[leader]), true);
        assert!(lifetime[&leader].cpu_percent.is_some_and(|c| c > 0.0));

        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(leader as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        // SIGKILL lands when the kernel next schedules `yes`; then it is a zombie until init
        // reaps it, which reads as gone.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let gone = groups.read(&[leader]);
            if gone[&leader].is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "still read after SIGKILL: {gone:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
