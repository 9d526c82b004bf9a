//! Benchmarks of the agent against baselines measured in the same run. Prints a Markdown table
//! (see docs/benchmarks.md). Build in release mode first:
//!
//! ```text
//! cargo build --release --bins && target/release/homeport-bench [--idle-secs 60] [--runs 3] [--only ROW]
//! target/release/homeport-bench --router [--secs 5]   # needs wrk and caddy: setup.sh --bench
//! target/release/homeport-bench --slowloris             # /livez under 2,000 slow connections
//! target/release/homeport-bench --only sampler [--sampler-secs 600]  # what sampling costs
//! target/release/homeport-bench --databases [--only postgres]  # needs setup.sh --databases
//! target/release/homeport-bench --hosts [--runs 5]  # another host over real sshd (as root)
//! ```

mod backup;
mod databases;
mod deploy;
mod hosts;
mod metrics;
mod router;
mod slowloris;
// The end-to-end tests' other host (a real sshd, a throwaway user and key): a test helper that
// panics on a broken setup, of which the benchmark uses a part.
#[path = "../e2e/sshd.rs"]
#[allow(dead_code, clippy::expect_used)]
mod sshd;
mod supervise;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) type Res<T> = Result<T, Box<dyn std::error::Error>>;

pub(crate) struct Bins {
    homeport: PathBuf,
    fixture: PathBuf,
}

pub(crate) struct Row {
    pub(crate) name: &'static str,
    pub(crate) baseline: String,
    pub(crate) homeport: String,
    pub(crate) ratio: String,
    pub(crate) goal: &'static str,
}

