//! Attacks by the agent's neighbours — other local users, other local servers, slow clients —
//! each performed for real against the real agent, and each refused.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::api::{agent_port, request, token};
use crate::util::*;

const CONFIG: &str = r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@"]
autostart = true
"#;

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// A sign-in link made with the token, as `homeport dashboard --print` gets it.
fn sign_in_link(port: u16, token: &str) -> String {
    let auth = format!("Bearer {token}");
    let (code, _, body) = request(
        port,
        "POST",
        "/api/v1/sessions",
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(code, 200, "{body}");
    let link: homeport_types::SignInLink = serde_json::from_str(&body).expect("link");
    link.url
        .split_once(&format!(":{port}"))
        .map(|(_, p)| p.to_owned())
        .expect("a path")
}

/// What a browser gets from a sign-in link: the session cookie (`name=value`) and the secret the
/// dashboard page keeps and sends with every API call.
pub fn sign_in(port: u16, token: &str) -> (String, String) {
    let path = sign_in_link(port, token);
    let (code, head, body) = request(port, "GET", &path, &[], None);
    assert_eq!(code, 200, "{head}\n{body}");
    let cookie = header(&head, "set-cookie").expect("a cookie");
    let cookie = cookie.split(';').next().expect("name=value").to_owned();
    let secret = body
        .split_once(r#"name="homeport-session" content=""#)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(s, _)| s.to_owned())
        .unwrap_or_else(|| panic!("no session secret in the sign-in page: {body}"));
    (cookie, secret)
}

#[test]
fn the_sign_in_link_never_appears_on_a_command_line() {
    let mut env = TestEnv::new(CONFIG);
    open_to_all(env.dir.path());
    env.start_agent();
    let port = agent_port(&env);
    // The desktop's opener, replaced by one that records its arguments: what every local user
    // can read in /proc/PID/cmdline while it runs.
    let bin = env.dir.path().join("bin");
    fs::create_dir(&bin).expect("bin");
    let opener = bin.join("xdg-open");
    let argv_file = env.dir.path().join("opener-argv");
    fs::write(
        &opener,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {0}.tmp && mv {0}.tmp {0}\n",
            argv_file.display()
        ),
    )
    .expect("opener");
    fs::set_permissions(&opener, fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = env
        .command()
        .arg("dashboard")
        .env("PATH", path)
        .env("DISPLAY", ":99")
        .output()
        .expect("homeport dashboard");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("ticket"),
        "the link is printed: {}",
        stdout(&out)
    );
    let argv = env.wait_until("the opener ran", || fs::read_to_string(&argv_file).ok());
    assert!(
        !argv.contains("ticket") && !argv.contains("http"),
        "the sign-in link is on the opener's command line: {argv}"
    );
    // The opener gets a file that only this user can read, in a folder only this user can open.
    let page = PathBuf::from(argv.trim());
    assert!(page.is_absolute(), "{argv}");
    assert_eq!(mode(&page), 0o600, "{}", page.display());
    assert_eq!(mode(page.parent().expect("folder")), 0o700);
    let text = read(&page);
    let link = text
        .split_once("url=")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(u, _)| u.replace("&amp;", "&"))
        .unwrap_or_else(|| panic!("no redirect in {text}"));
    let link_path = link
        .split_once(&format!(":{port}"))
        .map(|(_, p)| p.to_owned())
        .expect("a link to the agent");
    assert!(link_path.starts_with("/login?ticket="), "{link_path}");

    if let Some(other) = OtherUser::create("the_sign_in_link_never_appears_on_a_command_line") {
        let seen = other.fixture(&["--read", &page.display().to_string()]);
        assert!(
            seen.starts_with("error:"),
            "another user read the sign-in page: {seen}"
        );
        // Even holding the link, another user cannot redeem it: the ticket is for this user's
        // browser only, and it still works for that browser afterwards.
        let stolen = other.fixture(&["--fetch", &port.to_string(), &format!("GET {link_path}")]);
        assert!(
            stolen.starts_with("403"),
            "another user redeemed the ticket: {stolen}"
        );
    }
    let (code, head, _) = request(port, "GET", &link_path, &[], None);
    assert_eq!(code, 200, "{head}");
    assert!(header(&head, "set-cookie").is_some(), "{head}");
    env.wait_until("the used sign-in page is removed", || {
        (!page.exists()).then_some(())
    });
}

