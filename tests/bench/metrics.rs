//! What keeping history costs: the agent's CPU with 20 services sampled against the same agent
//! with sampling off, side by side in the same minutes; and state.db's size per service for a
//! month of roll-ups against the same database without them.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{Agent, Bins, Res, Row, all_running, cpu_ticks};

fn twenty(sample_every: &str) -> String {
    let mut body = format!("sample_every = \"{sample_every}\"\n");
    for i in 0..20 {
        body.push_str(&format!(
            "[apps.b.env.p.services.s{i:02}]\ncommand = [\"@FIXTURE@\", \"--lines\", \"1\"]\nautostart = true\n"
        ));
    }
    body
}

/// Two agents with the same 20 idle services, one sampling every 5 s (the default) and one not,
/// run at the same time for `secs`: whatever else the machine does, both live through it.
pub(crate) fn sampler(bins: &Bins, secs: u64) -> Res<Row> {
    let on = Agent::start(bins, &twenty("5s"))?;
    let off = Agent::start(bins, &twenty("0s"))?;
    for a in [&on, &off] {
        a.wait(Duration::from_secs(60), all_running(20))?;
    }
    // Past the start: the counts begin with both agents settled.
    std::thread::sleep(Duration::from_secs(5));
    let ticks = || -> Res<(u64, u64)> { Ok((cpu_ticks(on.pid())?, cpu_ticks(off.pid())?)) };
    let (on0, off0) = ticks()?;
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let (on1, off1) = ticks()?;
    let wall = start.elapsed().as_secs_f64();
    // Sampling wrote its minutes: the rows are there.
    let rows = minutes_written(&on.data().join("state.db"))?;
    if rows == 0 {
        return Err("the sampling agent wrote no minute rows".into());
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let pct = |t: u64| t as f64 / hz / wall * 100.0;
    let (p_on, p_off) = (pct(on1 - on0), pct(off1 - off0));
    Ok(Row {
        name: "agent CPU, 20 idle services, sampled every 5 s (side by side, same minutes)",
        baseline: format!(
            "sampling off: {:.3} % of a core ({} ms CPU in {wall:.0} s)",
            p_off,
            (off1 - off0) * 1000 / hz as u64
        ),
        homeport: format!(
            "{:.3} % ({} ms; {rows} minute rows written)",
            p_on,
            (on1 - on0) * 1000 / hz as u64
        ),
        ratio: format!("+{:.3} % of a core", p_on - p_off),
        goal: "≤ +0.2 % of a core",
    })
}

fn minutes_written(db: &Path) -> Res<i64> {
    let conn = rusqlite::Connection::open(db)?;
    Ok(conn.query_row(
        "SELECT count(*) FROM metric_rollups WHERE res = 60",
        [],
        |r| r.get(0),
    )?)
}

/// Bytes of `db` in use: its pages less the free ones (what a running agent's file settles at:
/// SQLite reuses free pages before it grows the file).
fn used_bytes(db: &Path) -> Res<u64> {
    let conn = rusqlite::Connection::open(db)?;
    let q = |p: &str| -> Res<u64> {
        Ok(conn.query_row(&format!("PRAGMA {p}"), [], |r| r.get::<_, i64>(0))? as u64)
    };
    Ok((q("page_count")? - q("freelist_count")?) * q("page_size")?)
}

/// state.db with 30 days of minutes for 20 services, written through the agent's writer by
/// `homeport-history` and pruned by the agent's retention, against the same database empty.
pub(crate) fn growth(bins: &Bins) -> Res<Row> {
    let dir = tempfile::tempdir()?;
    let history = bins.fixture.with_file_name("homeport-history");
    let empty = dir.path().join("empty.db");
    let full = dir.path().join("full.db");
    let names: Vec<String> = (0..20).map(|i| format!("b/p/s{i:02}")).collect();
    let run = |db: &Path, days: &str| -> Res<()> {
        let out = Command::new(&history)
            .arg(db)
            .arg(days)
            .args(&names)
            .output()?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
        }
        Ok(())
    };
    run(&empty, "0")?;
    let started = Instant::now();
    run(&full, "30")?;
    let write_secs = started.elapsed().as_secs_f64();
    let mut db = homeport_core::MetricsDb::open(&full)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    db.prune(&homeport_metrics::Policy::default(), now)?;
    drop(db);
    let counts = {
        let conn = rusqlite::Connection::open(&full)?;
        let mut st =
            conn.prepare("SELECT res, count(*) FROM metric_rollups GROUP BY res ORDER BY res")?;
        let rows: Vec<String> = st
            .query_map([], |r| {
                Ok(format!(
                    "{} s: {}",
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?
                ))
            })?
            .collect::<Result<_, _>>()?;
        rows.join(", ")
    };
    let (base, with) = (used_bytes(&empty)?, used_bytes(&full)?);
    let per = (with - base) as f64 / 20.0;
    Ok(Row {
        name: "state.db per service for 30 days of history (20 services, retention applied)",
        baseline: format!("state.db without history: {:.1} KB", base as f64 / 1024.0),
        homeport: format!(
            "{:.0} KB per service ({:.1} MB for 20; rows kept {counts}; written in {write_secs:.0} s)",
            per / 1024.0,
            (with - base) as f64 / 1_048_576.0
        ),
        ratio: format!("{:.2} MB per service-month", per / 1_048_576.0),
        goal: "≤ 5 MB per service-month",
    })
}
