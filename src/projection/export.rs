//! Exporters: projections, comparisons and calibration reports to bytes as an aligned text
//! table, JSON (`schema_version` 1), CSV or Markdown, through the output layer
//! ([`crate::output`]). Pure functions, no I/O.

use super::calibrate::{CalibrationOutput, CalibrationReport, PointError};
use super::compare::CompareReport;
use super::project::{ProjectReport, Projected};
use super::types::{CalibrationError, HeldOut};
use crate::output::number::{self, gib, pct, ranged, usd, SHORT};
use crate::output::{json_bytes, Format, LineEnd, Table};

/// `-` when unknown, else [`number::sig`] with the short precision.
fn num(v: f64) -> String {
    number::sig(v, SHORT)
}

const PROJECTION_HEADER: [&str; 16] = [
    "profile",
    "instance",
    "tp",
    "batch",
    "fits",
    "memory GiB (need/have)",
    "TTFT ms",
    "TPOT ms",
    "e2e ms",
    "output tok/s",
    "total tok/s",
    "$/1M output tok",
    "$/1M tok",
    "kWh/1M tok",
    "max batch",
    "calibration MAPE TTFT/TPOT",
];

fn dollars(v: f64) -> String {
    usd(Some(v))
}

fn projection_cells(p: &Projected) -> Vec<String> {
    let x = &p.projection;
    let i = &x.intervals;
    vec![
        x.profile.clone(),
        x.instance.clone(),
        x.tp.to_string(),
        x.batch.to_string(),
        if x.fits { "yes" } else { "no" }.into(),
        format!(
            "{}/{}",
            gib(x.memory_required_bytes),
            gib(x.memory_available_bytes)
        ),
        ranged(num(x.ttft_ms), i.ttft_ms_low, i.ttft_ms_high, num),
        ranged(num(x.tpot_ms), i.tpot_ms_low, i.tpot_ms_high, num),
        ranged(num(x.e2e_ms), i.e2e_ms_low, i.e2e_ms_high, num),
        ranged(
            num(x.output_tokens_per_s),
            i.output_tokens_per_s_low,
            i.output_tokens_per_s_high,
            num,
        ),
        ranged(
            num(p.total_tokens_per_s),
            p.total_tokens_per_s_low,
            p.total_tokens_per_s_high,
            num,
        ),
        ranged(
            usd(x.cost_usd_per_million_output_tokens),
            i.cost_usd_per_million_output_tokens_low,
            i.cost_usd_per_million_output_tokens_high,
            dollars,
        ),
        ranged(
            usd(x.cost_usd_per_million_tokens),
            i.cost_usd_per_million_tokens_low,
            i.cost_usd_per_million_tokens_high,
            dollars,
        ),
        ranged(
            x.energy_kwh_per_million_tokens.map_or("-".into(), num),
            i.energy_kwh_per_million_tokens_low,
            i.energy_kwh_per_million_tokens_high,
            num,
        ),
        p.max_batch_that_fits.to_string(),
        x.calibration_mape.map_or("uncalibrated".into(), |c| {
            format!("{} / {} ({} pts)", pct(c.ttft), pct(c.tpot), c.points)
        }),
    ]
}

fn projection_grid(rows: &[Projected]) -> Table {
    Table {
        header: PROJECTION_HEADER.iter().map(|s| s.to_string()).collect(),
        rows: rows.iter().map(projection_cells).collect(),
        text_columns: 2,
    }
}

fn notes_block(rows: &[Projected]) -> String {
    let mut s = String::new();
    for p in rows {
        for n in &p.projection.notes {
            s.push_str(&format!(
                "{} {}: {n}\n",
                p.projection.profile, p.projection.instance
            ));
        }
    }
    s
}

/// The sources behind `rows` (model card, profile fields, prices, calibration points), each
/// once, in order of first use: what a reader needs to check a projected number.
fn sources_block(rows: &[Projected]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in rows {
        for src in &p.projection.sources {
            if !out.contains(src) {
                out.push(src.clone());
            }
        }
    }
    out
}

/// Where each profile's intervals come from, each line once, in order of first use.
fn intervals_block(rows: &[Projected]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in rows {
        if let Some(b) = &p.projection.intervals.interval_basis {
            let line = format!("{}: {b}", p.projection.profile);
            if !out.contains(&line) {
                out.push(line);
            }
        }
    }
    out
}

