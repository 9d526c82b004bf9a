//! Deploys, rollbacks, promotes and their faults: a real git source, real builds, the real agent.

use std::path::{Path, PathBuf};
use std::process::Command;

use homeport_types::ServiceState;

use crate::util::*;

/// A git checkout whose build copies the fixture into `out/` with a wrapper that reads its
/// flags from `flags`, and a migration from `migrate.sql`.
pub(crate) struct Source {
    dir: PathBuf,
}

impl Source {
    pub(crate) fn new(root: &Path) -> Self {
        let dir = root.join("src");
        std::fs::create_dir_all(&dir).expect("src");
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
                "set -e\n[ -f fail-build ] && {{ echo 'the build broke' >&2; exit 3; }}\n[ -f slow-build ] && sleep 3\nmkdir -p out\ncp '{}' out/app\ncp run.sh flags migrate.sql out/\nchmod +x out/run.sh\necho built\n",
                fixture_bin().display()
            ),
        );
        s.write("flags", "");
        s.write(
            "migrate.sql",
            "CREATE TABLE IF NOT EXISTS hits (id INTEGER PRIMARY KEY, at TEXT NOT NULL);\n",
        );
        s.commit("first");
        s
    }

    fn git(&self, args: &[&str]) {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub(crate) fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join(name), text).expect("write");
    }

    pub(crate) fn commit(&self, msg: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
    }
}

fn config(extra_app: &str) -> String {
    format!(
        r#"
[apps.shop]
source = "@HOME@/src"
build = ["sh build.sh"]
artifacts = ["out"]
migrate = "{{release}}/out/app --db {{db.main}} --sql-file {{release}}/out/migrate.sql"
{extra_app}

[apps.shop.env.production]
databases = {{ main = "@HOME@/production.db" }}
health_deadline = "10s"
health_stable = "1s"

[apps.shop.env.production.services.web]
command = ["{{release}}/out/run.sh", "--port", "{{port}}", "--db", "{{db.main}}"]
port = @P0@
health = {{ http = "/health", interval = "100ms", retries = 20, start_period = "0s" }}
restart = {{ policy = "on-failure", max_failures = 2 }}

[apps.shop.env.beta]
databases = {{ main = "@HOME@/beta.db" }}
health_stable = "1s"

[apps.shop.env.beta.services.web]
command = ["{{release}}/out/run.sh", "--port", "{{port}}", "--db", "{{db.main}}"]
port = @P1@
health = {{ http = "/health", interval = "100ms" }}
"#
    )
}

fn setup(extra_app: &str) -> (TestEnv, Source) {
    let env = TestEnv::new(&config(extra_app));
    let src = Source::new(env.dir.path());
    (env, src)
}

