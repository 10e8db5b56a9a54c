//! Calendar arithmetic for the Cube API: instants as milliseconds on a zone-less calendar, the
//! bounds of a cube's time members, absolute and relative date ranges.
//!
//! The cube's time axis is a calendar of periods ("2025", "2025-Q1", "2025-03") with no time
//! zone, so every instant here is local: milliseconds since 1970-01-01T00:00:00.000 of the
//! same calendar. A range is inclusive at both ends, at millisecond precision, as Cube writes
//! them (`2025-01-01T00:00:00.000` .. `2025-03-31T23:59:59.999`).

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};
use lattice_defs::model::TimeGrain;

/// Milliseconds since 1970-01-01T00:00:00.000 on the cube's calendar.
pub(crate) type Ms = i64;

pub(crate) const DAY_MS: Ms = 86_400_000;

/// The ISO form Cube answers with: `2025-03-01T00:00:00.000`.
const LOCAL_ISO: &str = "%Y-%m-%dT%H:%M:%S%.3f";

/// The first instant of `date`.
pub(crate) fn start_ms(date: NaiveDate) -> Ms {
    ms_of(date.and_time(NaiveTime::MIN))
}

fn ms_of(t: NaiveDateTime) -> Ms {
    t.and_utc().timestamp_millis()
}

/// `2025-03-01T00:00:00.000`: the local ISO form Cube answers with. Every instant this module
/// reads or computes is a chrono date-time; one outside chrono's years is written as its number.
pub(crate) fn format_local(ms: Ms) -> String {
    DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.naive_utc().format(LOCAL_ISO).to_string(),
    )
}

/// Which end of a day a bare date stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// `2025-03-14` is `2025-03-14T00:00:00.000`.
    Start,
    /// `2025-03-14` is `2025-03-14T23:59:59.999`.
    End,
}

/// A number written with ASCII digits only (no sign, no spaces).
fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// The `YYYY-MM-DD` that `text` starts with, if it is a real date.
fn parse_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(
        number(text.get(0..4)?)?,
        number(text.get(5..7)?)?,
        number(text.get(8..10)?)?,
    )
}

/// An absolute date or timestamp: `2025-03-14`, `2025-03-14T10:30`, `2025-03-14 10:30:00`,
/// `2025-03-14T10:30:00.123456`, optionally with `Z` or an offset, which are ignored (the
/// cube's calendar has no zone). Digits past milliseconds are cut. The shape is Cube's, kept
/// here; chrono checks that the date and the time exist.
pub(crate) fn parse_absolute(text: &str, side: Side) -> Option<Ms> {
    let t = text.trim();
    let b = t.as_bytes();
    let date = parse_date(t)?;
    if b.len() == 10 {
        let day = start_ms(date);
        return Some(match side {
            Side::Start => day,
            Side::End => day + DAY_MS - 1,
        });
    }
    if b[10] != b'T' && b[10] != b' ' {
        return None;
    }
    // Time: HH:MM[:SS[.fff...]] then an optional zone designator.
    let mut rest = &t[11..];
    if let Some(i) = rest.find(['Z', 'z', '+']).or_else(|| rest.rfind('-')) {
        rest = &rest[..i];
    }
    let (hm, sec) = match rest.len() {
        5 => (rest, None),
        n if n >= 8 => (&rest[..5], Some(&rest[6..])),
        _ => return None,
    };
    if hm.as_bytes()[2] != b':' {
        return None;
    }
    let (h, min) = (number(&hm[..2])?, number(&hm[3..5])?);
    let (s, milli) = match sec {
        None => (0, 0),
        Some(sec) => {
            if rest.as_bytes()[5] != b':' {
                return None;
            }
            let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
            if whole.len() != 2 || frac.len() > 9 || (sec.contains('.') && frac.is_empty()) {
                return None;
            }
            let milli = if frac.is_empty() {
                0
            } else {
                let f: String = frac.chars().chain("000".chars()).take(3).collect();
                number(&f)?
            };
            (number(whole)?, milli)
        }
    };
    let time = NaiveTime::from_hms_milli_opt(h, min, s, milli)?;
    Some(ms_of(date.and_time(time)))
}

