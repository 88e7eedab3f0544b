//! Numbers for people, one rule for every table: [`sig`] shows at least integer precision
//! and `digits` significant digits from 1 up (at most two decimals), three significant
//! digits below 1, an exponent below 10⁻⁶; `-` for an unknown or non-finite value. Tables
//! with many columns (projections) use 3 digits, the run report 4.

/// Significant digits in the wide projection, comparison and calibration tables.
pub const SHORT: u32 = 3;
/// Significant digits in the run report.
pub const LONG: u32 = 4;

/// `x` with `digits` significant digits (see the module documentation).
pub fn sig(x: f64, digits: u32) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let a = x.abs();
    if a == 0.0 {
        return "0".into();
    }
    let e = a.log10().floor() as i32;
    if a >= 1.0 {
        let decimals = (digits as i32 - 1 - e).clamp(0, 2) as usize;
        format!("{x:.decimals$}")
    } else if a >= 1e-6 {
        let decimals = (2 - e) as usize;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.2e}")
    }
}

/// [`sig`] of an optional number, `-` when absent.
pub fn sig_opt(x: Option<f64>, digits: u32) -> String {
    x.map_or_else(|| "-".into(), |x| sig(x, digits))
}

/// `$` and [`sig`] with [`SHORT`] digits, `-` when unknown.
pub fn usd(x: Option<f64>) -> String {
    match x.filter(|v| v.is_finite()) {
        Some(v) => format!("${}", sig(v, SHORT)),
        None => "-".into(),
    }
}

/// A fraction as a percentage with one decimal (`0.123` → `12.3%`).
pub fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// A signed fraction as a signed percentage (`-0.05` → `-5.0%`), `-` when unknown.
pub fn signed_pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{:+.1}%", x * 100.0))
}

/// `x` with a fixed number of decimals, `-` when unknown or non-finite (columns whose
/// unit sets the precision: rates, dollars per hour).
pub fn fixed(x: Option<f64>, decimals: usize) -> String {
    x.filter(|v| v.is_finite())
        .map_or_else(|| "-".into(), |v| format!("{v:.decimals$}"))
}

/// Bytes as GiB with [`SHORT`] digits (`need/have` memory columns).
pub fn gib(bytes: u64) -> String {
    sig(bytes as f64 / 1073741824.0, SHORT)
}

/// Bytes in binary units with two decimals (`1.50 GiB`), plain bytes below 1 KiB.
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = b as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// `text` followed by the interval `[low–high]`, each bound written by `f`; `text` alone
/// when a bound is unknown.
pub fn ranged(
    text: String,
    low: Option<f64>,
    high: Option<f64>,
    f: impl Fn(f64) -> String,
) -> String {
    match (low, high) {
        (Some(l), Some(h)) if l.is_finite() && h.is_finite() && text != "-" => {
            format!("{text} [{}–{}]", f(l), f(h))
        }
        _ => text,
    }
}

/// Shortest text that reads back as the same f64 (Rust's `Display`), for CSV; empty when
/// unknown or non-finite.
pub fn exact(x: Option<f64>) -> String {
    x.filter(|x| x.is_finite())
        .map_or_else(String::new, |x| x.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_digits() {
        // Projection tables (3 digits).
        assert_eq!(sig(1234.5, SHORT), "1234");
        assert_eq!(sig(123.4, SHORT), "123");
        assert_eq!(sig(12.345, SHORT), "12.3");
        assert_eq!(sig(1.2345, SHORT), "1.23");
        assert_eq!(sig(0.5, SHORT), "0.500");
        assert_eq!(sig(0.01234, SHORT), "0.0123");
        // The run report (4 digits).
        assert_eq!(sig(1234.56, LONG), "1235");
        assert_eq!(sig(123.456, LONG), "123.5");
        assert_eq!(sig(12.3456, LONG), "12.35");
        assert_eq!(sig(1.5, LONG), "1.50");
        assert_eq!(sig(0.012345, LONG), "0.0123");
        assert_eq!(sig(1.5e-8, LONG), "1.50e-8");
        assert_eq!(sig(0.0, LONG), "0");
        assert_eq!(sig(-12.3456, LONG), "-12.35");
        assert_eq!(sig(f64::NAN, LONG), "-");
        assert_eq!(sig_opt(None, LONG), "-");
    }

    #[test]
    fn units() {
        assert_eq!(usd(Some(15.44)), "$15.4");
        assert_eq!(usd(None), "-");
        assert_eq!(pct(0.1234), "12.3%");
        assert_eq!(signed_pct(Some(-0.05)), "-5.0%");
        assert_eq!(fixed(Some(1.23456), 3), "1.235");
        assert_eq!(fixed(Some(f64::INFINITY), 3), "-");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 29), "1.50 GiB");
        assert_eq!(gib(3 << 30), "3.00");
        assert_eq!(exact(Some(0.1)), "0.1");
        assert_eq!(exact(Some(f64::NAN)), "");
        let s = |x| sig(x, SHORT);
        assert_eq!(
            ranged(s(28.6), Some(20.0), Some(40.9), s),
            "28.6 [20.0–40.9]"
        );
        assert_eq!(
            ranged(usd(None), Some(1.0), Some(2.0), |x| usd(Some(x))),
            "-"
        );
        assert_eq!(ranged(s(1.0), None, Some(2.0), s), "1.00");
    }
}
