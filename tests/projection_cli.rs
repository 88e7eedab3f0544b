//! `profiler project | compare | devices | models` through the real binary (no inference).

mod common;

use serde_json::Value;

#[test]
fn project_json_follows_the_contract() {
    let out = common::run_ok(&[
        "project",
        "--model",
        "llama-3.1-8b",
        "--device",
        "inf2-profile",
        "--input-len",
        "128",
        "--output-len",
        "128",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["schema_version"], 1);
    let rows = v["projections"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["instance"].as_str().unwrap())
        .collect();
    for i in [
        "inf2.xlarge",
        "inf2.8xlarge",
        "inf2.24xlarge",
        "inf2.48xlarge",
    ] {
        assert!(names.contains(&i), "{i} missing from {names:?}");
    }
    for r in rows {
        for key in [
            "profile",
            "instance",
            "tp",
            "batch",
            "input_len",
            "output_len",
            "weights_dtype",
            "fits",
            "ttft_ms",
            "tpot_ms",
            "e2e_ms",
            "output_tokens_per_s",
            "cost_usd_per_million_output_tokens",
            "cost_usd_per_million_tokens",
            "energy_kwh_per_million_tokens",
            "calibration_mape",
            "sources",
        ] {
            assert!(r.get(key).is_some(), "{key} missing");
        }
        if r["fits"] == true {
            // The cost formula: hourly price / 3600 / output tokens per second × 1e6.
            let price = r["price_usd_per_hour"].as_f64().unwrap();
            let tps = r["output_tokens_per_s"].as_f64().unwrap();
            let cost = r["cost_usd_per_million_output_tokens"].as_f64().unwrap();
            assert!((cost - price / 3600.0 / tps * 1e6).abs() <= 1e-9 * cost);
            assert!(r["e2e_ms"].as_f64().unwrap() >= r["ttft_ms"].as_f64().unwrap());
        }
    }
}

#[test]
fn seventy_b_does_not_fit_one_inferentia2_chip() {
    let out = common::run_ok(&[
        "project",
        "--model",
        "llama-3.1-70b",
        "--device",
        "inf2-profile",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let row = |i: &str| {
        v["projections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["instance"] == i)
            .unwrap()
            .clone()
    };
    assert_eq!(row("inf2.xlarge")["fits"], false);
    assert!(
        row("inf2.xlarge")["memory_required_bytes"]
            .as_u64()
            .unwrap()
            > 100 << 30
    );
    assert_eq!(row("inf2.48xlarge")["fits"], true);
}

#[test]
fn compare_sorts_by_cost_and_draws_the_chart() {
    let dir = common::tempdir();
    let svg = dir.path().join("c.svg");
    let s = common::path_str(&svg);
    let out = common::run_ok(&[
        "compare",
        "--model",
        "llama-3.1-8b",
        "--device",
        "all",
        "--input-len",
        "512",
        "--output-len",
        "128",
        "--slo-tpot-ms",
        "50",
        "--format",
        "json",
        "--plot",
        &s,
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg") || text.starts_with("<?xml"),
        "not an SVG"
    );
    assert!(
        text.contains("TPOT") && text.contains("1M"),
        "axis labels with units"
    );
    assert!(!v.to_string().contains("NaN"));
    let table = common::run_ok(&[
        "compare",
        "--model",
        "llama-3.1-8b",
        "--input-len",
        "512",
        "--output-len",
        "128",
    ]);
    assert!(table.to_lowercase().contains("projected"), "{table}");
}

/// `compare` takes the compile and serving flags of `project` (issue: Neuron compile
/// configuration): the search stays within the slots, replicas count, and an instance that
/// cannot hold the replicas says so.
#[test]
fn compare_takes_the_compile_and_serving_flags() {
    let out = common::run_ok(&[
        "compare",
        "--model",
        "llama-3.1-8b",
        "--device",
        "inf2-profile",
        "--input-len",
        "1500",
        "--output-len",
        "250",
        "--slo-tpot-ms",
        "1000",
        "--seq-len",
        "2048",
        "--max-num-seqs",
        "8",
        "--ctx-batch-size",
        "1",
        "--buckets",
        "512,2048",
        "--dp",
        "3",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let rows = v["rows"].as_array().unwrap();
    let row = |name: &str| rows.iter().find(|r| r["instance"] == name).unwrap();
    let big = row("inf2.48xlarge");
    assert_eq!(big["meets_slo"], true);
    assert_eq!((big["tp"].as_u64(), big["dp"].as_u64()), (Some(8), Some(3)));
    assert_eq!(big["batch"], 8);
    assert_eq!(big["max_num_seqs"], 8);
    assert_eq!(big["padded_input_len"], 2048);
    let small = row("inf2.xlarge");
    assert_eq!(small["meets_slo"], false);
    assert!(small["reason"].as_str().unwrap().contains("--dp 3"));
    let err = common::run_err(&[
        "compare",
        "--model",
        "llama-3.1-8b",
        "--input-len",
        "1500",
        "--output-len",
        "250",
        "--seq-len",
        "1024",
    ]);
    common::assert_one_line_error(&err, "--seq-len 1024 is below");
}

#[test]
fn devices_and_models_list_one_line_each() {
    let d = common::run_ok(&["devices"]);
    for p in [
        "inf2-profile",
        "trn1-profile",
        "trn2-profile",
        "a10g-profile",
        "l4-profile",
        "l40s-profile",
        "a100-profile",
        "h100-profile",
        "h200-profile",
    ] {
        assert_eq!(
            d.lines().filter(|l| l.contains(p)).count(),
            1,
            "{p} in:\n{d}"
        );
    }
    let m = common::run_ok(&["models"]);
    for c in [
        "smollm2-135m",
        "llama-3.1-8b",
        "llama-3.1-405b",
        "mistral-7b",
        "codellama-13b",
    ] {
        assert_eq!(
            m.lines().filter(|l| l.contains(c)).count(),
            1,
            "{c} in:\n{m}"
        );
    }
}

/// `--device` takes a profile file: a user's copy with its own name and price is used as
/// it is (the cost doubles with the price), and a broken copy is refused naming the file.
#[test]
fn device_accepts_a_profile_file() {
    let dir = common::tempdir();
    let shipped =
        std::fs::read_to_string(common::home().join("profiles/inf2-profile.toml")).unwrap();
    let mine = shipped
        .replace("name = \"inf2-profile\"", "name = \"my-inf2\"")
        .replace("usd_per_hour = 0.7582,", "usd_per_hour = 1.5164,");
    assert_ne!(mine, shipped);
    let path = dir.path().join("my-inf2.toml");
    std::fs::write(&path, mine).unwrap();
    let cost = |device: &str| -> f64 {
        let out = common::run_ok(&[
            "project",
            "--model",
            "llama-3.1-8b",
            "--device",
            device,
            "--instance",
            "inf2.xlarge",
            "--input-len",
            "128",
            "--output-len",
            "128",
            "--format",
            "json",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        let row = &v["projections"].as_array().unwrap()[0];
        assert_eq!(
            row["profile"],
            if device.ends_with(".toml") {
                "my-inf2"
            } else {
                "inf2-profile"
            }
        );
        row["cost_usd_per_million_tokens"].as_f64().unwrap()
    };
    let p = common::path_str(&path);
    let ratio = cost(&p) / cost("inf2-profile");
    assert!((ratio - 2.0).abs() < 1e-6, "cost ratio {ratio}");
    std::fs::write(&path, "name = \"broken\"\n").unwrap();
    let out = common::run_err(&["project", "--model", "llama-3.1-8b", "--device", &p]);
    common::assert_one_line_error(&out, &p);
}

#[test]
fn compare_keeps_its_table_when_nothing_can_be_plotted() {
    let dir = common::tempdir();
    let svg = dir.path().join("p.svg");
    let out = common::profiler()
        .args([
            "compare",
            "--model",
            "llama-3.1-405b",
            "--device",
            "l4-profile",
            "--plot",
            &common::path_str(&svg),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("g6.48xlarge"), "{stdout}");
    assert!(stdout.contains("No instance fits the model"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning: --plot"), "{stderr}");
    assert!(!svg.exists());
}

#[test]
fn a_profile_named_twice_is_projected_once() {
    let out = common::run_ok(&[
        "project",
        "--model",
        "llama-3.1-8b",
        "--device",
        "inf2,inf2-profile",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v["projections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["instance"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "inf2.xlarge",
            "inf2.8xlarge",
            "inf2.24xlarge",
            "inf2.48xlarge"
        ]
    );
}

/// Every shipped card projects on every profile: finite, positive latencies wherever the
/// model fits, and the largest models fit somewhere.
#[test]
fn every_shipped_card_projects_on_every_profile() {
    let dir = common::home().join("models");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "toml").then(|| p.file_stem().unwrap().to_str().unwrap().to_string())
        })
        .collect();
    names.sort();
    assert!(names.len() >= 24, "{names:?}");
    let profiles = std::fs::read_dir(common::home().join("profiles"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "toml")
        })
        .count();
    for name in &names {
        let out = common::run_ok(&[
            "project", "--model", name, "--device", "all", "--format", "json",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        let rows = v["projections"].as_array().unwrap();
        let mut seen: Vec<&str> = rows
            .iter()
            .map(|r| r["profile"].as_str().unwrap())
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), profiles, "{name}: rows for {seen:?}");
        let mut fits = 0;
        for r in rows {
            if r["fits"] == true {
                fits += 1;
                for k in ["ttft_ms", "tpot_ms", "e2e_ms", "output_tokens_per_s"] {
                    let x = r[k].as_f64().unwrap_or(f64::NAN);
                    assert!(x.is_finite() && x > 0.0, "{name} {k} = {x}: {r}");
                }
            }
        }
        assert!(fits > 0, "{name} fits nowhere");
    }
}

/// A Hugging Face config.json (or its folder) is a model for project, compare and models.
#[test]
fn hf_config_is_a_model_everywhere() {
    let fixtures = common::home().join("tests/fixtures/hf-configs");
    let gpt = fixtures.join("gpt-oss-20b/config.json");
    let gpt = gpt.to_str().unwrap();
    let out = common::run_ok(&["models", "--show", gpt]);
    assert!(out.contains("model              gpt-oss-20b"), "{out}");
    assert!(out.contains("parameters total   20.91 B"), "{out}");
    assert!(
        out.contains("windowed layers    12 of 24 attend to 128 tokens"),
        "{out}"
    );
    assert!(out.contains("quantization       mxfp4"), "{out}");
    assert!(
        out.contains("note               rope_scaling of type \"yarn\""),
        "{out}"
    );
    let card = common::run_ok(&["models", "--show", "gpt-oss-20b"]);
    assert!(card.contains("parameters total   20.91 B"), "{card}");
    let dir = fixtures.join("Qwen3-235B-A22B");
    let out = common::run_ok(&[
        "project",
        "--model",
        dir.to_str().unwrap(),
        "--device",
        "trn1-profile",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(!v["projections"].as_array().unwrap().is_empty());
    common::run_ok(&[
        "compare", "--model", gpt, "--device", "all", "--format", "json",
    ]);
    // Unknown model_type: one line naming the file and the type.
    let tmp = common::tempdir();
    let bad = tmp.path().join("config.json");
    std::fs::write(&bad, r#"{"model_type": "falcon", "hidden_size": 8}"#).unwrap();
    let e = common::run_err(&["project", "--model", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(
        err.contains("model_type \"falcon\" is not supported"),
        "{err}"
    );
    assert!(err.contains("config.json"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// The distinct-experts term: at batch 1 Qwen3-30B-A3B reads its active experts only, so
/// its decode step is far below the dense 32B's; at batch 64 it reads nearly all experts.
#[test]
fn moe_decode_reads_more_experts_as_the_batch_grows() {
    let tpot = |model: &str, batch: &str| -> f64 {
        let out = common::run_ok(&[
            "project",
            "--model",
            model,
            "--device",
            "h100-profile",
            "--instance",
            "p5.48xlarge",
            "--tp",
            "1",
            "--batch",
            batch,
            "--format",
            "json",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["projections"][0]["tpot_ms"].as_f64().unwrap()
    };
    let (moe1, dense1) = (tpot("qwen3-30b-a3b", "1"), tpot("qwen3-32b", "1"));
    assert!(moe1 < dense1 / 3.0, "{moe1} vs {dense1}");
    let moe64 = tpot("qwen3-30b-a3b", "64");
    assert!(moe64 > 3.0 * moe1, "{moe64} vs {moe1}");
}

/// `compare` says whether the projection ranks the two cheapest instances apart: two GPU
/// profiles with assumed parameters (a factor 2.3 either way) cannot be told apart, one
/// calibrated instance against another of the same family can be.
#[test]
fn compare_says_when_the_ranking_is_not_decided() {
    let out = common::run_ok(&[
        "compare",
        "--model",
        "llama-3.1-8b",
        "--device",
        "h100-profile,h200-profile",
    ]);
    assert!(
        out.contains("\nRanking not decided: the cost intervals of "),
        "{out}"
    );
    assert!(out.contains("Intervals [low–high]"), "{out}");
    assert!(out.contains("factor 2.3 (assumed parameters"), "{out}");
    // trn1.2xlarge and trn1.32xlarge at batch 64: calibrated TPOT, far apart in cost.
    let json = common::run_ok(&[
        "compare",
        "--model",
        "llama-3.1-8b",
        "--device",
        "trn1-profile",
        "--batch",
        "1",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&json).unwrap();
    let ranking = v["ranking"].as_str().unwrap();
    let rows = v["rows"].as_array().unwrap();
    let (a, b) = (&rows[0], &rows[1]);
    let decided = a["cost_usd_per_million_tokens_high"].as_f64().unwrap()
        < b["cost_usd_per_million_tokens_low"].as_f64().unwrap();
    assert_eq!(ranking.starts_with("Ranking decided"), decided, "{ranking}");
}

/// Every dtype flag takes the same spellings, parsed once by the command line: projections
/// write the canonical name, and the commands that run the model refuse fp8 there (exit 2,
/// the flag named, what runs listed) before any engine starts.
#[test]
fn dtype_flags_take_every_spelling_and_runs_refuse_fp8() {
    for (flag, written) in [
        ("float16", "fp16"),
        ("i8", "int8"),
        ("FP8", "fp8"),
        ("f32", "fp32"),
    ] {
        let out = common::run_ok(&[
            "project",
            "--model",
            "llama-3.1-8b",
            "--device",
            "inf2-profile",
            "--weights-dtype",
            flag,
            "--format",
            "json",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        for r in v["projections"].as_array().unwrap() {
            assert_eq!(r["weights_dtype"], written, "--weights-dtype {flag}");
        }
    }
    // `--dtype` is the visible alias: clap names the flag by its long name.
    for (args, flag) in [
        (&["run", "--weights-dtype", "fp8"][..], "--weights-dtype"),
        (
            &["generate", "--prompt", "hi", "--dtype", "float8"],
            "--weights-dtype",
        ),
        (&["serve", "--weights-dtype", "fp8"], "--weights-dtype"),
        (
            &["accuracy", "--prompt", "hi", "--weights-dtype", "fp8"],
            "--weights-dtype",
        ),
        (
            &["accuracy", "--prompt", "hi", "--reference-dtype", "fp8"],
            "--reference-dtype",
        ),
    ] {
        let out = common::run_err(args);
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or_default();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            first.contains(&format!("for '{flag} "))
                && first.contains("fp8 weights do not run here")
                && first.contains("f32, bf16, f16, int8, int4"),
            "{args:?}: {err}"
        );
    }
}

/// Expert parallelism (`--ep-degree`): whole experts per group run at the full matrix-engine
/// width in prefill, where Qwen3-30B-A3B's 768-wide experts sharded over 16 units are 48
/// wide (below Trainium's 128); in decode the busiest group sets the pace. The same weights
/// are stored either way.
#[test]
fn expert_parallelism_trades_decode_balance_for_whole_experts() {
    let project = |device: &str, tp: &str, ep: &str| -> Value {
        let out = common::run_ok(&[
            "project",
            "--model",
            "qwen3-30b-a3b",
            "--device",
            device,
            "--instance",
            if device == "trn2-profile" {
                "trn2.48xlarge"
            } else {
                "p5.48xlarge"
            },
            "--tp",
            tp,
            "--ep-degree",
            ep,
            "--batch",
            "8",
            "--input-len",
            "2048",
            "--output-len",
            "256",
            "--format",
            "json",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["projections"][0].clone()
    };
    let f = |r: &Value, k: &str| r[k].as_f64().unwrap();
    let (tp, ep) = (
        project("trn2-profile", "16", "1"),
        project("trn2-profile", "16", "16"),
    );
    assert_eq!(
        (tp["ep_degree"].as_u64(), ep["ep_degree"].as_u64()),
        (Some(1), Some(16))
    );
    assert!(f(&ep, "ttft_ms") < f(&tp, "ttft_ms"), "{ep} vs {tp}");
    assert!(f(&ep, "tpot_ms") > f(&tp, "tpot_ms"), "{ep} vs {tp}");
    assert_eq!(tp["memory_required_bytes"], ep["memory_required_bytes"]);
    let notes = |r: &Value| r["notes"].to_string();
    assert!(
        notes(&tp).contains("each routed expert is 48 wide per logical NeuronCore"),
        "{}",
        notes(&tp)
    );
    assert!(
        notes(&ep).contains("expert parallelism 16: 16 groups of 1"),
        "{}",
        notes(&ep)
    );
    // GPU profiles model no tile width: expert parallelism only adds the busiest group
    let (g1, g8) = (
        project("h100-profile", "8", "1"),
        project("h100-profile", "8", "8"),
    );
    assert!(f(&g8, "ttft_ms") >= f(&g1, "ttft_ms"), "{g8} vs {g1}");
    assert!(f(&g8, "tpot_ms") > f(&g1, "tpot_ms"), "{g8} vs {g1}");
    assert!(!notes(&g1).contains("wide per"), "{}", notes(&g1));
    // Neuron's blockwise expert prefill; GPU grouped GEMMs compute tokens as they come
    assert!(
        notes(&tp).contains("whole 512-token blocks"),
        "{}",
        notes(&tp)
    );
    assert!(!notes(&g1).contains("blocks"), "{}", notes(&g1));
}

#[test]
fn bad_expert_parallel_degrees_are_one_line() {
    let base = [
        "project",
        "--device",
        "trn2-profile",
        "--instance",
        "trn2.48xlarge",
    ];
    for ((model, tp, ep), needle) in [
        (
            ("qwen3-30b-a3b", "16", "3"),
            "--ep-degree 3 does not divide --tp 16",
        ),
        (
            ("llama-3.1-8b", "8", "2"),
            "--ep-degree 2 applies to mixture-of-experts models; this one is dense",
        ),
        (
            ("mixtral-8x7b", "16", "16"),
            "--ep-degree 16 is more than the model's 8 routed experts",
        ),
        (
            ("qwen3-30b-a3b", "16", "0"),
            "--ep-degree must be at least 1",
        ),
    ] {
        let args = ["--model", model, "--tp", tp, "--ep-degree", ep];
        let out = common::run_err(&[&base[..], &args[..]].concat());
        common::assert_one_line_error(&out, needle);
    }
}

/// Trn2 has no MXFP4 kernels: vllm-neuron dequantizes gpt-oss-120b's MXFP4 experts to BF16
/// at load, and its tutorial says the model then does not fit at TP 8 on a trn2.48xlarge
/// and needs TP 16 or more. Trn3 serves MXFP4 as stored.
#[test]
fn mxfp4_checkpoints_are_dequantized_where_the_runtime_has_no_kernels() {
    let project = |device: &str, tp: &str| -> Value {
        let out = common::run_ok(&[
            "project",
            "--model",
            "gpt-oss-120b",
            "--device",
            device,
            "--tp",
            tp,
            "--input-len",
            "512",
            "--output-len",
            "128",
            "--seq-len",
            "768",
            "--format",
            "json",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["projections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["instance"] != "trn2.3xlarge")
            .unwrap()
            .clone()
    };
    let (tp8, tp16) = (project("trn2-profile", "8"), project("trn2-profile", "16"));
    assert_eq!(
        (tp8["fits"].as_bool(), tp16["fits"].as_bool()),
        (Some(false), Some(true))
    );
    assert!(tp8["notes"]
        .to_string()
        .contains("mxfp4 weights are dequantized to bf16"));
    // about 117B parameters at 2 bytes; MXFP4 experts (4.25 bits) would be about a quarter
    let gib = |r: &Value| r["memory_required_bytes"].as_f64().unwrap() / 1073741824.0;
    assert!(gib(&tp16) > 200.0, "{}", gib(&tp16));
    let trn3 = project("trn3-profile", "8");
    assert!(gib(&trn3) < 80.0, "{}", gib(&trn3));
    assert!(!trn3["notes"].to_string().contains("dequantized"));
}
