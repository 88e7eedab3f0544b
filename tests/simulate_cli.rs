//! `profiler simulate`, `profiler plan` and the compile flags of `profiler project` through
//! the real binary (no inference).

mod common;

use serde_json::Value;

const SIM: &[&str] = &[
    "simulate",
    "--model",
    "llama-3.1-8b",
    "--device",
    "inf2-profile",
    "--instance",
    "inf2.48xlarge",
    "--tp",
    "8",
    "--dp",
    "3",
    "--max-num-seqs",
    "8",
    "--seq-len",
    "2048",
    "--input-len",
    "1500",
    "--output-len",
    "250",
];

fn sim(extra: &[&str]) -> Vec<String> {
    SIM.iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
}

fn run_ok(args: &[String]) -> String {
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    common::run_ok(&a)
}

fn run_err(args: &[String], needle: &str) {
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = common::run_err(&a);
    common::assert_one_line_error(&out, needle);
}

#[test]
fn simulate_json_follows_the_contract() {
    let out = run_ok(&sim(&[
        "--rate",
        "2",
        "--requests",
        "300",
        "--slo-ttft-ms",
        "2000",
        "--format",
        "json",
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["simulated"], true);
    for k in ["ttft_ms", "tpot_ms", "e2e_ms"] {
        for s in ["mean", "p50", "p90", "p99"] {
            assert!(v[k][s].as_f64().unwrap() > 0.0, "{k}.{s}: {}", v[k]);
        }
    }
    for k in [
        "requests_per_s",
        "output_tokens_per_s",
        "cost_usd_per_million_tokens",
    ] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k}");
    }
    assert_eq!(v["requests"], 300);
    assert_eq!(v["dp"], 3);
    assert_eq!(v["scheduler"], "static-slots");
    let label = v["label"].as_str().unwrap();
    assert!(
        label.starts_with("simulated on inf2-profile (calibration MAPE"),
        "{label}"
    );
    // A price the profile lacks gives null, not a number.
    let out = run_ok(
        &[
            "simulate",
            "--model",
            "llama-3.1-8b",
            "--device",
            "h100-profile",
            "--instance",
            "p5.48xlarge",
            "--tp",
            "8",
            "--max-num-seqs",
            "64",
            "--seq-len",
            "2048",
            "--input-len",
            "1500",
            "--output-len",
            "250",
            "--concurrency",
            "16",
            "--requests",
            "100",
            "--price",
            "capacity-block",
            "--format",
            "json",
        ]
        .map(String::from),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["scheduler"], "chunked-prefill");
    if v["price_usd_per_hour"].is_null() {
        assert!(v["cost_usd_per_million_tokens"].is_null());
    }
}

#[test]
fn simulate_is_reproducible_and_writes_per_request_lines() {
    let dir = common::tempdir();
    let per = dir.path().join("req.jsonl");
    let per_s = common::path_str(&per);
    let a = sim(&[
        "--rate",
        "3",
        "--requests",
        "200",
        "--seed",
        "7",
        "--format",
        "json",
    ]);
    let mut with_file = a.clone();
    with_file.extend(["--per-request".to_string(), per_s]);
    let one = run_ok(&with_file);
    let two = run_ok(&a);
    assert_eq!(one, two);
    let lines = std::fs::read_to_string(&per).unwrap();
    assert_eq!(lines.lines().count(), 200);
    let first: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["simulated"], true);
    assert_eq!(first["prompt_tokens"], 1500);
}

