//! `profiler calibrate --device NAME [--points FILE]`: a profile fitted on its points CSV.
//! A file of static batches only is fitted by the latency model's own calibration
//! ([`crate::projection::calibrate`], unchanged); a file with serving rows (a
//! `concurrency` column) is fitted through [`super::fit`], each serving row replayed
//! through the simulator as a closed loop of that many clients with the row's lengths.
//! Either way the result is a [`CalibrationReport`], which `--write` writes back.

use super::fit::{self, Flags, Resolved};
use super::import::{FileDtype, FileSettings, MeasuredLoad, Measurement, Observed, Stat, Tool};
use crate::model::card::{self, ModelCard};
use crate::projection::calibrate::{calibrate_profile, CalibrationReport, PointError};
use crate::projection::points::{self, Point};
use crate::projection::profile::{self, CalibrationStatus, Profile};
use crate::projection::setting::{Setting, SettingError};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Requests simulated for a serving row: ten per client, at least 100, so that the
/// median is taken over the steady state, not the ramp-up.
pub fn serving_requests(concurrency: u32) -> u64 {
    (10 * u64::from(concurrency)).max(100)
}

/// The document a `source` cell names: the text before its parenthesised locator (date,
/// commit, row), so that rows of one published table are one source however each row is
/// cited.
pub fn source_document(source: &str) -> String {
    let s = source.trim();
    let doc = s.split(" (").next().unwrap_or(s).trim();
    if doc.is_empty() {
        "(no source stated)".into()
    } else {
        doc.to_string()
    }
}

/// Whether any row to fit is a serving run.
fn has_serving(pts: &[Point]) -> bool {
    pts.iter().any(|p| p.concurrency.is_some())
}

/// One points row as a measurement: a closed loop at its concurrency (or a static batch),
/// its medians, and what it states of the deployment.
fn measurement(p: &Point) -> Measurement {
    let load = match p.concurrency {
        Some(c) => MeasuredLoad::Concurrency { concurrency: c },
        None => MeasuredLoad::StaticBatch { batch: p.batch },
    };
    Measurement {
        file: source_document(&p.source),
        tool: Tool::PointsCsv,
        label: format!("line {}", p.line),
        model: Some(p.model.clone()),
        load,
        input_tokens: f64::from(p.input_len),
        output_tokens: f64::from(p.output_len),
        requests: p.concurrency.map(serving_requests),
        per_request: Vec::new(),
        ttft: Observed {
            ms: p.ttft_ms,
            stat: Stat::Median,
        },
        tpot: Observed {
            ms: p.tpot_ms,
            stat: Stat::Median,
        },
        output_tokens_per_s: None,
        date: None,
        settings: FileSettings {
            instance: Some(p.instance.clone()),
            tp: Some(p.tp),
            max_num_seqs: p
                .max_num_seqs
                .or(p.concurrency.is_none().then_some(p.batch)),
            seq_len: p.compiled_seq_len,
            dtype: Some(FileDtype::Known(p.weights_dtype)),
        },
        notes: Vec::new(),
    }
}

/// The rows of `pts` on `profile`'s instances, fit rows only (not `validation…`), resolved
/// for projection: static rows through the latency model, serving rows through the
/// simulator. A Neuron serving row without a compiled length gets input + output rounded
/// up to the profile's sequence multiple, said in its notes.
pub fn resolve_points(
    profile: &Profile,
    models_dir: &Path,
    pts: &[Point],
    file: &str,
) -> Result<Vec<(Point, Resolved)>> {
    let fit: Vec<Point> = pts
        .iter()
        .filter(|p| !p.validation_only())
        .cloned()
        .collect();
    let out = resolve_rows(profile, models_dir, &fit, file)?;
    if out.is_empty() {
        bail!(
            "{file}: no fit row (a `use` other than validation) ran on an instance of {}",
            profile.name
        );
    }
    Ok(out)
}

