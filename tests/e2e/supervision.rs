//! Starting, stopping, restarting and re-adopting real processes.

use homeport_types::{Action, ExitReason, Health, ServiceState, Target};

use crate::util::*;

#[test]
fn health_checks_say_who_they_are() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@", "--port", "{port}", "--log-health"]
port = @P0@
autostart = true
health = { http = "/health", interval = "100ms" }
"#,
    );
    env.start_agent();
    let log = env.log_file("a", "prod", "web");
    env.wait_until("a health check is logged with its User-Agent", || {
        read(&log)
            .contains("health check /health from Homeport-Health/")
            .then_some(())
    });
}

#[test]
fn dependents_wait_until_their_dependency_is_healthy() {
    // `web` exits (and, with restart = "never", stays crashed) if it starts before `db` has
    // written its ready file; `db` becomes healthy only once the file exists.
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod]
autostart = true

[apps.a.env.prod.services.db]
command = "sleep 0.5 && touch {data_dir}/ready && exec @FIXTURE@"
shell = true
health = { command = "test -f {data_dir}/ready", interval = "100ms" }

[apps.a.env.prod.services.web]
command = "test -f {data_dir}/ready || exit 7; exec @FIXTURE@ --port {port}"
shell = true
port = @P0@
health = { http = "/health", interval = "100ms" }
depends_on = ["db"]
restart = "never"
"#,
    );
    env.start_agent();
    let web = env.wait_service("a/prod/web", "is healthy", |s| {
        s.state == ServiceState::Healthy
    });
    assert_eq!(web.restarts, 0);
    assert_eq!(web.last_exit, None, "web never ran before db was ready");
    // The environment's web service is opened by its name, through the router.
    assert_eq!(
        web.url.as_deref(),
        Some(format!("http://prod.a.localhost:{}/", env.router_port).as_str())
    );
    let status = env.status();
    assert_eq!(service(&status, "a/prod/db").health, Health::Healthy);
}

#[test]
fn stop_ends_the_whole_process_group_including_grandchildren() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.spawner]
command = ["@FIXTURE@", "--grandchild"]
autostart = true
"#,
    );
    env.start_agent();
    let log = env.log_file("a", "prod", "spawner");
    let grandchild: u32 = env.wait_until("the grandchild pid is logged", || {
        read(&log)
            .lines()
            .find_map(|l| l.split("grandchild pid ").nth(1)?.trim().parse().ok())
    });
    let main = env
        .wait_service("a/prod/spawner", "runs", |s| {
            s.state == ServiceState::Running
        })
        .pid
        .expect("pid");
    assert!(alive(grandchild) && alive(main));
    let out = env.cli(&["stop", "a/prod/spawner"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!alive(main), "the service is gone");
    env.wait_until("the grandchild is gone", || {
        (!alive(grandchild)).then_some(())
    });
    let svc = service(&env.status(), "a/prod/spawner").clone();
    assert_eq!(svc.state, ServiceState::Stopped);
    assert_eq!(svc.pid, None);
}

#[test]
fn a_service_that_ignores_sigterm_is_killed_after_its_grace_period() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.stubborn]
command = ["@FIXTURE@", "--ignore-term"]
autostart = true
stop_timeout = "500ms"
"#,
    );
    env.start_agent();
    let log = env.log_file("a", "prod", "stubborn");
    env.wait_until("it ignores SIGTERM", || {
        read(&log).contains("ignoring SIGTERM").then_some(())
    });
    let pid = service(&env.status(), "a/prod/stubborn").pid.expect("pid");
    let out = env.cli(&["stop", "a/prod/stubborn"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!alive(pid));
    let svc = service(&env.status(), "a/prod/stubborn").clone();
    assert_eq!(svc.state, ServiceState::Stopped);
    assert_eq!(svc.last_exit, Some(ExitReason::Signal(9)));
}

