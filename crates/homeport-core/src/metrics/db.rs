//! The roll-ups in state.db (tables `metric_series` and `metric_rollups`, created by the store's
//! migrations), through a connection of their own: the sampler writes once a minute without
//! queueing behind the event recorder, and the two never share a transaction.
//!
//! A minute is written when it ends; the ten-minute and hour windows that hold it are then
//! made again from the rows below them ([`homeport_metrics::cascade`]), so the coarse rows are
//! always the exact sum of the fine ones, a window still in progress included. Retention
//! ([`homeport_metrics::retention`]) runs at most once an hour.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use homeport_metrics::{Bucket, Policy, Resolution, Stat, cascade};
use rusqlite::{Connection, OptionalExtension, params};

const COLUMNS: &str = "start, cpu_sum, cpu_min, cpu_max, cpu_n, rss_sum, rss_min, rss_max, rss_n, \
                       lat_sum, lat_min, lat_max, lat_n, up_ms, down_ms";

pub struct MetricsDb {
    conn: Connection,
    /// Series ids by name.
    ids: HashMap<String, i64>,
    /// When retention last ran (unix seconds).
    pruned: Option<i64>,
}

fn bucket(r: &rusqlite::Row<'_>) -> rusqlite::Result<Bucket> {
    let stat = |i: usize| -> rusqlite::Result<Stat> {
        Ok(Stat {
            sum: r.get(i)?,
            min: r.get(i + 1)?,
            max: r.get(i + 2)?,
            n: r.get::<_, i64>(i + 3)?.max(0) as u64,
        })
    };
    Ok(Bucket {
        start: r.get(0)?,
        cpu: stat(1)?,
        rss: stat(5)?,
        latency: stat(9)?,
        up_ms: r.get::<_, i64>(13)?.max(0) as u64,
        down_ms: r.get::<_, i64>(14)?.max(0) as u64,
    })
}

impl MetricsDb {
    /// Opens state.db, whose tables [`crate::Store::open`] has made.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "cache_size", -256)?;
        Ok(Self {
            conn,
            ids: HashMap::new(),
            pruned: None,
        })
    }

    /// A transaction that holds the write lock from its start. A deferred one would read first
    /// and then fail at once (SQLITE_BUSY, no waiting) when the event recorder committed in
    /// between; waiting for the lock up front lets the busy timeout do its work.
    fn write_transaction(&mut self) -> rusqlite::Result<rusqlite::Transaction<'_>> {
        self.conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
    }

    fn series(&mut self, name: &str, create: bool) -> rusqlite::Result<Option<i64>> {
        if let Some(id) = self.ids.get(name) {
            return Ok(Some(*id));
        }
        if create {
            self.conn.execute(
                "INSERT OR IGNORE INTO metric_series (name) VALUES (?1)",
                params![name],
            )?;
        }
        let id: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM metric_series WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = id {
            self.ids.insert(name.to_owned(), id);
        }
        Ok(id)
    }

    /// Adds finished minutes of series (merged with what a minute already holds: an agent
    /// restarted within it), then makes their ten-minute and hour windows again. One
    /// transaction: a crash leaves all of it or none.
    pub fn add_minutes(&mut self, rows: &[(String, Bucket)]) -> rusqlite::Result<()> {
        let mut ids = Vec::with_capacity(rows.len());
        for (name, _) in rows {
            ids.push(self.series(name, true)?.unwrap_or_default());
        }
        let tx = self.write_transaction()?;
        let mut parents: BTreeSet<(Resolution, i64, i64)> = BTreeSet::new();
        for ((_, b), id) in rows.iter().zip(ids) {
            if b.is_empty() {
                continue;
            }
            let start = Resolution::Minute.align(b.start);
            let mut merged = read_one(&tx, id, Resolution::Minute, start)?
                .unwrap_or_else(|| Bucket::empty(start));
            merged.merge(b);
            write(&tx, id, Resolution::Minute, &merged)?;
            for res in [Resolution::TenMinutes, Resolution::Hour] {
                parents.insert((res, id, res.align(start)));
            }
        }
        // Ten minutes before hours: an hour is made from its ten-minute rows.
        for (res, id, start) in parents {
            let Some(finer) = res.finer() else { continue };
            let children = read_range(&tx, id, finer, start, start + res.secs() - 1)?;
            for b in cascade(&children, res) {
                write(&tx, id, res, &b)?;
            }
        }
        tx.commit()
    }

    /// Rows of a series at `res` whose window starts within `[from, to]`, by start.
    pub fn buckets(
        &mut self,
        name: &str,
        res: Resolution,
        from: i64,
        to: i64,
    ) -> rusqlite::Result<Vec<Bucket>> {
        let Some(id) = self.series(name, false)? else {
            return Ok(Vec::new());
        };
        read_range(&self.conn, id, res, from, to)
    }

    /// Applies `policy` at `now` to every series, unless it ran within the last hour; then
    /// forgets series with no rows left (services removed from the config long ago). Returns
    /// the rows deleted.
    pub fn prune(&mut self, policy: &Policy, now: i64) -> rusqlite::Result<usize> {
        if self.pruned.is_some_and(|t| (0..3600).contains(&(now - t))) {
            return Ok(0);
        }
        let tx = self.write_transaction()?;
        let series: Vec<i64> = tx
            .prepare("SELECT id FROM metric_series")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut deleted = 0;
        for id in series {
            for res in Resolution::ALL {
                let keep = policy.of(res);
                let until = keep.until(now);
                let nth: Option<i64> = tx
                    .query_row(
                        "SELECT start FROM metric_rollups WHERE series = ?1 AND res = ?2 AND start <= ?3
                         ORDER BY start DESC LIMIT 1 OFFSET ?4",
                        params![id, res.secs(), until, i64::from(keep.max_rows.max(1)) - 1],
                        |r| r.get(0),
                    )
                    .optional()?;
                // Zero rows allowed keeps none: no row is the 0th newest.
                let nth = if keep.max_rows == 0 {
                    Some(i64::MAX)
                } else {
                    nth
                };
                let w = keep.window(now, nth);
                deleted += tx.execute(
                    "DELETE FROM metric_rollups WHERE series = ?1 AND res = ?2 AND (start < ?3 OR start > ?4)",
                    params![id, res.secs(), w.from, w.until],
                )?;
            }
        }
        tx.execute(
            "DELETE FROM metric_series WHERE id NOT IN (SELECT DISTINCT series FROM metric_rollups)",
            [],
        )?;
        tx.commit()?;
        self.ids.clear();
        self.pruned = Some(now);
        Ok(deleted)
    }

    /// How many rows each resolution holds, over all series (for tests and benchmarks).
    pub fn row_counts(&self) -> rusqlite::Result<Vec<(Resolution, u64)>> {
        let mut out = Vec::new();
        for res in Resolution::ALL {
            let n: i64 = self.conn.query_row(
                "SELECT COUNT(*) FROM metric_rollups WHERE res = ?1",
                params![res.secs()],
                |r| r.get(0),
            )?;
            out.push((res, n.max(0) as u64));
        }
        Ok(out)
    }
}

