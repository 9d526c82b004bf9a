//! The router against a direct connection and Caddy, same upstream, same run: requests per second
//! and latency over kept-alive connections for small answers (wrk), and the agent's idle memory
//! with and without the router.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{Agent, Bins, Res, Row};

/// What wrk measured.
struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn free_port() -> Res<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `wrk` against `port` with `conns` kept-alive connections for `secs`.
fn wrk(port: u16, host: &str, conns: u32, secs: u64) -> Res<Load> {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            "-H",
        ])
        .arg(format!("Host: {host}"))
        .arg(format!("http://127.0.0.1:{port}/bench"))
        .output()
        .map_err(|e| format!("cannot run wrk ({e}): ./scripts/setup.sh --bench installs it"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || text.contains("Non-2xx") || text.contains("Socket errors") {
        return Err(format!("wrk failed or saw errors:\n{text}").into());
    }
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
    };
    let ms = |v: String| -> Option<f64> {
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
        let n: f64 = num.parse().ok()?;
        Some(match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            _ => return None,
        })
    };
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in:\n{text}"))?;
    Ok(Load {
        rps,
        p50_ms: field("50%").and_then(ms).ok_or("no p50")?,
        p99_ms: field("99%").and_then(ms).ok_or("no p99")?,
    })
}

/// Caddy as the same reverse proxy, with its own Caddyfile (its system service stays off).
struct Caddy {
    child: std::process::Child,
    /// Its Caddyfile and data, removed when it stops.
    _dir: tempfile::TempDir,
}

impl Caddy {
    fn start(port: u16, upstream: u16) -> Res<Self> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("Caddyfile");
        fs::write(
            &file,
            format!(
                "{{\n\tadmin off\n\tauto_https off\n}}\nhttp://:{port} {{\n\tbind 127.0.0.1\n\treverse_proxy 127.0.0.1:{upstream}\n}}\n"
            ),
        )?;
        let child = Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot run caddy ({e}): ./scripts/setup.sh --bench installs it")
            })?;
        wait_answers(port, "x")?;
        Ok(Self { child, _dir: dir })
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_answers(port: u16, host: &str) -> Res<()> {
    use std::io::{Read, Write};
    let mut last = String::new();
    for _ in 0..500 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(
                format!("GET /bench HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 200") {
                return Ok(());
            }
            last = answer;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("nothing answers 200 on port {port}; last answer: {last:.300}").into())
}

fn rss_kib(pid: u32) -> Res<u64> {
    crate::status_kib(pid, "VmRSS")
}

pub(crate) fn run(bins: &Bins, secs: u64) -> Res<Vec<Row>> {
    let (upstream, router, caddy_port) = (free_port()?, free_port()?, free_port()?);
    let app = format!(
        "[apps.bench.env.production]\nautostart = true\n\
         [apps.bench.env.production.services.web]\n\
         command = [\"@FIXTURE@\", \"--port\", \"{{port}}\", \"--keep-alive\", \"--quiet\"]\n\
         port = {upstream}\n"
    );
    // Idle memory: the same agent and service, without and with the router.
    let mut idle = Vec::new();
    for router_port in [0, router] {
        let agent = Agent::start(bins, &format!("router_port = {router_port}\n\n{app}"))?;
        agent.wait(Duration::from_secs(30), |s| {
            s.services.iter().all(|x| x.state.is_ready())
        })?;
        if router_port != 0 {
            wait_answers(router, "bench.localhost")?;
        }
        std::thread::sleep(Duration::from_secs(2));
        idle.push(rss_kib(agent.pid())? as f64 / 1024.0);
    }

    let agent = Agent::start(bins, &format!("router_port = {router}\n\n{app}"))?;
    agent.wait(Duration::from_secs(30), |s| {
        s.services.iter().all(|x| x.state.is_ready())
    })?;
    wait_answers(router, "bench.localhost")?;
    let caddy = Caddy::start(caddy_port, upstream)?;
    // Warm every path once, then measure them in turns so load on the machine hits all alike.
    for (port, host) in [
        (upstream, "x"),
        (router, "bench.localhost"),
        (caddy_port, "x"),
    ] {
        wrk(port, host, 1, 1)?;
    }
    let mut results: [[Vec<Load>; 2]; 3] = Default::default();
    for _round in 0..3 {
        for (i, (port, host)) in [
            (upstream, "x"),
            (router, "bench.localhost"),
            (caddy_port, "x"),
        ]
        .into_iter()
        .enumerate()
        {
            results[i][0].push(wrk(port, host, 1, secs)?);
            results[i][1].push(wrk(port, host, 16, secs)?);
        }
    }
    drop(caddy);
    let loaded_rss = rss_kib(agent.pid())? as f64 / 1024.0;
    let med = |v: &[Load], f: fn(&Load) -> f64| crate::median(v.iter().map(f).collect());
    let [direct, through, caddy] = &results;
    let p99 = |r: &[Vec<Load>; 2]| med(&r[0], |l| l.p99_ms);
    let p50 = |r: &[Vec<Load>; 2]| med(&r[0], |l| l.p50_ms);
    let rps1 = |r: &[Vec<Load>; 2]| med(&r[0], |l| l.rps);
    let rps16 = |r: &[Vec<Load>; 2]| med(&r[1], |l| l.rps);
    Ok(vec![
        Row {
            name: "latency, 1 kept-alive connection, small answers (p50 / p99, median of 3 runs)",
            baseline: format!(
                "direct {:.3} / {:.3} ms; Caddy {:.3} / {:.3} ms",
                p50(direct),
                p99(direct),
                p50(caddy),
                p99(caddy)
            ),
            homeport: format!(
                "{:.3} / {:.3} ms: added p99 {:.3} ms (Caddy adds {:.3} ms)",
                p50(through),
                p99(through),
                p99(through) - p99(direct),
                p99(caddy) - p99(direct)
            ),
            ratio: format!(
                "{:.2}× direct p99, {:.2}× Caddy's",
                p99(through) / p99(direct),
                p99(through) / p99(caddy)
            ),
            goal: "added p99 ≤ 0.3 ms",
        },
        Row {
            name: "requests/s, 1 kept-alive connection",
            baseline: format!("direct {:.0}; Caddy {:.0}", rps1(direct), rps1(caddy)),
            homeport: format!("{:.0}", rps1(through)),
            ratio: format!("{:.2}× Caddy's", rps1(through) / rps1(caddy)),
            goal: "≥ Caddy's",
        },
        Row {
            name: "requests/s, 16 kept-alive connections",
            baseline: format!("direct {:.0}; Caddy {:.0}", rps16(direct), rps16(caddy)),
            homeport: format!("{:.0}", rps16(through)),
            ratio: format!("{:.2}× Caddy's", rps16(through) / rps16(caddy)),
            goal: "≥ Caddy's",
        },
        Row {
            name: "agent idle RSS, one service, without / with the router",
            baseline: format!("{:.1} MB (router_port = 0)", idle[0]),
            homeport: format!(
                "{:.1} MB with the router (+{:.1} MB); {loaded_rss:.1} MB after the load above",
                idle[1],
                idle[1] - idle[0]
            ),
            ratio: format!("{:.2}×", idle[1] / idle[0]),
            goal: "≤ +2 MB",
        },
    ])
}
