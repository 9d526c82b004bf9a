//! Talking to a server through its own client programs (psql, pg_dump, mariadb, redis-cli…).
//! The password goes in the child's environment (PGPASSWORD, MYSQL_PWD, REDISCLI_AUTH), which
//! only the same user can read — never on a command line, which every local user can.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::serve::{my_ident, pg_ident};
use crate::{Conn, DbError, Engine};

/// A command of `role` (`dump`, `client`…) set up to reach `conn`'s server, logged in.
pub fn command(conn: &Conn, role: &str) -> Result<Command, DbError> {
    let mut cmd = Command::new(conn.bins.tool(role)?);
    cmd.stdin(Stdio::null());
    match conn.engine {
        Engine::Postgres => {
            cmd.args(["-h", &conn.host, "-p", &conn.port.to_string()]);
            cmd.args(["-U", &conn.user]);
            cmd.env("PGCONNECT_TIMEOUT", "10");
            // No ~/.pgpass or service file of whoever runs the agent gets in the way.
            cmd.env("PGPASSFILE", "/dev/null");
            match &conn.password {
                Some(p) => cmd.env("PGPASSWORD", p),
                None => cmd.env_remove("PGPASSWORD"),
            };
        }
        Engine::Mariadb => {
            // --no-defaults must come first.
            cmd.args(["--no-defaults", "--protocol=TCP", "-h", &conn.host]);
            cmd.args(["-P", &conn.port.to_string(), "-u", &conn.user]);
            // mariadb-dump has no such option.
            if role != "dump" {
                cmd.arg("--connect-timeout=10");
            }
            match &conn.password {
                Some(p) => cmd.env("MYSQL_PWD", p),
                None => cmd.env_remove("MYSQL_PWD"),
            };
        }
        Engine::Redis => {
            cmd.args(["--no-auth-warning", "-h", &conn.host]);
            cmd.args(["-p", &conn.port.to_string()]);
            if !conn.user.is_empty() {
                cmd.args(["--user", &conn.user]);
            }
            match &conn.password {
                Some(p) => cmd.env("REDISCLI_AUTH", p),
                None => cmd.env_remove("REDISCLI_AUTH"),
            };
        }
    }
    Ok(cmd)
}

/// Turns a client's error output into what happened, in words.
pub fn explain(conn: &Conn, stderr: &str) -> String {
    let s = stderr.trim();
    let lower = s.to_ascii_lowercase();
    let who = conn.describe();
    if lower.contains("password authentication failed")
        || lower.contains("access denied")
        || lower.contains("wrongpass")
        || lower.contains("noauth")
        || lower.contains("invalid password")
        || lower.contains("no password supplied")
    {
        return format!(
            "{who} refused the login of {}: wrong password or user. Check the URL's user and \
             `password_file`",
            if conn.user.is_empty() {
                "the default user"
            } else {
                &conn.user
            }
        );
    }
    if lower.contains("connection refused")
        || lower.contains("could not connect")
        || lower.contains("can't connect")
        || lower.contains("no route to host")
        || lower.contains("timeout expired")
        || lower.contains("could not translate host name")
        || lower.contains("unknown server host")
    {
        return format!(
            "cannot reach {who}: nothing answers there (is the server running, and is the host \
             and port right?)"
        );
    }
    if lower.contains("does not exist") || lower.contains("unknown database") {
        return format!("{who}: {}", last_line(s));
    }
    format!("{who}: {}", last_line(s))
}

fn last_line(s: &str) -> &str {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
}

/// Runs `cmd`; its standard output, or its error in words.
fn output(conn: &Conn, mut cmd: Command) -> Result<String, DbError> {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| DbError::Failed(format!("cannot run a client of {}: {e}", conn.describe())))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // redis-cli answers an error reply with exit status 0 and the error on stdout.
    let redis_error = conn.engine == Engine::Redis
        && (stdout.starts_with("ERR")
            || stdout.starts_with("NOAUTH")
            || stdout.starts_with("WRONGPASS")
            || stdout.starts_with("(error)"));
    if out.status.success() && !redis_error {
        Ok(stdout)
    } else {
        Err(DbError::Failed(explain(
            conn,
            &format!("{stderr}\n{stdout}"),
        )))
    }
}

