//! Log capture: every line, in order, across rotations; odd lines kept; live following.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;

use homeport_types::ServiceState;

use crate::util::*;

#[test]
fn a_fast_producer_loses_no_line_across_many_rotations() {
    const LINES: u64 = 50_000;
    let mut env = TestEnv::new(&format!(
        r#"
[apps.a.env.prod.services.chatty]
command = ["@FIXTURE@", "--lines", "{LINES}", "--exit-after-lines"]
autostart = true
restart = "never"
"#
    ));
    // 50,000 lines of ~130 bytes in 256 KiB files: about 25 rotations.
    let text = read(&env.config).replace(
        "port = 0\n",
        "port = 0\nlog_max_bytes = 262144\nlog_keep = 100\n",
    );
    std::fs::write(&env.config, text).expect("config");
    env.start_agent();
    env.wait_service("a/prod/chatty", "has exited", |s| {
        s.state == ServiceState::Exited
    });
    let log = env.log_file("a", "prod", "chatty");
    assert!(
        log.with_file_name("chatty.log.20").exists(),
        "it rotated many times"
    );

    let out = env.cli(&["logs", "a/prod/chatty", "-n", "1000000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut expected = 0u64;
    for line in text.lines() {
        let n: u64 = line
            .split("line ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a fixture line: {line:?}"));
        assert_eq!(n, expected, "lost, repeated or reordered line");
        assert!(
            line.ends_with(&"x".repeat(80)),
            "line {n} was split: {line:?}"
        );
        expected += 1;
    }
    assert_eq!(expected, LINES);
}

#[test]
fn long_lines_invalid_utf8_and_stderr_are_kept() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.odd]
command = ["@FIXTURE@", "--long-line", "300000", "--invalid-utf8", "--stderr-lines", "2", "--exit-after-lines"]
autostart = true
restart = "never"
"#,
    );
    env.start_agent();
    env.wait_service("a/prod/odd", "has exited", |s| {
        s.state == ServiceState::Exited
    });
    let raw = std::fs::read(env.log_file("a", "prod", "odd")).expect("log file");
    assert!(
        raw.windows(13).any(|w| w == b"bad bytes \xff\xfe "),
        "raw bytes are kept in the file"
    );
    let long = raw
        .split(|b| *b == b'\n')
        .find(|l| l.windows(5).any(|w| w == b"long "))
        .expect("long line");
    assert!(
        long.ends_with(&[b'L'; 1000]) && long.len() > 300_000,
        "kept whole"
    );
    let out = env.cli(&["logs", "a/prod/odd", "--grep", "^error line"]);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines()
            .all(|l| l.contains(" a/prod/odd err error line")),
        "{text}"
    );
}

#[test]
fn logs_follow_streams_new_lines() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@", "--port", "{port}"]
port = @P0@
autostart = true
health = { http = "/health", interval = "100ms" }
"#,
    );
    env.start_agent();
    env.wait_service("a/prod/web", "is healthy", |s| {
        s.state == ServiceState::Healthy
    });
    let mut child = std::process::Command::new(homeport_bin())
        .args([
            "--config",
            &env.config.display().to_string(),
            "logs",
            "a/prod/web",
            "-f",
            "-n",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("logs -f");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = rx.recv_timeout(DEADLINE).expect("the history line");
    assert!(first.contains("listening on"), "{first}");
    raw_http(
        env.ports[0],
        "GET /streamed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let next = rx.recv_timeout(DEADLINE).expect("a live line");
    assert!(next.contains("request 1 for /streamed"), "{next}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn logs_since_selects_by_time() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.one]
command = ["@FIXTURE@", "--lines", "3", "--exit-after-lines"]
autostart = true
restart = "never"
"#,
    );
    env.start_agent();
    env.wait_service("a/prod/one", "has exited", |s| {
        s.state == ServiceState::Exited
    });
    let all = stdout(&env.cli(&["logs", "a", "--since", "1h"]));
    assert_eq!(all.lines().count(), 3, "{all}");
    let none = stdout(&env.cli(&["logs", "a", "--since", "2099-01-01T00:00:00Z"]));
    assert_eq!(none, "");
}

#[test]
fn a_follow_outlives_an_agent_restart_with_no_gap_and_no_repeat() {
    let env = TestEnv::new(
        r#"
[apps.a.env.prod.services.ticker]
command = "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.02; done"
shell = true
autostart = true
"#,
    );
    let out = env.cli(&["agent", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    env.wait_service("a/prod/ticker", "runs", |s| s.pid.is_some());
    let mut follow = env
        .command_with(&["logs", "a/prod/ticker", "-f", "-n", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("logs -f");
    let (tx, rx) = mpsc::channel::<u64>();
    let stdout = follow.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(n) = line
                .rsplit_once("tick ")
                .and_then(|(_, n)| n.trim().parse().ok())
                && tx.send(n).is_err()
            {
                return;
            }
        }
    });
    let next = || {
        rx.recv_timeout(DEADLINE)
            .expect("a line within the deadline")
    };
    let mut got = vec![next()];
    while got.len() < 20 {
        got.push(next());
    }
    let out = env.cli(&["agent", "restart"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Well past the restart: the new agent's lines came through the same follow.
    let new_agent = env.status().agent.pid;
    let until = got.last().copied().unwrap_or(0) + 150;
    while got.last().copied().unwrap_or(0) < until {
        got.push(next());
    }
    let _ = follow.kill();
    let err = follow.wait_with_output().expect("logs -f ends");
    let err = String::from_utf8_lossy(&err.stderr);
    assert!(err.contains("following again when it is back"), "{err}");
    assert!(!err.contains("error decoding"), "{err}");
    let first = got[0];
    let expected: Vec<u64> = (first..first + got.len() as u64).collect();
    assert_eq!(
        got, expected,
        "every line once, in order (agent {new_agent})"
    );
}
