//! `calibrate --from --write-profile OUT.toml`: a new profile made of the base profile
//! (its chip, runtime, instances, prices and sources, comments kept) with the fitted
//! parameters in `[latency]` and a `[calibration]` table that records the fit: the
//! parameters fitted, fit and held-out errors, and every measurement with its file's
//! sha256, tool and date.

use super::fit::{FromReport, Resolved};
use crate::projection::calibrate::round_sig;
use crate::projection::profile::Profile;
use crate::projection::types::HeldOut;
use anyhow::{bail, Context, Result};
use std::path::Path;
use toml_edit::{value, Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

/// The source key of the fitted numbers in the written profile.
const SOURCE_KEY: &str = "calibrate-from";

/// The profile name a written file gets: its file stem.
pub fn name_of(out: &Path) -> Result<String> {
    let stem = out
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .with_context(|| {
            format!(
                "--write-profile {}: expected a file name ending in .toml",
                out.display()
            )
        })?;
    if out.extension().and_then(|e| e.to_str()) != Some("toml") {
        bail!(
            "--write-profile {}: expected a file name ending in .toml",
            out.display()
        );
    }
    Ok(stem.to_string())
}

fn num(v: f64) -> Value {
    Value::from(round_sig(v))
}

fn held_out(h: &HeldOut) -> InlineTable {
    let mut t = InlineTable::new();
    match (&h.error, &h.reason) {
        (Some(e), _) => {
            t.insert("ttft_mape", num(e.ttft));
            t.insert("tpot_mape", num(e.tpot));
            t.insert("point_count", Value::from(i64::from(e.points)));
            t.insert("groups", Value::from(i64::from(h.groups)));
        }
        (None, r) => {
            t.insert("groups", Value::from(i64::from(h.groups)));
            t.insert(
                "reason",
                Value::from(r.clone().unwrap_or_else(|| "not computed".into())),
            );
        }
    }
    t
}

/// The text of the new profile named `name`, from the base profile's text.
pub fn profile_text(
    base_text: &str,
    base: &Profile,
    name: &str,
    report: &FromReport,
    rs: &[Resolved],
    today: &str,
) -> Result<String> {
    let mut doc: DocumentMut = base_text
        .parse()
        .with_context(|| format!("cannot edit {}", base.path.display()))?;
    let files: Vec<String> = report
        .files
        .iter()
        .map(|f| format!("{} (sha256 {}, {})", f.path, f.sha256, f.tool))
        .collect();
    doc["name"] = value(name);
    doc["description"] = value(format!(
        "{}; latency parameters fitted by `profiler calibrate --from` on {} measurement(s) ({today}), base profile {}",
        base.description,
        rs.len(),
        base.name
    ));
    let sources = doc["sources"]
        .as_table_mut()
        .with_context(|| format!("{}: no [sources] table", base.path.display()))?;
    sources.insert(
        SOURCE_KEY,
        value(format!(
            "Fitted by `profiler calibrate --from` on {today} (least squares on log error) on {}",
            files.join("; ")
        )),
    );
    let latency = doc["latency"]
        .as_table_mut()
        .with_context(|| format!("{}: no [latency] table", base.path.display()))?;
    for p in &report.params {
        let mut t = InlineTable::new();
        t.insert("value", num(p.after));
        t.insert("source", Value::from(SOURCE_KEY));
        latency.insert(&p.name, value(t));
    }
    let mut cal = Table::new();
    cal.insert("status", value("fitted"));
    let kept: Vec<&str> = report
        .not_fitted
        .iter()
        .map(|s| s.split(':').next().unwrap_or(s))
        .collect();
    cal.insert(
        "note",
        value(format!(
            "Fitted by `profiler calibrate --from` on {} measurement(s) of {} ({} file(s)); the other parameters ({}) are {}'s. Measured on {} only: other instances and TP degrees are projected with these parameters unchecked, and say so.",
            rs.len(),
            models_of(rs).join(", "),
            report.files.len(),
            if kept.is_empty() { "none".to_string() } else { kept.join(", ") },
            base.name,
            runs_of(rs).join(", ")
        )),
    );
    let mut fitted = Array::new();
    for p in &report.params {
        fitted.push(p.name.as_str());
    }
    cal.insert("fitted", value(fitted));
    cal.insert("ttft_mape", value(num(report.after.ttft)));
    cal.insert("tpot_mape", value(num(report.after.tpot)));
    cal.insert("point_count", value(i64::from(report.after.points.max(1))));
    cal.insert(
        "leave_one_source_out",
        value(held_out(&report.leave_one_source_out)),
    );
    cal.insert(
        "leave_one_model_out",
        value(held_out(&report.leave_one_model_out)),
    );
    let mut ms = ArrayOfTables::new();
    for (r, e) in rs.iter().zip(&report.measurements) {
        let f = report
            .files
            .iter()
            .find(|f| f.path == r.m.file)
            .with_context(|| format!("{}: no provenance recorded", r.m.file))?;
        let mut t = Table::new();
        t.insert("file", value(f.path.as_str()));
        t.insert("sha256", value(f.sha256.as_str()));
        t.insert("tool", value(f.tool.as_str()));
        t.insert("label", value(r.m.label.as_str()));
        if let Some(d) = &r.m.date {
            t.insert("date", value(d.as_str()));
        }
        t.insert("model", value(r.card.name.as_str()));
        t.insert("instance", value(r.instance.as_str()));
        t.insert("tp", value(i64::from(r.tp)));
        t.insert("weights_dtype", value(r.dtype.name()));
        t.insert("load", value(r.load_text()));
        t.insert("input_tokens", value(num(r.m.input_tokens)));
        t.insert("output_tokens", value(num(r.m.output_tokens)));
        t.insert("measured_ttft_ms", value(num(e.measured_ttft_ms)));
        t.insert("measured_tpot_ms", value(num(e.measured_tpot_ms)));
        t.insert("projected_ttft_ms", value(num(e.projected_ttft_ms)));
        t.insert("projected_tpot_ms", value(num(e.projected_tpot_ms)));
        ms.push(t);
    }
    cal.insert("measurements", Item::ArrayOfTables(ms));
    doc.insert("calibration", Item::Table(cal));
    let header = format!(
        "# Written by `profiler calibrate --from` on {today} from {}: the fitted parameters of\n# [latency] (source \"{SOURCE_KEY}\") and [calibration] come from the measurements listed\n# there; everything else is the base profile's, comments included.\n\n",
        base.name
    );
    let text = format!("{header}{doc}");
    Profile::parse(&text, &base.path.with_file_name(format!("{name}.toml")))
        .with_context(|| "the written profile does not load back")?;
    Ok(text)
}

fn models_of(rs: &[Resolved]) -> Vec<String> {
    let mut v: Vec<String> = rs.iter().map(|r| r.card.name.clone()).collect();
    v.sort();
    v.dedup();
    v
}

fn runs_of(rs: &[Resolved]) -> Vec<String> {
    let mut v: Vec<String> = rs
        .iter()
        .map(|r| format!("{} at TP {}", r.instance, r.tp))
        .collect();
    v.sort();
    v.dedup();
    v
}
