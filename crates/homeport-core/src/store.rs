//! state.db: the agent's memory across restarts. SQLite in WAL mode, written by one thread.

use std::collections::HashMap;
use std::path::Path;

use homeport_supervisor::Seed;
use homeport_types::{DeployResult, Event, EventKind, ExitReason, ServiceKey};
use rusqlite::{Connection, OptionalExtension, params};

/// Schema changes append a step; `user_version` says how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE events (
        id         INTEGER PRIMARY KEY,
        time       TEXT NOT NULL,
        service    TEXT NOT NULL,
        kind       TEXT NOT NULL,
        from_state TEXT,
        to_state   TEXT,
        pid        INTEGER,
        exit       TEXT,
        message    TEXT
    );
    CREATE INDEX events_by_service ON events(service, id);
    CREATE TABLE services (
        service   TEXT PRIMARY KEY,
        state     TEXT NOT NULL,
        restarts  INTEGER NOT NULL DEFAULT 0,
        last_exit TEXT,
        updated   TEXT NOT NULL
    );
"#,
    r#"
    ALTER TABLE events ADD COLUMN restarts INTEGER;
"#,
    r#"
    CREATE TABLE backups (
        id          INTEGER PRIMARY KEY,
        app         TEXT NOT NULL,
        env         TEXT NOT NULL,
        time        TEXT NOT NULL,
        trigger     TEXT NOT NULL,
        dir         TEXT NOT NULL,
        size        INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        verified    INTEGER NOT NULL,
        artifacts   TEXT NOT NULL
    );
    CREATE INDEX backups_by_env ON backups(app, env, time);
"#,
    r#"
    CREATE TABLE deploys (
        id          INTEGER PRIMARY KEY,
        app         TEXT NOT NULL,
        env         TEXT NOT NULL,
        kind        TEXT NOT NULL,
        release     TEXT,
        previous    TEXT,
        commit_sha  TEXT,
        started     TEXT NOT NULL,
        finished    TEXT,
        result      TEXT NOT NULL,
        error       TEXT,
        steps       TEXT NOT NULL,
        diagnostics TEXT
    );
    CREATE INDEX deploys_by_env ON deploys(app, env, id);
"#,
    // Every outcome is an event: whom it is about (`subject`: @agent, APP, APP/ENV or
    // APP/ENV/SERVICE) and the event itself as JSON (`data`). Rows of earlier agents have
    // neither and are read from their columns. `count` and `last_time` leave room for one row
    // standing for a run of repeated events.
    r#"
    ALTER TABLE events ADD COLUMN subject TEXT;
    ALTER TABLE events ADD COLUMN data TEXT;
    ALTER TABLE events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE events ADD COLUMN last_time TEXT;
    UPDATE events SET subject = service;
    CREATE INDEX events_by_subject ON events(subject, id);
    CREATE INDEX events_by_kind ON events(kind, id);
"#,
    // Why a backup's last check failed; a failed backup is never restored by default nor kept
    // by retention.
    r#"
    ALTER TABLE backups ADD COLUMN problem TEXT;
"#,
    // Automatic updates per environment: failures in a row, the pause they lead to, the commit
    // not to retry, and what the last check found.
    r#"
    CREATE TABLE auto_updates (
        app           TEXT NOT NULL,
        env           TEXT NOT NULL,
        failures      INTEGER NOT NULL DEFAULT 0,
        paused        INTEGER NOT NULL DEFAULT 0,
        failed_commit TEXT,
        failed_deploy INTEGER,
        refused       TEXT,
        waiting       TEXT,
        last_check    TEXT,
        PRIMARY KEY (app, env)
    );
"#,
    // A deploy's output (JSON lines), what its rollback discarded (JSON), and how long it took.
    r#"
    ALTER TABLE deploys ADD COLUMN output TEXT;
    ALTER TABLE deploys ADD COLUMN discarded TEXT;
    ALTER TABLE deploys ADD COLUMN ms INTEGER;
"#,
    // Roll-ups of sampled metrics (metrics/db.rs): one row per series (a service `APP/ENV/SVC`
    // or an environment `APP/ENV`), resolution (seconds) and window start (unix seconds), with
    // integer totals, extremes and counts. Written through a connection of their own.
    r#"
    CREATE TABLE metric_series (
        id   INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE metric_rollups (
        series  INTEGER NOT NULL,
        res     INTEGER NOT NULL,
        start   INTEGER NOT NULL,
        cpu_sum INTEGER NOT NULL, cpu_min INTEGER NOT NULL, cpu_max INTEGER NOT NULL, cpu_n INTEGER NOT NULL,
        rss_sum INTEGER NOT NULL, rss_min INTEGER NOT NULL, rss_max INTEGER NOT NULL, rss_n INTEGER NOT NULL,
        lat_sum INTEGER NOT NULL, lat_min INTEGER NOT NULL, lat_max INTEGER NOT NULL, lat_n INTEGER NOT NULL,
        up_ms   INTEGER NOT NULL,
        down_ms INTEGER NOT NULL,
        PRIMARY KEY (series, res, start)
    ) WITHOUT ROWID;
"#,
];

/// One row of the events table as stored; [`Row::event`] reads it.
struct Row {
    id: i64,
    time: String,
    subject: Option<String>,
    kind: String,
    data: Option<String>,
    from: Option<String>,
    to: Option<String>,
    pid: Option<u32>,
    exit: Option<String>,
    message: Option<String>,
    restarts: Option<i64>,
    count: i64,
    last_time: Option<String>,
}

