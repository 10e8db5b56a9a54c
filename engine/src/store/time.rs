//! The time axis: every fact row sits in one period of the cube's finest time grain; periods
//! are numbered from the first one present in any fact table, with no gaps, so "the member
//! `lag` steps earlier" is a subtraction.

use chrono::{Datelike, NaiveDate};
use lattice_defs::model::TimeGrain;

/// An absolute period number of a grain: years, `year*4 + q-1` for quarters, `year*12 + m-1`
/// for months, days since 1970-01-01 for days.
pub(crate) type AbsPeriod = i64;

/// The period of a fact row whose date is NULL: it belongs to `unknown` at every grain.
pub(crate) const NO_PERIOD: u32 = u32::MAX;

/// The date `day` days after 1970-01-01 (Arrow's Date32), where chrono's calendar reaches it
/// (years -262,143 to 262,142).
pub fn date_of_day(day: i64) -> Option<NaiveDate> {
    NaiveDate::from_epoch_days(i32::try_from(day).ok()?)
}

/// Days from 1970-01-01 to `date` (Arrow's Date32).
pub fn day_of_date(date: NaiveDate) -> i64 {
    i64::from(date.to_epoch_days())
}

/// The absolute month (`year*12 + m-1`) holding `date`.
fn month_of(date: NaiveDate) -> AbsPeriod {
    i64::from(date.year()) * 12 + i64::from(date.month0())
}

/// The first day of absolute month `month`.
fn month_start(month: AbsPeriod) -> Option<NaiveDate> {
    let year = i32::try_from(month.div_euclid(12)).ok()?;
    NaiveDate::from_ymd_opt(year, month.rem_euclid(12) as u32 + 1, 1)
}

/// The date of a day period. The axis reads dates through nanosecond timestamps
/// ([`period_sql`]) and years through chrono (DataFusion's `date_part`), so every period it
/// holds, and the one after the last, is a date chrono has.
fn axis_date(date: Option<NaiveDate>) -> NaiveDate {
    date.expect("a period of the time axis lies within chrono's calendar")
}

/// The SQL expression of a date's absolute period at `grain`.
pub(crate) fn period_sql(date: &str, grain: TimeGrain) -> String {
    let year = format!("CAST(date_part('year', {date}) AS BIGINT)");
    let month = format!("CAST(date_part('month', {date}) AS BIGINT)");
    match grain {
        TimeGrain::Year => year,
        TimeGrain::Quarter => format!("({year} * 4 + ({month} - 1) / 3)"),
        TimeGrain::Month => format!("({year} * 12 + {month} - 1)"),
        // Days since 1970-01-01 (a date's timestamp is a whole number of days).
        TimeGrain::Day => format!("(to_unixtime(CAST({date} AS TIMESTAMP)) / 86400)"),
    }
}

/// The first day of absolute period `p` of `grain`.
pub(crate) fn period_start(p: AbsPeriod, grain: TimeGrain) -> NaiveDate {
    axis_date(match grain {
        TimeGrain::Year => p.checked_mul(12).and_then(month_start),
        TimeGrain::Quarter => p.checked_mul(3).and_then(month_start),
        TimeGrain::Month => month_start(p),
        TimeGrain::Day => date_of_day(p),
    })
}

/// The absolute period of `coarse` that contains absolute period `p` of `fine`.
pub(crate) fn coarsen(p: AbsPeriod, fine: TimeGrain, coarse: TimeGrain) -> AbsPeriod {
    match (fine, coarse) {
        (a, b) if a == b => p,
        (TimeGrain::Month, TimeGrain::Quarter) => p.div_euclid(3),
        (TimeGrain::Month, TimeGrain::Year) => p.div_euclid(12),
        (TimeGrain::Quarter, TimeGrain::Year) => p.div_euclid(4),
        (TimeGrain::Day, coarse) => coarsen(
            month_of(axis_date(date_of_day(p))),
            TimeGrain::Month,
            coarse,
        ),
        // A coarser period has no single finer one; callers only coarsen.
        _ => p,
    }
}

/// A member name: "2025", "2025-Q1", "2025-03".
pub(crate) fn period_name(p: AbsPeriod, grain: TimeGrain) -> String {
    match grain {
        TimeGrain::Year => format!("{p}"),
        TimeGrain::Quarter => format!("{}-Q{}", p.div_euclid(4), p.rem_euclid(4) + 1),
        TimeGrain::Month => format!("{}-{:02}", p.div_euclid(12), p.rem_euclid(12) + 1),
        TimeGrain::Day => axis_date(date_of_day(p)).to_string(),
    }
}

