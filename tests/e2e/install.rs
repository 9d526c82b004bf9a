//! Installing, running and upgrading Homeport the way a person or a script does: the agent in
//! the background with readiness, stopping it with or without its services, an upgrade that keeps
//! every service's pid, the service unit (PATH captured, no build-folder paths), systemd's
//! readiness protocol, `homeport uninstall`, and `homeport import` of real files.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;

use homeport_types::ServiceState;

use crate::util::*;

const WEB: &str = r#"
[apps.shop.env.production.services.web]
command = ["@FIXTURE@", "--port", "{port}"]
port = @P0@
autostart = true
health = { http = "/health", interval = "200ms" }
"#;

/// A copy of the binaries outside the build folder, as an install puts them:
/// `DIR/bin/homeport` and, beside it, the log holder `homeport-shim` the agent starts.
fn installed_copy(env: &TestEnv) -> PathBuf {
    let bin = env.dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let dest = bin.join("homeport");
    std::fs::copy(homeport_bin(), &dest).expect("copy homeport");
    let shim = homeport_bin().with_file_name("homeport-shim");
    if shim.exists() {
        std::fs::copy(&shim, bin.join("homeport-shim")).expect("copy homeport-shim");
    }
    dest
}

/// Replaces `path` as a package manager or install.sh does: a new file renamed over it (running
/// processes keep the old one). A different file: one byte more.
fn replace_binary(path: &Path, from: &Path) {
    let mut bytes = std::fs::read(from).expect("read the new binary");
    bytes.push(0);
    let staged = path.with_extension("new");
    std::fs::write(&staged, &bytes).expect("stage");
    std::fs::set_permissions(&staged, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    std::fs::rename(&staged, path).expect("replace");
}

/// The CLI from `exe` with this environment's config and home.
fn cli_from(env: &TestEnv, exe: &Path, args: &[&str]) -> std::process::Output {
    let c = env.command();
    let args_env: Vec<_> = c.get_args().map(ToOwned::to_owned).collect();
    let mut cmd = Command::new(exe);
    cmd.args(args_env).args(args);
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.stdin(std::process::Stdio::null())
        .output()
        .expect("run homeport")
}

fn web_pid(env: &TestEnv) -> u32 {
    env.wait_service("shop/production/web", "is healthy", |s| {
        s.state == ServiceState::Healthy
    })
    .pid
    .expect("pid")
}

fn shim_pid(env: &TestEnv) -> u32 {
    let text = read(&env.data.join("run/shop/production/web/shim.json"));
    let v: serde_json::Value = serde_json::from_str(&text).expect("shim.json");
    v["shim_pid"].as_u64().expect("shim_pid") as u32
}

#[test]
fn detach_returns_when_ready_and_agent_stop_ends_agent_and_services() {
    let env = TestEnv::new(WEB);
    let out = env.cli(&["agent", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pid: u32 = stdout(&out)
        .trim()
        .parse()
        .expect("the pid alone on stdout");
    // Ready means the API answers at once, with that pid.
    assert_eq!(env.status().agent.pid, pid);
    assert!(stderr(&out).contains("agent.log"), "{}", stderr(&out));
    // Its output and its own log are one file, each line in it once.
    let log = std::fs::read_to_string(env.data.join("logs/agent.log")).expect("the agent's log");
    assert_eq!(log.matches("listening on").count(), 1, "{log}");
    let again = env.cli(&["agent", "--detach"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains(&format!("already running (pid {pid})")));

    let svc = web_pid(&env);
    let out = env.cli(&["agent", "stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("and its services"),
        "{}",
        stdout(&out)
    );
    // It returns once the agent has exited; its services went first.
    assert!(!alive(pid), "the agent is gone when `agent stop` returns");
    assert!(!alive(svc), "and so is its service");
    assert_eq!(env.cli(&["status"]).status.code(), Some(3));
}

/// An agent started with nowhere to print, as a desktop's tray used to start it, still says
/// what went wrong: in its own private log, which `homeport status` and the API name.
#[test]
fn an_agent_without_a_terminal_says_what_went_wrong_in_its_own_log() {
    let env = TestEnv::new(WEB);
    // Another program holds web's port, so its start at login fails.
    let holder = std::net::TcpListener::bind(("127.0.0.1", env.ports[0])).expect("hold the port");
    let mut agent = env
        .command()
        .arg("agent")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the agent");
    let log = env.data.join("logs/agent.log");
    let text = env.wait_until("the agent's own log says why web did not start", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("autostart failed"))
    });
    assert!(
        text.contains("shop/production/web") && text.contains(&env.ports[0].to_string()),
        "{text}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&log).expect("log").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the agent's log is its user's alone");

    let log_name = log.display().to_string();
    assert_eq!(env.status().agent.log.as_deref(), Some(log_name.as_str()));
    let out = env.cli(&["status"]);
    assert!(
        stdout(&out).contains(&format!("Agent log: {log_name}")),
        "{}",
        stdout(&out)
    );
    drop(holder);
    assert!(env.cli(&["agent", "stop"]).status.success());
    let _ = agent.wait();
}

#[test]
fn agent_stop_keep_services_leaves_them_for_the_next_agent() {
    let env = TestEnv::new(WEB);
    assert!(env.cli(&["agent", "--detach"]).status.success());
    let svc = web_pid(&env);
    let out = env.cli(&["agent", "stop", "--keep-services"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("keep running"), "{}", stdout(&out));
    assert!(alive(svc), "the service runs on without an agent");
    let (code, _) = raw_http(
        env.ports[0],
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 200);
    assert!(env.cli(&["agent", "--detach"]).status.success());
    assert_eq!(web_pid(&env), svc, "re-adopted, not started again");
}

/// The upgrade: a new binary replaces the installed one while services run; `homeport agent
/// restart` swaps the agent; every service keeps its pid and its shim, and logs keep flowing.
#[test]
fn an_upgrade_keeps_every_service_pid_and_its_log() {
    let env = TestEnv::new(WEB);
    let exe = installed_copy(&env);
    let out = cli_from(&env, &exe, &["agent", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let old_agent: u32 = stdout(&out).trim().parse().expect("pid");
    let svc = web_pid(&env);
    let shim = shim_pid(&env);

    // The shim that holds the service's pipes is the small homeport-shim when it is installed.
    let shim_exe = std::fs::read_link(format!("/proc/{shim}/exe")).expect("shim exe");
    let small_shim = exe.with_file_name("homeport-shim");
    if small_shim.exists() {
        assert_eq!(shim_exe, small_shim, "the installed shim runs");
    }

    // A new version of every installed binary, renamed over the old ones.
    replace_binary(&exe, &homeport_bin());
    if small_shim.exists() {
        replace_binary(&small_shim, &homeport_bin().with_file_name("homeport-shim"));
    }

    let out = cli_from(&env, &exe, &["agent", "restart"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        read(&env.data.join("logs/agent.log"))
    );
    assert!(
        stdout(&out).contains("1 running service(s) re-adopted with the same pids"),
        "{}",
        stdout(&out)
    );
    let status = env.status();
    assert_ne!(status.agent.pid, old_agent, "a new agent");
    assert!(!alive(old_agent));
    let new_exe = std::fs::read_link(format!("/proc/{}/exe", status.agent.pid)).expect("exe");
    assert_eq!(new_exe, exe, "the new agent runs the new binary");
    let now = service(&status, "shop/production/web");
    assert_eq!(now.pid, Some(svc), "same service pid");
    assert!(now.state.is_up(), "{now:?}");
    assert!(
        alive(shim) && shim_pid(&env) == shim,
        "the same shim holds its pipes"
    );
    // The shim keeps logging across the swap: a request after it is in the log.
    raw_http(
        env.ports[0],
        "GET /after-upgrade HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let log = env.log_file("shop", "production", "web");
    env.wait_until("the request after the upgrade is logged", || {
        read(&log).contains("/after-upgrade").then_some(())
    });
}

/// Under systemd (`Type=notify`): readiness on NOTIFY_SOCKET once the API answers, variables not
/// passed to services, and `agent restart` exiting 75 for the unit to start it again — this test
/// plays systemd's part.
#[test]
fn under_a_service_manager_readiness_is_notified_and_restart_asks_it() {
    let env = TestEnv::new(
        r#"
[apps.shop.env.production.services.web]
command = ["@FIXTURE@", "--port", "{port}", "--print-env", "NOTIFY_SOCKET", "--print-env", "HOMEPORT_SERVICE_MANAGER"]
port = @P0@
autostart = true
health = { http = "/health", interval = "200ms" }
"#,
    );
    let socket_path = env.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let start_managed = || {
        let mut c = env.command_with(&["agent"]);
        c.env("NOTIFY_SOCKET", &socket_path)
            .env("HOMEPORT_SERVICE_MANAGER", "systemd")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c.spawn().expect("agent")
    };
    let mut agent = start_managed();
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("READY=1 within the deadline");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.contains("READY=1"), "{msg}");
    assert!(msg.contains(&format!("MAINPID={}", agent.id())), "{msg}");
    // Ready means ready: the API answers now.
    assert_eq!(env.status().agent.pid, agent.id());
    assert_eq!(
        env.status().agent.service_manager.as_deref(),
        Some("systemd")
    );
    let svc = web_pid(&env);
    let log = env.log_file("shop", "production", "web");
    env.wait_until("the service printed its environment", || {
        read(&log)
            .contains("env HOMEPORT_SERVICE_MANAGER")
            .then_some(())
    });
    let text = read(&log);
    assert!(
        text.contains("out env NOTIFY_SOCKET=\n")
            && text.contains("out env HOMEPORT_SERVICE_MANAGER=\n"),
        "the service inherited what the manager told the agent:\n{text}"
    );

    let restart = env
        .command_with(&["agent", "restart"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("agent restart");
    let n = socket.recv(&mut buf).expect("STOPPING=1");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    let status = agent.wait().expect("agent exits");
    assert_eq!(status.code(), Some(75), "exit 75: start me again");
    assert!(alive(svc), "services stay for the next agent");
    // systemd's part: RestartForceExitStatus=75 starts the unit again.
    let mut agent = start_managed();
    let out = restart.wait_with_output().expect("restart returns");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("(by systemd)"));
    assert_eq!(web_pid(&env), svc);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = agent.wait();
}

#[test]
fn service_install_refuses_a_build_folder_and_captures_path() {
    let mut env = TestEnv::new(WEB);
    let unit = env.dir.path().join(".config/systemd/user/homeport.service");
    // From the build folder: refused, nothing written.
    let out = env.cli(&["service", "install"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("inside the build folder") && err.contains("scripts/install.sh"),
        "{err}"
    );
    assert!(!unit.exists());

    // From an installed copy, with an agent already running by hand: written, with a warning.
    env.start_agent();
    let exe = installed_copy(&env);
    let path_var = format!(
        "{}/.nvm/versions/node/v20/bin:/usr/local/bin:/usr/bin:/bin:relative",
        env.dir.path().display()
    );
    let mut c = Command::new(&exe);
    c.arg("--config")
        .arg(&env.config)
        .args(["service", "install"])
        .env("HOME", env.dir.path())
        .env("XDG_CONFIG_HOME", env.dir.path().join(".config"))
        .env("PATH", &path_var);
    let out = c.output().expect("install");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = read(&unit);
    let expected = path_var.trim_end_matches(":relative");
    assert!(
        text.contains(&format!("Environment=\"PATH={expected}\"")),
        "PATH captured without the relative entry:\n{text}"
    );
    assert!(
        text.contains(&format!("ExecStart=\"{}\"", exe.display())),
        "{text}"
    );
    assert!(text.contains("Type=notify") && text.contains("RestartForceExitStatus=75"));
    let err = stderr(&out);
    assert!(
        err.contains("already running outside the unit")
            && err.contains("homeport agent stop --keep-services"),
        "{err}"
    );
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let v = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .expect("systemd-analyze");
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    }
    // Removing it while nothing runs from it: done, with the reload to run.
    let out = cli_from(&env, &exe, &["service", "uninstall"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("systemctl --user daemon-reload"));
    assert!(!unit.exists());
}

#[test]
fn service_uninstall_says_what_to_run_first_while_the_unit_runs_the_agent() {
    let env = TestEnv::new(WEB);
    let exe = installed_copy(&env);
    assert!(
        cli_from(&env, &exe, &["service", "install"])
            .status
            .success()
    );
    let unit = env.dir.path().join(".config/systemd/user/homeport.service");
    // An agent as the unit runs it.
    let mut agent = env
        .command_with(&["agent"])
        .env("HOMEPORT_SERVICE_MANAGER", "systemd")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("agent");
    env.wait_until("the agent answers", || {
        homeport_client::Client::discover(&env.data)
            .ok()
            .and_then(|c| env.block_on(c.status()).ok())
    });
    let out = cli_from(&env, &exe, &["service", "uninstall"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let disable = err
        .find("systemctl --user disable --now homeport")
        .expect(&err);
    let again = err.find("homeport service uninstall").expect(&err);
    let reload = err.find("systemctl --user daemon-reload").expect(&err);
    assert!(disable < again && again < reload, "in order:\n{err}");
    assert!(unit.exists(), "nothing removed");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = agent.wait();
}

#[test]
fn uninstall_removes_the_unit_the_login_entry_and_the_data_only_when_asked() {
    let env = TestEnv::new(WEB);
    let exe = installed_copy(&env);
    assert!(
        cli_from(&env, &exe, &["service", "install"])
            .status
            .success()
    );
    let tray = env.dir.path().join("bin/homeport-desktop");
    std::fs::write(&tray, "").expect("tray stand-in");
    let out = env
        .command_with(&["autostart", "enable"])
        .env("HOMEPORT_DESKTOP", &tray)
        .output()
        .expect("autostart");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env.cli(&["agent", "--detach"]).status.success());
    let svc = web_pid(&env);
    let unit = env.dir.path().join(".config/systemd/user/homeport.service");
    let entry = env.dir.path().join(".config/autostart/Homeport.desktop");
    assert!(unit.exists() && entry.exists());

    // Without a terminal, --data needs --yes; nothing changes without it.
    let out = cli_from(&env, &exe, &["uninstall", "--data"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(unit.exists() && alive(svc));

    let out = cli_from(&env, &exe, &["uninstall"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!unit.exists() && !entry.exists(), "{text}");
    assert!(!alive(svc), "the agent and its services are stopped");
    assert!(text.contains("Kept the data folder"), "{text}");
    assert!(env.data.join("state.db").exists(), "data kept unless asked");

    let out = cli_from(&env, &exe, &["uninstall", "--data", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!env.data.exists(), "--data --yes deletes it");
    assert!(env.config.exists(), "the config is the user's");
}

#[test]
fn import_a_procfile_write_it_keeping_comments_and_run_it() {
    let mut env = TestEnv::new("");
    // A config with a comment of the user's, which the import keeps.
    let before = format!(
        "# my machine's apps — keep this note\n[agent]\nport = 0\ndata_dir = \"{}\"\n",
        env.data.display()
    );
    std::fs::write(&env.config, &before).expect("config");
    let dir = env.dir.path().join("shop");
    std::fs::create_dir_all(&dir).expect("shop");
    let procfile = dir.join("Procfile");
    std::fs::write(
        &procfile,
        "# the shop\nweb: python3 -m http.server $PORT --bind 127.0.0.1\nworker: while true; do echo tick; sleep 1; done\n",
    )
    .expect("Procfile");
    let p = procfile.display().to_string();
    let printed = env.cli(&["import", &p]);
    assert!(printed.status.success(), "{}", stderr(&printed));
    assert!(stdout(&printed).contains("[apps.shop.env.production.services.web]"));
    assert_eq!(read(&env.config), before, "printing writes nothing");

    let out = env.cli(&["import", &p, "--write"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = read(&env.config);
    assert!(
        after.starts_with(&before),
        "the old text and its comment are kept:\n{after}"
    );
    assert!(
        after.contains("shell = true") && after.contains("port = 5000"),
        "{after}"
    );
    // Importing again is refused rather than duplicated.
    let again = env.cli(&["import", &p, "--write"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("already has web, worker"),
        "{}",
        stderr(&again)
    );
    assert_eq!(read(&env.config), after);

    // It runs: the web process type answers on its port, the worker logs.
    let port = free_port();
    std::fs::write(
        &env.config,
        after.replace("port = 5000", &format!("port = {port}")),
    )
    .expect("port");
    assert!(env.cli(&["config", "check"]).status.success());
    env.start_agent();
    assert!(env.cli(&["start", "shop"]).status.success());
    env.wait_until("the imported web answers", || {
        (raw_http_opt(port).is_some_and(|c| c == 200)).then_some(())
    });
    let log = env.log_file("shop", "production", "worker");
    env.wait_until("the imported worker logs", || {
        read(&log).contains("tick").then_some(())
    });
}

fn raw_http_opt(port: u16) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace().nth(1)?.parse().ok()
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/import")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn import_pm2_jlist_output_maps_instances_to_ports_and_lists_the_rest() {
    let env = TestEnv::new("");
    let out = env.cli(&["import", &fixture("pm2-jlist.json")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // Two fork-mode instances with PORT incremented: one service per instance and port.
    for needle in [
        "[apps.shop.env.production.services.shop-web-0]",
        "port = 3300",
        "[apps.shop.env.production.services.shop-web-1]",
        "port = 3301",
        r#"command = ["node", "--max-old-space-size=256", "/home/ana/shop/server.js", "--verbose"]"#,
        r#"cwd = "/home/ana/shop""#,
        r#"env = { NODE_ENV = "production" }"#,
        r#"secret_env = { API_TOKEN = "s3cr3t-token" }"#,
        r#"restart = { policy = "always", max_failures = 10, backoff_min = "1s", reset_after = "10s" }"#,
        r#"stop_timeout = "5s""#,
        "[apps.shop.env.production.services.shop-worker]",
        r#"command = ["python3", "/home/ana/shop/worker.py"]"#,
        r#"restart = { policy = "never" }"#,
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(
        !text.contains("PM2_HOME"),
        "the shell's variables stay out:\n{text}"
    );
    let err = stderr(&out);
    for needle in ["max_memory_restart", "watch:", "variables PM2 copied"] {
        assert!(err.contains(needle), "not listed: {needle}\n{err}");
    }
    // What it prints is a valid config (once the folder it names exists, as it does where PM2
    // ran it).
    let shop = env.dir.path().join("shop");
    std::fs::create_dir_all(&shop).expect("shop");
    let cfg = env.dir.path().join("pm2.toml");
    std::fs::write(
        &cfg,
        text.replace("/home/ana/shop", &shop.display().to_string()),
    )
    .expect("write");
    let check = Command::new(homeport_bin())
        .args(["--config", &cfg.display().to_string(), "config", "check"])
        .env("HOME", env.dir.path())
        .output()
        .expect("check");
    assert!(check.status.success(), "{}", stderr(&check));
}

#[test]
fn import_a_compose_file_runs_local_commands_and_lists_images() {
    let env = TestEnv::new("");
    let out = env.cli(&["import", &fixture("docker-compose.yml"), "--env", "beta"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/import");
    for needle in [
        "[apps.shop.env.beta.services.web]".to_owned(),
        r#"command = ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]"#.to_owned(),
        format!("cwd = \"{}\"", dir.join("web").display()),
        "port = 8000".to_owned(),
        r#"secret_env = { SESSION_SECRET = "change-me" }"#.to_owned(),
        r#"health = { command = ["curl", "-f", "http://localhost:8000/health"], interval = "30s", timeout = "10s", start_period = "40s", retries = 3 }"#.to_owned(),
        r#"restart = { policy = "always" }"#.to_owned(),
        r#"depends_on = ["worker"]"#.to_owned(),
        r#"stop_timeout = "20s""#.to_owned(),
        "[apps.shop.env.beta.services.worker]".to_owned(),
        r#"restart = { policy = "on-failure", max_failures = 5 }"#.to_owned(),
    ] {
        assert!(text.contains(&needle), "missing {needle:?} in:\n{text}");
    }
    assert!(
        !text.contains("services.db]"),
        "an image is not a local command"
    );
    let err = stderr(&out);
    for needle in ["postgres:16", "LOG_LEVEL", "working_dir /app", "volumes"] {
        assert!(err.contains(needle), "not listed: {needle}\n{err}");
    }
}

#[test]
fn install_sh_links_the_binary_and_the_agent_finds_its_dashboard_beside_itself() {
    let env = TestEnv::new(WEB);
    let prefix = env.dir.path().join("prefix");
    let ui = env.dir.path().join("ui-build");
    std::fs::create_dir_all(ui.join("assets")).expect("ui");
    std::fs::write(
        ui.join("index.html"),
        "<!doctype html><title>Homeport</title>",
    )
    .expect("index");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/install.sh");
    let from = homeport_bin().parent().expect("bin dir").to_path_buf();
    let run = |args: &[&str]| {
        Command::new("bash")
            .arg(&script)
            .args(args)
            .env("HOME", env.dir.path())
            .env("XDG_DATA_HOME", env.dir.path().join(".local/share"))
            .env("XDG_CONFIG_HOME", env.dir.path().join(".config"))
            .env_remove("HOMEPORT_CONFIG")
            .output()
            .expect("install.sh")
    };
    let p = prefix.display().to_string();
    let out = run(&[
        "--from",
        &from.display().to_string(),
        "--ui",
        &ui.display().to_string(),
        "--prefix",
        &p,
        "--no-tray",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let link = prefix.join("bin/homeport");
    let lib = prefix.join("lib/homeport");
    assert_eq!(
        std::fs::read_link(&link).expect("a link"),
        lib.join("homeport")
    );
    assert!(lib.join("ui/index.html").is_file());
    assert!(prefix.join("share/man/man1/homeport.1").is_file());
    assert!(prefix.join("share/man/man1/homeport-import.1").is_file());
    assert!(
        read(
            &env.dir
                .path()
                .join(".local/share/bash-completion/completions/homeport")
        )
        .contains("_clap_complete_homeport")
    );

    // Started through the link on PATH, without HOMEPORT_UI_DIR: the dashboard comes from the
    // install, not from any checkout.
    let c = env.command_with(&["agent", "--detach"]);
    let args: Vec<_> = c.get_args().map(ToOwned::to_owned).collect();
    let mut cmd = Command::new(&link);
    cmd.args(args).env_remove("HOMEPORT_UI_DIR");
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let out = cmd.output().expect("detach");
    assert!(out.status.success(), "{}", stderr(&out));
    let log = env.data.join("logs/agent.log");
    env.wait_until("the agent says where its dashboard is", || {
        read(&log).contains("dashboard from").then_some(())
    });
    assert!(
        read(&log).contains(&format!("dashboard from {}", lib.join("ui").display())),
        "{}",
        read(&log)
    );
    // The installed agent is the one running.
    let pid = env.status().agent.pid;
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe"),
        lib.join("homeport")
    );
    assert!(env.cli(&["agent", "stop"]).status.success());
    let out = run(&["--uninstall", "--prefix", &p]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!lib.exists() && !link.exists() && std::fs::symlink_metadata(&link).is_err());
}
