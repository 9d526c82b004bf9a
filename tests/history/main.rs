//! `homeport-history`: writes days of made-up history into a state.db, through the agent's own
//! writer (the store's migrations, then [`MetricsDb::add_minutes`] with its cascade), and the
//! events the charts mark. The browser test and the benchmarks use it to look at a week or a
//! month of history without waiting for one.
//!
//! ```text
//! homeport-history STATE_DB DAYS APP/ENV/SERVICE...
//! ```
//! Every service gets a minute row for each minute of the last DAYS days up to the minute before
//! now: CPU in a daily wave, memory creeping up and dropping at each daily restart, a health
//! latency with a slow spell, an outage of twenty minutes a few days ago, and the environment's
//! uptime to match. Events: a restart (exit code 137) a day per service, a deploy and a backup a
//! day per environment, and a health check failing and passing again.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use homeport_core::{MetricsDb, Store};
use homeport_metrics::{Bucket, Resolution};
use homeport_types::Event;
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, days, services @ ..] = args.as_slice() else {
        fail("usage: homeport-history STATE_DB DAYS APP/ENV/SERVICE...");
    };
    if services.is_empty() {
        fail("name at least one service as APP/ENV/SERVICE");
    }
    let days: i64 = days
        .parse()
        .unwrap_or_else(|_| fail(&format!("days: {days} is not a whole number")));
    let path = PathBuf::from(db);
    // The agent's data is its owner's alone (a 0700 folder, 0600 files): so is this.
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0o077) };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| fail(&format!("cannot make {}: {e}", dir.display())));
    }
    let mut store = Store::open(&path).unwrap_or_else(|e| fail(&format!("cannot open {db}: {e}")));
    let mut metrics =
        MetricsDb::open(&path).unwrap_or_else(|e| fail(&format!("cannot open {db}: {e}")));

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let end = Resolution::Minute.align(now) - 60;
    let start = end - days * 86_400;
    let outage = (end - 3 * 86_400 + 7_200, end - 3 * 86_400 + 8_400);
    let envs: BTreeSet<String> = services
        .iter()
        .map(|s| {
            s.rsplit_once('/')
                .map_or(s.clone(), |(env, _)| env.to_owned())
        })
        .collect();

    // An hour per transaction, as the agent writes a minute per transaction: the same cascade.
    let mut t = start;
    while t <= end {
        let mut rows = Vec::new();
        let hour_end = (t + 3_600).min(end + 60);
        while t < hour_end {
            let down = t >= outage.0 && t < outage.1;
            for (i, name) in services.iter().enumerate() {
                rows.push((name.clone(), service_minute(t, i as i64, down)));
            }
            for env in &envs {
                let mut b = Bucket::empty(t);
                (b.up_ms, b.down_ms) = if down { (0, 60_000) } else { (60_000, 0) };
                rows.push((env.clone(), b));
            }
            t += 60;
        }
        metrics
            .add_minutes(&rows)
            .unwrap_or_else(|e| fail(&format!("cannot write history: {e}")));
    }

    let mut events = Vec::new();
    for day in 0..days {
        let midnight = start + day * 86_400;
        for name in services {
            events.push(event(midnight + 4 * 3_600, name, restart()));
        }
        for env in &envs {
            events.push(event(midnight + 14 * 3_600, env, deploy(day)));
            events.push(event(midnight + 2 * 3_600, env, backup(day)));
        }
    }
    if let Some(first) = services.first() {
        events.push(event(outage.0, first, health(false)));
        events.push(event(outage.1, first, health(true)));
    }
    events.sort_by(|a, b| a.time.cmp(&b.time));
    store
        .record_all(&events)
        .unwrap_or_else(|e| fail(&format!("cannot write events: {e}")));
}

fn fail(message: &str) -> ! {
    eprintln!("homeport-history: {message}");
    std::process::exit(2);
}

/// One minute of a service at `t`: the `i`-th service is shifted a little, so lines differ.
fn service_minute(t: i64, i: i64, down: bool) -> Bucket {
    let mut b = Bucket::empty(t);
    if down {
        b.down_ms = 60_000;
        return b;
    }
    let day = (t.rem_euclid(86_400)) as f64 / 86_400.0;
    let wave = (day * std::f64::consts::TAU).sin();
    // CPU in hundredths of a percent: 2–18 % of a core over a day.
    let cpu = ((10.0 + 8.0 * wave) * 100.0) as i64 + i * 50;
    // Memory creeps from 60 MB after the daily restart (at 04:00) by up to 40 MB.
    let since_restart = (t - 4 * 3_600).rem_euclid(86_400) as f64 / 86_400.0;
    let rss = 60_000_000 + (40_000_000.0 * since_restart) as i64 + i * 5_000_000;
    // Health latency in microseconds: 3 ms, 40 ms in the evening rush.
    let hour = t.rem_euclid(86_400) / 3_600;
    let latency = if hour == 19 { 40_000 } else { 3_000 } + (t / 60 % 7) * 100;
    for k in 0..12 {
        b.cpu.add(cpu + (k % 3) * 20);
        b.rss.add(rss + k * 1_000);
    }
    for _ in 0..6 {
        b.latency.add(latency);
    }
    b.up_ms = 60_000;
    b
}

fn event(at: i64, subject: &str, kind: serde_json::Value) -> Event {
    let mut v = kind;
    v["time"] = json!(rfc3339(at));
    v["subject"] = json!(subject);
    serde_json::from_value(v).unwrap_or_else(|e| fail(&format!("a made-up event: {e}")))
}

fn restart() -> serde_json::Value {
    json!({ "type": "state", "from": "healthy", "to": "backing_off", "pid": null,
            "exit": { "kind": "code", "value": 137 }, "restarts": 1, "message": null })
}

fn deploy(day: i64) -> serde_json::Value {
    json!({ "type": "deploy_finished", "id": day + 1, "kind": "deploy", "result": "succeeded",
            "release": format!("r{}", day + 1), "previous": null, "error": null })
}

fn backup(day: i64) -> serde_json::Value {
    json!({ "type": "backup_finished", "id": day + 1, "trigger": "scheduled", "size": 1_048_576,
            "duration_ms": 120, "verified": true })
}

fn health(healthy: bool) -> serde_json::Value {
    json!({ "type": "health", "health": if healthy { "healthy" } else { "unhealthy" },
            "message": if healthy { serde_json::Value::Null } else { json!("GET /health: connection refused") } })
}

/// RFC 3339 UTC time of unix seconds `t`, as the agent writes event times.
fn rfc3339(t: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t.max(0) as u64)).to_string()
}
