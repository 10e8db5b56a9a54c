//! The window of `MONTHS` months and the day arithmetic of Arrow's Date32.

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
        let (year, month) = year_month(index as i64);
        let growth = (1.0 + MONTHLY_GROWTH).powi(index as i32);
        Month {
            index,
            first_day: days_from_civil(year, month, 1),
            days: days_in_month(year, month),
            volume: SEASON[month as usize - 1] * growth,
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

/// (year, month 1-12) of a month counted from January of `FIRST_YEAR`.
pub(super) fn year_month(month: i64) -> (i32, u32) {
    let absolute = i64::from(FIRST_YEAR) * 12 + month;
    (
        absolute.div_euclid(12) as i32,
        absolute.rem_euclid(12) as u32 + 1,
    )
}

pub(super) fn days_in_month(year: i32, month: u32) -> u32 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Arrow's Date32) of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
pub(super) fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month as i32 + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day as i32 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_exact() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 1, 1), 19_723);
        assert_eq!(days_from_civil(2025, 12, 31), 20_453);
        assert_eq!(year_month(-1), (2023, 12));
        assert_eq!(year_month(23), (2025, 12));
    }
}
