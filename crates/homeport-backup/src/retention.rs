//! Which backups to keep: the newest `keep_last` good ones, plus the newest good one of each of
//! the last `keep_daily` days, `keep_weekly` weeks and `keep_monthly` months — and always the
//! newest good one, whatever the numbers say. A backup whose check failed is never kept: it
//! takes no slot a good backup could have. Safety copies (what restores replaced) have a
//! retention of their own: [`safety_to_delete`].

use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep_last: usize,
    pub keep_daily: usize,
    pub keep_weekly: usize,
    pub keep_monthly: usize,
}

/// What retention needs to know of a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub id: i64,
    /// Seconds since the Unix epoch (UTC).
    pub time: i64,
    /// Verified, and no check of it has failed since.
    pub good: bool,
}

/// The ids to delete: every backup that is not good, and the good ones the policy does not
/// keep. Pure: the same inputs always give the same answer.
pub fn to_delete(backups: &[Candidate], policy: &Retention) -> Vec<i64> {
    let mut newest_first: Vec<&Candidate> = backups.iter().filter(|c| c.good).collect();
    newest_first.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
    let mut keep: BTreeSet<i64> = BTreeSet::new();
    keep.extend(newest_first.iter().take(policy.keep_last).map(|c| c.id));
    let mut bucketed = |n: usize, bucket: &dyn Fn(i64) -> i64| {
        let mut seen = BTreeSet::new();
        for c in &newest_first {
            if seen.len() >= n {
                break;
            }
            if seen.insert(bucket(c.time)) {
                keep.insert(c.id);
            }
        }
    };
    const DAY: i64 = 86_400;
    bucketed(policy.keep_daily, &|t| t.div_euclid(DAY));
    // Weeks start on Monday; 1970-01-01 was a Thursday.
    bucketed(policy.keep_weekly, &|t| {
        (t.div_euclid(DAY) + 3).div_euclid(7)
    });
    bucketed(policy.keep_monthly, &|t| {
        let (y, m, _) = civil_from_days(t.div_euclid(DAY));
        y * 12 + i64::from(m)
    });
    if let Some(newest) = newest_first.first() {
        keep.insert(newest.id);
    }
    let mut out: Vec<i64> = backups
        .iter()
        .map(|c| c.id)
        .filter(|id| !keep.contains(id))
        .collect();
    out.sort_unstable();
    out
}

/// Safety copies to delete: all but the newest `keep`, and never the newest one.
pub fn safety_to_delete(copies: &[Candidate], keep: usize) -> Vec<i64> {
    let mut newest_first: Vec<&Candidate> = copies.iter().collect();
    newest_first.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
    let mut out: Vec<i64> = newest_first
        .iter()
        .skip(keep.max(1))
        .map(|c| c.id)
        .collect();
    out.sort_unstable();
    out
}

/// Year, month, day of a count of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: i64 = 86_400;
    const HOUR: i64 = 3_600;

    fn c(id: i64, time: i64, good: bool) -> Candidate {
        Candidate { id, time, good }
    }

    fn policy(last: usize, daily: usize, weekly: usize, monthly: usize) -> Retention {
        Retention {
            keep_last: last,
            keep_daily: daily,
            keep_weekly: weekly,
            keep_monthly: monthly,
        }
    }

    #[test]
    fn keeps_the_last_n_and_one_per_day() {
        // Four backups a day for five days.
        let backups: Vec<Candidate> = (0..20)
            .map(|i| c(i, 20 * DAY + i * 6 * HOUR, true))
            .collect();
        let deleted = to_delete(&backups, &policy(2, 3, 0, 0));
        let kept: Vec<i64> = backups
            .iter()
            .map(|b| b.id)
            .filter(|id| !deleted.contains(id))
            .collect();
        // The newest two (18, 19), and the newest of each of the last three days (19, 15, 11).
        assert_eq!(kept, [11, 15, 18, 19]);
    }

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
        assert_eq!(civil_from_days(20_512), (2026, 2, 28));
    }

    #[test]
    fn the_newest_good_backup_survives_a_policy_of_zero() {
        let backups = [c(1, 10, true), c(2, 20, false), c(3, 30, false)];
        assert_eq!(to_delete(&backups, &policy(0, 0, 0, 0)), [2, 3]);
    }

    #[test]
    fn a_failed_backup_never_takes_the_place_of_a_good_one() {
        // keep_last = 2: the newest (failed) one used to take a slot and push out a good one.
        let backups = [
            c(1, 10, true),
            c(2, 20, true),
            c(3, 30, true),
            c(4, 40, false),
        ];
        assert_eq!(to_delete(&backups, &policy(2, 0, 0, 0)), [1, 4]);
        // The newest of the day is the newest good one, not the failed one.
        let day = [c(1, DAY + 10, true), c(2, DAY + 20, false)];
        assert_eq!(to_delete(&day, &policy(0, 1, 0, 0)), [2]);
    }

    #[test]
    fn safety_copies_keep_their_newest() {
        let copies = [c(5, 50, true), c(6, 60, true), c(7, 70, true)];
        assert_eq!(safety_to_delete(&copies, 2), [5]);
        assert_eq!(safety_to_delete(&copies, 0), [5, 6], "never the newest");
        assert!(safety_to_delete(&[], 0).is_empty());
    }

    proptest! {
        #[test]
        fn never_deletes_the_newest_verified_nor_the_last_n(
            times in proptest::collection::vec((0i64..400 * DAY, any::<bool>()), 0..60),
            last in 0usize..5, daily in 0usize..8, weekly in 0usize..5, monthly in 0usize..4,
        ) {
            let backups: Vec<Candidate> = times.iter().enumerate().map(|(i, (t, v))| c(i as i64, *t, *v)).collect();
            let p = policy(last, daily, weekly, monthly);
            let deleted = to_delete(&backups, &p);
            let mut newest: Vec<&Candidate> = backups.iter().filter(|c| c.good).collect();
            newest.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
            for k in newest.iter().take(last) {
                prop_assert!(!deleted.contains(&k.id));
            }
            if let Some(v) = newest.first() {
                prop_assert!(!deleted.contains(&v.id));
            }
            // Nothing that is not good is kept.
            for b in backups.iter().filter(|b| !b.good) {
                prop_assert!(deleted.contains(&b.id));
            }
            // Deleting is idempotent: what is left is kept by the same policy.
            let left: Vec<Candidate> = backups.iter().copied().filter(|b| !deleted.contains(&b.id)).collect();
            prop_assert!(to_delete(&left, &p).is_empty());
            // At most last + daily + weekly + monthly + 1 survive.
            prop_assert!(left.len() <= last + daily + weekly + monthly + 1);
        }
    }
}