#[test]
fn a_crash_loop_backs_off_gives_up_and_start_resets_it() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.crashy]
command = ["@FIXTURE@", "--crash-after", "20", "--exit-code", "3"]
autostart = true
restart = { policy = "on-failure", backoff_min = "20ms", backoff_max = "100ms", max_failures = 4, window = "1m" }
"#,
    );
    env.start_agent();
    let svc = env.wait_service("a/prod/crashy", "gives up", |s| {
        s.state == ServiceState::Failed
    });
    assert_eq!(
        svc.restarts, 3,
        "three restarts, then the fourth failure gives up"
    );
    assert_eq!(svc.last_exit, Some(ExitReason::Code(3)));
    assert!(
        svc.message
            .as_deref()
            .is_some_and(|m| m.contains("gave up after 4 failures")),
        "{svc:?}"
    );

    // Every transition is in state.db, a repeated one as one row that counts its rounds.
    let db = rusqlite::Connection::open(env.data.join("state.db")).expect("open state.db");
    let backoffs: (i64, i64) = db
        .query_row("SELECT COUNT(*), SUM(count) FROM events WHERE service = 'a/prod/crashy' AND to_state = 'backing_off'", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query");
    // Every transition is counted; the repeats share rows.
    assert_eq!(backoffs.1, 3, "{backoffs:?}");
    assert!(backoffs.0 < 3, "{backoffs:?}");

    // A manual start forgets the loop and tries again.
    let outcomes = env
        .block_on(env.client().act(
            Action::Start,
            &"a/prod/crashy".parse::<Target>().expect("target"),
        ))
        .expect("start");
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0].error.is_none(), "{outcomes:?}");
    env.wait_service("a/prod/crashy", "restarts again", |s| s.restarts > 3);
}

#[test]
fn restart_policies_never_and_always() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod]
autostart = true
[apps.a.env.prod.services.once]
command = ["@FIXTURE@", "--crash-after", "10", "--exit-code", "5"]
restart = "never"
[apps.a.env.prod.services.again]
command = ["@FIXTURE@", "--lines", "1", "--exit-after-lines"]
restart = { policy = "always", backoff_min = "10ms", max_failures = 2 }
[apps.a.env.prod.services.clean]
command = ["@FIXTURE@", "--exit-after-lines"]
"#,
    );
    env.start_agent();
    let once = env.wait_service("a/prod/once", "crashed", |s| {
        s.state == ServiceState::Crashed
    });
    assert_eq!(
        (once.restarts, once.last_exit),
        (0, Some(ExitReason::Code(5)))
    );
    env.wait_service("a/prod/again", "restarted after clean exits", |s| {
        s.restarts >= 3
    });
    let clean = env.wait_service("a/prod/clean", "exited", |s| {
        s.state == ServiceState::Exited
    });
    assert_eq!(
        (clean.restarts, clean.last_exit),
        (0, Some(ExitReason::Code(0))),
        "on-failure leaves a clean exit down"
    );
}

#[test]
fn failing_health_checks_restart_the_service() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.sick]
command = ["@FIXTURE@", "--port", "{port}", "--fail-health"]
port = @P0@
autostart = true
health = { http = "/health", interval = "50ms", retries = 2, start_period = "0s" }
restart = { policy = "on-failure", backoff_min = "10ms", max_failures = 100 }
"#,
    );
    env.start_agent();
    let svc = env.wait_service("a/prod/sick", "was restarted for failing health", |s| {
        s.restarts >= 2
    });
    let db = rusqlite::Connection::open(env.data.join("state.db")).expect("open state.db");
    let unhealthy: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM events WHERE service = 'a/prod/sick' AND to_state = 'unhealthy'",
            [],
            |r| r.get(0),
        )
        .expect("query");
    assert!(
        unhealthy >= 2,
        "each restart follows an unhealthy verdict: {unhealthy}, {svc:?}"
    );
    // The restart says why: the health check, not the exit status of the agent's own stop.
    let said: Vec<String> = db
        .prepare(
            "SELECT message FROM events WHERE service = 'a/prod/sick' AND to_state = 'backing_off'",
        )
        .and_then(|mut q| {
            q.query_map([], |r| r.get::<_, Option<String>>(0))?
                .map(|m| m.map(Option::unwrap_or_default))
                .collect()
        })
        .expect("query");
    assert!(
        !said.is_empty()
            && said
                .iter()
                .all(|m| m.starts_with("health check failed 2 times: ")
                    && m.contains("; restarting in")),
        "{said:?}"
    );
}

