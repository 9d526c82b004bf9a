//! `homeport-bench --backup`: a 1 GiB live database with a writer committing about 1,000
//! transactions a second, backed up while it writes.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use homeport_backup::BackupMethod;
use rusqlite::Connection;

use crate::{Res, Row, median};

const TARGET_BYTES: u64 = 1 << 30;

fn make_db(path: &Path) -> Res<()> {
    let c = Connection::open(path)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.execute_batch("CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB); CREATE TABLE w(id INTEGER PRIMARY KEY, at INTEGER);")?;
    let rows = TARGET_BYTES / 4096;
    c.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) INSERT INTO big(v) SELECT randomblob(4000) FROM n",
        [rows as i64],
    )?;
    c.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
    Ok(())
}

/// Commits one small insert every millisecond until `stop`; returns each commit's latency (ms).
fn writer(path: &Path, stop: Arc<AtomicBool>) -> Res<std::thread::JoinHandle<Vec<f64>>> {
    let c = Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(5))?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(std::thread::spawn(move || {
        let mut lat = Vec::new();
        let start = Instant::now();
        let mut n: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let slot = start + Duration::from_millis(n);
            let now = Instant::now();
            if slot > now {
                std::thread::sleep(slot - now);
            }
            let t = Instant::now();
            if c.execute("INSERT INTO w(at) VALUES (?1)", [n as i64])
                .is_ok()
            {
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        lat
    }))
}

fn p99(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() * 99 / 100).copied().unwrap_or(f64::NAN)
}

/// Runs `work` while the writer writes; returns (work's seconds, writer p99 ms, commits/s).
fn under_load(db: &Path, work: impl FnOnce() -> Res<()>) -> Res<(f64, f64, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(db, Arc::clone(&stop))?;
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    work()?;
    let secs = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let lat = w.join().map_err(|_| "writer panicked")?;
    let rate = lat.len() as f64 / (secs + 0.7);
    Ok((secs, p99(lat), rate))
}

pub fn run() -> Res<Vec<Row>> {
    let dir =
        tempfile::tempdir_in(std::env::var_os("HOMEPORT_BENCH_DIR").unwrap_or_else(|| ".".into()))?;
    let db = dir.path().join("live.db");
    let t = Instant::now();
    make_db(&db)?;
    let size = std::fs::metadata(&db)?.len();
    eprintln!(
        "made a {:.2} GiB database in {:.1} s",
        size as f64 / (1u64 << 30) as f64,
        t.elapsed().as_secs_f64()
    );

    // Baseline: the writer alone, for as long as a backup takes.
    let (_, p99_alone, rate_alone) = under_load(&db, || {
        std::thread::sleep(Duration::from_secs(5));
        Ok(())
    })?;
    let mut api = Vec::new();
    let mut api_p99 = Vec::new();
    let mut vac = Vec::new();
    let mut vac_p99 = Vec::new();
    for i in 0..3 {
        let out = dir.path().join(format!("api{i}.db"));
        let (s, p, _) = under_load(&db, || {
            Ok(homeport_backup::backup_database(
                &db,
                &out,
                BackupMethod::BackupApi,
            )?)
        })?;
        homeport_backup::integrity_check(&out)?;
        std::fs::remove_file(&out)?;
        api.push(s);
        api_p99.push(p);
        let out = dir.path().join(format!("vac{i}.db"));
        let (s, p, _) = under_load(&db, || {
            Ok(homeport_backup::backup_database(
                &db,
                &out,
                BackupMethod::VacuumInto,
            )?)
        })?;
        homeport_backup::integrity_check(&out)?;
        std::fs::remove_file(&out)?;
        vac.push(s);
        vac_p99.push(p);
    }
    let cp = {
        let out = dir.path().join("cp.db");
        let t = Instant::now();
        std::fs::copy(&db, &out)?;
        let s = t.elapsed().as_secs_f64();
        std::fs::remove_file(&out)?;
        s
    };
    // The sqlite3 shell's `.backup` copies 100 pages a step and starts over whenever another
    // connection writes: under a steady writer it may never finish, so it gets 60 s.
    let cli = if Path::new("/usr/bin/sqlite3").exists() {
        let out = dir.path().join("cli.db");
        let mut finished = false;
        let (s, p, _) = under_load(&db, || {
            let mut child = Command::new("sqlite3")
                .arg(&db)
                .arg(format!(".backup '{}'", out.display()))
                .spawn()?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Some(st) = child.try_wait()? {
                    finished = st.success();
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            Ok(())
        })?;
        Some((s, p, finished))
    } else {
        None
    };
    let (a, ap, v, vp) = (median(api), median(api_p99), median(vac), median(vac_p99));
    let gib = size as f64 / (1u64 << 30) as f64;
    let mut rows = vec![
        Row {
            name: "online backup of a 1 GiB live database (backup API, chosen)",
            baseline: format!(
                "cp {cp:.2} s (not consistent); sqlite3 .backup {}",
                match cli {
                    Some((s, _, true)) => format!("{s:.2} s"),
                    Some((s, _, false)) =>
                        format!("did not finish in {s:.0} s (restarts on every write)"),
                    None => "not installed".to_owned(),
                }
            ),
            homeport: format!("{a:.2} s for {gib:.2} GiB, always completes"),
            ratio: format!(
                "{:.2}× cp{}",
                a / cp,
                match cli {
                    Some((s, _, true)) => format!(", {:.2}× .backup", a / s),
                    _ => String::new(),
                }
            ),
            goal: "completes",
        },
        Row {
            name: "writer p99 commit latency during the backup (≈1,000 tx/s)",
            baseline: format!("{p99_alone:.2} ms without a backup ({rate_alone:.0} tx/s)"),
            homeport: format!("{ap:.2} ms with the backup API; {vp:.2} ms with VACUUM INTO"),
            ratio: format!(
                "{:.2}× (API), {:.2}× (VACUUM INTO)",
                ap / p99_alone,
                vp / p99_alone
            ),
            goal: "≤ 2×",
        },
        Row {
            name: "VACUUM INTO of the same database (not chosen)",
            baseline: format!("backup API {a:.2} s"),
            homeport: format!("{v:.2} s"),
            ratio: format!("{:.2}× the backup API", v / a),
            goal: "–",
        },
    ];
    if let Some((_, p, _)) = cli {
        rows.push(Row {
            name: "writer p99 during sqlite3 .backup (for comparison)",
            baseline: format!("{p99_alone:.2} ms"),
            homeport: format!("{p:.2} ms"),
            ratio: format!("{:.2}×", p / p99_alone),
            goal: "–",
        });
    }
    Ok(rows)
}