#[test]
fn a_session_cookie_alone_is_worth_nothing() {
    let mut env = TestEnv::new(CONFIG);
    env.start_agent();
    let port = agent_port(&env);
    let t = token(&env);
    let (cookie, secret) = sign_in(port, &t);
    let origin = format!("http://127.0.0.1:{port}");
    let stop = r#"{"target":"a/prod/web"}"#;

    // The browser sends the cookie to every server on 127.0.0.1, whatever its port: one that logs
    // headers replays it with a forged Origin.
    let (code, _, body) = request(
        port,
        "POST",
        "/api/v1/stop",
        &[("Cookie", &cookie), ("Origin", &origin)],
        Some(stop),
    );
    assert_eq!(code, 401, "a replayed cookie stopped a service: {body}");
    for path in [
        "/api/v1/status",
        "/api/v1/events/stream",
        "/api/v1/logs/stream?target=a",
        "/api/v1/config",
    ] {
        let (code, _, body) = request(port, "GET", path, &[("Cookie", &cookie)], None);
        assert_eq!(code, 401, "{path} answered a cookie alone: {body}");
    }
    // The secret is in no page the cookie can fetch.
    for path in ["/", "/login"] {
        let (_, _, body) = request(port, "GET", path, &[("Cookie", &cookie)], None);
        assert!(!body.contains(&secret), "{path} reveals the session secret");
    }
    // A secret without the cookie is nothing either.
    let (code, _, _) = request(
        port,
        "GET",
        "/api/v1/status",
        &[("X-Homeport-Session", &secret)],
        None,
    );
    assert_eq!(code, 401);

    // The dashboard page holds both.
    let both = [
        ("Cookie", cookie.as_str()),
        ("X-Homeport-Session", secret.as_str()),
        ("Origin", origin.as_str()),
    ];
    let (code, _, body) = request(port, "GET", "/api/v1/status", &both[..2], None);
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = request(port, "POST", "/api/v1/stop", &both, Some(stop));
    assert_eq!(code, 200, "{body}");
    // …but cannot make sign-in links: only the CLI and the tray (the token) can.
    let (code, _, body) = request(port, "POST", "/api/v1/sessions", &both, None);
    assert_eq!(code, 403, "a browser session minted a sign-in link: {body}");
}

/// Raises this test process's soft descriptor limit to the hard one; false if that is below
/// `need`.
fn raise_own_descriptor_limit(need: u64) -> bool {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return false;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur >= need
    }
}

