//! Error bars of a projection: how far the measured value may lie from the projected one,
//! from the profile's recorded validation errors.
//!
//! The profiles record the mean absolute percentage error of their held-out projections
//! (leave-one-source-out and leave-one-model-out, `[calibration]`), not the signed errors
//! themselves, so the interval is derived from those: with `r` the larger of the two
//! held-out errors of a metric, the measured
//! value is taken to lie within a factor `1 + r` of the projection either way,
//! `[p / (1 + r), p · (1 + r)]` (symmetric in `ln(projected / measured)`, the quantity the
//! fit minimises). Outside the calibrated runs (another instance or TP degree, or a weights
//! dtype no point used, a batch outside the points') the error was never measured, and the
//! factor is squared. Profiles with assumed parameters, and fitted ones without a held-out
//! error (their fit error is in-sample), have no measured error: they get
//! [`ASSUMED_FACTOR`] on every metric. These are conventions stated here and in the README, not fitted quantities.

use super::profile::{Calibration, CalibrationStatus};
use super::types::CalibrationError;

/// Factor either way for assumed profiles: the largest errors the README's reference
/// checks found for them, GPU TPOT projected 56% low (a factor 1/0.44 ≈ 2.3) and trn2
/// TTFT 129% high (2.29), rounded up.
pub const ASSUMED_FACTOR: f64 = 2.3;

/// The factors `f ≥ 1` a projection is divided and multiplied by for its interval.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorBar {
    pub ttft: f64,
    pub tpot: f64,
    /// One line saying where the factors come from.
    pub basis: String,
}

impl ErrorBar {
    /// The error bar of a projection on a profile with calibration `cal`; `outside` is true
    /// when the projection lies outside the calibrated runs.
    pub fn of(cal: &Calibration, outside: bool) -> ErrorBar {
        let held: Vec<(&str, CalibrationError)> = [
            ("leave-one-source-out", &cal.leave_one_source_out),
            ("leave-one-model-out", &cal.leave_one_model_out),
        ]
        .into_iter()
        .filter_map(|(name, h)| Some((name, h.as_ref()?.error?)))
        .collect();
        let (r_ttft, r_tpot, from) = match (&cal.status, held.as_slice(), cal.error) {
            (CalibrationStatus::Fitted, [], _) => {
                // An in-sample fit error (as many parameters as points, at the extreme) says
                // nothing of a new projection's: such a profile is judged as unmeasured.
                let f = ASSUMED_FACTOR;
                return ErrorBar {
                    ttft: f,
                    tpot: f,
                    basis: format!(
                        "factor {f} (fitted, but no held-out error: one source and one model; the fit MAPE is in-sample)"
                    ),
                };
            }
            (CalibrationStatus::Fitted, [_, ..], _) => {
                let names: Vec<&str> = held.iter().map(|h| h.0).collect();
                (
                    held.iter().map(|h| h.1.ttft).fold(0.0, f64::max),
                    held.iter().map(|h| h.1.tpot).fold(0.0, f64::max),
                    match names.as_slice() {
                        [one] => format!("the {one} MAPE"),
                        _ => format!("the larger of the {} MAPEs", names.join(" and ")),
                    },
                )
            }
            _ => {
                let f = ASSUMED_FACTOR;
                return ErrorBar {
                    ttft: f,
                    tpot: f,
                    basis: format!(
                        "factor {f} (assumed parameters, error not measured: the largest errors of the reference checks)"
                    ),
                };
            }
        };
        let (mut ttft, mut tpot) = (1.0 + r_ttft, 1.0 + r_tpot);
        let mut why = format!("1 + {from}");
        if outside {
            ttft *= ttft;
            tpot *= tpot;
            why = format!("({why})², outside the calibrated runs");
        }
        let basis = format!(
            "factor {} TTFT, {} TPOT ({why})",
            round2(ttft),
            round2(tpot)
        );
        ErrorBar { ttft, tpot, basis }
    }

    /// `(value / f, value · f)`.
    pub fn span(value: f64, f: f64) -> (f64, f64) {
        (value / f, value * f)
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Whether the closed intervals `a` and `b` share a point.
pub fn overlap(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::types::HeldOut;

    fn cal(status: CalibrationStatus) -> Calibration {
        let err = |ttft, tpot, points| CalibrationError { ttft, tpot, points };
        Calibration {
            status,
            note: String::new(),
            points: None,
            fitted: vec![],
            error: Some(err(0.2, 0.05, 42)),
            leave_one_source_out: Some(HeldOut {
                error: Some(err(0.3, 0.4, 54)),
                groups: 2,
                reason: None,
            }),
            leave_one_model_out: Some(HeldOut {
                error: Some(err(0.25, 0.08, 42)),
                groups: 7,
                reason: None,
            }),
            runs: None,
        }
    }

    #[test]
    fn factors_by_hand() {
        let b = ErrorBar::of(&cal(CalibrationStatus::Fitted), false);
        assert!((b.ttft - 1.3).abs() < 1e-12 && (b.tpot - 1.4).abs() < 1e-12);
        let (lo, hi) = ErrorBar::span(26.0, b.ttft);
        assert!((lo - 20.0).abs() < 1e-12 && (hi - 33.8).abs() < 1e-12);
        let out = ErrorBar::of(&cal(CalibrationStatus::Fitted), true);
        assert!((out.ttft - 1.69).abs() < 1e-12 && (out.tpot - 1.96).abs() < 1e-12);
        assert_eq!(
            out.basis,
            "factor 1.69 TTFT, 1.96 TPOT ((1 + the larger of the leave-one-source-out and leave-one-model-out MAPEs)², outside the calibrated runs)"
        );
        // Only the (in-sample) fit error recorded: judged as unmeasured.
        let mut c = cal(CalibrationStatus::Fitted);
        c.leave_one_source_out = Some(HeldOut::none(1, "one source"));
        c.leave_one_model_out = None;
        let b = ErrorBar::of(&c, false);
        assert_eq!((b.ttft, b.tpot), (ASSUMED_FACTOR, ASSUMED_FACTOR));
        assert!(b.basis.contains("no held-out error"), "{}", b.basis);
        // Assumed: the fixed factor, not widened further.
        let a = ErrorBar::of(&cal(CalibrationStatus::Assumed), true);
        assert_eq!((a.ttft, a.tpot), (ASSUMED_FACTOR, ASSUMED_FACTOR));
    }

    #[test]
    fn overlap_of_intervals() {
        assert!(overlap((1.0, 2.0), (2.0, 3.0)));
        assert!(overlap((1.0, 5.0), (2.0, 3.0)));
        assert!(!overlap((1.0, 1.9), (2.0, 3.0)));
    }
}
