//! When a scheduled backup is due. Wall-clock based and pure: after the machine slept through
//! several slots, exactly one backup is due on wake, not one per missed slot.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Every so long after the last backup.
    Every(Duration),
    /// Once a day at this UTC time (seconds after midnight).
    DailyAt(u32),
}

impl Schedule {
    /// `"6h"`, `"30m"` (every …) or `"03:30"` (daily, UTC).
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

    /// When the next backup is due, given the last one (None: never backed up: due now).
    pub fn next_due(&self, last: Option<SystemTime>) -> SystemTime {
        let Some(last) = last else { return UNIX_EPOCH };
        match *self {
            Schedule::Every(d) => last + d,
            Schedule::DailyAt(secs) => {
                let t = last
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let day = t / 86_400 * 86_400;
                let today = day + u64::from(secs);
                let next = if today > t { today } else { today + 86_400 };
                UNIX_EPOCH + Duration::from_secs(next)
            }
        }
    }

    pub fn is_due(&self, last: Option<SystemTime>, now: SystemTime) -> bool {
        self.next_due(last) <= now
    }
}

fn bad(s: &str) -> String {
    format!(
        "{s:?} is not a schedule; expected an interval such as \"6h\" or a daily UTC time such as \"03:30\""
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

    #[test]
    fn never_backed_up_is_due_now() {
        assert!(Schedule::Every(Duration::from_secs(3600)).is_due(None, at(5)));
    }

    #[test]
    fn a_long_sleep_makes_one_backup_due_then_the_rhythm_resumes() {
        let s = Schedule::Every(Duration::from_secs(6 * 3600));
        let last = at(1_000_000);
        // The machine slept for three days: due once on wake…
        let wake = at(1_000_000 + 3 * 86_400);
        assert!(s.is_due(Some(last), wake));
        // …and after that backup, not again until six hours later.
        assert!(!s.is_due(Some(wake), wake + Duration::from_secs(3600)));
        assert!(s.is_due(Some(wake), wake + Duration::from_secs(6 * 3600)));
    }

    #[test]
    fn daily_at_a_time() {
        let s = Schedule::DailyAt(3 * 3600);
        let day = 20_000 * 86_400;
        // Last backup at 01:00: due at 03:00 the same day.
        assert_eq!(s.next_due(Some(at(day + 3600))), at(day + 3 * 3600));
        // Last backup at 04:00: due at 03:00 the next day.
        assert_eq!(
            s.next_due(Some(at(day + 4 * 3600))),
            at(day + 86_400 + 3 * 3600)
        );
    }
}
