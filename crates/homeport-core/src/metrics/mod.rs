//! History of services: a sampler task, the last hour in memory, roll-ups in state.db, and the
//! answer to `/api/v1/metrics`.
//!
//! ```text
//!  every `sample_every` (one pass for all services, on a blocking thread):
//!    Supervisor::sample ── CPU, memory of each service's process group
//!    Hub::take_probes ──── latency of the health probes that passed (timed where they ran)
//!    state events ─────── UpClock per service and environment: ms up / down
//!        │
//!        ▼  one Sample per series (service APP/ENV/SVC, environment APP/ENV)
//!    Ring (last hour) + the minute in progress ──▶ at the minute's end: MetricsDb::add_minutes
//!                                                  (minute row, then its 10 min and hour rows)
//! ```
//! The sampler never touches a service task: it reads the hub's snapshot (pids), the process
//! table and the events the hub broadcasts, so supervision never waits on it.

mod db;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use homeport_config::Config;
use homeport_metrics::report::{push_bucket, push_point};
use homeport_metrics::{Bucket, Category, Policy, Resolution, Ring, Sample, UpClock, annotate};
use homeport_supervisor::usage::Meter;
use homeport_types::{
    EnvUptime, EventKind, MetricPoints, MetricsReport, MetricsResolution, ServiceKey,
    ServiceMetrics, Target,
};
use tokio::sync::broadcast::error::RecvError;

pub use db::MetricsDb;

use crate::Core;

/// The longest range a report covers.
pub const MAX_RANGE: Duration = Duration::from_secs(400 * 86400);
/// The most points one series of a report may have.
pub const MAX_POINTS: u64 = 20_000;
/// The most annotations a report carries (the newest).
const MAX_ANNOTATIONS: usize = 500;