/// Connections that send half a request header and then nothing, reopened as soon as the agent
/// closes them, as a slowloris attack does.
struct Slowloris {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Slowloris {
    fn start(port: u16, n: usize) -> Self {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stop2, open2) = (stop.clone(), open.clone());
        let thread = std::thread::spawn(move || {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let connect = || {
                let mut s =
                    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
                        .ok()?;
                s.write_all(
                    format!("GET /livez HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n").as_bytes(),
                )
                .ok()?;
                s.set_nonblocking(true).ok()?;
                Some(s)
            };
            let mut conns: Vec<Option<std::net::TcpStream>> = (0..n).map(|_| None).collect();
            let mut buf = [0u8; 64];
            while !stop2.load(Ordering::Relaxed) {
                for c in &mut conns {
                    // Open and quiet, or closed (or answered, then closed) by the agent.
                    let closed = match c {
                        None => true,
                        Some(s) => {
                            !matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                        }
                    };
                    if closed {
                        *c = connect();
                    }
                }
                open2.store(conns.iter().flatten().count(), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        });
        Self {
            stop,
            open,
            thread: Some(thread),
        }
    }

    fn open(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Slowloris {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn two_thousand_slow_connections_do_not_take_production_down() {
    if !raise_own_descriptor_limit(2_300) {
        eprintln!(
            "two_thousand_slow_connections_do_not_take_production_down: skipped: this test needs 2,300 descriptors"
        );
        return;
    }
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@", "--port", "{port}"]
port = @P0@
autostart = true
health = { http = "/health", interval = "100ms", timeout = "1s" }
"#,
    );
    // A desktop's usual limit, with no room to raise it.
    env.start_agent_with_descriptor_limit(1024, 1024);
    let before = env.wait_service("a/prod/web", "is healthy", |s| {
        s.state == homeport_types::ServiceState::Healthy
    });
    let port = agent_port(&env);
    let host = format!("127.0.0.1:{port}");

    let attack = Slowloris::start(port, 2000);
    let opening = std::time::Instant::now();
    env.wait_until("the attacker has 1,000 connections open", || {
        (attack.open() >= 1000).then_some(())
    });
    eprintln!("1,000 slow connections open after {:?}", opening.elapsed());
    // Long enough for dozens of health probes and many rounds of the attacker reopening what
    // the agent closed.
    let start = std::time::Instant::now();
    let mut rounds = 0;
    let mut slowest = std::time::Duration::ZERO;
    while rounds < 20 || start.elapsed() < std::time::Duration::from_secs(5) {
        let asked = std::time::Instant::now();
        let (code, body) = raw_http(
            port,
            &format!("GET /livez HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(
            (code, body.as_str()),
            (200, "ok"),
            "/livez under attack ({} slow connections open)\n{}",
            attack.open(),
            env.agent_log()
        );
        slowest = slowest.max(asked.elapsed());
        let now = service(&env.status(), "a/prod/web").clone();
        assert_eq!(
            (now.state, now.pid, now.restarts),
            (before.state, before.pid, before.restarts),
            "the service was disturbed: {now:#?}\n{}",
            env.agent_log()
        );
        rounds += 1;
    }
    let open = attack.open();
    drop(attack);
    eprintln!(
        "{rounds} rounds in {:?}, the slowest /livez {slowest:?}; {open} slow connections open at the end",
        start.elapsed()
    );
    assert!(open > 0, "the attack never got going");
    let log = env.agent_log();
    assert!(
        !log.contains("Too many open files"),
        "the agent ran out of descriptors:\n{log}"
    );
}

/// Every folder under `dir` that others can enter and every file they can read or write.
fn readable_by_others(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = mode(&d);
        if m & 0o077 != 0 {
            out.push(format!("{} {m:o}", d.display()));
        }
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(meta) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
                out.push(format!(
                    "{} {:o}",
                    e.path().display(),
                    meta.permissions().mode() & 0o777
                ));
            }
        }
    }
    out
}

#[test]
fn data_made_before_the_agent_first_ran_is_made_private_and_stays_private() {
    use std::os::unix::fs::DirBuilderExt;
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod]
databases = { main = "@HOME@/app.db" }

[apps.a.env.prod.services.web]
command = ["@FIXTURE@", "--port", "{port}", "--db", "{db.main}"]
port = @P0@
autostart = true
health = { http = "/health", interval = "100ms" }
"#,
    );
    open_to_all(env.dir.path());
    // The data folder as a tool run before the agent (or an older agent) left it: 0755 folders,
    // 0644 files.
    let open_dir = |p: &Path| {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(p)
            .expect("mkdir");
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    open_dir(&env.data);
    open_dir(&env.data.join("logs/a/prod"));
    open_dir(&env.data.join("backups/a/prod"));
    rusqlite::Connection::open(env.data.join("state.db"))
        .expect("state.db")
        .execute_batch("PRAGMA user_version = 0")
        .expect("sqlite");
    for (f, text) in [
        ("state.db", None),
        ("logs/a/prod/web.log", Some("old lines\n")),
        ("backups/a/prod/notes.txt", Some("an old copy\n")),
    ] {
        let p = env.data.join(f);
        if let Some(t) = text {
            fs::write(&p, t).expect("write");
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
    }

    env.start_agent();
    env.wait_service("a/prod/web", "is healthy", |s| {
        s.state == homeport_types::ServiceState::Healthy
    });
    // Data the running agent makes: a backup, and a restore with its safety copy.
    let out = env.cli(&["backup", "a/prod"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.cli(&["restore", "a/prod"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let loose = readable_by_others(&env.data);
    assert!(
        loose.is_empty(),
        "readable by other users:\n{}",
        loose.join("\n")
    );
    assert!(
        env.agent_log().contains("they are private now"),
        "{}",
        env.agent_log()
    );

    if let Some(other) =
        OtherUser::create("data_made_before_the_agent_first_ran_is_made_private_and_stays_private")
    {
        for f in ["state.db", "logs/a/prod/web.log", "token"] {
            let seen = other.fixture(&["--read", &env.data.join(f).display().to_string()]);
            assert!(seen.starts_with("error:"), "another user read {f}: {seen}");
        }
    }
}

/// Runs `homeport agent` and expects it to refuse to start; returns what it said.
fn agent_refuses(env: &TestEnv) -> String {
    let mut child = env
        .command()
        .arg("agent")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn agent");
    let start = std::time::Instant::now();
    let exited = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > DEADLINE {
            // Still running: it did not refuse.
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    };
    let out = child.wait_with_output().expect("output");
    assert!(
        exited.is_some_and(|s| !s.success()),
        "the agent started: {}",
        stderr(&out)
    );
    stderr(&out)
}

#[test]
fn a_data_folder_others_can_write_or_that_is_not_ours_is_refused() {
    let env = TestEnv::new(CONFIG);
    fs::create_dir(&env.data).expect("mkdir");
    fs::set_permissions(&env.data, fs::Permissions::from_mode(0o777)).expect("chmod");
    let said = agent_refuses(&env);
    assert!(
        said.contains("can be written by other users") && said.contains("chmod 700"),
        "{said}"
    );
    assert!(
        !env.data.join("state.db").exists(),
        "nothing is written in such a folder"
    );

    if let Some(other) =
        OtherUser::create("a_data_folder_others_can_write_or_that_is_not_ours_is_refused")
    {
        fs::set_permissions(&env.data, fs::Permissions::from_mode(0o700)).expect("chmod");
        nix::unistd::chown(
            &env.data,
            Some(nix::unistd::Uid::from_raw(other.uid)),
            Some(nix::unistd::Gid::from_raw(other.gid)),
        )
        .expect("chown");
        let said = agent_refuses(&env);
        assert!(said.contains("belongs to another user"), "{said}");
        fs::remove_dir(&env.data).expect("rmdir");
    }
}

#[test]
fn a_log_replaced_by_a_link_is_never_written_through() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@", "--lines", "3"]
"#,
    );
    env.start_agent();
    let out = env.cli(&["start", "a/prod/web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = env.log_file("a", "prod", "web");
    env.wait_until("the service wrote its lines", || {
        read(&log).contains("line 0000000002").then_some(())
    });
    let out = env.cli(&["stop", "a/prod/web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Someone replaces the log with a link to a file of the user's.
    let bashrc = env.dir.path().join("bashrc");
    fs::write(&bashrc, "export PATH=$HOME/bin:$PATH\n").expect("bashrc");
    fs::remove_file(&log).expect("rm log");
    std::os::unix::fs::symlink(&bashrc, &log).expect("symlink");

    let out = env.cli(&["start", "a/prod/web"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        read(&bashrc),
        "export PATH=$HOME/bin:$PATH\n",
        "service output went through the link"
    );
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("symbolic link"), "{said}");
}

#[test]
fn services_get_the_umask_and_descriptor_limit_the_agent_started_with() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.web]
command = ["/bin/sh", "-c", "echo umask $(umask); echo nofile $(ulimit -Sn); exec sleep 1000"]
autostart = true
"#,
    );
    // The agent raises its own soft limit to the hard one, and creates files with umask 077.
    env.start_agent_with_descriptor_limit(1024, 4096);
    let agent = env.agent_pid().expect("agent pid");
    let limits = read(Path::new(&format!("/proc/{agent}/limits")));
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.split_whitespace().nth(3) == Some("4096")),
        "{limits}"
    );
    let log = env.log_file("a", "prod", "web");
    let text = env.wait_until("the service said what it got", || {
        let t = read(&log);
        t.contains("nofile").then_some(t)
    });
    // This test's own umask, as the agent found it.
    let ours = read(Path::new("/proc/self/status"))
        .lines()
        .find_map(|l| l.strip_prefix("Umask:").map(|m| m.trim().to_owned()))
        .expect("Umask in /proc/self/status");
    let umask = format!("umask {ours}");
    assert!(text.contains(&umask), "{text}");
    assert!(text.contains("nofile 1024"), "{text}");
}

/// A 30 MB log for `a/prod/web`, written as the shim writes one.
fn big_log(env: &TestEnv) {
    use std::io::Write;
    let log = env.log_file("a", "prod", "web");
    fs::create_dir_all(log.parent().expect("folder")).expect("mkdir");
    let mut f = std::io::BufWriter::new(fs::File::create(&log).expect("log"));
    let words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "request",
        "GET",
        "/api/items",
        "200",
        "ok",
        "user",
        "session",
        "cache",
    ];
    let mut written = 0;
    let mut i = 0usize;
    while written < 30_000_000 {
        let text: Vec<&str> = (0..12)
            .map(|k| words[(i * 7 + k * 3) % words.len()])
            .collect();
        let line = format!(
            "2026-12-03T10:{:02}:{:02}.{:03}000Z out {} {i}\n",
            (i / 60_000) % 60,
            (i / 1000) % 60,
            i % 1000,
            text.join(" ")
        );
        f.write_all(line.as_bytes()).expect("write");
        written += line.len();
        i += 1;
    }
    f.flush().expect("flush");
}

/// A pattern the regex engine cannot run fast: tens of seconds over 30 MB.
const SLOW_PATTERN: &str = r"\w{1,100}z\w{1,100}";

fn grep_request(port: u16, token: &str) -> String {
    let pattern: String = SLOW_PATTERN.bytes().map(|b| format!("%{b:02X}")).collect();
    format!(
        "GET /api/v1/logs?target=a/prod/web&tail=5&grep={pattern} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
}

/// The CPU time the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = read(Path::new(&format!("/proc/{pid}/stat")));
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime: fields 14 and 15 of the line, 12 and 13 after the command's `)`.
    fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum())
        .unwrap_or(0)
}

#[test]
fn an_expensive_log_search_stops_at_its_budget() {
    let mut env = TestEnv::new(CONFIG);
    big_log(&env);
    env.start_agent();
    let port = agent_port(&env);
    // The budget is CPU time: on a machine busy with other work, the wall time it takes is
    // many times that, so the answer is waited for well beyond the usual deadline.
    let (code, body) = raw_http_within(port, &grep_request(port, &token(&env)), DEADLINE * 10);
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("narrow it"), "{body}");
}