/// The intervals block as text (`indent` before each item), after a blank line.
fn intervals_text(rows: &[Projected], item: &str) -> String {
    let lines = intervals_block(rows);
    if lines.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\nIntervals [low–high], where the measured value is expected (README, Error bars):\n",
    );
    if item == "- " {
        s.push('\n');
    }
    for l in lines {
        s.push_str(&format!("{item}{l}\n"));
    }
    s
}

/// "bf16 weights, on-demand prices" for a header line.
fn basis(rows: &[Projected]) -> String {
    rows.first().map_or(String::new(), |p| {
        format!(
            ", {} weights, {} prices",
            p.projection.weights_dtype, p.price_kind
        )
    })
}

/// Renders `profiler project` output for `model`.
pub fn projections(format: Format, model: &str, parameters: u64, rows: &[Projected]) -> Vec<u8> {
    match format {
        Format::Json => json_bytes(&ProjectReport::new(model, parameters, rows)),
        Format::Table => {
            let mut s = format!(
                "Projected (not measured): {model} ({:.2} B parameters){}\n\n",
                parameters as f64 / 1e9,
                basis(rows)
            );
            s.push_str(&projection_grid(rows).text());
            s.push_str(&intervals_text(rows, "  - "));
            let n = notes_block(rows);
            if !n.is_empty() {
                s.push_str("\nNotes:\n");
                s.push_str(&n);
            }
            let src = sources_block(rows);
            if !src.is_empty() {
                s.push_str("\nSources:\n");
                for x in src {
                    s.push_str(&format!("  - {x}\n"));
                }
            }
            s.into_bytes()
        }
        Format::Csv => {
            let mut g = projection_grid(rows);
            g.header.push("notes".into());
            g.header.push("sources".into());
            for (r, p) in g.rows.iter_mut().zip(rows) {
                r.push(p.projection.notes.join(" | "));
                r.push(p.projection.sources.join(" | "));
            }
            g.csv(LineEnd::Lf).into_bytes()
        }
        Format::Markdown => {
            let mut s = format!("### Projected (not measured): {model}{}\n\n", basis(rows));
            s.push_str(&projection_grid(rows).markdown());
            s.push_str(&intervals_text(rows, "- "));
            let n = notes_block(rows);
            if !n.is_empty() {
                s.push('\n');
                for l in n.lines() {
                    s.push_str(&format!("- {l}\n"));
                }
            }
            let src = sources_block(rows);
            if !src.is_empty() {
                s.push_str("\nSources:\n\n");
                for x in src {
                    s.push_str(&format!("- {x}\n"));
                }
            }
            s.into_bytes()
        }
    }
}

fn compare_grid(r: &CompareReport) -> Table {
    let mut g = projection_grid(
        &r.rows
            .iter()
            .map(|x| x.projected.clone())
            .collect::<Vec<_>>(),
    );
    g.header.push("meets SLO".into());
    g.header.push("reason".into());
    for (cells, row) in g.rows.iter_mut().zip(&r.rows) {
        cells.push(if row.meets_slo { "yes" } else { "no" }.into());
        cells.push(row.reason.clone().unwrap_or_default());
    }
    g
}

fn slo_text(r: &CompareReport) -> String {
    let t = r.slo.ttft_ms.map_or("none".into(), |v| format!("{v} ms"));
    let p = r.slo.tpot_ms.map_or("none".into(), |v| format!("{v} ms"));
    format!("SLO: TTFT {t}, TPOT {p}")
}

