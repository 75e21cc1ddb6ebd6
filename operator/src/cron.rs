//! Five-field cron schedules in UTC (`minute hour day-of-month month day-of-week`), as
//! Kubernetes CronJobs write them: `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`,
//! lists, and the shorthands `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`. As in
//! cron, when both day fields are restricted a day matching either one is taken.

use jiff::civil::DateTime;
use jiff::{tz::TimeZone, Timestamp, ToSpan};

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

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("schedule {schedule:?}: {problem}")]
pub struct CronError {
    schedule: String,
    problem: String,
}

/// Bits `lo..=hi` of a field, parsed from one comma-separated list.
fn field(text: &str, name: &str, lo: u32, hi: u32) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{name}: step {s:?} is not a positive number"))?;
                (r, step)
            }
            None => (part, 1),
        };
        let num = |s: &str| -> Result<u32, String> {
            s.parse::<u32>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| format!("{name}: {s:?} is not a number from {lo} to {hi}"))
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (num(a)?, num(b)?)
        } else {
            let a = num(range)?;
            // `5/15` means from 5 on, every 15, as in Vixie cron.
            (a, if step > 1 { hi } else { a })
        };
        if a > b {
            return Err(format!("{name}: range {range:?} runs backwards"));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, CronError> {
        let err = |problem: String| CronError {
            schedule: text.to_string(),
            problem,
        };
        let expanded = match text.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        if f.len() != 5 {
            return Err(err(format!(
                "needs 5 fields (minute hour day-of-month month day-of-week), found {}",
                f.len()
            )));
        }
        let mut weekdays = field(f[4], "day-of-week", 0, 7).map_err(err)?;
        // 7 is Sunday too.
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        Ok(Schedule {
            minutes: field(f[0], "minute", 0, 59).map_err(err)?,
            hours: field(f[1], "hour", 0, 23).map_err(err)?,
            days: field(f[2], "day-of-month", 1, 31).map_err(err)?,
            months: field(f[3], "month", 1, 12).map_err(err)?,
            weekdays,
            days_restricted: f[2] != "*",
            weekdays_restricted: f[4] != "*",
        })
    }

    fn day_matches(&self, d: DateTime) -> bool {
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => dom || dow,
            _ => dom && dow,
        }
    }

    /// The first time strictly after `t` that the schedule names, within five years (a
    /// schedule such as `0 0 31 2 *` names none).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let utc = TimeZone::UTC;
        let start = t.to_zoned(utc.clone()).datetime();
        // The next whole minute.
        let mut d = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = start.checked_add(1830.days()).ok()?;
        while d <= limit {
            if self.months & (1 << d.month()) == 0 {
                d = d
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .start_of_day();
                continue;
            }
            if !self.day_matches(d) {
                d = d.checked_add(1.day()).ok()?.start_of_day();
                continue;
            }
            if self.hours & (1 << d.hour()) == 0 {
                d = d
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if self.minutes & (1 << d.minute()) == 0 {
                d = d.checked_add(1.minute()).ok()?;
                continue;
            }
            return d.to_zoned(utc).ok().map(|z| z.timestamp());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn next(s: &str, after: &str) -> String {
        Schedule::parse(s)
            .expect("parses")
            .next_after(ts(after))
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn steps_ranges_and_lists() {
        assert_eq!(
            next("*/15 * * * *", "2026-12-03T10:07:30Z"),
            "2026-12-03T10:15:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-12-03T10:15:00Z"),
            "2026-12-03T10:30:00Z"
        );
        assert_eq!(
            next("0 */6 * * *", "2026-12-03T10:07:00Z"),
            "2026-12-03T12:00:00Z"
        );
        assert_eq!(
            next("30 1,13 * * *", "2026-12-03T13:31:00Z"),
            "2026-12-04T01:30:00Z"
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2026-12-03T14:00:00Z"),
            "2026-12-03T17:00:00Z"
        );
        assert_eq!(
            next("@daily", "2026-12-31T23:59:59Z"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2026-12-03T00:00:00Z"),
            "2027-01-01T00:00:00Z"
        );
    }

    #[test]
    fn day_fields_follow_cron() {
        // 2026-12-03 is a Thursday. Sundays (0 and 7 alike):
        assert_eq!(
            next("0 0 * * 0", "2026-12-03T00:00:00Z"),
            "2026-12-06T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * 7", "2026-12-03T00:00:00Z"),
            "2026-12-06T00:00:00Z"
        );
        // Both restricted: the 15th or a Monday, whichever comes first.
        assert_eq!(
            next("0 0 15 * 1", "2026-12-03T00:00:00Z"),
            "2026-12-07T00:00:00Z"
        );
        // February 29th only.
        assert_eq!(
            next("0 0 29 2 *", "2026-12-03T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        // Never.
        assert_eq!(next("0 0 31 2 *", "2026-12-03T00:00:00Z"), "");
    }

    #[test]
    fn bad_schedules_are_explained() {
        for (s, says) in [
            ("* * * *", "needs 5 fields"),
            ("60 * * * *", "minute: \"60\""),
            ("* 24 * * *", "hour"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "backwards"),
            ("* * 0 * *", "day-of-month"),
            ("* * * 13 *", "month"),
            ("* * * * mon", "day-of-week"),
        ] {
            let e = Schedule::parse(s).expect_err(s).to_string();
            assert!(e.contains(says), "{s}: {e}");
        }
    }
}