#[test]
fn a_taken_port_is_refused_and_its_holder_named() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@", "--port", "{port}"]
port = @P0@
"#,
    );
    let squatter = std::net::TcpListener::bind(("127.0.0.1", env.ports[0])).expect("bind");
    env.start_agent();
    let out = env.cli(&["start", "a/prod/web"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "port {} is already in use by pid {}",
            env.ports[0],
            std::process::id()
        )),
        "{err}"
    );
    let svc = service(&env.status(), "a/prod/web").clone();
    assert_eq!(svc.state, ServiceState::Failed);
    assert_eq!(svc.restarts, 0, "no restart loop on a taken port");
    drop(squatter);
    let out = env.cli(&["start", "a/prod/web"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn services_survive_an_agent_kill_and_are_re_adopted_without_a_second_copy() {
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
    let before = env.wait_service("a/prod/web", "is healthy", |s| {
        s.state == ServiceState::Healthy
    });
    let pid = before.pid.expect("pid");
    env.kill_agent_hard();

    // Production keeps serving while no agent runs, and its log lines are still captured.
    let (code, body) = raw_http(
        env.ports[0],
        "GET /while-the-agent-is-dead HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 200, "{body}");
    assert!(alive(pid));

    env.start_agent();
    let after = env.wait_service("a/prod/web", "is healthy again", |s| {
        s.state == ServiceState::Healthy
    });
    assert_eq!(after.pid, Some(pid), "the same process, re-adopted");
    assert_eq!(after.restarts, 0);
    let log = read(&env.log_file("a", "prod", "web"));
    assert_eq!(
        log.matches("listening on").count(),
        1,
        "started once:\n{log}"
    );
    assert!(
        log.contains("request 1 for /while-the-agent-is-dead"),
        "{log}"
    );

    // The re-adopted service is fully supervised: a stop reaches it.
    let out = env.cli(&["stop", "a/prod/web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!alive(pid));
}

#[test]
fn a_service_whose_log_holder_died_is_stopped_not_left_unsupervised() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@", "--port", "{port}"]
port = @P0@
autostart = true
"#,
    );
    env.start_agent();
    let pid = env
        .wait_service("a/prod/web", "runs", |s| s.state == ServiceState::Running)
        .pid
        .expect("pid");
    env.kill_agent_hard();
    let shim: serde_json::Value =
        serde_json::from_str(&read(&env.data.join("run/a/prod/web/shim.json")))
            .expect("shim record");
    let shim_pid = shim["shim_pid"].as_u64().expect("shim pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill shim");
    env.wait_until("the shim is gone", || {
        (!alive(shim_pid as u32)).then_some(())
    });

    env.start_agent();
    // The orphan is stopped, then autostart brings up exactly one fresh copy.
    let svc = env.wait_service("a/prod/web", "runs again", |s| {
        s.state == ServiceState::Running && s.pid != Some(pid)
    });
    assert!(!alive(pid), "the unsupervised copy is gone");
    assert!(svc.pid.is_some_and(alive));
}

#[test]
fn sigterm_stops_every_service_and_the_agent_exits_zero() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod]
autostart = true
[apps.a.env.prod.services.one]
command = ["@FIXTURE@"]
[apps.a.env.prod.services.two]
command = ["@FIXTURE@", "--grandchild"]
depends_on = ["one"]
"#,
    );
    env.start_agent();
    let s1 = env.wait_service("a/prod/one", "runs", |s| s.state == ServiceState::Running);
    let s2 = env.wait_service("a/prod/two", "runs", |s| s.state == ServiceState::Running);
    let status = env.stop_agent().expect("agent was running");
    assert_eq!(status.code(), Some(0), "{}", env.agent_log());
    assert!(!alive(s1.pid.expect("pid")) && !alive(s2.pid.expect("pid")));
    assert!(
        !env.data.join("agent.json").exists(),
        "the endpoint file is removed"
    );
}

