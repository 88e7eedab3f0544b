//! A synthetic Llama 3.1 8B card run in bf16 through the real binary: the weights are
//! drawn and converted to bf16 one tensor at a time, so the model loads and generates on a
//! 24 GiB host with a peak resident set below 1.3 times its bf16 weights (16.06 GB). It
//! needs about 16 GiB of free memory and runs alone in its test binary.

#[path = "../common/mod.rs"]
mod common;

use serde_json::Value;

#[test]
fn synthetic_8b_runs_in_bf16_within_1_3x_its_weights() {
    let stdout = common::run_ok(&[
        "run",
        "--model",
        "llama-3.1-8b",
        "--run-on",
        "cpu",
        "--weights-dtype",
        "bf16",
        "--input-len",
        "8",
        "--output-len",
        "2",
        "--requests",
        "1",
        "--warmup",
        "0",
        "--format",
        "json",
        "-q",
    ]);
    let r: Value = serde_json::from_str(&stdout).expect("stdout is the JSON report");
    let env = &r["environment"];
    assert_eq!(env["weights_kind"], "synthetic", "{env}");
    assert_eq!(env["weights_dtype"], "bf16", "{env}");
    assert_eq!(r["requests"], 1, "one request generated");
    assert_eq!(r["output_tokens"], 2, "two tokens generated");
    // 8,030,261,248 parameters (the card's architecture) at 2 bytes each.
    let bf16_bytes = 8_030_261_248u64 * 2;
    let peak = r["peak_rss_bytes"].as_u64().expect("peak_rss_bytes");
    let ratio = peak as f64 / bf16_bytes as f64;
    eprintln!("peak RSS {peak} bytes = {ratio:.3} x the bf16 weights ({bf16_bytes} bytes)");
    assert!(
        ratio < 1.3,
        "peak RSS {peak} bytes is {ratio:.3} x the bf16 weights ({bf16_bytes} bytes)"
    );
    // The weights were all there: at least the bf16 linear layers are resident.
    let linear = env["weights_bytes"].as_u64().expect("weights_bytes");
    assert!(peak > linear, "peak RSS {peak} below the weights {linear}");
}
