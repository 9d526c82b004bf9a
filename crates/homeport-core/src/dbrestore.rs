//! Restoring database servers, in the steps of a SQLite restore: check, keep a safety copy,
//! swap, and put the safety copy back when the app does not come up.
//!
//! The safety copy is the same for every engine: with the app stopped, each live database is
//! dumped into the restore's safety backup (catalogued with trigger `safety`, like SQLite's).
//! - PostgreSQL: the backup restored into a new database beside the live one (while the app
//!   still runs on the old one); with the app stopped, the live database renamed aside and the
//!   new one renamed into its place — two catalogue updates. Putting back is the same two
//!   renames the other way.
//! - MariaDB has no RENAME DATABASE: the backup is first loaded into a new database to prove it
//!   loads; with the app stopped, the live database is emptied and the dump loaded into it.
//!   Putting back loads the safety dump the same way.
//! - Redis: the backup's snapshot checked beside the live one; with the app stopped, the server
//!   stopped (it saves on the way down), the snapshot renamed into place, the server started and
//!   waited for. Putting back does the same with the safety snapshot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use homeport_backup::{Artifact, ArtifactKind, BackupError, server};
use homeport_config::{DbServer, EnvSpec};
use homeport_db::{Conn, client};
use homeport_types::{BackupInfo, ServiceKey, Target};

use crate::Core;
use crate::backups::BackupOpError;

/// One server database made ready to swap in.
// A few per restore, built once and moved a few times: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Staged {
    Postgres {
        name: String,
        conn: Conn,
        db: String,
        tmp: String,
        aside: String,
    },
    Mariadb {
        name: String,
        conn: Conn,
        db: String,
        tmp: String,
        artifact: Artifact,
        set_dir: PathBuf,
    },
    Redis {
        name: String,
        conn: Conn,
        key: ServiceKey,
        staged: PathBuf,
        live: PathBuf,
        owner: Option<String>,
    },
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackupError> + Send + 'static,
) -> Result<T, BackupOpError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackupOpError::Internal(e.to_string()))?
        .map_err(BackupOpError::from)
}

/// The managed server of `name`, or why it cannot be restored live.
fn managed<'a>(env: &'a EnvSpec, name: &str) -> Result<&'a homeport_db::Server, BackupOpError> {
    match env.servers.get(name) {
        Some(DbServer::Managed(s)) => Ok(s),
        Some(DbServer::External { .. }) => Err(BackupOpError::Refused(format!(
            "{name} is an external server: Homeport backs it up but does not restore into it; \
             write the backup's copy out with `--to FILE` and load it with the server's own tools"
        ))),
        None => Err(BackupOpError::Refused(format!(
            "{}/{} no longer has a database named {name}; write the backup's copy out with --to",
            env.app, env.env
        ))),
    }
}

/// `shop` → `shop__restore_20261203t221500z`: within PostgreSQL's 63-byte names.
fn side_name(db: &str, what: &str, stamp: &str) -> String {
    let mut base: String = db.chars().take(30).collect();
    base.push_str(&format!("__{what}_{stamp}"));
    base
}

/// Loads the dump `a` into a new scratch database beside the one it belongs to; returns that
/// database's name and the scratch one's. A dump that does not load leaves no scratch database.
fn load_beside(
    conn: &Conn,
    set_dir: &Path,
    a: &Artifact,
    stamp: &str,
) -> Result<(String, String), BackupError> {
    let db = a.database.clone().unwrap_or_else(|| conn.database.clone());
    let tmp = side_name(&db, "restore", stamp);
    client::drop_database(conn, &tmp)?;
    client::create_database(conn, &tmp)?;
    if let Err(e) = server::load_dump(&conn.with_database(&tmp), set_dir, a) {
        let _ = client::drop_database(conn, &tmp);
        return Err(e);
    }
    Ok((db, tmp))
}

/// The server artifacts of `info` that a restore selecting `database` puts back.
pub(crate) fn selected(info_artifacts: &[Artifact], database: Option<&str>) -> Vec<Artifact> {
    info_artifacts
        .iter()
        .filter(|a| a.kind.is_server() && a.kind.is_database())
        .filter(|a| database.is_none_or(|d| d == a.name))
        .cloned()
        .collect()
}

