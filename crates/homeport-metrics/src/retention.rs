//! Which roll-ups are kept: per resolution, a maximum age and a maximum number of rows per
//! series. Raw samples are never stored; a finer resolution is kept for a short while, a coarser
//! one for long, so state.db stays a bounded size per service however long the agent runs.
//!
//! Each resolution keeps a contiguous newest run of its own rows (everything from one start on),
//! and coarser ones are made from finer ones before anything is dropped, so what a finer
//! resolution lets go is still there, coarser — a chart over a month has no hole where the
//! minutes ended.

use crate::rollup::Resolution;

/// How long one resolution is kept, and how many rows of one series at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    pub res: Resolution,
    /// Seconds.
    pub max_age: i64,
    pub max_rows: u32,
}

/// A row from further ahead than this (seconds) means the clock was set back; such rows are
/// dropped rather than shadow the real ones for that long.
pub const FUTURE_SLACK: i64 = 24 * 3600;

/// Kept starts: rows with `from <= start <= until` stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: i64,
    pub until: i64,
}

/// Retention of all three resolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub minute: Keep,
    pub ten_minutes: Keep,
    pub hour: Keep,
}

impl Default for Policy {
    /// Minutes for two days (a day's chart at full detail), ten minutes for fifteen days (a
    /// week's), hours for 400 days (a month's, and a year's to compare with). Row caps allow
    /// the age plus the future slack, so they only bite when the clock misbehaves.
    fn default() -> Self {
        const DAY: i64 = 24 * 3600;
        let keep = |res: Resolution, days: i64| Keep {
            res,
            max_age: days * DAY,
            max_rows: ((days * DAY + FUTURE_SLACK) / res.secs() + 1) as u32,
        };
        Policy {
            minute: keep(Resolution::Minute, 2),
            ten_minutes: keep(Resolution::TenMinutes, 15),
            hour: keep(Resolution::Hour, 400),
        }
    }
}

impl Policy {
    pub fn of(&self, res: Resolution) -> Keep {
        match res {
            Resolution::Minute => self.minute,
            Resolution::TenMinutes => self.ten_minutes,
            Resolution::Hour => self.hour,
        }
    }

    /// The finest resolution that still holds data from `secs_ago` seconds back.
    pub fn finest_holding(&self, secs_ago: i64) -> Resolution {
        Resolution::ALL
            .into_iter()
            .find(|r| self.of(*r).max_age >= secs_ago)
            .unwrap_or(Resolution::Hour)
    }
}

impl Keep {
    /// Rows after this start are from the future (see [`FUTURE_SLACK`]).
    pub fn until(&self, now: i64) -> i64 {
        now + FUTURE_SLACK
    }

    /// The starts kept at `now`. `nth_newest` is the start of the `max_rows`-th newest row
    /// among those not after [`Keep::until`] (`None` when there are fewer): rows older than it
    /// go even if they are young enough. The window that holds `now - max_age` is kept whole.
    pub fn window(&self, now: i64, nth_newest: Option<i64>) -> Window {
        let by_age = self.res.align(now - self.max_age);
        Window {
            from: nth_newest.map_or(by_age, |n| n.max(by_age)),
            until: self.until(now),
        }
    }
}

