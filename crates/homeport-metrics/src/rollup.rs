//! Samples and their roll-ups.
//!
//! Everything is an integer (CPU in hundredths of a percent, memory in bytes, latency in
//! microseconds, time up and down in milliseconds) and a bucket keeps totals, not averages, so
//! merging is exact and associative: ten minute buckets merged are the ten-minute bucket of the
//! same samples, to the unit.

use std::collections::BTreeMap;

/// Total, minimum, maximum and count of integer values; empty when `n` is 0 (then `min` and
/// `max` mean nothing and are 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    pub sum: i64,
    pub min: i64,
    pub max: i64,
    pub n: u64,
}

impl Stat {
    pub const EMPTY: Stat = Stat {
        sum: 0,
        min: 0,
        max: 0,
        n: 0,
    };

    pub fn one(v: i64) -> Stat {
        Stat {
            sum: v,
            min: v,
            max: v,
            n: 1,
        }
    }

    pub fn of(v: Option<i64>) -> Stat {
        v.map_or(Stat::EMPTY, Stat::one)
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn add(&mut self, v: i64) {
        self.merge(&Stat::one(v));
    }

    pub fn merge(&mut self, other: &Stat) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *other;
            return;
        }
        self.sum = self.sum.saturating_add(other.sum);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.n += other.n;
    }

    pub fn avg(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum as f64 / self.n as f64)
    }

    pub fn max(&self) -> Option<i64> {
        (self.n > 0).then_some(self.max)
    }

    pub fn min(&self) -> Option<i64> {
        (self.n > 0).then_some(self.min)
    }
}

/// What was measured of one service (or, with only the up and down times, one environment)
/// over one sampling interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// Unix seconds at the start of the interval it covers.
    pub start: i64,
    /// CPU over the interval, in hundredths of a percent of one core (150 % = 15,000).
    pub cpu: Option<u32>,
    /// Resident memory of the service's processes when the interval ended, in bytes.
    pub rss: Option<u64>,
    /// Latency of the health probes that passed during the interval, in microseconds.
    pub latency: Stat,
    /// Milliseconds of the interval it spent up and down (see [`crate::uptime`]); the rest it
    /// was neither (stopped on purpose, or the agent did not run).
    pub up_ms: u32,
    pub down_ms: u32,
}

/// The samples of one aligned window, summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bucket {
    /// Unix seconds at the start of the window; a multiple of its resolution's width.
    pub start: i64,
    pub cpu: Stat,
    pub rss: Stat,
    pub latency: Stat,
    pub up_ms: u64,
    pub down_ms: u64,
}

impl Bucket {
    pub fn empty(start: i64) -> Bucket {
        Bucket {
            start,
            ..Bucket::default()
        }
    }

    /// Adds one sample (whatever its start: the caller chose this bucket for it).
    pub fn add(&mut self, s: &Sample) {
        self.cpu.merge(&Stat::of(s.cpu.map(i64::from)));
        self.rss.merge(&Stat::of(
            s.rss.map(|r| i64::try_from(r).unwrap_or(i64::MAX)),
        ));
        self.latency.merge(&s.latency);
        self.up_ms += u64::from(s.up_ms);
        self.down_ms += u64::from(s.down_ms);
    }

    /// Adds another bucket's totals (its start is not looked at).
    pub fn merge(&mut self, b: &Bucket) {
        self.cpu.merge(&b.cpu);
        self.rss.merge(&b.rss);
        self.latency.merge(&b.latency);
        self.up_ms += b.up_ms;
        self.down_ms += b.down_ms;
    }

    /// Whether nothing was measured in it.
    pub fn is_empty(&self) -> bool {
        self.cpu.is_empty()
            && self.rss.is_empty()
            && self.latency.is_empty()
            && self.up_ms == 0
            && self.down_ms == 0
    }

    /// The share of counted time it was up, 0 to 1; `None` when no time counted.
    pub fn up_ratio(&self) -> Option<f64> {
        let total = self.up_ms + self.down_ms;
        (total > 0).then(|| self.up_ms as f64 / total as f64)
    }
}

/// The widths roll-ups are kept at, finest first. Each divides the next, so a window of one is
/// made of whole windows of the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    Minute,
    TenMinutes,
    Hour,
}

