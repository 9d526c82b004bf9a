//! Backups of live databases, their faults, and restores, through the real agent and CLI.

use std::path::Path;

use futures_util::StreamExt;

use homeport_types::ServiceState;

use crate::util::*;

fn rows(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM hits", [], |r| r.get(0)))
        .unwrap_or(-1)
}

fn env_with_db(extra: &str) -> TestEnv {
    TestEnv::new(&format!(
        r#"
[apps.a.env.prod]
autostart = true
databases = {{ main = "@HOME@/main.db" }}
{extra}
[apps.a.env.prod.services.web]
command = ["@FIXTURE@", "--port", "{{port}}", "--db", "{{db.main}}", "--write-every", "2"]
port = @P0@
health = {{ http = "/health", interval = "100ms" }}
"#
    ))
}

/// The id of the safety backup a restore reports.
fn safety_id(out: &str) -> i64 {
    out.lines()
        .find_map(|l| {
            l.strip_prefix("what was replaced is kept as backup ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no safety backup in:\n{out}"))
}

fn backup_ids(env: &TestEnv) -> Vec<(i64, bool)> {
    let list = env
        .block_on(env.client().backups(&"a/prod".parse().expect("target")))
        .expect("backups");
    list.iter()
        .flat_map(|e| e.backups.iter().map(|b| (b.id, b.verified)))
        .collect()
}

#[test]
fn a_live_database_is_backed_up_while_it_is_written_and_restored_for_inspection() {
    let mut env = env_with_db("");
    // Times are shown on the local clock with its zone (India: UTC+05:30, no summer time).
    env.set_env("TZ", "Asia/Kolkata");
    env.start_agent();
    env.wait_service("a/prod/web", "is healthy", |s| {
        s.state == ServiceState::Healthy
    });
    let db = env.dir.path().join("main.db");
    env.wait_until("rows are being written", || (rows(&db) > 50).then_some(()));
    let out = env.cli(&["backup", "a/prod"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("main.db.zst"), "{}", stdout(&out));
    let ids = backup_ids(&env);
    assert_eq!(ids.len(), 1);
    assert!(ids[0].1, "verified when taken");
    // `homeport backup verify | head -1`: a reader that stops early is not a failure, and the
    // backups after the first are still checked.
    assert!(env.cli(&["backup", "a/prod"]).status.success());
    let mut child = env
        .command()
        .args(["backup", "verify"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run homeport");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for homeport");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "backup verify into a closed pipe: {:?} {}",
        out.status,
        stderr(&out)
    );
    let listing = stdout(&env.cli(&["backups", "a/prod"]));
    assert!(
        listing.contains("manual") && listing.contains("verified"),
        "{listing}"
    );
    let taken = env
        .block_on(env.client().backups(&"a/prod".parse().expect("target")))
        .expect("backups")[0]
        .backups[0]
        .time
        .clone();
    assert!(taken.ends_with('Z'), "the API keeps UTC: {taken}");
    assert!(
        listing.contains(" IST ") && !listing.contains(&taken),
        "the listing shows local time with its zone, not {taken}:\n{listing}"
    );

    let copy = env.dir.path().join("inspect.db");
    let out = env.cli(&["restore", "a/prod", "--to", &copy.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let n = rows(&copy);
    assert!(
        n > 50,
        "the copy has the rows written before the backup: {n}"
    );
    assert!(rows(&db) >= n, "the live database was not touched");
    assert_eq!(
        service(&env.status(), "a/prod/web").state,
        ServiceState::Healthy
    );
}

#[test]
fn a_restore_puts_the_backup_in_place_and_keeps_a_safety_copy() {
    let mut env = env_with_db("");
    env.start_agent();
    env.wait_service("a/prod/web", "is healthy", |s| {
        s.state == ServiceState::Healthy
    });
    let db = env.dir.path().join("main.db");
    env.wait_until("rows are being written", || (rows(&db) > 20).then_some(()));
    assert!(env.cli(&["backup", "a/prod"]).status.success());
    let at_backup = rows(&env.dir.path().join({
        let out = env.cli(&[
            "restore",
            "a/prod",
            "--to",
            &env.dir.path().join("b.db").display().to_string(),
        ]);
        assert!(out.status.success());
        "b.db"
    }));
    env.wait_until("many more rows are written after the backup", || {
        (rows(&db) > at_backup + 1000).then_some(())
    });
    let before_restore = rows(&db);
    let out = env.cli(&["restore", "a/prod"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let safety = stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("the previous data is kept in "))
        .map(str::to_owned)
        .expect("a safety copy");
    assert!(safety.ends_with("main.db.zst"), "compressed: {safety}");
    let id = safety_id(&stdout(&out));
    let copy = env.dir.path().join("safety.db");
    let out = env.cli(&[
        "restore",
        "a/prod",
        &id.to_string(),
        "--to",
        &copy.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        rows(&copy) >= before_restore,
        "the safety copy has the newer rows"
    );
    env.wait_service("a/prod/web", "is healthy again", |s| {
        s.state == ServiceState::Healthy
    });
    let now = rows(&db);
    assert!(
        now >= at_backup && now < before_restore,
        "the backup's rows are back ({at_backup} at the backup, {before_restore} before the restore, {now} now)"
    );
}

#[test]
fn a_restore_whose_services_do_not_come_up_puts_the_old_database_back() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod]
autostart = true
databases = { main = "@HOME@/main.db" }
[apps.a.env.prod.services.web]
command = ["@FIXTURE@", "--port", "{port}", "--db", "{db.main}", "--fail-if-table", "poison"]
port = @P0@
health = { http = "/health", interval = "100ms" }
restart = "never"
"#,
    );
    env.start_agent();
    env.wait_service("a/prod/web", "is healthy", |s| {
        s.state == ServiceState::Healthy
    });
    let db = env.dir.path().join("main.db");
    // A backup the service cannot use.
    rusqlite::Connection::open(&db)
        .and_then(|c| c.execute_batch("CREATE TABLE poison(x)"))
        .expect("poison");
    assert!(env.cli(&["backup", "a/prod"]).status.success());
    rusqlite::Connection::open(&db)
        .and_then(|c| c.execute_batch("DROP TABLE poison; CREATE TABLE marker(x)"))
        .expect("marker");
    let out = env.cli(&["restore", "a/prod"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("restore of a/prod failed")
            && err.contains("the previous database is back in place"),
        "{err}"
    );
    let has_marker: i64 = rusqlite::Connection::open(&db)
        .and_then(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'marker'",
                [],
                |r| r.get(0),
            )
        })
        .expect("query");
    assert_eq!(
        has_marker, 1,
        "the database from before the restore is back"
    );
    env.wait_service("a/prod/web", "runs again", |s| {
        s.state == ServiceState::Healthy
    });
}

#[test]
fn a_path_that_is_not_a_database_is_named() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod]
databases = { main = "@HOME@/notes.txt" }
"#,
    );
    std::fs::write(env.dir.path().join("notes.txt"), "not a database at all").expect("write");
    env.start_agent();
    let out = env.cli(&["backup", "a/prod"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "{}/notes.txt is not a SQLite database",
            env.dir.path().display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(backup_ids(&env).is_empty());
}

#[test]
fn a_corrupted_backup_is_flagged_by_verify_and_refused_by_restore() {
    let mut env = env_with_db("");
    env.start_agent();
    env.wait_service("a/prod/web", "is healthy", |s| {
        s.state == ServiceState::Healthy
    });
    assert!(env.cli(&["backup", "a/prod"]).status.success());
    let list = env
        .block_on(env.client().backups(&"a/prod".parse().expect("t")))
        .expect("list");
    let b = &list[0].backups[0];
    let file = Path::new(&b.dir).join(&b.artifacts[0].file);
    let mut bytes = std::fs::read(&file).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&file, bytes).expect("corrupt");
    let out = env.cli(&["backup", "verify", &b.id.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("checksum mismatch"),
        "{}",
        stderr(&out)
    );
    let db = env.dir.path().join("main.db");
    let before = rows(&db);
    let out = env.cli(&["restore", "a/prod", &b.id.to_string()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("checksum mismatch"),
        "{}",
        stderr(&out)
    );
    assert!(rows(&db) >= before, "the live database is untouched");
    assert_eq!(
        service(&env.status(), "a/prod/web").state,
        ServiceState::Healthy,
        "and its service never stopped"
    );
}

#[test]
fn a_full_disk_fails_the_backup_cleanly() {
    // A file-size limit stands in for a full disk: writes past it fail (EFBIG).
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod]
databases = { main = "@HOME@/big.db" }
backup = { compress = false }
"#,
    );
    let big = env.dir.path().join("big.db");
    rusqlite::Connection::open(&big)
        .and_then(|c| c.execute_batch("CREATE TABLE t(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 800) INSERT INTO t SELECT randomblob(8192) FROM n;"))
        .expect("big db");
    env.start_agent_with_file_limit_kib(4096);
    let out = env.cli(&["backup", "a/prod"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("cannot write the backup copy") && stderr(&out).contains("disk full"),
        "{}",
        stderr(&out)
    );
    assert!(backup_ids(&env).is_empty(), "nothing catalogued");
    let leftovers: Vec<_> = walk(&env.data.join("backups"))
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert!(leftovers.is_empty(), "partial files removed: {leftovers:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn a_killed_backup_leaves_nothing_that_is_catalogued_or_used() {
    let mut env = TestEnv::new(
        r#"
[apps.a.env.prod]
databases = { main = "@HOME@/big.db" }
"#,
    );
    let big = env.dir.path().join("big.db");
    rusqlite::Connection::open(&big)
        .and_then(|c| c.execute_batch("CREATE TABLE t(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 40000) INSERT INTO t SELECT randomblob(8192) FROM n;"))
        .expect("big db");
    env.start_agent();
    let mut backup = std::process::Command::new(homeport_bin())
        .args([
            "--config",
            &env.config.display().to_string(),
            "backup",
            "a/prod",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("backup");
    env.wait_until("the backup is under way", || {
        walk(&env.data.join("backups"))
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".partial"))
            .then_some(())
    });
    env.kill_agent_hard();
    let _ = backup.wait();
    env.start_agent();
    assert!(backup_ids(&env).is_empty(), "nothing catalogued");
    let partials: Vec<_> = walk(&env.data.join("backups"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("partial"))
        .collect();
    assert!(partials.is_empty(), "swept at start: {partials:?}");
    let out = env.cli(&[
        "restore",
        "a/prod",
        "--to",
        &env.dir.path().join("x.db").display().to_string(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "no backup to restore: {}",
        stderr(&out)
    );
}

#[test]
fn a_schedule_backs_up_once_and_retention_keeps_the_newest() {
    let mut env = env_with_db(
        r#"backup = { every = "1h", keep_last = 2, keep_daily = 0, keep_weekly = 0, keep_monthly = 0 }"#,
    );
    env.start_agent();
    // Never backed up: due at once.
    env.wait_until("the scheduled backup ran", || {
        (backup_ids(&env).len() == 1).then_some(())
    });
    let list = env
        .block_on(env.client().backups(&"a/prod".parse().expect("t")))
        .expect("list");
    assert_eq!(
        list[0].backups[0].trigger,
        homeport_types::BackupTrigger::Scheduled
    );
    assert_eq!(list[0].schedule.as_deref(), Some("every 1h"));
    // A subscriber sees each backup as it is made: a snapshot first, then the events.
    let mut stream = Box::pin(env.block_on(env.client().events()).expect("event stream"));
    assert!(
        matches!(
            env.block_on(stream.next()),
            Some(Ok(homeport_client::Update::Snapshot(_)))
        ),
        "a snapshot first"
    );
    for _ in 0..3 {
        assert!(env.cli(&["backup", "a/prod"]).status.success());
    }
    let streamed = env.block_on(async {
        let mut made = Vec::new();
        let read = async {
            while let Some(Ok(update)) = stream.next().await {
                if let homeport_client::Update::Event(e) = update
                    && e.kind.name().starts_with("backup_")
                {
                    made.push(e);
                    if made.len() == 3 {
                        break;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(60), read).await;
        made
    });
    assert_eq!(streamed.len(), 3, "{streamed:?}");
    assert!(
        streamed.iter().all(|e| matches!(
            &e.kind,
            homeport_types::EventKind::BackupFinished {
                trigger: homeport_types::BackupTrigger::Manual,
                ..
            }
        )),
        "{streamed:?}"
    );
    let ids = backup_ids(&env);
    assert_eq!(ids.len(), 2, "keep_last = 2: {ids:?}");
    let dirs: Vec<_> = std::fs::read_dir(env.data.join("backups/a/prod"))
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name() != "safety")
        .collect();
    assert_eq!(dirs.len(), 2, "deleted backups' files are gone");

    // Each backup is one event, in the history of the environment, whoever took it. (The
    // history is written by the agent's recorder thread, just after the event is published.)
    let history = |kinds: &[&str]| {
        env.block_on(
            env.client()
                .event_history(&"a/prod".parse().expect("t"), kinds, 100),
        )
        .expect("events")
    };
    let events = env.wait_until("four backups are recorded", || {
        let e = history(&["backup_finished"]);
        (e.len() >= 4).then_some(e)
    });
    let triggers: Vec<_> = events
        .iter()
        .map(|e| match &e.kind {
            homeport_types::EventKind::BackupFinished { trigger, .. } => *trigger,
            other => panic!("{other:?}"),
        })
        .collect();
    use homeport_types::BackupTrigger::{Manual, Scheduled};
    assert_eq!(triggers, [Manual, Manual, Manual, Scheduled], "{events:?}");

    // A restore too.
    let out = env.cli(&["restore", "a/prod"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let restores = env.wait_until("the restore is recorded", || {
        let e = history(&["restore_finished", "restore_failed"]);
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(restores.len(), 1, "{restores:?}");
    assert_eq!(restores[0].kind.name(), "restore_finished");
}

#[test]
fn a_failed_scheduled_backup_is_an_event_and_is_not_retried_at_every_tick() {
    let mut env = env_with_db(r#"backup = { every = "1h" }"#);
    // Not a database: the scheduled backup fails.
    std::fs::write(env.dir.path().join("main.db"), b"this is not SQLite").expect("write");
    env.start_agent();
    let failed = || {
        env.block_on(env.client().event_history(
            &"a/prod".parse().expect("t"),
            &["backup_failed"],
            100,
        ))
        .expect("events")
    };
    let first = env.wait_until("the scheduled backup failed", || {
        let f = failed();
        (!f.is_empty()).then_some(f)
    });
    assert!(
        matches!(
            &first[0].kind,
            homeport_types::EventKind::BackupFailed {
                trigger: homeport_types::BackupTrigger::Scheduled,
                ..
            }
        ),
        "{first:?}"
    );
    // The scheduler looks every 5 s; after two more looks it has not tried again.
    let since = std::time::Instant::now();
    env.wait_until("two scheduler ticks pass", || {
        (since.elapsed() > std::time::Duration::from_secs(11)).then_some(())
    });
    assert_eq!(failed().len(), 1, "tried again within the hour");
}

fn backups_of(env: &TestEnv, target: &str) -> Vec<homeport_types::BackupInfo> {
    env.block_on(env.client().backups(&target.parse().expect("target")))
        .expect("backups")
        .into_iter()
        .flat_map(|e| e.backups)
        .collect()
}

fn read_tree(root: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = walk(root)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string(),
                std::fs::read_to_string(&p).unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn files_are_restored_in_place_per_path_or_all_and_written_out_for_inspection() {
    let mut env = TestEnv::new(
        r#"
[apps.relay.env.production]
autostart = true
files = ["@HOME@/uploads", "@HOME@/state.json"]
[apps.relay.env.production.services.web]
command = ["@FIXTURE@", "--port", "{port}"]
port = @P0@
health = { http = "/health", interval = "100ms" }
"#,
    );
    let home = env.dir.path().to_path_buf();
    let uploads = home.join("uploads");
    std::fs::create_dir_all(uploads.join("2024")).expect("uploads");
    std::fs::write(uploads.join("2024/a.txt"), "first upload").expect("a");
    std::fs::write(uploads.join("b.txt"), "second upload").expect("b");
    std::fs::write(home.join("state.json"), r#"{"cursor": 1}"#).expect("state");
    env.start_agent();
    let before = env.wait_service("relay/production/web", "is healthy", |s| {
        s.state == ServiceState::Healthy
    });
    let out = env.cli(&["backup", "relay/production"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = backups_of(&env, "relay/production")[0].id;
    let at_backup = read_tree(&uploads);

    // Later: a file changed, one removed, one added, the state moved on.
    std::fs::write(uploads.join("b.txt"), "overwritten").expect("b");
    std::fs::remove_file(uploads.join("2024/a.txt")).expect("rm a");
    std::fs::write(uploads.join("c.txt"), "new since").expect("c");
    std::fs::write(home.join("state.json"), r#"{"cursor": 9}"#).expect("state");
    let later = read_tree(&uploads);

    // One path only: the state file comes back, the uploads stay as they are.
    let out = env.cli(&[
        "restore",
        "relay/production",
        &id.to_string(),
        "--path",
        "state.json",
    ]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        std::fs::read_to_string(home.join("state.json")).expect("state"),
        r#"{"cursor": 1}"#
    );
    assert_eq!(read_tree(&uploads), later, "the uploads were not touched");

    // Everything: the uploads are as they were at the backup, the newer ones in a safety copy.
    let out = env.cli(&["restore", "relay/production", &id.to_string()]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(read_tree(&uploads), at_backup);
    let safety = safety_id(&stdout(&out));
    let after = env.wait_service("relay/production/web", "is healthy again", |s| {
        s.state == ServiceState::Healthy
    });
    assert_ne!(
        after.pid, before.pid,
        "the environment was stopped for the swap"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&home)
        .expect("home")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".from-backup") || n.contains(".replaced"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Written out for inspection, each path under its name, no absolute path needed.
    let inspect = home.join("inspect");
    let out = env.cli(&[
        "restore",
        "relay/production",
        &safety.to_string(),
        "--to",
        &inspect.display().to_string(),
    ]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        read_tree(&inspect.join("uploads")),
        later,
        "the safety copy holds what was replaced"
    );
    assert_eq!(
        std::fs::read_to_string(inspect.join("state.json")).expect("state"),
        r#"{"cursor": 1}"#
    );
    // A folder that is not empty is refused, and nothing is written into it.
    let out = env.cli(&[
        "restore",
        "relay/production",
        &id.to_string(),
        "--to",
        &inspect.display().to_string(),
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
}

#[test]
fn a_backup_found_corrupt_is_marked_failed_and_never_kept_in_place_of_a_good_one() {
    let mut env = env_with_db(
        r#"backup = { keep_last = 3, keep_daily = 0, keep_weekly = 0, keep_monthly = 0 }"#,
    );
    env.start_agent();
    env.wait_service("a/prod/web", "is healthy", |s| {
        s.state == ServiceState::Healthy
    });
    for _ in 0..3 {
        assert!(env.cli(&["backup", "a/prod"]).status.success());
    }
    let list = backups_of(&env, "a/prod");
    let (newest, second, oldest) = (&list[0], &list[1], &list[2]);
    let file = Path::new(&newest.dir).join(&newest.artifacts[0].file);
    let mut bytes = std::fs::read(&file).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&file, bytes).expect("corrupt");

    // A plain restore picks the newest, finds it corrupt, and refuses; the service never stops.
    let pid = service(&env.status(), "a/prod/web").pid;
    let out = env.cli(&["restore", "a/prod"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("checksum mismatch"),
        "{}",
        stderr(&out)
    );
    assert_eq!(service(&env.status(), "a/prod/web").pid, pid);
    let marked = backups_of(&env, "a/prod");
    let b = marked
        .iter()
        .find(|b| b.id == newest.id)
        .expect("still listed");
    assert!(!b.verified, "marked failed");
    assert!(
        b.problem
            .as_deref()
            .is_some_and(|p| p.contains("checksum mismatch")),
        "{b:?}"
    );
    let listing = stdout(&env.cli(&["backups", "a/prod"]));
    assert!(listing.contains("FAILED: "), "{listing}");

    // The next plain restore takes the newest good one.
    let copy = env.dir.path().join("copy.db");
    let out = env.cli(&["restore", "a/prod", "--to", &copy.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("from backup {}", second.id)),
        "{}",
        stdout(&out)
    );

    // Retention (keep_last = 3) counts good backups only: the failed one goes, the oldest good
    // one stays.
    assert!(env.cli(&["backup", "a/prod"]).status.success());
    let ids: Vec<i64> = backups_of(&env, "a/prod").iter().map(|b| b.id).collect();
    assert!(
        !ids.contains(&newest.id),
        "the failed backup was deleted: {ids:?}"
    );
    assert!(
        ids.contains(&second.id) && ids.contains(&oldest.id) && ids.len() == 3,
        "{ids:?}"
    );
    assert!(!Path::new(&newest.dir).exists(), "its files are gone");
}

#[test]
fn safety_copies_are_listed_compressed_and_pruned_by_their_own_retention() {
    let mut env = env_with_db(r#"backup = { keep_safety = 2 }"#);
    env.start_agent();
    env.wait_service("a/prod/web", "is healthy", |s| {
        s.state == ServiceState::Healthy
    });
    assert!(env.cli(&["backup", "a/prod"]).status.success());
    let mut safety = Vec::new();
    for _ in 0..3 {
        let out = env.cli(&["restore", "a/prod"]);
        assert!(out.status.success(), "{}", stderr(&out));
        safety.push(safety_id(&stdout(&out)));
    }
    let list = backups_of(&env, "a/prod");
    let kept: Vec<i64> = list
        .iter()
        .filter(|b| b.trigger == homeport_types::BackupTrigger::Safety)
        .map(|b| b.id)
        .collect();
    assert_eq!(kept, [safety[2], safety[1]], "the newest two, newest first");
    let newest = list.iter().find(|b| b.id == safety[2]).expect("newest");
    assert!(
        newest
            .artifacts
            .iter()
            .all(|a| a.compressed && a.file.ends_with(".zst")),
        "{newest:?}"
    );
    let safety_dirs = std::fs::read_dir(env.data.join("backups/a/prod/safety"))
        .expect("safety dir")
        .count();
    assert_eq!(safety_dirs, 2, "the pruned copy's files are gone");
    let listing = stdout(&env.cli(&["backups", "a/prod"]));
    assert_eq!(listing.matches("safety copy").count(), 2, "{listing}");
    // A plain restore never picks a safety copy.
    let out = env.cli(&["restore", "a/prod"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let original = list
        .iter()
        .find(|b| b.trigger == homeport_types::BackupTrigger::Manual)
        .expect("the backup");
    assert!(
        stdout(&out).contains(&format!("from backup {}", original.id)),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_restore_names_whose_backup_it_is() {
    let mut env = TestEnv::new(
        r#"
[apps.collab.env.production]
databases = { main = "@HOME@/prod.db" }
[apps.collab.env.beta]
databases = { main = "@HOME@/beta.db" }
"#,
    );
    rusqlite::Connection::open(env.dir.path().join("prod.db"))
        .and_then(|c| c.execute_batch("CREATE TABLE t(x)"))
        .expect("db");
    env.start_agent();
    assert!(env.cli(&["backup", "collab/production"]).status.success());
    let id = backups_of(&env, "collab/production")[0].id;
    let out = env.cli(&["restore", "collab/beta", &id.to_string()]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "backup {id} belongs to collab/production, not collab/beta; restore it with `homeport restore collab/production {id}`"
        )),
        "{}",
        stderr(&out)
    );
}
