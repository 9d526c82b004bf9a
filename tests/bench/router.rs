//! The router against a direct connection and Caddy, same upstream, same run: requests per second
//! over kept-alive connections for small answers (wrk), latency from a client here that sends one
//! request on each path in turn (so load from elsewhere on the machine falls on all of them
//! alike), and the agent's idle memory with and without the router.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{Agent, Bins, Res, Row};

/// What wrk measured.
struct Load {
    rps: f64,
}

fn free_port() -> Res<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `wrk` against `port` with `conns` kept-alive connections for `secs`.
fn wrk(port: u16, host: &str, conns: u32, secs: u64) -> Res<Load> {
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{conns}"), &format!("-d{secs}s"), "-H"])
        .arg(format!("Host: {host}"))
        .arg(format!("http://127.0.0.1:{port}/bench"))
        .output()
        .map_err(|e| format!("cannot run wrk ({e}): ./scripts/setup.sh --bench installs it"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || text.contains("Non-2xx") || text.contains("Socket errors") {
        return Err(format!("wrk failed or saw errors:\n{text}").into());
    }
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in:\n{text}"))?;
    Ok(Load { rps })
}

/// One kept-alive HTTP/1.1 connection that times each request.
struct Conn {
    reader: std::io::BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
    request: Vec<u8>,
}

impl Conn {
    fn open(port: u16, host: &str) -> Res<Self> {
        let s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Self {
            writer: s.try_clone()?,
            reader: std::io::BufReader::new(s),
            request: format!("GET /bench HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
        })
    }

    /// Milliseconds from sending a request to having read all of its answer.
    fn time_one(&mut self) -> Res<f64> {
        use std::io::{BufRead, Read, Write};
        let t = std::time::Instant::now();
        self.writer.write_all(&self.request)?;
        let mut line = String::new();
        let mut length = 0usize;
        self.reader.read_line(&mut line)?;
        if !line.starts_with("HTTP/1.1 200") {
            return Err(format!("answer {line:?}").into());
        }
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse()?;
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    }
}

/// Latencies of the three paths, one request on each in turn, so that whatever else the machine
/// does at a moment falls on all three alike. Returns the sorted samples per path.
fn interleaved(paths: &[(u16, &str)], rounds: usize) -> Res<Vec<Vec<f64>>> {
    let mut conns: Vec<Conn> = paths
        .iter()
        .map(|(p, h)| Conn::open(*p, h))
        .collect::<Res<_>>()?;
    let mut samples = vec![Vec::with_capacity(rounds); paths.len()];
    for _ in 0..rounds {
        for (c, s) in conns.iter_mut().zip(samples.iter_mut()) {
            s.push(c.time_one()?);
        }
    }
    for s in &mut samples {
        s.sort_by(f64::total_cmp);
    }
    Ok(samples)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
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
    let lat = interleaved(
        &[
            (upstream, "x"),
            (router, "bench.localhost"),
            (caddy_port, "x"),
        ],
        20_000,
    )?;
    drop(caddy);
    let loaded_rss = rss_kib(agent.pid())? as f64 / 1024.0;
    let med = |v: &[Load], f: fn(&Load) -> f64| crate::median(v.iter().map(f).collect());
    let [direct, through, caddy] = &results;
    let rps1 = |r: &[Vec<Load>; 2]| med(&r[0], |l| l.rps);
    let rps16 = |r: &[Vec<Load>; 2]| med(&r[1], |l| l.rps);
    let (d, r, c) = (&lat[0], &lat[1], &lat[2]);
    Ok(vec![
        Row {
            name: "latency, 1 kept-alive connection per path, small answers, 20,000 requests each, interleaved (p50 / p99)",
            baseline: format!(
                "direct {:.3} / {:.3} ms; Caddy {:.3} / {:.3} ms",
                pct(d, 0.5),
                pct(d, 0.99),
                pct(c, 0.5),
                pct(c, 0.99)
            ),
            homeport: format!(
                "{:.3} / {:.3} ms: adds {:.3} ms at p50, {:.3} ms at p99 (Caddy adds {:.3} / {:.3} ms)",
                pct(r, 0.5),
                pct(r, 0.99),
                pct(r, 0.5) - pct(d, 0.5),
                pct(r, 0.99) - pct(d, 0.99),
                pct(c, 0.5) - pct(d, 0.5),
                pct(c, 0.99) - pct(d, 0.99)
            ),
            ratio: format!(
                "{:.2}× direct p99, {:.2}× Caddy's",
                pct(r, 0.99) / pct(d, 0.99),
                pct(r, 0.99) / pct(c, 0.99)
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
