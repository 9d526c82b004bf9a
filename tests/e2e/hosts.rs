//! Other hosts over real OpenSSH: enrolment with a pinned host key, the host's agent reached
//! through this computer's agent (`--host`, `HOST:target`), a changed key refused, an
//! unreachable host shown as such, the host's agent killed and back.

use std::os::unix::fs::PermissionsExt;

use homeport_types::HostState;

use crate::sshd::SshHost;
use crate::util::*;

/// The host's own config: its agent on a free port, no router (several test hosts share this
/// machine's loopback), and `services` below.
fn host_config(services: &str) -> String {
    format!("[agent]\nport = 0\nrouter_port = 0\n\n{services}")
}

/// A local test environment whose `ssh` authenticates with the host's test key (through the
/// test's ssh-agent, as a desktop session's agent would).
fn local_env(host: &SshHost) -> TestEnv {
    let mut env = TestEnv::new("");
    env.set_env("SSH_AUTH_SOCK", &host.auth_sock);
    env
}

fn enrol(env: &TestEnv, host: &SshHost, name: &str) -> String {
    let out = env.cli(&[
        "host",
        "add",
        name,
        &host.destination(),
        "--fingerprint",
        &host.fingerprint(),
    ]);
    assert!(
        out.status.success(),
        "host add: {}\n{}\n--- sshd ---\n{}",
        stdout(&out),
        stderr(&out),
        host.sshd_log()
    );
    stdout(&out)
}

/// A web service of the host, from the fixture (a copy the host's user can run).
fn web_service(port: u16) -> String {
    format!(
        "[apps.shop.env.production]\nautostart = true\n\
         services.web = {{ command = \"{} --port {{port}} --lines 2\", port = {port}, health = \"/health\" }}\n",
        shared_fixture_bin().display()
    )
}

fn host_info(env: &TestEnv, name: &str) -> Option<homeport_types::HostInfo> {
    env.block_on(env.client().hosts())
        .ok()?
        .into_iter()
        .find(|h| h.name == name)
}