fn main() -> Res<()> {
    let mut idle_secs = 60u64;
    let mut only_backup = false;
    let mut only_deploy = false;
    let mut only_router = false;
    let mut only_slowloris = false;
    let mut only_databases = false;
    let mut only_hosts = false;
    let mut secs = 5u64;
    let mut sampler_secs = 600u64;
    let mut runs = 3usize;
    let mut only: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--idle-secs" => idle_secs = args.next().ok_or("--idle-secs N")?.parse()?,
            "--runs" => runs = args.next().ok_or("--runs N")?.parse()?,
            "--backup" => only_backup = true,
            "--deploy" => only_deploy = true,
            "--router" => only_router = true,
            "--slowloris" => only_slowloris = true,
            "--databases" => only_databases = true,
            "--hosts" => only_hosts = true,
            "--secs" => secs = args.next().ok_or("--secs N")?.parse()?,
            "--sampler-secs" => {
                sampler_secs = args.next().ok_or("--sampler-secs N")?.parse()?;
            }
            "--only" => only.push(args.next().ok_or("--only ROW")?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let me = std::env::current_exe()?;
    let bins = Bins {
        homeport: me.with_file_name("homeport"),
        fixture: me.with_file_name("homeport-fixture"),
    };
    for b in [
        &bins.homeport,
        &bins.fixture,
        &bins.homeport.with_file_name("homeport-shim"),
    ] {
        if !b.exists() {
            return Err(format!("{} is missing: cargo build --release --bins", b.display()).into());
        }
    }
    if only_databases {
        print_rows(databases::run(&bins, runs, &only)?);
        return Ok(());
    }
    if only_hosts {
        print_rows(hosts::run(&bins, runs)?);
        return Ok(());
    }
    if only_slowloris {
        print_rows(slowloris::run(&bins)?);
        return Ok(());
    }
    if only_router {
        print_rows(router::run(&bins, secs)?);
        return Ok(());
    }
    if only_deploy {
        print_rows(deploy::run(&bins, runs)?);
        return Ok(());
    }
    if only_backup {
        print_rows(backup::run()?);
        return Ok(());
    }
    // `--only respawn --only stop …` runs just those rows (names below), to iterate on one.
    let want = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let mut rows = Vec::new();
    if want("respawn") {
        rows.push(respawn(&bins, runs)?);
    }
    if want("start") {
        rows.push(supervise::start_20_up(&bins, runs)?);
        rows.push(start_20(&bins, runs)?);
    }
    if want("stop") {
        rows.push(supervise::stop(&bins, runs)?);
    }
    if want("log") {
        rows.push(log_capture(&bins, runs)?);
    }
    if want("idle") {
        rows.extend(supervise::idle_10(&bins, idle_secs)?);
    }
    if want("ready") {
        rows.push(supervise::agent_ready(&bins, runs)?);
    }
    if want("sizes") {
        rows.push(supervise::sizes(&bins)?);
    }
    if want("status") {
        rows.push(status_latency(&bins)?);
    }
    if want("sse") {
        rows.push(sse_throughput(&bins)?);
    }
    if want("history") {
        rows.push(metrics::growth(&bins)?);
    }
    // Ten minutes by default: only when asked for by name.
    if only.iter().any(|o| o == "sampler") {
        rows.push(metrics::sampler(&bins, sampler_secs)?);
    }
    print_rows(rows);
    Ok(())
}

fn print_rows(rows: Vec<Row>) {
    println!("| benchmark | baseline (same run) | homeport | ratio | goal |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.name, r.baseline, r.homeport, r.ratio, r.goal
        );
    }
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A temp folder with a config and a running agent; the agent is stopped (SIGTERM) on drop.
pub(crate) struct Agent {
    dir: tempfile::TempDir,
    pub(crate) child: std::process::Child,
    pub(crate) rt: tokio::runtime::Runtime,
}

impl Agent {
    pub(crate) fn start(bins: &Bins, body: &str) -> Res<Self> {
        Self::start_under(bins, body, &[])
    }

    /// [`Agent::start`] with `vars` added to the agent's environment (`SSH_AUTH_SOCK`).
    pub(crate) fn start_with_env(bins: &Bins, body: &str, vars: &[(&str, &Path)]) -> Res<Self> {
        Self::launch(bins, body, &[], vars)
    }

    /// [`Agent::start`] with the agent's command line run by `prefix` (`prlimit …`).
    pub(crate) fn start_under(bins: &Bins, body: &str, prefix: &[&str]) -> Res<Self> {
        Self::launch(bins, body, prefix, &[])
    }

    fn launch(bins: &Bins, body: &str, prefix: &[&str], vars: &[(&str, &Path)]) -> Res<Self> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let config = dir.path().join("homeport.toml");
        fs::write(
            &config,
            format!(
                "[agent]\nport = 0\ndata_dir = \"{}\"\n{}",
                data.display(),
                body.replace("@FIXTURE@", &bins.fixture.display().to_string())
            ),
        )?;
        let mut cmd = match prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&bins.homeport);
                c
            }
            None => Command::new(&bins.homeport),
        };
        let child = cmd
            .arg("--config")
            .arg(&config)
            .arg("agent")
            .env("RUST_LOG", "warn")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("agent.log"))?)
            .spawn()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self { dir, child, rt })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub(crate) fn config(&self) -> PathBuf {
        self.dir.path().join("homeport.toml")
    }

    /// Polls status every 2 ms until `pred` holds for it.
    pub(crate) fn wait(
        &self,
        limit: Duration,
        pred: impl Fn(&homeport_types::StatusSnapshot) -> bool,
    ) -> Res<Instant> {
        let start = Instant::now();
        loop {
            if let Ok(c) = homeport_client::Client::discover(&self.data())
                && let Ok(s) = self.rt.block_on(c.status())
                && pred(&s)
            {
                return Ok(Instant::now());
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "timed out; agent log:\n{}",
                    fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: kill with a pid we spawned.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

fn all_running(n: usize) -> impl Fn(&homeport_types::StatusSnapshot) -> bool {
    move |s| {
        s.services.len() == n
            && s.services
                .iter()
                .all(|x| x.state == homeport_types::ServiceState::Running)
    }
}

/// Crash → respawn: a service that exits at once, restarted with a backoff floor of 0, vs a loop
/// that spawns and waits for the same program. Also the CPU each cycle costs, all processes
/// counted (the bench and its children; the agent, its log holder and the service), which a busy
/// machine disturbs less than the time.
fn respawn(bins: &Bins, runs: usize) -> Res<Row> {
    const CYCLES: usize = 200;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut base = Vec::new();
    let mut ours = Vec::new();
    let mut base_cpu = Vec::new();
    let mut our_cpu = Vec::new();
    let (mut shim_us, mut agent_us, mut recorder_us) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let before = rusage_ms();
        let t = Instant::now();
        for _ in 0..CYCLES {
            Command::new(&bins.fixture)
                .args(["--lines", "1", "--exit-after-lines"])
                .stdout(Stdio::null())
                .status()?;
        }
        base.push(t.elapsed().as_secs_f64() * 1000.0 / CYCLES as f64);
        base_cpu.push((rusage_ms() - before) / CYCLES as f64);

        let agent = Agent::start(
            bins,
            r#"[apps.b.env.p.services.cycler]
command = ["@FIXTURE@", "--lines", "1", "--exit-after-lines"]
autostart = true
restart = { policy = "always", backoff_min = "0s", backoff_max = "0s", max_failures = 1000000, window = "1s" }
"#,
        )?;
        // Each run logs one line. Watching the log, not the API, keeps the bench's own requests
        // from loading the agent it measures.
        let log = agent.data().join("logs/b/p/cycler.log");
        let lines = || fs::read(&log).map_or(0, |b| b.iter().filter(|c| **c == b'\n').count());
        let wait_lines = |n: usize| -> Res<()> {
            let deadline = Instant::now() + Duration::from_secs(120);
            while lines() < n {
                if Instant::now() > deadline {
                    return Err(format!("the service did not run {n} times").into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        };
        wait_lines(10)?;
        let record: serde_json::Value =
            serde_json::from_slice(&fs::read(agent.data().join("run/b/p/cycler/shim.json"))?)?;
        let shim = record["shim_pid"].as_u64().ok_or("no shim pid")? as u32;
        let cpu = || -> Res<f64> {
            Ok(
                (cpu_ticks(agent.child.id())? + cpu_ticks(shim)? + children_ticks(shim)?) as f64
                    / hz
                    * 1000.0,
            )
        };
        let agent_pid = agent.child.id();
        let split = || {
            (
                task_ns(shim, None),
                task_ns(agent_pid, None),
                task_ns(agent_pid, Some("state-recorder")),
            )
        };
        let (n0, c0, s0) = (lines(), cpu()?, split());
        wait_lines(n0 + CYCLES + 10)?;
        let (n1, c1, s1) = (lines(), cpu()?, split());
        let cycles = (n1 - n0) as f64;
        our_cpu.push((c1 - c0) / cycles);
        let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1000.0 / cycles;
        shim_us.push(per(s0.0, s1.0));
        agent_us.push(per(s0.1, s1.1));
        recorder_us.push(per(s0.2, s1.2));
        // The log holder stamps each run's first line: consecutive stamps are the cycle time.
        let text = fs::read_to_string(&log)?;
        let stamps: Vec<f64> = text
            .lines()
            .filter_map(|l| stamp_secs(l.split(' ').next()?))
            .collect();
        let window = &stamps[10..10 + CYCLES];
        ours.push((window[CYCLES - 1] - window[0]) * 1000.0 / (CYCLES - 1) as f64);
    }
    let (b, o) = (median(base), median(ours));
    let (bc, oc) = (median(base_cpu), median(our_cpu));
    Ok(Row {
        name: "crash → respawn cycle, backoff floor 0 (per cycle)",
        baseline: format!("{b:.2} ms (spawn + wait loop); CPU {bc:.2} ms"),
        homeport: format!(
            "{o:.2} ms; CPU {oc:.2} ms, of it the log holder {:.0} µs, the agent {:.0} µs (its state recorder {:.0} µs)",
            median(shim_us),
            median(agent_us),
            median(recorder_us)
        ),
        ratio: format!("{:.2}× (CPU {:.2}×)", o / b, oc / bc),
        goal: "≤ 1.2×",
    })
}

/// CPU time of this process and its reaped children, in ms.
fn rusage_ms() -> f64 {
    let ms = |who| {
        // SAFETY: getrusage fills the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let tv = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
        tv(u.ru_utime) + tv(u.ru_stime)
    };
    ms(libc::RUSAGE_SELF) + ms(libc::RUSAGE_CHILDREN)
}

/// Seconds of an RFC 3339 `...THH:MM:SS.ffffffZ` stamp within its day.
fn stamp_secs(s: &str) -> Option<f64> {
    let t = s.split('T').nth(1)?.trim_end_matches('Z');
    let mut it = t.split(':');
    let h: f64 = it.next()?.parse().ok()?;
    let m: f64 = it.next()?.parse().ok()?;
    let sec: f64 = it.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + sec)
}

/// 2,000,000 lines of 100 bytes through the log holder vs straight into a file, in the same
/// folder. Both write a few hundred megabytes, so the disk's writeback of one run would slow the
/// next: every run starts after a `sync`, and the two kinds take turns, each going first in half
/// of the runs.
fn log_capture(bins: &Bins, runs: usize) -> Res<Row> {
    const LINES: u64 = 2_000_000;
    let args = [
        "--lines",
        "2000000",
        "--line-bytes",
        "100",
        "--exit-after-lines",
    ];
    let mut direct = Vec::new();
    let mut shim_secs = Vec::new();
    let mut shim_cpu = Vec::new();
    let mut lost = 0i64;
    let runs = runs.max(4);
    for i in 0..runs {
        let dir = tempfile::tempdir()?;
        let run_direct = |direct: &mut Vec<f64>| -> Res<()> {
            let out = fs::File::create(dir.path().join("direct.log"))?;
            // SAFETY: sync has no preconditions.
            unsafe { libc::sync() };
            let t = Instant::now();
            Command::new(&bins.fixture)
                .args(args)
                .stdout(out)
                .status()?;
            direct.push(t.elapsed().as_secs_f64());
            fs::remove_file(dir.path().join("direct.log"))?;
            Ok(())
        };
        if i % 2 == 0 {
            run_direct(&mut direct)?;
        }
        let run = dir.path().join("run");
        fs::create_dir_all(&run)?;
        let log = dir.path().join("svc.log");
        let argv: Vec<String> = std::iter::once(bins.fixture.display().to_string())
            .chain(args.iter().map(|s| s.to_string()))
            .collect();
        let mut shim = supervise::ShimDriver::start(&bins.homeport, &run)?;
        // SAFETY: sync has no preconditions.
        unsafe { libc::sync() };
        let t = Instant::now();
        shim.run(&argv, dir.path(), log.clone())?;
        shim_secs.push(t.elapsed().as_secs_f64());
        shim_cpu.push(shim.cpu_secs()?);
        shim.quit()?;
        lost = LINES as i64 - count_lines(&log)? as i64;
        for n in 0..=1000 {
            let _ = fs::remove_file(if n == 0 {
                log.clone()
            } else {
                PathBuf::from(format!("{}.{n}", log.display()))
            });
        }
        if i % 2 == 1 {
            run_direct(&mut direct)?;
        }
    }
    let (d, s, cpu) = (median(direct), median(shim_secs), median(shim_cpu));
    let mb = (LINES * 100) as f64 / 1e6;
    Ok(Row {
        name: "log capture, 2,000,000 × 100-byte lines (throughput)",
        baseline: format!("{:.0} MB/s ({d:.2} s, stdout to a file)", mb / d),
        homeport: format!(
            "{:.0} MB/s ({s:.2} s; the log holder's own CPU {cpu:.2} s), {lost} lines lost",
            mb / s
        ),
        ratio: format!("{:.2}× of direct", d / s),
        goal: "≥ 0.95×, 0 lost",
    })
}

/// Lines in a log and its rotations.
fn count_lines(log: &Path) -> Res<u64> {
    let mut n = 0;
    for i in 0..1000 {
        let p = if i == 0 {
            log.to_path_buf()
        } else {
            PathBuf::from(format!("{}.{i}", log.display()))
        };
        let Ok(f) = fs::File::open(&p) else { break };
        n += BufReader::new(f).split(b'\n').count() as u64;
    }
    Ok(n)
}

fn twenty_services() -> String {
    (0..20)
        .map(|i| format!("[apps.b.env.p.services.s{i:02}]\ncommand = [\"@FIXTURE@\", \"--lines\", \"1\"]\nautostart = true\n"))
        .collect()
}

/// Agent start → 20 independent services running, vs spawning the 20 processes directly and
/// waiting until each has printed its first line.
fn start_20(bins: &Bins, runs: usize) -> Res<Row> {
    let mut base = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut kids = Vec::new();
        for _ in 0..20 {
            kids.push(
                Command::new(&bins.fixture)
                    .args(["--lines", "1"])
                    .stdout(Stdio::piped())
                    .spawn()?,
            );
        }
        for k in &mut kids {
            let mut line = String::new();
            BufReader::new(k.stdout.take().ok_or("stdout")?).read_line(&mut line)?;
        }
        base.push(t.elapsed().as_secs_f64() * 1000.0);
        for mut k in kids {
            let _ = k.kill();
            let _ = k.wait();
        }

        let t = Instant::now();
        let agent = Agent::start(bins, &twenty_services())?;
        let done = agent.wait(Duration::from_secs(60), all_running(20))?;
        ours.push((done - t).as_secs_f64() * 1000.0);
    }
    let (b, o) = (median(base), median(ours));
    Ok(Row {
        name: "agent start → 20 independent services running",
        baseline: format!("{b:.1} ms (spawn 20 directly)"),
        homeport: format!("{o:.1} ms"),
        ratio: format!("{:.2}×", o / b),
        goal: "–",
    })
}

pub(crate) fn cpu_ticks(pid: u32) -> Res<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').ok_or("stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

/// Nanoseconds on a CPU of `pid`'s threads (those named `name`, or all), from each thread's
/// `schedstat`: finer than the clock ticks of `stat`, which a few hundred cycles of a thread that
/// runs for microseconds would not move.
fn task_ns(pid: u32, name: Option<&str>) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            name.is_none_or(|n| {
                fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == n)
            })
        })
        .filter_map(|t| {
            fs::read_to_string(t.path().join("schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// CPU ticks of the children `pid` has reaped (fields 16 and 17 of its stat).
fn children_ticks(pid: u32) -> Res<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').ok_or("stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f[13].parse::<u64>()? + f[14].parse::<u64>()?)
}

pub(crate) fn status_kib(pid: u32, key: &str) -> Res<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    kib_field(&text, key)
}

pub(crate) fn rollup_kib(pid: u32, key: &str) -> Res<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    kib_field(&text, key)
}

fn kib_field(text: &str, key: &str) -> Res<u64> {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .ok_or(format!("no {key}"))?;
    Ok(line.split_whitespace().nth(1).ok_or("value")?.parse()?)
}

/// `GET /api/v1/status` with 50 services, against `GET /livez` on the same connection.
fn status_latency(bins: &Bins) -> Res<Row> {
    const N: usize = 2000;
    let body: String = (0..50)
        .map(|i| {
            format!(
                "[apps.b.env.e{}.services.s{i:02}]\ncommand = [\"@FIXTURE@\"]\nautostart = true\n",
                i % 5
            )
        })
        .collect();
    let agent = Agent::start(bins, &body)?;
    agent.wait(Duration::from_secs(60), all_running(50))?;
    let data = agent.data();
    let ep: homeport_types::AgentEndpoint =
        serde_json::from_slice(&fs::read(data.join("agent.json"))?)?;
    let token = fs::read_to_string(data.join("token"))?.trim().to_owned();
    let http = reqwest::Client::builder().no_proxy().build()?;
    let measure = |path: &str| -> Res<(f64, f64)> {
        let url = format!("http://{}{path}", ep.addr);
        let mut ms: Vec<f64> = agent.rt.block_on(async {
            let mut out = Vec::with_capacity(N);
            for _ in 0..N {
                let t = Instant::now();
                let r = http.get(&url).bearer_auth(&token).send().await?;
                let _ = r.bytes().await?;
                out.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, reqwest::Error>(out)
        })?;
        ms.sort_by(f64::total_cmp);
        Ok((ms[N / 2], ms[N * 99 / 100]))
    };
    let (live50, live99) = measure("/livez")?;
    let (st50, st99) = measure("/api/v1/status")?;
    Ok(Row {
        name: "`GET /api/v1/status` with 50 services (p50 / p99 of 2,000)",
        baseline: format!("{live50:.2} / {live99:.2} ms (`/livez`)"),
        homeport: format!("{st50:.2} / {st99:.2} ms"),
        ratio: format!("{:.2}× at p99", st99 / live99),
        goal: "p99 ≤ 5 ms",
    })
}

/// One SSE client following a service that prints 2,000,000 lines as fast as it can, against
/// reading the same log file straight from disk; and the agent's peak memory meanwhile.
fn sse_throughput(bins: &Bins) -> Res<Row> {
    use futures_util::StreamExt;
    const LINES: u64 = 2_000_000;
    let agent = Agent::start(
        bins,
        // One file holds the whole run, so the follower's pace, not the rotation, is measured.
        r#"log_max_bytes = 1073741824
[apps.b.env.p.services.chatty]
command = ["@FIXTURE@", "--lines", "2000000", "--exit-after-lines"]
restart = "never"
"#,
    )?;
    agent.wait(Duration::from_secs(30), |s| s.services.len() == 1)?;
    let data = agent.data();
    let ep: homeport_types::AgentEndpoint =
        serde_json::from_slice(&fs::read(data.join("agent.json"))?)?;
    let token = fs::read_to_string(data.join("token"))?.trim().to_owned();
    let client = homeport_client::Client::discover(&data)?;
    let rss_before = status_kib(agent.child.id(), "VmRSS")?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let url = format!(
        "http://{}/api/v1/logs/stream?target=b/p/chatty&tail=0",
        ep.addr
    );
    let (count, secs) = agent.rt.block_on(async {
        let resp = http.get(&url).bearer_auth(&token).send().await?;
        let mut body = resp.bytes_stream();
        client
            .act(homeport_types::Action::Start, &"b/p/chatty".parse()?)
            .await?;
        let mut count = 0u64;
        let mut first: Option<Instant> = None;
        let mut rest = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while count < LINES {
            let Some(chunk) = tokio::time::timeout_at(deadline, body.next()).await? else {
                break;
            };
            let chunk = chunk?;
            first.get_or_insert_with(Instant::now);
            rest.extend_from_slice(&chunk);
            // Count entries of complete `data:` lines; keep a partial line for the next chunk.
            let cut = rest.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            const PAT: &[u8] = b"\"text\":\"line ";
            count += rest[..cut].windows(PAT.len()).filter(|w| *w == PAT).count() as u64;
            rest.drain(..cut);
        }
        let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
        Ok::<_, Box<dyn std::error::Error>>((count, secs))
    })?;
    let peak = status_kib(agent.child.id(), "VmHWM")?;
    // Baseline: the same file read line by line from disk.
    let log = data.join("logs/b/p/chatty.log");
    let t = Instant::now();
    let direct = count_lines(&log)?;
    let direct_rate = direct as f64 / t.elapsed().as_secs_f64();
    let rate = count as f64 / secs;
    Ok(Row {
        name: "one SSE client following a chatty service (2,000,000 lines)",
        baseline: format!("{:.0} lines/s (reading the log file)", direct_rate),
        homeport: format!(
            "{rate:.0} lines/s, {count} received; agent RSS {:.1} MB before, peak {:.1} MB",
            rss_before as f64 / 1024.0,
            peak as f64 / 1024.0
        ),
        ratio: format!("{:.2}× of reading the file", rate / direct_rate),
        goal: "≥ 100,000 lines/s, bounded memory",
    })
}
