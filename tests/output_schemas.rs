//! Every JSON output has a schema generated from its Rust types and checked in under
//! `tests/schemas/`; each command's real output (the `profiler` binary) validates against
//! the checked-in file and reads back into its type unchanged.
//!
//! After changing an output type, regenerate the files with
//! `UPDATE_SCHEMAS=1 cargo test -p profiler --release --test output_schemas`.

mod common;

use profiler::output::schemas::{schema_text, OUTPUTS};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;

fn schema_file(name: &str) -> PathBuf {
    common::home().join(format!("tests/schemas/{name}.json"))
}

#[test]
fn checked_in_schemas_are_the_generated_ones() {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (name, _) in OUTPUTS {
        let want = schema_text(name).unwrap();
        let path = schema_file(name);
        if update {
            std::fs::write(&path, &want).unwrap();
            continue;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "schema files differ from the types: {}; update them with \
         `UPDATE_SCHEMAS=1 cargo test -p profiler --release --test output_schemas` and review the diff",
        stale.join(", ")
    );
}

/// Validates `text` against the checked-in schema `name`, reads it back into `T` and checks
/// that writing `T` again gives the same JSON.
fn check<T: DeserializeOwned + Serialize>(name: &str, text: &str) -> Value {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(schema_file(name)).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&v)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:#?}");
    let back: T = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("{name}: does not read back: {e}"));
    assert_eq!(
        serde_json::to_value(&back).unwrap(),
        v,
        "{name}: round trip"
    );
    v
}

/// Every projected number `X` of a projection row has `X_low ≤ X ≤ X_high` beside it (all
/// three null together where `X` is unknown).
fn has_intervals(row: &Value) {
    for x in [
        "ttft_ms",
        "tpot_ms",
        "e2e_ms",
        "output_tokens_per_s",
        "total_tokens_per_s",
        "cost_usd_per_million_output_tokens",
        "cost_usd_per_million_tokens",
        "energy_kwh_per_million_tokens",
    ] {
        let (lo, hi) = (&row[format!("{x}_low")], &row[format!("{x}_high")]);
        match row[x].as_f64() {
            Some(v) => {
                let (lo, hi) = (lo.as_f64().unwrap(), hi.as_f64().unwrap());
                assert!(lo <= v && v <= hi, "{x}: {lo} {v} {hi} in {row}");
            }
            None => assert!(lo.is_null() && hi.is_null(), "{x} in {row}"),
        }
    }
    assert!(row["interval_basis"].is_string(), "{row}");
}

#[test]
fn project_output_validates_and_reads_back() {
    // Every profile: trn2 and trn3 have no on-demand price, so their costs are null.
    let out = common::run_ok(&[
        "project",
        "--model",
        "llama-3.1-8b",
        "--device",
        "all",
        "--format",
        "json",
    ]);
    let v = check::<profiler::projection::project::ProjectReport>("project", &out);
    let rows = v["projections"].as_array().unwrap();
    assert!(rows
        .iter()
        .any(|r| r["cost_usd_per_million_tokens"].is_null()));
    assert!(rows
        .iter()
        .any(|r| r["cost_usd_per_million_tokens"].is_f64()));
    rows.iter().for_each(has_intervals);
}

#[test]
fn compare_output_validates_and_reads_back() {
    let out = common::run_ok(&[
        "compare",
        "--model",
        "llama-3.1-70b",
        "--device",
        "all",
        "--slo-tpot-ms",
        "50",
        "--format",
        "json",
    ]);
    let v = check::<profiler::projection::CompareReport>("compare", &out);
    let rows = v["rows"].as_array().unwrap();
    assert!(rows.iter().any(|r| r["fits"] == false));
    rows.iter().for_each(has_intervals);
    assert!(v["ranking"].is_string());
    assert!(rows
        .iter()
        .any(|r| r["cost_usd_per_million_tokens"].is_null()));
}

#[test]
fn calibrate_output_validates_and_reads_back() {
    let out = common::run_ok(&["calibrate", "--device", "inf2-profile", "--format", "json"]);
    let v = check::<profiler::projection::calibrate::CalibrationOutput>("calibrate", &out);
    assert!(v["calibration"]["points"].as_array().unwrap().len() > 10);
    // A points file of serving runs, replayed through the simulator: the same schema, with
    // the settings assumed for rows that do not state them.
    let out = common::run_ok(&["calibrate", "--device", "h100-profile", "--format", "json"]);
    let v = check::<profiler::projection::calibrate::CalibrationOutput>("calibrate", &out);
    let c = &v["calibration"];
    assert_eq!(c["points"].as_array().unwrap().len(), 4);
    assert!(c["leave_one_source_out"]["error"].is_null());
    let notes = c["notes"].as_array().unwrap();
    assert!(notes
        .iter()
        .any(|n| n.as_str().unwrap().contains("max_num_seqs 256")));
}