/// A calendar unit of relative ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Unit {
    fn parse(word: &str) -> Result<Unit, String> {
        let w = word.strip_suffix('s').unwrap_or(word);
        Ok(match w {
            "day" => Unit::Day,
            "week" => Unit::Week,
            "month" => Unit::Month,
            "quarter" => Unit::Quarter,
            "year" => Unit::Year,
            "hour" | "minute" | "second" => {
                return Err(format!(
                    "'{word}' is finer than the cube's calendar, which has no time of day"
                ));
            }
            _ => {
                return Err(format!(
                    "'{word}' is not a unit (day, week, month, quarter, year)"
                ));
            }
        })
    }

    /// The day `n` units after `day` (months keep the day of month where it exists, as moment
    /// does: Jan 31 + 1 month is Feb 28/29), or `None` past chrono's calendar.
    fn add(self, day: NaiveDate, n: i64) -> Option<NaiveDate> {
        let months = |k: i64| {
            let months = Months::new(u32::try_from(k.unsigned_abs()).ok()?);
            if k < 0 {
                day.checked_sub_months(months)
            } else {
                day.checked_add_months(months)
            }
        };
        match self {
            Unit::Day => day.checked_add_signed(TimeDelta::try_days(n)?),
            Unit::Week => day.checked_add_signed(TimeDelta::try_weeks(n)?),
            Unit::Month => months(n),
            Unit::Quarter => months(n.checked_mul(3)?),
            Unit::Year => months(n.checked_mul(12)?),
        }
    }

    /// The first day of the unit holding `day` (weeks start on Monday, as ISO weeks do).
    fn start(self, day: NaiveDate) -> Option<NaiveDate> {
        let month_start = |month: u32| NaiveDate::from_ymd_opt(day.year(), month, 1);
        match self {
            Unit::Day => Some(day),
            Unit::Week => {
                day.checked_sub_days(Days::new(day.weekday().num_days_from_monday().into()))
            }
            Unit::Month => month_start(day.month()),
            Unit::Quarter => month_start(day.month0() / 3 * 3 + 1),
            Unit::Year => month_start(1),
        }
    }

    /// The last millisecond of the unit holding `day`.
    fn end_ms(self, day: NaiveDate) -> Option<Ms> {
        Some(start_ms(self.add(self.start(day)?, 1)?) - 1)
    }
}

/// An inclusive range of instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    pub from: Ms,
    pub to: Ms,
}

impl Range {
    /// `["2025-01-01T00:00:00.000", "2025-03-31T23:59:59.999"]`, as Cube normalises ranges.
    pub fn formatted(self) -> [String; 2] {
        [format_local(self.from), format_local(self.to)]
    }
}

/// What relative ranges are relative to: the last day of the latest period in the cube.
pub(crate) type Today = NaiveDate;

/// A relative range: `today`, `yesterday`, `tomorrow`, `this|last|next <unit>`,
/// `last|next <n> <unit>s`, `from <point> to <point>` where a point is an absolute date,
/// `now`, `today`, `yesterday`, `tomorrow`, `<n> <unit>s ago` or `<n> <unit>s from now`.
/// Follows Cube's date parser: `last 6 months` is the six whole months before this one.
pub(crate) fn parse_relative(text: &str, today: Today) -> Result<Range, String> {
    let lower = text.trim().to_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let beyond = || format!("'{}' reaches past the calendar", text.trim());
    let whole = |unit: Unit, first: Option<NaiveDate>, last: Option<NaiveDate>| {
        units_holding(unit, first, last).ok_or_else(beyond)
    };
    let (yesterday, tomorrow) = (today.pred_opt(), today.succ_opt());
    match words.as_slice() {
        ["today"] => whole(Unit::Day, Some(today), Some(today)),
        ["yesterday"] => whole(Unit::Day, yesterday, yesterday),
        ["tomorrow"] => whole(Unit::Day, tomorrow, tomorrow),
        [which @ ("this" | "last" | "next"), unit] => {
            let unit = Unit::parse(unit)?;
            let k = match *which {
                "last" => -1,
                "next" => 1,
                _ => 0,
            };
            let day = unit.add(today, k);
            whole(unit, day, day)
        }
        [which @ ("last" | "next"), n, unit] => {
            let n: i64 = n
                .parse()
                .map_err(|_| format!("'{n}' is not a number of periods"))?;
            let unit = Unit::parse(unit)?;
            if *which == "last" {
                whole(
                    unit,
                    n.checked_neg().and_then(|n| unit.add(today, n)),
                    unit.add(today, -1),
                )
            } else {
                whole(unit, unit.add(today, 1), unit.add(today, n))
            }
        }
        ["from", rest @ ..] => {
            let to_at = rest
                .iter()
                .rposition(|w| *w == "to")
                .ok_or("`from ... to ...` needs `to`")?;
            let from = point(&rest[..to_at], today)?.ok_or_else(beyond)?;
            let to = point(&rest[to_at + 1..], today)?.ok_or_else(beyond)?;
            Ok(Range {
                from: start_ms(from),
                to: start_ms(to) + DAY_MS - 1,
            })
        }
        _ => Err("it is neither a date nor a relative range this server knows".into()),
    }
}