/// Checks the server artifacts and loads what can be loaded beside the live data — while the
/// app still runs.
pub(crate) async fn stage(
    env: &EnvSpec,
    set_dir: &Path,
    arts: &[Artifact],
) -> Result<Vec<Staged>, BackupOpError> {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    let mut out: Vec<Staged> = Vec::new();
    for a in arts {
        let s = match managed(env, &a.name) {
            Ok(s) => s.clone(),
            Err(e) => {
                for done in out {
                    discard(done).await;
                }
                return Err(e);
            }
        };
        let conn = s
            .conn()
            .map_err(|e| BackupOpError::Refused(e.to_string()))?;
        let (set_dir, a, stamp) = (set_dir.to_path_buf(), a.clone(), stamp.clone());
        let name = a.name.clone();
        let staged = match a.kind {
            ArtifactKind::PostgresDump => {
                blocking(move || {
                    let (db, tmp) = load_beside(&conn, &set_dir, &a, &stamp)?;
                    Ok(Staged::Postgres {
                        name,
                        aside: side_name(&db, "before", &stamp),
                        conn,
                        db,
                        tmp,
                    })
                })
                .await
            }
            ArtifactKind::MariadbDump => {
                blocking(move || {
                    // Loaded once beside the live database: the proof that it loads.
                    let (db, tmp) = load_beside(&conn, &set_dir, &a, &stamp)?;
                    Ok(Staged::Mariadb {
                        name,
                        conn,
                        db,
                        tmp,
                        artifact: a,
                        set_dir,
                    })
                })
                .await
            }
            ArtifactKind::RedisRdb => {
                let key = ServiceKey::new(&env.app, &env.env, DbServer::service_name(&a.name));
                let live = s.rdb_file();
                let owner = s.user.clone();
                blocking(move || {
                    let staged = live.with_extension("rdb.from-backup");
                    let _ = std::fs::remove_file(&staged);
                    homeport_backup::restore::extract_checked(&set_dir, &a, &staged)
                        .and_then(|()| {
                            client::redis_check_rdb(&conn.bins, &staged).map_err(Into::into)
                        })
                        .inspect_err(|_| {
                            let _ = std::fs::remove_file(&staged);
                        })?;
                    Ok(Staged::Redis {
                        name,
                        conn,
                        key,
                        staged,
                        live,
                        owner,
                    })
                })
                .await
            }
            _ => continue,
        };
        match staged {
            Ok(x) => out.push(x),
            Err(e) => {
                for done in out {
                    discard(done).await;
                }
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// What the safety copy of the staged databases holds: each live database (or Redis), dumped
/// with the app stopped, so it has every write the app made.
pub(crate) fn safety_sources(staged: &[Staged]) -> Vec<(String, homeport_backup::ServerSource)> {
    staged
        .iter()
        .map(|s| {
            let (name, conn) = match s {
                Staged::Postgres { name, conn, db, .. }
                | Staged::Mariadb { name, conn, db, .. } => (name, conn.with_database(db)),
                // Over the replication protocol (`redis-cli --rdb`): it does not race the
                // server's own snapshot file.
                Staged::Redis { name, conn, .. } => (name, conn.clone()),
            };
            (
                name.clone(),
                homeport_backup::ServerSource {
                    conn,
                    all_databases: false,
                    rdb_file: None,
                },
            )
        })
        .collect()
}

/// The artifact of the safety backup that holds what `s` replaced.
fn safety_artifact(safety: Option<&BackupInfo>, s: &Staged) -> Option<(PathBuf, Artifact)> {
    let safety = safety?;
    let (name, kind, db) = match s {
        Staged::Postgres { name, db, .. } => (name, ArtifactKind::PostgresDump, Some(db)),
        Staged::Mariadb { name, db, .. } => (name, ArtifactKind::MariadbDump, Some(db)),
        Staged::Redis { name, .. } => (name, ArtifactKind::RedisRdb, None),
    };
    safety
        .artifacts
        .iter()
        .find(|a| &a.name == name && a.kind == kind && (db.is_none() || a.database.as_ref() == db))
        .map(|a| (PathBuf::from(&safety.dir), a.clone()))
}

/// With the app stopped: swaps each staged database in. If one fails, those already swapped
/// are put back.
pub(crate) async fn swap(
    core: &Core,
    staged: Vec<Staged>,
    safety: Option<&BackupInfo>,
) -> Result<Vec<Staged>, BackupOpError> {
    let mut done: Vec<Staged> = Vec::new();
    let mut rest = staged.into_iter();
    while let Some(s) = rest.next() {
        let result = swap_one(core, &s).await;
        match result {
            Ok(()) => done.push(s),
            Err(e) => {
                for left in rest.by_ref() {
                    discard(left).await;
                }
                let undone = put_back(core, std::mem::take(&mut done), safety).await;
                discard(s).await;
                return Err(match undone {
                    Ok(()) => e,
                    Err(u) => BackupOpError::Refused(format!(
                        "{e}; putting back the databases already restored failed too: {u}"
                    )),
                });
            }
        }
    }
    Ok(done)
}

async fn swap_one(core: &Core, s: &Staged) -> Result<(), BackupOpError> {
    match s {
        Staged::Postgres {
            conn,
            db,
            tmp,
            aside,
            ..
        } => {
            let (conn, db, tmp, aside) = (conn.clone(), db.clone(), tmp.clone(), aside.clone());
            blocking(move || {
                if client::database_exists(&conn, &db)? {
                    client::pg_rename_database(&conn, &db, &aside)?;
                }
                if let Err(e) = client::pg_rename_database(&conn, &tmp, &db) {
                    let _ = client::pg_rename_database(&conn, &aside, &db);
                    return Err(e.into());
                }
                Ok(())
            })
            .await
        }
        Staged::Mariadb {
            conn,
            db,
            artifact,
            set_dir,
            ..
        } => {
            let (conn, db, a, dir) = (conn.clone(), db.clone(), artifact.clone(), set_dir.clone());
            blocking(move || reload_mariadb(&conn, &db, &dir, &a)).await
        }
        Staged::Redis {
            key,
            staged,
            live,
            owner,
            ..
        } => {
            let (staged, live, owner) = (staged.clone(), live.clone(), owner.clone());
            replace_redis(core, key, move || {
                std::fs::rename(&staged, &live).map_err(|e| BackupError::Io(live.clone(), e))?;
                chown_to(&live, owner.as_deref())
            })
            .await
        }
    }
}

fn reload_mariadb(conn: &Conn, db: &str, dir: &Path, a: &Artifact) -> Result<(), BackupError> {
    client::drop_database(conn, db)?;
    client::create_database(conn, db)?;
    server::load_dump(&conn.with_database(db), dir, a)
}

/// Stops the Redis service (it saves on the way down), changes its snapshot file, starts it and
/// waits until it answers.
async fn replace_redis(
    core: &Core,
    key: &ServiceKey,
    change: impl FnOnce() -> Result<(), BackupError> + Send + 'static,
) -> Result<(), BackupOpError> {
    let t = Target::Service(key.clone());
    let _ = core.supervisor().stop(&t).await;
    let changed = blocking(change).await;
    let started = core.supervisor().start(&t, Duration::from_secs(60)).await;
    changed?;
    if let Err(e) = started {
        return Err(BackupOpError::Refused(format!("{key} did not start: {e}")));
    }
    crate::deploy::wait_ready(core, std::slice::from_ref(key), Duration::from_secs(120))
        .await
        .map_err(|e| BackupOpError::Refused(format!("{key} did not come back: {e}")))
}

fn chown_to(path: &Path, owner: Option<&str>) -> Result<(), BackupError> {
    if let Some(name) = owner
        && nix::unistd::geteuid().is_root()
        && let Ok(Some(u)) = nix::unistd::User::from_name(name)
    {
        std::os::unix::fs::chown(path, Some(u.uid.as_raw()), Some(u.gid.as_raw()))
            .map_err(|e| BackupError::Io(path.to_path_buf(), e))?;
    }
    Ok(())
}

/// Puts back what the swapped databases held before the restore: PostgreSQL's by renaming the
/// old database back; MariaDB's and Redis's from the safety backup.
pub(crate) async fn put_back(
    core: &Core,
    swapped: Vec<Staged>,
    safety: Option<&BackupInfo>,
) -> Result<(), BackupOpError> {
    let mut errors = Vec::new();
    for s in swapped.into_iter().rev() {
        let copy = safety_artifact(safety, &s);
        let r = match s {
            Staged::Postgres {
                conn,
                db,
                tmp,
                aside,
                ..
            } => {
                blocking(move || {
                    // The restored one goes back to its side name, the old one to its own.
                    client::pg_rename_database(&conn, &db, &tmp)?;
                    if client::database_exists(&conn, &aside)? {
                        client::pg_rename_database(&conn, &aside, &db)?;
                    }
                    client::drop_database(&conn, &tmp)?;
                    Ok(())
                })
                .await
            }
            Staged::Mariadb { conn, db, tmp, .. } => {
                blocking(move || {
                    match &copy {
                        Some((dir, a)) => reload_mariadb(&conn, &db, dir, a)?,
                        // It did not exist before the restore.
                        None => client::drop_database(&conn, &db)?,
                    }
                    client::drop_database(&conn, &tmp)?;
                    Ok(())
                })
                .await
            }
            Staged::Redis {
                key, live, owner, ..
            } => {
                replace_redis(core, &key, move || {
                    let Some((dir, a)) = copy else {
                        return Ok(());
                    };
                    let tmp = live.with_extension("rdb.safety");
                    let _ = std::fs::remove_file(&tmp);
                    homeport_backup::restore::extract_checked(&dir, &a, &tmp)?;
                    std::fs::rename(&tmp, &live).map_err(|e| BackupError::Io(live.clone(), e))?;
                    chown_to(&live, owner.as_deref())
                })
                .await
            }
        };
        if let Err(e) = r {
            errors.push(e.to_string());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(BackupOpError::Refused(errors.join("; ")))
    }
}

/// After a restore that held: what was kept aside goes (the safety backup stays).
pub(crate) async fn finish(swapped: Vec<Staged>) {
    for s in swapped {
        discard_aside(s).await;
    }
}

async fn discard_aside(s: Staged) {
    let r = match s {
        Staged::Postgres { conn, aside, .. } => {
            blocking(move || client::drop_database(&conn, &aside).map_err(Into::into)).await
        }
        Staged::Mariadb { conn, tmp, .. } => {
            blocking(move || client::drop_database(&conn, &tmp).map_err(Into::into)).await
        }
        Staged::Redis { .. } => Ok(()),
    };
    if let Err(e) = r {
        tracing::warn!("after the restore: {e}");
    }
}

/// A staged database that will not be swapped in.
pub(crate) async fn discard(s: Staged) {
    let r = match s {
        Staged::Postgres { conn, tmp, .. } | Staged::Mariadb { conn, tmp, .. } => {
            blocking(move || client::drop_database(&conn, &tmp).map_err(Into::into)).await
        }
        Staged::Redis { staged, .. } => {
            let _ = std::fs::remove_file(staged);
            Ok(())
        }
    };
    if let Err(e) = r {
        tracing::warn!("discarding a staged restore: {e}");
    }
}

/// The write mark (see [`client::write_mark`]) of each database server Homeport runs for `env`,
/// `None` where it could not be read. External servers are left out: a failed deploy never
/// restores into them.
pub(crate) async fn write_marks(env: &EnvSpec) -> Vec<Option<String>> {
    let conns: Vec<Option<Conn>> = env
        .servers
        .values()
        .filter_map(|s| match s {
            DbServer::Managed(m) => Some(m.conn().ok()),
            DbServer::External { .. } => None,
        })
        .collect();
    tokio::task::spawn_blocking(move || {
        conns
            .iter()
            .map(|c| c.as_ref().and_then(|c| client::write_mark(c).ok()))
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// Whether anything was written between two readings of [`write_marks`]; a mark that could
/// not be read counts as moved.
pub(crate) fn marks_moved(before: &[Option<String>], after: &[Option<String>]) -> bool {
    before.len() != after.len()
        || before
            .iter()
            .zip(after)
            .any(|(b, a)| b.is_none() || a.is_none() || b != a)
}

/// The keys of the environment's database services.
pub(crate) fn server_keys(core: &Core, env: &EnvSpec) -> Vec<ServiceKey> {
    core.config()
        .services
        .iter()
        .filter(|s| s.key.app == env.app && s.key.env == env.env && s.database.is_some())
        .map(|s| s.key.clone())
        .collect()
}

/// Starts the environment's database services (a no-op for those running) and waits for them.
pub(crate) async fn ensure_servers(core: &Core, env: &EnvSpec) -> Result<(), BackupOpError> {
    let keys = server_keys(core, env);
    if keys.is_empty() {
        return Ok(());
    }
    for k in &keys {
        let _ = core
            .supervisor()
            .start(&Target::Service(k.clone()), Duration::from_secs(60))
            .await;
    }
    crate::deploy::wait_ready(core, &keys, Duration::from_secs(120))
        .await
        .map_err(|e| BackupOpError::Refused(format!("the database server is not up: {e}")))
}