#[test]
fn calibrate_from_output_validates_and_reads_back() {
    let fixtures = common::home().join("tests/fixtures");
    let f = |rel: &str| fixtures.join(rel).display().to_string();
    let (v, l) = (
        f("results/vllm/vllm-2.0qps-Llama-3.1-8B-Instruct-20261130-142207.json"),
        f("results/llmperf/meta-llama-Meta-Llama-3-8B-Instruct_550_150_summary.json"),
    );
    let out = common::run_ok(&[
        "calibrate",
        "--from",
        &v,
        &l,
        "--device",
        "l40s-profile",
        "--instance",
        "g6e.xlarge",
        "--tp",
        "1",
        "--weights-dtype",
        "bf16",
        "--model",
        "llama-3.1-8b",
        "--format",
        "json",
    ]);
    let v = check::<profiler::calibration::export::FromOutput>("calibrate-from", &out);
    assert_eq!(
        v["calibration_from"]["measurements"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn simulate_output_validates_and_reads_back() {
    for (device, instance) in [
        ("inf2-profile", "inf2.48xlarge"),
        // No on-demand price: the costs are null.
        ("trn2-profile", "trn2.48xlarge"),
    ] {
        let out = common::run_ok(&[
            "simulate",
            "--model",
            "llama-3.1-8b",
            "--device",
            device,
            "--instance",
            instance,
            "--rate",
            "2",
            "--requests",
            "100",
            "--slo-ttft-ms",
            "2000",
            "--format",
            "json",
        ]);
        let v = check::<profiler::simulation::report::SimReport>("simulate", &out);
        // Every simulated number has its interval beside it.
        for x in ["ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "queue_ms"] {
            let (lo, mid, hi) = (
                v[format!("{x}_low")]["mean"].as_f64().unwrap(),
                v[x]["mean"].as_f64().unwrap(),
                v[format!("{x}_high")]["mean"].as_f64().unwrap(),
            );
            assert!(lo <= mid && mid <= hi, "{device} {x}: {lo} {mid} {hi}");
        }
        for x in [
            "requests_per_s",
            "output_tokens_per_s",
            "total_tokens_per_s",
            "ttft_at_slo_percentile_ms",
            "tpot_at_slo_percentile_ms",
            "cost_usd_per_million_output_tokens",
            "cost_usd_per_million_tokens",
        ] {
            let (lo, hi) = (&v[format!("{x}_low")], &v[format!("{x}_high")]);
            match v[x].as_f64() {
                Some(m) => assert!(
                    lo.as_f64().unwrap() <= m && m <= hi.as_f64().unwrap(),
                    "{device} {x}"
                ),
                None => assert!(lo.is_null() && hi.is_null(), "{device} {x}"),
            }
        }
    }
}

#[test]
fn plan_output_validates_and_reads_back() {
    let out = common::run_ok(&[
        "plan",
        "--model",
        "llama-3.1-8b",
        "--device",
        "inf2-profile,trn2-profile",
        "--rate",
        "2",
        "--slo-ttft-ms",
        "2000",
        "--trial-requests",
        "40",
        "--format",
        "json",
    ]);
    let v = check::<profiler::simulation::plan::PlanReport>("plan", &out);
    let rows = v["rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    for r in rows
        .iter()
        .filter(|r| r["cost_usd_per_million_tokens"].is_f64())
    {
        let c = r["cost_usd_per_million_tokens"].as_f64().unwrap();
        assert!(
            r["cost_usd_per_million_tokens_low"].as_f64().unwrap() <= c,
            "{r}"
        );
        // The upper end is null only where the slow end never meets the SLOs.
        if let Some(hi) = r["cost_usd_per_million_tokens_high"].as_f64() {
            assert!(c <= hi, "{r}");
        }
        assert!(r["interval_basis"].is_string(), "{r}");
    }
    assert!(v.get("ranking").is_some());
}

#[test]
fn run_report_output_validates_and_reads_back() {
    // A run's report, rebuilt by the binary from a checked-in samples file (the engine's
    // `run --device` reports have the same type; `report::json`'s unit test validates one
    // with projections and a host check).
    let samples = common::home().join("tests/fixtures/samples/three-requests.jsonl");
    let out = common::run_ok(&[
        "report",
        "--samples",
        &common::path_str(&samples),
        "--format",
        "json",
    ]);
    let v = check::<profiler::report::Report>("report", &out);
    assert_eq!(v["requests"], 2);
    assert_eq!(v["failed_requests"], 1);
}