/// Runs one SQL statement in `conn`'s database; rows as tab-separated lines.
pub fn query(conn: &Conn, sql: &str) -> Result<String, DbError> {
    let mut cmd = command(conn, "client")?;
    match conn.engine {
        Engine::Postgres => {
            cmd.args(["-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1"]);
            cmd.args(["-d", &conn.database, "-c", sql]);
        }
        Engine::Mariadb => {
            cmd.args(["--batch", "--skip-column-names", "-e", sql, &conn.database]);
        }
        Engine::Redis => {
            return Err(DbError::Failed("Redis has no SQL".into()));
        }
    }
    output(conn, cmd)
}

/// Runs a Redis command; its reply.
pub fn redis(conn: &Conn, args: &[&str]) -> Result<String, DbError> {
    let mut cmd = command(conn, "client")?;
    cmd.args(["-n", &conn.database]).args(args);
    output(conn, cmd)
}

/// Logs in and asks the server to answer: the check that an external server is reachable,
/// and the managed MariaDB and Redis health check.
pub fn ping(conn: &Conn) -> Result<(), DbError> {
    match conn.engine {
        Engine::Postgres => query(conn, "SELECT 1").map(drop),
        Engine::Mariadb => {
            let mut cmd = command(conn, "admin")?;
            cmd.arg("ping");
            output(conn, cmd).map(drop)
        }
        Engine::Redis => {
            let reply = redis(conn, &["PING"])?;
            if reply.trim() == "PONG" {
                Ok(())
            } else {
                Err(DbError::Failed(format!(
                    "{} answered {:?} to PING",
                    conn.describe(),
                    reply.trim()
                )))
            }
        }
    }
}

/// The databases of a PostgreSQL server worth backing up: every one but the templates and the
/// empty `postgres` maintenance database.
pub fn pg_databases(conn: &Conn) -> Result<Vec<String>, DbError> {
    let rows = query(
        &conn.with_database("postgres"),
        "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' \
         ORDER BY datname",
    )?;
    Ok(rows.lines().map(str::to_owned).collect())
}

/// `pg_dump -Fc` of one database to standard output. With `compress_later` the dump is not
/// compressed by pg_dump (zstd is faster and smaller, and Homeport compresses the stream).
pub fn pg_dump(conn: &Conn, compress_later: bool) -> Result<Command, DbError> {
    let mut cmd = command(conn, "dump")?;
    cmd.args(["-Fc", "-d", &conn.database]);
    if compress_later {
        cmd.arg("-Z0");
    }
    Ok(cmd)
}

/// `pg_dumpall --globals-only`: roles and tablespaces, which per-database dumps leave out.
pub fn pg_dumpall_globals(conn: &Conn) -> Result<Command, DbError> {
    let mut cmd = command(conn, "dumpall")?;
    cmd.args(["--globals-only", "-d"]).arg(format!(
        "dbname={} connect_timeout=10",
        if conn.database.is_empty() {
            "postgres"
        } else {
            &conn.database
        }
    ));
    Ok(cmd)
}

/// `pg_restore --list` reading a dump from standard input: fails on a damaged dump.
pub fn pg_restore_list(bins: &crate::Bins) -> Result<Command, DbError> {
    let mut cmd = Command::new(bins.tool("restore")?);
    cmd.arg("--list");
    Ok(cmd)
}

/// `pg_restore` of a dump on standard input into `conn`'s database (which exists, empty).
pub fn pg_restore(conn: &Conn) -> Result<Command, DbError> {
    let mut cmd = command(conn, "restore")?;
    cmd.args(["--exit-on-error", "--no-owner", "-d", &conn.database]);
    Ok(cmd)
}

/// The dump of one MariaDB database, consistent without locking InnoDB tables.
pub fn mariadb_dump(conn: &Conn) -> Result<Command, DbError> {
    let mut cmd = command(conn, "dump")?;
    cmd.args([
        "--single-transaction",
        "--routines",
        "--events",
        "--triggers",
        "--hex-blob",
        "--quick",
        &conn.database,
    ]);
    Ok(cmd)
}

/// Loading an SQL dump on standard input into `conn`'s database.
pub fn mariadb_load(conn: &Conn) -> Result<Command, DbError> {
    let mut cmd = command(conn, "client")?;
    cmd.args(["--batch", &conn.database]);
    Ok(cmd)
}

