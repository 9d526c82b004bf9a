//! The agent's HTTP router with real clients: names, pages, the API kept out, request-level
//! blue-green through deploys and rollbacks, and bad input.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::deploy::Source;
use crate::util::*;

const NAMES: &str = r#"
[apps.shop.env.production]
autostart = true
hostnames = ["shop.test"]

[apps.shop.env.production.services.web]
command = ["@FIXTURE@", "--port", "{port}", "--say", "prod", "--keep-alive"]
port = @P0@
health = { http = "/health", interval = "100ms" }

[apps.shop.env.production.services.worker]
command = ["@FIXTURE@"]

[apps.shop.env.beta]
autostart = true

[apps.shop.env.beta.services.web]
command = ["@FIXTURE@", "--port", "{port}", "--say", "beta"]
port = @P1@
health = { http = "/health", interval = "100ms" }
"#;

fn get(port: u16, host: &str, path: &str) -> (u16, String) {
    raw_http(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn names_route_to_environments_and_stopped_ones_say_how_to_start_them() {
    let mut env = TestEnv::new(NAMES);
    env.start_agent();
    env.wait_service("shop/production/web", "is healthy", |s| s.state.is_ready());
    env.wait_service("shop/beta/web", "is healthy", |s| s.state.is_ready());
    let r = env.router_port;
    for (host, who) in [
        ("shop.localhost", "prod"),
        (&format!("shop.localhost:{r}") as &str, "prod"),
        ("production.shop.localhost", "prod"),
        ("Shop.Test", "prod"),
        ("beta.shop.localhost", "beta"),
    ] {
        let (code, body) = get(r, host, "/x");
        assert_eq!(code, 200, "{host}: {body}");
        assert!(
            body.starts_with(&format!("hello from {who} ")),
            "{host}: {body}"
        );
    }
    let (code, body) = get(r, "nope.localhost", "/");
    assert_eq!(code, 404);
    assert!(body.contains("<code>beta.shop.localhost</code>"), "{body}");

    // The names are what status, the dashboard and the tray open.
    let status = env.status();
    let web = service(&status, "shop/production/web");
    assert_eq!(
        web.url.as_deref(),
        Some(&*format!("http://shop.localhost:{r}/"))
    );
    let beta = service(&status, "shop/beta/web");
    assert_eq!(
        beta.url.as_deref(),
        Some(&*format!("http://beta.shop.localhost:{r}/"))
    );
    let out = stdout(&env.cli(&["status"]));
    assert!(out.contains("OPEN IN A BROWSER"), "{out}");
    assert!(
        out.contains(&format!("shop/production  http://shop.localhost:{r}/")),
        "{out}"
    );

    let stopped = env.cli(&["stop", "shop/beta"]);
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    let (code, body) = get(r, "beta.shop.localhost", "/");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("shop/beta is stopped"), "{body}");
    assert!(body.contains("homeport start shop/beta"), "{body}");
    // Production goes on.
    assert_eq!(get(r, "shop.localhost", "/").0, 200);
}

#[test]
fn the_router_never_serves_the_agents_api() {
    let mut env = TestEnv::new(NAMES);
    env.start_agent();
    let r = env.router_port;
    let token = std::fs::read_to_string(env.data.join("token")).expect("token");
    let api_port = env
        .client()
        .base_url()
        .rsplit(':')
        .next()
        .unwrap_or("")
        .trim_end_matches('/')
        .to_owned();
    for host in [
        "127.0.0.1".to_owned(),
        format!("127.0.0.1:{r}"),
        format!("127.0.0.1:{api_port}"),
        "localhost".to_owned(),
    ] {
        let (code, body) = raw_http(
            r,
            &format!(
                "GET /api/v1/status HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                token.trim()
            ),
        );
        assert_eq!(code, 404, "{host}: {body}");
        assert!(!body.contains("\"services\""), "{host}: {body}");
    }
}

/// What one request on the kept-alive connection saw.
struct Seen {
    sent: Instant,
    release: Result<String, String>,
}

/// One HTTP/1.1 connection, a request every 10 ms, until `stop`.
fn keep_alive_client(
    port: u16,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = BufReader::new(stream);
        let mut connections = 1;
        while !stop.load(Ordering::SeqCst) {
            let sent = Instant::now();
            let release = (|| -> Result<String, String> {
                writer
                    .write_all(b"GET /tick HTTP/1.1\r\nHost: shop.localhost\r\n\r\n")
                    .map_err(|e| format!("write: {e}"))?;
                let mut status = String::new();
                reader
                    .read_line(&mut status)
                    .map_err(|e| format!("read: {e}"))?;
                if !status.starts_with("HTTP/1.1 200") {
                    return Err(format!("status line {status:?}"));
                }
                let (mut length, mut release) = (0usize, None);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                        return Err("closed mid-answer".into());
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        } else if k.eq_ignore_ascii_case("x-release") {
                            release = Some(v.trim().to_owned());
                        } else if k.eq_ignore_ascii_case("connection") && v.trim() == "close" {
                            return Err("the router closed the connection".into());
                        }
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).map_err(|e| e.to_string())?;
                release.ok_or_else(|| "no X-Release".into())
            })();
            let failed = release.is_err();
            seen.lock().expect("lock").push(Seen { sent, release });
            if failed {
                // Go on with a new connection so every later request still counts.
                connections += 1;
                let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("timeout");
                writer = stream.try_clone().expect("clone");
                reader = BufReader::new(stream);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        connections
    })
}