/// The whole units from the one holding `first` to the one holding `last`; `None` where a
/// day lies past chrono's calendar.
fn units_holding(unit: Unit, first: Option<NaiveDate>, last: Option<NaiveDate>) -> Option<Range> {
    Some(Range {
        from: start_ms(unit.start(first?)?),
        to: unit.end_ms(last?)?,
    })
}

/// A point of a `from ... to ...` range, as the day it falls on (`None` past chrono's calendar).
fn point(words: &[&str], today: Today) -> Result<Option<NaiveDate>, String> {
    let n = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("'{s}' is not a number of periods"))
    };
    match words {
        ["now" | "today"] => Ok(Some(today)),
        ["yesterday"] => Ok(today.pred_opt()),
        ["tomorrow"] => Ok(today.succ_opt()),
        [k, unit, "ago"] => {
            let (unit, k) = (Unit::parse(unit)?, n(k)?);
            Ok(k.checked_neg().and_then(|k| unit.add(today, k)))
        }
        [k, unit, "from", "now"] => Ok(Unit::parse(unit)?.add(today, n(k)?)),
        [date] => parse_absolute(date, Side::Start)
            .and_then(DateTime::from_timestamp_millis)
            .map(|t| Some(t.date_naive()))
            .ok_or_else(|| format!("cannot read '{date}' as a date")),
        _ => Err(format!(
            "cannot read '{}' as a point in time",
            words.join(" ")
        )),
    }
}

/// A period member of the cube's time dimension, as its first day and the first day after it.
pub(crate) fn period_days(name: &str, grain: TimeGrain) -> Option<(NaiveDate, NaiveDate)> {
    let months = |year: &str, month: u32, n: u32| {
        let start = NaiveDate::from_ymd_opt(number(year)?, month, 1)?;
        Some((start, start.checked_add_months(Months::new(n))?))
    };
    match grain {
        TimeGrain::Year if name.len() == 4 => months(name, 1, 12),
        TimeGrain::Quarter => {
            let (y, q) = name.split_once("-Q")?;
            let q: u32 = number(q)?;
            (y.len() == 4 && (1..=4).contains(&q))
                .then(|| months(y, q * 3 - 2, 3))
                .flatten()
        }
        TimeGrain::Month => {
            let (y, m) = name.split_once('-')?;
            let m: u32 = number(m)?;
            (y.len() == 4 && (1..=12).contains(&m))
                .then(|| months(y, m, 1))
                .flatten()
        }
        TimeGrain::Day if name.len() == 10 => {
            let day = parse_date(name)?;
            Some((day, day.succ_opt()?))
        }
        TimeGrain::Year | TimeGrain::Day => None,
    }
}

/// The local ISO timestamp of a period's start (`2025-Q2` -> `2025-04-01T00:00:00.000`).
pub(crate) fn period_start_iso(name: &str, grain: TimeGrain) -> Option<String> {
    period_days(name, grain).map(|(start, _)| format_local(start_ms(start)))
}

