//! Summary statistics over per-request measurements (mean, sample standard deviation,
//! percentiles, a 95% confidence interval of the mean) and the outlier / first-run checks
//! that turn suspicious data into warnings, so that a report says how far to trust itself.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Summary of one metric over the counted requests (or decode steps).
///
/// `stddev`, `ci95_low` and `ci95_high` are `None` (JSON `null`) with fewer than two values,
/// where they are undefined; no field is ever NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// Number of values summarised.
    pub count: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (divisor n − 1, Bessel's correction).
    pub stddev: Option<f64>,
    pub min: f64,
    /// Median; percentiles as defined by [`percentile_sorted`].
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    /// Lower bound of the 95% confidence interval of the mean (Student's t, n − 1 d.o.f.).
    pub ci95_low: Option<f64>,
    /// Upper bound of the 95% confidence interval of the mean.
    pub ci95_high: Option<f64>,
}

impl Summary {
    /// The fields in order: the JSON keys and the run report's CSV columns. A test checks
    /// them against the serialised struct.
    pub const FIELDS: [&'static str; 10] = [
        "count",
        "mean",
        "stddev",
        "min",
        "p50",
        "p90",
        "p99",
        "max",
        "ci95_low",
        "ci95_high",
    ];

    /// The values in the order of [`Summary::FIELDS`] (`count` as a number).
    pub fn values(&self) -> [Option<f64>; 10] {
        [
            Some(self.count as f64),
            Some(self.mean),
            self.stddev,
            Some(self.min),
            Some(self.p50),
            Some(self.p90),
            Some(self.p99),
            Some(self.max),
            self.ci95_low,
            self.ci95_high,
        ]
    }

    /// Summarises the finite values of `values` (non-finite ones are left out, so that no
    /// NaN can reach a report). `None` when there is no finite value.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let mean = sorted.iter().sum::<f64>() / n as f64;
        // Two-pass variance: numerically safer than the sum-of-squares formula.
        let stddev = (n >= 2).then(|| {
            let ss: f64 = sorted.iter().map(|x| (x - mean) * (x - mean)).sum();
            (ss / (n - 1) as f64).sqrt()
        });
        let half_width =
            stddev.and_then(|s| t_quantile_975(n as u64 - 1).map(|t| t * s / (n as f64).sqrt()));
        let p = |q| percentile_sorted(&sorted, q).unwrap_or(mean);
        Some(Summary {
            count: n as u64,
            mean,
            stddev,
            min: sorted[0],
            p50: p(0.50),
            p90: p(0.90),
            p99: p(0.99),
            max: sorted[n - 1],
            ci95_low: half_width.map(|h| mean - h),
            ci95_high: half_width.map(|h| mean + h),
        })
    }
}

/// The `q`-quantile (`0 ≤ q ≤ 1`) of ascending `sorted` values, by linear interpolation
/// between closest ranks: with `h = (n − 1)·q`, `x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋])`.
///
/// This is definition 7 of Hyndman & Fan, "Sample Quantiles in Statistical Packages",
/// The American Statistician 50(4), 1996 — the default of NumPy's `percentile`, R's
/// `quantile` and Excel's `PERCENTILE.INC`. `None` for an empty slice or `q` outside [0, 1].
pub fn percentile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// Two-sided 95% quantiles of Student's t, `t(0.975, df)`, for df = 1..=30.
/// Computed with SciPy 1.17.1 `scipy.stats.t.ppf(0.975, df)`; they agree with the printed
/// table of the NIST/SEMATECH e-Handbook of Statistical Methods, section 1.3.6.7.2.
const T975: [f64; 30] = [
    12.706204736174694,
    4.302652729749462,
    3.1824463052837078,
    2.7764451051977934,
    2.5705818356363146,
    2.4469118511449786,
    2.364624251592784,
    2.306004135204166,
    2.262157162798205,
    2.228138851986274,
    2.200985160091639,
    2.1788128296672284,
    2.1603686564627913,
    2.144786687917804,
    2.131449545559776,
    2.1199052992212546,
    2.1098155778333156,
    2.1009220402410382,
    2.0930240544083087,
    2.085963447265864,
    2.0796138447276795,
    2.0738730679040254,
    2.0686576104190486,
    2.0638985616280245,
    2.0595385527532972,
    2.0555294386428735,
    2.0518305164802846,
    2.0484071417952454,
    2.045229642132703,
    2.0422724563012378,
];