#[test]
fn a_second_agent_refuses_to_start() {
    let mut env = TestEnv::new("");
    env.start_agent();
    let out = env.cli(&["agent"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("already running")
            && err.contains(&format!("pid {}", env.agent_pid().expect("pid"))),
        "{err}"
    );
}

#[test]
fn restart_counts_survive_an_agent_restart() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.crashy]
command = ["@FIXTURE@", "--crash-after", "10"]
autostart = true
restart = { policy = "on-failure", backoff_min = "10ms", max_failures = 2, window = "1m" }
"#,
    );
    env.start_agent();
    env.wait_service("a/prod/crashy", "gives up", |s| {
        s.state == ServiceState::Failed
    });
    env.stop_agent();
    env.write_config("[apps.a.env.prod.services.crashy]\ncommand = [\"@FIXTURE@\"]\n");
    env.start_agent();
    let svc = service(&env.status(), "a/prod/crashy").clone();
    assert_eq!(svc.restarts, 1);
    assert_eq!(svc.last_exit, Some(ExitReason::Code(1)));
}

#[test]
fn a_daemon_that_left_the_process_group_is_stopped_too() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.forker]
command = ["@FIXTURE@", "--daemon"]
autostart = true
stop_timeout = "1s"
"#,
    );
    env.start_agent();
    let log = env.log_file("a", "prod", "forker");
    let daemon: u32 = env.wait_until("the daemon pid is logged", || {
        read(&log)
            .lines()
            .find_map(|l| l.split("daemon pid ").nth(1)?.trim().parse().ok())
    });
    assert!(alive(daemon));
    let out = env.cli(&["stop", "a/prod/forker"]);
    assert!(out.status.success(), "{}", stderr(&out));
    env.wait_until("the daemon is gone", || (!alive(daemon)).then_some(()));
}

#[test]
fn a_stale_run_record_never_kills_an_unrelated_process() {
    // After a reboot (or pid reuse) a record's pid may name somebody else's process group.
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@"]
"#,
    );
    let mut bystander = std::process::Command::new("setsid")
        .args(["sleep", "1000"])
        .spawn()
        .expect("setsid sleep");
    let pid = bystander.id();
    env.wait_until("the bystander leads its group", || {
        (nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid as i32)))
            .ok()?
            .as_raw() as u32
            == pid)
            .then_some(())
    });
    let run = env.data.join("run/a/prod/web");
    std::fs::create_dir_all(&run).expect("run dir");
    let record = format!(
        r#"{{"shim_pid":999999,"pid":{pid},"boot_id":"an-earlier-boot","shim_started":1,"started":1}}"#
    );
    std::fs::write(run.join("shim.json"), record).expect("record");
    env.start_agent();
    env.wait_service("a/prod/web", "is known", |s| {
        s.state == ServiceState::Stopped
    });
    assert!(alive(pid), "the unrelated process was signalled");
    assert!(
        !run.join("shim.json").exists(),
        "the stale record is cleared"
    );
    let _ = bystander.kill();
    let _ = bystander.wait();
}

#[test]
fn a_dependent_fails_when_its_dependency_crashes() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.db]
command = ["@FIXTURE@", "--crash-after", "100"]
health = { command = "false", interval = "50ms" }
restart = "never"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@"]
depends_on = ["db"]
"#,
    );
    env.start_agent();
    let out = env.cli(&["start", "a/prod/web"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("a/prod/web: failed: dependency db is crashed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        service(&env.status(), "a/prod/web").state,
        ServiceState::Failed
    );
}

#[cfg(target_os = "linux")]
#[test]
fn services_inherit_no_stray_file_descriptors() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.quiet]
command = ["@FIXTURE@"]
autostart = true
"#,
    );
    // Start the agent the way a careless launcher might: with an extra open descriptor.
    env.start_agent_with_extra_fd();
    let pid = env
        .wait_service("a/prod/quiet", "runs", |s| s.state == ServiceState::Running)
        .pid
        .expect("pid");
    // Only once it sleeps: while a program starts, the loader holds its libraries open on
    // descriptor 3 for a moment, which a look too early takes for an inherited one.
    env.wait_until("the service sleeps", || {
        std::fs::read_to_string(format!("/proc/{pid}/syscall"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<libc::c_long>().ok())
            .filter(|n| *n == libc::SYS_clock_nanosleep || *n == libc::SYS_nanosleep)
    });
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut fds: Vec<u32> = fds.iter().filter_map(|f| f.parse().ok()).collect();
    fds.sort_unstable();
    assert_eq!(fds, [0, 1, 2], "only stdin, stdout and stderr");
}

