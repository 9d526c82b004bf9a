//! What goes wrong with database servers, and what Homeport promises then.

use std::process::Command;

use homeport_types::{BackupTrigger, EventKind, ServiceState};

use crate::engines::*;
use crate::util::*;

fn backups_of(env: &TestEnv) -> Vec<homeport_types::BackupInfo> {
    env.block_on(env.client().backups(&target()))
        .expect("backups")
        .into_iter()
        .flat_map(|e| e.backups)
        .collect()
}

/// Every `*.partial` left under `dir`.
fn partials(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "partial") {
                out.push(p.clone());
            }
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn a_data_folder_made_by_another_major_version_is_refused_with_how_to_upgrade() {
    let mut env = env_with(Kind::Postgres, "");
    // A folder as PostgreSQL 14 would have left it.
    let dir = env.dir.path().join("db-main");
    std::fs::create_dir_all(dir.join("data")).expect("data");
    std::fs::write(dir.join("data/PG_VERSION"), "14\n").expect("PG_VERSION");
    std::fs::write(dir.join("version"), "postgres 14\n").expect("version");
    env.start_agent();
    wait_long(&env, "the server gives up", || {
        let st = env.status();
        let s = service(&st, "a/prod/db-main");
        matches!(s.state, ServiceState::Failed).then_some(())
    });
    let log = read(&env.log_file("a", "prod", "db-main"));
    assert!(
        log.contains("was made by PostgreSQL 14 and cannot run under PostgreSQL 15"),
        "{log}"
    );
    assert!(log.contains("pg_upgrade"), "says how to upgrade: {log}");
    assert!(
        std::fs::read_to_string(dir.join("data/PG_VERSION")).expect("kept") == "14\n",
        "the old folder is left as it was"
    );
}

#[test]
fn an_external_server_is_backed_up_and_a_wrong_password_or_no_server_is_said_plainly() {
    // A managed server to play the external one; `ext` reaches it by URL with its password in a
    // file, `wrong` with a bad password, `gone` at a port where nothing listens.
    let mut env = env_with(
        Kind::Postgres,
        r#"
[apps.a.env.ext]
databases = { main = { url = "postgresql://homeport@127.0.0.1:@P1@/main", password_file = "@HOME@/db-main/password" } }

[apps.a.env.wrong]
databases = { main = { url = "postgresql://homeport:not-the-password@127.0.0.1:@P1@/main" } }

[apps.a.env.gone]
databases = { main = { url = "postgresql://homeport:x@127.0.0.1:@P2@/main" } }
"#,
    );
    env.start_agent();
    wait_state(&env, "a/prod/db-main", ServiceState::Healthy);
    let db = Db::of(Kind::Postgres, &env);
    db.create_table();
    db.insert(7);

    let ok = env.cli(&["backup", "a/ext"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let ext: Vec<_> = env
        .block_on(env.client().backups(&"a/ext".parse().expect("target")))
        .expect("list")
        .into_iter()
        .flat_map(|e| e.backups)
        .collect();
    assert_eq!(ext.len(), 1);
    let kinds: Vec<_> = ext[0].artifacts.iter().map(|a| a.kind).collect();
    assert!(
        kinds.contains(&homeport_types::ArtifactKind::PostgresDump)
            && kinds.contains(&homeport_types::ArtifactKind::PostgresGlobals),
        "{kinds:?}"
    );
    let live = env.cli(&["restore", "a/ext"]);
    assert!(
        stderr(&live).contains("external server"),
        "a live restore into an external server is refused: {}",
        stderr(&live)
    );

    let wrong = env.cli(&["backup", "a/wrong"]);
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("refused the login of homeport: wrong password or user"),
        "{}",
        stderr(&wrong)
    );
    assert!(
        !stderr(&wrong).contains("not-the-password"),
        "never the password"
    );
    let gone = env.cli(&["backup", "a/gone"]);
    assert!(!gone.status.success());
    assert!(
        stderr(&gone).contains("cannot reach PostgreSQL main at 127.0.0.1"),
        "{}",
        stderr(&gone)
    );
    // Loud: each failure is an event.
    let failed = env
        .block_on(
            env.client()
                .event_history(&"a".parse().expect("target"), &["backup_failed"], 50),
        )
        .expect("history");
    let subjects: Vec<String> = failed.iter().map(|e| e.subject.to_string()).collect();
    assert!(subjects.contains(&"a/wrong".to_owned()), "{subjects:?}");
    assert!(subjects.contains(&"a/gone".to_owned()), "{subjects:?}");
}

/// A small file system mounted over the backups folder (root only).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &std::path::Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_during_a_dump_catalogues_nothing_and_is_loud() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: mounting a small file system needs root");
        return;
    }
    let mut env = env_with(Kind::Postgres, "");
    let backups = env.data.join("backups/a/prod");
    let Some(_disk) = SmallDisk::mount(&backups, "512k") else {
        panic!("cannot mount a tmpfs at {}", backups.display());
    };
    env.start_agent();
    wait_state(&env, "a/prod/db-main", ServiceState::Healthy);
    let db = Db::of(Kind::Postgres, &env);
    // About 8 MB that compresses poorly: more than the 512 KiB disk holds.
    db.run(
        "main",
        "CREATE TABLE big AS SELECT g, md5(random()::text) || md5(random()::text) AS a, \
         md5(random()::text) AS b FROM generate_series(1, 100000) g",
    );
    let out = env.cli(&["backup", "a/prod"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("is the disk full?"),
        "says why: {}",
        stderr(&out)
    );
    assert!(backups_of(&env).is_empty(), "nothing catalogued");
    assert!(partials(&backups).is_empty(), "{:?}", partials(&backups));
    let empty = std::fs::read_dir(&backups).expect("backups").count();
    assert_eq!(empty, 0, "nothing left on the disk");
    let failed = env
        .block_on(
            env.client()
                .event_history(&target(), &["backup_failed"], 10),
        )
        .expect("history");
    assert!(
        failed.iter().any(|e| matches!(
            &e.kind,
            EventKind::BackupFailed { trigger: BackupTrigger::Manual, error } if error.contains("disk full")
        )),
        "{failed:?}"
    );
}

