//! Wall-clock helpers. MLflow timestamps are milliseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// The UTC hour of a millisecond timestamp as `YYYY-MM-DDTHH` (for hourly partitions).
pub fn utc_hour(millis: i64) -> String {
    let seconds = millis.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let hour = seconds.rem_euclid(86_400) / 3600;
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}")
}

/// A millisecond timestamp as RFC 3339 in UTC with milliseconds, e.g. `2026-12-03T08:00:00.000Z`.
pub fn rfc3339_millis(millis: i64) -> String {
    let within_hour = millis.rem_euclid(3_600_000);
    format!(
        "{}:{:02}:{:02}.{:03}Z",
        utc_hour(millis),
        within_hour / 60_000,
        within_hour % 60_000 / 1000,
        within_hour % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_has_minutes_seconds_and_milliseconds() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(1_795_348_800_000 + 61_234), "2026-11-22T12:01:01.234Z");
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn hours_are_utc_calendar_hours() {
        assert_eq!(utc_hour(0), "1970-01-01T00");
        assert_eq!(utc_hour(951_782_400_000 + 3_600_000 * 23), "2000-02-29T23");
        assert_eq!(utc_hour(1_795_350_000_000), "2026-11-22T12");
        assert_eq!(utc_hour(-1), "1969-12-31T23");
    }
}