#[test]
fn one_kept_alive_client_follows_ten_deploys_and_two_rollbacks_without_a_failure() {
    let env = TestEnv::new(
        r#"
[apps.shop]
source = "@HOME@/src"
build = ["sh build.sh"]
artifacts = ["out"]
keep_releases = 20

[apps.shop.env.production]
autostart = true
health_deadline = "20s"
health_stable = "1s"
drain = "10s"

[apps.shop.env.production.services.web]
command = ["{release}/out/run.sh", "--port", "{port}", "--keep-alive"]
strategy = "blue-green"
port = @P0@
ports = { blue = @P1@, green = @P2@ }
health = { http = "/health", interval = "100ms" }
"#,
    );
    let src = Source::new(env.dir.path());
    src.write("flags", "--say r0");
    src.commit("r0");
    let mut env = env;
    env.start_agent();
    let out = env.cli(&["deploy", "shop"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let live = |env: &TestEnv| {
        let flags = read(&env.data.join("apps/shop/production/current/out/flags"));
        flags.trim().trim_start_matches("--say ").to_owned()
    };
    assert_eq!(get(env.router_port, "shop.localhost", "/").0, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let client = keep_alive_client(env.router_port, Arc::clone(&stop), Arc::clone(&seen));
    // (when the deploy or rollback began, when it was over, what must answer from then on)
    let mut switches: Vec<(Instant, Instant, String)> =
        vec![(Instant::now(), Instant::now(), live(&env))];
    let wait_for_traffic = |seen: &Arc<Mutex<Vec<Seen>>>| {
        let before = seen.lock().expect("lock").len();
        env.wait_until("the client sent more requests", || {
            (seen.lock().expect("lock").len() >= before + 5).then_some(())
        });
    };
    for i in 1..=10 {
        wait_for_traffic(&seen);
        src.write("flags", &format!("--say r{i}"));
        src.commit(&format!("r{i}"));
        let began = Instant::now();
        let out = env.cli(&["deploy", "shop"]);
        assert!(
            out.status.success(),
            "deploy {i}: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(stdout(&out).contains("drained"), "{}", stdout(&out));
        switches.push((began, Instant::now(), live(&env)));
    }
    for _ in 0..2 {
        wait_for_traffic(&seen);
        let began = Instant::now();
        let out = env.cli(&["rollback", "shop"]);
        assert!(out.status.success(), "{}", stderr(&out));
        switches.push((began, Instant::now(), live(&env)));
    }
    wait_for_traffic(&seen);
    stop.store(true, Ordering::SeqCst);
    let connections = client.join().expect("client");
    let seen = seen.lock().expect("lock");
    let failed: Vec<&String> = seen
        .iter()
        .filter_map(|s| s.release.as_ref().err())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        seen.len()
    );
    assert_eq!(connections, 1, "one connection throughout");
    assert!(seen.len() > 100, "the client kept asking: {}", seen.len());
    // Every request sent after a switch was over is answered by the release it switched to;
    // one sent while the next deploy runs, by that one or by the next (its flip may be done).
    let mut wrong = Vec::new();
    for s in seen.iter() {
        let Some(i) = switches.iter().rposition(|(_, over, _)| *over <= s.sent) else {
            continue;
        };
        let mut allowed = vec![&switches[i].2];
        if let Some((began, _, next)) = switches.get(i + 1)
            && *began <= s.sent
        {
            allowed.push(next);
        }
        if !s.release.as_ref().is_ok_and(|r| allowed.contains(&r)) {
            wrong.push(format!("{:?} instead of {allowed:?}", s.release));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} answers from the old release: {wrong:?}",
        wrong.len()
    );
    let releases: std::collections::BTreeSet<&String> = seen
        .iter()
        .filter_map(|s| s.release.as_ref().ok())
        .collect();
    assert!(releases.len() >= 11, "{releases:?}");
}

fn rss_kib(pid: u32) -> u64 {
    read(std::path::Path::new(&format!("/proc/{pid}/status")))
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn slow_clients_and_absurd_headers_keep_memory_bounded_and_others_served() {
    let mut env = TestEnv::new(NAMES);
    env.start_agent();
    env.wait_service("shop/production/web", "is healthy", |s| s.state.is_ready());
    let r = env.router_port;
    let pid = env.agent_pid().expect("agent pid");
    // Warm up, then measure.
    for _ in 0..20 {
        assert_eq!(get(r, "shop.localhost", "/").0, 200);
    }
    let before = rss_kib(pid);
    // 400 clients that send a header one byte at a time and never finish it.
    let mut slow: Vec<TcpStream> = (0..400)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", r)).expect("connect");
            s.write_all(b"GET / HTTP/1.1\r\nHost: shop.local")
                .expect("write");
            s
        })
        .collect();
    // Headers of a megabyte, and thousands of header lines.
    for _ in 0..20 {
        let huge = format!(
            "GET / HTTP/1.1\r\nHost: shop.localhost\r\nX-Big: {}\r\n\r\n",
            "a".repeat(1 << 20)
        );
        let mut s = TcpStream::connect(("127.0.0.1", r)).expect("connect");
        let _ = s.write_all(huge.as_bytes());
        let mut answer = String::new();
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 431"), "{:.100}", answer);
    }
    // Everyone else is served meanwhile.
    for i in 0..50 {
        for s in slow.iter_mut() {
            let _ = s.write_all(b"o");
        }
        let (code, body) = get(r, "shop.localhost", &format!("/{i}"));
        assert_eq!(code, 200, "{body}");
    }
    let during = rss_kib(pid);
    assert!(
        during < before + 40 * 1024,
        "the agent grew from {before} KiB to {during} KiB"
    );
    drop(slow);
}

/// Takes the CA out of the system store again, whatever happens in the test.
struct SystemTrust<'a>(&'a TestEnv);

impl Drop for SystemTrust<'_> {
    fn drop(&mut self) {
        let _ = self.0.cli(&["trust", "uninstall", "--system"]);
    }
}