impl Resolution {
    pub const ALL: [Resolution; 3] = [Resolution::Minute, Resolution::TenMinutes, Resolution::Hour];

    /// The window's width in seconds (also how it is stored in state.db).
    pub const fn secs(self) -> i64 {
        match self {
            Resolution::Minute => 60,
            Resolution::TenMinutes => 600,
            Resolution::Hour => 3600,
        }
    }

    pub fn from_secs(secs: i64) -> Option<Resolution> {
        Resolution::ALL.into_iter().find(|r| r.secs() == secs)
    }

    /// The next coarser resolution, which is made from this one.
    pub fn coarser(self) -> Option<Resolution> {
        match self {
            Resolution::Minute => Some(Resolution::TenMinutes),
            Resolution::TenMinutes => Some(Resolution::Hour),
            Resolution::Hour => None,
        }
    }

    /// The next finer resolution, which this one is made from.
    pub fn finer(self) -> Option<Resolution> {
        match self {
            Resolution::Minute => None,
            Resolution::TenMinutes => Some(Resolution::Minute),
            Resolution::Hour => Some(Resolution::TenMinutes),
        }
    }

    /// The start of the window that holds second `t` (windows are half-open: `[start,
    /// start + width)`, so a time on a boundary belongs to the window it starts).
    pub fn align(self, t: i64) -> i64 {
        t.div_euclid(self.secs()) * self.secs()
    }

    /// As the API writes it: `1m`, `10m`, `1h`.
    pub fn name(self) -> &'static str {
        match self {
            Resolution::Minute => "1m",
            Resolution::TenMinutes => "10m",
            Resolution::Hour => "1h",
        }
    }
}

/// The buckets of `samples` at `res`, by start; a sample goes to the window its interval starts
/// in. Windows with no sample are absent (a gap in the data, not a zero).
pub fn rollup(samples: &[Sample], res: Resolution) -> Vec<Bucket> {
    let mut out: BTreeMap<i64, Bucket> = BTreeMap::new();
    for s in samples {
        let start = res.align(s.start);
        out.entry(start)
            .or_insert_with(|| Bucket::empty(start))
            .add(s);
    }
    out.into_values().collect()
}

/// Buckets of a finer resolution summed into the windows of `res`, by start.
pub fn cascade(finer: &[Bucket], res: Resolution) -> Vec<Bucket> {
    let mut out: BTreeMap<i64, Bucket> = BTreeMap::new();
    for b in finer {
        let start = res.align(b.start);
        out.entry(start)
            .or_insert_with(|| Bucket::empty(start))
            .merge(b);
    }
    out.into_values().collect()
}

