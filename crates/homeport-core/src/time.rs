//! Times as a person reads and writes them: on the local clock, with its zone. Files, state.db
//! and the API keep UTC (RFC 3339); only what is shown or typed is local.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// The zone's name as the user knows it: its IANA name ("Europe/Berlin"), else "local time".
pub fn zone_name(tz: &TimeZone) -> String {
    tz.iana_name()
        .map_or_else(|| "local time".to_owned(), str::to_owned)
}

/// An RFC 3339 time as local time with the zone's abbreviation: "2026-12-04 04:30:12 CET".
/// Text that is not such a time comes back as it was.
pub fn local(rfc3339: &str) -> String {
    local_in(rfc3339, &TimeZone::system(), "%Y-%m-%d %H:%M:%S %Z")
}

/// The local clock time of an RFC 3339 time, to the millisecond: "04:30:12.345".
pub fn local_clock(rfc3339: &str) -> String {
    local_in(rfc3339, &TimeZone::system(), "%H:%M:%S%.3f")
}

fn local_in(rfc3339: &str, tz: &TimeZone, format: &str) -> String {
    match rfc3339.parse::<Timestamp>() {
        Ok(t) => t.to_zoned(tz.clone()).strftime(format).to_string(),
        Err(_) => rfc3339.to_owned(),
    }
}

/// A time a person typed, read on the local clock: RFC 3339 as it is; `YYYY-MM-DD HH:MM[:SS]`
/// that day; `HH:MM[:SS]` today, or yesterday when that is still to come.
pub fn parse_local(text: &str, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Some(t);
    }
    if let Ok(dt) = text.replacen(' ', "T", 1).parse::<jiff::civil::DateTime>() {
        return dt.to_zoned(tz.clone()).ok().map(|z| z.timestamp());
    }
    let time = text.parse::<jiff::civil::Time>().ok()?;
    let today = now.to_zoned(tz.clone()).date();
    let at = today.to_datetime(time).to_zoned(tz.clone()).ok()?;
    if at.timestamp() <= now {
        return Some(at.timestamp());
    }
    today
        .yesterday()
        .ok()?
        .to_datetime(time)
        .to_zoned(tz.clone())
        .ok()
        .map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").expect("Europe/Berlin")
    }

    #[test]
    fn shown_on_the_local_clock_with_the_zone() {
        let f = "%Y-%m-%d %H:%M:%S %Z";
        assert_eq!(
            local_in("2026-12-04T03:30:12Z", &berlin(), f),
            "2026-12-04 04:30:12 CET"
        );
        assert_eq!(
            local_in("2026-07-04T03:30:12.5+00:00", &berlin(), f),
            "2026-07-04 05:30:12 CEST"
        );
        assert_eq!(
            local_in("2026-07-04T03:30:12.25Z", &berlin(), "%H:%M:%S%.3f"),
            "05:30:12.250"
        );
        assert_eq!(local_in("not a time", &berlin(), f), "not a time");
        assert_eq!(zone_name(&berlin()), "Europe/Berlin");
    }

    #[test]
    fn typed_times_are_read_on_the_local_clock() {
        let now: Timestamp = "2026-12-04T12:00:00Z".parse().unwrap(); // 13:00 in Berlin
        let at = |s: &str| parse_local(s, now, &berlin()).map(|t| t.to_string());
        assert_eq!(at("10:30").as_deref(), Some("2026-12-04T09:30:00Z"));
        // Still to come today: yesterday's.
        assert_eq!(at("14:00").as_deref(), Some("2026-12-03T13:00:00Z"));
        assert_eq!(
            at("2026-07-01 08:00").as_deref(),
            Some("2026-07-01T06:00:00Z")
        );
        assert_eq!(
            at("2026-07-01T08:00:00Z").as_deref(),
            Some("2026-07-01T08:00:00Z")
        );
        assert_eq!(at("soon"), None);
    }
}
