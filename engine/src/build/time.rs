//! The time axis: every fact row sits in one period of the cube's finest time grain; periods
//! are numbered from the first one present in any fact table, with no gaps, so "the member
//! `lag` steps earlier" is a subtraction.

use lattice_defs::model::TimeGrain;

/// An absolute period number of a grain: years, `year*4 + q-1` for quarters, `year*12 + m-1`
/// for months, days since 1970-01-01 for days.
pub(crate) type AbsPeriod = i64;

/// The period of a fact row whose date is NULL: it belongs to `unknown` at every grain.
pub(crate) const NO_PERIOD: u32 = u32::MAX;

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (proleptic Gregorian; Howard
/// Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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

/// (year, month, day) of the first day of absolute period `p` of `grain`.
pub(crate) fn period_start(p: AbsPeriod, grain: TimeGrain) -> (i64, i64, i64) {
    match grain {
        TimeGrain::Year => (p, 1, 1),
        TimeGrain::Quarter => (p.div_euclid(4), p.rem_euclid(4) * 3 + 1, 1),
        TimeGrain::Month => (p.div_euclid(12), p.rem_euclid(12) + 1, 1),
        TimeGrain::Day => civil_from_days(p),
    }
}

/// The SQL of a fact row's period on the axis (periods since the axis's first; 0 for a fact
/// without a date column), over the fact aliased `f`.
pub(crate) fn fact_period_sql(
    time: Option<&lattice_defs::model::ColumnRef>,
    axis: Option<&TimeAxis>,
) -> String {
    match (time, axis) {
        (Some(t), Some(axis)) => format!(
            "{} - {}",
            period_sql(
                &format!("f.{}", crate::source::load::ident(&t.column)),
                axis.grain
            ),
            axis.first
        ),
        _ => "CAST(0 AS BIGINT)".into(),
    }
}

/// The absolute period of `coarse` that contains absolute period `p` of `fine`.
pub(crate) fn coarsen(p: AbsPeriod, fine: TimeGrain, coarse: TimeGrain) -> AbsPeriod {
    match (fine, coarse) {
        (a, b) if a == b => p,
        (TimeGrain::Month, TimeGrain::Quarter) => p.div_euclid(3),
        (TimeGrain::Month, TimeGrain::Year) => p.div_euclid(12),
        (TimeGrain::Quarter, TimeGrain::Year) => p.div_euclid(4),
        (TimeGrain::Day, coarse) => {
            let (y, m, _) = civil_from_days(p);
            coarsen(y * 12 + m - 1, TimeGrain::Month, coarse)
        }
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
        TimeGrain::Day => {
            let (y, m, d) = civil_from_days(p);
            format!("{y}-{m:02}-{d:02}")
        }
    }
}

/// The periods of the finest grain, from the first to the last present in the facts.
#[derive(Debug, Clone)]
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
}