/// The periods of the finest grain, from the first to the last present in the facts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TimeAxis {
    pub grain: TimeGrain,
    /// Absolute number of period 0.
    pub first: AbsPeriod,
    /// Number of periods (0 when there are no facts).
    pub len: usize,
}

impl TimeAxis {
    pub fn abs(&self, period: u32) -> AbsPeriod {
        self.first + period as AbsPeriod
    }

    /// Member code of `period` at `grain` (codes count from the first member of that grain;
    /// [`NO_PERIOD`] is `unknown`, the code after the last member).
    pub fn code(&self, period: u32, grain: TimeGrain) -> u32 {
        if period == NO_PERIOD {
            return self.unknown_code(grain);
        }
        let first = coarsen(self.first, self.grain, grain);
        (coarsen(self.abs(period), self.grain, grain) - first) as u32
    }

    /// The code of `unknown` at `grain`: one past the last member.
    /// Whether axis period `b` (after the first) begins a period of every grain in `grains`.
    pub(crate) fn begins_period(&self, b: u32, grains: &[TimeGrain]) -> bool {
        grains.iter().all(|g| {
            coarsen(self.abs(b), self.grain, *g) != coarsen(self.abs(b - 1), self.grain, *g)
        })
    }

    pub fn unknown_code(&self, grain: TimeGrain) -> u32 {
        if self.len == 0 {
            return 0;
        }
        let first = coarsen(self.first, self.grain, grain);
        let last = coarsen(self.abs(self.len as u32 - 1), self.grain, grain);
        (last - first + 1) as u32
    }

    /// The member names of a grain over the axis, in time order.
    pub fn names(&self, grain: TimeGrain) -> Vec<String> {
        if self.len == 0 {
            return Vec::new();
        }
        let first = coarsen(self.first, self.grain, grain);
        let last = coarsen(self.abs(self.len as u32 - 1), self.grain, grain);
        (first..=last).map(|p| period_name(p, grain)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes() {
        // 2024-11 .. 2025-02
        let axis = TimeAxis {
            grain: TimeGrain::Month,
            first: 2024 * 12 + 10,
            len: 4,
        };
        assert_eq!(
            axis.names(TimeGrain::Month),
            ["2024-11", "2024-12", "2025-01", "2025-02"]
        );
        assert_eq!(axis.names(TimeGrain::Quarter), ["2024-Q4", "2025-Q1"]);
        assert_eq!(axis.names(TimeGrain::Year), ["2024", "2025"]);
        assert_eq!(axis.code(3, TimeGrain::Quarter), 1);
        assert_eq!(axis.code(1, TimeGrain::Year), 0);
        assert_eq!(axis.code(2, TimeGrain::Year), 1);
        assert_eq!(axis.code(NO_PERIOD, TimeGrain::Quarter), 2);
    }

    #[test]
    fn days_coarsen_through_the_calendar() {
        // 2024-02-29 is day 19782 since 1970-01-01; 1969-12-31 is day -1.
        assert_eq!(period_name(19_782, TimeGrain::Day), "2024-02-29");
        assert_eq!(period_name(-1, TimeGrain::Day), "1969-12-31");
        assert_eq!(period_name(0, TimeGrain::Day), "1970-01-01");
        assert_eq!(
            coarsen(19_782, TimeGrain::Day, TimeGrain::Month),
            2024 * 12 + 1
        );
        assert_eq!(
            coarsen(19_782, TimeGrain::Day, TimeGrain::Quarter),
            2024 * 4
        );
        assert_eq!(coarsen(-1, TimeGrain::Day, TimeGrain::Year), 1969);
        let axis = TimeAxis {
            grain: TimeGrain::Day,
            first: 19_782,
            len: 3,
        };
        assert_eq!(axis.names(TimeGrain::Month), ["2024-02", "2024-03"]);
        assert_eq!(axis.code(2, TimeGrain::Month), 1);
    }

    #[test]
    fn days_are_date32() {
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        for (day, expected) in [
            (0, date(1970, 1, 1)),
            (-1, date(1969, 12, 31)),
            (11_017, date(2000, 3, 1)),
            (19_782, date(2024, 2, 29)),
            (-719_528, date(0, 1, 1)),
        ] {
            assert_eq!(date_of_day(day), Some(expected));
            assert_eq!(day_of_date(expected), day);
        }
        assert_eq!(date_of_day(i64::from(i32::MAX)), None);
        assert_eq!(
            period_start(2025 * 4 + 3, TimeGrain::Quarter),
            date(2025, 10, 1)
        );
        assert_eq!(period_start(-1, TimeGrain::Month), date(-1, 12, 1));
        assert_eq!(period_start(2024, TimeGrain::Year), date(2024, 1, 1));
        assert_eq!(period_start(19_782, TimeGrain::Day), date(2024, 2, 29));
    }
}
