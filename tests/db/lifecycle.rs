//! Each engine through its life: first start (initialise), a writer committing continuously,
//! backups during the writes, a restore while the app runs, and a restore the app cannot live
//! with, which puts the safety copy back.

use homeport_types::{RestoreRequest, ServiceState};

use crate::engines::*;
use crate::util::*;

fn lifecycle(kind: Kind) {
    let mut env = env_with(kind, "");
    env.start_agent();
    wait_state(&env, "a/prod/db-main", ServiceState::Healthy);
    let db = Db::of(kind, &env);
    // Homeport's own files: private.
    for f in ["password", "version"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.dir.path().join("db-main").join(f))
            .expect(f)
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{f} is private: {mode:o}");
    }
    assert!(
        !env.agent_log().contains(&db.password),
        "the password is never logged"
    );
    let shown = env.cli(&["show", "a/prod/app"]);
    assert!(
        !stdout(&shown).contains(&db.password),
        "show masks the URL: {}",
        stdout(&shown)
    );
    db.create_table();
    // A table outside InnoDB is not in --single-transaction's snapshot: every backup says so.
    if kind == Kind::Mariadb {
        db.run("main", "CREATE TABLE notes (x INT) ENGINE=MyISAM");
    }

    // Backups while a client commits row after row: each holds every row acknowledged before it
    // began, and the client never sees an error.
    let writer = db.start_writer();
    wait_long(&env, "the writer has committed rows", || {
        (writer.acked() > 20).then_some(())
    });
    let mut taken = Vec::new();
    for _ in 0..3 {
        let before = writer.acked();
        let info = env
            .block_on(env.client().backup(&target()))
            .expect("a backup during the writes");
        assert!(info.verified, "checked when taken");
        let warnings: Vec<&String> = info
            .artifacts
            .iter()
            .filter_map(|a| a.warning.as_ref())
            .collect();
        match kind {
            Kind::Mariadb => assert!(
                warnings.len() == 1 && warnings[0].contains("notes (MyISAM)"),
                "the MyISAM table is named, and only it: {warnings:?}"
            ),
            _ => assert!(warnings.is_empty(), "{warnings:?}"),
        }
        taken.push((info.id, before));
        let after = writer.acked();
        wait_long(&env, "the writer goes on", || {
            (writer.acked() > after + 5).then_some(())
        });
    }
    let last = writer.stop().expect("the writer saw no error");
    assert!(last > 40, "rows were written throughout ({last})");
    for (id, before) in &taken {
        let file = backup_file(&env, *id, kind.key());
        let rows = db.rows_in_backup(&file, &format!("scratch_{id}"));
        let missing: Vec<i64> = (1..=*before).filter(|v| !rows.contains(v)).collect();
        assert!(
            missing.is_empty(),
            "backup {id} lacks rows acknowledged before it began: {missing:?}"
        );
    }
    let verified = env
        .block_on(env.client().verify_backup(taken[0].0))
        .expect("verify");
    assert!(verified.ok, "{:?}", verified.problems);

    // The app needs `app_ready`, which none of the backups above has.
    db.mark_ready();
    assert!(env.cli(&["start", "a/prod/app"]).status.success());
    wait_state(&env, "a/prod/app", ServiceState::Healthy);
    db.insert(1_000_000);
    let good = env
        .block_on(env.client().backup(&target()))
        .expect("backup");

    // A restore the app cannot run on: the safety copy comes back, and the app with it.
    let bad = env.block_on(env.client().restore(&RestoreRequest {
        target: target(),
        backup: Some(taken[2].0),
        database: None,
        path: None,
        to: None,
    }));
    let err = bad.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("the previous database is back in place and its services run"),
        "{err}"
    );
    wait_state(&env, "a/prod/app", ServiceState::Healthy);
    assert!(
        db.rows().contains(&1_000_000),
        "the row written after the backup is back"
    );

    // A restore while the app runs: the app stops, the backup goes in, the app comes back.
    db.insert(2_000_000);
    let out = env
        .block_on(env.client().restore(&RestoreRequest {
            target: target(),
            backup: Some(good.id),
            database: None,
            path: None,
            to: None,
        }))
        .expect("a restore of a good backup");
    assert!(!out.safety_copies.is_empty(), "a safety copy was kept");
    wait_state(&env, "a/prod/app", ServiceState::Healthy);
    let rows = db.rows();
    assert!(rows.contains(&1_000_000));
    assert!(
        !rows.contains(&2_000_000),
        "the database is the backup's, without the later row"
    );
    assert!(rows.contains(&last), "and with every row of the writer");

    // Stopped the way the server wants: no crash, no kill.
    assert!(env.cli(&["stop", "a/prod"]).status.success());
    let st = env.status();
    let server = service(&st, "a/prod/db-main");
    assert_eq!(server.state, ServiceState::Stopped, "{server:?}");
    let log = read(&env.log_file("a", "prod", "db-main"));
    let clean = match kind {
        Kind::Postgres => "database system is shut down",
        Kind::Mariadb => "Shutdown complete",
        Kind::Redis => "Redis is now ready to exit",
    };
    assert!(log.contains(clean), "a clean shutdown:\n{log}");
}

#[test]
fn postgres_runs_backs_up_under_writes_and_restores_safely() {
    lifecycle(Kind::Postgres);
}

#[test]
fn mariadb_runs_backs_up_under_writes_and_restores_safely() {
    lifecycle(Kind::Mariadb);
}

#[test]
fn redis_runs_backs_up_under_writes_and_restores_safely() {
    lifecycle(Kind::Redis);
}