/// Renders `profiler compare` output.
pub fn comparison(format: Format, r: &CompareReport) -> Vec<u8> {
    match format {
        Format::Json => json_bytes(r),
        Format::Table => {
            let mut s = format!(
                "Compared (projected, not measured): {} ({:.2} B parameters), input {}, output {}, {} weights, {} prices. {}\n\n",
                r.model,
                r.model_parameters as f64 / 1e9,
                r.input_len,
                r.output_len,
                r.weights_dtype,
                r.price_kind,
                slo_text(r)
            );
            s.push_str(&compare_grid(r).text());
            s.push('\n');
            s.push_str(&r.recommendation);
            s.push('\n');
            if let Some(x) = &r.ranking {
                s.push_str(x);
                s.push('\n');
            }
            let rows: Vec<Projected> = r.rows.iter().map(|x| x.projected.clone()).collect();
            s.push_str(&intervals_text(&rows, "  - "));
            let n = notes_block(&rows);
            if !n.is_empty() {
                s.push_str("\nNotes:\n");
                s.push_str(&n);
            }
            let src = sources_block(&rows);
            if !src.is_empty() {
                s.push_str("\nSources:\n");
                for x in src {
                    s.push_str(&format!("  - {x}\n"));
                }
            }
            s.into_bytes()
        }
        Format::Csv => compare_grid(r).csv(LineEnd::Lf).into_bytes(),
        Format::Markdown => {
            let mut s = format!(
                "### Compared (projected, not measured): {}, input {}, output {}, {}\n\n{}\n\n",
                r.model,
                r.input_len,
                r.output_len,
                r.weights_dtype,
                slo_text(r)
            );
            s.push_str(&compare_grid(r).markdown());
            s.push_str(&format!("\n**{}**\n", r.recommendation));
            if let Some(x) = &r.ranking {
                s.push_str(&format!("\n{x}\n"));
            }
            let rows: Vec<Projected> = r.rows.iter().map(|x| x.projected.clone()).collect();
            s.push_str(&intervals_text(&rows, "- "));
            s.into_bytes()
        }
    }
}

fn calibration_grid(r: &CalibrationReport) -> Table {
    points_grid(&r.points)
}

/// One row per calibration point: measured, projected and the error of each metric.
fn points_grid(points: &[PointError]) -> Table {
    Table {
        header: [
            "line",
            "model",
            "instance",
            "tp",
            "batch",
            "input",
            "output",
            "TTFT measured ms",
            "TTFT projected ms",
            "TTFT error",
            "TPOT measured ms",
            "TPOT projected ms",
            "TPOT error",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        rows: points
            .iter()
            .map(|p| {
                vec![
                    p.line.to_string(),
                    p.model.clone(),
                    p.instance.clone(),
                    p.tp.to_string(),
                    p.batch.to_string(),
                    p.input_len.to_string(),
                    p.output_len.to_string(),
                    num(p.measured_ttft_ms),
                    num(p.projected_ttft_ms),
                    number::signed_pct(Some(p.ttft_error)),
                    num(p.measured_tpot_ms),
                    num(p.projected_tpot_ms),
                    number::signed_pct(Some(p.tpot_error)),
                ]
            })
            .collect(),
        text_columns: 3,
    }
}

fn params_grid(r: &CalibrationReport) -> Table {
    Table {
        header: vec!["parameter".into(), "before".into(), "fitted".into()],
        rows: r
            .params
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    format!("{:.4}", p.before),
                    format!("{:.4}", p.after),
                ]
            })
            .collect(),
        text_columns: 1,
    }
}

/// `TTFT x%, TPOT y% (n projections, k groups)`, or `not computed: reason`.
pub fn held_out_text(h: &HeldOut, groups: &str) -> String {
    match (&h.error, &h.reason) {
        (Some(e), _) => format!(
            "TTFT {}, TPOT {} ({} projections, {} {groups})",
            pct(e.ttft),
            pct(e.tpot),
            e.points,
            h.groups
        ),
        (None, r) => format!(
            "not computed: {}",
            r.as_deref().unwrap_or("no reason recorded")
        ),
    }
}

/// The three error lines of a calibration, side by side: the fit's MAPE on `what` (before
/// → after), and the two held-out MAPEs, `source` naming what a source is.
pub fn error_lines(
    what: &str,
    before: &CalibrationError,
    after: &CalibrationError,
    loso: &HeldOut,
    lomo: &HeldOut,
    source: &str,
) -> String {
    format!(
        "Fit error (MAPE on the {} {what}): TTFT {} (before {}), TPOT {} (before {})\n\
         Leave-one-source-out (each {source}'s points projected by a fit on the other {source}s): {}\n\
         Leave-one-model-out (each model's points projected by a fit on the other models): {}",
        after.points,
        pct(after.ttft),
        pct(before.ttft),
        pct(after.tpot),
        pct(before.tpot),
        held_out_text(loso, &format!("{source}s")),
        held_out_text(lomo, "models")
    )
}

fn mape_line(r: &CalibrationReport) -> String {
    let mut s = error_lines(
        "points fitted",
        &r.before,
        &r.after,
        &r.leave_one_source_out,
        &r.leave_one_model_out,
        "source",
    );
    if !r.repeated.is_empty() {
        let lines: Vec<String> = r
            .repeated
            .iter()
            .map(|(line, first)| format!("{line} (= {first})"))
            .collect();
        s.push_str(&format!(
            "\nCounted once: {} line(s) repeat an earlier line's run exactly: {}",
            r.repeated.len(),
            lines.join(", ")
        ));
    }
    for n in &r.not_fitted {
        s.push_str(&format!("\nNot fitted: {n}"));
    }
    for n in &r.notes {
        s.push_str(&format!("\nNote: {n}"));
    }
    s
}