#[test]
fn https_names_are_trusted_by_system_tools_after_trust_install() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: the system store needs root (CI runs as root)");
        return;
    }
    let https = free_port();
    let mut env = TestEnv::new(&format!("[agent]\nhttps_port = {https}\n{NAMES}"));
    env.start_agent();
    env.wait_service("shop/production/web", "is healthy", |s| s.state.is_ready());
    let curl = |env: &TestEnv| {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", "--resolve"])
            .arg(format!("shop.localhost:{https}:127.0.0.1"))
            .arg(format!("https://shop.localhost:{https}/"))
            .env("HOME", env.dir.path())
            .output()
            .expect("curl runs")
    };
    let refused = curl(&env);
    assert!(!refused.status.success(), "an untrusted CA is refused");
    assert!(
        stderr(&refused).contains("certificate"),
        "{}",
        stderr(&refused)
    );

    let guard = SystemTrust(&env);
    let out = env.cli(&["trust", "install", "--system"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("system store (update-ca-certificates): trusted"),
        "{}",
        stdout(&out)
    );
    let ok = curl(&env);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(
        stdout(&ok).starts_with("hello from prod"),
        "{}",
        stdout(&ok)
    );

    let out = env.cli(&["trust", "uninstall", "--system"]);
    assert!(
        stdout(&out).contains("system store (update-ca-certificates): not trusted"),
        "{}",
        stdout(&out)
    );
    drop(guard);
    assert!(!curl(&env).status.success(), "refused again");
    let status = stdout(&env.cli(&["trust", "status"]));
    assert!(
        status.contains("system store (update-ca-certificates): not trusted"),
        "{status}"
    );
}

#[test]
fn the_hosts_block_is_written_only_when_asked_and_leaves_the_rest() {
    let env = TestEnv::new(NAMES);
    let hosts = env.dir.path().join("hosts");
    let mine = "127.0.0.1\tlocalhost\n10.0.0.2\tnas\n";
    std::fs::write(&hosts, mine).expect("hosts");
    let file = hosts.display().to_string();
    // Without a terminal to ask on and without --yes, nothing changes.
    let out = env.cli(&["hosts", "install", "--file", &file]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert_eq!(read(&hosts), mine);
    let out = env.cli(&["hosts", "install", "--file", &file, "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = read(&hosts);
    assert!(text.starts_with(mine), "{text}");
    for name in [
        "shop.localhost",
        "production.shop.localhost",
        "beta.shop.localhost",
        "shop.test",
    ] {
        assert!(
            text.contains(&format!("127.0.0.1\t{name}\n")),
            "{name}: {text}"
        );
    }
    let show = stdout(&env.cli(&["hosts", "show", "--file", &file]));
    assert!(show.contains("has this block"), "{show}");
    let out = env.cli(&["hosts", "uninstall", "--file", &file, "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read(&hosts), mine);
}
