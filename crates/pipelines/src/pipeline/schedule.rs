//! Cron schedules (five fields: minute, hour, day of month, month, day of week; UTC) and the next time one
//! fires. Fields take `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists, and month and day names;
//! as in cron, when both day fields are restricted a day matching either fires.

use loopline_core::time::civil_date;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(text: &str, low: u32, high: u32, names: &[&str], name_base: u32) -> Result<u32, String> {
    if let Some(index) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(index as u32 + name_base);
    }
    let number: u32 = text.parse().map_err(|_| format!("'{text}' is not a number or name"))?;
    if number < low || number > high {
        return Err(format!("{number} is outside {low}-{high}"));
    }
    Ok(number)
}

/// A field as a bit set of the values it allows; whether it was restricted (not `*`).
fn field(text: &str, low: u32, high: u32, names: &[&str], name_base: u32) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().map_err(|_| format!("step '{step}' is not a number"))?;
                if step == 0 || step > high {
                    return Err(format!("step {step} is outside 1-{high}"));
                }
                (range, step)
            }
            None => (part, 1),
        };
        let (start, end) = if range == "*" {
            (low, high)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(a, low, high, names, name_base)?,
                value(b, low, high, names, name_base)?,
            )
        } else {
            let single = value(range, low, high, names, name_base)?;
            (single, if part.contains('/') { high } else { single })
        };
        if start > end {
            return Err(format!("range {start}-{end} runs backwards"));
        }
        let mut current = start;
        while current <= end {
            bits |= 1 << current;
            current += step;
        }
    }
    Ok((bits, text != "*"))
}

impl Schedule {
    /// Parses five fields.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "a schedule has five fields (minute hour day-of-month month day-of-week), not {}",
                fields.len()
            ));
        }
        let named = |index: usize, what: &str, result: Result<(u64, bool), String>| {
            result.map_err(|e| format!("{what} field '{}': {e}", fields[index]))
        };
        let (minutes, _) = named(0, "minute", field(fields[0], 0, 59, &[], 0))?;
        let (hours, _) = named(1, "hour", field(fields[1], 0, 23, &[], 0))?;
        let (days, days_restricted) = named(2, "day-of-month", field(fields[2], 1, 31, &[], 0))?;
        let (months, _) = named(3, "month", field(fields[3], 1, 12, &MONTHS, 1))?;
        let (mut weekdays, weekdays_restricted) = named(4, "day-of-week", field(fields[4], 0, 7, &WEEKDAYS, 0))?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1; // 7 is Sunday too
        }
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_restricted,
            weekdays_restricted,
        })
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let by_day = self.days & (1 << day) != 0;
        let by_weekday = self.weekdays & (1 << weekday) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => by_day || by_weekday,
            _ => by_day && by_weekday,
        }
    }

    /// The first time the schedule fires strictly after `after_ms` (ms since the epoch, UTC), within about
    /// five years; `None` for a schedule that never does (February 30th).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let mut minute = after_ms.div_euclid(60_000) + 1;
        let mut day = minute.div_euclid(1_440);
        let last_day = day + 5 * 366;
        while day <= last_day {
            let (_, month, day_of_month) = civil_date(day);
            let weekday = (day + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday
            if self.months & (1 << month) != 0 && self.day_matches(day_of_month, weekday) {
                let first = if minute.div_euclid(1_440) == day {
                    minute.rem_euclid(1_440)
                } else {
                    0
                };
                for of_day in first..1_440 {
                    let (hour, min) = (of_day / 60, of_day % 60);
                    if self.hours & (1 << hour) != 0 && self.minutes & (1 << min) != 0 {
                        return Some((day * 1_440 + of_day) * 60_000);
                    }
                }
            }
            day += 1;
            minute = day * 1_440;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-03T21:08:00Z.
    const NOW: i64 = 1_796_332_080_000;

    fn next(text: &str, after: i64) -> i64 {
        Schedule::parse(text).unwrap().next_after(after).unwrap()
    }

    #[test]
    fn the_calendar_is_right() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(NOW / 86_400_000), (2026, 12, 3));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
    }

    #[test]
    fn schedules_fire_when_cron_would() {
        assert_eq!(next("* * * * *", NOW), NOW + 60_000);
        assert_eq!(next("0 3 * * *", NOW), NOW + (2 * 60 + 52) * 60_000 + 3 * 3_600_000);
        assert_eq!(next("*/15 * * * *", NOW), NOW + 7 * 60_000);
        // Monday 2026-12-07 at 00:00.
        assert_eq!(next("0 0 * * mon", NOW), NOW + (3 * 24 + 2) * 3_600_000 + 52 * 60_000);
        // The first of January.
        assert_eq!(civil_date(next("0 0 1 jan *", NOW) / 86_400_000), (2027, 1, 1));
        // Both day fields restricted: either fires (the 5th, or a Sunday: Sunday the 6th is later).
        assert_eq!(civil_date(next("0 0 5 * 0", NOW) / 86_400_000), (2026, 12, 5));
        assert_eq!(Schedule::parse("0 0 30 2 *").unwrap().next_after(NOW), None);
    }

    #[test]
    fn bad_schedules_say_which_field() {
        for (text, field) in [
            ("* * * *", "five fields"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day-of-month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day-of-week"),
            ("*/0 * * * *", "minute"),
            ("5-1 * * * *", "minute"),
            ("* * * foo *", "month"),
        ] {
            let error = Schedule::parse(text).unwrap_err();
            assert!(error.contains(field), "{text}: {error}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in "[0-9a-z*/,\\- ]{0,40}") {
            if let Some(next) = Schedule::parse(&text).ok().and_then(|s| s.next_after(NOW)) {
                proptest::prop_assert!(next > NOW);
            }
        }
    }
}
