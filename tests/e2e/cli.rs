//! The CLI as a user meets it: output, exit codes, config checking, placeholders.

use homeport_types::ServiceState;

use crate::util::*;

#[test]
fn config_check_reports_every_problem_and_exits_2() {
    let env = TestEnv::new(
        r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@"]
port = @P0@
restrat = "always"

[apps.a.env.beta.services.web]
command = ""
port = @P0@
depends_on = ["nope"]
"#,
    );
    let out = env.cli(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let file = env.config.display().to_string();
    for needle in [
        format!(
            "{file}:10:1: apps.a.env.prod.services.web.restrat: unknown key `restrat` (did you mean `restart`?)"
        ),
        format!(
            "port {} of a/prod/web is also used by a/beta/web",
            env.ports[0]
        ),
        "apps.a.env.beta.services.web.command: the command is empty".to_owned(),
        "unknown service `nope`".to_owned(),
        "5 problems in".to_owned(),
    ] {
        assert!(err.contains(&needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn config_check_finds_two_environments_sharing_a_database_through_a_symbolic_link() {
    let env = TestEnv::new(
        r#"
[apps.a.env.production]
databases = { main = "@HOME@/data/prod.db" }
[apps.a.env.dev]
databases = { main = "@HOME@/devdata/prod.db" }
"#,
    );
    std::fs::create_dir_all(env.dir.path().join("data")).expect("data");
    std::os::unix::fs::symlink(env.dir.path().join("data"), env.dir.path().join("devdata"))
        .expect("symlink");
    let out = env.cli(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("apps.a.env.dev.databases.main: database")
            && err.contains("is also written by a/production")
            && err.contains("environments must not share a database"),
        "{err}"
    );
}

#[test]
fn config_check_names_the_line_of_bad_bytes_and_of_a_dependency_cycle() {
    let env = TestEnv::new("[apps.a.env.prod.services.web]\ncommand = [\"@FIXTURE@\"]\n");
    // A comment saved in Latin-1 on a new last line: the bad byte is its sixth character.
    let mut bytes = std::fs::read(&env.config).expect("read");
    let line = bytes.iter().filter(|b| **b == b'\n').count() + 1;
    bytes.extend_from_slice(b"# caf\xe9 in Latin-1\n");
    std::fs::write(&env.config, bytes).expect("write");
    let out = env.cli(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let file = env.config.display().to_string();
    assert!(
        stderr(&out).contains(&format!("{file}:{line}:6: the file is not UTF-8 here")),
        "{}",
        stderr(&out)
    );

    env.write_config(
        r#"
[apps.a.env.prod.services.web]
command = ["@FIXTURE@"]
depends_on = ["worker"]

[apps.a.env.prod.services.worker]
command = ["@FIXTURE@"]
depends_on = ["web"]
"#,
    );
    let out = env.cli(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    // The `depends_on` entry that closes the cycle's first step.
    let line = read(&env.config)
        .lines()
        .position(|l| l == r#"depends_on = ["worker"]"#)
        .expect("the line")
        + 1;
    assert!(
        stderr(&out).contains(&format!(
            "{file}:{line}:15: apps.a.env.prod.services.web.depends_on: dependency cycle: web → worker → web"
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_check_accepts_a_good_file() {
    let env = TestEnv::new("[apps.a.env.prod.services.web]\ncommand = [\"@FIXTURE@\"]\n");
    let out = env.cli(&["config", "check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("ok (1 environments, 1 services)"));
}

#[test]
fn status_prints_a_table_and_json() {
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
    let table = stdout(&env.cli(&["status"]));
    // First the agent's verdict, then the table.
    assert_eq!(
        table.lines().next(),
        Some("Healthy: all healthy"),
        "{table}"
    );
    let table = table.lines().skip(1).collect::<Vec<_>>().join("\n");
    let header = table.lines().next().expect("header");
    for col in [
        "SERVICE", "STATE", "HEALTH", "PID", "UPTIME", "RESTARTS", "CPU", "MEM", "PORT",
    ] {
        assert!(header.contains(col), "{table}");
    }
    let row = table.lines().nth(1).expect("row");
    assert!(
        row.starts_with("a/prod/web")
            && row.contains("healthy")
            && row.contains(&env.ports[0].to_string()),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&env.cli(&["status", "--json"]))).expect("json");
    assert_eq!(json["services"][0]["state"], "healthy");
    assert_eq!(json["overall"]["level"], "healthy");
    assert!(
        json["services"][0]["rss_bytes"]
            .as_u64()
            .is_some_and(|r| r > 0),
        "{json}"
    );

    // A reader that stops early (`homeport status | head -1`) is not an error, nor a panic.
    // The shim writes the log apart from the health probe that made it healthy: wait for it.
    let log = env.log_file("a", "prod", "web");
    env.wait_until("the fixture's first lines are in its log", || {
        read(&log).contains("listening on").then_some(())
    });
    assert!(
        !stdout(&env.cli(&["logs", "a/prod/web", "-n", "10"])).is_empty(),
        "the fixture logs at start, so `logs` below has something to write"
    );
    for args in [
        &["status"][..],
        &["status", "--json"][..],
        &["logs", "a/prod/web", "-n", "10"][..],
    ] {
        let mut child = env
            .command()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run homeport");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait for homeport");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{args:?} into a closed pipe: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn exit_codes_say_what_went_wrong() {
    let mut env = TestEnv::new("[apps.a.env.prod.services.web]\ncommand = [\"@FIXTURE@\"]\n");
    let out = env.cli(&["status"]);
    assert_eq!(out.status.code(), Some(3), "no agent yet");
    assert!(stderr(&out).contains("not running"), "{}", stderr(&out));
    env.start_agent();
    let out = env.cli(&["stop", "zzz"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(
        stderr(&out).trim(),
        "homeport: no service matches zzz (see `homeport status`)"
    );
    assert_eq!(
        env.cli(&["start", "a/"]).status.code(),
        Some(2),
        "a malformed target is a usage error"
    );
    let out = env.cli(&["start", "a"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "a/prod/web: running");
    let out = env.cli(&["restart", "a/prod"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = env.cli(&["stop", "a/prod/web"]);
    assert_eq!(stdout(&out).trim(), "a/prod/web: stopped");
}

#[test]
fn placeholders_env_vars_and_env_files_reach_the_service() {
    let env_file = "MODE=from-file\nexport QUOTED=\"two words\"\n";
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod]
autostart = true
databases = { main = "@HOME@/main.db" }
env = { SHARED = "{app}-{env}" }
[apps.a.env.prod.services.web]
command = ["@FIXTURE@", "--port", "{port}", "--db", "{db.main}", "--print-env", "SHARED", "--print-env", "MODE", "--print-env", "QUOTED", "--print-env", "PORT", "--print-env", "DB"]
env = { DB = "{db.main}" }
env_file = "@HOME@/web.env"
port = @P0@
"#,
    );
    std::fs::write(env.dir.path().join("web.env"), env_file).expect("env file");
    env.start_agent();
    let log = env.log_file("a", "prod", "web");
    env.wait_until("the service is listening", || {
        read(&log).contains("listening on").then_some(())
    });
    let text = read(&log);
    let db = env.dir.path().join("main.db").display().to_string();
    for needle in [
        "env SHARED=a-prod".to_owned(),
        "env MODE=from-file".to_owned(),
        "env QUOTED=two words".to_owned(),
        format!("env PORT={}", env.ports[0]),
        format!("env DB={db}"),
        format!("database {db} ready"),
    ] {
        assert!(text.contains(&needle), "missing {needle:?} in\n{text}");
    }
    let rows: i64 = rusqlite::Connection::open(&db)
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM hits", [], |r| r.get(0)))
        .expect("the fixture wrote its database");
    assert!(rows >= 1);
}

#[test]
fn service_install_writes_a_systemd_unit_that_systemd_accepts() {
    let env = TestEnv::new("[apps.a.env.prod.services.web]\ncommand = [\"@FIXTURE@\"]\n");
    // From an installed copy: a binary in the build folder is refused (tests/e2e/install.rs).
    let bin = env.dir.path().join("bin/homeport");
    std::fs::create_dir_all(bin.parent().expect("bin")).expect("bin dir");
    std::fs::copy(homeport_bin(), &bin).expect("copy");
    let installed = |args: &[&str]| {
        let c = env.command();
        // Another test's child, forked while the copy was open for writing, holds it until that
        // child execs: the kernel says "text file busy" until then.
        let start = std::time::Instant::now();
        loop {
            match std::process::Command::new(&bin)
                .args(c.get_args())
                .args(args)
                .envs(c.get_envs().filter_map(|(k, v)| Some((k, v?))))
                .output()
            {
                Err(e)
                    if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                        && start.elapsed() < DEADLINE =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.expect("run the installed homeport"),
            }
        }
    };
    let out = installed(&["service", "install"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("loginctl enable-linger"),
        "{}",
        stdout(&out)
    );
    let unit = env.dir.path().join(".config/systemd/user/homeport.service");
    let text = read(&unit);
    assert!(
        text.contains(&format!("--config \"{}\" agent", env.config.display())),
        "{text}"
    );
    assert!(env.cli(&["service", "status"]).status.success());
    // systemd's own checker, where it is installed; a broken unit proves it can say no.
    if std::path::Path::new("/usr/bin/systemd-analyze").exists() {
        let verify = |p: &std::path::Path| {
            std::process::Command::new("systemd-analyze")
                .arg("verify")
                .arg(p)
                .output()
                .expect("systemd-analyze")
        };
        let ok = verify(&unit);
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let bad = env.dir.path().join("bad.service");
        std::fs::write(&bad, "[Service]\nExecStart=relative/path\n").expect("bad unit");
        assert!(!verify(&bad).status.success());
    }
    let out = installed(&["service", "uninstall"]);
    assert!(out.status.success());
    assert!(!unit.exists());
    assert_eq!(env.cli(&["service", "status"]).status.code(), Some(1));
}

#[test]
fn autostart_writes_a_login_entry_that_desktop_file_validate_accepts() {
    let env = TestEnv::new("[apps.a.env.prod.services.web]\ncommand = [\"@FIXTURE@\"]\n");
    let tray = env.dir.path().join("bin/homeport-desktop");
    std::fs::create_dir_all(tray.parent().expect("bin")).expect("bin dir");
    std::fs::write(&tray, "").expect("tray stand-in");
    let cli = |desktop: &std::path::Path, args: &[&str]| {
        env.command()
            .env("HOMEPORT_DESKTOP", desktop)
            .args(args)
            .output()
            .expect("run homeport")
    };
    let entry = env.dir.path().join(".config/autostart/Homeport.desktop");

    let out = cli(&tray, &["autostart", "status"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("disabled"), "{}", stderr(&out));

    let missing = env.dir.path().join("nowhere/homeport-desktop");
    let out = cli(&missing, &["autostart", "enable"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("homeport service install"),
        "no tray: the error points to the headless way: {}",
        stderr(&out)
    );
    assert!(!entry.exists());

    let out = cli(&tray, &["autostart", "enable"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = read(&entry);
    let exec = format!(
        "Exec={} --minimized --config {}",
        tray.display(),
        env.config.display()
    );
    assert!(text.lines().any(|l| l == exec), "{text}");
    let out = cli(&tray, &["autostart", "status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&exec[5..]), "{}", stdout(&out));

    // The desktop's own checker: it accepts the entry, and can say no.
    let validate = |p: &std::path::Path| {
        std::process::Command::new("desktop-file-validate")
            .arg(p)
            .output()
            .expect("desktop-file-validate (Debian's desktop-file-utils; scripts/setup.sh --browser installs it)")
    };
    let v = validate(&entry);
    assert!(
        v.status.success() && v.stdout.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    let bad = env.dir.path().join("bad.desktop");
    std::fs::write(&bad, "[Desktop Entry]\nName=x\n").expect("bad entry");
    assert!(!validate(&bad).status.success());

    let out = cli(&tray, &["autostart", "disable"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!entry.exists());
    assert_eq!(cli(&tray, &["autostart", "status"]).status.code(), Some(1));
}

/// The tray, the dashboard and the CLI show one verdict: the CLI's summary line and the API's
/// (which the dashboard shows; see the browser tests) are the agent's, and the tray computes it
/// with the same function from the same snapshot.
#[test]
fn the_cli_the_api_and_the_tray_give_one_verdict() {
    let mut env = TestEnv::new(
        r#"
[apps.shop.env.production.services.web]
command = ["@FIXTURE@", "--port", "{port}"]
port = @P0@
autostart = true
health = { http = "/health", interval = "100ms" }

[apps.shop.env.production.services.worker]
command = ["@FIXTURE@"]
autostart = true

[apps.shop.env.beta.services.web]
command = ["@FIXTURE@", "--port", "{port}", "--fail-health"]
port = @P1@
autostart = true
health = { http = "/health", interval = "100ms", retries = 1, start_period = "0s" }
restart = "never"
"#,
    );
    env.start_agent();
    env.wait_service("shop/production/web", "is healthy", |s| {
        s.state == ServiceState::Healthy
    });
    env.wait_service("shop/beta/web", "is unhealthy", |s| {
        s.state == ServiceState::Unhealthy
    });
    // Stopped by hand: production is no longer healthy.
    assert!(
        env.cli(&["stop", "shop/production/worker"])
            .status
            .success()
    );
    let want = "production: worker stopped by you · beta: web unhealthy";

    let report = env.block_on(env.client().status_report()).expect("status");
    assert_eq!(report.overall.reason, want);
    assert_eq!(report.overall.level, homeport_types::Level::Degraded);
    let line = stdout(&env.cli(&["status"]));
    assert_eq!(
        line.lines().next(),
        Some(format!("Degraded: {want}").as_str())
    );
    let tray = homeport_tray_model::TrayModel::build(
        &report.snapshot,
        &homeport_tray_model::Extras::default(),
        homeport_tray_model::TrayPrefs::default(),
    );
    assert_eq!(tray.icon, homeport_tray_model::TrayIcon::Degraded);
    assert!(tray.tooltip.starts_with(want), "{}", tray.tooltip);
}

#[test]
fn a_service_that_runs_from_its_release_says_none_is_deployed_yet() {
    let mut env = TestEnv::new(
        r#"
[apps.shop.env.production.services.server]
command = "{release}/server --port {port}"
port = @P0@

[apps.shop.env.beta.services.server]
command = ["@FIXTURE@"]
cwd = "{release}"
"#,
    );
    env.start_agent();
    for (target, hint) in [
        ("shop/production/server", "run `homeport deploy shop`"),
        ("shop/beta/server", "run `homeport deploy shop --env beta`"),
    ] {
        let out = env.cli(&["start", target]);
        assert_ne!(out.status.code(), Some(0));
        let err = stderr(&out);
        assert!(
            err.contains("no release yet") && err.contains(hint) && !err.contains("No such file"),
            "{err}"
        );
    }
    // Nothing was made in place of the release.
    assert!(
        !env.data.join("apps/shop/beta/current").exists(),
        "the release folder is not created by a start"
    );
}
