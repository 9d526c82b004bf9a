//! When a scheduled backup is due. Wall-clock based and pure: after the machine slept through
//! several slots, exactly one backup is due on wake, not one per missed slot. A daily time is
//! the user's local time in the time zone given, through daylight-saving changes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jiff::Timestamp;
use jiff::civil::Time;
use jiff::tz::TimeZone;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Every so long after the last backup.
    Every(Duration),
    /// Once a day at this local time (seconds after midnight).
    DailyAt(u32),
}

impl Schedule {
    /// `"6h"`, `"30m"` (every …) or `"03:30"` (daily, local time).
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some((h, m)) = s.split_once(':') {
            let (h, m): (u32, u32) = (
                h.parse().map_err(|_| bad(s))?,
                m.parse().map_err(|_| bad(s))?,
            );
            if h > 23 || m > 59 {
                return Err(bad(s));
            }
            return Ok(Schedule::DailyAt(h * 3600 + m * 60));
        }
        let d = humantime::parse_duration(s).map_err(|_| bad(s))?;
        if d < Duration::from_secs(60) {
            return Err(format!("{s:?} is too often; back up at most once a minute"));
        }
        Ok(Schedule::Every(d))
    }

    /// When the next backup is due, given the last one (None: never backed up: due now). A daily
    /// time is read in `tz`: on the day the clocks go forward past it, it runs as much later as
    /// they jumped (02:30 → 03:30); on the day they go back over it, once, at its first
    /// occurrence.
    pub fn next_due(&self, last: Option<SystemTime>, tz: &TimeZone) -> SystemTime {
        let Some(last) = last else { return UNIX_EPOCH };
        match *self {
            Schedule::Every(d) => last + d,
            Schedule::DailyAt(secs) => next_local(last, secs, tz).unwrap_or(last + DAY),
        }
    }

    pub fn is_due(&self, last: Option<SystemTime>, now: SystemTime, tz: &TimeZone) -> bool {
        self.next_due(last, tz) <= now
    }
}

const DAY: Duration = Duration::from_secs(86_400);

/// The first moment after `last` when the clock in `tz` reads `secs` after midnight.
fn next_local(last: SystemTime, secs: u32, tz: &TimeZone) -> Option<SystemTime> {
    let last = Timestamp::try_from(last).ok()?;
    let time = Time::new(
        i8::try_from(secs / 3600).ok()?,
        i8::try_from(secs % 3600 / 60).ok()?,
        0,
        0,
    )
    .ok()?;
    let mut date = last.to_zoned(tz.clone()).date();
    // The same day or the next; a third only if a zone skipped a whole day.
    for _ in 0..3 {
        // "Compatible": a time the clocks skipped is taken as late as they jumped, a time they
        // repeat at its first occurrence.
        let candidate = date.to_datetime(time).to_zoned(tz.clone()).ok()?;
        if candidate.timestamp() > last {
            return Some(SystemTime::from(candidate.timestamp()));
        }
        date = date.tomorrow().ok()?;
    }
    None
}

fn bad(s: &str) -> String {
    format!(
        "{s:?} is not a schedule; expected an interval such as \"6h\" or a daily local time such as \"03:30\""
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn parses_intervals_and_times() {
        assert_eq!(
            Schedule::parse("6h"),
            Ok(Schedule::Every(Duration::from_secs(6 * 3600)))
        );
        assert_eq!(
            Schedule::parse("03:30"),
            Ok(Schedule::DailyAt(3 * 3600 + 30 * 60))
        );
        assert!(Schedule::parse("25:00").is_err());
        assert!(Schedule::parse("soon").is_err());
        assert!(Schedule::parse("1s").is_err());
    }

    fn utc() -> TimeZone {
        TimeZone::UTC
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").expect("the system's time zone database has Europe/Berlin")
    }

    /// `2026-03-29T01:30:00Z`-style instants, for reading the tests.
    fn utc_at(s: &str) -> SystemTime {
        SystemTime::from(s.parse::<Timestamp>().expect("a timestamp"))
    }

    #[test]
    fn never_backed_up_is_due_now() {
        assert!(Schedule::Every(Duration::from_secs(3600)).is_due(None, at(5), &utc()));
    }

    #[test]
    fn a_long_sleep_makes_one_backup_due_then_the_rhythm_resumes() {
        let s = Schedule::Every(Duration::from_secs(6 * 3600));
        let last = at(1_000_000);
        // The machine slept for three days: due once on wake…
        let wake = at(1_000_000 + 3 * 86_400);
        assert!(s.is_due(Some(last), wake, &utc()));
        // …and after that backup, not again until six hours later.
        assert!(!s.is_due(Some(wake), wake + Duration::from_secs(3600), &utc()));
        assert!(s.is_due(Some(wake), wake + Duration::from_secs(6 * 3600), &utc()));
    }

    #[test]
    fn daily_at_a_time() {
        let s = Schedule::DailyAt(3 * 3600);
        let day = 20_000 * 86_400;
        // Last backup at 01:00: due at 03:00 the same day.
        assert_eq!(s.next_due(Some(at(day + 3600)), &utc()), at(day + 3 * 3600));
        // Last backup at 04:00: due at 03:00 the next day.
        assert_eq!(
            s.next_due(Some(at(day + 4 * 3600)), &utc()),
            at(day + 86_400 + 3 * 3600)
        );
    }

    #[test]
    fn a_daily_time_is_local_time() {
        // 03:30 in Berlin is 02:30 UTC in winter and 01:30 UTC in summer.
        let s = Schedule::DailyAt(3 * 3600 + 30 * 60);
        assert_eq!(
            s.next_due(Some(utc_at("2026-01-10T12:00:00Z")), &berlin()),
            utc_at("2026-01-11T02:30:00Z")
        );
        assert_eq!(
            s.next_due(Some(utc_at("2026-07-10T12:00:00Z")), &berlin()),
            utc_at("2026-07-11T01:30:00Z")
        );
    }

    #[test]
    fn when_the_clocks_go_forward_over_the_time_it_runs_once_an_hour_later() {
        // Berlin, 2026-03-29: at 02:00 CET the clocks jump to 03:00 CEST; 02:30 does not exist.
        let s = Schedule::DailyAt(2 * 3600 + 30 * 60);
        let saturday = utc_at("2026-03-28T01:30:00Z"); // 02:30 CET
        let sunday = s.next_due(Some(saturday), &berlin());
        assert_eq!(sunday, utc_at("2026-03-29T01:30:00Z"), "03:30 CEST");
        // Then 02:30 again, now in summer time.
        assert_eq!(
            s.next_due(Some(sunday), &berlin()),
            utc_at("2026-03-30T00:30:00Z")
        );
    }

    #[test]
    fn when_the_clocks_go_back_over_the_time_it_runs_once_not_twice() {
        // Berlin, 2026-10-25: at 03:00 CEST the clocks go back to 02:00 CET; 02:30 comes twice.
        let s = Schedule::DailyAt(2 * 3600 + 30 * 60);
        let saturday = utc_at("2026-10-24T00:30:00Z"); // 02:30 CEST
        let sunday = s.next_due(Some(saturday), &berlin());
        assert_eq!(
            sunday,
            utc_at("2026-10-25T00:30:00Z"),
            "the first 02:30, in CEST"
        );
        // Not again at the second 02:30 (01:30 UTC) that day: next on Monday, in CET.
        assert_eq!(
            s.next_due(Some(sunday), &berlin()),
            utc_at("2026-10-26T01:30:00Z")
        );
        assert!(!s.is_due(Some(sunday), utc_at("2026-10-25T01:45:00Z"), &berlin()));
    }
}