#[test]
fn a_kill_9_of_the_agent_mid_dump_leaves_nothing_half_done() {
    let mut env = env_with(Kind::Postgres, "");
    env.start_agent();
    wait_state(&env, "a/prod/db-main", ServiceState::Healthy);
    let db = Db::of(Kind::Postgres, &env);
    // Enough data that the dump takes a moment.
    db.run(
        "main",
        "CREATE TABLE big AS SELECT g, md5(random()::text) AS a FROM generate_series(1, 1500000) g",
    );
    let backups = env.data.join("backups/a/prod");
    let mut backup = env
        .command_with(&["backup", "a/prod"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("a backup");
    wait_long(&env, "the dump is being written", || {
        partials(&backups)
            .iter()
            .any(|p| p.to_string_lossy().contains(".pgdump"))
            .then_some(())
    });
    env.kill_agent_hard();
    let _ = backup.wait();
    env.start_agent();
    wait_long(&env, "the half-written dump is swept", || {
        partials(&backups).is_empty().then_some(())
    });
    assert!(
        backups_of(&env).is_empty(),
        "nothing half-done is catalogued"
    );
    // The server was left running by the crash and is adopted; a new backup works.
    wait_state(&env, "a/prod/db-main", ServiceState::Healthy);
    let out = env.cli(&["backup", "a/prod"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(backups_of(&env).len(), 1);
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
}

#[test]
fn a_deploy_whose_migration_fails_gets_the_pre_deploy_dump_back() {
    let mut env = TestEnv::new(&format!(
        r#"
[apps.shop]
source = "@HOME@/src"
build = ["sh build.sh"]
artifacts = ["out"]
migrate = "sh {{release}}/out/migrate.sh"

[apps.shop.env.production]
databases = {{ main = {{ postgres = "15", port = @P1@, dir = "@HOME@/db-main"{user} }} }}
env = {{ DATABASE_URL = "{{db.main}}" }}
health_deadline = "20s"

[apps.shop.env.production.services.web]
command = ["{{release}}/out/app", "--port", "{{port}}"]
port = @P0@
health = {{ http = "/health", interval = "100ms" }}
"#,
        user = user_clause()
    ));
    open_to_all(env.dir.path());
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).expect("src");
    git(&src, &["init", "-q", "-b", "main"]);
    git(&src, &["config", "user.email", "t@example.invalid"]);
    git(&src, &["config", "user.name", "t"]);
    std::fs::write(
        src.join("build.sh"),
        format!(
            "set -e\nmkdir -p out\ncp '{}' out/app\ncp migrate.sh out/\n",
            fixture_bin().display()
        ),
    )
    .expect("build.sh");
    let migrate = |sql: &str, then: &str| {
        std::fs::write(
            src.join("migrate.sh"),
            format!(
                "set -e\npsql -X -q -v ON_ERROR_STOP=1 \"$DATABASE_URL\" -c \"{sql}\"\n{then}\n"
            ),
        )
        .expect("migrate.sh");
    };
    migrate("CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY)", "");
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "first"]);
    env.start_agent();
    let out = env.cli(&["deploy", "shop"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    wait_state(&env, "shop/production/db-main", ServiceState::Healthy);
    let password =
        std::fs::read_to_string(env.dir.path().join("db-main/password")).expect("password");
    let db = Db {
        kind: Kind::Postgres,
        port: env.ports[1],
        password: password.trim().to_owned(),
    };

    // A migration that only reads, then fails: nothing changed, so nothing is put back, and the
    // old release keeps its connections.
    migrate("SELECT count(*) FROM orders", "exit 3");
    git(&src, &["add", "-A"]);
    git(
        &src,
        &["commit", "-q", "-m", "a migration that writes nothing"],
    );
    let out = env.cli(&["deploy", "shop"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("the database had not changed, so nothing was restored"),
        "{}",
        stderr(&out)
    );

    db.run("main", "INSERT INTO orders SELECT generate_series(1, 100)");

    // A migration that drops data, then fails.
    migrate(
        "DROP TABLE orders; CREATE TABLE half_done (x int)",
        "exit 3",
    );
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "a bad migration"]);
    let out = env.cli(&["deploy", "shop"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("the database from before the deploy was put back in place")
            && stderr(&out).contains(
                "what was written to main since the backup was discarded (kept in safety backup"
            ),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        db.run("main", "SELECT count(*) FROM orders").trim(),
        "100",
        "the orders are back"
    );
    assert_eq!(
        db.run(
            "main",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'half_done'"
        )
        .trim(),
        "0",
        "the half-applied migration is gone"
    );
    wait_state(&env, "shop/production/web", ServiceState::Healthy);
    let st = env.status();
    assert_eq!(
        service(&st, "shop/production/db-main").restarts,
        0,
        "the server ran through the deploy and its undo"
    );
}