/// Tables of the database that a `--single-transaction` dump cannot copy consistently.
pub fn mariadb_nontransactional(conn: &Conn) -> Result<Vec<String>, DbError> {
    let rows = query(
        conn,
        &format!(
            "SELECT CONCAT(table_name, ' (', engine, ')') FROM information_schema.tables \
             WHERE table_schema = '{}' AND table_type = 'BASE TABLE' \
             AND engine <> 'InnoDB' ORDER BY table_name",
            conn.database.replace('\'', "''")
        ),
    )?;
    Ok(rows.lines().map(str::to_owned).collect())
}

/// Makes a new empty database.
pub fn create_database(conn: &Conn, name: &str) -> Result<(), DbError> {
    match conn.engine {
        Engine::Postgres => query(
            &conn.with_database("postgres"),
            &format!("CREATE DATABASE {}", pg_ident(name)),
        )
        .map(drop),
        Engine::Mariadb => query(
            &conn.with_database(""),
            &format!("CREATE DATABASE {}", my_ident(name)),
        )
        .map(drop),
        Engine::Redis => Err(DbError::Failed("Redis has no named databases".into())),
    }
}

/// Drops a database if it exists (closing PostgreSQL sessions on it first).
pub fn drop_database(conn: &Conn, name: &str) -> Result<(), DbError> {
    match conn.engine {
        Engine::Postgres => {
            let admin = conn.with_database("postgres");
            query(
                &admin,
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", pg_ident(name)),
            )
            .map(drop)
        }
        Engine::Mariadb => query(
            &conn.with_database(""),
            &format!("DROP DATABASE IF EXISTS {}", my_ident(name)),
        )
        .map(drop),
        Engine::Redis => Err(DbError::Failed("Redis has no named databases".into())),
    }
}

/// A mark that moves whenever anything is written to the server, to tell by comparing two
/// whether a step (a failed migration) wrote anything between them. It may move without a
/// write of the app's — an automatic ANALYZE, a snapshot — but never stays put over one:
/// - PostgreSQL: the next transaction id (every transaction that writes takes one, unlogged and
///   temporary tables included; a read-only one does not);
/// - MariaDB: InnoDB's log sequence number, and the counts of statements that change tables
///   (for those outside InnoDB);
/// - Redis: the writes since the last snapshot, and the number of snapshots.
pub fn write_mark(conn: &Conn) -> Result<String, DbError> {
    match conn.engine {
        Engine::Postgres => Ok(
            query(conn, "SELECT txid_snapshot_xmax(txid_current_snapshot())")?
                .trim()
                .to_owned(),
        ),
        Engine::Mariadb => {
            let rows = query(
                conn,
                "SHOW GLOBAL STATUS WHERE Variable_name IN ('Innodb_lsn_current', 'Com_insert', \
                 'Com_insert_select', 'Com_update', 'Com_update_multi', 'Com_delete', \
                 'Com_delete_multi', 'Com_replace', 'Com_replace_select', 'Com_load', \
                 'Com_create_table', 'Com_alter_table', 'Com_drop_table', 'Com_rename_table', \
                 'Com_truncate', 'Com_create_index', 'Com_drop_index', 'Com_create_db', \
                 'Com_drop_db')",
            )?;
            if !rows.contains("Innodb_lsn_current") {
                return Err(DbError::Failed(format!(
                    "{} did not say its InnoDB log position",
                    conn.describe()
                )));
            }
            let mut rows: Vec<&str> = rows.lines().map(str::trim).collect();
            rows.sort_unstable();
            Ok(rows.join(";"))
        }
        Engine::Redis => {
            let info = redis(conn, &["INFO", "persistence"])?;
            let field = |k: &str| {
                info_field(&info, k).ok_or_else(|| {
                    DbError::Failed(format!("{} did not say its {k}", conn.describe()))
                })
            };
            Ok(format!(
                "{}:{}:{}",
                field("rdb_changes_since_last_save")?.trim(),
                field("rdb_saves")?.trim(),
                field("rdb_last_save_time")?.trim()
            ))
        }
    }
}

/// Renames a PostgreSQL database, closing any session still on it first.
pub fn pg_rename_database(conn: &Conn, from: &str, to: &str) -> Result<(), DbError> {
    let admin = conn.with_database("postgres");
    query(
        &admin,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
            from.replace('\'', "''")
        ),
    )?;
    query(
        &admin,
        &format!(
            "ALTER DATABASE {} RENAME TO {}",
            pg_ident(from),
            pg_ident(to)
        ),
    )
    .map(drop)
}

