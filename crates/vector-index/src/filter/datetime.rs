//! Date-times as range conditions and datetime payload indexes read them: RFC 3339 and the looser forms
//! Qdrant accepts (a space for `T`, no seconds, no zone meaning UTC, a bare date).

/// Nanoseconds since 1970-01-01T00:00:00Z, or `None` when the text is not a date-time.
pub fn parse_datetime(text: &str) -> Option<i128> {
    let text = text.trim();
    let bytes = text.as_bytes();
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year: i64 = digits(text.get(0..4)?)?;
    let month: i64 = digits(text.get(5..7)?)?;
    let day: i64 = digits(text.get(8..10)?)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut nanos_of_day: i128 = 0;
    let mut offset_seconds: i64 = 0;
    let rest = text.get(10..)?;
    if !rest.is_empty() {
        let rest = rest.strip_prefix(['T', 't', ' '])?;
        let (clock, zone) = match rest.find(['Z', 'z', '+', '-']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        let (hms, fraction) = match clock.split_once('.') {
            Some((hms, fraction)) => (hms, Some(fraction)),
            None => (clock, None),
        };
        let parts: Vec<&str> = hms.split(':').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|part| part.len() != 2) {
            return None;
        }
        let hour: i64 = digits(parts[0])?;
        let minute: i64 = digits(parts[1])?;
        let second: i64 = if parts.len() == 3 { digits(parts[2])? } else { 0 };
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let mut nanos: i128 = 0;
        if let Some(fraction) = fraction {
            if fraction.is_empty() || fraction.len() > 18 || !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            let kept = &fraction[..fraction.len().min(9)];
            nanos = kept.parse::<i128>().ok()? * 10i128.pow(9 - kept.len() as u32);
        }
        nanos_of_day = i128::from(hour * 3600 + minute * 60 + second) * 1_000_000_000 + nanos;
        offset_seconds = match zone {
            "" | "Z" | "z" => 0,
            _ => {
                let sign = if zone.starts_with('-') { -1 } else { 1 };
                let zone = zone.get(1..)?;
                let (hours, minutes) = match zone.len() {
                    5 if zone.as_bytes()[2] == b':' => (zone.get(0..2)?, zone.get(3..5)?),
                    4 => (zone.get(0..2)?, zone.get(2..4)?),
                    2 => (zone, "00"),
                    _ => return None,
                };
                let (hours, minutes): (i64, i64) = (digits(hours)?, digits(minutes)?);
                if hours > 23 || minutes > 59 {
                    return None;
                }
                sign * (hours * 3600 + minutes * 60)
            }
        };
    }
    let days = days_from_civil(year, month, day);
    Some(i128::from(days) * 86_400 * 1_000_000_000 + nanos_of_day - i128::from(offset_seconds) * 1_000_000_000)
}

fn digits(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn forms_qdrant_accepts() {
        const SECOND: i128 = 1_000_000_000;
        assert_eq!(parse_datetime("1970-01-01"), Some(0));
        assert_eq!(parse_datetime("1970-01-01T00:00:01Z"), Some(SECOND));
        assert_eq!(parse_datetime("2023-02-08T10:49:00Z"), Some(1_675_853_340 * SECOND));
        assert_eq!(parse_datetime("2023-02-08 10:49"), Some(1_675_853_340 * SECOND));
        assert_eq!(
            parse_datetime("2023-02-08T12:49:00+02:00"),
            Some(1_675_853_340 * SECOND)
        );
        assert_eq!(
            parse_datetime("2023-02-08T10:49:00.5-0100"),
            Some((1_675_853_340 + 3600) * SECOND + SECOND / 2)
        );
        assert_eq!(parse_datetime("2024-02-29"), Some(19_782 * 86_400 * SECOND));
        for bad in [
            "",
            "2023-02-30",
            "2023-13-01",
            "2023-02-08T25:00",
            "2023-02-08X10:00",
            "tomorrow",
            "2023-02-08T10:49:00+2:00",
            "2023-02-08T10:49:00.",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_text_parses_or_is_refused(text in ".{0,40}") {
            let _ = parse_datetime(&text);
        }
    }
}
