//! The costs of supervision, each against doing the same thing directly (or with supervisord)
//! in the same run: starting services with the agent up, stopping one, the agent's own start,
//! memory and CPU with idle services, and the binaries' sizes.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use homeport_shim::proto::{Exit, Frames, FromShim, Spec, ToShim};
use homeport_types::{Action, ServiceState};

use crate::{Agent, Bins, Res, Row, median, rollup_kib, status_kib};

fn services(n: usize, command: &str, autostart: bool) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[apps.b.env.p.services.s{i:02}]\ncommand = {command}\nautostart = {autostart}\n"
            )
        })
        .collect()
}

/// The agent up with 20 stopped services; one API call starts them all and answers when each
/// has spawned. Baseline: spawning the same 20 processes directly.
pub fn start_20_up(bins: &Bins, runs: usize) -> Res<Row> {
    let mut base = Vec::new();
    let mut ours = Vec::new();
    let command = r#"["@FIXTURE@", "--lines", "1"]"#;
    for _ in 0..runs {
        let t = Instant::now();
        let mut kids = Vec::new();
        for _ in 0..20 {
            kids.push(
                Command::new(&bins.fixture)
                    .args(["--lines", "1"])
                    .stdout(Stdio::null())
                    .spawn()?,
            );
        }
        base.push(t.elapsed().as_secs_f64() * 1000.0);
        for mut k in kids {
            let _ = k.kill();
            let _ = k.wait();
        }

        let agent = Agent::start(bins, &services(20, command, false))?;
        agent.wait(Duration::from_secs(60), |s| s.services.len() == 20)?;
        let client = homeport_client::Client::discover(&agent.data())?;
        let target = "b/p".parse()?;
        let t = Instant::now();
        let outcomes = agent.rt.block_on(client.act(Action::Start, &target))?;
        ours.push(t.elapsed().as_secs_f64() * 1000.0);
        if outcomes.len() != 20 || outcomes.iter().any(|o| o.error.is_some()) {
            return Err(format!("not all started: {outcomes:?}").into());
        }
    }
    let (b, o) = (median(base), median(ours));
    Ok(Row {
        name: "agent up: start 20 services (one API call, answered when all have spawned)",
        baseline: format!("{b:.1} ms (spawn the 20 directly)"),
        homeport: format!("{o:.1} ms"),
        ratio: format!("{:.2}×", o / b),
        goal: "≤ 1.5×",
    })
}

/// From exec to the first answer of `/livez`, with no services; baseline: `homeport --version`
/// (exec, start-up and exit of the same binary).
pub fn agent_ready(bins: &Bins, runs: usize) -> Res<Row> {
    let mut base = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..runs.max(5) {
        let t = Instant::now();
        Command::new(&bins.homeport)
            .arg("--version")
            .stdout(Stdio::null())
            .status()?;
        base.push(t.elapsed().as_secs_f64() * 1000.0);

        let t = Instant::now();
        let agent = Agent::start(bins, "")?;
        let endpoint = agent.data().join("agent.json");
        let deadline = t + Duration::from_secs(30);
        loop {
            if let Ok(bytes) = fs::read(&endpoint)
                && let Ok(ep) = serde_json::from_slice::<homeport_types::AgentEndpoint>(&bytes)
                && let Ok(mut s) = std::net::TcpStream::connect(&ep.addr)
            {
                write!(
                    s,
                    "GET /livez HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    ep.addr
                )?;
                let mut head = [0u8; 12];
                if s.read_exact(&mut head).is_ok() && head.ends_with(b"200") {
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err("the agent did not answer /livez".into());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        ours.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (b, o) = (median(base), median(ours));
    Ok(Row {
        name: "agent start → API ready (`/livez` answers), no services",
        baseline: format!("{b:.1} ms (`homeport --version`)"),
        homeport: format!("{o:.1} ms"),
        ratio: format!("{:.2}×", o / b),
        goal: "reported",
    })
}

/// A service that exits 200 ms after SIGTERM, stopped through the API (answered when it and its
/// log holder are gone); baseline: killpg and waitpid of the same program.
pub fn stop(bins: &Bins, runs: usize) -> Res<Row> {
    let args = ["--lines", "1", "--exit-after-term", "200"];
    let mut base = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..runs.max(5) {
        let mut child = Command::new(&bins.fixture)
            .args(args)
            .process_group(0)
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("stdout")?).read_line(&mut line)?;
        let t = Instant::now();
        // SAFETY: killpg of the group we just created.
        unsafe {
            libc::killpg(child.id() as i32, libc::SIGTERM);
        }
        child.wait()?;
        base.push(t.elapsed().as_secs_f64() * 1000.0);

        let command = format!(
            "{:?}",
            std::iter::once("@FIXTURE@").chain(args).collect::<Vec<_>>()
        );
        let agent = Agent::start(bins, &services(1, &command, true))?;
        let log = agent.data().join("logs/b/p/s00.log");
        agent.wait(Duration::from_secs(30), |s| {
            s.services
                .first()
                .is_some_and(|x| x.state == ServiceState::Running)
                && fs::read_to_string(&log).is_ok_and(|t| t.contains("line 0"))
        })?;
        let client = homeport_client::Client::discover(&agent.data())?;
        let target = "b/p/s00".parse()?;
        let t = Instant::now();
        agent.rt.block_on(client.act(Action::Stop, &target))?;
        ours.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (b, o) = (median(base), median(ours));
    Ok(Row {
        name: "stop a service that exits 200 ms after SIGTERM (API call until it is gone)",
        baseline: format!("{b:.1} ms (killpg + waitpid)"),
        homeport: format!("{o:.1} ms"),
        ratio: format!("{:.3}×", o / b),
        goal: "≤ 1.05×",
    })
}

/// Children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    homeport_platform::process_table()
        .into_iter()
        .filter(|p| p.ppid == pid)
        .map(|p| p.pid)
        .collect()
}

fn cpu_ticks(pid: u32) -> u64 {
    crate::cpu_ticks(pid).unwrap_or(0)
}

fn pss_mib(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|p| rollup_kib(*p, "Pss").ok())
        .sum::<u64>() as f64
        / 1024.0
}

/// The private, anonymous part of PSS (heap, stacks, written data), as opposed to pages of code
/// and libraries read from files, which the kernel can drop and read again.
fn anon_mib(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|p| rollup_kib(*p, "Pss_Anon").ok())
        .sum::<u64>() as f64
        / 1024.0
}

fn rss_mib(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|p| status_kib(*p, "VmRSS").ok())
        .sum::<u64>() as f64
        / 1024.0
}

