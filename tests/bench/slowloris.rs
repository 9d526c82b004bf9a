//! The API under a slowloris. `/livez` is asked from a new connection each time, as a monitor or
//! a probe of another program asks, of an agent held to 1,024 descriptors (soft and hard, so it
//! cannot raise them) that supervises a health-checked service: first with nothing else going
//! on (the baseline), then while 2,000 connections that send half a request header are held
//! open and reopened as fast as the agent closes them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{Agent, Bins, Res, Row};

const SLOW: usize = 2000;
const ASKS: usize = 500;

pub(crate) fn run(bins: &Bins) -> Res<Vec<Row>> {
    raise_own_limit(SLOW as u64 + 500)?;
    let port = free_port()?;
    let agent = Agent::start_under(
        bins,
        &format!(
            r#"
[apps.b.env.p.services.web]
command = ["@FIXTURE@", "--port", "{{port}}"]
port = {port}
autostart = true
health = {{ http = "/health", interval = "100ms", timeout = "1s" }}
"#
        ),
        &["prlimit", "--nofile=1024:1024"],
    )?;
    let healthy = |s: &homeport_types::StatusSnapshot| {
        s.services
            .iter()
            .all(|x| x.state == homeport_types::ServiceState::Healthy)
    };
    agent.wait(Duration::from_secs(60), healthy)?;
    let ep: homeport_types::AgentEndpoint =
        serde_json::from_slice(&std::fs::read(agent.data().join("agent.json"))?)?;
    let addr: SocketAddr = ep.addr.parse()?;
    let service = |agent: &Agent| -> Res<(Option<u32>, u64)> {
        let c = homeport_client::Client::discover(&agent.data())?;
        let s = agent.rt.block_on(c.status())?;
        let w = &s.services[0];
        Ok((w.pid, w.restarts))
    };
    let before = service(&agent)?;

    let (base50, base99) = livez(addr)?;

    let stop = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicUsize::new(0));
    let reopened = Arc::new(AtomicUsize::new(0));
    let attacker = {
        let (stop, open, reopened) = (stop.clone(), open.clone(), reopened.clone());
        std::thread::spawn(move || slowloris(addr, &stop, &open, &reopened))
    };
    let start = Instant::now();
    while open.load(Ordering::Relaxed) < SLOW {
        if start.elapsed() > Duration::from_secs(60) {
            return Err("the attacker could not open 2,000 connections".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let reopened_before = reopened.load(Ordering::Relaxed);
    let attack_started = Instant::now();
    let (hit50, hit99) = livez(addr)?;
    let attack_secs = attack_started.elapsed().as_secs_f64();
    let reopened_during = reopened.load(Ordering::Relaxed) - reopened_before;
    let after = service(&agent)?;
    stop.store(true, Ordering::Relaxed);
    let _ = attacker.join();
    let undisturbed = before == after;
    Ok(vec![Row {
        name: "`/livez` from a new connection, agent held to 1,024 descriptors (p50 / p99 of 500)",
        baseline: format!("{base50:.2} / {base99:.2} ms (no other client)"),
        homeport: format!(
            "{hit50:.2} / {hit99:.2} ms with 2,000 slow connections open ({:.0} closed by the agent and reopened per second); the health-checked service {}",
            reopened_during as f64 / attack_secs,
            if undisturbed {
                "kept its pid, 0 restarts"
            } else {
                "was restarted"
            }
        ),
        ratio: format!("{:.1}× at p99", hit99 / base99),
        goal: "p99 ≤ 1 s, the service untouched",
    }])
}

/// Latencies of `/livez`, each from a new connection, in ms: (p50, p99).
fn livez(addr: SocketAddr) -> Res<(f64, f64)> {
    let mut ms = Vec::with_capacity(ASKS);
    for _ in 0..ASKS {
        let t = Instant::now();
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "GET /livez HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        if !resp.ends_with("ok") {
            return Err(format!("/livez answered {resp:?}").into());
        }
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok((ms[ASKS / 2], ms[ASKS * 99 / 100]))
}

/// Holds `SLOW` connections with half a request header each, reopening every one the agent
/// closes, until `stop`.
fn slowloris(addr: SocketAddr, stop: &AtomicBool, open: &AtomicUsize, reopened: &AtomicUsize) {
    let connect = || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.write_all(format!("GET /livez HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
            .ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    };
    let mut conns: Vec<Option<TcpStream>> = (0..SLOW).map(|_| None).collect();
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::Relaxed) {
        for c in &mut conns {
            let closed = match c {
                None => true,
                Some(s) => {
                    !matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                }
            };
            if closed {
                if c.is_some() {
                    reopened.fetch_add(1, Ordering::Relaxed);
                }
                *c = connect();
            }
        }
        open.store(conns.iter().flatten().count(), Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn raise_own_limit(need: u64) -> Res<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct we own.
    let ok = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0
        }
    };
    if !ok || lim.rlim_cur < need {
        return Err(format!("this benchmark needs {need} descriptors (ulimit -n)").into());
    }
    Ok(())
}

fn free_port() -> Res<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