/// The events of `rows` (selected as `id, time, subject, kind, data, from_state, to_state,
/// pid, exit, message, restarts, count, last_time`); an unreadable one is skipped with a
/// warning naming it.
fn readable(rows: impl Iterator<Item = rusqlite::Result<Row>>) -> rusqlite::Result<Vec<Event>> {
    let mut out = Vec::new();
    for row in rows {
        let row = row?;
        let id = row.id;
        match row.event() {
            Ok(ev) => out.push(ev),
            Err(why) => tracing::warn!("state.db: event {id} is skipped: {why}"),
        }
    }
    Ok(out)
}

impl Row {
    /// A row selected with the columns [`readable`] names, in that order.
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok(Row {
            id: r.get(0)?,
            time: r.get(1)?,
            subject: r.get(2)?,
            kind: r.get(3)?,
            data: r.get(4)?,
            from: r.get(5)?,
            to: r.get(6)?,
            pid: r.get(7)?,
            exit: r.get(8)?,
            message: r.get(9)?,
            restarts: r.get(10)?,
            count: r.get(11)?,
            last_time: r.get(12)?,
        })
    }

    /// The event; rows written before events carried their JSON are read from their columns.
    fn event(self) -> Result<Event, String> {
        let subject: homeport_types::Subject = self
            .subject
            .as_deref()
            .ok_or("it names no subject")?
            .parse()
            .map_err(|e| format!("its subject: {e}"))?;
        let kind = match self.data {
            Some(data) => serde_json::from_str(&data).map_err(|e| format!("its data: {e}"))?,
            None => {
                let state = |s: Option<String>,
                             what: &str|
                 -> Result<homeport_types::ServiceState, String> {
                    let s = s.ok_or_else(|| format!("it has no {what} state"))?;
                    serde_json::from_value(serde_json::Value::String(s.clone()))
                        .map_err(|_| format!("unknown state {s:?}"))
                };
                match self.kind.as_str() {
                    "state" => EventKind::State {
                        from: state(self.from, "from")?,
                        to: state(self.to, "to")?,
                        pid: self.pid,
                        exit: match self.exit {
                            Some(e) => Some(
                                serde_json::from_str(&e)
                                    .map_err(|_| format!("unknown exit {e:?}"))?,
                            ),
                            None => None,
                        },
                        restarts: self.restarts.unwrap_or(0).max(0) as u64,
                        message: self.message,
                    },
                    "health" => {
                        let h = self.to.ok_or("it has no health")?;
                        EventKind::Health {
                            health: serde_json::from_value(serde_json::Value::String(h.clone()))
                                .map_err(|_| format!("unknown health {h:?}"))?,
                            message: self.message,
                        }
                    }
                    other => return Err(format!("unknown kind {other:?} without data")),
                }
            }
        };
        Ok(Event {
            count: self.count.max(1) as u64,
            last_time: self.last_time,
            time: self.time,
            subject,
            kind,
        })
    }
}

/// Events kept in the table; older ones are pruned at start and as the table grows...
const KEEP_EVENTS: i64 = 100_000;
/// ...and none that last happened this long before the newest.
const KEEP_EVENTS_FOR: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);

/// A repeated event of a service joins the row of its last time (`count` + 1) when that row is
/// among the service's newest [`GROUP_ROWS`] and happened again within [`GROUP_WINDOW`]: so a
/// crash loop (three or four transitions a round) is that many rows however long it lasts, and
/// a service that stays unhealthy is one.
const GROUP_ROWS: i64 = 8;
const GROUP_WINDOW: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// A backup row. A value this agent cannot read is said in the log, naming the row: an
/// unknown trigger is shown as manual; unreadable artifacts make the backup unverified, so a
/// restore never picks it by default.
fn backup_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<homeport_types::BackupInfo> {
    let id: i64 = r.get(0)?;
    let trigger: String = r.get(4)?;
    let artifacts: String = r.get(9)?;
    let trigger = serde_json::from_value(serde_json::Value::String(trigger.clone()))
        .unwrap_or_else(|_| {
            tracing::warn!(
                "state.db: backup {id} has an unknown trigger {trigger:?}; shown as manual"
            );
            homeport_types::BackupTrigger::Manual
        });
    let mut verified: bool = r.get(8)?;
    let artifacts = serde_json::from_str(&artifacts).unwrap_or_else(|e| {
        tracing::warn!(
            "state.db: the file list of backup {id} cannot be read ({e}); it is treated as unverified"
        );
        verified = false;
        Vec::new()
    });
    Ok(homeport_types::BackupInfo {
        id,
        app: r.get(1)?,
        env: r.get(2)?,
        time: r.get(3)?,
        trigger,
        dir: r.get(5)?,
        size: r.get::<_, i64>(6)?.max(0) as u64,
        duration_ms: r.get::<_, i64>(7)?.max(0) as u64,
        verified,
        problem: r.get(10)?,
        artifacts,
    })
}

fn prune(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?1",
        params![KEEP_EVENTS],
    )?;
    // Counted back from the newest event, not from the clock: a computer that was off (or a
    // clock set wrong) does not lose its history. Times are RFC 3339 UTC, which sort as text.
    let newest: Option<String> = conn.query_row(
        "SELECT MAX(COALESCE(last_time, time)) FROM events",
        [],
        |r| r.get(0),
    )?;
    let Some(newest) = newest.and_then(|t| humantime::parse_rfc3339_weak(&t).ok()) else {
        return Ok(());
    };
    let cutoff = humantime::format_rfc3339(
        newest
            .checked_sub(KEEP_EVENTS_FOR)
            .unwrap_or(std::time::UNIX_EPOCH),
    )
    .to_string();
    conn.execute(
        "DELETE FROM events WHERE COALESCE(last_time, time) < ?1",
        params![cutoff],
    )?;
    Ok(())
}