/// `t(0.975, df)`, the Student's t quantile for a two-sided 95% interval with `df` degrees
/// of freedom; `None` for `df = 0`.
///
/// Table [`T975`] up to 30; beyond it the Cornish–Fisher expansion of t in terms of the
/// normal quantile z (Abramowitz & Stegun, Handbook of Mathematical Functions, 26.7.5),
/// whose error against SciPy is below 3·10⁻⁸ from df = 31 on.
pub fn t_quantile_975(df: u64) -> Option<f64> {
    match df {
        0 => None,
        1..=30 => Some(T975[df as usize - 1]),
        _ => {
            // z = Φ⁻¹(0.975), from SciPy `scipy.stats.norm.ppf(0.975)`.
            let z: f64 = 1.959963984540054;
            let v = df as f64;
            let g1 = (z.powi(3) + z) / 4.0;
            let g2 = (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / 96.0;
            let g3 = (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z) / 384.0;
            let g4 = (79.0 * z.powi(9) + 776.0 * z.powi(7) + 1482.0 * z.powi(5)
                - 1920.0 * z.powi(3)
                - 945.0 * z)
                / 92160.0;
            Some(z + g1 / v + g2 / v.powi(2) + g3 / v.powi(3) + g4 / v.powi(4))
        }
    }
}

/// A value is an outlier when it lies more than this many robust standard deviations
/// (1.4826 × MAD) from the median. Same rule as hyperfine (`OUTLIER_THRESHOLD =
/// 1.4826 * 10.0` on `(x − median) / MAD`), after Iglewicz & Hoaglin, "How to Detect and
/// Handle Outliers", ASQC Basic References in Quality Control vol. 16, 1993.
pub const OUTLIER_SIGMAS: f64 = 10.0;

/// 1.4826 ≈ 1/Φ⁻¹(0.75) makes the MAD a consistent estimator of the standard deviation of
/// normally distributed data.
const MAD_TO_SIGMA: f64 = 1.4826;

/// Modified Z-scores `(x − median) / (1.4826 · MAD)` of `values` in their order (MAD: median
/// absolute deviation from the median). Where the MAD is 0 (more than half the values equal)
/// a value equal to the median scores 0 and any other scores ±infinity, as in hyperfine.
pub fn modified_z_scores(values: &[f64]) -> Vec<f64> {
    let Some(median) = median(values) else {
        return Vec::new();
    };
    let deviations: Vec<f64> = values.iter().map(|x| (x - median).abs()).collect();
    let mad = median_of(deviations).unwrap_or(0.0);
    values
        .iter()
        .map(|&x| {
            let d = x - median;
            if mad > 0.0 {
                d / (MAD_TO_SIGMA * mad)
            } else if d == 0.0 {
                0.0
            } else {
                d.signum() * f64::INFINITY
            }
        })
        .collect()
}

fn median(values: &[f64]) -> Option<f64> {
    median_of(values.to_vec())
}

fn median_of(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|x| x.is_finite());
    values.sort_by(f64::total_cmp);
    percentile_sorted(&values, 0.5)
}

/// What the outlier check found in one metric's values, taken in run order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anomalies {
    /// The first counted value is a high outlier: a first-run (cold cache) effect.
    pub slow_first: bool,
    /// Outliers other than a slow first value.
    pub outliers: usize,
}

/// Runs the outlier check on `values` in run order (see [`OUTLIER_SIGMAS`]). Non-finite
/// values are ignored.
pub fn detect_anomalies(values: &[f64]) -> Anomalies {
    let finite: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let scores = modified_z_scores(&finite);
    let slow_first = scores.first().is_some_and(|&s| s > OUTLIER_SIGMAS);
    let skip = usize::from(slow_first);
    let outliers = scores
        .iter()
        .skip(skip)
        .filter(|s| s.abs() > OUTLIER_SIGMAS)
        .count();
    Anomalies {
        slow_first,
        outliers,
    }
}