#[test]
fn a_host_is_enrolled_with_its_key_pinned_and_a_changed_key_is_refused() {
    let Some(mut host) = SshHost::start("enrol") else {
        return;
    };
    host.write_config(&host_config(""));
    let env = local_env(&host);
    let dest = host.destination();

    // First contact without a terminal, a fingerprint or --yes: nothing happens.
    let out = env.cli(&["host", "add", "vps", &dest]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--fingerprint"), "{}", stderr(&out));
    assert!(!env.data.join("hosts/vps").exists());

    // A fingerprint that is not the host's: refused, nothing pinned or installed.
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let out = env.cli(&["host", "add", "vps", &dest, "--fingerprint", wrong]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&host.fingerprint())
            && err.contains(wrong)
            && err.contains("nothing was pinned"),
        "{err}"
    );
    assert!(!env.data.join("hosts/vps").exists());
    assert!(!host.home.join(".local/lib/homeport").exists());

    // The right one: pinned, installed, the agent runs there and answers.
    let said = enrol(&env, &host, "vps");
    assert!(said.contains(&host.fingerprint()), "{said}");
    assert!(said.contains("Copied homeport and homeport-shim"), "{said}");
    assert!(said.contains("The agent on vps answers"), "{said}");
    let pinned = read(&env.data.join("hosts/vps/known_hosts"));
    assert!(pinned.starts_with("homeport-vps ssh-ed25519 "), "{pinned}");
    for f in ["hosts/vps/known_hosts", "hosts/vps/host.json"] {
        let mode = std::fs::metadata(env.data.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let record = read(&env.data.join("hosts/vps/host.json"));
    assert!(
        !record.contains("token"),
        "the host's token is never written here"
    );
    let bin = host.home.join(".local/lib/homeport/homeport");
    assert!(bin.exists() && host.home.join(".local/lib/homeport/homeport-shim").exists());
    let pid = host.agent_pid().expect("an agent runs on the host");
    let owner = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        owner
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains(&host.uid.to_string())),
        "the host's agent runs as the host's user"
    );
    // The unit is written (this machine has no systemd user instance: the agent runs detached,
    // and `host add` said so).
    let unit = read(&host.home.join(".config/systemd/user/homeport.service"));
    assert!(unit.contains("Environment=\"PATH="), "{unit}");
    assert!(said.contains("runs detached now"), "{said}");

    let out = env.cli(&["host", "check", "vps"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("the same as here"),
        "{}",
        stdout(&out)
    );

    // Enrolling again is an upgrade: the same files are left, the agent is restarted on them.
    let again = enrol(&env, &host, "vps");
    assert!(again.contains("these very files"), "{again}");
    assert!(again.contains("Restarted the agent"), "{again}");
    let out = env.cli(&["host", "add", "vps", "someone@127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("host remove vps"), "{}", stderr(&out));

    // The host gets another key: refused, with both fingerprints, and nothing is run there.
    let old = host.fingerprint();
    host.replace_host_key();
    let new = host.fingerprint();
    assert_ne!(old, new);
    let out = env.cli(&["host", "check", "vps"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("CHANGED") && err.contains(&old) && err.contains(&new),
        "{err}"
    );
    let out = env.cli(&["host", "add", "vps", &dest, "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "--yes never overrides a pinned key"
    );
    assert!(stderr(&out).contains("CHANGED"), "{}", stderr(&out));
    assert_eq!(
        read(&env.data.join("hosts/vps/known_hosts")),
        pinned,
        "the pin is unchanged"
    );

    let out = env.cli(&["host", "remove", "vps"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!env.data.join("hosts/vps").exists());
    let out = env.cli(&["host", "list"]);
    assert!(
        stdout(&out).contains("No hosts enrolled"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_hosts_services_are_run_from_here_through_the_agent() {
    let Some(host) = SshHost::start("remote status") else {
        return;
    };
    let port = free_port();
    host.write_config(&host_config(&web_service(port)));
    let mut env = local_env(&host);
    enrol(&env, &host, "vps");
    env.start_agent();
    env.wait_until("this agent is connected to vps", || {
        host_info(&env, "vps").filter(|h| h.state == HostState::Connected)
    });

    // --host, HOMEPORT_HOST and HOST:target all reach the host's agent (whose autostart may
    // still be starting web).
    let report = env.wait_until("the host's agent runs web", || {
        let out = env.cli(&["--host", "vps", "status", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let r: homeport_types::StatusReport = serde_json::from_slice(&out.stdout).unwrap();
        service(&r.snapshot, "shop/production/web")
            .pid
            .is_some()
            .then_some(r)
    });
    assert_eq!(
        report.snapshot.agent.config_path,
        host.config_path().display().to_string(),
        "the host's agent answered"
    );
    let out = env
        .command_with(&["status"])
        .env("HOMEPORT_HOST", "vps")
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("shop/production/web"),
        "{}",
        stdout(&out)
    );
    let local = env.cli(&["status"]);
    assert!(
        !stdout(&local).contains("shop/production/web"),
        "without a host: this computer"
    );

    // Logs.
    let out = env.cli(&["logs", "vps:shop/production/web", "-n", "50"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("listening on 127.0.0.1"),
        "{}",
        stdout(&out)
    );

    // Stop and start; the verdict this agent keeps of the host follows.
    let out = env.cli(&["stop", "vps:shop/production"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("stopped"));
    env.wait_until("this agent's view of vps says web is stopped", || {
        let h = host_info(&env, "vps")?;
        h.overall.filter(|v| v.reason.contains("stopped"))
    });
    // Each environment of the host has its verdict (the tray's group of the host lists them),
    // and the turn is an event here, which the tray refreshes its hosts on.
    let h = host_info(&env, "vps").unwrap();
    let prod = h
        .envs
        .iter()
        .find(|e| e.app == "shop" && e.env == "production")
        .expect("shop/production among vps's environments");
    assert_eq!(
        prod.verdict.level,
        homeport_types::Level::Degraded,
        "{prod:?}"
    );
    env.wait_until("a host event says vps's production turned", || {
        let events = env
            .block_on(
                env.client()
                    .event_history(&homeport_types::Target::All, &["host"], 50),
            )
            .ok()?;
        events.into_iter().find(|e| {
            matches!(
                &e.kind,
                homeport_types::EventKind::Host {
                    host,
                    state: HostState::Connected,
                    overall: Some(v),
                    ..
                } if host == "vps" && v.level == homeport_types::Level::Degraded
            )
        })
    });
    let out = env.cli(&["--host", "vps", "start", "shop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let h = env.wait_until("vps is healthy again", || {
        host_info(&env, "vps").filter(|h| {
            h.overall
                .as_ref()
                .is_some_and(|v| v.level == homeport_types::Level::Healthy)
        })
    });
    assert_eq!(h.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    // `reload` follows --host too: the host's agent applies its own file, not this one's.
    let out = env.cli(&["--host", "vps", "reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("Applied ")
            && !stdout(&out).contains(&env.config.display().to_string())
            && stdout(&out).contains("shop/production/web"),
        "{}",
        stdout(&out)
    );

    // A host nobody enrolled, and a target that names two hosts.
    let out = env.cli(&["--host", "nope", "status"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("homeport host add nope"),
        "{}",
        stderr(&out)
    );
    let out = env.cli(&["--host", "other", "status", "vps:shop"]);
    assert_eq!(out.status.code(), Some(2));

    // The token of the host is in this agent's memory only: not in its files.
    for entry in walk(&env.data) {
        let text = std::fs::read(&entry).unwrap_or_default();
        let token = read(&host.data().join("token"));
        assert!(
            !token.trim().is_empty() && !String::from_utf8_lossy(&text).contains(token.trim()),
            "{} holds the host's token",
            entry.display()
        );
    }
}

#[test]
fn an_unreachable_host_and_a_restarted_host_agent_are_told_and_recovered() {
    let Some(mut host) = SshHost::start("unreachable") else {
        return;
    };
    let port = free_port();
    host.write_config(&host_config(&web_service(port)));
    let mut env = local_env(&host);
    enrol(&env, &host, "vps");
    env.start_agent();
    env.wait_until("connected", || {
        host_info(&env, "vps").filter(|h| h.state == HostState::Connected)
    });
    let web_pid = env.wait_until("the host's agent runs web", || {
        let out = env.cli(&["--host", "vps", "status", "--json"]);
        let r: homeport_types::StatusReport = serde_json::from_slice(&out.stdout).ok()?;
        service(&r.snapshot, "shop/production/web").pid
    });

    // The host's agent is killed: this agent says so, the CLI says so, services keep running.
    let agent = host.agent_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    env.wait_until("vps's agent is down, and why", || {
        host_info(&env, "vps").filter(|h| {
            h.state == HostState::AgentDown
                && h.reason
                    .as_deref()
                    .is_some_and(|r| r.contains("no agent runs"))
        })
    });
    let out = env.cli(&["--host", "vps", "status"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("agent down since"),
        "{}",
        stderr(&out)
    );
    assert!(alive(web_pid), "services outlive their agent");

    // Started again there (as systemd would): re-adopted, and this agent connects again.
    let out = host
        .as_user(host.home.join(".local/bin/homeport"))
        .args(["agent", "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    env.wait_until("connected again", || {
        host_info(&env, "vps").filter(|h| h.state == HostState::Connected)
    });
    let out = env.cli(&["--host", "vps", "status", "--json"]);
    let r: homeport_types::StatusReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        service(&r.snapshot, "shop/production/web").pid,
        Some(web_pid),
        "the running service was re-adopted, not restarted"
    );

    // The network goes: unreachable, since when, and why; the CLI fails fast with that.
    host.stop_sshd();
    let h = env.wait_until("vps is unreachable", || {
        host_info(&env, "vps").filter(|h| h.state == HostState::Unreachable)
    });
    let reason = h.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("cannot reach") || reason.contains("ended"),
        "{reason}"
    );
    assert!(h.since.ends_with('Z'), "{h:?}");
    let out = env.cli(&["--host", "vps", "status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("unreachable since"),
        "{}",
        stderr(&out)
    );
    let out = env.cli(&["host", "list"]);
    assert!(
        stdout(&out).contains("unreachable since"),
        "{}",
        stdout(&out)
    );
    // The outage is recorded as events.
    let events = env
        .block_on(
            env.client()
                .event_history(&homeport_types::Target::All, &["host"], 20),
        )
        .unwrap();
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        homeport_types::EventKind::Host {
            state: HostState::Unreachable,
            ..
        }
    )));

    // Back: connected again without anyone asking.
    host.start_sshd();
    env.wait_until("connected after the outage", || {
        host_info(&env, "vps").filter(|h| h.state == HostState::Connected)
    });
    let out = env.cli(&["--host", "vps", "status"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(walk(&p)),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
    out
}

#[test]
fn exported_systemd_units_pass_systemd_analyze_verify() {
    let env = TestEnv::new(
        r#"
[apps.shop.env.production]
env = { GREETING = "50% off" }
secret_env = { API_KEY = "s3cr3t" }

[apps.shop.env.production.services.db]
command = ["@FIXTURE@", "--port", "{port}"]
port = @P0@

[apps.shop.env.production.services.web]
command = "@FIXTURE@ --port {port} --say 'my shop'"
port = @P1@
depends_on = ["db"]
health = "/health"
restart = { policy = "always", max_failures = 3, window = "1m" }
"#,
    );
    let out_dir = env.dir.path().join("units");
    let out = env.cli(&[
        "export",
        "systemd",
        "shop/production",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let web = read(&out_dir.join("shop-production-web.service"));
    assert!(web.contains("After=shop-production-db.service"), "{web}");
    assert!(!web.contains("s3cr3t"));
    let secrets = out_dir.join("shop-production-web.env");
    assert_eq!(
        std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let units: Vec<std::path::PathBuf> = [
        "shop-production.target",
        "shop-production-db.service",
        "shop-production-web.service",
    ]
    .iter()
    .map(|f| out_dir.join(f))
    .collect();
    let verify = |files: &[std::path::PathBuf]| {
        let runtime = tempfile::tempdir().unwrap();
        std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::process::Command::new("systemd-analyze")
            .args(["--user", "verify"])
            .args(files)
            .env("XDG_RUNTIME_DIR", runtime.path())
            .output()
            .expect("systemd-analyze (Debian's systemd package; scripts/setup.sh installs it)")
    };
    let out = verify(&units);
    assert!(
        out.status.success() && stderr(&out).trim().is_empty(),
        "systemd-analyze verify: {}{}",
        stdout(&out),
        stderr(&out)
    );
    // The check can fail: a unit with a mistake is reported.
    let broken = out_dir.join("shop-production-broken.service");
    std::fs::write(&broken, web.replace("Restart=always", "Restart=sometimes")).unwrap();
    let out = verify(&[broken]);
    assert!(
        !stderr(&out).trim().is_empty(),
        "systemd-analyze noticed nothing in a broken unit"
    );

    // Printed instead of written: the secret stays out of the terminal.
    let out = env.cli(&["export", "systemd", "shop/production"]);
    assert!(stdout(&out).contains("# ---- shop-production-web.service ----"));
    assert!(!stdout(&out).contains("s3cr3t"));
    let out = env.cli(&["export", "launchd", "shop/nope"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
}

/// A git checkout whose build copies the fixture (a copy the host's user can run too) into
/// `out/` with a wrapper that reads its flags from `flags`, and a migration.
struct Source {
    dir: std::path::PathBuf,
}

impl Source {
    fn new(root: &std::path::Path) -> Self {
        let dir = root.join("src");
        std::fs::create_dir_all(&dir).unwrap();
        let s = Source { dir };
        s.git(&["init", "-q", "-b", "main"]);
        s.git(&["config", "user.email", "t@example.invalid"]);
        s.git(&["config", "user.name", "t"]);
        s.write(
            "run.sh",
            "#!/bin/sh\nd=$(dirname \"$0\")\nexec \"$d/app\" $(cat \"$d/flags\") \"$@\"\n",
        );
        s.write(
            "build.sh",
            &format!(
                "set -e\nmkdir -p out\ncp '{}' out/app\ncp run.sh flags migrate.sql out/\nchmod +x out/run.sh\necho \"built on $(id -un)\"\n",
                shared_fixture_bin().display()
            ),
        );
        s.write("flags", "--say one");
        s.write(
            "migrate.sql",
            "CREATE TABLE IF NOT EXISTS hits (id INTEGER PRIMARY KEY, at TEXT NOT NULL);\n",
        );
        s.commit("first");
        s
    }

    fn git(&self, args: &[&str]) {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join(name), text).unwrap();
    }

    fn commit(&self, msg: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
    }
}

/// This computer's config: the app is built here, its production runs on `vps` (paths with
/// `~` are the host's).
fn deploy_config(port: u16, start_period: &str) -> String {
    format!(
        r#"
[apps.shop]
source = "@HOME@/src"
build = ["sh build.sh"]
artifacts = ["out"]
migrate = "{{release}}/out/app --db {{db.main}} --sql-file {{release}}/out/migrate.sql"

[apps.shop.env.production]
host = "vps"
databases = {{ main = "~/production.db" }}
health_deadline = "20s"

[apps.shop.env.production.services.web]
command = ["{{release}}/out/run.sh", "--port", "{{port}}", "--db", "{{db.main}}"]
port = {port}
health = {{ http = "/health", interval = "100ms", retries = 20, start_period = "{start_period}" }}
restart = {{ policy = "on-failure", max_failures = 2 }}
"#
    )
}

/// A host with the agent connected, and this computer's env and source, ready to deploy.
fn deploy_setup(test: &str, start_period: &str) -> Option<(SshHost, TestEnv, Source, u16)> {
    deploy_setup_with(test, |port| deploy_config(port, start_period))
}

fn deploy_setup_with(
    test: &str,
    config: impl Fn(u16) -> String,
) -> Option<(SshHost, TestEnv, Source, u16)> {
    let host = SshHost::start(test)?;
    host.write_config(&host_config(""));
    let port = free_port();
    let mut env = TestEnv::new(&config(port));
    env.set_env("SSH_AUTH_SOCK", &host.auth_sock);
    let src = Source::new(env.dir.path());
    enrol(&env, &host, "vps");
    env.start_agent();
    env.wait_until("connected to vps", || {
        host_info(&env, "vps").filter(|h| h.state == HostState::Connected)
    });
    Some((host, env, src, port))
}

fn remote_current(host: &SshHost) -> Option<String> {
    std::fs::read_link(host.data().join("apps/shop/production/current"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn answer(port: u16) -> String {
    raw_http(
        port,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .1
}

#[test]
fn a_deploy_to_a_host_ships_the_release_and_migrates_there_or_builds_there() {
    let Some((host, env, src, port)) = deploy_setup("remote deploy", "0s") else {
        return;
    };
    let out = env.cli(&["deploy", "shop"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    for step in [
        "check vps",
        "config on vps",
        "preflight on vps",
        "build",
        "stage",
        "ship to vps",
        "receive on vps",
        "migrate on vps",
        "switch on vps",
        "health gate on vps",
    ] {
        assert!(text.contains(&format!("▸ {step}")), "no {step}:\n{text}");
    }
    assert!(text.contains("checksums match its manifest"), "{text}");
    // Its record is kept where it ran; here, `homeport deploys` says where.
    let out = env.cli(&["deploys", "shop"]);
    assert!(
        stdout(&out).contains("shop/production runs on vps: its deploys are kept there — homeport --host vps deploys shop"),
        "{}",
        stdout(&out)
    );
    let out = env.cli(&["--host", "vps", "deploys", "shop"]);
    assert!(
        stdout(&out).contains("shop/production") && stdout(&out).contains("succeeded"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(text.contains("built on root"), "built here:\n{text}");
    let first = remote_current(&host).expect("production runs a release on vps");
    assert!(
        env.data.join("apps/shop/releases").join(&first).exists(),
        "built and staged here"
    );
    assert!(
        !host.data().join("apps/shop/incoming").join(&first).exists(),
        "taken out of incoming"
    );
    // The migration ran there, on the host's database.
    let db = rusqlite::Connection::open(host.home.join("production.db")).unwrap();
    let tables: i64 = db
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'hits'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1);
    assert!(answer(port).contains("hello from one"), "{}", answer(port));
    let out = env.cli(&["--host", "vps", "status", "--json"]);
    let r: homeport_types::StatusReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        service(&r.snapshot, "shop/production/web").health,
        homeport_types::Health::Healthy
    );
    // The host's config has the environment, without `host`, and keeps its own [agent].
    let cfg = read(&host.config_path());
    assert!(
        cfg.contains("router_port = 0") && cfg.contains("[apps.shop.env.production"),
        "{cfg}"
    );
    assert!(!cfg.contains("host ="), "{cfg}");

    // Built there from the pushed commit.
    src.write("flags", "--say two");
    src.commit("two");
    let out = env.cli(&["deploy", "shop", "--build-on-host"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("▸ push source to vps"), "{text}");
    assert!(text.contains("▸ build on vps"), "{text}");
    assert!(
        text.contains(&format!("built on {}", host.user)),
        "built there:\n{text}"
    );
    let second = remote_current(&host).unwrap();
    assert_ne!(first, second);
    assert!(
        !env.data.join("apps/shop/releases").join(&second).exists(),
        "not built here"
    );
    env.wait_until("the new release answers", || {
        answer(port).contains("hello from two").then_some(())
    });
}

#[test]
fn a_failed_deploy_on_a_host_is_rolled_back_there() {
    let Some((host, env, src, port)) = deploy_setup("remote rollback", "0s") else {
        return;
    };
    let out = env.cli(&["deploy", "shop"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let good = remote_current(&host).unwrap();

    src.write("flags", "--say bad --fail-health");
    src.commit("bad");
    let out = env.cli(&["deploy", "shop"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    assert!(text.contains("▸ roll back on vps"), "{text}");
    assert!(
        stderr(&out).contains(&format!("switched back to {good}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(remote_current(&host).as_deref(), Some(good.as_str()));
    env.wait_until("the good release serves again", || {
        answer(port).contains("hello from one").then_some(())
    });
    let h = env.wait_until("vps is healthy again", || {
        host_info(&env, "vps").filter(|h| {
            h.overall
                .as_ref()
                .is_some_and(|v| v.level == homeport_types::Level::Healthy)
        })
    });
    assert_eq!(h.state, HostState::Connected);
}

#[test]
fn a_deploy_goes_on_when_the_ssh_connection_drops_and_the_cli_reattaches() {
    use std::io::BufRead;
    let Some((host, env, src, port)) = deploy_setup("remote drop", "20s") else {
        return;
    };
    let out = env.cli(&["deploy", "shop"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let first = remote_current(&host).unwrap();

    // A slow starter (its health checks do not count for 20 s): the health gate waits a few
    // seconds, and the connection drops then.
    src.write("flags", "--say slow --listen-after 4000");
    src.commit("slow");
    let mut child = env
        .command_with(&["deploy", "shop"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let collector = std::thread::spawn(move || {
        let mut all = String::new();
        for line in reader.lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let deadline = std::time::Instant::now() + DEADLINE * 2;
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("the deploy reaches the health gate on vps");
        if line.contains("▸ health gate on vps") {
            break;
        }
    }
    host.kill_connections();
    let status = child.wait().unwrap();
    let text = collector.join().unwrap();
    assert!(status.success(), "{text}");
    assert!(text.contains("the connection to vps broke"), "{text}");
    assert!(text.contains("re-attached"), "{text}");
    let second = remote_current(&host).unwrap();
    assert_ne!(first, second, "the deploy finished there by itself");
    env.wait_until("the new release answers", || {
        answer(port).contains("hello from slow").then_some(())
    });
    let records = env
        .block_on(env.client().via_host("vps").deploys(Some("shop")))
        .unwrap();
    assert_eq!(records[0].release.as_deref(), Some(second.as_str()));
    assert_eq!(records[0].result, homeport_types::DeployResult::Succeeded);
}

/// The plumbing people trip on: a tool the deploy needs that the host agent's PATH does not
/// find. The preflight there names it and what needs it before anything is shipped, and what
/// runs there is untouched.
#[test]
fn a_tool_missing_on_the_host_is_named_before_anything_is_shipped() {
    let Some((host, env, _src, _port)) = deploy_setup_with("remote preflight", |port| {
        deploy_config(port, "0s").replace(
            "artifacts = [\"out\"]\n",
            "artifacts = [\"out\"]\ninstall = [\"surely-not-installed-here --setup\"]\n",
        )
    }) else {
        return;
    };
    let out = env.cli(&["deploy", "shop"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("▸ preflight on vps"), "{text}");
    assert!(
        text.contains("has no `surely-not-installed-here` (for install)")
            && text.contains("homeport host add vps"),
        "{text}"
    );
    assert!(!text.contains("▸ ship to vps"), "nothing shipped:\n{text}");
    assert!(
        !host.data().join("apps/shop/incoming").exists(),
        "nothing arrived there"
    );
    assert_eq!(remote_current(&host), None, "production there untouched");
}
