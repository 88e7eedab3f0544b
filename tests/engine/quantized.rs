//! int8 and int4 execution (`--weights-dtype`) through the real binary on the default model,
//! checked against Hugging Face transformers' f32 greedy tokens (tests/fixtures/reference.json,
//! from scripts/make_reference.sh): teacher-forced on those tokens, the quantised model must
//! pick the same token at each of the first 16 steps of every fixture prompt, except where
//! transformers' own top-2 logit margin is below 0.1.
#[path = "../common/mod.rs"]
mod common;

use common::{default_weights, run_err, run_ok};
use serde_json::Value;

const STEPS: usize = 16;
const MARGIN: f64 = 0.1;

fn fixtures() -> Value {
    let p = common::home().join("tests/fixtures/reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn check(dtype: &str) {
    default_weights();
    let fx = fixtures();
    let cases = fx["cases"].as_array().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let workload = dir.path().join("prompts.jsonl");
    let lines: Vec<String> = cases
        .iter()
        .map(|c| serde_json::json!({ "prompt": c["text_fed"] }).to_string())
        .collect();
    std::fs::write(&workload, lines.join("\n")).unwrap();
    let out = run_ok(&[
        "accuracy",
        "--model",
        "llama",
        "--run-on",
        "cpu",
        "--threads",
        "1",
        "--weights-dtype",
        dtype,
        "--workload",
        workload.to_str().unwrap(),
        "--steps",
        &STEPS.to_string(),
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["candidate_dtype"], dtype);
    assert_eq!(v["candidate_activation_dtype"], "bf16");
    let prompts = v["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), cases.len());
    let mut excused = 0;
    for (c, p) in cases.iter().zip(prompts) {
        let name = c["name"].as_str().unwrap();
        let want: Vec<i64> = c["greedy_tokens"].as_array().unwrap()[..STEPS]
            .iter()
            .map(|t| t.as_i64().unwrap())
            .collect();
        let gaps: Vec<f64> = c["top2_gap"].as_array().unwrap()[..STEPS]
            .iter()
            .map(|g| g.as_f64().unwrap())
            .collect();
        let tokens = |k: &str| -> Vec<i64> {
            p[k].as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_i64().unwrap())
                .collect()
        };
        // The f32 reference inside the binary is transformers' run.
        assert_eq!(tokens("reference_tokens"), want, "{name}: f32 reference");
        for (s, (got, w)) in tokens("candidate_tokens").iter().zip(&want).enumerate() {
            if got != w {
                assert!(
                    gaps[s] < MARGIN,
                    "{name}, {dtype}: step {s} picks {got} instead of {w} although transformers' margin is {}",
                    gaps[s]
                );
                excused += 1;
            }
        }
        let diffs = p["max_abs_diff"].as_array().unwrap();
        assert!(diffs.iter().all(|d| d.as_f64().unwrap().is_finite()));
        assert!(
            diffs.iter().any(|d| d.as_f64().unwrap() > 0.0),
            "{name}: {dtype} logits identical to f32, so nothing was quantised"
        );
    }
    eprintln!("{dtype}: {excused} step(s) differ where transformers' margin is below {MARGIN}");
}

#[test]
fn int4_picks_transformers_tokens() {
    check("int4");
}

#[test]
fn int8_picks_transformers_tokens() {
    check("int8");
}

/// A run reports how the weights were stored and the activation dtype, and generates.
#[test]
fn run_report_states_weight_and_activation_dtypes() {
    default_weights();
    let mut args = vec![
        "run",
        "--model",
        "llama",
        "--run-on",
        "cpu",
        "--weights-dtype",
        "int4",
        "--input-len",
        "8",
        "--output-len",
        "3",
        "--device",
        "inf2-profile",
        "--format",
        "json",
    ];
    args.extend(common::ONE_QUIET_REQUEST);
    let out = run_ok(&args);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["environment"]["weights_dtype"], "int4");
    assert_eq!(r["environment"]["matmul_precision"], "highest");
    assert_eq!(r["environment"]["dtype"], "bf16");
    assert_eq!(r["output_tokens"], 3);
    // Projections assume the run's weights dtype.
    let p = r["projections"].as_array().unwrap();
    assert!(!p.is_empty());
    assert!(p.iter().all(|x| x["weights_dtype"] == "int4"), "{p:?}");
    let text = run_ok(&[
        "generate",
        "--model",
        "llama",
        "--run-on",
        "cpu",
        "--weights-dtype",
        "int8",
        "--prompt",
        "The capital of France is",
        "--max-new-tokens",
        "4",
    ]);
    assert!(!text.trim().is_empty());
}

#[test]
fn bad_dtype_and_missing_prompts_are_one_line_errors() {
    let out = run_err(&["accuracy", "--weights-dtype", "int3", "--prompt", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("int3"));
    let out = run_err(&["accuracy", "--model", "llama", "--weights-dtype", "int4"]);
    common::assert_one_line_error(&out, "--prompt");
}