/// Totals of all `buckets` (for uptime over a range).
pub fn total(buckets: &[Bucket]) -> Bucket {
    let mut t = Bucket::empty(buckets.first().map_or(0, |b| b.start));
    for b in buckets {
        t.merge(b);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stat() -> impl Strategy<Value = Stat> {
        prop::collection::vec(0i64..5_000_000, 0..4).prop_map(|vs| {
            let mut s = Stat::EMPTY;
            for v in vs {
                s.add(v);
            }
            s
        })
    }

    /// Samples over about a day, around the boundaries of every width, in any order.
    fn samples() -> impl Strategy<Value = Vec<Sample>> {
        let sample = (
            prop_oneof![
                // On and beside boundaries of every width.
                (0i64..30, -1i64..=1).prop_map(|(h, d)| 1_700_000_000 + h * 3600 + d),
                (0i64..180, -1i64..=1).prop_map(|(m, d)| 1_700_000_000 + m * 600 + d),
                1_700_000_000i64..1_700_100_000,
                // Before 1970 too: alignment must not round towards zero.
                -10_000i64..10_000,
            ],
            prop::option::of(0u32..80_000),
            prop::option::of(0u64..40_000_000_000),
            stat(),
            0u32..60_000,
            0u32..60_000,
        )
            .prop_map(|(start, cpu, rss, latency, up_ms, down_ms)| Sample {
                start,
                cpu,
                rss,
                latency,
                up_ms,
                down_ms,
            });
        prop::collection::vec(sample, 0..300)
    }

    fn sum(buckets: &[Bucket]) -> (u64, i64, u64, i64, u64, i64, u64, u64) {
        let t = total(buckets);
        (
            t.cpu.n,
            t.cpu.sum,
            t.rss.n,
            t.rss.sum,
            t.latency.n,
            t.latency.sum,
            t.up_ms,
            t.down_ms,
        )
    }

    proptest! {
        /// Every sample lands in exactly one window, the one that holds its start, and windows
        /// never overlap: each bucket starts on its width and they are strictly increasing.
        #[test]
        fn every_sample_lands_in_the_one_window_that_holds_it(s in samples()) {
            for res in Resolution::ALL {
                let buckets = rollup(&s, res);
                for w in buckets.windows(2) {
                    prop_assert!(w[0].start + res.secs() <= w[1].start);
                }
                for b in &buckets {
                    prop_assert_eq!(b.start.rem_euclid(res.secs()), 0);
                }
                for x in &s {
                    let holding: Vec<&Bucket> = buckets
                        .iter()
                        .filter(|b| b.start <= x.start && x.start < b.start + res.secs())
                        .collect();
                    prop_assert_eq!(holding.len(), 1);
                }
                let counted: u64 = buckets.iter().map(|b| b.up_ms + b.down_ms).sum();
                let given: u64 = s.iter().map(|x| u64::from(x.up_ms) + u64::from(x.down_ms)).sum();
                prop_assert_eq!(counted, given);
            }
        }

        /// Roll-ups of roll-ups are the roll-ups of the samples, exactly: the cascade a minute →
        /// ten minutes → an hour loses nothing and adds nothing.
        #[test]
        fn the_cascade_equals_rolling_up_the_samples_directly(s in samples()) {
            let minutes = rollup(&s, Resolution::Minute);
            let tens = cascade(&minutes, Resolution::TenMinutes);
            let hours = cascade(&tens, Resolution::Hour);
            prop_assert_eq!(&tens, &rollup(&s, Resolution::TenMinutes));
            prop_assert_eq!(&hours, &rollup(&s, Resolution::Hour));
            prop_assert_eq!(cascade(&minutes, Resolution::Hour), hours.clone());
            // Totals are preserved at every level.
            let direct = {
                let mut b = Bucket::empty(0);
                for x in &s { b.add(x); }
                sum(&[b])
            };
            prop_assert_eq!(sum(&minutes), direct);
            prop_assert_eq!(sum(&tens), direct);
            prop_assert_eq!(sum(&hours), direct);
        }

        /// The order samples arrive in, or how they are split between two roll-ups merged
        /// later (an agent restarted within a minute), does not matter.
        #[test]
        fn splitting_and_merging_changes_nothing(s in samples(), cut in 0usize..300) {
            let cut = cut.min(s.len());
            let (a, b) = s.split_at(cut);
            let mut merged = rollup(a, Resolution::Minute);
            merged.extend(rollup(b, Resolution::Minute));
            let merged = cascade(&merged, Resolution::Minute);
            prop_assert_eq!(merged, rollup(&s, Resolution::Minute));
            let mut rev = s.clone();
            rev.reverse();
            prop_assert_eq!(rollup(&rev, Resolution::Hour), rollup(&s, Resolution::Hour));
        }
    }

    #[test]
    fn a_time_on_a_boundary_starts_the_next_window() {
        assert_eq!(Resolution::Minute.align(120), 120);
        assert_eq!(Resolution::Minute.align(119), 60);
        assert_eq!(Resolution::Minute.align(-1), -60);
        assert_eq!(Resolution::Hour.align(7199), 3600);
    }

    #[test]
    fn a_bucket_reports_averages_extremes_and_uptime() {
        let mut b = Bucket::empty(0);
        for (cpu, up, down) in [(100, 5000, 0), (300, 4000, 1000)] {
            b.add(&Sample {
                start: 0,
                cpu: Some(cpu),
                rss: None,
                latency: Stat::one(1500),
                up_ms: up,
                down_ms: down,
            });
        }
        assert_eq!(b.cpu.avg(), Some(200.0));
        assert_eq!(b.cpu.max(), Some(300));
        assert_eq!(b.rss.avg(), None, "no memory was measured");
        assert_eq!(b.latency.n, 2);
        assert_eq!(b.up_ratio(), Some(0.9));
        assert_eq!(Bucket::empty(0).up_ratio(), None);
    }
}