#[test]
fn simulate_reads_a_workload_file() {
    let dir = common::tempdir();
    let w = dir.path().join("w.jsonl");
    std::fs::write(
        &w,
        "{\"prompt_tokens\": 1000, \"output_tokens\": 100, \"arrival_s\": 0}\n{\"prompt_tokens\": 500, \"output_tokens\": 50, \"arrival_s\": 0.5}\n",
    )
    .unwrap();
    let out = common::run_ok(&[
        "simulate",
        "--model",
        "llama-3.1-8b",
        "--device",
        "inf2-profile",
        "--instance",
        "inf2.24xlarge",
        "--tp",
        "8",
        "--max-num-seqs",
        "4",
        "--workload",
        &common::path_str(&w),
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["requests"], 2);
    assert_eq!(v["arrivals"], "trace");
    // A line without lengths is named.
    std::fs::write(
        &w,
        "{\"prompt_tokens\": 10, \"output_tokens\": 5}\n{\"arrival_s\": 1}\n",
    )
    .unwrap();
    let out = common::run_err(&[
        "simulate",
        "--model",
        "llama-3.1-8b",
        "--device",
        "inf2-profile",
        "--instance",
        "inf2.24xlarge",
        "--workload",
        &common::path_str(&w),
    ]);
    common::assert_one_line_error(&out, "w.jsonl:2: no lengths");
}

/// A workload's `prompt` text needs the model's tokenizer; a card without one here is a
/// one-line error naming the line and what to give instead.
#[test]
fn prompt_text_without_a_tokenizer_is_one_line() {
    let dir = common::tempdir();
    let w = dir.path().join("w.jsonl");
    std::fs::write(&w, "{\"prompt\": \"Hello there\", \"output_tokens\": 5}\n").unwrap();
    let out = common::run_err(&[
        "simulate",
        "--model",
        "llama-3.1-8b",
        "--device",
        "inf2-profile",
        "--instance",
        "inf2.24xlarge",
        "--workload",
        &common::path_str(&w),
    ]);
    common::assert_one_line_error(&out, "w.jsonl:1: `prompt` text needs a tokenizer");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tokenizer"), "{err}");
}

/// `prompt` texts are counted with the model's own tokenizer (the default model's GGUF), as
/// transformers counts them: the counts of the reference fixtures
/// (tests/fixtures/reference.json, `tokenizer(text)['input_ids']`).
#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "needs the default model from scripts/setup (scripts/test turns on model-tests)"
)]
fn prompt_text_is_counted_with_the_models_tokenizer() {
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(common::home().join("tests/fixtures/reference.json")).unwrap(),
    )
    .unwrap();
    let cases = reference["cases"].as_array().unwrap();
    let mut lines = String::new();
    let mut expected = Vec::new();
    for c in cases {
        let line = serde_json::json!({"prompt": c["text_fed"], "output_tokens": 8});
        lines.push_str(&format!("{line}\n"));
        expected.push(c["prompt_tokens"].as_array().unwrap().len() as u64);
    }
    let dir = common::tempdir();
    let w = dir.path().join("w.jsonl");
    std::fs::write(&w, lines).unwrap();
    let weights = common::default_weights();
    for tokenizer in [None, Some(common::path_str(&weights))] {
        let per = dir.path().join("per.jsonl");
        let _ = std::fs::remove_file(&per);
        let mut args = vec![
            "simulate",
            "--model",
            "llama",
            "--device",
            "inf2-profile",
            "--instance",
            "inf2.xlarge",
            "--max-num-seqs",
            "2",
            "--workload",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.push(common::path_str(&w));
        args.extend(["--per-request".into(), common::path_str(&per)]);
        if let Some(t) = &tokenizer {
            args.extend(["--tokenizer".into(), t.clone()]);
        }
        run_ok(&args);
        let got: Vec<u64> = std::fs::read_to_string(&per)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["prompt_tokens"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(got, expected, "tokenizer {tokenizer:?}");
    }
}

#[test]
fn simulate_bad_input_is_one_line() {
    run_err(
        &sim(&["--concurrency", "0"]),
        "--concurrency must be at least 1",
    );
    run_err(&sim(&["--rate", "0"]), "--rate must be a positive number");
    run_err(&sim(&["--rate", "-1"]), "--rate must be a positive number");
    run_err(
        &sim(&["--rate", "1", "--input-len-stddev", "-5"]),
        "--input-len-stddev must be zero or positive",
    );
    // --seq-len 2048 < 1500 + 600.
    let mut long = sim(&["--rate", "1"]);
    let i = long.iter().position(|s| s == "--output-len").unwrap() + 1;
    long[i] = "600".into();
    run_err(
        &long,
        "--seq-len 2048 is below input + output = 1500 + 600 = 2100 tokens",
    );
    run_err(
        &sim(&["--rate", "1", "--buckets", "512,256"]),
        "--buckets must increase: 512 is followed by 256",
    );
    run_err(
        &sim(&["--rate", "1", "--buckets", "128,4096"]),
        "bucket 4096 is above --seq-len 2048",
    );
    run_err(
        &sim(&["--rate", "1", "--buckets", "128,1024"]),
        "1500-token prompt is longer than the largest context-encoding bucket (1024)",
    );
    let mut wide = sim(&["--rate", "1"]);
    let i = wide.iter().position(|s| s == "--dp").unwrap() + 1;
    wide[i] = "4".into();
    run_err(&wide, "--dp 4 × --tp 8 = 32 NeuronCores, more than the 24");
    let mut big = sim(&["--rate", "1"]);
    let i = big.iter().position(|s| s == "--max-num-seqs").unwrap() + 1;
    big[i] = "4096".into();
    run_err(
        &big,
        "--max-num-seqs 4096: the KV cache of 4096 × 2048 tokens needs",
    );
}

/// `simulate --device host --host-check REPORT`: the host profile of a run report's self-check.
fn host_sim(dir: &std::path::Path, gb_per_s: f64, extra: &[&str]) -> Value {
    let report = dir.join(format!("run-{gb_per_s}.json"));
    std::fs::write(
        &report,
        format!(
            r#"{{"environment": {{"cpu_model": "test cpu"}}, "host_check": {{"matmul_gflops": 1e9, "memory_gb_per_s": {gb_per_s}, "projected_ttft_ms": 1, "measured_ttft_ms": 1, "projected_tpot_ms": 1}}}}"#
        ),
    )
    .unwrap();
    let report = common::path_str(&report);
    let mut args = vec![
        "simulate",
        "--model",
        "llama",
        "--device",
        "host",
        "--host-check",
        &report,
        "--instance",
        "host",
        "--weights-dtype",
        "fp32",
        "--max-num-seqs",
        "1",
        "--seq-len",
        "256",
        "--no-chunked-prefill",
        "--input-len",
        "16",
        "--output-len",
        "64",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(&common::run_ok(&args)).unwrap()
}

/// With an unbounded matmul rate a decode step on the host reads the weights once: SmolLM2-
/// 135M has 134.5M parameters (its model card on Hugging Face), 538 MB in f32, so at
/// 100 GB/s a step takes about 5.38 ms (plus a little KV cache), and twice as long at half
/// the bandwidth.
#[test]
fn simulate_takes_the_host_profile_of_a_run_report() {
    let dir = common::tempdir();
    let fast = host_sim(
        dir.path(),
        100.0,
        &["--concurrency", "1", "--requests", "4"],
    );
    assert_eq!(fast["simulated"], true);
    assert_eq!(fast["profile"], "host", "{fast}");
    let tpot = fast["tpot_ms"]["mean"].as_f64().unwrap();
    assert!((tpot / 5.38 - 1.0).abs() < 0.05, "TPOT {tpot} ms");
    let slow = host_sim(dir.path(), 50.0, &["--concurrency", "1", "--requests", "4"]);
    let ratio = slow["tpot_ms"]["mean"].as_f64().unwrap() / tpot;
    assert!((ratio - 2.0).abs() < 1e-6, "{ratio}");
    // A serve samples file lists requests as they end; the replay takes them as they came.
    let samples = dir.path().join("served.jsonl");
    let line = |i: u32, start: f64, out: u32| {
        format!(
            r#"{{"kind":"sample","index":{i},"start_offset_ms":{start},"prompt_tokens":16,"output_tokens":{out},"tokenize_ms":0.1,"ttft_ms":10,"e2e_ms":{e2e},"tpot_ms":1,"decode_step_ms":{steps:?},"batch":1,"status":"ok"}}"#,
            e2e = 10 + out - 1,
            steps = vec![1.0; out as usize - 1]
        )
    };
    let header = r#"{"kind":"header","schema_version":1,"environment":{"cpu_model":"x","cores":1,"threads":1,"run_on":"cpu","device_name":"x","dtype":"f32","weights_dtype":"f32","matmul_precision":"highest","tch_version":"0.24.0","torch_version":"2.11.0","profiler_version":"0.1.0","git_commit":null,"model":"smollm2-135m","weights_kind":"gguf","weights_sha256":null,"weights_bytes":1,"command_line":"x","started_at":"2026-01-01T00:00:00Z"},"workload":{"prompt_source":"x","input_len":null,"output_len":16,"batch":1,"requests":null,"duration_s":null,"warmup":0,"seed":0,"ignore_eos":false}}"#;
    std::fs::write(
        &samples,
        format!("{header}\n{}\n{}\n", line(0, 5000.0, 4), line(1, 0.0, 40)),
    )
    .unwrap();
    let s = host_sim(
        dir.path(),
        100.0,
        &["--samples", &common::path_str(&samples)],
    );
    assert_eq!(s["requests"], 2, "{s}");
    // The late short request did not wait behind the early long one (1 slot).
    assert!(s["queue_ms"]["max"].as_f64().unwrap() < 1.0, "{s}");

    let report = common::path_str(&dir.path().join("run-100.json"));
    let base = [
        "simulate",
        "--model",
        "llama",
        "--instance",
        "host",
        "--concurrency",
        "1",
    ];
    let err = |extra: &[&str], needle: &str| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        common::assert_one_line_error(&common::run_err(&args), needle);
    };
    err(&["--device", "host"], "--device host needs --host-check");
    err(
        &["--device", "inf2-profile", "--host-check", &report],
        "--host-check goes with --device host",
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"host_check": {"matmul_gflops": 10, "memory_gb_per_s": -1}}"#,
    )
    .unwrap();
    err(
        &["--device", "host", "--host-check", &common::path_str(&bad)],
        "`host_check.memory_gb_per_s` is -1, expected a positive number",
    );
    std::fs::write(&bad, r#"{"requests": 3}"#).unwrap();
    err(
        &["--device", "host", "--host-check", &common::path_str(&bad)],
        "no `host_check`",
    );
}

/// `simulate --device host` at 4 slots on a run report whose `host_check` has `keys` added
/// (matmul 100 GFLOP/s, memory 10 GB/s): 4 requests of 64 prompt and 64 output tokens
/// started together.
fn host_sim_4(dir: &std::path::Path, name: &str, keys: &str) -> std::process::Output {
    let report = dir.join(format!("{name}.json"));
    std::fs::write(
        &report,
        format!(
            r#"{{"environment": {{"cpu_model": "test cpu"}}, "host_check": {{"matmul_gflops": 100, "memory_gb_per_s": 10{keys}}}}}"#
        ),
    )
    .unwrap();
    let report = common::path_str(&report);
    let args = [
        "simulate",
        "--model",
        "llama",
        "--device",
        "host",
        "--host-check",
        &report,
        "--instance",
        "host",
        "--weights-dtype",
        "fp32",
        "--max-num-seqs",
        "4",
        "--seq-len",
        "256",
        "--no-chunked-prefill",
        "--concurrency",
        "4",
        "--requests",
        "4",
        "--input-len",
        "64",
        "--output-len",
        "64",
        "--format",
        "json",
    ];
    common::profiler()
        .args(args)
        .output()
        .expect("cannot start profiler")
}

/// The prompt matmul efficiency and per-row decode cost a run measured on the model enter
/// the host profile: with 4 rows in every decode step, each step is 4 × `decode_seq_ms`
/// longer, and a prompt's matmuls take 1/efficiency as long. A report without them (or with
/// them null) keeps the two-rate profile.
#[test]
fn simulate_host_check_takes_the_measured_step_costs() {
    let dir = common::tempdir();
    let get = |v: &Value, k: &str| v[k]["mean"].as_f64().unwrap();
    let ok = |out: std::process::Output| -> Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let plain = ok(host_sim_4(dir.path(), "plain", ""));
    let nulls = ok(host_sim_4(
        dir.path(),
        "nulls",
        r#", "prefill_compute_efficiency": null, "decode_seq_ms": null"#,
    ));
    assert_eq!(get(&plain, "tpot_ms"), get(&nulls, "tpot_ms"));
    let rows = ok(host_sim_4(
        dir.path(),
        "rows",
        r#", "prefill_compute_efficiency": 1, "decode_seq_ms": 20, "decode_step_1_ms": 60"#,
    ));
    let extra = get(&rows, "tpot_ms") - get(&plain, "tpot_ms");
    assert!((extra - 80.0).abs() < 1e-6, "4 rows × 20 ms: {extra}");
    assert_eq!(get(&rows, "ttft_ms"), get(&plain, "ttft_ms"));
    // Decode steps read the weights at half the rate: each takes twice as long (the median
    // gap between tokens is a decode step; the prompts stay compute-bound).
    let half = ok(host_sim_4(
        dir.path(),
        "half",
        r#", "bandwidth_efficiency": 0.5, "decode_seq_ms": 0"#,
    ));
    let step = |v: &Value| v["itl_ms"]["p50"].as_f64().unwrap();
    let ratio = step(&half) / step(&plain);
    assert!((ratio - 2.0).abs() < 1e-6, "{ratio}");
    // A 64-token prompt at 100 GFLOP/s is compute-bound: its matmuls take 4 times as long
    // at efficiency 0.25, its attention (a few percent of the FLOPs) as long (the first
    // request's TTFT is its prefill alone).
    let slow = ok(host_sim_4(
        dir.path(),
        "slow",
        r#", "prefill_compute_efficiency": 0.25"#,
    ));
    let first = |v: &Value| v["ttft_ms"]["min"].as_f64().unwrap();
    let ratio = first(&slow) / first(&plain);
    assert!(ratio > 3.5 && ratio < 4.0, "{ratio}");
    for (keys, needle) in [
        (
            r#", "decode_seq_ms": -1"#,
            "`host_check.decode_seq_ms` is -1, expected a number of ms, at least 0 or null",
        ),
        (
            r#", "prefill_compute_efficiency": 1.5"#,
            "`host_check.prefill_compute_efficiency` is 1.5, expected a number in (0, 1] or null",
        ),
        (
            r#", "bandwidth_efficiency": 0"#,
            "`host_check.bandwidth_efficiency` is 0, expected a number in (0, 1] or null",
        ),
        (
            r#", "decode_seq_ms": "fast""#,
            "`host_check.decode_seq_ms` is \"fast\", expected",
        ),
    ] {
        let out = host_sim_4(dir.path(), "bad", keys);
        assert!(!out.status.success(), "{keys}");
        common::assert_one_line_error(&out, needle);
    }
}

/// Decode steps timed at each row count price the decode steps: two tables that differ only
/// in the 4-row step (100 against 200 ms) give decode gaps 100 ms apart at 4 rows (the KV
/// term is the same); a malformed table is one line naming it.
#[test]
fn simulate_host_check_prices_decode_steps_from_the_timed_row_counts() {
    let dir = common::tempdir();
    let table = |four: u32| {
        format!(
            r#", "decode_context_tokens": 96, "decode_steps": [{{"rows": 1, "ms": 40}}, {{"rows": 2, "ms": 90}}, {{"rows": 4, "ms": {four}}}]"#
        )
    };
    let run = |name: &str, keys: &str| -> Value {
        let out = host_sim_4(dir.path(), name, keys);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let step = |v: &Value| v["itl_ms"]["p50"].as_f64().unwrap();
    let fast = run("fast", &table(100));
    let slow = run("slow", &table(200));
    assert!(
        (step(&slow) - step(&fast) - 100.0).abs() < 1e-6,
        "{} vs {}",
        step(&slow),
        step(&fast)
    );
    // Near the timed context the 4-row step is about the timed 100 ms (the contexts run
    // from 65 to 128 around the timed 96).
    assert!((step(&fast) - 100.0).abs() < 5.0, "{}", step(&fast));
    for (keys, needle) in [
        (
            r#", "decode_context_tokens": 96, "decode_steps": [{"rows": 2, "ms": 50}]"#,
            "`host_check.decode_steps` is [{\"ms\":50,\"rows\":2}]: expected",
        ),
        (
            r#", "decode_steps": [{"rows": 1, "ms": 50}]"#,
            "`host_check.decode_steps` needs `host_check.decode_context_tokens`",
        ),
    ] {
        let out = host_sim_4(dir.path(), "bad", keys);
        assert!(!out.status.success(), "{keys}");
        common::assert_one_line_error(&out, needle);
    }
}

#[test]
fn plan_json_follows_the_contract() {
    let out = common::run_ok(&[
        "plan",
        "--model",
        "llama-3.1-8b",
        "--device",
        "inf2-profile,h100-profile",
        "--rate",
        "5",
        "--input-len",
        "1500",
        "--output-len",
        "250",
        "--slo-ttft-ms",
        "2000",
        "--slo-tpot-ms",
        "100",
        "--slo-percentile",
        "99",
        "--trial-requests",
        "100",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert!(rows.len() >= 5);
    for r in rows {
        for k in [
            "profile",
            "instance",
            "tp",
            "dp",
            "max_num_seqs",
            "max_rate_per_instance",
            "instances_needed",
            "fleet_usd_per_hour",
            "cost_usd_per_million_tokens",
            "meets_slo",
            "reason",
        ] {
            assert!(r.get(k).is_some(), "{k} missing in {r}");
        }
        if r["meets_slo"] == true {
            let need = r["instances_needed"].as_f64().unwrap();
            let max = r["max_rate_per_instance"].as_f64().unwrap();
            assert!(need * max >= 5.0 && (need - 1.0) * max < 5.0, "{r}");
        }
    }
    // Ranked rows come first, cheapest first.
    let fleet: Vec<f64> = rows
        .iter()
        .take_while(|r| r["meets_slo"] == true && !r["fleet_usd_per_hour"].is_null())
        .map(|r| r["fleet_usd_per_hour"].as_f64().unwrap())
        .collect();
    assert!(!fleet.is_empty());
    assert!(fleet.windows(2).all(|w| w[0] <= w[1]), "{fleet:?}");
    assert!(v["recommendation"]
        .as_str()
        .unwrap()
        .contains("simulated on"));
}

#[test]
fn plan_chart_has_an_error_bar_per_point() {
    let dir = common::tempdir();
    let svg = dir.path().join("plan.svg");
    let out = common::run_ok(&[
        "plan",
        "--model",
        "llama-3.1-8b",
        "--device",
        "inf2-profile",
        "--rate",
        "2",
        "--input-len",
        "500",
        "--output-len",
        "100",
        "--slo-ttft-ms",
        "5000",
        "--trial-requests",
        "100",
        "--plot",
        svg.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let priced = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["meets_slo"] == true && !r["cost_usd_per_million_tokens"].is_null())
        .count();
    assert!(priced > 0);
    let text = std::fs::read_to_string(&svg).unwrap();
    // One horizontal (TTFT) and one vertical (cost) bar per point, each spanning the row's
    // interval.
    assert_eq!(text.matches("<circle").count(), priced);
    assert_eq!(text.matches("class=\"error-bar\"").count(), 2 * priced);
    let row = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["meets_slo"] == true && !r["cost_usd_per_million_tokens"].is_null())
        .unwrap();
    assert!(
        row["ttft_ms_at_percentile_low"].as_f64() < row["ttft_ms_at_percentile_high"].as_f64(),
        "{row}"
    );
}

#[test]
fn plan_bad_input_is_one_line() {
    let base = [
        "plan",
        "--model",
        "llama-3.1-8b",
        "--device",
        "inf2-profile",
        "--input-len",
        "100",
        "--output-len",
        "10",
        "--slo-ttft-ms",
        "1000",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    run_err(&with(&["--rate", "0"]), "--rate must be a positive number");
    run_err(
        &with(&["--rate", "1", "--slo-percentile", "0"]),
        "--slo-percentile must be in (0, 100]",
    );
}

#[test]
fn project_takes_compile_flags_and_keeps_its_contract() {
    let base = [
        "project",
        "--model",
        "llama-3.1-8b",
        "--device",
        "inf2-profile",
        "--instance",
        "inf2.48xlarge",
        "--tp",
        "8",
        "--input-len",
        "1024",
        "--output-len",
        "256",
        "--format",
        "json",
    ];
    let get = |extra: &[&str]| -> Value {
        let a: Vec<&str> = base.iter().chain(extra).copied().collect();
        let v: Value = serde_json::from_str(&common::run_ok(&a)).unwrap();
        v["projections"][0].clone()
    };
    let plain = get(&[]);
    let compiled = get(&[
        "--seq-len",
        "4096",
        "--max-num-seqs",
        "8",
        "--ctx-batch-size",
        "1",
        "--dp",
        "3",
    ]);
    for k in [
        "ttft_ms",
        "tpot_ms",
        "e2e_ms",
        "output_tokens_per_s",
        "cost_usd_per_million_tokens",
    ] {
        assert!(compiled[k].as_f64().is_some(), "{k}");
    }
    // Eight compiled slots make a lone request's decode steps dearer.
    assert!(compiled["tpot_ms"].as_f64() > plain["tpot_ms"].as_f64());
    let out = common::run_err(&[&base[..], &["--seq-len", "1000"]].concat());
    common::assert_one_line_error(&out, "--seq-len 1000 is below input + output");
    let out = common::run_err(&[&base[..], &["--dp", "4"]].concat());
    common::assert_one_line_error(&out, "--dp 4 × --tp 8 = 32 NeuronCores");
}

/// `simulate --ep-degree` on a mixture-of-experts model: the report carries the degree and
/// its heading says so; a dense model refuses it in one line.
#[test]
fn simulate_takes_an_expert_parallel_degree() {
    let moe = |ep: &str, format: &str| {
        common::run_ok(&[
            "simulate",
            "--model",
            "qwen3-30b-a3b",
            "--device",
            "trn2-profile",
            "--instance",
            "trn2.48xlarge",
            "--tp",
            "16",
            "--ep-degree",
            ep,
            "--max-num-seqs",
            "8",
            "--input-len",
            "1024",
            "--output-len",
            "128",
            "--concurrency",
            "8",
            "--requests",
            "40",
            "--format",
            format,
        ])
    };
    let v: Value = serde_json::from_str(&moe("16", "json")).unwrap();
    assert_eq!(v["ep_degree"], 16, "{v}");
    let w: Value = serde_json::from_str(&moe("1", "json")).unwrap();
    assert_eq!(w["ep_degree"], 1);
    // whole 768-wide experts against 48-wide shards on a 128-wide engine: faster prefill
    assert!(
        v["ttft_ms"]["p50"].as_f64() < w["ttft_ms"]["p50"].as_f64(),
        "{} vs {}",
        v["ttft_ms"],
        w["ttft_ms"]
    );
    assert!(
        moe("16", "table").contains("TP 16 (expert parallelism 16) × 1 replica(s)"),
        "heading"
    );
    run_err(
        &sim(&["--ep-degree", "2", "--concurrency", "2"]),
        "--ep-degree 2 applies to mixture-of-experts models",
    );
}