/// The start of the `n`-th newest of `starts` (any order) not after `until`, as the store
/// finds it with `ORDER BY start DESC LIMIT 1 OFFSET n - 1`.
pub fn nth_newest(starts: &[i64], until: i64, n: u32) -> Option<i64> {
    let mut s: Vec<i64> = starts.iter().copied().filter(|s| *s <= until).collect();
    s.sort_unstable_by(|a, b| b.cmp(a));
    s.get((n as usize).checked_sub(1)?).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::{Bucket, Sample, Stat, cascade, rollup};
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const NOW: i64 = 1_800_000_000;

    fn policy() -> impl Strategy<Value = Policy> {
        (
            3600i64..4 * 86400,
            600i64..20 * 86400,
            3600i64..40 * 86400,
            1u32..4000,
            1u32..4000,
            1u32..4000,
            any::<bool>(),
        )
            .prop_map(|(a1, a2, a3, c1, c2, c3, capped)| {
                let big =
                    |age: i64, res: Resolution| ((age + FUTURE_SLACK) / res.secs() + 1) as u32;
                let (c1, c2, c3) = if capped {
                    (c1, c2, c3)
                } else {
                    (
                        big(a1, Resolution::Minute),
                        big(a2, Resolution::TenMinutes),
                        big(a3, Resolution::Hour),
                    )
                };
                Policy {
                    minute: Keep {
                        res: Resolution::Minute,
                        max_age: a1,
                        max_rows: c1,
                    },
                    ten_minutes: Keep {
                        res: Resolution::TenMinutes,
                        max_age: a2,
                        max_rows: c2,
                    },
                    hour: Keep {
                        res: Resolution::Hour,
                        max_age: a3,
                        max_rows: c3,
                    },
                }
            })
    }

    /// Samples over the last 45 days (denser recently), a few from a clock set back.
    fn samples() -> impl Strategy<Value = Vec<Sample>> {
        let start = prop_oneof![
            4 => (0i64..6 * 3600).prop_map(|a| NOW - a),
            3 => (0i64..45 * 86400).prop_map(|a| NOW - a),
            1 => (0i64..3 * 86400).prop_map(|a| NOW + a),
        ];
        let sample = (start, 0u32..1000, 0u32..5000).prop_map(|(start, cpu, up)| Sample {
            start,
            cpu: Some(cpu),
            rss: None,
            latency: Stat::EMPTY,
            up_ms: up,
            down_ms: 5000 - up,
        });
        prop::collection::vec(sample, 0..400)
    }

    /// Applies the policy to one level as the store does.
    fn retain(rows: &[Bucket], keep: &Keep) -> Vec<Bucket> {
        let starts: Vec<i64> = rows.iter().map(|b| b.start).collect();
        let w = keep.window(NOW, nth_newest(&starts, keep.until(NOW), keep.max_rows));
        rows.iter()
            .filter(|b| w.from <= b.start && b.start <= w.until)
            .copied()
            .collect()
    }

    proptest! {
        /// Kept rows are exactly the newest run within age and count, unchanged; no more rows
        /// than the cap; none from further ahead than the slack.
        #[test]
        fn each_level_keeps_its_newest_rows_unchanged(s in samples(), p in policy()) {
            for res in Resolution::ALL {
                let keep = p.of(res);
                let rows = rollup(&s, res);
                let kept = retain(&rows, &keep);
                prop_assert!(kept.len() <= keep.max_rows as usize);
                for b in &kept {
                    prop_assert!(rows.contains(b));
                    prop_assert!(b.start >= res.align(NOW - keep.max_age));
                    prop_assert!(b.start <= NOW + FUTURE_SLACK);
                }
                // Contiguous: nothing dropped between two kept rows.
                if let (Some(first), Some(last)) = (kept.first(), kept.last()) {
                    let between = rows.iter().filter(|b| first.start <= b.start && b.start <= last.start).count();
                    prop_assert_eq!(between, kept.len());
                }
                // As many as the cap allows of those young enough.
                let young = rows.iter().filter(|b| b.start >= res.align(NOW - keep.max_age) && b.start <= NOW + FUTURE_SLACK).count();
                prop_assert_eq!(kept.len(), young.min(keep.max_rows as usize));
            }
        }

        /// After the cascade and retention, the times that still have data at some resolution
        /// are one unbroken run of the times that had data: a finer level's end is never a
        /// hole; and with the default policy everything of the last 400 days is there.
        #[test]
        fn what_a_finer_level_drops_a_coarser_one_still_covers(s in samples(), p in policy(), default in any::<bool>()) {
            let p = if default { Policy::default() } else { p };
            let minutes = rollup(&s, Resolution::Minute);
            let tens = cascade(&minutes, Resolution::TenMinutes);
            let hours = cascade(&tens, Resolution::Hour);
            let kept = [
                (Resolution::Minute, retain(&minutes, &p.minute)),
                (Resolution::TenMinutes, retain(&tens, &p.ten_minutes)),
                (Resolution::Hour, retain(&hours, &p.hour)),
            ];
            let covered = |t: i64| kept.iter().any(|(res, rows)| rows.iter().any(|b| b.start <= t && t < b.start + res.secs()));
            let times: BTreeSet<i64> = s.iter().map(|x| x.start).collect();
            let flags: Vec<bool> = times.iter().map(|t| covered(*t)).collect();
            // One run of trues: no false between two trues.
            let first = flags.iter().position(|c| *c);
            let last = flags.iter().rposition(|c| *c);
            if let (Some(a), Some(b)) = (first, last) {
                prop_assert!(flags[a..=b].iter().all(|c| *c), "a hole in the history: {flags:?}");
            }
            if default {
                for t in &times {
                    if *t >= NOW - 400 * 86400 && *t <= NOW + FUTURE_SLACK {
                        prop_assert!(covered(*t), "{t} lost");
                    }
                }
            }
        }
    }

    #[test]
    fn the_default_policy_keeps_a_day_of_minutes_and_a_month_of_hours() {
        let p = Policy::default();
        assert_eq!(p.finest_holding(24 * 3600), Resolution::Minute);
        assert_eq!(p.finest_holding(7 * 86400), Resolution::TenMinutes);
        assert_eq!(p.finest_holding(30 * 86400), Resolution::Hour);
        for res in Resolution::ALL {
            let k = p.of(res);
            assert!(i64::from(k.max_rows) * res.secs() >= k.max_age + FUTURE_SLACK);
        }
    }

    #[test]
    fn the_row_cap_counts_from_the_newest_row_not_after_the_slack() {
        let starts = [0, 60, 120, 180, NOW + 2 * FUTURE_SLACK];
        assert_eq!(nth_newest(&starts, NOW + FUTURE_SLACK, 2), Some(120));
        assert_eq!(nth_newest(&starts, NOW + FUTURE_SLACK, 9), None);
        assert_eq!(nth_newest(&starts, NOW + FUTURE_SLACK, 0), None);
    }
}