/// Whether a database exists.
pub fn database_exists(conn: &Conn, name: &str) -> Result<bool, DbError> {
    let rows = match conn.engine {
        Engine::Postgres => query(
            &conn.with_database("postgres"),
            &format!(
                "SELECT 1 FROM pg_database WHERE datname = '{}'",
                name.replace('\'', "''")
            ),
        )?,
        Engine::Mariadb => query(
            &conn.with_database(""),
            &format!(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = '{}'",
                name.replace('\'', "''")
            ),
        )?,
        Engine::Redis => return Ok(true),
    };
    Ok(!rows.trim().is_empty())
}

fn info_field(info: &str, key: &str) -> Option<String> {
    info.lines().find_map(|l| {
        l.trim()
            .strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::to_owned)
    })
}

/// Asks Redis for a new snapshot and waits until it is written: `BGSAVE`, then
/// `rdb_bgsave_in_progress` back to 0 with a newer `rdb_last_save_time` and
/// `rdb_last_bgsave_status:ok`. A snapshot already running when asked started before the
/// backup, so it does not count: one is asked for again when it ends.
pub fn redis_bgsave(conn: &Conn, patience: Duration) -> Result<(), DbError> {
    let started = Instant::now();
    let persistence = |c: &Conn| redis(c, &["INFO", "persistence"]);
    let before = persistence(conn)?;
    // `rdb_saves` (Redis 7) counts snapshots; older servers only have the second of the last
    // one, so a snapshot within the same second would go unseen: wait for the next second.
    let saves_before = info_field(&before, "rdb_saves");
    let last_before = info_field(&before, "rdb_last_save_time").unwrap_or_default();
    if saves_before.is_none() {
        let second = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        };
        let start = second(std::time::SystemTime::now());
        while second(std::time::SystemTime::now()) == start {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut asked = false;
    loop {
        if !asked {
            let reply = redis(conn, &["BGSAVE"]);
            match reply {
                Ok(r) if r.contains("Background saving started") => asked = true,
                // Another snapshot (or an AOF rewrite) runs: wait for it, then ask again.
                Ok(_) => {}
                Err(e) if e.to_string().contains("already in progress") => {}
                Err(e) => return Err(e),
            }
        }
        let info = persistence(conn)?;
        let running = info_field(&info, "rdb_bgsave_in_progress").as_deref() == Some("1");
        let last = info_field(&info, "rdb_last_save_time").unwrap_or_default();
        let newer = match (&saves_before, info_field(&info, "rdb_saves")) {
            (Some(b), Some(now)) => now != *b,
            _ => last != last_before,
        };
        if asked && !running && newer {
            return match info_field(&info, "rdb_last_bgsave_status").as_deref() {
                Some("ok") => Ok(()),
                other => Err(DbError::Failed(format!(
                    "{} could not write its snapshot (rdb_last_bgsave_status: {}); its log says \
                     why — often a full disk",
                    conn.describe(),
                    other.unwrap_or("unknown")
                ))),
            };
        }
        if started.elapsed() > patience {
            return Err(DbError::Failed(format!(
                "{} did not finish its snapshot within {} s",
                conn.describe(),
                patience.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `redis-cli --rdb FILE`: a snapshot of a server whose files Homeport cannot read (an external
/// one), streamed over the replication protocol.
pub fn redis_rdb_over_network(conn: &Conn, dest: &Path) -> Result<(), DbError> {
    let mut cmd = command(conn, "client")?;
    cmd.arg("--rdb").arg(dest);
    output(conn, cmd).map(drop)
}

/// `redis-check-rdb FILE`.
pub fn redis_check_rdb(bins: &crate::Bins, file: &Path) -> Result<(), DbError> {
    let out = Command::new(bins.tool("check")?)
        .arg(file)
        .output()
        .map_err(|e| DbError::Failed(format!("cannot run redis-check-rdb: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && text.contains("RDB looks OK") {
        Ok(())
    } else {
        Err(DbError::Failed(format!(
            "redis-check-rdb found {} damaged: {}",
            file.display(),
            last_line(&text)
        )))
    }
}