/// Warning sentences for `metric` (e.g. `ttft_ms`, values in milliseconds, in run order):
/// one for a first-run effect and one for other outliers, worded after hyperfine's.
/// `warmup` is the number of warm-up requests the run used, quoted in the advice.
pub fn anomaly_warnings(metric: &str, values: &[f64], warmup: u32) -> Vec<String> {
    let finite: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let found = detect_anomalies(&finite);
    let mut warnings = Vec::new();
    if let (true, Some((&first, rest))) = (found.slow_first, finite.split_first()) {
        let rest_median = median(rest).unwrap_or(first);
        warnings.push(format!(
            "{metric}: the first counted request was significantly slower than the rest \
             ({first:.2} ms against a median of {rest_median:.2} ms); caches or lazy \
             initialisation were probably not warm yet. Consider a larger --warmup (now {warmup})."
        ));
    }
    if found.outliers > 0 {
        warnings.push(format!(
            "{metric}: {} of {} values are statistical outliers (more than {OUTLIER_SIGMAS} \
             robust standard deviations from the median). Consider re-running on a quiet system \
             without interference from other programs.",
            found.outliers,
            finite.len()
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_the_serialised_keys_in_order() {
        let s = Summary::of(&[1.0, 2.0, 4.0]).unwrap();
        let text = serde_json::to_string(&s).unwrap();
        // Keys in the order serde writes them (struct order).
        let keys: Vec<&str> = text.split('"').skip(1).step_by(2).collect();
        assert_eq!(keys, Summary::FIELDS);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for (k, x) in Summary::FIELDS.iter().zip(s.values()) {
            assert_eq!(v[k].as_f64(), x, "{k}");
        }
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[test]
    fn hand_computed_summary_of_one_to_four() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.count, 4);
        assert_eq!(s.mean, 2.5);
        // variance = (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3
        assert!(close(s.stddev.unwrap(), (5.0f64 / 3.0).sqrt(), 1e-15));
        assert_eq!((s.min, s.max), (1.0, 4.0));
        // h = 3q: p50 at 1.5 → 2.5; p90 at 2.7 → 3.7; p99 at 2.97 → 3.97.
        assert!(close(s.p50, 2.5, 1e-15));
        assert!(close(s.p90, 3.7, 1e-15));
        assert!(close(s.p99, 3.97, 1e-15));
        // half width = t(0.975, 3) · s / √4, t from the table; product from NumPy.
        let h = 2.0542602567605206;
        assert!(close(s.ci95_low.unwrap(), 2.5 - h, 1e-14));
        assert!(close(s.ci95_high.unwrap(), 2.5 + h, 1e-14));
    }

    // Reference values from NumPy 2.4.6 (`mean`, `std(ddof=1)`, `percentile` default method)
    // and SciPy 1.17.1 (`stats.t.interval(0.95, n-1, loc=mean, scale=stats.sem(xs))`).
    #[test]
    fn matches_numpy_and_scipy() {
        let xs = [12.5, 9.75, 11.0, 10.25, 13.5, 10.0, 9.5, 30.0, 11.75, 10.5];
        let s = Summary::of(&xs).unwrap();
        assert!(close(s.mean, 12.875, 1e-15));
        assert!(close(s.stddev.unwrap(), 6.151162943342954, 1e-13));
        assert!(close(s.p50, 10.75, 1e-13));
        assert!(close(s.p90, 15.149999999999995, 1e-13));
        assert!(close(s.p99, 28.515, 1e-13));
        assert!(close(s.ci95_low.unwrap(), 8.474723108728778, 1e-13));
        assert!(close(s.ci95_high.unwrap(), 17.275276891271222, 1e-13));
    }

    #[test]
    fn single_value_has_no_spread_and_no_interval() {
        let s = Summary::of(&[7.5]).unwrap();
        assert_eq!((s.count, s.mean, s.min, s.max), (1, 7.5, 7.5, 7.5));
        assert_eq!((s.p50, s.p90, s.p99), (7.5, 7.5, 7.5));
        assert_eq!((s.stddev, s.ci95_low, s.ci95_high), (None, None, None));
    }

    #[test]
    fn empty_or_non_finite_input_gives_none_and_never_nan() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN, f64::INFINITY]), None);
        let s = Summary::of(&[1.0, f64::NAN, 3.0]).unwrap();
        assert_eq!((s.count, s.mean), (2, 2.0));
    }

    #[test]
    fn percentiles_are_ordered() {
        // A deterministic pseudo-random sequence (64-bit LCG, Knuth's MMIX constants).
        let mut state: u64 = 42;
        for n in [2usize, 3, 10, 101, 1000] {
            let xs: Vec<f64> = (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 11) as f64 / (1u64 << 53) as f64 * 100.0
                })
                .collect();
            let s = Summary::of(&xs).unwrap();
            assert!(s.min <= s.p50 && s.p50 <= s.p90, "n={n}: {s:?}");
            assert!(s.p90 <= s.p99 && s.p99 <= s.max, "n={n}: {s:?}");
            assert!(s.ci95_low.unwrap() <= s.mean && s.mean <= s.ci95_high.unwrap());
        }
    }

    #[test]
    fn percentile_rejects_bad_arguments() {
        assert_eq!(percentile_sorted(&[], 0.5), None);
        assert_eq!(percentile_sorted(&[1.0], 1.5), None);
        assert_eq!(percentile_sorted(&[1.0], f64::NAN), None);
        assert_eq!(percentile_sorted(&[1.0, 2.0], 1.0), Some(2.0));
        assert_eq!(percentile_sorted(&[1.0, 2.0], 0.0), Some(1.0));
    }

    #[test]
    fn confidence_interval_shrinks_with_more_requests() {
        let pattern = [10.0, 12.0, 11.0, 13.0];
        let mut last_width = f64::INFINITY;
        for k in 1..=6 {
            let xs: Vec<f64> = pattern.iter().copied().cycle().take(4 * k).collect();
            let s = Summary::of(&xs).unwrap();
            let width = s.ci95_high.unwrap() - s.ci95_low.unwrap();
            assert!(width < last_width, "k={k}: {width} !< {last_width}");
            last_width = width;
        }
    }

    // SciPy 1.17.1 `scipy.stats.t.ppf(0.975, df)`.
    #[test]
    fn t_quantile_beyond_the_table_matches_scipy() {
        assert_eq!(t_quantile_975(0), None);
        assert_eq!(t_quantile_975(1), Some(12.706204736174694));
        for (df, want) in [
            (31, 2.039513446396408),
            (40, 2.021075390306273),
            (60, 2.0002978220142604),
            (120, 1.9799304050824402),
            (1000, 1.9623390808264083),
        ] {
            let got = t_quantile_975(df).unwrap();
            assert!((got - want).abs() < 3e-8, "df={df}: {got} vs {want}");
        }
        // Decreasing towards z = 1.96 across the table boundary.
        assert!(t_quantile_975(30).unwrap() > t_quantile_975(31).unwrap());
        assert!(t_quantile_975(1_000_000).unwrap() > 1.959963984540054);
    }

    // Twenty draws of 100 + 5·N(0, 1), NumPy `default_rng(7)`, rounded to 3 decimals.
    const CLEAN: [f64; 20] = [
        100.006, 101.494, 98.629, 95.547, 97.727, 95.042, 100.301, 106.701, 97.539, 96.898,
        102.449, 101.784, 100.527, 95.348, 99.854, 103.477, 93.279, 97.712, 90.494, 93.552,
    ];

    #[test]
    fn no_warning_on_clean_data() {
        let found = detect_anomalies(&CLEAN);
        assert_eq!(
            found,
            Anomalies {
                slow_first: false,
                outliers: 0
            }
        );
        assert!(anomaly_warnings("e2e_ms", &CLEAN, 1).is_empty());
    }

    #[test]
    fn planted_outlier_is_reported() {
        let mut xs = CLEAN.to_vec();
        xs[7] = 400.0;
        assert_eq!(detect_anomalies(&xs).outliers, 1);
        let w = anomaly_warnings("e2e_ms", &xs, 1);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("e2e_ms: 1 of 20 values are statistical outliers"));
    }

    #[test]
    fn slow_first_request_is_a_first_run_warning_not_an_outlier() {
        let mut xs = CLEAN.to_vec();
        xs[0] = 900.0;
        let found = detect_anomalies(&xs);
        assert!(found.slow_first);
        assert_eq!(found.outliers, 0);
        let w = anomaly_warnings("ttft_ms", &xs, 2);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("first counted request") && w[0].contains("--warmup (now 2)"));
    }

    #[test]
    fn fast_first_request_is_an_outlier_not_a_first_run_effect() {
        let mut xs = CLEAN.to_vec();
        xs[0] = -500.0;
        let found = detect_anomalies(&xs);
        assert!(!found.slow_first);
        assert_eq!(found.outliers, 1);
    }

    #[test]
    fn small_or_constant_samples_raise_nothing() {
        for xs in [&[][..], &[5.0], &[1000.0, 0.0], &[3.0, 3.0, 3.0]] {
            assert!(anomaly_warnings("x", xs, 0).is_empty(), "{xs:?}");
        }
    }

    #[test]
    fn zero_mad_flags_values_off_the_median() {
        let xs = [10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 100.0];
        assert_eq!(detect_anomalies(&xs).outliers, 1);
        let scores = modified_z_scores(&xs);
        assert_eq!(scores[0], 0.0);
        assert_eq!(scores[7], f64::INFINITY);
    }
}