/// Heading of the validation rows: measurements kept out of the fit.
const VALIDATION_TITLE: &str =
    "Validation (rows kept out of the fit, projected with the fitted parameters):";

/// Renders `profiler calibrate` output.
pub fn calibration(format: Format, r: &CalibrationReport) -> Vec<u8> {
    match format {
        Format::Json => json_bytes(&CalibrationOutput {
            schema_version: 1,
            calibration: r.clone(),
        }),
        Format::Table => {
            let mut s = format!("Calibration of {} on {}\n\n", r.profile, r.points_file);
            s.push_str(&calibration_grid(r).text());
            s.push('\n');
            s.push_str(&params_grid(r).text());
            s.push('\n');
            s.push_str(&mape_line(r));
            s.push('\n');
            if !r.validation.is_empty() {
                s.push_str(&format!("\n{VALIDATION_TITLE}\n"));
                s.push_str(&points_grid(&r.validation).text());
            }
            s.into_bytes()
        }
        Format::Csv => calibration_grid(r).csv(LineEnd::Lf).into_bytes(),
        Format::Markdown => {
            let mut s = format!("### Calibration of {} on {}\n\n", r.profile, r.points_file);
            s.push_str(&calibration_grid(r).markdown());
            s.push('\n');
            s.push_str(&params_grid(r).markdown());
            s.push_str(&format!("\n{}\n", mape_line(r)));
            if !r.validation.is_empty() {
                s.push_str(&format!("\n{VALIDATION_TITLE}\n\n"));
                s.push_str(&points_grid(&r.validation).markdown());
            }
            s.into_bytes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::card;
    use crate::projection::dtype::WeightsDtype;
    use crate::projection::project::{project_detailed, ProjectRequest};
    use std::path::PathBuf;

    fn rows() -> Vec<Projected> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let c = card::find(&root.join("models"), "llama-3.1-8b").unwrap();
        let req = ProjectRequest::new(128, 128, WeightsDtype::Bf16);
        project_detailed(
            &root.join("profiles"),
            &c,
            "inf2-profile,trn2-profile",
            &req,
        )
        .unwrap()
    }

    #[test]
    fn json_reads_back_and_validates() {
        let out = projections(Format::Json, "llama-3.1-8b", 8_030_261_248, &rows());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let schema = crate::output::schemas::schema_of("project").unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        let back: ProjectReport = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            back,
            ProjectReport::new("llama-3.1-8b", 8_030_261_248, &rows())
        );
        assert!(v["projections"][0]["energy_kwh_per_million_tokens"].is_null());
        // trn2 has no price: cost is null (None), not NaN.
        let trn2 = back
            .projections
            .iter()
            .find(|x| x.projection.profile == "trn2-profile")
            .unwrap();
        assert_eq!(trn2.projection.cost_usd_per_million_tokens, None);
    }

    #[test]
    fn table_is_aligned_and_csv_quotes() {
        let t = String::from_utf8(projections(Format::Table, "m", 1, &rows())).unwrap();
        let lines: Vec<&str> = t.lines().skip(2).take(3).collect();
        assert!(
            lines[0].starts_with("profile") && lines[1].starts_with("---"),
            "{t}"
        );
        let c = String::from_utf8(projections(Format::Csv, "m", 1, &rows())).unwrap();
        assert!(c.lines().next().unwrap().ends_with("notes,sources"));
        let m = String::from_utf8(projections(Format::Markdown, "m", 1, &rows())).unwrap();
        assert!(m.contains("| profile | instance |"), "{m}");
        // Table and markdown say on what basis and from which sources, each source once.
        for text in [&t, &m] {
            assert!(
                text.lines()
                    .next()
                    .unwrap()
                    .contains(", bf16 weights, on-demand prices"),
                "{text}"
            );
            let card = rows()[0].projection.sources[0].clone();
            assert_eq!(text.matches(card.as_str()).count(), 1, "{text}");
            let price = "inf2_instances.js";
            assert_eq!(text.matches(price).count(), 1, "{text}");
        }
    }
}
