//! Automatic updates: a real git source with an upstream, the fixture app, the real agent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use homeport_types::{AutoUpdateState, DeployResult, Event, EventKind, ServiceState};

use crate::deploy::Source;
use crate::util::*;

/// Deploys and their health gates take a while on a busy machine.
const LONG: Duration = Duration::from_secs(180);

fn service_block(env: &str, port: &str, extra: &str) -> String {
    format!(
        r#"
[apps.shop.env.{env}]
health_deadline = "4s"
{extra}

[apps.shop.env.{env}.services.web]
command = ["{{release}}/out/run.sh", "--port", "{{port}}"]
port = {port}
health = {{ http = "/health", interval = "100ms", start_period = "0s" }}
"#
    )
}

fn config(envs: &str) -> String {
    format!(
        r#"
[apps.shop]
source = "@HOME@/src"
build = ["sh build.sh"]
artifacts = ["out"]
{envs}"#
    )
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.email=t@x.invalid", "-c", "user.name=t"])
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The source checkout tracks a bare upstream; commits are pushed to it from another clone.
struct Upstream {
    other: PathBuf,
}

impl Upstream {
    fn new(env: &TestEnv) -> (Source, Upstream) {
        let src = Source::new(env.dir.path());
        let src_dir = env.dir.path().join("src");
        let bare = env.dir.path().join("upstream.git");
        let ok = Command::new("git")
            .args(["clone", "-q", "--bare"])
            .arg(&src_dir)
            .arg(&bare)
            .status()
            .expect("clone");
        assert!(ok.success());
        git(
            &src_dir,
            &["remote", "add", "origin", &bare.display().to_string()],
        );
        git(&src_dir, &["fetch", "-q", "origin"]);
        git(
            &src_dir,
            &["branch", "-q", "--set-upstream-to", "origin/main"],
        );
        let other = env.dir.path().join("other");
        let ok = Command::new("git")
            .args(["clone", "-q"])
            .arg(&bare)
            .arg(&other)
            .status()
            .expect("clone");
        assert!(ok.success());
        (src, Upstream { other })
    }

    /// Pushes a commit whose release runs with `flags`; returns its full hash.
    fn push(&self, msg: &str, flags: &str) -> String {
        std::fs::write(self.other.join("flags"), flags).expect("flags");
        git(&self.other, &["add", "-A"]);
        git(&self.other, &["commit", "-q", "--allow-empty", "-m", msg]);
        git(&self.other, &["push", "-q", "origin", "main"]);
        git(&self.other, &["rev-parse", "HEAD"])
    }
}

fn src_head(env: &TestEnv) -> String {
    git(&env.dir.path().join("src"), &["rev-parse", "HEAD"])
}

/// The commit the environment's current release was built from.
fn running(env: &TestEnv, e: &str) -> Option<String> {
    let text = std::fs::read_to_string(
        env.data
            .join("apps/shop")
            .join(e)
            .join("current/manifest.json"),
    )
    .ok()?;
    let m: serde_json::Value = serde_json::from_str(&text).ok()?;
    m["commit"].as_str().map(str::to_owned)
}

fn auto_state(env: &TestEnv, e: &str) -> AutoUpdateState {
    let apps = env.block_on(env.client().apps()).expect("apps");
    apps.iter()
        .flat_map(|a| a.envs.iter())
        .find(|x| x.env == e)
        .and_then(|x| x.auto_update.clone())
        .unwrap_or_else(|| panic!("{e} has no automatic updates: {apps:?}"))
}

fn history(env: &TestEnv, e: &str, kinds: &[&str]) -> Vec<Event> {
    env.block_on(env.client().event_history(
        &format!("shop/{e}").parse().expect("target"),
        kinds,
        500,
    ))
    .expect("events")
}

fn deploys(env: &TestEnv, e: &str) -> usize {
    env.block_on(env.client().deploys(Some("shop")))
        .expect("deploys")
        .iter()
        .filter(|d| d.env == e)
        .count()
}

fn wait_long<T>(env: &TestEnv, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < LONG,
            "timed out waiting until {what}\n--- agent log ---\n{}",
            env.agent_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The finished automatic update of `commit`, once it is recorded.
fn finished_update(env: &TestEnv, e: &str, commit: &str) -> Option<EventKind> {
    history(env, e, &["auto_update_finished"])
        .into_iter()
        .map(|ev| ev.kind)
        .find(|k| matches!(k, EventKind::AutoUpdateFinished { commit: c, .. } if c == commit))
}

/// The agent runs in India's time zone for these tests: UTC+05:30 all year, so a window read as
/// UTC instead of local time would be off by hours.
const ZONE: &str = "Asia/Kolkata";
const ZONE_OFFSET_MIN: u64 = 330;

/// A window on the agent's local clock: `len` minutes from `from` minutes after now.
fn local_window(from: u64, len: u64) -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let start = (secs / 60 + ZONE_OFFSET_MIN + from) % (24 * 60);
    let end = (start + len) % (24 * 60);
    format!(
        "{:02}:{:02}-{:02}:{:02}",
        start / 60,
        start % 60,
        end / 60,
        end % 60
    )
}

/// A window of an hour that starts three hours from now, so now is outside it.
fn window_not_now() -> String {
    local_window(180, 60)
}

/// A window around now on the local clock — hours away from now in UTC.
fn window_now() -> String {
    local_window(24 * 60 - 30, 120)
}

#[test]
fn upstream_commits_are_deployed_by_themselves_in_the_window_and_a_dirty_checkout_is_refused() {
    let window = window_not_now();
    let mut env = TestEnv::new(&config(&format!(
        "{}{}",
        service_block(
            "beta",
            "@P1@",
            &format!(
                "auto_update = {{ every = \"1s\", window = \"{}\" }}",
                window_now()
            )
        ),
        service_block(
            "production",
            "@P0@",
            &format!("auto_update = {{ every = \"1s\", window = \"{window}\" }}")
        ),
    )));
    let (src, upstream) = Upstream::new(&env);
    let first = src_head(&env);
    env.set_env("TZ", ZONE);
    env.start_agent();

    // Beta keeps itself current inside its window on the local clock: first with what the
    // upstream has, then with a new commit.
    wait_long(&env, "beta runs the upstream's commit", || {
        (running(&env, "beta").as_deref() == Some(first.as_str())).then_some(())
    });
    let next = upstream.push("a new feature", "");
    wait_long(&env, "beta runs the new upstream commit", || {
        (running(&env, "beta").as_deref() == Some(next.as_str())).then_some(())
    });
    env.wait_service("shop/beta/web", "is healthy on the update", |s| {
        s.state == ServiceState::Healthy
    });
    let told = wait_long(&env, "the update is one finished event", || {
        finished_update(&env, "beta", &next)
    });
    assert!(
        matches!(
            told,
            EventKind::AutoUpdateFinished {
                result: DeployResult::Succeeded,
                commits: 1,
                ..
            }
        ),
        "{told:?}"
    );
    let records = env
        .block_on(env.client().deploys(Some("shop")))
        .expect("deploys");
    assert!(
        records.iter().any(|d| d.env == "beta"
            && d.commit.as_deref() == Some(next.as_str())
            && d.kind == homeport_types::DeployKind::Update
            && d.steps.iter().any(|s| s.name == "health gate" && s.ok)),
        "went through the pipeline and its health gate: {records:?}"
    );

    // Production has the same commits to take, but only inside its window.
    let waiting = wait_long(&env, "production says it waits for its window", || {
        auto_state(&env, "production")
            .waiting
            .filter(|w| w.contains(&format!("{window} {ZONE}")))
    });
    assert!(waiting.contains("new commit"), "{waiting}");
    assert_eq!(running(&env, "production"), None);
    assert_eq!(
        deploys(&env, "production"),
        0,
        "nothing deployed outside the window"
    );

    // A dirty checkout is refused, with the reason, and nothing is deployed from it.
    src.write("flags", "--fail-health");
    let later = upstream.push("another feature", "");
    let refused = wait_long(&env, "the dirty checkout is refused", || {
        auto_state(&env, "beta").refused
    });
    assert!(refused.contains("uncommitted changes"), "{refused}");
    let events = history(&env, "beta", &["auto_update_refused"]);
    assert!(
        events.iter().any(|e| matches!(&e.kind, EventKind::AutoUpdateRefused { reason } if reason.contains("uncommitted changes"))),
        "{events:?}"
    );
    assert_eq!(running(&env, "beta").as_deref(), Some(next.as_str()));
    assert_eq!(src_head(&env), next, "the checkout was not touched");
    // Once it is clean again, the next check updates.
    git(&env.dir.path().join("src"), &["checkout", "--", "flags"]);
    wait_long(&env, "beta runs the later commit", || {
        (running(&env, "beta").as_deref() == Some(later.as_str())).then_some(())
    });
    assert_eq!(auto_state(&env, "beta").refused, None);
    assert_eq!(deploys(&env, "production"), 0);
}

#[test]
fn a_bad_update_is_rolled_back_and_not_retried_and_two_in_a_row_pause_until_resumed() {
    let mut env = TestEnv::new(&config(&service_block(
        "beta",
        "@P1@",
        "auto_update = { every = \"1s\" }",
    )));
    let (_src, upstream) = Upstream::new(&env);
    let good = src_head(&env);
    env.start_agent();
    wait_long(&env, "beta runs the upstream's commit", || {
        (running(&env, "beta").as_deref() == Some(good.as_str())).then_some(())
    });

    // A commit that fails its health gate: rolled back, told, and not tried again.
    let bad = upstream.push("breaks health", "--fail-health");
    let told = wait_long(&env, "the bad update is told", || {
        finished_update(&env, "beta", &bad)
    });
    let EventKind::AutoUpdateFinished {
        result,
        step,
        previous,
        paused,
        ..
    } = &told
    else {
        unreachable!()
    };
    assert_eq!(*result, DeployResult::Failed);
    assert_eq!(step.as_deref(), Some("health gate"), "{told:?}");
    assert_eq!(previous.as_deref(), Some(&good[..7]));
    assert!(!paused);
    assert_eq!(
        running(&env, "beta").as_deref(),
        Some(good.as_str()),
        "rolled back"
    );
    env.wait_service("shop/beta/web", "serves the good release again", |s| {
        s.state == ServiceState::Healthy
    });
    let s = auto_state(&env, "beta");
    assert_eq!((s.failures, s.paused), (1, false));
    assert_eq!(s.failed_commit.as_deref(), Some(bad.as_str()));
    let tried = deploys(&env, "beta");
    // Two more checks, each seeing the failed commit and leaving it.
    let mut seen = std::collections::BTreeSet::new();
    wait_long(&env, "two more checks pass", || {
        let s = auto_state(&env, "beta");
        if s.waiting.as_deref().is_some_and(|w| w.contains("failed")) {
            seen.extend(s.last_check);
        }
        (seen.len() >= 3).then_some(())
    });
    assert_eq!(
        deploys(&env, "beta"),
        tried,
        "the failed commit is not retried"
    );

    // A second bad commit in a row pauses automatic updates.
    let worse = upstream.push("breaks health again", "--fail-health");
    let told = wait_long(&env, "the second bad update is told", || {
        finished_update(&env, "beta", &worse)
    });
    assert!(
        matches!(
            told,
            EventKind::AutoUpdateFinished {
                result: DeployResult::Failed,
                paused: true,
                ..
            }
        ),
        "{told:?}"
    );
    let s = auto_state(&env, "beta");
    assert_eq!((s.failures, s.paused), (2, true));
    let status = stdout(&env.cli(&["status"]));
    assert!(
        status.contains("shop/beta: automatic updates paused after 2 failed updates in a row"),
        "{status}"
    );

    // While paused, a good commit waits.
    let fixed = upstream.push("fixed", "");
    wait_long(
        &env,
        "the paused environment sees the fix and waits",
        || {
            auto_state(&env, "beta")
                .waiting
                .filter(|w| w.contains(&fixed[..7]) && w.contains("resumed"))
        },
    );
    assert_eq!(running(&env, "beta").as_deref(), Some(good.as_str()));

    // One resume and the fix goes out.
    let out = env.cli(&["auto-update", "resume", "shop", "--env", "beta"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("resumed"), "{}", stdout(&out));
    let told = wait_long(&env, "the fix is deployed and told", || {
        finished_update(&env, "beta", &fixed)
    });
    assert!(
        matches!(
            told,
            EventKind::AutoUpdateFinished {
                result: DeployResult::Succeeded,
                ..
            }
        ),
        "{told:?}"
    );
    assert_eq!(running(&env, "beta").as_deref(), Some(fixed.as_str()));
    let s = auto_state(&env, "beta");
    assert_eq!((s.failures, s.paused, s.failed_commit), (0, false, None));
    assert!(!history(&env, "beta", &["auto_updates_resumed"]).is_empty());

    // Resuming what has no automatic updates says how to turn them on.
    let out = env.cli(&["auto-update", "resume", "shop", "--env", "production"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("no environment shop/production"),
        "{}",
        stderr(&out)
    );
}