/// Every row of `pts` on `profile`'s instances, resolved as [`resolve_points`] does.
fn resolve_rows(
    profile: &Profile,
    models_dir: &Path,
    pts: &[Point],
    file: &str,
) -> Result<Vec<(Point, Resolved)>> {
    let cards = card::load_all(models_dir)?;
    let find = |name: &str| -> Result<ModelCard> {
        cards
            .iter()
            .find(|c| c.answers_to(name))
            .cloned()
            .with_context(|| {
                format!(
                    "model {name:?} has no model card in {}",
                    models_dir.display()
                )
            })
    };
    let mut out = Vec::new();
    for p in pts {
        if profile.instance(&p.instance).is_err() {
            continue;
        }
        let mut m = measurement(p);
        let mut assumed = None;
        if let (Some(s), None, Some(_)) = (
            &profile.runtime.static_shapes,
            m.settings.seq_len,
            p.concurrency,
        ) {
            let need = p.input_len + p.output_len;
            let len = need.div_ceil(s.seq_len_multiple) * s.seq_len_multiple;
            m.settings.seq_len = Some(len);
            assumed = Some(format!(
                "compiled sequence length {len} (input + output rounded up to {})",
                s.seq_len_multiple
            ));
        }
        let mut r = fit::resolve(m, &Flags::default(), profile, &find)
            .with_context(|| format!("{file}: line {}", p.line))?;
        r.assumed.extend(assumed);
        out.push((p.clone(), r));
    }
    Ok(out)
}

/// Fits `profile` on the rows of `pts` (read from `file`): static files as
/// [`calibrate_profile`] does; files with serving rows through [`fit::calibrate_from`],
/// fitting the profile's `fitted` list once it is fitted, otherwise the parameters the
/// rows can tell apart. A source is the document the `source` cell names.
pub fn calibrate_points(
    profile: &Profile,
    models_dir: &Path,
    pts: &[Point],
    file: &str,
) -> Result<CalibrationReport> {
    let fit_rows: Vec<Point> = pts
        .iter()
        .filter(|p| !p.validation_only())
        .cloned()
        .collect();
    if !has_serving(&fit_rows) {
        let cards = card::load_all(models_dir)?;
        return calibrate_profile(profile, &cards, &fit_rows, file);
    }
    let both = resolve_points(profile, models_dir, &fit_rows, file)?;
    let (rows, rs): (Vec<Point>, Vec<Resolved>) = both.into_iter().unzip();
    let explicit = (profile.calibration.status == CalibrationStatus::Fitted
        && !profile.calibration.fitted.is_empty())
    .then(|| profile.calibration.fitted.clone());
    let r = fit::calibrate_from(profile, &rs, Vec::new(), explicit.as_deref())?;
    let point_errors = |rows: &[Point], errors: &[fit::MeasuredError]| -> Vec<PointError> {
        rows.iter()
            .zip(errors)
            .map(|(p, e)| {
                PointError::at(
                    p,
                    (e.measured_ttft_ms, e.measured_tpot_ms),
                    (e.projected_ttft_ms, e.projected_tpot_ms),
                )
            })
            .collect()
    };
    let points = point_errors(&rows, &r.measurements);
    // Validation rows: projected with the fitted parameters, never fitted on.
    let held: Vec<Point> = pts
        .iter()
        .filter(|p| p.validation_only())
        .cloned()
        .collect();
    let (held, held_rs): (Vec<Point>, Vec<Resolved>) =
        resolve_rows(profile, models_dir, &held, file)?
            .into_iter()
            .unzip();
    let validation = point_errors(&held, &fit::errors(profile, &r.fitted, &held_rs));
    Ok(CalibrationReport {
        profile: profile.name.clone(),
        points_file: file.to_string(),
        params: r.params,
        before: r.before,
        after: r.after,
        points,
        repeated: Vec::new(),
        leave_one_source_out: r.leave_one_source_out,
        leave_one_model_out: r.leave_one_model_out,
        validation,
        iterations: r.iterations,
        sum_squared_log_error: r.sum_squared_log_error,
        not_fitted: r.not_fitted,
        notes: r.notes,
        fitted: r.fitted,
        profile_path: profile.path.clone(),
        points_path: PathBuf::new(),
    })
}

