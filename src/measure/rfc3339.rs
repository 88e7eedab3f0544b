//! RFC 3339 timestamps in UTC (`2024-05-01T12:44:56Z`) from a [`SystemTime`], so that reports
//! carry a start time without a date-handling dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats `time` as an RFC 3339 UTC timestamp with whole seconds (fractions are dropped,
/// rounding towards the past), e.g. `2024-05-01T12:44:56Z`.
pub fn format_utc(time: SystemTime) -> String {
    let seconds: i64 = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let d = before.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            // Round towards the past: 0.5 s before the epoch is 23:59:59.
            -whole - i64::from(d.subsec_nanos() > 0)
        }
    };
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Proleptic Gregorian (year, month, day) of the day `days` after 1970-01-01.
///
/// Algorithm `civil_from_days` from Howard Hinnant, "chrono-Compatible Low-Level Date
/// Algorithms", <https://howardhinnant.github.io/date_algorithms.html#civil_from_days>.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based month
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(seconds: i64) -> String {
        let t = if seconds >= 0 {
            UNIX_EPOCH + Duration::from_secs(seconds as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
        };
        format_utc(t)
    }

    // Expected strings from Python 3 `datetime.fromtimestamp(t, timezone.utc)`.
    #[test]
    fn matches_python_datetime() {
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_714_567_496), "2024-05-01T12:44:56Z");
        assert_eq!(at(-1), "1969-12-31T23:59:59Z");
        assert_eq!(at(4_102_531_199), "2100-01-01T23:59:59Z");
    }

    #[test]
    fn fractions_before_the_epoch_round_to_the_past() {
        let t = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(format_utc(t), "1969-12-31T23:59:59Z");
        let t = UNIX_EPOCH + Duration::from_millis(999);
        assert_eq!(format_utc(t), "1970-01-01T00:00:00Z");
    }
}