/// Ten idle services: memory of every process of the manager (agent and log holders) and their
/// CPU over `secs`; baseline: supervisord running the same ten in the same run.
pub fn idle_10(bins: &Bins, secs: u64) -> Res<Vec<Row>> {
    let command = r#"["@FIXTURE@", "--lines", "1"]"#;
    let agent = Agent::start(bins, &services(10, command, true))?;
    agent.wait(Duration::from_secs(60), |s| {
        s.services.len() == 10 && s.services.iter().all(|x| x.state == ServiceState::Running)
    })?;
    std::thread::sleep(Duration::from_secs(2));
    let pid = agent.child.id();
    let shims: Vec<u32> = children(pid);
    if shims.len() != 10 {
        return Err(format!("expected 10 log holders, found {}", shims.len()).into());
    }
    let all: Vec<u32> = std::iter::once(pid).chain(shims.iter().copied()).collect();
    let ticks0: u64 = all.iter().map(|p| cpu_ticks(*p)).sum();
    let agent_ticks0 = cpu_ticks(pid);
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let elapsed = t.elapsed().as_secs_f64();
    let cpu_all =
        (all.iter().map(|p| cpu_ticks(*p)).sum::<u64>() - ticks0) as f64 / hz / elapsed * 100.0;
    let cpu_agent = (cpu_ticks(pid) - agent_ticks0) as f64 / hz / elapsed * 100.0;
    let (agent_pss, shim_pss) = (pss_mib(&[pid]), pss_mib(&shims));
    let (agent_rss, shim_rss) = (rss_mib(&[pid]), rss_mib(&shims));
    let anon = anon_mib(&all);
    let total = agent_pss + shim_pss;
    let max_shim = shims.iter().map(|p| pss_mib(&[*p])).fold(0.0f64, f64::max);

    let supervisord = supervisord_pss(bins)?;
    let (baseline, ratio) = match supervisord {
        Some((pss, anon, rss)) => (
            format!(
                "supervisord 4 with the same 10: {pss:.1} MiB PSS, of which {anon:.1} anonymous (RSS {rss:.1})"
            ),
            format!("{:.2}× supervisord", total / pss),
        ),
        None => (
            "supervisord not installed (pip install supervisor)".into(),
            "–".into(),
        ),
    };
    Ok(vec![
        Row {
            name: "memory, 10 idle services, every process of the manager",
            baseline,
            homeport: format!(
                "{total:.1} MiB PSS, of which {anon:.1} anonymous: agent {agent_pss:.1} + 10 log holders {shim_pss:.1} (largest {max_shim:.2}); RSS agent {agent_rss:.1} + log holders {shim_rss:.1}"
            ),
            ratio,
            goal: "≤ 8 MiB PSS, each log holder ≤ 0.5 MiB",
        },
        Row {
            name: "CPU while 10 services idle",
            baseline: format!("goal: 0.05 % of a core over {secs} s"),
            homeport: format!("agent {cpu_agent:.3} %, agent and log holders {cpu_all:.3} %"),
            ratio: format!("{:.2}× the goal", cpu_all / 0.05),
            goal: "≤ 0.05 %",
        },
    ])
}