#[test]
fn the_cli_never_sends_its_token_to_a_port_a_dead_agent_left_behind() {
    use std::io::Read;
    let mut env = TestEnv::new("");
    env.start_agent();
    let ep: homeport_types::AgentEndpoint =
        serde_json::from_str(&read(&env.data.join("agent.json"))).expect("agent.json");
    env.kill_agent_hard();
    let impostor = std::net::TcpListener::bind(&ep.addr).expect("take the old port");
    impostor.set_nonblocking(true).expect("nonblocking");
    let out = env.cli(&["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let mut leaked = String::new();
    if let Ok((mut conn, _)) = impostor.accept() {
        let _ = conn.set_read_timeout(Some(std::time::Duration::from_millis(200)));
        let _ = conn.read_to_string(&mut leaked);
    }
    assert!(
        !leaked.contains("Bearer"),
        "the token went to the impostor: {leaked}"
    );
}

#[test]
fn sigterm_is_not_held_up_by_a_follower_and_state_db_ends_stopped() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod]
autostart = true
[apps.a.env.prod.services.one]
command = ["@FIXTURE@"]
[apps.a.env.prod.services.two]
command = ["@FIXTURE@"]
"#,
    );
    env.start_agent();
    env.wait_service("a/prod/two", "runs", |s| s.state == ServiceState::Running);
    let mut follower = std::process::Command::new(homeport_bin())
        .args([
            "--config",
            &env.config.display().to_string(),
            "logs",
            "a",
            "-f",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("logs -f");
    let status = env.stop_agent().expect("agent was running");
    assert_eq!(status.code(), Some(0));
    let db = rusqlite::Connection::open(env.data.join("state.db")).expect("state.db");
    let states: Vec<String> = db
        .prepare("SELECT state FROM services ORDER BY service")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("query");
    assert_eq!(states, ["stopped", "stopped"]);
    let _ = follower.kill();
    let _ = follower.wait();
}

#[test]
fn the_log_holders_run_with_the_process_backend_asked_for() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@"]
autostart = true
"#,
    );
    env.start_agent();
    env.wait_service("a/prod/web", "runs", |s| s.state == ServiceState::Running);
    let want = backend().name();
    assert!(
        env.agent_log()
            .contains(&format!("process backend: {want}")),
        "{}",
        env.agent_log()
    );
    // The shim is told explicitly, whatever the agent's own environment says.
    let record: serde_json::Value =
        serde_json::from_str(&read(&env.data.join("run/a/prod/web/shim.json"))).expect("record");
    let shim = record["shim_pid"].as_u64().expect("shim pid");
    if cfg!(target_os = "linux") {
        let environ = std::fs::read(format!("/proc/{shim}/environ")).expect("environ");
        let setting = format!("HOMEPORT_PROCESS_BACKEND={want}");
        assert!(
            environ
                .split(|b| *b == 0)
                .any(|kv| kv == setting.as_bytes()),
            "the log holder does not run with {setting}"
        );
    }
}