fn read_one(
    conn: &Connection,
    id: i64,
    res: Resolution,
    start: i64,
) -> rusqlite::Result<Option<Bucket>> {
    conn.query_row(
        &format!(
            "SELECT {COLUMNS} FROM metric_rollups WHERE series = ?1 AND res = ?2 AND start = ?3"
        ),
        params![id, res.secs(), start],
        bucket,
    )
    .optional()
}

fn read_range(
    conn: &Connection,
    id: i64,
    res: Resolution,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<Bucket>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM metric_rollups WHERE series = ?1 AND res = ?2 AND start BETWEEN ?3 AND ?4 ORDER BY start"
    ))?;
    let rows = stmt.query_map(params![id, res.secs(), from, to], bucket)?;
    rows.collect()
}

fn write(conn: &Connection, id: i64, res: Resolution, b: &Bucket) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO metric_rollups (series, res, {COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    ))?;
    let n = |s: &Stat| i64::try_from(s.n).unwrap_or(i64::MAX);
    stmt.execute(params![
        id,
        res.secs(),
        b.start,
        b.cpu.sum,
        b.cpu.min,
        b.cpu.max,
        n(&b.cpu),
        b.rss.sum,
        b.rss.min,
        b.rss.max,
        n(&b.rss),
        b.latency.sum,
        b.latency.min,
        b.latency.max,
        n(&b.latency),
        i64::try_from(b.up_ms).unwrap_or(i64::MAX),
        i64::try_from(b.down_ms).unwrap_or(i64::MAX),
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use homeport_metrics::{Sample, rollup};

    fn open() -> Result<(tempfile::TempDir, MetricsDb), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.db");
        crate::Store::open(&path)?;
        let db = MetricsDb::open(&path)?;
        Ok((dir, db))
    }

    fn sample(start: i64, cpu: u32) -> Sample {
        Sample {
            start,
            cpu: Some(cpu),
            rss: Some(1 << 20),
            latency: Stat::one(1000),
            up_ms: 5000,
            down_ms: 0,
        }
    }

    #[test]
    fn stored_minutes_cascade_exactly_and_survive_a_restart_within_a_minute()
    -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, mut db) = open()?;
        // On an hour boundary.
        let t0 = 1_800_000_000;
        // Two hours of 5 s samples, written a minute at a time as the sampler does; the minute
        // at t0 + 600 in two halves (an agent that restarted within it).
        let samples: Vec<Sample> = (0..1440)
            .map(|i| sample(t0 + i * 5, (i % 97) as u32))
            .collect();
        for minute in rollup(&samples, Resolution::Minute) {
            if minute.start == t0 + 600 {
                let (a, b) = samples
                    .iter()
                    .filter(|s| Resolution::Minute.align(s.start) == minute.start)
                    .partition::<Vec<Sample>, _>(|s| s.start < minute.start + 30);
                db.add_minutes(&[("a/p/web".into(), rollup(&a, Resolution::Minute)[0])])?;
                db.add_minutes(&[("a/p/web".into(), rollup(&b, Resolution::Minute)[0])])?;
            } else {
                db.add_minutes(&[("a/p/web".into(), minute)])?;
            }
        }
        for res in Resolution::ALL {
            assert_eq!(
                db.buckets("a/p/web", res, t0, t0 + 7200)?,
                rollup(&samples, res),
                "{res:?}"
            );
        }
        assert!(
            db.buckets("a/p/nothing", Resolution::Hour, 0, i64::MAX)?
                .is_empty()
        );
        Ok(())
    }

    #[test]
    fn a_write_waits_for_the_event_recorder_instead_of_failing()
    -> Result<(), Box<dyn std::error::Error>> {
        let (dir, mut db) = open()?;
        let path = dir.path().join("state.db");
        let minute = rollup(&[sample(1_800_000_000, 5)], Resolution::Minute)[0];
        db.add_minutes(&[("a/p/web".into(), minute)])?;
        // The recorder's connection holds the write lock for a while, as a burst of events does.
        let (held, wait) = std::sync::mpsc::channel();
        let recorder = std::thread::spawn(move || -> rusqlite::Result<()> {
            let mut conn = Connection::open(&path)?;
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO events (time, service, kind) VALUES ('2026-01-01T00:00:00Z', 'a/p/web', 'state')",
                [],
            )?;
            let _ = held.send(());
            std::thread::sleep(std::time::Duration::from_millis(300));
            tx.commit()
        });
        wait.recv()?;
        // Reading before writing in a deferred transaction would fail here at once
        // (SQLITE_BUSY_SNAPSHOT once the recorder commits); the write waits and succeeds.
        db.add_minutes(&[("a/p/web".into(), minute)])?;
        recorder.join().map_err(|_| "recorder panicked")??;
        let b = db.buckets("a/p/web", Resolution::Minute, 0, i64::MAX)?;
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].cpu.n, 2, "both writes are in");
        Ok(())
    }

    #[test]
    fn retention_drops_old_minutes_but_keeps_their_hours() -> Result<(), Box<dyn std::error::Error>>
    {
        let (_dir, mut db) = open()?;
        let now = 1_800_000_000;
        let policy = Policy::default();
        // One sample a minute over the last five days.
        let samples: Vec<Sample> = (0..5 * 1440).map(|i| sample(now - i * 60, 100)).collect();
        let rows: Vec<(String, Bucket)> = rollup(&samples, Resolution::Minute)
            .into_iter()
            .map(|b| ("a/p/web".to_owned(), b))
            .collect();
        db.add_minutes(&rows)?;
        // And a service that is long gone.
        db.add_minutes(&[(
            "a/p/old".into(),
            rollup(&[sample(now - 500 * 86400, 1)], Resolution::Minute)[0],
        )])?;
        let deleted = db.prune(&policy, now)?;
        assert!(deleted > 0);
        let minutes = db.buckets("a/p/web", Resolution::Minute, 0, i64::MAX)?;
        assert_eq!(
            minutes.first().map(|b| b.start),
            Some(Resolution::Minute.align(now - 2 * 86400))
        );
        let hours = db.buckets("a/p/web", Resolution::Hour, 0, i64::MAX)?;
        let counted: u64 = hours.iter().map(|b| b.cpu.n).sum();
        assert_eq!(counted, 5 * 1440, "every sample is still in the hours");
        assert!(
            db.buckets("a/p/old", Resolution::Hour, 0, i64::MAX)?
                .is_empty()
        );
        let gone: i64 = db.conn.query_row(
            "SELECT COUNT(*) FROM metric_series WHERE name = 'a/p/old'",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(gone, 0, "a series with no rows left is forgotten");
        assert_eq!(db.prune(&policy, now + 60)?, 0, "at most once an hour");
        Ok(())
    }

    #[test]
    fn the_row_cap_keeps_the_newest_rows_as_the_policy_says()
    -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, mut db) = open()?;
        let now = 1_800_000_000;
        let mut policy = Policy::default();
        policy.minute.max_rows = 100;
        let samples: Vec<Sample> = (0..300).map(|i| sample(now - i * 60, 1)).collect();
        let minutes = rollup(&samples, Resolution::Minute);
        let rows: Vec<(String, Bucket)> = minutes.iter().map(|b| ("s".to_owned(), *b)).collect();
        db.add_minutes(&rows)?;
        db.prune(&policy, now)?;
        let starts: Vec<i64> = minutes.iter().map(|b| b.start).collect();
        let keep = policy.minute;
        let w = keep.window(
            now,
            homeport_metrics::retention::nth_newest(&starts, keep.until(now), keep.max_rows),
        );
        let want: Vec<Bucket> = minutes
            .into_iter()
            .filter(|b| w.from <= b.start && b.start <= w.until)
            .collect();
        assert_eq!(want.len(), 100);
        assert_eq!(db.buckets("s", Resolution::Minute, 0, i64::MAX)?, want);
        Ok(())
    }
}
