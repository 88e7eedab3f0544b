//! Renders `profiler calibrate --from` output in the one output layer's formats.

use super::fit::FromReport;
use crate::output::number::{sig, signed_pct};
use crate::output::table::{LineEnd, Table};
use crate::output::{json_bytes, Format};
use crate::projection::export::error_lines;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What `profiler calibrate --from --format json` writes (schema version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FromOutput {
    pub schema_version: u32,
    pub calibration_from: FromReport,
    /// The profile file written (`--write-profile`), or `null`.
    pub written_profile: Option<String>,
}

fn measurements_grid(r: &FromReport) -> Table {
    let mut t = Table::new(
        &[
            "file",
            "benchmark",
            "model",
            "instance",
            "tp",
            "load",
            "input",
            "output",
            "stat",
            "ttft ms",
            "projected",
            "error",
            "tpot ms",
            "projected",
            "error",
        ],
        9,
    );
    for m in &r.measurements {
        t.rows.push(vec![
            m.file.clone(),
            m.label.clone(),
            m.model.clone(),
            m.instance.clone(),
            m.tp.to_string(),
            m.load.clone(),
            sig(m.input_tokens, 4),
            sig(m.output_tokens, 4),
            m.ttft_statistic.clone(),
            sig(m.measured_ttft_ms, 4),
            sig(m.projected_ttft_ms, 4),
            signed_pct(Some(m.ttft_error)),
            sig(m.measured_tpot_ms, 4),
            sig(m.projected_tpot_ms, 4),
            signed_pct(Some(m.tpot_error)),
        ]);
    }
    t
}

fn params_grid(r: &FromReport) -> Table {
    let mut t = Table::new(&["parameter", "base", "fitted"], 1);
    for p in &r.params {
        t.rows
            .push(vec![p.name.clone(), sig(p.before, 4), sig(p.after, 4)]);
    }
    t
}

fn summary(r: &FromReport, written: Option<&str>) -> String {
    let mut s = error_lines(
        "measurements",
        &r.before,
        &r.after,
        &r.leave_one_source_out,
        &r.leave_one_model_out,
        "file",
    );
    s.push('\n');
    for n in &r.not_fitted {
        s.push_str(&format!("Kept at {}'s value: {n}\n", r.profile));
    }
    for n in &r.notes {
        s.push_str(&format!("Note: {n}\n"));
    }
    for f in &r.files {
        s.push_str(&format!(
            "File: {} ({}, {} measurement(s){}, sha256 {})\n",
            f.path,
            f.tool,
            f.measurements,
            f.date
                .as_ref()
                .map(|d| format!(", run {d}"))
                .unwrap_or_default(),
            f.sha256
        ));
    }
    if let Some(w) = written {
        s.push_str(&format!("Wrote profile {w}: use it with --device {w}\n"));
    }
    s
}

/// Renders the report of `calibrate --from`; `written` is the profile file written.
pub fn render(format: Format, r: &FromReport, written: Option<&str>) -> Vec<u8> {
    match format {
        Format::Json => json_bytes(&FromOutput {
            schema_version: 1,
            calibration_from: r.clone(),
            written_profile: written.map(String::from),
        }),
        Format::Csv => measurements_grid(r).csv(LineEnd::Lf).into_bytes(),
        Format::Table => format!(
            "Calibration of {} from measurements (projected: TTFT and TPOT of each benchmark with the fitted parameters)\n\n{}\n{}\n{}",
            r.profile,
            measurements_grid(r).text(),
            params_grid(r).text(),
            summary(r, written)
        )
        .into_bytes(),
        Format::Markdown => format!(
            "### Calibration of {} from measurements\n\n{}\n{}\n{}",
            r.profile,
            measurements_grid(r).markdown(),
            params_grid(r).markdown(),
            summary(r, written)
        )
        .into_bytes(),
    }
}
