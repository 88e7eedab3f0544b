//! Calibration: fits a profile's latency parameters to measured points by least squares on
//! the log error (`ln(projected / measured)` for TTFT and TPOT of every point, equal
//! weights), reports each point's error and the MAPE of TTFT and TPOT separately, and
//! writes the fitted values back into the profile text, keeping the rest of the file.
//!
//! Efficiencies are fitted through a logistic map (kept in (0, 1)) and latencies through a
//! square (kept ≥ 0, and able to reach 0 when the data do not support the term). The fit always starts from [`START`], not from the shipped values, so
//! re-fitting reproduces the shipped parameters only if the data and the model agree.

use super::latency::{estimate, Target};
use super::lsq::levenberg_marquardt_h;
use super::params::{LatencyParams, PARAM_NAMES};
use super::points::Point;
use super::profile::Profile;
use super::setting::{Setting, SettingError};
use super::types::{CalibrationError, HeldOut};
use crate::model::card::ModelCard;
use anyhow::{bail, Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Fixed starting point of every fit (physically plausible middles, not fitted values).
pub const START: LatencyParams = LatencyParams {
    bandwidth_efficiency: 0.5,
    compute_efficiency: 0.5,
    attention_efficiency: 0.1,
    step_overhead_ms: 2.0,
    prefill_overhead_ms: 10.0,
    collective_latency_us: 10.0,
    decode_seq_ms: 0.1,
};

/// One point: measured, projected and the signed relative error (projected/measured − 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PointError {
    pub line: usize,
    pub model: String,
    pub instance: String,
    pub tp: u32,
    pub batch: u32,
    pub input_len: u32,
    pub output_len: u32,
    pub measured_ttft_ms: f64,
    pub projected_ttft_ms: f64,
    pub ttft_error: f64,
    pub measured_tpot_ms: f64,
    pub projected_tpot_ms: f64,
    pub tpot_error: f64,
}

impl PointError {
    /// The errors at calibration point `p` of the projected TTFT and TPOT against the
    /// measured ones (`projected / measured − 1`).
    pub fn at(p: &Point, measured: (f64, f64), projected: (f64, f64)) -> Self {
        PointError {
            line: p.line,
            model: p.model.clone(),
            instance: p.instance.clone(),
            tp: p.tp,
            batch: p.batch,
            input_len: p.input_len,
            output_len: p.output_len,
            measured_ttft_ms: measured.0,
            projected_ttft_ms: projected.0,
            ttft_error: projected.0 / measured.0 - 1.0,
            measured_tpot_ms: measured.1,
            projected_tpot_ms: projected.1,
            tpot_error: projected.1 / measured.1 - 1.0,
        }
    }
}

/// A fitted parameter before and after the fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FittedParam {
    pub name: String,
    pub before: f64,
    pub after: f64,
}

/// Result of `profiler calibrate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CalibrationReport {
    pub profile: String,
    pub points_file: String,
    pub params: Vec<FittedParam>,
    /// Error of the profile's parameters as loaded.
    pub before: CalibrationError,
    /// Error after the fit.
    pub after: CalibrationError,
    pub points: Vec<PointError>,
    /// Points left out because they repeat an earlier line's run exactly (the Neuron
    /// benchmark pages publish some batch-1 runs in both their latency and throughput
    /// tables): `(line, line it repeats)`. Counting them twice would weight those runs
    /// double in the fit and in the calibration error.
    pub repeated: Vec<(usize, usize)>,
    /// Leave-one-source-out error: every point projected by a fit on the other sources'
    /// points only (a source is the `source` column: one published table or result
    /// file), which says how far a fit carries to measurements it has not seen; `error`
    /// is `None`, with the reason, where the points have a single source.
    pub leave_one_source_out: HeldOut,
    /// Leave-one-model-out error: every point projected by a fit on the other models'
    /// points only, which says how well the profile extrapolates to a model it has not
    /// seen; `error` is `None`, with the reason, where the points have a single model.
    pub leave_one_model_out: HeldOut,
    /// Rows kept out of the fit (`use` starting with `validation`), projected with the
    /// fitted parameters: an error on measurements the fit has not seen. Serving rows only.
    #[serde(default)]
    pub validation: Vec<PointError>,
    /// Levenberg–Marquardt iterations and the final sum of squared log errors.
    pub iterations: usize,
    pub sum_squared_log_error: f64,
    /// Parameters the points cannot tell apart, kept at the profile's values, and why
    /// (where the fit chose its own parameters).
    #[serde(default)]
    pub not_fitted: Vec<String>,
    /// Settings a point does not state, taken from documented defaults, in words.
    #[serde(default)]
    pub notes: Vec<String>,
    /// The fitted parameter set (fitted names changed, the others as loaded).
    #[serde(skip, default = "start")]
    pub fitted: LatencyParams,
    /// File the profile was read from, for `--write`.
    #[serde(skip)]
    pub profile_path: PathBuf,
    /// The points file fitted on, for `--write` (empty when the points came from memory).
    #[serde(skip)]
    pub points_path: PathBuf,
}

