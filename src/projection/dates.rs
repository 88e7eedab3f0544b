//! Calendar days for the age of a profile's figures: `YYYY-MM-DD` (or `YYYY-MM`, read as
//! its first day) to a day number and back, today's day number, and the newest date a
//! source text mentions. Day numbers count from 1970-01-01 (proleptic Gregorian), by
//! H. Hinnant's `days_from_civil` / `civil_from_days`
//! (https://howardhinnant.github.io/date_algorithms.html).

use std::time::{SystemTime, UNIX_EPOCH};

/// Day number of a calendar day.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Calendar day `YYYY-MM-DD` of a day number.
pub fn civil_from_days(z: i64) -> String {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Day number of `YYYY-MM-DD` or `YYYY-MM` (its first day); `None` for anything else.
pub fn day_number(s: &str) -> Option<i64> {
    if !super::profile::is_date(s) {
        return None;
    }
    let mut it = s.split('-');
    let y = it.next()?.parse().ok()?;
    let m = it.next()?.parse().ok()?;
    let d = it.next().map_or(Some(1), |d| d.parse().ok())?;
    Some(days_from_civil(y, m, d))
}

/// Today's day number (UTC) from the system clock.
pub fn today() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (secs / 86_400) as i64
}

/// The newest date (`YYYY-MM-DD`, else `YYYY-MM`) written in `text` between non-digits,
/// with its day number: the date a source was last confirmed.
pub fn latest_date(text: &str) -> Option<(String, i64)> {
    let b = text.as_bytes();
    let mut best: Option<(String, i64)> = None;
    for i in 0..b.len() {
        if i > 0 && b[i - 1].is_ascii_digit() {
            continue;
        }
        for n in [10, 7] {
            let end = i + n;
            if end > b.len()
                || (end < b.len() && b[end].is_ascii_digit())
                || !text.is_char_boundary(i)
                || !text.is_char_boundary(end)
            {
                continue;
            }
            if let Some(d) = day_number(&text[i..end]) {
                if best.as_ref().is_none_or(|(_, bd)| d > *bd) {
                    best = Some((text[i..end].to_string(), d));
                }
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_match_known_days() {
        // 1970-01-01 is day 0; 2000-03-01 is day 11017 (hand count: 30 years of 365 days,
        // 7 leap days, and 59 + 1 days of 2000 before March minus one = 10957 + 60).
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
        assert_eq!(civil_from_days(11017), "2000-03-01");
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), "2024-02-29");
        // 2024-04-30 to 2024-10-27 is 1 + 31 + 30 + 31 + 31 + 30 + 27 = 180 days.
        assert_eq!(
            day_number("2024-10-27").unwrap() - day_number("2024-04-30").unwrap(),
            180
        );
        assert_eq!(day_number("2024-12"), day_number("2024-12-01"));
        assert_eq!(day_number("2024-13-01"), None);
    }

    #[test]
    fn latest_date_takes_the_newest() {
        let t = "page (commit 78169c6c, 2024-04-30), cited 2026-11-26; 2025-01";
        assert_eq!(latest_date(t).unwrap().0, "2026-11-26");
        assert_eq!(
            latest_date("read as published in 2024-12").unwrap().0,
            "2024-12"
        );
        assert!(latest_date("no date, 5 µs, 12024-01-01").is_none());
    }
}