fn current(env: &TestEnv, e: &str) -> Option<String> {
    std::fs::read_link(env.data.join("apps/shop").join(e).join("current"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn deploy(env: &TestEnv, args: &[&str]) -> std::process::Output {
    env.cli(args)
}

#[test]
fn a_deploy_builds_stages_switches_and_gates_on_health() {
    let (mut env, _src) = setup("");
    env.start_agent();
    let out = deploy(&env, &["deploy", "shop"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    // A first deploy has no database yet to back up.
    for step in [
        "resolve source",
        "checkout",
        "build",
        "stage",
        "migrate",
        "switch",
        "restart",
        "health gate",
    ] {
        assert!(
            text.contains(&format!("▸ {step}")),
            "missing {step}:\n{text}"
        );
    }
    assert!(text.contains("built"), "build output is streamed:\n{text}");
    let release = current(&env, "production").expect("current");
    assert!(text.contains(&format!("{release} is live")), "{text}");
    let manifest: serde_json::Value = serde_json::from_str(&read(
        &env.data
            .join("apps/shop/releases")
            .join(&release)
            .join("manifest.json"),
    ))
    .expect("manifest");
    assert_eq!(manifest["artifacts"][0]["path"], "out");
    assert_eq!(
        manifest["artifacts"][0]["sha256"].as_str().map(str::len),
        Some(64)
    );
    let svc = env.wait_service("shop/production/web", "is healthy", |s| {
        s.state == ServiceState::Healthy
    });
    assert!(svc.pid.is_some());
    let (code, _) = raw_http(
        env.ports[0],
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 200);
    let releases = stdout(&env.cli(&["releases", "shop"]));
    assert!(
        releases.contains(&release) && releases.contains("← production"),
        "{releases}"
    );
    // The next deploy backs the database up before migrating it.
    let out = deploy(&env, &["deploy", "shop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("▸ backup"), "{}", stdout(&out));
    let backups = env
        .block_on(env.client().backups(&"shop/production".parse().expect("t")))
        .expect("backups");
    assert_eq!(
        backups[0].backups[0].trigger,
        homeport_types::BackupTrigger::PreDeploy
    );

    // Each deploy is one start and one end on the event stream's history, its steps between.
    let events = env.wait_until("both deploys are recorded", || {
        let e = env
            .block_on(env.client().event_history(
                &"shop/production".parse().expect("t"),
                &["deploy_started", "deploy_finished"],
                100,
            ))
            .expect("events");
        (e.len() >= 4).then_some(e)
    });
    let kinds: Vec<&str> = events.iter().rev().map(|e| e.kind.name()).collect();
    assert_eq!(
        kinds,
        [
            "deploy_started",
            "deploy_finished",
            "deploy_started",
            "deploy_finished"
        ]
    );
    assert!(
        matches!(&events[0].kind, homeport_types::EventKind::DeployFinished {
            result: homeport_types::DeployResult::Succeeded, release: Some(r), .. } if r == &current(&env, "production").expect("current")),
        "{events:?}"
    );
    let steps = env
        .block_on(
            env.client()
                .event_history(&"shop".parse().expect("t"), &["deploy_step"], 100),
        )
        .expect("events");
    assert!(
        steps.iter().any(
            |e| matches!(&e.kind, homeport_types::EventKind::DeployStep {
            step, status: homeport_types::StepStatus::Ok, .. } if step == "health gate")
        ),
        "{steps:?}"
    );
}

#[test]
fn a_release_that_fails_its_health_gate_is_rolled_back_with_diagnostics() {
    let (mut env, src) = setup("");
    env.start_agent();
    assert!(deploy(&env, &["deploy", "shop"]).status.success());
    let good = current(&env, "production").expect("good release");
    src.write("flags", "--fail-health");
    src.commit("a bad release");
    let out = deploy(&env, &["deploy", "shop"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("switched back to") && err.contains("homeport deploys shop "),
        "{err}"
    );
    assert_eq!(
        current(&env, "production"),
        Some(good.clone()),
        "the previous release is current again"
    );
    env.wait_service("shop/production/web", "serves the old release", |s| {
        s.state == ServiceState::Healthy
    });
    let deploys: Vec<homeport_types::DeployRecord> = serde_json::from_str(&{
        let port = agent_port(&env);
        let token = read(&env.data.join("token"));
        raw_get_json(
            port,
            "/api/v1/deploys?app=shop&env=production",
            token.trim(),
        )
    })
    .expect("deploys");
    let failed = &deploys[0];
    assert_eq!(failed.result, homeport_types::DeployResult::Failed);
    let diag = failed.diagnostics.as_deref().unwrap_or_default();
    assert!(diag.contains("== shop/production/web"), "{diag}");
}

#[test]
fn a_failed_migration_restores_the_database() {
    let (mut env, src) = setup("");
    env.start_agent();
    assert!(deploy(&env, &["deploy", "shop"]).status.success());
    let good = current(&env, "production").expect("good");
    let before = env.wait_service("shop/production/web", "runs", |s| {
        s.state == ServiceState::Healthy
    });
    src.write(
        "migrate.sql",
        "CREATE TABLE half_done(x); INSERT INTO no_such_table VALUES (1);\n",
    );
    src.commit("a broken migration");
    let out = deploy(&env, &["deploy", "shop"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(
            "the previous release kept running; the database from before the deploy was put back in place, without stopping it"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        service(&env.status(), "shop/production/web").pid,
        before.pid,
        "the old release never stopped"
    );
    let db = env.dir.path().join("production.db");
    let half: i64 = rusqlite::Connection::open(&db)
        .and_then(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'half_done'",
                [],
                |r| r.get(0),
            )
        })
        .expect("query");
    assert_eq!(half, 0, "the half-applied migration is gone");
    assert_eq!(current(&env, "production"), Some(good));
    env.wait_service("shop/production/web", "runs", |s| {
        s.state == ServiceState::Healthy
    });
}

#[test]
fn a_failed_build_changes_nothing() {
    let (mut env, src) = setup("");
    env.start_agent();
    assert!(deploy(&env, &["deploy", "shop"]).status.success());
    let good = current(&env, "production").expect("good");
    let releases_before = std::fs::read_dir(env.data.join("apps/shop/releases"))
        .expect("dir")
        .count();
    src.write("fail-build", "");
    src.commit("break the build");
    let out = deploy(&env, &["deploy", "shop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("the build broke"), "{}", stdout(&out));
    assert!(
        !stdout(&out).contains("▸ switch"),
        "it stopped before switching"
    );
    assert_eq!(current(&env, "production"), Some(good));
    assert_eq!(
        std::fs::read_dir(env.data.join("apps/shop/releases"))
            .expect("dir")
            .count(),
        releases_before
    );
}

#[test]
fn rollback_goes_to_the_release_before_and_promote_rolls_out_betas_release() {
    let (mut env, src) = setup("");
    env.start_agent();
    assert!(deploy(&env, &["deploy", "shop"]).status.success());
    let first = current(&env, "production").expect("first");
    // With one release there is nothing to roll back to: refused up front, no failed deploy in
    // the history, and the API offers none.
    let apps = |env: &TestEnv| env.block_on(env.client().apps()).expect("apps");
    let rollback_to = |env: &TestEnv| {
        apps(env)[0]
            .envs
            .iter()
            .find(|e| e.env == "production")
            .and_then(|e| e.rollback_to.clone())
    };
    assert_eq!(rollback_to(&env), None);
    let records = |env: &TestEnv| {
        env.block_on(env.client().deploys(Some("shop")))
            .expect("deploys")
            .len()
    };
    let before = records(&env);
    let out = deploy(&env, &["rollback", "shop"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "shop/production has no earlier release to roll back to: {first} is the only one it has run"
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(records(&env), before, "a refused rollback is not history");
    src.write("migrate.sql", "CREATE TABLE IF NOT EXISTS hits (id INTEGER PRIMARY KEY, at TEXT NOT NULL); CREATE TABLE IF NOT EXISTS v2(x);\n");
    src.commit("second");
    assert!(deploy(&env, &["deploy", "shop"]).status.success());
    let second = current(&env, "production").expect("second");
    assert_ne!(first, second);
    assert_eq!(rollback_to(&env), Some(first.clone()));
    let out = deploy(&env, &["rollback", "shop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(current(&env, "production"), Some(first.clone()));
    env.wait_service("shop/production/web", "runs the old release", |s| {
        s.state == ServiceState::Healthy
    });

    let out = deploy(&env, &["deploy", "shop", "--env", "beta"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let beta = current(&env, "beta").expect("beta");
    let out = deploy(
        &env,
        &["promote", "shop", "--from", "beta", "--to", "production"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("▸ build"),
        "promote does not rebuild:\n{}",
        stdout(&out)
    );
    assert_eq!(current(&env, "production"), Some(beta));
}

#[test]
fn a_second_deploy_is_refused_and_a_killed_deploy_is_marked_interrupted() {
    let (mut env, src) = setup("");
    src.write("slow-build", "");
    src.commit("slow");
    env.start_agent();
    let mut first = Command::new(homeport_bin())
        .args([
            "--config",
            &env.config.display().to_string(),
            "deploy",
            "shop",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("deploy");
    env.wait_until("the build is running", || {
        std::fs::read_dir(env.data.join("apps/shop/build"))
            .ok()?
            .next()
            .map(|_| ())
    });
    let out = deploy(&env, &["deploy", "shop", "--env", "beta"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("a deploy to production of shop started at")
            && stderr(&out).contains("is running"),
        "{}",
        stderr(&out)
    );

    env.kill_agent_hard();
    let _ = first.wait();
    env.start_agent();
    let port = agent_port(&env);
    let token = read(&env.data.join("token"));
    let deploys: Vec<homeport_types::DeployRecord> = serde_json::from_str(&raw_get_json(
        port,
        "/api/v1/deploys?app=shop",
        token.trim(),
    ))
    .expect("deploys");
    assert_eq!(deploys[0].result, homeport_types::DeployResult::Interrupted);
    assert_eq!(current(&env, "production"), None, "nothing half-switched");
    // And the next deploy works.
    std::fs::remove_file(src.dir.join("slow-build")).expect("rm");
    src.commit("fast again");
    assert!(deploy(&env, &["deploy", "shop"]).status.success());
}

#[test]
fn pruning_never_takes_the_live_release_even_after_many_failures() {
    let (mut env, src) = setup("keep_releases = 2");
    env.start_agent();
    assert!(deploy(&env, &["deploy", "shop"]).status.success());
    let good = current(&env, "production").expect("good");
    src.write("flags", "--fail-health");
    for i in 0..5 {
        src.commit(&format!("bad {i}"));
        assert_eq!(deploy(&env, &["deploy", "shop"]).status.code(), Some(1));
    }
    assert_eq!(current(&env, "production"), Some(good.clone()));
    assert!(
        env.data.join("apps/shop/releases").join(&good).exists(),
        "the last good release survives pruning"
    );
    let count = std::fs::read_dir(env.data.join("apps/shop/releases"))
        .expect("dir")
        .count();
    assert!(count <= 3, "old failed releases were pruned: {count}");
}

fn agent_port(env: &TestEnv) -> u16 {
    let ep: homeport_types::AgentEndpoint =
        serde_json::from_str(&read(&env.data.join("agent.json"))).expect("agent.json");
    ep.addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

fn raw_get_json(port: u16, path: &str, token: &str) -> String {
    let (code, body) = raw_http(
        port,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(code, 200, "{body}");
    body
}

#[test]
fn update_fast_forwards_the_source_and_refuses_a_diverged_or_dirty_one() {
    let (mut env, src) = setup("");
    // An upstream the checkout tracks.
    let upstream = env.dir.path().join("upstream.git");
    let ok = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&src.dir)
        .arg(&upstream)
        .status()
        .expect("clone");
    assert!(ok.success());
    src.git(&["remote", "add", "origin", &upstream.display().to_string()]);
    src.git(&["fetch", "-q", "origin"]);
    src.git(&["branch", "-q", "--set-upstream-to", "origin/main"]);
    // Two new commits upstream, made in another clone.
    let other = env.dir.path().join("other");
    assert!(
        Command::new("git")
            .args(["clone", "-q"])
            .arg(&upstream)
            .arg(&other)
            .status()
            .expect("clone")
            .success()
    );
    let in_other = |args: &[&str]| {
        let st = Command::new("git")
            .arg("-C")
            .arg(&other)
            .args(args)
            .status()
            .expect("git");
        assert!(st.success(), "{args:?}");
    };
    in_other(&[
        "-c",
        "user.email=t@x.invalid",
        "-c",
        "user.name=t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "up 1",
    ]);
    in_other(&[
        "-c",
        "user.email=t@x.invalid",
        "-c",
        "user.name=t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "up 2",
    ]);
    in_other(&["push", "-q", "origin", "main"]);
    env.start_agent();

    let out = env.cli(&["update", "shop", "--check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "Update available (2 commits)");
    let out = env.cli(&["update", "shop"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let head = String::from_utf8(
        Command::new("git")
            .arg("-C")
            .arg(&src.dir)
            .args(["rev-parse", "--short=7", "HEAD"])
            .output()
            .expect("git")
            .stdout,
    )
    .expect("utf8");
    assert!(
        current(&env, "production").is_some_and(|r| r.ends_with(head.trim())),
        "deployed the new head"
    );
    assert_eq!(
        stdout(&env.cli(&["update", "shop", "--check"])).trim(),
        "shop is up to date with its upstream"
    );

    // A local change makes the checkout dirty: refused, nothing deployed.
    src.write("flags", "--fail-health");
    let before = current(&env, "production");
    let out = env.cli(&["update", "shop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("uncommitted changes"),
        "{}",
        stderr(&out)
    );
    assert_eq!(current(&env, "production"), before);
    // Diverged: a local commit and a new upstream one.
    src.commit("local");
    in_other(&[
        "-c",
        "user.email=t@x.invalid",
        "-c",
        "user.name=t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "up 3",
    ]);
    in_other(&["push", "-q", "origin", "main"]);
    let out = env.cli(&["update", "shop"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has diverged from its upstream"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_full_disk_while_staging_leaves_no_half_release() {
    let (mut env, src) = setup("");
    // A 4 MiB soft file-size limit on the agent: the build lifts it for itself and writes a
    // bigger artifact; staging, done by the agent, cannot copy it.
    src.write("build.sh", &format!(
        "set -e\nulimit -S -f unlimited\nmkdir -p out\ncp '{}' out/app\ncp run.sh flags migrate.sql out/\nchmod +x out/run.sh\n",
        fixture_bin().display()
    ));
    src.commit("big artifact");
    env.start_agent_with_file_limit_kib(4096);
    let big = std::fs::metadata(fixture_bin()).expect("fixture").len();
    assert!(
        big > 4 * 1024 * 1024,
        "the fixture binary ({big} bytes) is bigger than the limit"
    );
    let out = env.cli(&["deploy", "shop"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("stage: failed"), "{}", stdout(&out));
    let releases: Vec<_> = std::fs::read_dir(env.data.join("apps/shop/releases"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(
        releases.is_empty(),
        "no half release: {:?}",
        releases.iter().map(|e| e.path()).collect::<Vec<_>>()
    );
    assert_eq!(current(&env, "production"), None);
}

#[test]
fn blue_green_deploys_and_rollbacks_refuse_no_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let env = TestEnv::new(
        r#"
[apps.shop]
source = "@HOME@/src"
build = ["sh build.sh"]
artifacts = ["out"]
keep_releases = 4

[apps.shop.env.production]
autostart = true
health_deadline = "10s"
health_stable = "1s"

[apps.shop.env.production.services.web]
command = ["{release}/out/run.sh", "--port", "{port}"]
strategy = "blue-green"
port = @P0@
ports = { blue = @P1@, green = @P2@ }
health = { http = "/health", interval = "100ms" }
"#,
    );
    let src = Source::new(env.dir.path());
    let mut env = env;
    env.start_agent();
    assert!(env.cli(&["deploy", "shop"]).status.success());
    let public = env.ports[0];
    let (code, _) = raw_http(
        public,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 200, "the proxy serves the first release");

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let client = {
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let good = std::panic::catch_unwind(|| {
                    raw_http(
                        public,
                        "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    )
                    .0 == 200
                })
                .unwrap_or(false);
                if good {
                    ok.fetch_add(1, Ordering::Relaxed)
                } else {
                    failed.fetch_add(1, Ordering::Relaxed)
                };
            }
        })
    };
    for i in 0..10 {
        src.commit(&format!("release {i}"));
        let out = env.cli(&["deploy", "shop"]);
        assert!(
            out.status.success(),
            "deploy {i}: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).contains("switch web (blue-green)"),
            "{}",
            stdout(&out)
        );
    }
    for _ in 0..2 {
        let out = env.cli(&["rollback", "shop"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    stop.store(true, Ordering::Relaxed);
    client.join().expect("client");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 100, "the client kept asking: {ok}");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    // One instance runs, the other is idle.
    let status = env.status();
    let states: Vec<_> = status
        .services
        .iter()
        .map(|s| (s.key.service.clone(), s.state))
        .collect();
    assert_eq!(
        states.iter().filter(|(_, s)| s.is_ready()).count(),
        1,
        "{states:?}"
    );
    // Started by hand, only the live instance runs; status shows the public port and which
    // instance serves it.
    assert!(env.cli(&["stop", "shop/production"]).status.success());
    let out = env.cli(&["start", "shop/production"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = env.status();
    let running: Vec<_> = status
        .services
        .iter()
        .filter(|s| s.state != ServiceState::Stopped)
        .map(|s| s.key.service.clone())
        .collect();
    assert_eq!(running.len(), 1, "{running:?}");
    let table = stdout(&env.cli(&["status"]));
    assert!(
        table.contains(&format!("{public} live")) && table.contains(&format!("{public} idle")),
        "{table}"
    );
    let live: Vec<_> = status
        .services
        .iter()
        .filter(|s| s.instance.as_ref().is_some_and(|i| i.live))
        .map(|s| s.key.service.clone())
        .collect();
    assert_eq!(live, running, "the live instance is the one running");
}

#[test]
fn a_migrated_release_that_fails_its_health_gate_gets_the_old_schema_and_release_back() {
    let (mut env, src) = setup("");
    env.start_agent();
    assert!(deploy(&env, &["deploy", "shop"]).status.success());
    let good = current(&env, "production").expect("good");
    src.write("migrate.sql", "CREATE TABLE IF NOT EXISTS hits (id INTEGER PRIMARY KEY, at TEXT NOT NULL); CREATE TABLE v2_schema(x);\n");
    src.write("flags", "--fail-health");
    src.commit("a migration and a release that cannot serve");
    let out = deploy(&env, &["deploy", "shop"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(
            "put the database from before the deploy back (the previous release needs its schema)"
        ),
        "{}",
        stderr(&out)
    );
    let v2: i64 = rusqlite::Connection::open(env.dir.path().join("production.db"))
        .and_then(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'v2_schema'",
                [],
                |r| r.get(0),
            )
        })
        .expect("query");
    assert_eq!(v2, 0, "the old schema is back");
    assert_eq!(current(&env, "production"), Some(good));
    env.wait_service("shop/production/web", "serves the old release again", |s| {
        s.state == ServiceState::Healthy
    });
}

// Which binary a process runs is read from /proc.
#[cfg(target_os = "linux")]
#[test]
fn after_a_deploy_killed_past_its_switch_the_release_current_names_is_what_runs() {
    // A start period long enough for a release that takes 3 s to listen.
    let mut env =
        TestEnv::new(&config("").replace(r#"start_period = "0s""#, r#"start_period = "20s""#));
    let src = Source::new(env.dir.path());
    env.start_agent();
    assert!(deploy(&env, &["deploy", "shop"]).status.success());
    let old = current(&env, "production").expect("old");
    // The new release takes a while to listen, so the deploy sits in its health gate.
    src.write("flags", "--listen-after 3000");
    src.commit("slow to start");
    let mut running = Command::new(homeport_bin())
        .args([
            "--config",
            &env.config.display().to_string(),
            "deploy",
            "shop",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("deploy");
    let new = env.wait_until("the deploy has switched", || {
        current(&env, "production").filter(|c| *c != old)
    });
    env.kill_agent_hard();
    let _ = running.wait();
    env.start_agent();
    let svc = env.wait_service("shop/production/web", "is healthy", |s| {
        s.state == ServiceState::Healthy
    });
    let exe = std::fs::read_link(format!("/proc/{}/exe", svc.pid.expect("pid"))).expect("exe");
    assert!(
        exe.to_string_lossy().contains(&new),
        "runs {} but current is {new}",
        exe.display()
    );
    let port = agent_port(&env);
    let token = read(&env.data.join("token"));
    let deploys: Vec<homeport_types::DeployRecord> = serde_json::from_str(&raw_get_json(
        port,
        "/api/v1/deploys?app=shop",
        token.trim(),
    ))
    .expect("deploys");
    assert_eq!(deploys[0].result, homeport_types::DeployResult::Interrupted);
}

#[test]
fn each_release_records_the_apps_version_shown_by_status_releases_and_the_api() {
    let (mut env, src) = setup("");
    env.start_agent();
    // No tag yet: the version is the short commit.
    assert!(
        deploy(&env, &["deploy", "shop", "--env", "beta"])
            .status
            .success()
    );
    let first = current(&env, "beta").expect("beta release");
    let short = first.rsplit('-').next().expect("short commit").to_owned();
    src.git(&["tag", "v1.4.2"]);
    assert!(deploy(&env, &["deploy", "shop"]).status.success());
    src.commit("next");
    src.git(&["tag", "-a", "v1.5.0-rc1", "-m", "rc"]);
    src.commit("after the rc");
    src.commit("and another");
    src.commit("and a third");
    assert!(
        deploy(&env, &["deploy", "shop", "--env", "beta"])
            .status
            .success()
    );

    let apps = env.block_on(env.client().apps()).expect("apps");
    let versions: Vec<(String, Option<String>)> = apps[0]
        .envs
        .iter()
        .map(|e| (e.env.clone(), e.version.clone()))
        .collect();
    assert!(
        versions.contains(&("production".into(), Some("1.4.2".into())))
            && versions.contains(&("beta".into(), Some("1.5.0-rc1+3".into()))),
        "{versions:?}"
    );

    let status = stdout(&env.cli(&["status"]));
    assert!(
        status.contains("shop: production 1.4.2 · beta 1.5.0-rc1+3"),
        "{status}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&env.cli(&["status", "--json"]))).expect("status json");
    assert_eq!(json["apps"][0]["name"], "shop");
    assert!(
        json["apps"][0]["envs"]
            .as_array()
            .expect("envs")
            .iter()
            .any(|e| e["env"] == "beta" && e["version"] == "1.5.0-rc1+3"),
        "{json}"
    );

    let releases = stdout(&env.cli(&["releases", "shop"]));
    let line = |id: &str| {
        releases
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no {id} in {releases}"))
            .to_owned()
    };
    assert!(line(&first).contains(&format!("  {short}  ")), "{releases}");
    let beta = current(&env, "beta").expect("beta");
    assert!(
        line(&beta).contains("  1.5.0-rc1+3  ") && line(&beta).contains("← beta"),
        "{releases}"
    );
    let body = raw_get_json(
        agent_port(&env),
        "/api/v1/releases?app=shop",
        read(&env.data.join("token")).trim(),
    );
    let api: Vec<homeport_types::ReleaseInfo> = serde_json::from_str(&body).expect("releases");
    let versions: Vec<&str> = api.iter().map(|r| r.version.as_str()).collect();
    assert_eq!(versions, ["1.5.0-rc1+3", "1.4.2", short.as_str()]);
}

// Which binary a process runs is read from /proc.
#[cfg(target_os = "linux")]
#[test]
fn a_deploy_killed_while_its_new_release_starts_leaves_one_copy_and_a_free_port_to_stop() {
    let mut env = TestEnv::new(&config(""));
    let src = Source::new(env.dir.path());
    // Log holders that, once `armed` exists, are slow to start (a loaded machine): each waits
    // for this test's word before it becomes the real one.
    let bin = env.dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    std::fs::copy(homeport_bin(), bin.join("homeport")).expect("copy homeport");
    let armed = env.dir.path().join("armed");
    let gate = env.dir.path().join("gate");
    let script = format!(
        "#!/bin/sh\n[ -e '{armed}' ] || exec '{real}' \"$@\"\nexec '{fixture}' --gate '{gate}' '{real}' \"$@\"\n",
        armed = armed.display(),
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
    assert!(deploy(&env, &["deploy", "shop"]).status.success());
    let old = current(&env, "production").expect("old");

    // The next deploy stops the old release, switches, and starts the new one: its log holder
    // exists and has been told to start it, but has not begun to run. Then the agent dies.
    src.commit("second");
    std::fs::write(&armed, "").expect("arm the gate");
    let mut running = env
        .command_with(&["deploy", "shop"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("deploy");
    let waiting = env.dir.path().join("gate.waiting");
    env.wait_until(
        "the new release's log holder is spawned and told to start",
        || waiting.exists().then_some(()),
    );
    std::fs::remove_file(&armed).expect("disarm the gate");
    let new = current(&env, "production").expect("new");
    assert_ne!(new, old, "the deploy switched before it restarted");
    env.kill_agent_hard();
    let _ = running.wait();

    // The held-back log holder goes on once the next agent is looking for it (or, if that
    // agent does not look, once it is up).
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

    // One copy runs: the release `current` names, the one the agent knows, holding the port.
    // (The agent restarts the environment after an interrupted deploy, so the pid may change
    // once before it settles; a copy left running beside it never lets this hold.)
    let releases = env.data.join("apps/shop/releases");
    let copies = || -> Vec<(u32, PathBuf)> {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let exe = std::fs::read_link(e.path().join("exe")).ok()?;
                exe.starts_with(&releases).then_some((pid, exe))
            })
            .collect()
    };
    let exe = env.wait_until(
        "one copy of the app runs, healthy, known to the agent and holding the port",
        || {
            let s = env.status();
            let svc = service(&s, "shop/production/web");
            let pid = svc.pid.filter(|_| svc.state == ServiceState::Healthy)?;
            let running = copies();
            let holder = backend().port_holder(env.ports[0]).and_then(|h| h.pid);
            (running.len() == 1 && running[0].0 == pid && holder == Some(pid))
                .then(|| running[0].1.clone())
        },
    );
    assert!(
        exe.to_string_lossy().contains(&new),
        "runs {} but current is {new}",
        exe.display()
    );
    let port = agent_port(&env);
    let token = read(&env.data.join("token"));
    let deploys: Vec<homeport_types::DeployRecord> = serde_json::from_str(&raw_get_json(
        port,
        "/api/v1/deploys?app=shop",
        token.trim(),
    ))
    .expect("deploys");
    assert_eq!(deploys[0].result, homeport_types::DeployResult::Interrupted);

    // And a stop leaves nothing behind.
    let out = env.cli(&["stop", "shop/production/web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    env.wait_until("no copy of the app runs and the port is free", || {
        (copies().is_empty() && backend().port_holder(env.ports[0]).is_none()).then_some(())
    });
}

/// The id in a failed deploy's "homeport deploys APP ID" line.
fn deploy_id(err: &str) -> String {
    err.split("homeport deploys shop ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `homeport deploys shop ID` in:\n{err}"))
        .to_owned()
}

#[test]
fn a_release_that_crashes_seconds_after_it_is_ready_fails_the_gate_and_is_rolled_back() {
    // Production keeps the default stability window.
    let (mut env, src) = setup("");
    let text = read(&env.config).replacen("health_stable = \"1s\"\n", "", 1);
    std::fs::write(&env.config, text).expect("config");
    env.start_agent();
    let out = deploy(&env, &["deploy", "shop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("stayed ready for 10s"),
        "the default window is 10 s:\n{}",
        stdout(&out)
    );
    let good = current(&env, "production").expect("good");
    // Ready at once, then it exits 3 s after it started.
    src.write("flags", "--crash-after 3000 --exit-code 3");
    src.commit("a release that crashes after 3 s");
    let out = deploy(&env, &["deploy", "shop"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("web exited (exit code 3)") && err.contains("into the 10s stability window"),
        "{err}"
    );
    assert!(err.contains(&format!("switched back to {good}")), "{err}");
    assert!(
        !err.contains("restarting in") && !err.contains("backing_off"),
        "no word about a release already rolled back restarting:\n{err}"
    );
    assert_eq!(current(&env, "production"), Some(good.clone()));
    let svc = env.wait_service("shop/production/web", "serves the old release", |s| {
        s.state == ServiceState::Healthy
    });
    let exe = std::fs::read_link(format!("/proc/{}/exe", svc.pid.expect("pid")))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    assert!(exe.is_empty() || exe.contains(&good), "runs {exe}");
    // History says it failed, and `homeport deploys` shows why.
    let id = deploy_id(&err);
    let shown = env.cli(&["deploys", "shop", &id]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let shown = stdout(&shown);
    assert!(
        shown.contains("deploy ") && shown.contains("failed") && shown.contains("health gate"),
        "{shown}"
    );
    assert!(
        shown.contains("diagnostics:") && shown.contains("== shop/production/web"),
        "{shown}"
    );
    let list = stdout(&env.cli(&["deploys", "shop"]));
    assert!(
        list.contains("failed") && list.contains("succeeded"),
        "{list}"
    );
}

/// POSTs one item to the fixture on `port`; the status code.
fn post_item(port: u16, body: &str) -> u16 {
    raw_http(
        port,
        &format!(
            "POST /items HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .0
}

fn items(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM items", [], |r| r.get(0)))
        .expect("count items")
}

#[test]
fn writes_acknowledged_during_a_failed_gate_are_reported_with_the_copy_that_keeps_them() {
    let (mut env, src) = setup("");
    src.write(
        "migrate.sql",
        "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, body TEXT);\n",
    );
    src.commit("items");
    env.start_agent();
    assert!(deploy(&env, &["deploy", "shop"]).status.success());
    let good = current(&env, "production").expect("good");
    let port = env.ports[0];
    for i in 0..2 {
        assert_eq!(post_item(port, &format!("before {i}")), 201);
    }
    // A window long enough that only the crash below ends it.
    env.stop_agent();
    let text = read(&env.config).replacen("health_stable = \"1s\"", "health_stable = \"10m\"", 1);
    std::fs::write(&env.config, text).expect("config");
    env.start_agent();
    assert_eq!(
        env.cli(&["start", "shop/production"]).status.code(),
        Some(0)
    );
    let old = env.wait_service("shop/production/web", "runs", |s| s.state.is_ready());

    let crash = env.dir.path().join("crash-now");
    src.write(
        "migrate.sql",
        "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, body TEXT); CREATE TABLE IF NOT EXISTS v2(x);\n",
    );
    src.write("flags", &format!("--crash-when {}", crash.display()));
    src.commit("a release that crashes when told");
    let running = env
        .command_with(&["deploy", "shop"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("deploy");
    // The new release serves, inside its stability window: three writes acknowledged.
    env.wait_until("the new release serves", || {
        let s = env.status();
        let web = service(&s, "shop/production/web");
        (current(&env, "production").is_some_and(|c| c != good)
            && web.state.is_ready()
            && web.pid != old.pid)
            .then_some(())
    });
    for i in 0..3 {
        assert_eq!(post_item(port, &format!("during {i}")), 201);
    }
    let db = env.dir.path().join("production.db");
    assert_eq!(items(&db), 5);
    std::fs::write(&crash, "").expect("crash");
    let out = running.wait_with_output().expect("deploy");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let (text, err) = (stdout(&out), stderr(&out));
    // The old release needs the old schema: the backup came back, and what it discarded is told.
    assert_eq!(current(&env, "production"), Some(good));
    assert_eq!(items(&db), 2, "the database from before the deploy");
    // The three items, and the row the new release itself wrote when it started.
    assert!(
        text.contains("4 rows written since the backup are not in it (1 in hits, 3 in items)"),
        "{text}\n{err}"
    );
    assert!(
        err.contains(
            "4 rows written since the backup were discarded from main (kept in safety backup"
        ),
        "{err}"
    );
    let id = deploy_id(&err);
    let port_api = agent_port(&env);
    let token = read(&env.data.join("token"));
    let detail: homeport_types::DeployDetail = serde_json::from_str(&raw_get_json(
        port_api,
        &format!("/api/v1/deploys/{id}"),
        token.trim(),
    ))
    .expect("deploy detail");
    let d = &detail.record.discarded[0];
    assert_eq!((d.database.as_str(), d.rows), ("main", Some(4)));
    assert!(Path::new(&d.copy).exists(), "{}", d.copy);
    // The copy really holds them: written out, it has all five rows.
    let safety = d.backup.expect("a safety backup");
    let out_db = env.dir.path().join("kept.db");
    let out = env.cli(&[
        "restore",
        "shop/production",
        &safety.to_string(),
        "--to",
        &out_db.display().to_string(),
    ]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let kept = if out_db.is_dir() {
        std::fs::read_dir(&out_db)
            .expect("dir")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "db"))
            .expect("a database in the folder")
    } else {
        out_db.clone()
    };
    assert_eq!(items(&kept), 5, "the copy keeps every acknowledged write");
    env.wait_service("shop/production/web", "serves the old release again", |s| {
        s.state == ServiceState::Healthy
    });
}

#[test]
fn a_dependency_that_never_gets_ready_is_named_with_its_last_probe_within_the_deadline() {
    let mut env = TestEnv::new(
        r#"
[apps.shop]
source = "@HOME@/src"
build = ["sh build.sh"]
artifacts = ["out"]

[apps.shop.env.production]
health_deadline = "3s"
health_stable = "1s"

[apps.shop.env.production.services.api]
command = ["{release}/out/run.sh", "--port", "{port}", "--fail-health"]
port = @P0@
health = { http = "/health", interval = "100ms", start_period = "0s", retries = 1000 }

[apps.shop.env.production.services.front]
command = ["{release}/out/run.sh", "--port", "{port}"]
port = @P1@
depends_on = ["api"]
health = { http = "/health", interval = "100ms" }
"#,
    );
    let _src = Source::new(env.dir.path());
    env.start_agent();
    let began = std::time::Instant::now();
    let out = deploy(&env, &["deploy", "shop"]);
    let took = began.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("api was not ready within 3s: its last health check:")
            && err.contains("503")
            && err.contains("(front waits for it)"),
        "{err}"
    );
    assert!(!err.contains("front was not ready"), "{err}");
    // The environment's deadline, not a fixed minute: well under 60 s even on a busy machine.
    assert!(took < std::time::Duration::from_secs(50), "{took:?}");
}

#[test]
fn a_migration_that_fails_before_changing_anything_never_stops_the_old_release() {
    let (mut env, src) = setup("");
    env.start_agent();
    assert!(deploy(&env, &["deploy", "shop"]).status.success());
    let before = env.wait_service("shop/production/web", "runs", |s| {
        s.state == ServiceState::Healthy
    });
    src.write("migrate.sql", "INSERT INTO no_such_table VALUES (1);\n");
    src.commit("a migration that fails at its first statement");
    let out = deploy(&env, &["deploy", "shop"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("the database had not changed, so nothing was restored"),
        "{}",
        stderr(&out)
    );
    let after = env.status();
    let web = service(&after, "shop/production/web");
    assert_eq!(web.pid, before.pid, "the old release never stopped");
    assert_eq!(web.state, ServiceState::Healthy);
}

#[test]
fn a_deploy_of_a_tag_builds_that_commit() {
    let (mut env, src) = setup("");
    src.git(&["tag", "v1"]);
    let v1 = String::from_utf8(
        Command::new("git")
            .arg("-C")
            .arg(&src.dir)
            .args(["rev-parse", "--short=7", "v1"])
            .output()
            .expect("git")
            .stdout,
    )
    .expect("utf8");
    src.commit("after v1");
    env.start_agent();
    let out = deploy(&env, &["deploy", "shop", "--ref", "v1"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        current(&env, "production").is_some_and(|r| r.ends_with(v1.trim())),
        "{:?} is v1 ({v1})",
        current(&env, "production")
    );
    let out = deploy(&env, &["deploy", "shop", "--ref", "no-such-thing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no-such-thing names no branch, tag or commit"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_interpreted_app_gets_a_working_virtualenv_in_each_release_stored_once() {
    use std::os::unix::fs::MetadataExt;
    let mut env = TestEnv::new(
        r#"
[apps.shop]
source = "@HOME@/src"
build = ["sh build.sh"]
artifacts = ["out"]
install = ["python3 -m venv {release}/venv"]
# A console script of the virtualenv: it names the interpreter by the path the venv was made at.
migrate = "{release}/venv/bin/pip --version"

[apps.shop.env.production]
databases = { main = "@HOME@/production.db" }
health_stable = "1s"

[apps.shop.env.production.services.web]
command = ["{release}/out/run.sh", "--port", "{port}"]
port = @P0@
health = { http = "/health", interval = "100ms" }
"#,
    );
    let src = Source::new(env.dir.path());
    env.start_agent();
    let out = deploy(&env, &["deploy", "shop"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("▸ install"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("pip "),
        "the venv's pip runs:\n{}",
        stdout(&out)
    );
    let first = current(&env, "production").expect("first");
    src.commit("second");
    let out = deploy(&env, &["deploy", "shop"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("shared with earlier releases"),
        "{}",
        stdout(&out)
    );
    let second = current(&env, "production").expect("second");
    assert_ne!(first, second);
    let releases = env.data.join("apps/shop/releases");
    let pip_init = |id: &str| {
        let lib = releases.join(id).join("venv/lib");
        let py = std::fs::read_dir(&lib)
            .expect("venv/lib")
            .flatten()
            .next()
            .expect("pythonX.Y")
            .path();
        py.join("site-packages/pip/__init__.py")
    };
    let ino = |p: PathBuf| std::fs::metadata(&p).map(|m| m.ino()).expect("pip");
    assert_eq!(
        ino(pip_init(&first)),
        ino(pip_init(&second)),
        "the same file in two releases is one file"
    );
    let script = read(&releases.join(&second).join("venv/bin/pip"));
    assert!(
        script.starts_with(&format!("#!{}", releases.join(&second).display())),
        "the script names its own release: {}",
        script.lines().next().unwrap_or_default()
    );
}

#[test]
fn a_failed_blue_green_deploy_that_migrated_never_takes_the_old_instance_down() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let env = TestEnv::new(
        r#"
[apps.shop]
source = "@HOME@/src"
build = ["sh build.sh"]
artifacts = ["out"]
migrate = "{release}/out/app --db {db.main} --sql-file {release}/out/migrate.sql"

[apps.shop.env.production]
autostart = true
databases = { main = "@HOME@/production.db" }
health_deadline = "5s"
health_stable = "1s"

[apps.shop.env.production.services.web]
command = ["{release}/out/run.sh", "--port", "{port}", "--db", "{db.main}"]
strategy = "blue-green"
port = @P0@
ports = { blue = @P1@, green = @P2@ }
health = { http = "/health", interval = "100ms" }
"#,
    );
    let src = Source::new(env.dir.path());
    let mut env = env;
    env.start_agent();
    let out = env.cli(&["deploy", "shop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let good = current(&env, "production").expect("good");
    let public = env.ports[0];
    let live = env.wait_until("one instance serves", || {
        env.status()
            .services
            .into_iter()
            .find(|s| s.instance.as_ref().is_some_and(|i| i.live) && s.state.is_ready())
    });

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let client = {
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let good = std::panic::catch_unwind(|| {
                    raw_http(
                        public,
                        "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    )
                    .0 == 200
                })
                .unwrap_or(false);
                if good {
                    ok.fetch_add(1, Ordering::Relaxed)
                } else {
                    failed.fetch_add(1, Ordering::Relaxed)
                };
            }
        })
    };
    src.write(
        "migrate.sql",
        "CREATE TABLE IF NOT EXISTS hits (id INTEGER PRIMARY KEY, at TEXT NOT NULL); CREATE TABLE v2_schema(x);\n",
    );
    src.write("flags", "--fail-health");
    src.commit("a migration and a release that cannot serve");
    let out = env.cli(&["deploy", "shop"]);
    stop.store(true, Ordering::Relaxed);
    client.join().expect("client");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("put the database from before the deploy back"),
        "{}",
        stderr(&out)
    );
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 10, "the client kept asking: {ok}");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    let now = service(&env.status(), &live.key.to_string()).clone();
    assert_eq!(now.pid, live.pid, "the old instance never stopped");
    assert_eq!(current(&env, "production"), Some(good));
    let v2: i64 = rusqlite::Connection::open(env.dir.path().join("production.db"))
        .and_then(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'v2_schema'",
                [],
                |r| r.get(0),
            )
        })
        .expect("query");
    assert_eq!(v2, 0, "the old schema is back");
}

#[test]
fn with_backward_compatible_migrations_a_failed_gate_keeps_every_write() {
    let (mut env, src) = setup("backward_compatible_migrations = true");
    src.write(
        "migrate.sql",
        "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, body TEXT);\n",
    );
    src.commit("items");
    env.start_agent();
    assert!(deploy(&env, &["deploy", "shop"]).status.success());
    let good = current(&env, "production").expect("good");
    let port = env.ports[0];
    env.stop_agent();
    let text = read(&env.config).replacen("health_stable = \"1s\"", "health_stable = \"10m\"", 1);
    std::fs::write(&env.config, text).expect("config");
    env.start_agent();
    assert!(env.cli(&["start", "shop/production"]).status.success());
    let old = env.wait_service("shop/production/web", "runs again", |s| s.state.is_ready());
    let crash = env.dir.path().join("crash-now");
    src.write(
        "migrate.sql",
        "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, body TEXT); ALTER TABLE items ADD COLUMN tag TEXT;\n",
    );
    src.write("flags", &format!("--crash-when {}", crash.display()));
    src.commit("an additive migration and a release that crashes when told");
    let running = env
        .command_with(&["deploy", "shop"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("deploy");
    env.wait_until("the new release serves", || {
        let s = env.status();
        let web = service(&s, "shop/production/web");
        (current(&env, "production").is_some_and(|c| c != good)
            && web.state.is_ready()
            && web.pid != old.pid)
            .then_some(())
    });
    for i in 0..3 {
        assert_eq!(post_item(port, &format!("during {i}")), 201);
    }
    std::fs::write(&crash, "").expect("crash");
    let out = running.wait_with_output().expect("deploy");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("the database keeps the migration and every write since"),
        "{}",
        stderr(&out)
    );
    assert_eq!(current(&env, "production"), Some(good));
    let db = env.dir.path().join("production.db");
    assert_eq!(items(&db), 3, "every acknowledged write is still there");
    env.wait_service(
        "shop/production/web",
        "serves the old release on the new schema",
        |s| s.state == ServiceState::Healthy,
    );
}

#[test]
fn a_failed_build_keeps_its_last_lines_with_the_deploy() {
    let (mut env, src) = setup("");
    src.write("fail-build", "");
    src.commit("break the build");
    env.start_agent();
    let out = deploy(&env, &["deploy", "shop"]);
    assert_eq!(out.status.code(), Some(1));
    let id = deploy_id(&stderr(&out));
    let shown = stdout(&env.cli(&["deploys", "shop", &id]));
    let build = shown
        .split_once("build (")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no build step in:\n{shown}"));
    assert!(
        build.lines().take(4).any(|l| l.trim() == "the build broke"),
        "the step's own last lines:\n{shown}"
    );
    let other = env.cli(&["deploys", "nope", &id]);
    assert_eq!(other.status.code(), Some(4));
    assert!(
        stderr(&other).contains(&format!("deploy {id} is of shop, not nope")),
        "{}",
        stderr(&other)
    );
}
