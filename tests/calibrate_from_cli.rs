//! `profiler calibrate --from` through the binary: real GuideLLM and AIPerf result files
//! (made against `profiler serve`), files written to the other tools' schemas, a profile
//! written and used at once, and the one-line refusals.

mod common;

use common::{assert_one_line_error, home, run_err, run_ok};
use serde_json::Value;

fn fixture(rel: &str) -> String {
    home()
        .join("tests/fixtures")
        .join(rel)
        .display()
        .to_string()
}

/// A run report holding only what `--device host --host-check` reads: the two rates of a
/// host self-check (this test's own numbers, not a measurement).
fn host_check(dir: &std::path::Path) -> String {
    let p = dir.join("run.json");
    std::fs::write(
        &p,
        r#"{"host_check": {"matmul_gflops": 120.0, "memory_gb_per_s": 10.0}, "environment": {"cpu_model": "test CPU"}}"#,
    )
    .unwrap();
    p.display().to_string()
}

#[test]
fn real_client_files_fit_the_host_through_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let run = host_check(dir.path());
    let (c, p, a) = (
        fixture("clients/guidellm/guidellm-concurrent.json"),
        fixture("clients/guidellm/guidellm-poisson.json"),
        fixture("clients/aiperf/profile_export_aiperf.json"),
    );
    let out = run_ok(&[
        "calibrate",
        "--from",
        &c,
        &p,
        &a,
        "--device",
        "host",
        "--host-check",
        &run,
        "--instance",
        "host",
        "--max-num-seqs",
        "4",
        "--seq-len",
        "256",
        "--no-chunked-prefill",
        "--weights-dtype",
        "fp32",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let r = &v["calibration_from"];
    let ms = r["measurements"].as_array().unwrap();
    assert_eq!(ms.len(), 3);
    // The model comes from the files (the served name), the loads from the clients' own
    // settings, the statistic from what each tool reports.
    assert!(ms.iter().all(|m| m["model"] == "smollm2-135m"), "{ms:?}");
    assert_eq!(ms[0]["load"], "concurrency 4");
    assert_eq!(ms[1]["load"], "Poisson 0.5 req/s");
    assert_eq!(ms[2]["tool"], "aiperf");
    // Medians over GuideLLM's successful requests (python3 statistics.median of
    // time_to_first_token_ms and inter_token_latency_ms of guidellm-concurrent.json).
    assert!(
        (ms[0]["measured_ttft_ms"].as_f64().unwrap() - 569.2).abs() < 0.1,
        "{}",
        ms[0]
    );
    // Three files: each is held out once; a single model: no leave-one-model-out.
    assert_eq!(r["leave_one_source_out"]["groups"], 3);
    assert!(r["leave_one_source_out"]["error"].is_object());
    assert!(r["leave_one_model_out"]["error"].is_null());
    // The fit does better than the unfitted host profile on what it was fitted on.
    let err = |k: &str, m: &str| r[k][m].as_f64().unwrap();
    assert!(
        err("after", "ttft") + err("after", "tpot") < err("before", "ttft") + err("before", "tpot"),
        "{r}"
    );
    assert_eq!(r["files"].as_array().unwrap().len(), 3);
    assert_eq!(r["files"][0]["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn a_written_profile_is_used_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("my-inf2.toml");
    let out = out_path.display().to_string();
    let v = fixture("results/vllm/vllm-2.0qps-Llama-3.1-8B-Instruct-20261130-142207.json");
    let n = fixture("results/nxdi/benchmark_report.json");
    let text = run_ok(&[
        "calibrate",
        "--from",
        &v,
        &n,
        "--device",
        "inf2-profile",
        "--instance",
        "inf2.48xlarge",
        "--tp",
        "24",
        "--weights-dtype",
        "bf16",
        "--max-num-seqs",
        "4",
        "--seq-len",
        "2048",
        "--input-len",
        "1024",
        "--output-len",
        "1024",
        "--model",
        "llama-3.1-8b",
        "--write-profile",
        &out,
    ]);
    assert!(text.contains(&format!("Wrote profile {out}")), "{text}");
    let written = std::fs::read_to_string(&out_path).unwrap();
    assert!(written.contains("name = \"my-inf2\""), "{written}");
    assert!(
        written.contains("[[calibration.measurements]]"),
        "{written}"
    );
    // `project --device FILE.toml` takes it, and says which profile projected.
    let p = run_ok(&[
        "project",
        "--model",
        "llama-3.1-8b",
        "--device",
        &out,
        "--instance",
        "inf2.48xlarge",
        "--input-len",
        "512",
        "--output-len",
        "128",
        "--format",
        "json",
    ]);
    let pv: Value = serde_json::from_str(&p).unwrap();
    let row = &pv["projections"][0];
    assert_eq!(row["profile"], "my-inf2", "{row}");
    assert!(row["tpot_ms"].as_f64().unwrap() > 0.0);
    // simulate too, on an instance the measurements did not cover.
    run_ok(&[
        "simulate",
        "--model",
        "llama-3.1-8b",
        "--device",
        &out,
        "--instance",
        "inf2.24xlarge",
        "--concurrency",
        "2",
        "--requests",
        "20",
    ]);
}

#[test]
fn neuron_config_supplies_the_compiled_shapes() {
    let n = fixture("results/nxdi/benchmark_report.json");
    let cfg = fixture("neuron_config/nxdi-llama-3.1-8b-trn2-tp32");
    let out = run_ok(&[
        "calibrate",
        "--from",
        &n,
        "--neuron-config",
        &cfg,
        "--device",
        "trn2-profile",
        "--instance",
        "trn2.48xlarge",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let m = &v["calibration_from"]["measurements"][0];
    assert_eq!(m["tp"], 32, "{m}");
    // The architecture saved with the compiled model, its lengths from the configuration
    // (prompt max_context_length, output up to seq_len).
    assert_eq!(m["model"], "nxdi-llama-3.1-8b-trn2-tp32", "{m}");
    assert_eq!(m["load"], "static batch 4", "{m}");
    assert_eq!(
        (m["input_tokens"].as_f64(), m["output_tokens"].as_f64()),
        (Some(2048.0), Some(2048.0))
    );
    assert!(v["neuron_config"]["applied"].is_object(), "{v}");
}

#[test]
fn refusals_are_one_line_naming_the_flag_or_the_file() {
    let n = fixture("results/nxdi/benchmark_report.json");
    let base = [
        "calibrate",
        "--from",
        n.as_str(),
        "--device",
        "inf2-profile",
        "--model",
        "llama-3.1-8b",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    for (extra, needle) in [
        (&[][..], "--instance"),
        (&["--instance", "inf2.48xlarge"][..], "--tp"),
        (
            &["--instance", "inf2.48xlarge", "--tp", "24"][..],
            "--weights-dtype",
        ),
        (
            &[
                "--instance",
                "inf2.48xlarge",
                "--tp",
                "24",
                "--weights-dtype",
                "bf16",
            ][..],
            "--max-num-seqs",
        ),
        (
            &[
                "--instance",
                "inf2.48xlarge",
                "--tp",
                "24",
                "--weights-dtype",
                "bf16",
                "--max-num-seqs",
                "4",
            ][..],
            "--input-len",
        ),
    ] {
        let args = with(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_one_line_error(&run_err(&args), needle);
    }
    let dir = tempfile::tempdir().unwrap();
    let unknown = dir.path().join("other.json");
    std::fs::write(&unknown, r#"{"hello": 1}"#).unwrap();
    let u = unknown.display().to_string();
    assert_one_line_error(
        &run_err(&["calibrate", "--from", &u, "--device", "inf2-profile"]),
        "other.json",
    );
    assert_one_line_error(
        &run_err(&[
            "calibrate",
            "--from",
            &n,
            "--device",
            "inf2-profile",
            "--write-profile",
            "x.json",
        ]),
        "ending in .toml",
    );
}