/// What makes two events of a service "the same thing again": their kind and states. A state
/// change is a repetition only while restarts climb (a crash loop), not when someone stops and
/// starts a service by hand.
fn repeats(ev: &Event, row: &RecentRow) -> bool {
    let same = match &ev.kind {
        EventKind::State {
            from, to, restarts, ..
        } => {
            row.kind == "state"
                && row.from.as_deref() == Some(from.as_str())
                && row.to.as_deref() == Some(to.as_str())
                && row.restarts.is_some_and(|r| (*restarts as i64) > r)
        }
        EventKind::Health { health, .. } => {
            row.kind == "health" && row.to.as_deref() == Some(health_word(*health))
        }
        _ => false,
    };
    let recent = || -> Option<bool> {
        let then = humantime::parse_rfc3339_weak(&row.last_seen).ok()?;
        let now = humantime::parse_rfc3339_weak(&ev.time).ok()?;
        Some(now.duration_since(then).unwrap_or_default() <= GROUP_WINDOW)
    };
    same && recent().unwrap_or(false)
}

fn health_word(h: homeport_types::Health) -> &'static str {
    match h {
        homeport_types::Health::Unknown => "unknown",
        homeport_types::Health::Healthy => "healthy",
        homeport_types::Health::Unhealthy => "unhealthy",
    }
}

/// One of a service's newest rows, as [`repeats`] compares it.
struct RecentRow {
    id: i64,
    kind: String,
    from: Option<String>,
    to: Option<String>,
    restarts: Option<i64>,
    last_seen: String,
}

pub struct Store {
    conn: Connection,
    /// Records since the last prune.
    since_prune: u32,
}

