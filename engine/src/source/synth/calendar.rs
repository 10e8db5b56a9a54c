//! The window of `MONTHS` months, as Arrow's Date32 days.

use chrono::{Datelike, Months, NaiveDate};

use super::{FIRST_YEAR, MONTHLY_GROWTH, SEASON};

/// A month of the window.
#[derive(Debug)]
pub(super) struct Month {
    pub(super) index: usize,
    pub(super) first_day: i32,
    pub(super) days: u32,
    /// Relative transaction volume: season times growth.
    pub(super) volume: f64,
}

impl Month {
    pub(super) fn new(index: usize) -> Month {
        let start = month_start(index as i64);
        let growth = (1.0 + MONTHLY_GROWTH).powi(index as i32);
        Month {
            index,
            first_day: start.to_epoch_days(),
            days: u32::from(start.num_days_in_month()),
            volume: SEASON[start.month0() as usize] * growth,
        }
    }

    /// The first day (0-based within the month) a customer who opened on `open_date` can
    /// transact.
    pub(super) fn first_open_day(&self, open_date: i32) -> u32 {
        (open_date - self.first_day).clamp(0, self.days as i32) as u32
    }

    /// The share of the month during which the customer's account is open.
    pub(super) fn open_fraction(&self, open_date: i32) -> f64 {
        f64::from(self.days - self.first_open_day(open_date)) / f64::from(self.days)
    }
}

/// The first day of a month counted from January of `FIRST_YEAR` (negative: before it). The
/// generator asks only for months within a few years of the window.
pub(super) fn month_start(month: i64) -> NaiveDate {
    let january = NaiveDate::from_ymd_opt(FIRST_YEAR, 1, 1).expect("FIRST_YEAR is a year");
    let offset = Months::new(month.unsigned_abs() as u32);
    if month < 0 {
        january.checked_sub_months(offset)
    } else {
        january.checked_add_months(offset)
    }
    .expect("the window and the open dates lie near FIRST_YEAR")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_exact() {
        let first = |m| month_start(m).to_epoch_days();
        assert_eq!(first(0), 19_723); // 2024-01-01
        assert_eq!(first(-1), 19_692); // 2023-12-01
        assert_eq!(month_start(23).to_string(), "2025-12-01");
        assert_eq!(first(24) - 1, 20_453); // 2025-12-31
        assert_eq!(Month::new(1).days, 29); // February 2024, a leap year
        assert_eq!(Month::new(13).days, 28);
        assert_eq!(Month::new(23).first_day, 20_423);
    }
}