/// A request for history: what, how far back, how fine (`None`: the finest the range allows
/// with at most a few thousand points).
#[derive(Debug, Clone)]
pub struct MetricsQuery {
    pub target: Target,
    pub range: Duration,
    pub resolution: Option<MetricsResolution>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    NotFound(#[from] crate::NotFound),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read the history in state.db: {0}")]
    Store(#[source] rusqlite::Error),
}

/// The sampler's memory and the roll-up store.
pub(crate) struct Metrics {
    /// `None`: sampling is off (`sample_every = "0s"`).
    every: Option<Duration>,
    policy: Policy,
    live: Mutex<Live>,
    /// `None` when state.db could not be opened for it (said in the log once).
    db: Mutex<Option<MetricsDb>>,
}

#[derive(Default)]
struct Live {
    rings: HashMap<String, Ring>,
    /// The minute in progress, per series; written when it ends.
    minute: BTreeMap<String, Bucket>,
    minute_start: Option<i64>,
}

fn unix_now() -> (i64, i64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.as_millis() as i64)
}

impl Metrics {
    pub(crate) fn new(config: &Config) -> Metrics {
        let every = Some(config.agent.sample_every).filter(|d| !d.is_zero());
        let db = match MetricsDb::open(&config.agent.data_dir.join("state.db")) {
            Ok(db) => Some(db),
            Err(e) => {
                tracing::error!("metrics are not kept: cannot open state.db for them: {e}");
                None
            }
        };
        Metrics {
            every,
            policy: Policy::default(),
            live: Mutex::default(),
            db: Mutex::new(db),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds one interval's samples: to the rings, and to the minute in progress. Returns the
    /// minute that ended, if the samples begin a new one.
    fn add(&self, samples: Vec<(String, Sample)>, start: i64) -> Vec<(String, Bucket)> {
        let capacity = self.every.map_or(3600, |e| e.as_secs().max(1));
        let minute = Resolution::Minute.align(start);
        let mut live = self.live();
        let ended = if live.minute_start.is_some_and(|m| m != minute) {
            std::mem::take(&mut live.minute).into_iter().collect()
        } else {
            Vec::new()
        };
        live.minute_start = Some(minute);
        for (name, s) in samples {
            let b = Bucket {
                start: minute,
                ..Bucket::default()
            };
            let mut one = b;
            one.add(&s);
            if one.is_empty() {
                continue;
            }
            live.rings
                .entry(name.clone())
                .or_insert_with(|| Ring::for_an_hour(capacity))
                .push(&s);
            live.minute.entry(name).or_insert(b).merge(&one);
        }
        ended
    }

    /// Writes finished minutes, then applies retention (at most hourly).
    fn write(&self, rows: &[(String, Bucket)], now: i64) {
        let mut db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(db) = db.as_mut() else { return };
        if !rows.is_empty()
            && let Err(e) = db.add_minutes(rows)
        {
            tracing::warn!("cannot write metrics to state.db: {e}");
        }
        if let Err(e) = db.prune(&self.policy, now) {
            tracing::warn!("cannot prune old metrics in state.db: {e}");
        }
    }

    /// Writes the minute in progress now (the agent is stopping). Blocking.
    pub(crate) fn flush(&self) {
        let rows: Vec<(String, Bucket)> = std::mem::take(&mut self.live().minute)
            .into_iter()
            .collect();
        if !rows.is_empty() {
            self.write(&rows, unix_now().0);
        }
    }
}

/// Up and down clocks of every service and environment, driven by state events.
#[derive(Default)]
struct Clocks {
    services: HashMap<ServiceKey, UpClock>,
    envs: HashMap<(String, String), UpClock>,
}

impl Clocks {
    /// Adds services and environments the config names and the clocks lack (at their snapshot's
    /// state), and drops those it no longer names.
    fn sync(
        &mut self,
        config: &Config,
        snaps: &BTreeMap<ServiceKey, homeport_supervisor::ServiceSnapshot>,
        at: i64,
        reset: bool,
    ) {
        self.services
            .retain(|k, _| config.services.iter().any(|s| &s.key == k));
        self.envs
            .retain(|(a, e), _| config.envs.iter().any(|x| &x.app == a && &x.env == e));
        for s in &config.services {
            let cat = snaps
                .get(&s.key)
                .map_or(Category::Off, |snap| Category::of(snap.state));
            match self.services.get_mut(&s.key) {
                Some(c) if reset => c.set(cat, at),
                Some(_) => {}
                None => {
                    self.services.insert(s.key.clone(), UpClock::new(cat, at));
                }
            }
        }
        for e in &config.envs {
            let cat = self.env_category(&e.app, &e.env);
            self.envs
                .entry((e.app.clone(), e.env.clone()))
                .and_modify(|c| c.set(cat, at))
                .or_insert_with(|| UpClock::new(cat, at));
        }
    }

    fn env_category(&self, app: &str, env: &str) -> Category {
        Category::of_env(
            self.services
                .iter()
                .filter(|(k, _)| k.app == app && k.env == env)
                .map(|(_, c)| c.category()),
        )
    }

    fn on_state(&mut self, key: &ServiceKey, to: homeport_types::ServiceState, at: i64) {
        let Some(c) = self.services.get_mut(key) else {
            return;
        };
        c.set(Category::of(to), at);
        let cat = self.env_category(&key.app, &key.env);
        if let Some(e) = self.envs.get_mut(&(key.app.clone(), key.env.clone())) {
            e.set(cat, at);
        }
    }
}

/// The sampler: runs until the agent stops; does nothing when sampling is off.
pub(crate) async fn run(core: Arc<Core>) {
    let Some(every) = core.metrics.every else {
        return;
    };
    let every_ms = every.as_millis().max(1) as i64;
    let (snaps, mut events) = core.supervisor().hub().subscribe();
    let mut clocks = Clocks::default();
    let (mut last, now_ms) = unix_now();
    clocks.sync(&core.config(), &snaps, now_ms, false);
    let mut meter = Some(Meter::default());
    let stop = core.shutdown_signal();
    tokio::pin!(stop);
    loop {
        let (_, now_ms) = unix_now();
        // Ticks on multiples of the interval, so samples never straddle a minute.
        let wait = every_ms - now_ms.rem_euclid(every_ms);
        let tick = tokio::time::sleep(Duration::from_millis(wait as u64));
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if let (EventKind::State { to, .. }, Some(key)) = (&ev.kind, ev.service()) {
                        clocks.on_state(key, *to, unix_now().1);
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    let snaps = core.supervisor().hub().snapshot();
                    clocks.sync(&core.config(), &snaps, unix_now().1, true);
                }
                Err(RecvError::Closed) => return,
            },
            () = tick => {
                let Some(m) = meter.take() else { return };
                let sup = Arc::clone(&core);
                let Ok((usage, m)) = tokio::task::spawn_blocking(move || {
                    let mut m = m;
                    (sup.supervisor().sample(&mut m), m)
                })
                .await else {
                    return;
                };
                meter = Some(m);
                let (now, now_ms) = unix_now();
                let config = core.config();
                clocks.sync(&config, &core.supervisor().hub().snapshot(), now_ms, false);
                let probes = core.supervisor().hub().take_probes();
                let start = last;
                last = now;
                let mut samples = Vec::with_capacity(clocks.services.len() + clocks.envs.len());
                for (key, clock) in &mut clocks.services {
                    let (up, down) = clock.take(now_ms);
                    let u = usage.get(key);
                    samples.push((
                        key.to_string(),
                        Sample {
                            start,
                            cpu: u.and_then(|u| u.cpu_percent).map(|c| (c.max(0.0) * 100.0).round() as u32),
                            rss: u.map(|u| u.rss),
                            latency: probes.get(key).copied().unwrap_or_default(),
                            up_ms: up.min(u64::from(u32::MAX)) as u32,
                            down_ms: down.min(u64::from(u32::MAX)) as u32,
                        },
                    ));
                }
                for ((app, env), clock) in &mut clocks.envs {
                    let (up, down) = clock.take(now_ms);
                    samples.push((
                        format!("{app}/{env}"),
                        Sample {
                            start,
                            up_ms: up.min(u64::from(u32::MAX)) as u32,
                            down_ms: down.min(u64::from(u32::MAX)) as u32,
                            ..Sample::default()
                        },
                    ));
                }
                let ended = core.metrics.add(samples, start);
                if !ended.is_empty() {
                    let c = Arc::clone(&core);
                    let _ = tokio::task::spawn_blocking(move || c.metrics.write(&ended, now)).await;
                }
            }
            () = &mut stop => {
                let c = Arc::clone(&core);
                let _ = tokio::task::spawn_blocking(move || c.metrics.flush()).await;
                return;
            }
        }
    }
}

/// The report for `q`.
pub(crate) fn report(core: &Core, q: &MetricsQuery) -> Result<MetricsReport, MetricsError> {
    if q.range < Duration::from_secs(60) || q.range > MAX_RANGE {
        return Err(MetricsError::Invalid(format!(
            "range {}: give one from 1m to 400d, e.g. 1h, 24h, 7d or 30d",
            humantime::format_duration(q.range)
        )));
    }
    let config = core.config();
    let keys: Vec<ServiceKey> = config
        .services
        .iter()
        .map(|s| s.key.clone())
        .filter(|k| q.target.contains(k))
        .collect();
    if keys.is_empty() && q.target != Target::All {
        core.supervisor().resolve(&q.target)?;
    }
    let envs: Vec<(String, String)> = config
        .envs
        .iter()
        .filter(|e| match &q.target {
            Target::All => true,
            Target::App(a) => &e.app == a,
            Target::Env(a, x) => &e.app == a && &e.env == x,
            Target::Service(k) => e.app == k.app && e.env == k.env,
        })
        .map(|e| (e.app.clone(), e.env.clone()))
        .collect();
    let m = &core.metrics;
    let every = m.every.map_or(0, |e| e.as_secs().max(1));
    let (now, _) = unix_now();
    let range = q.range.as_secs() as i64;
    let from = now - range;
    let resolution = q.resolution.unwrap_or(if range <= 3600 && every > 0 {
        MetricsResolution::Raw
    } else if range <= 2 * 86400 {
        MetricsResolution::Minute
    } else if range <= 15 * 86400 {
        MetricsResolution::TenMinutes
    } else {
        MetricsResolution::Hour
    });
    let res = match resolution {
        MetricsResolution::Raw => None,
        MetricsResolution::Minute => Some(Resolution::Minute),
        MetricsResolution::TenMinutes => Some(Resolution::TenMinutes),
        MetricsResolution::Hour => Some(Resolution::Hour),
    };
    let step = res.map_or(every.max(1) as i64, |r| r.secs());
    if resolution == MetricsResolution::Raw && range > 3600 {
        return Err(MetricsError::Invalid(
            "raw samples are kept for the last hour only: ask for a range of 1h or less, or a resolution of 1m, 10m or 1h".into(),
        ));
    }
    if (range / step) as u64 > MAX_POINTS {
        return Err(MetricsError::Invalid(format!(
            "{} at {} is more than {MAX_POINTS} points: choose a coarser resolution",
            humantime::format_duration(q.range),
            resolution.as_str()
        )));
    }

    // What is in memory: the rings (raw) and the minute in progress.
    let names: Vec<String> = keys
        .iter()
        .map(ToString::to_string)
        .chain(envs.iter().map(|(a, e)| format!("{a}/{e}")))
        .collect();
    let (rings, current): (HashMap<String, Ring>, HashMap<String, Bucket>) = {
        let live = m.live();
        (
            names
                .iter()
                .filter(|_| res.is_none())
                .filter_map(|n| Some((n.clone(), live.rings.get(n)?.clone())))
                .collect(),
            names
                .iter()
                .filter_map(|n| Some((n.clone(), *live.minute.get(n)?)))
                .collect(),
        )
    };

    // What is in state.db: the roll-ups at the resolution (for raw: the minutes, for uptime and
    // for the part of the hour before the ring begins).
    let rolled = res.unwrap_or(Resolution::Minute);
    let mut stored: HashMap<String, Vec<Bucket>> = HashMap::new();
    {
        let mut db = m.db.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(db) = db.as_mut() {
            for n in &names {
                let mut rows = db
                    .buckets(n, rolled, rolled.align(from), now)
                    .map_err(MetricsError::Store)?;
                if let Some(cur) = current.get(n) {
                    let start = rolled.align(cur.start);
                    match rows.iter_mut().find(|b| b.start == start) {
                        Some(b) => b.merge(cur),
                        None => {
                            let mut b = Bucket::empty(start);
                            b.merge(cur);
                            rows.push(b);
                        }
                    }
                }
                stored.insert(n.clone(), rows);
            }
        }
    }

    let points_of = |name: &str| -> MetricPoints {
        let rows = stored.get(name).map(Vec::as_slice).unwrap_or_default();
        let mut p = MetricPoints::default();
        match res {
            Some(_) => rows.iter().for_each(|b| push_bucket(&mut p, b)),
            None => {
                let ring = rings.get(name);
                let ring_from = ring.and_then(Ring::oldest_start).unwrap_or(i64::MAX);
                // Minutes from before the ring began (the agent started within the hour).
                rows.iter()
                    .filter(|b| b.start + 60 <= ring_from)
                    .for_each(|b| push_bucket(&mut p, b));
                if let Some(ring) = ring {
                    ring.since(from)
                        .for_each(|(t, pt)| push_point(&mut p, t, pt));
                }
            }
        }
        p
    };
    let total = |name: &str| {
        homeport_metrics::rollup::total(stored.get(name).map(Vec::as_slice).unwrap_or_default())
    };

    let services = keys
        .iter()
        .map(|k| {
            let name = k.to_string();
            ServiceMetrics {
                key: k.clone(),
                uptime: homeport_metrics::uptime::percent(total(&name).up_ms, total(&name).down_ms),
                points: points_of(&name),
            }
        })
        .collect();
    let envs = envs
        .iter()
        .map(|(app, env)| {
            let name = format!("{app}/{env}");
            let t = total(&name);
            let p = points_of(&name);
            EnvUptime {
                app: app.clone(),
                env: env.clone(),
                uptime: homeport_metrics::uptime::percent(t.up_ms, t.down_ms),
                up_secs: t.up_ms / 1000,
                down_secs: t.down_ms / 1000,
                t: p.t,
                up: p.up,
            }
        })
        .collect();

    let since =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(from.max(0) as u64))
            .to_string();
    let since = since.trim_end_matches('Z').to_owned();
    let mut events = core
        .store()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .chart_events(
            &q.target,
            &since,
            annotate::KINDS,
            annotate::STATES,
            MAX_ANNOTATIONS * 4,
        )
        .map_err(MetricsError::Store)?;
    events.reverse();
    let mut annotations = annotate::annotations(&events);
    let skip = annotations.len().saturating_sub(MAX_ANNOTATIONS);
    annotations.drain(..skip);

    Ok(MetricsReport {
        target: q.target.clone(),
        from,
        to: now,
        resolution,
        step: step as u32,
        sample_every: every as u32,
        services,
        envs,
        annotations,
    })
}