/// [`START`], for a report read back from JSON (which does not carry the parameter set).
fn start() -> LatencyParams {
    START
}

/// What `profiler calibrate --format json` writes (schema version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CalibrationOutput {
    pub schema_version: u32,
    pub calibration: CalibrationReport,
}

/// `(line, earlier line it repeats)` for points left out as repeats.
type Repeats = Vec<(usize, usize)>;

/// A point with its model card resolved, and the sources that published its run (more
/// than one where the same run is repeated in another source).
#[derive(Clone)]
struct Case<'a> {
    point: &'a Point,
    card: &'a ModelCard,
    sources: Vec<&'a str>,
}

/// The group a point's `source` puts it in (an empty source is one group of its own).
fn source_key(p: &Point) -> &str {
    if p.source.trim().is_empty() {
        "(no source stated)"
    } else {
        p.source.trim()
    }
}

fn find_card<'a>(cards: &'a [ModelCard], name: &str) -> Option<&'a ModelCard> {
    let n = name.to_ascii_lowercase();
    cards.iter().find(|c| {
        c.name.eq_ignore_ascii_case(&n) || c.aliases.iter().any(|a| a.eq_ignore_ascii_case(&n))
    })
}

fn target(p: &Point) -> Target {
    let mut t = Target::new(p.tp, p.batch, p.input_len, p.output_len, p.weights_dtype);
    t.compiled_seq_len = p.compiled_seq_len;
    t
}

/// Errors of `params` on every case.
fn errors(profile: &Profile, params: &LatencyParams, cases: &[Case]) -> Vec<PointError> {
    cases
        .iter()
        .map(|c| {
            let p = c.point;
            let e = estimate(&c.card.architecture, profile, params, &target(p));
            PointError::at(p, (p.ttft_ms, p.tpot_ms), (e.ttft_ms, e.tpot_ms))
        })
        .collect()
}

/// Errors of `profile`'s own parameters on the points that ran on one of its instances
/// (for checks on points outside the fit).
pub fn evaluate(
    profile: &Profile,
    cards: &[ModelCard],
    all_points: &[Point],
) -> Result<Vec<PointError>> {
    let (cases, _) = cases(profile, cards, all_points, "points")?;
    Ok(errors(profile, &profile.latency, &cases))
}

/// Mean absolute percentage errors (as fractions) of TTFT and TPOT.
pub fn mape(errors: &[PointError]) -> CalibrationError {
    let n = errors.len().max(1) as f64;
    CalibrationError {
        ttft: errors.iter().map(|e| e.ttft_error.abs()).sum::<f64>() / n,
        tpot: errors.iter().map(|e| e.tpot_error.abs()).sum::<f64>() / n,
        points: errors.len() as u32,
    }
}

/// A parameter's value in the fit's unconstrained coordinates (logit of an efficiency,
/// square root of a latency).
pub fn to_free(name: &str, v: f64) -> f64 {
    if LatencyParams::is_efficiency(name) {
        let e = v.clamp(1e-6, 1.0 - 1e-9);
        (e / (1.0 - e)).ln()
    } else {
        v.max(0.0).sqrt()
    }
}

/// The inverse of [`to_free`].
pub fn from_free(name: &str, x: f64) -> f64 {
    if LatencyParams::is_efficiency(name) {
        1.0 / (1.0 + (-x).exp())
    } else {
        x * x
    }
}

/// Fits the parameters `names` of `base` by Levenberg–Marquardt on the log errors
/// `residuals(params)`, each started at [`START`] and kept in its range by [`to_free`] (the
/// others stay `base`'s), at most `max_iter` iterations with forward differences of
/// `rel_h`; the fitted set and the fit.
pub fn fit_free(
    base: &LatencyParams,
    names: &[String],
    max_iter: usize,
    rel_h: f64,
    residuals: impl Fn(&LatencyParams) -> Vec<f64>,
) -> (LatencyParams, crate::projection::lsq::Fit) {
    let mut start = *base;
    for n in names {
        start.set(n, START.get(n).unwrap_or(1.0));
    }
    let params_of = |x: &[f64]| {
        let mut p = start;
        for (n, v) in names.iter().zip(x) {
            p.set(n, from_free(n, *v));
        }
        p
    };
    let x0: Vec<f64> = names
        .iter()
        .map(|n| to_free(n, start.get(n).unwrap_or(1.0)))
        .collect();
    let fit = levenberg_marquardt_h(|x| residuals(&params_of(x)), &x0, max_iter, rel_h);
    (params_of(&fit.x), fit)
}

/// Fits `profile`'s fitted parameters (or every parameter when it lists none) on the points
/// that ran on one of its instances; `cards` resolve the points' model names.
pub fn calibrate_profile(
    profile: &Profile,
    cards: &[ModelCard],
    all_points: &[Point],
    points_file: &str,
) -> Result<CalibrationReport> {
    let (cases, repeated) = cases(profile, cards, all_points, points_file)?;
    let mut report = fit_cases(profile, &cases, points_file)?;
    report.repeated = repeated;
    let fit = |keep: &[Case]| fit_cases(profile, keep, points_file).map(|r| r.fitted);
    let errs = |p: &LatencyParams, out: &[Case]| errors(profile, p, out);
    report.leave_one_source_out = leave_one_group_out(
        &cases,
        |c| c.sources.iter().map(|s| s.to_string()).collect(),
        "source",
        fit,
        errs,
    );
    report.leave_one_model_out =
        leave_one_group_out(&cases, |c| vec![c.card.name.clone()], "model", fit, errs);
    Ok(report)
}

