//! Calendar arithmetic for the Cube API: instants as milliseconds on a zone-less calendar, the
//! bounds of a cube's time members, absolute and relative date ranges.
//!
//! The cube's time axis is a calendar of periods ("2025", "2025-Q1", "2025-03") with no time
//! zone, so every instant here is local: milliseconds since 1970-01-01T00:00:00.000 of the
//! same calendar. A range is inclusive at both ends, at millisecond precision, as Cube writes
//! them (`2025-01-01T00:00:00.000` .. `2025-03-31T23:59:59.999`).

use lattice_defs::model::TimeGrain;

/// Milliseconds since 1970-01-01T00:00:00.000 on the cube's calendar.
pub(crate) type Ms = i64;

pub(crate) const DAY_MS: Ms = 86_400_000;

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; Howard Hinnant's
/// `days_from_civil`). `m` is 1-12.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) use lattice_engine::calendar::civil_from_days;

fn days_in_month(y: i64, m: i64) -> i64 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)
}

/// `2025-03-01T00:00:00.000`: the local ISO form Cube answers with.
pub(crate) fn format_local(ms: Ms) -> String {
    let days = ms.div_euclid(DAY_MS);
    let rest = ms.rem_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}")
}

/// Which end of a day a bare date stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// `2025-03-14` is `2025-03-14T00:00:00.000`.
    Start,
    /// `2025-03-14` is `2025-03-14T23:59:59.999`.
    End,
}

/// An absolute date or timestamp: `2025-03-14`, `2025-03-14T10:30`, `2025-03-14 10:30:00`,
/// `2025-03-14T10:30:00.123456`, optionally with `Z` or an offset, which are ignored (the
/// cube's calendar has no zone). Digits past milliseconds are cut.
pub(crate) fn parse_absolute(text: &str, side: Side) -> Option<Ms> {
    let t = text.trim();
    let b = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let day = days_from_civil(y, m, d) * DAY_MS;
    if b.len() == 10 {
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
    let hb = hm.as_bytes();
    if hb[2] != b':' {
        return None;
    }
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (h, min) = (num(&hm[..2])?, num(&hm[3..5])?);
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
                num(&f)?
            };
            (num(whole)?, milli)
        }
    };
    if h > 23 || min > 59 || s > 59 {
        return None;
    }
    Some(day + ((h * 60 + min) * 60 + s) * 1000 + milli)
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
    /// does: Jan 31 + 1 month is Feb 28/29).
    fn add(self, day: i64, n: i64) -> i64 {
        let months = |k: i64| {
            let (y, m, d) = civil_from_days(day);
            let idx = y * 12 + (m - 1) + k;
            let (ny, nm) = (idx.div_euclid(12), idx.rem_euclid(12) + 1);
            days_from_civil(ny, nm, d.min(days_in_month(ny, nm)))
        };
        match self {
            Unit::Day => day + n,
            Unit::Week => day + 7 * n,
            Unit::Month => months(n),
            Unit::Quarter => months(3 * n),
            Unit::Year => months(12 * n),
        }
    }

    /// The first day of the unit holding `day` (weeks start on Monday, as ISO weeks do).
    fn start(self, day: i64) -> i64 {
        let (y, m, _) = civil_from_days(day);
        match self {
            Unit::Day => day,
            // 1970-01-01 was a Thursday.
            Unit::Week => day - (day + 3).rem_euclid(7),
            Unit::Month => days_from_civil(y, m, 1),
            Unit::Quarter => days_from_civil(y, (m - 1) / 3 * 3 + 1, 1),
            Unit::Year => days_from_civil(y, 1, 1),
        }
    }

    /// The last millisecond of the unit holding `day`.
    fn end_ms(self, day: i64) -> Ms {
        self.add(self.start(day), 1) * DAY_MS - 1
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
pub(crate) type Today = i64;

/// A relative range: `today`, `yesterday`, `tomorrow`, `this|last|next <unit>`,
/// `last|next <n> <unit>s`, `from <point> to <point>` where a point is an absolute date,
/// `now`, `today`, `yesterday`, `tomorrow`, `<n> <unit>s ago` or `<n> <unit>s from now`.
/// Follows Cube's date parser: `last 6 months` is the six whole months before this one.
pub(crate) fn parse_relative(text: &str, today: Today) -> Result<Range, String> {
    let lower = text.trim().to_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let whole = |unit: Unit, first: i64, last: i64| Range {
        from: unit.start(first) * DAY_MS,
        to: unit.end_ms(last),
    };
    match words.as_slice() {
        ["today"] => Ok(whole(Unit::Day, today, today)),
        ["yesterday"] => Ok(whole(Unit::Day, today - 1, today - 1)),
        ["tomorrow"] => Ok(whole(Unit::Day, today + 1, today + 1)),
        [which @ ("this" | "last" | "next"), unit] => {
            let unit = Unit::parse(unit)?;
            let k = match *which {
                "last" => -1,
                "next" => 1,
                _ => 0,
            };
            let day = unit.add(today, k);
            Ok(whole(unit, day, day))
        }
        [which @ ("last" | "next"), n, unit] => {
            let n: i64 = n
                .parse()
                .map_err(|_| format!("'{n}' is not a number of periods"))?;
            let unit = Unit::parse(unit)?;
            Ok(if *which == "last" {
                whole(unit, unit.add(today, -n), unit.add(today, -1))
            } else {
                whole(unit, unit.add(today, 1), unit.add(today, n))
            })
        }
        ["from", rest @ ..] => {
            let to_at = rest
                .iter()
                .rposition(|w| *w == "to")
                .ok_or("`from ... to ...` needs `to`")?;
            let from = point(&rest[..to_at], today)?;
            let to = point(&rest[to_at + 1..], today)?;
            Ok(Range {
                from: from * DAY_MS,
                to: to * DAY_MS + DAY_MS - 1,
            })
        }
        _ => Err("it is neither a date nor a relative range this server knows".into()),
    }
}

/// A point of a `from ... to ...` range, as the day it falls on.
fn point(words: &[&str], today: Today) -> Result<i64, String> {
    let n = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("'{s}' is not a number of periods"))
    };
    match words {
        ["now" | "today"] => Ok(today),
        ["yesterday"] => Ok(today - 1),
        ["tomorrow"] => Ok(today + 1),
        [k, unit, "ago"] => Ok(Unit::parse(unit)?.add(today, -n(k)?)),
        [k, unit, "from", "now"] => Ok(Unit::parse(unit)?.add(today, n(k)?)),
        [date] => parse_absolute(date, Side::Start)
            .map(|ms| ms.div_euclid(DAY_MS))
            .ok_or_else(|| format!("cannot read '{date}' as a date")),
        _ => Err(format!(
            "cannot read '{}' as a point in time",
            words.join(" ")
        )),
    }
}