/// supervisord (if installed) running the same ten services: its PSS, anonymous PSS and RSS in
/// MiB.
fn supervisord_pss(bins: &Bins) -> Res<Option<(f64, f64, f64)>> {
    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("supervisord.conf");
    let mut text = format!(
        "[supervisord]\nnodaemon=true\nlogfile={0}/supervisord.log\npidfile={0}/supervisord.pid\n",
        dir.path().display()
    );
    for i in 0..10 {
        text.push_str(&format!(
            "[program:s{i:02}]\ncommand={} --lines 1\nautostart=true\nstdout_logfile={}/s{i:02}.log\nstderr_logfile={}/s{i:02}.err\n",
            bins.fixture.display(),
            dir.path().display(),
            dir.path().display()
        ));
    }
    fs::write(&conf, text)?;
    let Ok(mut sd) = Command::new("supervisord")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return Ok(None);
    };
    let pid = sd.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let logged = (0..10)
            .filter(|i| {
                fs::read_to_string(dir.path().join(format!("s{i:02}.log")))
                    .is_ok_and(|t| t.contains("line 0"))
            })
            .count();
        if logged == 10 && children(pid).len() == 10 {
            break true;
        }
        if Instant::now() > deadline || sd.try_wait()?.is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let result = if ready {
        std::thread::sleep(Duration::from_secs(2));
        Some((pss_mib(&[pid]), anon_mib(&[pid]), rss_mib(&[pid])))
    } else {
        None
    };
    // SAFETY: kill of the process we spawned; supervisord stops its programs on SIGTERM.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let _ = sd.wait();
    Ok(result)
}

/// The stripped release binaries.
pub fn sizes(bins: &Bins) -> Res<Row> {
    let dir = tempfile::tempdir()?;
    let size = |p: &Path| -> Res<String> {
        let raw = fs::metadata(p)?.len() as f64 / 1e6;
        let out = dir.path().join("stripped");
        let stripped = Command::new("strip")
            .arg("-o")
            .arg(&out)
            .arg(p)
            .status()
            .ok()
            .filter(std::process::ExitStatus::success)
            .and_then(|_| fs::metadata(&out).ok())
            .map(|m| m.len() as f64 / 1e6);
        Ok(match stripped {
            Some(s) => format!("{s:.2} MB stripped ({raw:.1} MB as built)"),
            None => format!("{raw:.1} MB as built (no strip)"),
        })
    };
    let shim = bins.homeport.with_file_name("homeport-shim");
    Ok(Row {
        name: "the binaries, stripped",
        baseline: "–".into(),
        homeport: format!(
            "homeport {}; homeport-shim {}",
            size(&bins.homeport)?,
            size(&shim)?
        ),
        ratio: "–".into(),
        goal: "reported",
    })
}

/// Drives a `homeport-shim` over its control socket, as the agent does.
pub struct ShimDriver {
    child: Child,
    conn: UnixStream,
    frames: Frames,
}

impl ShimDriver {
    pub fn start(homeport: &Path, run_dir: &Path) -> Res<Self> {
        let (conn, theirs) = UnixStream::pair()?;
        let child = Command::new(homeport.with_file_name("homeport-shim"))
            .arg(run_dir)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .spawn()?;
        conn.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Self {
            child,
            conn,
            frames: Frames::default(),
        })
    }

    fn recv(&mut self) -> Res<FromShim> {
        loop {
            if let Some(body) = self.frames.next_body()? {
                return Ok(FromShim::decode(&body)?);
            }
            let mut chunk = [0u8; 512];
            let n = self.conn.read(&mut chunk)?;
            if n == 0 {
                return Err("the log holder ended".into());
            }
            self.frames.push(&chunk[..n]);
        }
    }

    /// Runs `argv` to its end, logging to `log`; returns how it exited.
    pub fn run(&mut self, argv: &[String], cwd: &Path, log: PathBuf) -> Res<Exit> {
        let spec = Spec {
            argv: argv.iter().map(Into::into).collect(),
            cwd: cwd.to_path_buf(),
            env: Vec::new(),
            log_path: log,
            log_max_bytes: 10 * 1024 * 1024,
            log_keep: 1000,
            stop_timeout_ms: 1000,
        };
        self.conn.write_all(&ToShim::Spawn(spec).encode())?;
        loop {
            match self.recv()? {
                FromShim::Exited(e) => return Ok(e),
                FromShim::SpawnFailed(e) => return Err(e.into()),
                _ => {}
            }
        }
    }

    /// CPU time (user and system) the log holder itself has used, its children not counted.
    pub fn cpu_secs(&self) -> Res<f64> {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok(crate::cpu_ticks(self.child.id())? as f64 / hz)
    }

    pub fn quit(mut self) -> Res<()> {
        self.conn.write_all(&ToShim::Quit.encode())?;
        self.child.wait()?;
        Ok(())
    }
}