/// Leave-one-group-out: for each group (a source, a model), fits on the items outside it
/// and projects the items in it with that fit; the MAPE over every projection so made. An
/// item in two groups (a run published in two sources) is held out with each of them, so
/// it counts once per group. With a single group, or where the items left after holding
/// one out cannot be fitted, there is no error, and the reason says why.
fn leave_one_group_out<T: Clone, P>(
    items: &[T],
    groups_of: impl Fn(&T) -> Vec<String>,
    what: &str,
    fit: impl Fn(&[T]) -> Result<P>,
    errors_of: impl Fn(&P, &[T]) -> Vec<PointError>,
) -> HeldOut {
    leave_one_group_out_by(items, groups_of, what, fit, errors_of, mape)
}

/// [`leave_one_group_out`] for any kind of per-item error, summarised by `summary`.
pub fn leave_one_group_out_by<T: Clone, P, E>(
    items: &[T],
    groups_of: impl Fn(&T) -> Vec<String>,
    what: &str,
    fit: impl Fn(&[T]) -> Result<P>,
    errors_of: impl Fn(&P, &[T]) -> Vec<E>,
    summary: impl Fn(&[E]) -> CalibrationError,
) -> HeldOut {
    let mut groups: Vec<String> = items.iter().flat_map(&groups_of).collect();
    groups.sort_unstable();
    groups.dedup();
    let n = groups.len() as u32;
    if groups.len() < 2 {
        return HeldOut::none(
            n,
            format!(
                "all {} point(s) come from one {what} ({}): there is no other {what} to fit on",
                items.len(),
                groups.first().map_or("none", |g| g.as_str())
            ),
        );
    }
    let mut all = Vec::with_capacity(items.len());
    for g in &groups {
        let (out, keep): (Vec<T>, Vec<T>) = items
            .iter()
            .cloned()
            .partition(|i| groups_of(i).contains(g));
        match fit(&keep) {
            Ok(p) => all.extend(errors_of(&p, &out)),
            Err(e) => {
                return HeldOut::none(
                    n,
                    format!("without {what} {g:?} the rest cannot be fitted: {e:#}"),
                )
            }
        }
    }
    HeldOut {
        error: Some(summary(&all)),
        groups: n,
        reason: None,
    }
}

/// The points on `profile`'s instances, with their model cards.
/// Two points describe the same run: same model, instance, shape and dtype, and the same
/// published TTFT and TPOT.
fn same_run(a: &Point, b: &Point) -> bool {
    a.model.eq_ignore_ascii_case(&b.model)
        && a.instance.eq_ignore_ascii_case(&b.instance)
        && (a.tp, a.batch, a.input_len, a.output_len, a.compiled_seq_len)
            == (b.tp, b.batch, b.input_len, b.output_len, b.compiled_seq_len)
        && a.weights_dtype == b.weights_dtype
        && a.ttft_ms == b.ttft_ms
        && a.tpot_ms == b.tpot_ms
}

