//! Unix timestamps as tokens carry them (`exp`, `iat`, `nbf`), and their RFC 3339 rendering for
//! rejection messages ("expired at 2026-11-28T10:00:00Z").

use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock in whole Unix seconds (0 if the clock is before 1970, which fails closed: every
/// token then looks not yet valid or long-lived rather than fresh).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A Unix time in whole seconds; `Display` writes it as RFC 3339 UTC (`2026-11-28T10:00:00Z`).
///
/// ```
/// use lastmile::identity::UnixTime;
/// assert_eq!(UnixTime(0).to_string(), "1970-01-01T00:00:00Z");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub u64);

/// 9999-12-31T23:59:59Z: past this a time is shown as a plain number of seconds.
const LAST_FOUR_DIGIT_YEAR: u64 = 253_402_300_799;

impl std::fmt::Display for UnixTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0;
        if secs > LAST_FOUR_DIGIT_YEAR {
            return write!(f, "{secs} (Unix seconds)");
        }
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), counting in 400-year eras
/// that start on March 1st so the leap day falls at the end of each year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

/// A short human duration: `45s`, `12m`, `8h`, `3d 4h`.
pub(crate) fn human_secs(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc3339() {
        assert_eq!(UnixTime(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(UnixTime(951_782_400).to_string(), "2000-02-29T00:00:00Z");
        assert_eq!(UnixTime(1_795_860_000).to_string(), "2026-11-28T10:00:00Z");
        assert_eq!(UnixTime(4_102_444_799).to_string(), "2099-12-31T23:59:59Z");
        assert_eq!(
            UnixTime(LAST_FOUR_DIGIT_YEAR).to_string(),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(
            UnixTime(u64::MAX).to_string(),
            "18446744073709551615 (Unix seconds)"
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_secs(30), "30s");
        assert_eq!(human_secs(600), "10m");
        assert_eq!(human_secs(8 * 3600), "8h");
        assert_eq!(human_secs(30 * 86_400), "30d");
        assert_eq!(human_secs(3 * 86_400 + 4 * 3600), "3d 4h");
    }
}