#[test]
fn a_log_search_stops_when_its_client_hangs_up() {
    use std::io::Write;
    let mut env = TestEnv::new(CONFIG);
    big_log(&env);
    env.start_agent();
    let port = agent_port(&env);
    let agent = env.agent_pid().expect("agent");
    let before = cpu_ticks(agent);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(grep_request(port, &token(&env)).as_bytes())
        .expect("write");
    env.wait_until("the agent is searching", || {
        (cpu_ticks(agent) > before + 10).then_some(())
    });
    drop(s);
    env.wait_until("the search stops because its client went away", || {
        env.agent_log().contains("client went away").then_some(())
    });
}

#[test]
fn smuggling_shapes_and_oversized_bodies_are_refused() {
    let mut env = TestEnv::new(CONFIG);
    env.start_agent();
    let port = agent_port(&env);
    let t = token(&env);
    let auth = format!("Bearer {t}");
    // A body past the limit is 413, not a complaint about its JSON.
    let big = format!(r#"{{"target":"{}"}}"#, "a".repeat(3 << 20));
    let (code, _, body) = request(
        port,
        "POST",
        "/api/v1/stop",
        &[("Authorization", &auth)],
        Some(&big),
    );
    assert_eq!(code, 413, "{body}");
    // An absolute URI names a host of its own in the request line.
    let (code, body) = raw_http(
        port,
        &format!(
            "GET http://127.0.0.1:{port}/api/v1/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(code, 400, "an absolute URI was served: {body}");
    // Two Host headers: which one a proxy in front believed is anyone's guess.
    let (code, body) = raw_http(
        port,
        &format!(
            "GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.test\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(code, 400, "two Host headers were served: {body}");
    // Header values are case-insensitive where the standard says so.
    for site in ["cross-site", "Cross-Site", "CROSS-SITE"] {
        let (code, _, body) = request(
            port,
            "GET",
            "/api/v1/status",
            &[("Authorization", &auth), ("Sec-Fetch-Site", site)],
            None,
        );
        assert_eq!(code, 403, "Sec-Fetch-Site: {site} was let in: {body}");
    }
}

/// `POST` of a settings change as a browser session (cookie, secret and Origin) or with the
/// token; returns status and body.
fn apply_settings(
    port: u16,
    who: &[(&str, &str)],
    path: &str,
    change: &serde_json::Value,
) -> (u16, String) {
    let auth: Vec<(&str, &str)> = who.to_vec();
    let (_, _, view) = request(port, "GET", "/api/v1/config", &auth, None);
    let view: homeport_types::ConfigView = serde_json::from_str(&view).expect("config view");
    let body = serde_json::json!({ "revision": view.revision, "changes": [change] }).to_string();
    let (code, _, body) = request(port, "POST", path, &auth, Some(&body));
    (code, body)
}

#[test]
fn settings_cannot_make_the_agent_run_commands() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod]
databases = { main = "@HOME@/prod.db" }

[apps.a.env.prod.services.web]
command = "echo db={db.main}; exec sleep 1000"
shell = true
autostart = true
"#,
    );
    env.start_agent();
    let port = agent_port(&env);
    let t = token(&env);
    let bearer = format!("Bearer {t}");
    let (cookie, secret) = sign_in(port, &t);
    let origin = format!("http://127.0.0.1:{port}");
    let browser = [
        ("Cookie", cookie.as_str()),
        ("X-Homeport-Session", secret.as_str()),
        ("Origin", origin.as_str()),
    ];
    let tray = [("Authorization", bearer.as_str())];
    let pwned = env.dir.path().join("PWNED.txt");
    let evil = format!("prod.db; id > {}; :", pwned.display());
    let change = |path: &str| serde_json::json!({"kind": "database", "app": "a", "env": "prod", "name": "main", "path": path});

    // A browser session may not point a database outside the environment's data folder.
    let (code, body) = apply_settings(port, &browser, "/api/v1/config/apply", &change(&evil));
    assert_eq!(code, 403, "a browser session set a database path: {body}");
    let (code, body) = apply_settings(port, &browser, "/api/v1/config/preview", &change(&evil));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("data folder"), "the field says why: {body}");

    // The owner may; the path is then one word to the shell, never code.
    let (code, body) = apply_settings(port, &tray, "/api/v1/config/apply", &change(&evil));
    assert_eq!(code, 200, "{body}");
    let log = env.log_file("a", "prod", "web");
    env.wait_until("the service restarted with the new path", || {
        read(&log).contains("PWNED.txt; :").then_some(())
    });
    assert!(
        !pwned.exists(),
        "the database path ran as a command: {}",
        read(&pwned)
    );

    // A path with a control character is no path.
    let (code, body) = apply_settings(port, &tray, "/api/v1/config/apply", &change("prod\n.db"));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("control character"), "{body}");
}