#[test]
fn without_homeport_shim_beside_it_the_agent_runs_its_log_holders_itself() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@", "--port", "{port}"]
port = @P0@
autostart = true
"#,
    );
    // A single-binary install: `homeport` alone in its folder.
    let alone = env.dir.path().join("bin/homeport");
    std::fs::create_dir_all(alone.parent().expect("parent")).expect("bin dir");
    std::fs::copy(homeport_bin(), &alone).expect("copy homeport");
    env.use_binary(alone.clone());
    env.start_agent();
    let pid = env
        .wait_service("a/prod/web", "runs", |s| s.state == ServiceState::Running)
        .pid
        .expect("pid");
    let record: serde_json::Value =
        serde_json::from_str(&read(&env.data.join("run/a/prod/web/shim.json"))).expect("record");
    let shim = record["shim_pid"].as_u64().expect("shim pid");
    let out = std::process::Command::new("ps")
        .args(["-o", "args=", "-p", &shim.to_string()])
        .output()
        .expect("ps");
    let args = String::from_utf8_lossy(&out.stdout);
    assert!(
        args.starts_with(&format!("{} shim ", alone.display())),
        "the log holder is `homeport shim`: {args}"
    );
    let (code, _) = raw_http(
        env.ports[0],
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 200);
    let out = env.cli(&["stop", "a/prod/web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!alive(pid), "the service is gone when stop returns");
    // The idle log holder is told to quit as the stop returns; it exits a moment later.
    env.wait_until("the log holder exits", || {
        (!alive(shim as u32)).then_some(())
    });
}

#[test]
fn a_log_holder_still_starting_when_the_agent_dies_is_re_adopted_not_lost() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@", "--port", "{port}"]
port = @P0@
"#,
    );
    // A log holder that is slow to start (a loaded machine): it waits for this test's word
    // before it becomes the real one.
    let bin = env.dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    std::fs::copy(homeport_bin(), bin.join("homeport")).expect("copy homeport");
    let gate = env.dir.path().join("gate");
    let script = format!(
        "#!/bin/sh\nexec '{fixture}' --gate '{gate}' '{real}' \"$@\"\n",
        fixture = fixture_bin().display(),
        gate = gate.display(),
        real = homeport_bin().with_file_name("homeport-shim").display()
    );
    let wrapper = bin.join("homeport-shim");
    std::fs::write(&wrapper, script).expect("write the wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod the wrapper");
    env.use_binary(bin.join("homeport"));
    env.start_agent();

    // The agent starts the service: its log holder exists and has been told to start it (the
    // gate says so once the request waits on its stdin), but has not begun to run. Then the
    // agent dies.
    let mut start = env
        .command_with(&["start", "a/prod/web"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("homeport start");
    let waiting = env.dir.path().join("gate.waiting");
    env.wait_until("the log holder is spawned and told to start", || {
        waiting.exists().then_some(())
    });
    env.kill_agent_hard();
    let _ = start.wait();

    // The log holder goes on once the next agent is looking for it (or, if that agent does not
    // look, once it is up).
    let log = env.dir.path().join("agent.log");
    let release = std::thread::spawn({
        let gate = gate.clone();
        move || {
            let deadline = std::time::Instant::now() + DEADLINE;
            while std::time::Instant::now() < deadline {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("has not answered yet")
                    || text.matches("listening on http://").count() > 1
                {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            std::fs::write(&gate, "").expect("open the gate");
        }
    });
    env.start_agent();
    release.join().expect("the gate opened");

    // The one copy that runs is the one the agent knows, started once, and a stop ends it.
    let svc = env.wait_service("a/prod/web", "is re-adopted", |s| {
        s.state == ServiceState::Running
    });
    let pid = svc.pid.expect("pid");
    let holder = env.wait_until("the service listens", || {
        backend().port_holder(env.ports[0]).and_then(|h| h.pid)
    });
    assert_eq!(
        holder, pid,
        "the port is held by the service the agent knows"
    );
    let log = read(&env.log_file("a", "prod", "web"));
    assert_eq!(
        log.matches("listening on").count(),
        1,
        "started once:\n{log}"
    );
    let out = env.cli(&["stop", "a/prod/web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!alive(pid));
    env.wait_until("the port is free", || {
        backend().port_holder(env.ports[0]).is_none().then_some(())
    });
}

#[test]
fn a_crash_loop_is_a_few_rows_of_history_that_count_its_rounds() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.beta.services.loop]
command = ["@FIXTURE@", "--crash-after", "0"]
autostart = true
restart = { policy = "on-failure", backoff_min = "10ms", backoff_max = "20ms", max_failures = "unlimited" }
"#,
    );
    env.start_agent();
    let svc = env.wait_service("a/beta/loop", "has restarted 40 times", |s| {
        s.restarts >= 40
    });
    let history = env
        .block_on(
            env.client()
                .event_history(&"a/beta/loop".parse().expect("target"), &[], 1000),
        )
        .expect("history");
    // About four transitions a round, each one row that counts: the table does not grow with
    // the loop (an hour of it would otherwise be thousands of rows).
    assert!(history.len() <= 8, "{} rows: {history:#?}", history.len());
    let rounds = history
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                homeport_types::EventKind::State {
                    to: ServiceState::BackingOff,
                    ..
                }
            )
        })
        .map(|e| e.count)
        .sum::<u64>();
    assert!(
        rounds + 1 >= svc.restarts,
        "every round is counted: {rounds} rounds, {} restarts: {history:#?}",
        svc.restarts
    );
    assert!(history.iter().any(|e| e.count > 1 && e.last_time.is_some()));
}