/// `2026-01-01T10:00:00.000Z` for a wall-clock time (the refresh time Cube reports, in UTC).
pub(crate) fn format_utc(t: std::time::SystemTime) -> String {
    DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> Ms {
        parse_absolute(text, Side::Start).unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn units_keep_the_calendar() {
        // Months keep the day of month where it exists.
        assert_eq!(
            Unit::Month.add(date(2024, 1, 31), 1),
            Some(date(2024, 2, 29))
        );
        assert_eq!(
            Unit::Month.add(date(2025, 3, 31), -1),
            Some(date(2025, 2, 28))
        );
        assert_eq!(
            Unit::Year.add(date(2024, 2, 29), 1),
            Some(date(2025, 2, 28))
        );
        assert_eq!(
            Unit::Quarter.add(date(2025, 11, 30), 1),
            Some(date(2026, 2, 28))
        );
        assert_eq!(
            Unit::Week.add(date(2025, 12, 31), -2),
            Some(date(2025, 12, 17))
        );
        // Weeks start on Monday; quarters in January, April, July and October.
        assert_eq!(Unit::Week.start(date(2026, 1, 4)), Some(date(2025, 12, 29)));
        assert_eq!(
            Unit::Week.start(date(2025, 12, 29)),
            Some(date(2025, 12, 29))
        );
        assert_eq!(
            Unit::Quarter.start(date(2025, 9, 30)),
            Some(date(2025, 7, 1))
        );
        assert_eq!(
            Unit::Month.end_ms(date(2024, 2, 10)),
            Some(start_ms(date(2024, 3, 1)) - 1)
        );
        // Past chrono's calendar (years -262,143 to 262,142) is an error, not a wrapped number.
        assert_eq!(Unit::Year.add(date(2025, 1, 1), 300_000), None);
        assert_eq!(Unit::Day.add(date(2025, 1, 1), i64::MAX), None);
        let today = date(2025, 12, 31);
        for text in [
            "last 300000 years",
            "from 9223372036854775807 days ago to today",
        ] {
            assert!(
                parse_relative(text, today)
                    .unwrap_err()
                    .contains("past the calendar"),
                "{text}"
            );
        }
        assert_eq!(start_ms(date(1970, 1, 2)), DAY_MS);
        assert_eq!(format_local(-1), "1969-12-31T23:59:59.999");
        assert_eq!(
            format_utc(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(1_999_999)),
            "1970-01-01T00:00:00.001Z"
        );
    }

    #[test]
    fn absolute_values() {
        assert_eq!(format_local(ms("2025-03-14")), "2025-03-14T00:00:00.000");
        assert_eq!(
            format_local(parse_absolute("2025-03-14", Side::End).unwrap()),
            "2025-03-14T23:59:59.999"
        );
        assert_eq!(
            format_local(ms("2025-03-14T10:30")),
            "2025-03-14T10:30:00.000"
        );
        assert_eq!(
            format_local(ms("2025-03-31T23:59:59.999999")),
            "2025-03-31T23:59:59.999"
        );
        assert_eq!(
            format_local(ms("2025-03-31 23:59:59.5Z")),
            "2025-03-31T23:59:59.500"
        );
        assert_eq!(
            format_local(ms("2025-03-31T08:00:00+08:00")),
            "2025-03-31T08:00:00.000"
        );
        for bad in [
            "2025-02-30",
            "2025-13-01",
            "2025-3-1",
            "last month",
            "2025-03-14T25:00",
        ] {
            assert_eq!(parse_absolute(bad, Side::Start), None, "{bad}");
        }
    }

    #[test]
    fn relative_ranges_follow_cube() {
        let today = date(2025, 12, 31);
        let r = |s: &str| {
            let r = parse_relative(s, today).unwrap();
            [format_local(r.from), format_local(r.to)]
        };
        assert_eq!(
            r("last 6 months"),
            ["2025-06-01T00:00:00.000", "2025-11-30T23:59:59.999"]
        );
        assert_eq!(
            r("this year"),
            ["2025-01-01T00:00:00.000", "2025-12-31T23:59:59.999"]
        );
        assert_eq!(
            r("Last Year"),
            ["2024-01-01T00:00:00.000", "2024-12-31T23:59:59.999"]
        );
        assert_eq!(
            r("last quarter"),
            ["2025-07-01T00:00:00.000", "2025-09-30T23:59:59.999"]
        );
        assert_eq!(
            r("this month"),
            ["2025-12-01T00:00:00.000", "2025-12-31T23:59:59.999"]
        );
        assert_eq!(
            r("today"),
            ["2025-12-31T00:00:00.000", "2025-12-31T23:59:59.999"]
        );
        assert_eq!(
            r("last 2 quarters"),
            ["2025-04-01T00:00:00.000", "2025-09-30T23:59:59.999"]
        );
        assert_eq!(
            r("from 2024-03-01 to 2 months ago"),
            ["2024-03-01T00:00:00.000", "2025-10-31T23:59:59.999"]
        );
        // 2025-12-31 is a Wednesday: this ISO week runs Monday 29th to Sunday 4th.
        assert_eq!(
            r("this week"),
            ["2025-12-29T00:00:00.000", "2026-01-04T23:59:59.999"]
        );
        assert!(
            parse_relative("last 3 hours", today)
                .unwrap_err()
                .contains("no time of day")
        );
        assert!(parse_relative("the other day", today).is_err());
    }

    #[test]
    fn periods() {
        let iso = |n: &str, g| period_start_iso(n, g).unwrap();
        assert_eq!(iso("2025", TimeGrain::Year), "2025-01-01T00:00:00.000");
        assert_eq!(
            iso("2025-Q2", TimeGrain::Quarter),
            "2025-04-01T00:00:00.000"
        );
        assert_eq!(
            iso("2025-Q4", TimeGrain::Quarter),
            "2025-10-01T00:00:00.000"
        );
        assert_eq!(iso("2025-03", TimeGrain::Month), "2025-03-01T00:00:00.000");
        assert_eq!(iso("2025-03-14", TimeGrain::Day), "2025-03-14T00:00:00.000");
        assert_eq!(
            period_days("2025-12", TimeGrain::Month),
            Some((date(2025, 12, 1), date(2026, 1, 1)))
        );
        assert_eq!(period_days("unknown", TimeGrain::Month), None);
    }
}