impl Store {
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL is durable across an agent crash (WAL); only an OS crash can lose the last commits.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // The agent writes small rows and reads little: a 256 KiB page cache (the default is 2 MiB)
        // keeps its idle memory small.
        conn.pragma_update(None, "cache_size", -256)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(step)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        prune(&conn)?;
        Ok(Self {
            conn,
            since_prune: 0,
        })
    }

    /// Records one event in a transaction of its own (see [`Store::record_all`]).
    pub fn record(&mut self, ev: &Event) -> rusqlite::Result<()> {
        self.record_all(std::slice::from_ref(ev))
    }

    /// Records events in one transaction, in order: the recorder writes every event waiting for
    /// it at once (a crash and its restart come as a burst of three), and the statements are
    /// parsed once per connection, not once per event. Either every event is in state.db when
    /// this returns `Ok`, or none of them is.
    pub fn record_all(&mut self, events: &[Event]) -> rusqlite::Result<()> {
        // A fast crash loop records many events a second: keep the table bounded as it runs.
        self.since_prune += events.len() as u32;
        if self.since_prune >= 1000 {
            self.since_prune = 0;
            prune(&self.conn)?;
        }
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (time, service, subject, kind, data, from_state, to_state, pid, exit, message, restarts)
                 VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            let mut recent = tx.prepare_cached(
                "SELECT id, kind, from_state, to_state, restarts, COALESCE(last_time, time) FROM events
                 WHERE subject = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let mut again_stmt = tx.prepare_cached(
                "UPDATE events SET count = count + 1, last_time = ?2, data = ?3, pid = ?4,
                     exit = ?5, message = ?6, restarts = ?7 WHERE id = ?1",
            )?;
            let mut upsert = tx.prepare_cached(
                "INSERT INTO services (service, state, restarts, last_exit, updated) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(service) DO UPDATE SET state = ?2, restarts = ?3,
                     last_exit = COALESCE(?4, last_exit), updated = ?5",
            )?;
            for ev in events {
                let subject = ev.subject.to_string();
                let data = serde_json::to_string(&ev.kind)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                // The columns of state and health rows stay filled: `transitions` and earlier
                // agents read them.
                let (from, to, pid, exit, message, restarts) = match &ev.kind {
                    EventKind::State {
                        from,
                        to,
                        pid,
                        exit,
                        restarts,
                        message,
                    } => (
                        Some(from.as_str()),
                        Some(to.as_str()),
                        *pid,
                        exit.map(|e| serde_json::to_string(&e).unwrap_or_default()),
                        message.as_deref(),
                        Some(*restarts as i64),
                    ),
                    EventKind::Health { health, message } => (
                        None,
                        Some(health_word(*health)),
                        None,
                        None,
                        message.as_deref(),
                        None,
                    ),
                    _ => (None, None, None, None, None, None),
                };
                let again = if ev.service().is_some()
                    && matches!(ev.kind, EventKind::State { .. } | EventKind::Health { .. })
                {
                    let rows = recent.query_map(params![subject, GROUP_ROWS], |r| {
                        Ok(RecentRow {
                            id: r.get(0)?,
                            kind: r.get(1)?,
                            from: r.get(2)?,
                            to: r.get(3)?,
                            restarts: r.get(4)?,
                            last_seen: r.get(5)?,
                        })
                    })?;
                    let mut found = None;
                    for row in rows {
                        let row = row?;
                        if repeats(ev, &row) {
                            found = Some(row.id);
                            break;
                        }
                        // A stop (by hand, or giving up) ends a run of repetitions.
                        if row.kind == "state"
                            && matches!(row.to.as_deref(), Some("stopped" | "failed"))
                        {
                            break;
                        }
                    }
                    found
                } else {
                    None
                };
                match again {
                    // The row keeps when it first happened and takes the last time's details.
                    Some(id) => {
                        again_stmt
                            .execute(params![id, ev.time, data, pid, exit, message, restarts])?;
                    }
                    None => {
                        insert.execute(params![
                            ev.time,
                            subject,
                            ev.kind.name(),
                            data,
                            from,
                            to,
                            pid,
                            exit,
                            message,
                            restarts
                        ])?;
                    }
                }
                if let (EventKind::State { to, restarts, .. }, Some(_)) = (&ev.kind, ev.service()) {
                    upsert.execute(params![
                        subject,
                        to.as_str(),
                        *restarts as i64,
                        exit,
                        ev.time
                    ])?;
                }
            }
        }
        tx.commit()
    }

    /// Restart counts and last exits, keyed by service, to seed the supervisor.
    pub fn seeds(&self) -> rusqlite::Result<HashMap<ServiceKey, Seed>> {
        let mut stmt = self
            .conn
            .prepare("SELECT service, restarts, last_exit FROM services")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        let mut out = HashMap::new();
        for row in rows {
            let (service, restarts, last_exit) = row?;
            let Ok(homeport_types::Target::Service(key)) = service.parse() else {
                continue;
            };
            let last_exit: Option<ExitReason> =
                last_exit.and_then(|s| serde_json::from_str(&s).ok());
            out.insert(
                key,
                Seed {
                    restarts: restarts.max(0) as u64,
                    last_exit,
                },
            );
        }
        Ok(out)
    }

    /// The newest `limit` events within `target`, newest first, of the given kinds (every
    /// kind when `kinds` is empty). A row this agent cannot read is skipped and said in the log.
    pub fn recent_events(
        &self,
        target: &homeport_types::Target,
        kinds: &[String],
        limit: usize,
    ) -> rusqlite::Result<Vec<Event>> {
        let scope = match target {
            homeport_types::Target::All => String::new(),
            t => t.to_string(),
        };
        let kinds = kinds.join(",");
        let mut stmt = self.conn.prepare(
            "SELECT id, time, subject, kind, data, from_state, to_state, pid, exit, message, restarts, count, last_time FROM events
             WHERE (?1 = '' OR subject = ?1 OR substr(subject, 1, length(?1) + 1) = ?1 || '/')
               AND (?2 = '' OR instr(',' || ?2 || ',', ',' || kind || ',') > 0)
             ORDER BY id DESC LIMIT ?3",
        )?;
        readable(stmt.query_map(params![scope, kinds, limit as i64], Row::read)?)
    }

    /// Events a chart of `target` marks, since `since` (an RFC 3339 prefix: events whose time
    /// sorts at or after it), newest first, at most `limit`: those of `kinds`, and of kind
    /// `state` only those arriving in one of `states`. A service's chart also shows what
    /// happened to its environment and app (deploys, backups), and every chart the agent's
    /// starts.
    pub fn chart_events(
        &self,
        target: &homeport_types::Target,
        since: &str,
        kinds: &[&str],
        states: &[homeport_types::ServiceState],
        limit: usize,
    ) -> rusqlite::Result<Vec<Event>> {
        use homeport_types::Target;
        let (scope, parents) = match target {
            Target::All => (String::new(), vec![]),
            Target::App(a) => (a.clone(), vec![]),
            Target::Env(a, e) => (format!("{a}/{e}"), vec![a.clone()]),
            Target::Service(k) => (
                k.to_string(),
                vec![format!("{}/{}", k.app, k.env), k.app.clone()],
            ),
        };
        let list = |v: Vec<String>| format!(",{},", v.join(","));
        let parents = list(parents);
        let kinds = list(kinds.iter().map(|k| (*k).to_owned()).collect());
        let states = list(states.iter().map(|s| s.as_str().to_owned()).collect());
        let mut stmt = self.conn.prepare(
            "SELECT id, time, subject, kind, data, from_state, to_state, pid, exit, message, restarts, count, last_time FROM events
             WHERE COALESCE(last_time, time) >= ?1
               AND (?2 = '' OR subject = ?2 OR substr(subject, 1, length(?2) + 1) = ?2 || '/'
                    OR instr(?3, ',' || subject || ',') > 0 OR subject = '@agent')
               AND instr(?4, ',' || kind || ',') > 0
               AND (kind <> 'state' OR instr(?5, ',' || to_state || ',') > 0)
             ORDER BY id DESC LIMIT ?6",
        )?;
        readable(stmt.query_map(
            params![since, scope, parents, kinds, states, limit as i64],
            Row::read,
        )?)
    }

    /// Catalogues a finished backup; returns its id.
    pub fn add_backup(&self, b: &homeport_types::BackupInfo) -> rusqlite::Result<i64> {
        let artifacts = serde_json::to_string(&b.artifacts).unwrap_or_default();
        self.conn.execute(
            "INSERT INTO backups (app, env, time, trigger, dir, size, duration_ms, verified, artifacts, problem)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![b.app, b.env, b.time, b.trigger.as_str(), b.dir, b.size as i64, b.duration_ms as i64, b.verified, artifacts, b.problem],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Backups of one environment (or all, with `None`), newest first.
    pub fn backups(
        &self,
        env: Option<(&str, &str)>,
    ) -> rusqlite::Result<Vec<homeport_types::BackupInfo>> {
        let (app, e) = env.unwrap_or(("", ""));
        let mut stmt = self.conn.prepare(
            "SELECT id, app, env, time, trigger, dir, size, duration_ms, verified, artifacts, problem FROM backups
             WHERE (?1 = '' OR (app = ?1 AND env = ?2)) ORDER BY time DESC, id DESC",
        )?;
        let rows = stmt.query_map(params![app, e], backup_row)?;
        rows.collect()
    }

    pub fn backup(&self, id: i64) -> rusqlite::Result<Option<homeport_types::BackupInfo>> {
        self.conn
            .query_row(
                "SELECT id, app, env, time, trigger, dir, size, duration_ms, verified, artifacts, problem FROM backups WHERE id = ?1",
                params![id],
                backup_row,
            )
            .optional()
    }

    /// Records the outcome of a check: verified, or failed with why.
    pub fn set_backup_checked(&self, id: i64, problem: Option<&str>) -> rusqlite::Result<()> {
        self.conn
            .execute(
                "UPDATE backups SET verified = ?2, problem = ?3 WHERE id = ?1",
                params![id, problem.is_none(), problem],
            )
            .map(drop)
    }

    pub fn delete_backup(&self, id: i64) -> rusqlite::Result<()> {
        self.conn
            .execute("DELETE FROM backups WHERE id = ?1", params![id])
            .map(drop)
    }

    /// Records a deploy (insert when `id` is 0, else update); returns its id.
    pub fn save_deploy(
        &self,
        d: &homeport_types::DeployRecord,
        output: &[&String],
    ) -> rusqlite::Result<i64> {
        let steps = serde_json::to_string(&d.steps).unwrap_or_default();
        let output = serde_json::to_string(output).unwrap_or_default();
        let discarded = serde_json::to_string(&d.discarded).unwrap_or_default();
        let ms = d.ms.map(|m| m as i64);
        if d.id == 0 {
            self.conn.execute(
                "INSERT INTO deploys (app, env, kind, release, previous, commit_sha, started, finished, result, error, steps, diagnostics, output, discarded, ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                params![d.app, d.env, d.kind.as_str(), d.release, d.previous, d.commit, d.started, d.finished, d.result.as_str(), d.error, steps, d.diagnostics, output, discarded, ms],
            )?;
            Ok(self.conn.last_insert_rowid())
        } else {
            self.conn.execute(
                "UPDATE deploys SET release = ?2, previous = ?3, commit_sha = ?4, finished = ?5, result = ?6, error = ?7, steps = ?8, diagnostics = ?9, output = ?10, discarded = ?11, ms = ?12 WHERE id = ?1",
                params![d.id, d.release, d.previous, d.commit, d.finished, d.result.as_str(), d.error, steps, d.diagnostics, output, discarded, ms],
            )?;
            Ok(d.id)
        }
    }

    /// One deploy and its output.
    pub fn deploy(
        &self,
        id: i64,
    ) -> rusqlite::Result<Option<(homeport_types::DeployRecord, Vec<String>)>> {
        let Some(record) = self.deploys_where("id = ?1", params![id], 1)?.pop() else {
            return Ok(None);
        };
        let output: Option<String> = self.conn.query_row(
            "SELECT output FROM deploys WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )?;
        let output = output
            .map(|o| {
                serde_json::from_str(&o).unwrap_or_else(|e| {
                    tracing::warn!("state.db: the output of deploy {id} cannot be read ({e})");
                    Vec::new()
                })
            })
            .unwrap_or_default();
        Ok(Some((record, output)))
    }

    /// Releases of an app that passed a health gate in some environment.
    pub fn succeeded_releases(
        &self,
        app: &str,
    ) -> rusqlite::Result<std::collections::BTreeSet<String>> {
        self.conn
            .prepare(
                "SELECT DISTINCT release FROM deploys WHERE app = ?1 AND result = 'succeeded' AND release IS NOT NULL",
            )?
            .query_map(params![app], |r| r.get(0))?
            .collect()
    }

    /// Deploys of an app (all apps with `""`) and environment, newest first.
    pub fn deploys(
        &self,
        app: &str,
        env: Option<&str>,
        limit: usize,
    ) -> rusqlite::Result<Vec<homeport_types::DeployRecord>> {
        self.deploys_where(
            "(?1 = '' OR app = ?1) AND (?2 = '' OR env = ?2)",
            params![app, env.unwrap_or("")],
            limit,
        )
    }

    fn deploys_where(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
        limit: usize,
    ) -> rusqlite::Result<Vec<homeport_types::DeployRecord>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT id, app, env, kind, release, previous, commit_sha, started, finished, result, error, steps, diagnostics, discarded, ms
             FROM deploys WHERE {filter} ORDER BY id DESC LIMIT {limit}"
        ))?;
        // A value this agent cannot read is said in the log, naming the deploy.
        let rows = stmt.query_map(args, |r| {
            let id: i64 = r.get(0)?;
            let kind: String = r.get(3)?;
            let result: String = r.get(9)?;
            let steps: String = r.get(11)?;
            Ok(homeport_types::DeployRecord {
                id,
                app: r.get(1)?,
                env: r.get(2)?,
                kind: serde_json::from_value(serde_json::Value::String(kind.clone()))
                    .unwrap_or_else(|_| {
                        tracing::warn!("state.db: deploy {id} has an unknown kind {kind:?}; shown as a deploy");
                        homeport_types::DeployKind::Deploy
                    }),
                release: r.get(4)?,
                previous: r.get(5)?,
                commit: r.get(6)?,
                started: r.get(7)?,
                finished: r.get(8)?,
                result: DeployResult::parse(&result).unwrap_or_else(|| {
                    tracing::warn!("state.db: deploy {id} has an unknown result {result:?}; shown as interrupted");
                    DeployResult::Interrupted
                }),
                error: r.get(10)?,
                steps: serde_json::from_str(&steps).unwrap_or_else(|e| {
                    tracing::warn!("state.db: the steps of deploy {id} cannot be read ({e})");
                    Vec::new()
                }),
                diagnostics: r.get(12)?,
                discarded: r
                    .get::<_, Option<String>>(13)?
                    .map(|d| {
                        serde_json::from_str(&d).unwrap_or_else(|e| {
                            tracing::warn!(
                                "state.db: what deploy {id} discarded cannot be read ({e})"
                            );
                            Vec::new()
                        })
                    })
                    .unwrap_or_default(),
                ms: r.get::<_, Option<i64>>(14)?.map(|m| m.max(0) as u64),
            })
        })?;
        rows.collect()
    }

    /// Marks deploys that were running when an agent died; returns their (app, env).
    /// An environment's automatic updates as the last check left them (all clear when never).
    pub(crate) fn auto_update(
        &self,
        app: &str,
        env: &str,
    ) -> rusqlite::Result<crate::updates::Streak> {
        self.conn
            .query_row(
                "SELECT failures, paused, failed_commit, failed_deploy, refused, waiting, last_check
                 FROM auto_updates WHERE app = ?1 AND env = ?2",
                params![app, env],
                |r| {
                    Ok(crate::updates::Streak {
                        failures: r.get::<_, i64>(0)?.max(0) as u32,
                        paused: r.get::<_, i64>(1)? != 0,
                        failed_commit: r.get(2)?,
                        failed_deploy: r.get(3)?,
                        refused: r.get(4)?,
                        waiting: r.get(5)?,
                        last_check: r.get(6)?,
                    })
                },
            )
            .optional()
            .map(Option::unwrap_or_default)
    }

    pub(crate) fn save_auto_update(
        &self,
        app: &str,
        env: &str,
        s: &crate::updates::Streak,
    ) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO auto_updates
                (app, env, failures, paused, failed_commit, failed_deploy, refused, waiting, last_check)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (app, env) DO UPDATE SET failures = ?3, paused = ?4, failed_commit = ?5,
                failed_deploy = ?6, refused = ?7, waiting = ?8, last_check = ?9",
            params![
                app,
                env,
                s.failures,
                s.paused,
                s.failed_commit,
                s.failed_deploy,
                s.refused,
                s.waiting,
                s.last_check
            ],
        )?;
        Ok(())
    }

    pub fn interrupt_running_deploys(&self) -> rusqlite::Result<Vec<(String, String)>> {
        let envs: Vec<(String, String)> = self
            .conn
            .prepare("SELECT DISTINCT app, env FROM deploys WHERE result = 'running'")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        self.conn.execute(
            "UPDATE deploys SET result = 'interrupted', error = 'the agent stopped during this deploy' WHERE result = 'running'",
            [],
        )?;
        Ok(envs)
    }

    /// The newest `limit` state transitions of a service, newest first (for tests and `status`).
    pub fn transitions(
        &self,
        key: &ServiceKey,
        limit: usize,
    ) -> rusqlite::Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT from_state, to_state FROM events WHERE service = ?1 AND kind = 'state' ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![key.to_string(), limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        rows.collect()
    }

    pub fn restarts(&self, key: &ServiceKey) -> rusqlite::Result<Option<u64>> {
        self.conn
            .query_row(
                "SELECT restarts FROM services WHERE service = ?1",
                params![key.to_string()],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|o| o.map(|n| n.max(0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use homeport_types::ServiceState;

    #[test]
    fn events_and_restart_counts_survive_reopening() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.db");
        let key = ServiceKey::new("a", "p", "web");
        {
            let mut store = Store::open(&path)?;
            store.record(&Event {
                count: 1,
                last_time: None,
                time: "2026-01-01T00:00:00Z".into(),
                subject: homeport_types::Subject::Service(key.clone()),
                kind: EventKind::State {
                    from: ServiceState::Running,
                    to: ServiceState::BackingOff,
                    pid: Some(42),
                    exit: Some(ExitReason::Code(3)),
                    restarts: 7,
                    message: None,
                },
            })?;
        }
        let store = Store::open(&path)?;
        let seeds = store.seeds()?;
        let seed = seeds.get(&key).ok_or("no seed")?;
        assert_eq!(seed.restarts, 7);
        assert_eq!(seed.last_exit, Some(ExitReason::Code(3)));
        assert_eq!(
            store.transitions(&key, 10)?,
            vec![("running".to_owned(), "backing_off".to_owned())]
        );
        let events = store.recent_events(&"a/p".parse().map_err(|e| format!("{e}"))?, &[], 10)?;
        assert_eq!(events.len(), 1);
        assert!(
            matches!(
                events[0].kind,
                EventKind::State {
                    restarts: 7,
                    to: ServiceState::BackingOff,
                    ..
                }
            ),
            "{events:?}"
        );
        assert!(
            store
                .recent_events(&"b".parse().map_err(|e| format!("{e}"))?, &[], 10)?
                .is_empty()
        );
        Ok(())
    }

    #[test]
    fn a_backup_catalogued_by_an_earlier_agent_reads_as_sqlite_and_unfailed()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path)?;
            for step in &MIGRATIONS[..5] {
                conn.execute_batch(step)?;
            }
            conn.pragma_update(None, "user_version", 5)?;
            conn.execute_batch(
                r#"INSERT INTO backups (app, env, time, trigger, dir, size, duration_ms, verified, artifacts)
                   VALUES ('a', 'p', '2026-01-01T00:00:00Z', 'manual', '/x', 10, 1, 1,
                   '[{"name":"main","kind":"database","file":"main.db.zst","size":10,"sha256":"00","compressed":true}]');"#,
            )?;
        }
        let store = Store::open(&path)?;
        let b = store.backup(1)?.ok_or("no backup")?;
        assert_eq!(b.artifacts[0].kind, homeport_types::ArtifactKind::Sqlite);
        assert!(b.verified && b.problem.is_none());
        store.set_backup_checked(1, Some("checksum mismatch"))?;
        let b = store.backup(1)?.ok_or("no backup")?;
        assert!(!b.verified);
        assert_eq!(b.problem.as_deref(), Some("checksum mismatch"));
        Ok(())
    }

    #[test]
    fn rows_of_an_earlier_agent_still_read_and_a_corrupt_one_is_skipped()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.db");
        {
            // A state.db as the agent before typed events left it.
            let conn = Connection::open(&path)?;
            for step in &MIGRATIONS[..4] {
                conn.execute_batch(step)?;
            }
            conn.pragma_update(None, "user_version", 4)?;
            conn.execute_batch(
                r#"INSERT INTO events (time, service, kind, from_state, to_state, pid, exit, message, restarts)
                   VALUES ('2026-01-01T00:00:00Z', 'a/p/web', 'state', 'running', 'backing_off', 7,
                           '{"kind":"code","value":3}', 'exit code 3', 2);
                   INSERT INTO events (time, service, kind, to_state, message)
                   VALUES ('2026-01-01T00:00:01Z', 'a/p/web', 'health', 'unhealthy', 'HTTP 503');
                   INSERT INTO events (time, service, kind, from_state, to_state)
                   VALUES ('2026-01-01T00:00:02Z', 'a/p/web', 'state', 'running', 'on fire');"#,
            )?;
        }
        let mut store = Store::open(&path)?;
        let all = store.recent_events(&homeport_types::Target::All, &[], 10)?;
        assert_eq!(all.len(), 2, "the corrupt row is skipped: {all:?}");
        assert_eq!(
            all[1].subject,
            homeport_types::Subject::Service(ServiceKey::new("a", "p", "web"))
        );
        assert!(
            matches!(
                all[1].kind,
                EventKind::State {
                    to: ServiceState::BackingOff,
                    pid: Some(7),
                    exit: Some(ExitReason::Code(3)),
                    restarts: 2,
                    ..
                }
            ),
            "{all:?}"
        );
        assert!(matches!(all[0].kind, EventKind::Health { .. }));

        // New kinds beside them, filtered by subject and kind.
        store.record(&Event {
            count: 1,
            last_time: None,
            time: "2026-01-02T00:00:00Z".into(),
            subject: homeport_types::Subject::env("a", "p"),
            kind: EventKind::BackupFailed {
                trigger: homeport_types::BackupTrigger::Scheduled,
                error: "disk full".into(),
            },
        })?;
        store.record(&Event {
            count: 1,
            last_time: None,
            time: "2026-01-02T00:00:01Z".into(),
            subject: homeport_types::Subject::Agent,
            kind: EventKind::AgentStopping,
        })?;
        let target = |s: &str| {
            s.parse::<homeport_types::Target>()
                .map_err(|e| e.to_string())
        };
        let env = store.recent_events(&target("a/p")?, &[], 10)?;
        assert_eq!(env.len(), 3, "the environment's and its services': {env:?}");
        let failed = store.recent_events(&target("a")?, &["backup_failed".to_owned()], 10)?;
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].kind.name(), "backup_failed");
        let service = store.recent_events(&target("a/p/web")?, &[], 10)?;
        assert_eq!(service.len(), 2);
        let everything = store.recent_events(&homeport_types::Target::All, &[], 10)?;
        assert_eq!(everything[0].subject, homeport_types::Subject::Agent);
        Ok(())
    }

    #[test]
    fn a_batch_of_events_is_written_in_order_and_the_last_state_wins()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.db");
        let key = ServiceKey::new("a", "p", "web");
        let state = |from, to, restarts| Event {
            count: 1,
            last_time: None,
            time: format!("2026-01-01T00:00:0{restarts}Z"),
            subject: homeport_types::Subject::Service(key.clone()),
            kind: EventKind::State {
                from,
                to,
                pid: None,
                exit: None,
                restarts,
                message: None,
            },
        };
        let cycle = [
            state(ServiceState::Running, ServiceState::BackingOff, 1),
            state(ServiceState::BackingOff, ServiceState::Starting, 1),
            state(ServiceState::Starting, ServiceState::Running, 2),
        ];
        {
            let mut store = Store::open(&path)?;
            store.record_all(&cycle)?;
            // The cached statements serve a second batch on the same connection.
            store.record_all(&cycle[..1])?;
        }
        let store = Store::open(&path)?;
        assert_eq!(
            store.transitions(&key, 10)?,
            [
                ("running", "backing_off"),
                ("starting", "running"),
                ("backing_off", "starting"),
                ("running", "backing_off"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned())),
            "newest first"
        );
        assert_eq!(store.seeds()?.get(&key).map(|s| s.restarts), Some(1));
        Ok(())
    }

    #[test]
    fn a_crash_loop_and_a_lasting_failure_are_a_few_rows_that_count()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.db");
        let key = ServiceKey::new("a", "beta", "web");
        let subject = homeport_types::Subject::Service(key.clone());
        let t0 = humantime::parse_rfc3339("2026-03-01T00:00:00Z")?;
        let at = |secs: u64| {
            humantime::format_rfc3339_millis(t0 + std::time::Duration::from_secs(secs)).to_string()
        };
        let state = |secs, from, to, restarts| Event {
            count: 1,
            last_time: None,
            time: at(secs),
            subject: subject.clone(),
            kind: EventKind::State {
                from,
                to,
                pid: Some(100 + restarts as u32),
                exit: None,
                restarts,
                message: Some(format!("exit code 1 (round {restarts})")),
            },
        };
        let mut store = Store::open(&path)?;
        // An hour of a crash loop, a round every 10 s: 1,080 events.
        for round in 0..360u64 {
            let s = round * 10;
            store.record_all(&[
                state(s, ServiceState::Starting, ServiceState::Running, round),
                state(
                    s + 1,
                    ServiceState::Running,
                    ServiceState::BackingOff,
                    round,
                ),
                state(
                    s + 2,
                    ServiceState::BackingOff,
                    ServiceState::Starting,
                    round + 1,
                ),
            ])?;
        }
        let rows = store.recent_events(&homeport_types::Target::All, &[], 100)?;
        assert_eq!(rows.len(), 3, "{rows:#?}");
        assert_eq!(rows.iter().map(|e| e.count).sum::<u64>(), 1080);
        assert_eq!(rows[0].time, at(2), "the first time stays");
        assert_eq!(rows[0].last_time.as_deref(), Some(at(3592).as_str()));
        assert!(
            matches!(&rows[0].kind, EventKind::State { restarts: 360, message: Some(m), .. }
                if m.ends_with("(round 360)")),
            "the last time's details: {rows:#?}"
        );
        // Stopped and started by hand (restarts do not climb): transitions, each recorded.
        store.record(&state(
            4000,
            ServiceState::Running,
            ServiceState::Stopping,
            360,
        ))?;
        store.record(&state(
            4001,
            ServiceState::Stopping,
            ServiceState::Stopped,
            360,
        ))?;
        store.record(&state(
            4002,
            ServiceState::Stopped,
            ServiceState::Starting,
            360,
        ))?;
        store.record(&state(
            4003,
            ServiceState::Starting,
            ServiceState::Running,
            360,
        ))?;
        store.record(&state(
            4004,
            ServiceState::Running,
            ServiceState::Stopping,
            360,
        ))?;
        assert_eq!(
            store
                .recent_events(&homeport_types::Target::All, &[], 100)?
                .len(),
            8
        );
        // An hour unhealthy, a failed probe every 5 s: one row.
        for i in 0..720u64 {
            store.record(&Event::now(
                subject.clone(),
                EventKind::Health {
                    health: homeport_types::Health::Unhealthy,
                    message: Some(format!("HTTP 503 ({i})")),
                },
                at(5000 + i * 5),
            ))?;
        }
        let health =
            store.recent_events(&homeport_types::Target::All, &["health".to_owned()], 100)?;
        assert_eq!(health.len(), 1);
        assert_eq!(health[0].count, 720);
        // The same failure a day later is news again.
        store.record(&Event::now(
            subject.clone(),
            EventKind::Health {
                health: homeport_types::Health::Unhealthy,
                message: None,
            },
            at(5000 + 86_400),
        ))?;
        let health =
            store.recent_events(&homeport_types::Target::All, &["health".to_owned()], 100)?;
        assert_eq!(health.len(), 2);
        drop(store);
        // Kept by age: what last happened 90 days before the newest event goes at the next open.
        let mut store = Store::open(&path)?;
        store.record(&Event::now(
            subject.clone(),
            EventKind::Health {
                health: homeport_types::Health::Healthy,
                message: None,
            },
            at(95 * 86_400),
        ))?;
        store.record(&Event::now(
            homeport_types::Subject::Agent,
            EventKind::AgentStopping,
            at(100 * 86_400),
        ))?;
        drop(store);
        let store = Store::open(&path)?;
        let left = store.recent_events(&homeport_types::Target::All, &[], 100)?;
        assert_eq!(left.len(), 2, "{left:#?}");
        Ok(())
    }

    #[test]
    fn an_unreadable_backup_row_is_never_verified() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("state.db"))?;
        store.conn.execute_batch(
            "INSERT INTO backups (app, env, time, trigger, dir, size, duration_ms, verified, artifacts)
             VALUES ('a', 'p', '2026-01-01T00:00:00Z', 'hourly', '/b', 1, 1, 1, 'not json')",
        )?;
        let list = store.backups(Some(("a", "p")))?;
        assert_eq!(list.len(), 1);
        assert!(!list[0].verified, "a restore must not pick it by default");
        assert_eq!(list[0].trigger, homeport_types::BackupTrigger::Manual);
        Ok(())
    }
}
