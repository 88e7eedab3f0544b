//! `calibrate --from --write-profile OUT.toml`: a new profile made of the base profile
//! (its chip, runtime, instances, prices and sources, comments kept) with the fitted
//! parameters in `[latency]` and a `[calibration]` table that records the fit: the
//! parameters fitted, fit and held-out errors, and every measurement with its file's
//! sha256, tool and date.

use super::fit::{FromReport, Resolved};
use crate::projection::calibrate::round_sig;
use crate::projection::profile::Profile;
use crate::projection::setting::{Setting, SettingError};
use crate::projection::types::HeldOut;
use anyhow::{bail, Context, Result};
use std::path::Path;
use toml_edit::{value, Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

/// The source key of the fitted numbers in the written profile.
const SOURCE_KEY: &str = "calibrate-from";

/// The profile name a written file gets: its file stem.
pub fn name_of(out: &Path) -> Result<String> {
    let bad = || {
        SettingError::new(
            Setting::WriteProfile,
            format!(" {}: expected a file name ending in .toml", out.display()),
        )
    };
    let stem = out
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(bad)?;
    if out.extension().and_then(|e| e.to_str()) != Some("toml") {
        bail!(bad());
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
        .map(|f| {
            // A file in the working folder is written `./NAME`: a source names a path.
            let path = if f.path.contains('/') {
                f.path.clone()
            } else {
                format!("./{}", f.path)
            };
            format!("{path} (sha256 {}, {})", f.sha256, f.tool)
        })
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
        if let Some(n) = r.in_flight() {
            t.insert("in_flight", value(i64::from(n)));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::fit::{self, calibrate_from, FileProvenance, Flags};
    use crate::calibration::import::{
        FileSettings, MeasuredLoad, Measurement, Observed, Stat, Tool,
    };
    use crate::model::card;
    use crate::projection::WeightsDtype;
    use std::path::PathBuf;

    #[test]
    fn the_written_profile_loads_with_the_fit_and_its_provenance() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let base_path = root.join("profiles/inf2-profile.toml");
        let base = Profile::load(&base_path).unwrap();
        let find = |n: &str| card::find(&root.join("models"), n);
        let flags = Flags {
            instance: Some("inf2.xlarge".into()),
            tp: Some(2),
            weights_dtype: Some(WeightsDtype::Bf16),
            max_num_seqs: Some(4),
            seq_len: Some(1024),
            ..Flags::default()
        };
        let rs: Vec<_> = [(1, 40.0, 9.0), (4, 70.0, 11.0)]
            .into_iter()
            .map(|(c, ttft, tpot)| {
                let m = Measurement {
                    file: format!("bench-c{c}.json"),
                    tool: Tool::VllmBenchServe,
                    label: "benchmark 1 of 1".into(),
                    model: Some("llama-3.2-1b".into()),
                    load: MeasuredLoad::Concurrency { concurrency: c },
                    input_tokens: 128.0,
                    output_tokens: 64.0,
                    requests: Some(32),
                    per_request: Vec::new(),
                    ttft: Observed {
                        ms: ttft,
                        stat: Stat::Median,
                    },
                    tpot: Observed {
                        ms: tpot,
                        stat: Stat::Median,
                    },
                    output_tokens_per_s: None,
                    date: Some("2026-11-30".into()),
                    settings: FileSettings::default(),
                    notes: Vec::new(),
                };
                fit::resolve(m, &flags, &base, &find).unwrap()
            })
            .collect();
        let files = rs
            .iter()
            .map(|r| FileProvenance {
                path: r.m.file.clone(),
                sha256: "ab".repeat(32),
                tool: "vllm-bench-serve".into(),
                measurements: 1,
                date: r.m.date.clone(),
            })
            .collect();
        let report = calibrate_from(&base, &rs, files, None).unwrap();
        let text = std::fs::read_to_string(&base_path).unwrap();
        let out = profile_text(&text, &base, "my-inf2", &report, &rs, "2026-12-02").unwrap();
        // The base profile's comments and prices are kept.
        assert!(out.contains("# AWS Inferentia2"), "{out}");
        assert!(out.contains("usd_per_hour = 0.7582"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("my-inf2.toml");
        std::fs::write(&path, &out).unwrap();
        let p = crate::projection::profile::load(dir.path(), path.to_str().unwrap()).unwrap();
        assert_eq!(p.name, "my-inf2");
        for f in &report.params {
            assert_eq!(
                p.latency.get(&f.name),
                Some(round_sig(f.after)),
                "{}",
                f.name
            );
        }
        // What was not fitted is the base profile's.
        assert_eq!(
            p.latency.collective_latency_us,
            base.latency.collective_latency_us
        );
        assert_eq!(p.calibration.error.as_ref().unwrap().points, 2);
        assert!(p.calibration.points.is_none());
        // Projections elsewhere say the measurements do not cover them.
        assert!(p
            .calibration
            .outside("inf2.xlarge", 2, WeightsDtype::Bf16, Some(4))
            .is_none());
        assert!(p
            .calibration
            .outside("inf2.48xlarge", 24, WeightsDtype::Bf16, Some(4))
            .is_some());
        let doc: DocumentMut = out.parse().unwrap();
        let ms = doc["calibration"]["measurements"]
            .as_array_of_tables()
            .unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms.get(1).unwrap()["file"].as_str(), Some("bench-c4.json"));
        assert_eq!(
            ms.get(1).unwrap()["sha256"].as_str(),
            Some("ab".repeat(32).as_str())
        );
        assert_eq!(ms.get(0).unwrap()["date"].as_str(), Some("2026-11-30"));
        assert_eq!(
            name_of(Path::new("dir/my-inf2.json"))
                .unwrap_err()
                .to_string(),
            "write_profile dir/my-inf2.json: expected a file name ending in .toml"
        );
    }
}