#[test]
fn a_browser_session_cannot_copy_out_a_database() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod]
databases = { main = "@HOME@/main.db" }

[apps.a.env.prod.services.web]
command = ["@FIXTURE@", "--db", "{db.main}"]
autostart = true
"#,
    );
    open_to_all(env.dir.path());
    // A database the user's browser keeps, 0600 like the rest of their profile.
    let cookies = env.dir.path().join("cookies.sqlite");
    rusqlite::Connection::open(&cookies)
        .and_then(|c| {
            c.execute_batch("CREATE TABLE cookies(v); INSERT INTO cookies VALUES ('s3cret');")
        })
        .expect("cookies");
    fs::set_permissions(&cookies, fs::Permissions::from_mode(0o600)).expect("chmod");
    env.start_agent();
    let log = env.log_file("a", "prod", "web");
    env.wait_until("the app made its database", || {
        read(&log).contains("ready").then_some(())
    });
    let out = env.cli(&["backup", "a/prod"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let port = agent_port(&env);
    let t = token(&env);
    let (cookie, secret) = sign_in(port, &t);
    let origin = format!("http://127.0.0.1:{port}");
    let browser = [
        ("Cookie", cookie.as_str()),
        ("X-Homeport-Session", secret.as_str()),
        ("Origin", origin.as_str()),
    ];
    // Adding the cookie store as a database, to back it up and restore it elsewhere: refused.
    let add = |path: &str| serde_json::json!({"kind": "database", "app": "a", "env": "prod", "name": "stolen", "path": path});
    let (code, body) = apply_settings(
        port,
        &browser,
        "/api/v1/config/apply",
        &add(&cookies.display().to_string()),
    );
    assert_eq!(code, 403, "a browser session added a database: {body}");
    // Inside the environment's own data folder it may.
    let inside = env.data.join("apps/a/prod/data/extra.db");
    let (code, body) = apply_settings(
        port,
        &browser,
        "/api/v1/config/preview",
        &add(&inside.display().to_string()),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""valid":true"#), "{body}");

    // A restore into a file of its choosing: refused to a browser session.
    let outside = env.dir.path().join("copy.db");
    let body = serde_json::json!({"target": "a/prod", "to": outside}).to_string();
    let (code, _, answer) = request(port, "POST", "/api/v1/restore", &browser, Some(&body));
    assert_eq!(code, 403, "{answer}");
    assert!(!outside.exists());

    // The owner's `restore --to` makes a private copy, never through a link left in its place.
    let link = env.dir.path().join("link.db");
    let target = env.dir.path().join("made-by-the-link.db");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let out = env.cli(&["restore", "a/prod", "--to", &link.display().to_string()]);
    assert!(!out.status.success(), "restored through a dangling link");
    assert!(!target.exists(), "the link's target was created");
    let out = env.cli(&["restore", "a/prod", "--to", &outside.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&outside), 0o600, "the copy is private");
    if let Some(other) = OtherUser::create("a_browser_session_cannot_copy_out_a_database") {
        let seen = other.fixture(&["--read", &outside.display().to_string()]);
        assert!(seen.starts_with("error:"), "another user read the copy");
    }
}