/// `profiler calibrate --device NAME [--points FILE]`: loads the profile from
/// `profiles_dir` and the points (default: the profile's own `calibration.points`), and
/// fits with [`calibrate_points`].
pub fn calibrate(
    profiles_dir: &Path,
    models_dir: &Path,
    profile_name: &str,
    points_path: Option<&Path>,
) -> Result<CalibrationReport> {
    let profile = profile::load(profiles_dir, profile_name)?;
    let path = match (points_path, &profile.calibration.points) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(p)) => p.clone(),
        (None, None) => bail!(SettingError::text(format!(
            "{}: field `calibration.points` is missing and no ",
            profile.path.display()
        ))
        .then(Setting::Points, " file was given")),
    };
    let pts = points::load(&path)?;
    let mut r = calibrate_points(&profile, models_dir, &pts, &path.display().to_string())?;
    r.points_path = path;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulation::load::{Arrivals, Lengths};

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn published() -> Vec<Point> {
        points::load(&root().join("profiles/calibration/published_gpu_trn2_points.csv")).unwrap()
    }

    #[test]
    fn a_source_is_the_document_its_cell_names() {
        assert_eq!(
            source_document("https://x.org/perf.md (page undated; SOURCES.md 3d, G2)"),
            "https://x.org/perf.md"
        );
        assert_eq!(source_document("  "), "(no source stated)");
        assert_eq!(serving_requests(1), 100);
        assert_eq!(serving_requests(25), 250);
    }

    /// A serving row is replayed as a closed loop at its concurrency, with its lengths and
    /// ten requests per client; the validation row stays out; a Neuron row without a
    /// compiled length gets input + output rounded up, and says so.
    #[test]
    fn serving_rows_are_replayed_at_their_concurrency() {
        let profiles = root().join("profiles");
        let h100 = profile::load(&profiles, "h100-profile").unwrap();
        let pts = published();
        let rs = resolve_points(&h100, &root().join("models"), &pts, "p.csv").unwrap();
        assert_eq!(rs.len(), 4, "G1-G3 and G6; G4 is validation only");
        assert!(rs.iter().all(|(p, _)| !p.validation_only()));
        let (p, r) = rs.iter().find(|(p, _)| p.concurrency == Some(25)).unwrap();
        let fit::Shape::Serving { dep, load } = &r.shape else {
            panic!("serving")
        };
        assert_eq!(load.arrivals, Arrivals::Closed { concurrency: 25 });
        assert_eq!(load.requests, Some(250));
        assert_eq!(
            load.lengths,
            Lengths::Spread {
                input: p.input_len,
                output: p.output_len,
                input_stddev: 0.0,
                output_stddev: 0.0
            }
        );
        assert_eq!(
            (dep.tp, dep.max_num_seqs),
            (2, fit::VLLM_DEFAULT_MAX_NUM_SEQS)
        );
        let trn2 = profile::load(&profiles, "trn2-profile").unwrap();
        let rs = resolve_points(&trn2, &root().join("models"), &pts, "p.csv").unwrap();
        assert_eq!(rs.len(), 3);
        let (_, r405) = rs
            .iter()
            .find(|(p, _)| p.model == "llama-3.1-405b")
            .unwrap();
        let fit::Shape::Serving { dep, .. } = &r405.shape else {
            panic!("serving")
        };
        assert_eq!((dep.tp, dep.max_num_seqs, dep.seq_len), (64, 1, 11_520));
        assert!(
            r405.assumed.iter().any(|a| a.contains("11520")),
            "{:?}",
            r405.assumed
        );
        let (_, r70) = rs.iter().find(|(p, _)| p.model == "llama-3.1-70b").unwrap();
        let fit::Shape::Serving { dep, .. } = &r70.shape else {
            panic!("serving")
        };
        assert_eq!(dep.seq_len, 12_800);
        assert!(r70.assumed.is_empty(), "{:?}", r70.assumed);
    }

    /// A file of static points is fitted exactly as the latency model's calibration does.
    #[test]
    fn static_points_fit_as_before() {
        let profiles = root().join("profiles");
        let p = profile::load(&profiles, "trn1-profile").unwrap();
        let file = root().join("profiles/calibration/neuron_published_points.csv");
        let pts = points::load(&file).unwrap();
        let cards = card::load_all(&root().join("models")).unwrap();
        let a = calibrate_points(&p, &root().join("models"), &pts, "f.csv").unwrap();
        let b = calibrate_profile(&p, &cards, &pts, "f.csv").unwrap();
        assert_eq!(a, b);
        assert!(a.notes.is_empty() && a.not_fitted.is_empty());
    }

    /// Re-fits every fitted profile on its shipped points (static files through the latency
    /// model, serving rows through the simulator) and fails if the shipped parameters or
    /// the recorded errors drift by more than 1% (relative).
    #[test]
    fn shipped_fitted_profiles_do_not_drift() {
        let profiles = root().join("profiles");
        let mut checked = 0;
        for p in profile::load_all(&profiles).unwrap() {
            if p.calibration.status != profile::CalibrationStatus::Fitted {
                continue;
            }
            let r = calibrate(&profiles, &root().join("models"), &p.name, None).unwrap();
            for f in &r.params {
                // 1% relative, or 1e-4 absolute for a term the fit drives to zero.
                let tol = (0.01 * f.before.abs()).max(1e-4);
                assert!(
                    (f.after - f.before).abs() <= tol,
                    "{}: {} shipped {} refit {}",
                    p.name,
                    f.name,
                    f.before,
                    f.after
                );
            }
            let shipped = p.calibration.error.unwrap();
            assert!(
                (shipped.ttft - r.after.ttft).abs() < 0.01 * shipped.ttft.max(0.01),
                "{}",
                p.name
            );
            assert!(
                (shipped.tpot - r.after.tpot).abs() < 0.01 * shipped.tpot.max(0.01),
                "{}",
                p.name
            );
            assert_eq!(shipped.points, r.after.points);
            // The recorded held-out errors are those of the shipped points.
            for (rec, now) in [
                (&p.calibration.leave_one_source_out, &r.leave_one_source_out),
                (&p.calibration.leave_one_model_out, &r.leave_one_model_out),
            ] {
                let rec = rec
                    .as_ref()
                    .expect("fitted profile records its held-out errors");
                assert_eq!(rec.groups, now.groups, "{}", p.name);
                match (rec.error, now.error) {
                    (Some(a), Some(b)) => {
                        assert!(
                            (a.ttft - b.ttft).abs() < 0.01 * a.ttft.max(0.01),
                            "{}",
                            p.name
                        );
                        assert!(
                            (a.tpot - b.tpot).abs() < 0.01 * a.tpot.max(0.01),
                            "{}",
                            p.name
                        );
                        assert_eq!(a.points, b.points);
                    }
                    (None, None) => {}
                    other => panic!("{}: recorded {other:?}", p.name),
                }
            }
            // Validation rows are projected, never fitted on: G4 on h100, T7 on trn2.
            let validated: Vec<&str> = r.validation.iter().map(|v| v.model.as_str()).collect();
            match p.name.as_str() {
                "h100-profile" => assert_eq!(validated, ["llama-3.1-70b"]),
                "trn2-profile" => assert_eq!(validated, ["gpt-oss-120b"]),
                _ => assert!(validated.is_empty(), "{}: {validated:?}", p.name),
            }
            for v in &r.validation {
                assert!(r.points.iter().all(|q| q.line != v.line));
                let err = v.projected_ttft_ms / v.measured_ttft_ms - 1.0;
                assert!((err - v.ttft_error).abs() < 1e-9, "{}", p.name);
            }
            checked += 1;
        }
        assert!(
            checked >= 4,
            "expected inf2, trn1, h100 and trn2 to be fitted"
        );
    }
}