/// A period member of the cube's time dimension, as its first day and the first day after it.
pub(crate) fn period_days(name: &str, grain: TimeGrain) -> Option<(i64, i64)> {
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let months = |y: i64, m: i64, n: i64| {
        let end = y * 12 + (m - 1) + n;
        (
            days_from_civil(y, m, 1),
            days_from_civil(end.div_euclid(12), end.rem_euclid(12) + 1, 1),
        )
    };
    match grain {
        TimeGrain::Year if name.len() == 4 => Some(months(num(name)?, 1, 12)),
        TimeGrain::Quarter => {
            let (y, q) = name.split_once("-Q")?;
            let q = num(q)?;
            (y.len() == 4 && (1..=4).contains(&q))
                .then(|| months(num(y).unwrap_or(0), q * 3 - 2, 3))
        }
        TimeGrain::Month => {
            let (y, m) = name.split_once('-')?;
            let m = num(m)?;
            (y.len() == 4 && (1..=12).contains(&m)).then(|| months(num(y).unwrap_or(0), m, 1))
        }
        TimeGrain::Day => {
            let ms = parse_absolute(name, Side::Start).filter(|_| name.len() == 10)?;
            let d = ms / DAY_MS;
            Some((d, d + 1))
        }
        TimeGrain::Year => None,
    }
}

/// The local ISO timestamp of a period's start (`2025-Q2` -> `2025-04-01T00:00:00.000`).
pub(crate) fn period_start_iso(name: &str, grain: TimeGrain) -> Option<String> {
    period_days(name, grain).map(|(start, _)| format_local(start * DAY_MS))
}

/// `2026-01-01T10:00:00.000Z` for a wall-clock time (the refresh time Cube reports, in UTC).
pub(crate) fn format_utc(t: std::time::SystemTime) -> String {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    format!("{}Z", format_local(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> Ms {
        parse_absolute(text, Side::Start).unwrap()
    }

    #[test]
    fn civil_days_round_trip() {
        for days in [-1000, 0, 19_723, 20_453, 20_513, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(2024, 1, 1), 19_723);
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2025, 2), 28);
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
        let today = days_from_civil(2025, 12, 31);
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
            Some((days_from_civil(2025, 12, 1), days_from_civil(2026, 1, 1)))
        );
        assert_eq!(period_days("unknown", TimeGrain::Month), None);
    }
}
