//! Calendar dates (proleptic Gregorian) as day numbers, for expiry dates relative to the reference date.

use std::fmt;

/// A calendar date; ordered by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a date YYYY-MM-DD")]
pub struct DateError(String);

impl Date {
    /// Days since 1970-01-01.
    pub fn days(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    pub fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }

    pub fn plus_days(self, n: i64) -> Date {
        Date::from_days(self.days() + n)
    }

    pub fn parse(s: &str) -> Result<Date, DateError> {
        let err = || DateError(s.to_string());
        let parts: Vec<&str> = s.split('-').collect();
        if parts.len() != 3 || parts[0].len() != 4 || parts[1].len() != 2 || parts[2].len() != 2 {
            return Err(err());
        }
        let year: i32 = parts[0].parse().map_err(|_| err())?;
        let month: u32 = parts[1].parse().map_err(|_| err())?;
        let day: u32 = parts[2].parse().map_err(|_| err())?;
        let d = Date { year, month, day };
        // Round trip rejects 2026-02-30 and month 13.
        if !(1..=12).contains(&month) || Date::from_days(d.days()) != d {
            return Err(err());
        }
        Ok(d)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_days_and_round_trip() {
        assert_eq!(Date::parse("1970-01-01").unwrap().days(), 0);
        assert_eq!(Date::parse("2000-03-01").unwrap().days(), 11_017);
        let d = Date::parse("2026-12-01").unwrap();
        assert_eq!(d.plus_days(31).to_string(), "2027-01-01");
        assert_eq!(d.plus_days(-275).to_string(), "2026-03-01");
        assert_eq!(
            Date::parse("2028-02-28").unwrap().plus_days(1).to_string(),
            "2028-02-29"
        );
        for n in -1000..1000 {
            assert_eq!(Date::from_days(n).days(), n);
        }
    }

    #[test]
    fn bad_dates_are_rejected() {
        for s in [
            "2026-02-30",
            "2026-13-01",
            "26-01-01",
            "2026/01/01",
            "2026-1-01",
            "",
        ] {
            assert!(Date::parse(s).is_err(), "{s}");
        }
    }
}
