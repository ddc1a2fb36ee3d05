//! Wall-clock helpers. MLflow timestamps are milliseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// The calendar date (proleptic Gregorian) of a day number counted from 1970-01-01: year, month (1-12),
/// day (1-31).
pub fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The UTC hour of a millisecond timestamp as `YYYY-MM-DDTHH` (for hourly partitions).
pub fn utc_hour(millis: i64) -> String {
    let seconds = millis.div_euclid(1000);
    let hour = seconds.rem_euclid(86_400) / 3600;
    let (year, month, day) = civil_date(seconds.div_euclid(86_400));
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

/// Milliseconds since the epoch of a UTC time written as milliseconds (`1796256000000`), a day
/// (`2026-12-01`, its midnight) or a time (`2026-12-01T06:00Z`, `2026-12-01T06:00:30Z`); `None` otherwise.
/// Years 1970 to 9999.
pub fn parse_utc_millis(text: &str) -> Option<i64> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().filter(|ms| *ms <= 253_402_300_799_999);
    }
    let number = |part: &str, low: i64, high: i64| {
        (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse::<i64>().ok())
            .flatten()
            .filter(|n| (low..=high).contains(n))
    };
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time.strip_suffix('Z')?)),
        None => (text, None),
    };
    let mut fields = date.split('-');
    let (year, month, day) = (
        number(fields.next()?, 1970, 9999)?,
        number(fields.next()?, 1, 12)?,
        number(fields.next()?, 1, 31)?,
    );
    if fields.next().is_some() || date.len() != 10 {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if day > month_days[(month - 1) as usize] {
        return None;
    }
    // Days since 1970-01-01 from the civil date (the inverse of `utc_hour`'s conversion).
    let shifted = if month <= 2 { year - 1 } else { year };
    let era = shifted.div_euclid(400);
    let year_of_era = shifted - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let within_day_ms = match time {
        None => 0,
        Some(time) => {
            let mut parts = time.split(':');
            let hour = number(parts.next()?, 0, 23)?;
            let minute = number(parts.next()?, 0, 59)?;
            // Seconds, optionally with a fraction (`30.250`), as `rfc3339_millis` writes them.
            let (second, millis) = match parts.next() {
                Some(second) => match second.split_once('.') {
                    Some((whole, fraction)) if (1..=9).contains(&fraction.len()) => {
                        let padded = format!("{fraction:0<3}");
                        (number(whole, 0, 59)?, number(&padded[..3], 0, 999)?)
                    }
                    Some(_) => return None,
                    None => (number(second, 0, 59)?, 0),
                },
                None => (0, 0),
            };
            if parts.next().is_some()
                || (time.contains('.') && !time.split(':').nth(2).is_some_and(|s| s.contains('.')))
            {
                return None;
            }
            (hour * 3600 + minute * 60 + second) * 1000 + millis
        }
    };
    Some(days * 86_400_000 + within_day_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_parse_as_days_times_or_milliseconds() {
        assert_eq!(parse_utc_millis("1970-01-01"), Some(0));
        assert_eq!(
            parse_utc_millis("2026-11-22T12:01:01Z"),
            Some(1_795_348_800_000 + 61_000)
        );
        assert_eq!(
            parse_utc_millis("2000-02-29T23:00Z"),
            Some(951_782_400_000 + 3_600_000 * 23)
        );
        assert_eq!(parse_utc_millis("1795348800000"), Some(1_795_348_800_000));
        assert_eq!(
            parse_utc_millis(&rfc3339_millis(1_795_348_861_234)),
            Some(1_795_348_861_234)
        );
        assert_eq!(parse_utc_millis("2026-11-22T12:01:01.5Z"), Some(1_795_348_861_500));
        for bad in [
            "",
            "2026-02-29",
            "2026-13-01",
            "2026-1-01",
            "2026-01-01T25:00Z",
            "2026-01-01T10:00",
            "x",
            "-5",
        ] {
            assert_eq!(parse_utc_millis(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn every_day_parses_back_to_its_own_hour(days in 0i64..2_900_000) {
            let millis = days * 86_400_000;
            let day = &utc_hour(millis)[..10];
            proptest::prop_assert_eq!(parse_utc_millis(day), Some(millis));
        }

        #[test]
        fn any_text_parses_or_not_without_panicking(text in ".{0,40}") {
            let _ = parse_utc_millis(&text);
        }
    }

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