/// The points on `profile`'s instances, with their model cards, each run once, and the
/// lines left out as repeats.
fn cases<'a>(
    profile: &Profile,
    cards: &'a [ModelCard],
    all_points: &'a [Point],
    points_file: &str,
) -> Result<(Vec<Case<'a>>, Repeats)> {
    let mut cases: Vec<Case<'a>> = Vec::new();
    let mut repeated = Vec::new();
    for p in all_points {
        let Ok(inst) = profile.instance(&p.instance) else {
            continue;
        };
        if p.validation_only() {
            continue;
        }
        if let Some(c) = p.concurrency {
            bail!(
                "{points_file}: line {}: a serving run at concurrency {c} is replayed through the serving simulator, not projected as a static batch (fit it with `profiler calibrate --device {}`)",
                p.line,
                profile.name
            );
        }
        if !profile.runtime.tp_degrees.contains(&p.tp) || p.tp > profile.units(inst) {
            bail!(
                "{points_file}: line {}: TP {} on {} is not a degree {} allows there (TP degrees {:?}, {} {}s per instance)",
                p.line,
                p.tp,
                p.instance,
                profile.name,
                profile.runtime.tp_degrees,
                profile.units(inst),
                profile.runtime.tp_unit
            );
        }
        let card = find_card(cards, &p.model).with_context(|| {
            format!(
                "{points_file}: line {}: model {:?} has no model card (known: {})",
                p.line,
                p.model,
                cards
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        if let Some(first) = cases.iter_mut().find(|c| same_run(c.point, p)) {
            repeated.push((p.line, first.point.line));
            if !first.sources.contains(&source_key(p)) {
                first.sources.push(source_key(p));
            }
            continue;
        }
        cases.push(Case {
            point: p,
            card,
            sources: vec![source_key(p)],
        });
    }
    if cases.is_empty() {
        bail!(
            "{points_file}: no point ran on an instance of {} ({})",
            profile.name,
            profile
                .instances
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok((cases, repeated))
}

fn fit_cases(profile: &Profile, cases: &[Case], points_file: &str) -> Result<CalibrationReport> {
    let names: Vec<String> = if profile.calibration.fitted.is_empty() {
        PARAM_NAMES.iter().map(|s| s.to_string()).collect()
    } else {
        profile.calibration.fitted.clone()
    };
    if cases.len() < names.len() {
        bail!(
            "{points_file}: {} distinct run(s) on {}'s instances cannot determine its {} fitted parameters",
            cases.len(),
            profile.name,
            names.len()
        );
    }
    let (fitted, fit) = fit_free(&profile.latency, &names, 500, 1e-6, |p| {
        let mut r = Vec::with_capacity(cases.len() * 2);
        for c in cases {
            let e = estimate(&c.card.architecture, profile, p, &target(c.point));
            r.push((e.ttft_ms / c.point.ttft_ms).ln());
            r.push((e.tpot_ms / c.point.tpot_ms).ln());
        }
        r
    });
    let before = mape(&errors(profile, &profile.latency, cases));
    let after_points = errors(profile, &fitted, cases);
    Ok(CalibrationReport {
        profile: profile.name.clone(),
        points_file: points_file.to_string(),
        params: names
            .iter()
            .map(|n| FittedParam {
                name: n.clone(),
                before: profile.latency.get(n).unwrap_or(f64::NAN),
                after: fitted.get(n).unwrap_or(f64::NAN),
            })
            .collect(),
        before,
        after: mape(&after_points),
        points: after_points,
        repeated: Vec::new(),
        leave_one_source_out: HeldOut::none(0, "not computed"),
        leave_one_model_out: HeldOut::none(0, "not computed"),
        validation: Vec::new(),
        iterations: fit.iterations,
        sum_squared_log_error: fit.cost,
        not_fitted: Vec::new(),
        notes: Vec::new(),
        fitted,
        profile_path: profile.path.clone(),
        points_path: PathBuf::new(),
    })
}

/// Rounds to 4 significant digits for writing; below 1e-6 is written as 0.
pub fn round_sig(v: f64) -> f64 {
    if v.abs() < 1e-6 || !v.is_finite() {
        return if v.is_finite() { 0.0 } else { v };
    }
    let d = 3 - v.abs().log10().floor() as i32;
    let f = 10f64.powi(d);
    (v * f).round() / f
}

/// TOML text of a number: an integer for counts, otherwise a float with a decimal point.
fn format_number(v: f64, integer: bool) -> String {
    if integer {
        format!("{}", v.round() as i64)
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Replaces the number after `key = ` on the first line that starts with `key` inside
/// `[section]`; for `{ value = … }` pairs the number after `value = `.
fn replace_in_section(text: &str, section: &str, key: &str, v: f64) -> Result<String> {
    let mut out = String::with_capacity(text.len() + 16);
    let mut current = String::new();
    let mut done = false;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('[') {
            current = t.trim_end().to_string();
        }
        let is_key = t
            .strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with('='));
        if !done && current == format!("[{section}]") && is_key {
            let anchor = if line.contains("value") { "value" } else { key };
            let start = line.find(anchor).map(|i| i + anchor.len()).unwrap_or(0);
            let eq = line[start..].find('=').map(|i| start + i + 1);
            if let Some(eq) = eq {
                let rest = &line[eq..];
                let num_start = rest.len() - rest.trim_start().len();
                let num_len = rest[num_start..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
                    .unwrap_or(rest.len() - num_start);
                out.push_str(&line[..eq]);
                out.push_str(&rest[..num_start]);
                out.push_str(&format_number(round_sig(v), line.contains("point_count")));
                out.push_str(&rest[num_start + num_len..]);
                done = true;
                continue;
            }
        }
        out.push_str(line);
    }
    if !done {
        bail!("profile text has no `{key}` in [{section}] to update");
    }
    Ok(out)
}

/// The `[calibration]` line of a held-out error: `key = { ttft_mape, tpot_mape,
/// point_count, groups }`, or `key = { groups, reason = "…" }` where it could not be
/// computed.
fn held_out_line(key: &str, h: &HeldOut) -> String {
    match (&h.error, &h.reason) {
        (Some(e), _) => format!(
            "{key} = {{ ttft_mape = {}, tpot_mape = {}, point_count = {}, groups = {} }}\n",
            format_number(round_sig(e.ttft), false),
            format_number(round_sig(e.tpot), false),
            e.points,
            h.groups
        ),
        (None, reason) => format!(
            "{key} = {{ groups = {}, reason = {} }}\n",
            h.groups,
            toml::Value::String(reason.clone().unwrap_or_else(|| "not computed".into()))
        ),
    }
}

/// Replaces the line that sets `key` inside `[section]` with `line`, or, where there is
/// none, inserts it after the line that sets `after` there.
fn set_line_in_section(
    text: &str,
    section: &str,
    key: &str,
    after: &str,
    line: &str,
) -> Result<String> {
    let sets = |l: &str, k: &str| {
        l.trim_start()
            .strip_prefix(k)
            .is_some_and(|r| r.trim_start().starts_with('='))
    };
    let header = format!("[{section}]");
    let mut current = String::new();
    let (mut at_key, mut at_after) = (None, None);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        if t.starts_with('[') {
            current = t.trim_end().to_string();
        }
        if current == header && at_key.is_none() && sets(l, key) {
            at_key = Some(i);
        }
        if current == header && at_after.is_none() && sets(l, after) {
            at_after = Some(i);
        }
    }
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    match (at_key, at_after) {
        (Some(i), _) => out[i] = line.to_string(),
        (None, Some(i)) => {
            if !out[i].ends_with('\n') {
                out[i].push('\n');
            }
            out.insert(i + 1, line.to_string())
        }
        (None, None) => {
            bail!("profile text has no `{after}` in [{section}] to write `{key}` after")
        }
    }
    Ok(out.concat())
}

/// Writes the report's fitted parameters and errors (fit, leave-one-source-out,
/// leave-one-model-out) into the profile text, keeping every other line (comments
/// included) as it was.
pub fn write_back(text: &str, report: &CalibrationReport) -> Result<String> {
    let mut t = text.to_string();
    for p in &report.params {
        t = replace_in_section(&t, "latency", &p.name, p.after)?;
    }
    t = replace_in_section(&t, "calibration", "ttft_mape", report.after.ttft)?;
    t = replace_in_section(&t, "calibration", "tpot_mape", report.after.tpot)?;
    t = replace_in_section(&t, "calibration", "point_count", report.after.points as f64)?;
    t = set_line_in_section(
        &t,
        "calibration",
        "leave_one_source_out",
        "point_count",
        &held_out_line("leave_one_source_out", &report.leave_one_source_out),
    )?;
    t = set_line_in_section(
        &t,
        "calibration",
        "leave_one_model_out",
        "leave_one_source_out",
        &held_out_line("leave_one_model_out", &report.leave_one_model_out),
    )?;
    Ok(t)
}

/// `--write`: updates the profile file (`report.profile_path` for the profile that was
/// fitted) in place, after checking that the new text still loads.
pub fn write_profile(profile_path: &Path, report: &CalibrationReport) -> Result<()> {
    let text = std::fs::read_to_string(profile_path)
        .with_context(|| format!("cannot read profile {}", profile_path.display()))?;
    // The profile says which points its numbers were fitted on (its note, sources and the
    // coverage notes of projections follow from them): a fit on other points would be
    // recorded under the wrong provenance.
    let own = Profile::parse(&text, profile_path)?.calibration.points;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    match own {
        Some(own) if same(&own, &report.points_path) => {}
        own => bail!(SettingError::new(
            Setting::Write,
            format!(
                ": the fit used {}, but {} names {} as its calibration points; point `calibration.points` (and its note and sources) at the new file first",
                report.points_path.display(),
                profile_path.display(),
                own.map_or("none".to_string(), |p| p.display().to_string())
            )
        )),
    }
    let new = write_back(&text, report)?;
    Profile::parse(&new, profile_path)?;
    std::fs::write(profile_path, new)
        .with_context(|| format!("cannot write profile {}", profile_path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::card;
    use crate::projection::{points, profile};

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn write_back_replaces_only_the_numbers() {
        let text =
            "[latency]\n# keep me\nstep_overhead_ms = { value = 3.0, source = \"fit\" } # and me\n\
                    [calibration]\nttft_mape = 0.5\n";
        let t = replace_in_section(text, "latency", "step_overhead_ms", 2.345678).unwrap();
        assert_eq!(
            t,
            "[latency]\n# keep me\nstep_overhead_ms = { value = 2.346, source = \"fit\" } # and me\n\
             [calibration]\nttft_mape = 0.5\n"
        );
        let t = replace_in_section(&t, "calibration", "ttft_mape", 0.1234).unwrap();
        assert!(t.ends_with("ttft_mape = 0.1234\n"), "{t}");
        assert!(replace_in_section(&t, "latency", "ttft_mape", 1.0).is_err());
    }

    #[test]
    fn rounding_keeps_four_digits() {
        assert_eq!(round_sig(0.0123456), 0.01235);
        assert_eq!(round_sig(1234.56), 1235.0);
        assert_eq!(round_sig(29.0), 29.0);
        assert_eq!(round_sig(3e-9), 0.0);
        assert_eq!(format_number(29.0, false), "29.0");
        assert_eq!(format_number(24.0, true), "24");
    }

    #[test]
    fn write_profile_keeps_the_file_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let shipped = std::fs::read_to_string(root().join("profiles/inf2-profile.toml")).unwrap();
        let text: String = shipped
            .lines()
            .map(|l| {
                if l.starts_with("step_overhead_ms") {
                    "step_overhead_ms = { value = 9.0, source = \"fit\" }".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
        let path = dir.path().join("inf2-profile.toml");
        std::fs::write(&path, &text).unwrap();
        // Without its points file the profile loads but knows nothing of their coverage.
        assert!(Profile::load(&path).unwrap().calibration.runs.is_none());
        std::fs::create_dir(dir.path().join("calibration")).unwrap();
        std::fs::copy(
            root().join("profiles/calibration/neuron_published_points.csv"),
            dir.path().join("calibration/neuron_published_points.csv"),
        )
        .unwrap();
        let p = Profile::load(&path).unwrap();
        assert!(p.calibration.runs.as_ref().is_some_and(|r| !r.is_empty()));
        assert_eq!(p.latency.step_overhead_ms, 9.0);
        let pts =
            points::load(&root().join("profiles/calibration/neuron_published_points.csv")).unwrap();
        let cards = card::load_all(&root().join("models")).unwrap();
        let r = calibrate_profile(&p, &cards, &pts, "points.csv").unwrap();
        assert_eq!(
            r.params
                .iter()
                .find(|x| x.name == "step_overhead_ms")
                .unwrap()
                .before,
            9.0
        );
        // Fitted on points other than the profile's own: not written.
        let mut r = r;
        r.points_path = root().join("profiles/calibration/neuron_published_points.csv");
        let e = format!("{:#}", write_profile(&r.profile_path, &r).unwrap_err());
        assert!(
            e.contains("names") && e.contains("as its calibration points"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        r.points_path = dir.path().join("calibration/neuron_published_points.csv");
        write_profile(&r.profile_path, &r).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(new.lines().count(), text.lines().count());
        assert!(new.starts_with("# AWS Inferentia2"));
        let q = Profile::load(&path).unwrap();
        assert!((q.latency.step_overhead_ms - r.fitted.step_overhead_ms).abs() < 0.01);
        // A step overhead of 9 ms spoils every TPOT; the fit repairs it.
        assert!(r.after.tpot < r.before.tpot, "{:?} {:?}", r.after, r.before);
    }

    #[test]
    fn a_repeated_run_counts_once() {
        let profiles = root().join("profiles");
        let p = profile::load(&profiles, "inf2-profile").unwrap();
        let cards = card::load_all(&root().join("models")).unwrap();
        let file = root().join("profiles/calibration/neuron_published_points.csv");
        let pts = points::load(&file).unwrap();
        let base = calibrate_profile(&p, &cards, &pts, "points").unwrap();
        // The shipped file publishes twelve inf2 batch-1 runs twice (latency and throughput
        // tables); every repeat names an earlier line with the same numbers.
        assert_eq!(base.repeated.len(), 12, "{:?}", base.repeated);
        for &(line, first) in &base.repeated {
            assert!(first < line);
            let a = pts.iter().find(|q| q.line == line).unwrap();
            let b = pts.iter().find(|q| q.line == first).unwrap();
            assert_eq!((a.ttft_ms, a.tpot_ms), (b.ttft_ms, b.tpot_ms));
        }
        assert_eq!(base.after.points as usize, base.points.len());
        // One more copy of a run changes nothing but the list of repeats.
        let mut more = pts.clone();
        let mut copy = pts
            .iter()
            .find(|q| q.instance == "inf2.48xlarge")
            .unwrap()
            .clone();
        let first = copy.line;
        copy.line = 10_000;
        more.push(copy);
        let again = calibrate_profile(&p, &cards, &more, "points").unwrap();
        assert_eq!(again.after, base.after);
        assert_eq!(again.params, base.params);
        assert_eq!(again.repeated.last(), Some(&(10_000, first)));
        // Leave-one-model-out projects every point once, from a fit without its model.
        let h = base.leave_one_model_out.error.unwrap();
        assert_eq!(h.points, base.after.points);
        assert!(h.ttft.is_finite() && h.tpot.is_finite());
        // Leave-one-source-out: the latency and the throughput tables; the twelve runs
        // published in both are held out with each, so they are projected twice.
        let s = base.leave_one_source_out.error.unwrap();
        assert_eq!(base.leave_one_source_out.groups, 2);
        assert_eq!(s.points, base.after.points + 12);
        let one: Vec<Point> = pts
            .iter()
            .filter(|q| q.model == "Llama-2-70b")
            .cloned()
            .collect();
        // Six distinct runs: fit six parameters.
        let mut six = p.clone();
        six.calibration.fitted.retain(|n| n != "decode_seq_ms");
        let single = calibrate_profile(&six, &cards, &one, "points").unwrap();
        assert!(single.leave_one_model_out.error.is_none());
        let why = single.leave_one_model_out.reason.unwrap();
        assert!(why.contains("one model (llama-2-70b)"), "{why}");
        // A run with a different measurement is a new point.
        let mut other = pts.clone();
        let mut changed = pts
            .iter()
            .find(|q| q.instance == "inf2.48xlarge")
            .unwrap()
            .clone();
        changed.line = 10_001;
        changed.tpot_ms *= 1.5;
        other.push(changed);
        let r = calibrate_profile(&p, &cards, &other, "points").unwrap();
        assert_eq!(r.after.points, base.after.points + 1);
    }

    #[test]
    fn points_the_profile_cannot_run_or_too_few_are_refused() {
        let profiles = root().join("profiles");
        let p = profile::load(&profiles, "inf2-profile").unwrap();
        let cards = card::load_all(&root().join("models")).unwrap();
        let file = root().join("profiles/calibration/neuron_published_points.csv");
        let pts = points::load(&file).unwrap();
        let first = pts
            .iter()
            .find(|q| q.instance == "inf2.48xlarge")
            .unwrap()
            .clone();
        let mut odd = pts.clone();
        let mut bad = first.clone();
        bad.tp = 7;
        bad.line = 10_000;
        odd.push(bad);
        let e = format!(
            "{:#}",
            calibrate_profile(&p, &cards, &odd, "p.csv").unwrap_err()
        );
        assert!(
            e.contains("p.csv: line 10000: TP 7 on inf2.48xlarge"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            calibrate_profile(&p, &cards, &[first], "p.csv").unwrap_err()
        );
        assert!(
            e.contains("1 distinct run(s)") && e.contains("7 fitted parameters"),
            "{e}"
        );
    }

    /// A signed-error record for the hand-checked cases below.
    fn err_of(measured: f64, projected: f64) -> PointError {
        PointError {
            line: 0,
            model: String::new(),
            instance: String::new(),
            tp: 1,
            batch: 1,
            input_len: 1,
            output_len: 1,
            measured_ttft_ms: measured,
            projected_ttft_ms: projected,
            ttft_error: projected / measured - 1.0,
            measured_tpot_ms: measured,
            projected_tpot_ms: projected,
            tpot_error: projected / measured - 1.0,
        }
    }

    /// By hand, with a "model" that predicts the mean of the points it was fitted on:
    /// source A has points 10 and 10, source B has 20. Without A the fit is 20, so A's
    /// points are projected +100% each; without B it is 10, so B's is −50%. MAPE =
    /// (1 + 1 + 0.5) / 3 = 0.8333…; one source alone cannot be held out.
    #[test]
    fn leave_one_source_out_by_hand() {
        let items = [("A", 10.0), ("A", 10.0), ("B", 20.0)];
        let fit = |keep: &[(&str, f64)]| -> Result<f64> {
            if keep.is_empty() {
                bail!("no points");
            }
            Ok(keep.iter().map(|k| k.1).sum::<f64>() / keep.len() as f64)
        };
        let errs = |m: &f64, out: &[(&str, f64)]| out.iter().map(|o| err_of(o.1, *m)).collect();
        let h = leave_one_group_out(&items, |i| vec![i.0.to_string()], "source", fit, errs);
        let e = h.error.unwrap();
        assert_eq!((h.groups, e.points), (2, 3));
        assert!((e.ttft - 2.5 / 3.0).abs() < 1e-12, "{}", e.ttft);
        assert!((e.tpot - 2.5 / 3.0).abs() < 1e-12);
        let one = leave_one_group_out(&items[..2], |i| vec![i.0.to_string()], "source", fit, errs);
        assert!(one.error.is_none());
        assert_eq!(
            one.reason.unwrap(),
            "all 2 point(s) come from one source (A): there is no other source to fit on"
        );
        // A point published in both sources is held out with each: A = {10, 10 (also B)},
        // B = {20}. Without A: fit on 20, A's two points +100%. Without B: fit on the
        // point that is only in A (10), B's points 10 → 0% and 20 → −50%.
        let groups = |i: &(&str, f64)| match i.0 {
            "AB" => vec!["A".to_string(), "B".to_string()],
            g => vec![g.to_string()],
        };
        let shared = [("A", 10.0), ("AB", 10.0), ("B", 20.0)];
        let e = leave_one_group_out(&shared, groups, "source", fit, errs)
            .error
            .unwrap();
        assert_eq!(e.points, 4);
        assert!((e.ttft - 2.5 / 4.0).abs() < 1e-12, "{}", e.ttft);
        // Holding out a source that leaves nothing to fit on says so.
        let only_shared = [("AB", 10.0), ("B", 20.0)];
        let h = leave_one_group_out(&only_shared, groups, "source", fit, errs);
        assert!(h.error.is_none());
        assert!(h
            .reason
            .unwrap()
            .contains("without source \"B\" the rest cannot be fitted: no points"));
    }

    /// Points the latency model produces exactly from known parameters, split over two
    /// sources (batch 1; batch 4 and 8), are recovered from either source alone:
    /// leave-one-source-out error ≈ 0. The per-sequence decode cost stays out of the fit
    /// here: batch-1 points alone cannot tell it from the fixed step cost.
    #[test]
    fn leave_one_source_out_recovers_known_parameters() {
        let profiles = root().join("profiles");
        let mut p = profile::load(&profiles, "inf2-profile").unwrap();
        p.calibration.fitted.retain(|n| n != "decode_seq_ms");
        let cards = card::load_all(&root().join("models")).unwrap();
        let file = root().join("profiles/calibration/neuron_published_points.csv");
        let mut pts: Vec<Point> = points::load(&file)
            .unwrap()
            .into_iter()
            .filter(|q| q.instance == "inf2.48xlarge")
            .collect();
        for q in pts.iter_mut() {
            let card = find_card(&cards, &q.model).unwrap();
            let e = estimate(&card.architecture, &p, &p.latency, &target(q));
            q.ttft_ms = e.ttft_ms;
            q.tpot_ms = e.tpot_ms;
            q.source = if q.batch == 1 {
                "A (2025-01-01)"
            } else {
                "B (2025-01-01)"
            }
            .into();
        }
        let r = calibrate_profile(&p, &cards, &pts, "synthetic").unwrap();
        let s = r.leave_one_source_out.error.unwrap();
        assert_eq!(r.leave_one_source_out.groups, 2);
        assert_eq!(s.points as usize, r.points.len());
        assert!(s.ttft < 1e-3 && s.tpot < 1e-3, "{s:?}");
        assert!(r.after.ttft < 1e-3 && r.after.tpot < 1e-3, "{:?}", r.after);
    }

    #[test]
    fn held_out_errors_are_written_and_read_back() {
        let shipped = std::fs::read_to_string(root().join("profiles/inf2-profile.toml")).unwrap();
        let profiles = root().join("profiles");
        let p = profile::load(&profiles, "inf2-profile").unwrap();
        let cards = card::load_all(&root().join("models")).unwrap();
        let file = root().join("profiles/calibration/neuron_published_points.csv");
        let pts = points::load(&file).unwrap();
        let mut r = calibrate_profile(&p, &cards, &pts, "points").unwrap();
        let new = write_back(&shipped, &r).unwrap();
        let q = Profile::parse(&new, Path::new("profiles/inf2-profile.toml")).unwrap();
        let loso = q.calibration.leave_one_source_out.unwrap();
        let want = r.leave_one_source_out.error.unwrap();
        assert!((loso.error.unwrap().ttft - want.ttft).abs() < 1e-3 * want.ttft);
        assert_eq!(loso.groups, 2);
        // Written twice, the lines are replaced, not repeated.
        r.leave_one_source_out = HeldOut::none(1, "all 3 point(s) come from one source (\"x\")");
        let again = write_back(&new, &r).unwrap();
        assert_eq!(again.lines().count(), new.lines().count());
        let q = Profile::parse(&again, Path::new("profiles/inf2-profile.toml")).unwrap();
        let loso = q.calibration.leave_one_source_out.unwrap();
        assert!(loso.error.is_none());
        assert_eq!(
            loso.reason.unwrap(),
            "all 3 point(s) come from one source (\"x\")"
        );
        assert!(q.calibration.leave_one_model_out.unwrap().error.is_some());
    }

    /// The published GPU / trn2 serving points load as points, name a model card and an
    /// instance of a shipped profile at a TP degree it allows, carry their concurrency, and
    /// are fit rows except the one whose conditions the source leaves open and the one
    /// mixture-of-experts run, which judges the MoE model.
    #[test]
    fn published_gpu_trn2_points_are_projectable_fit_rows() {
        let file = root().join("profiles/calibration/published_gpu_trn2_points.csv");
        let pts = points::load(&file).unwrap();
        assert_eq!(pts.len(), 9);
        let cards = card::load_all(&root().join("models")).unwrap();
        let profiles = profile::load_all(&root().join("profiles")).unwrap();
        for q in &pts {
            assert!(find_card(&cards, &q.model).is_some(), "{}", q.model);
            let p = profiles
                .iter()
                .find(|p| p.instance(&q.instance).is_ok())
                .unwrap_or_else(|| panic!("{}", q.instance));
            let inst = p.instance(&q.instance).unwrap();
            assert!(p.check_tp(inst, q.tp).is_ok(), "line {}", q.line);
            assert!(!q.source.is_empty());
        }
        assert!(pts.iter().all(|q| q.concurrency == Some(q.batch)));
        let held: Vec<usize> = pts
            .iter()
            .filter(|q| q.validation_only())
            .map(|q| q.line)
            .collect();
        // G4 (concurrency 50): KV-cache dtype and memory fraction not stated; T7
        // (gpt-oss-120b): the one mixture-of-experts run judges the MoE model.
        assert_eq!(held.len(), 2, "{held:?}");
        let row = |i: usize| pts.iter().find(|q| q.line == held[i]).unwrap();
        assert_eq!(
            (row(0).instance.as_str(), row(0).concurrency),
            ("p5.48xlarge", Some(50))
        );
        assert_eq!(
            (row(1).model.as_str(), row(1).instance.as_str()),
            ("gpt-oss-120b", "trn2.48xlarge")
        );
        // A serving row is not projected as a static batch.
        let p = profile::load(&root().join("profiles"), "h100-profile").unwrap();
        let e = format!(
            "{:#}",
            calibrate_profile(&p, &cards, &pts, "p.csv").unwrap_err()
        );
        assert!(e.contains("serving run at concurrency 1"), "{e}");
    }
}
