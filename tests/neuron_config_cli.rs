//! `--neuron-config` on `project`, `compare`, `simulate` and `plan` through the real binary,
//! on the fixtures of tests/fixtures/neuron_config (written to the NxD Inference and
//! optimum-neuron schemas; see the README there).

mod common;

use serde_json::{json, Value};

fn fixture(name: &str) -> String {
    common::path_str(
        &common::home()
            .join("tests/fixtures/neuron_config")
            .join(name),
    )
}

const NXDI: &str = "nxdi-llama-3.1-8b-trn2-tp32";
const OPTIMUM: &str = "optimum-neuron-llama-3.1-8b-inf2-tp8";
const TNX: &str = "optimum-neuron-tnx-llama-3.1-8b-inf2-tp2";

fn json_of(args: &[&str]) -> Value {
    serde_json::from_str(&common::run_ok(args)).expect("stdout is not JSON")
}

fn instances(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["instance"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn project_runs_the_compiled_configuration_where_it_fits() {
    let dir = fixture(NXDI);
    let v = json_of(&[
        "project",
        "--neuron-config",
        &dir,
        "--device",
        "inf2-profile,trn2-profile",
        "--format",
        "json",
    ]);
    // The contract keys are all there; neuron_config is added beside them.
    for key in ["schema_version", "model", "model_parameters", "projections"] {
        assert!(v.get(key).is_some(), "{key} missing");
    }
    assert_eq!(
        v["model"], NXDI,
        "the architecture comes from the directory"
    );
    // tp_degree 32 at LNC 2: 8 Trainium2 chips, so the 16-chip trn2 sizes only.
    assert_eq!(
        instances(&v, "projections"),
        ["trn2.48xlarge", "trn2u.48xlarge"]
    );
    for r in v["projections"].as_array().unwrap() {
        assert_eq!(r["tp"], 32);
        assert_eq!(r["batch"], 4);
        assert_eq!(r["max_num_seqs"], 4);
        assert_eq!(r["kv_cache_len"], 4096);
        assert_eq!(r["padded_input_len"], 512, "the smallest context bucket");
    }
    let nc = &v["neuron_config"];
    assert_eq!(nc["format"], "nxd-inference");
    assert!(nc["path"].as_str().unwrap().ends_with("neuron_config.json"));
    assert_eq!(
        nc["applied"],
        json!({"tp": 32, "batch": 4, "max_num_seqs": 4, "ctx_batch_size": 1,
               "seq_len": 4096, "buckets": [512, 1024, 2048], "weights_dtype": "bf16"})
    );
    let warnings = nc["warnings"].to_string();
    for w in [
        "async_mode",
        "on_device_sampling_config",
        "attn_kernel_enabled",
    ] {
        assert!(warnings.contains(w), "{w} not in {warnings}");
    }
    let not_held = nc["not_held"].as_array().unwrap();
    assert_eq!(not_held.len(), 5, "{not_held:?}");
    let small = not_held
        .iter()
        .find(|n| n["instance"] == "trn2.3xlarge")
        .unwrap();
    assert!(
        small["reason"]
            .as_str()
            .unwrap()
            .starts_with("tp_degree 32 at LNC 2 needs 8 chip(s)"),
        "{small}"
    );
    assert_eq!(
        small["would_fit"],
        json!([
            "trn2.48xlarge (trn2-profile)",
            "trn2u.48xlarge (trn2-profile)"
        ])
    );
    assert_eq!(small["recompile_tp"], 4);
    let inf2 = not_held
        .iter()
        .find(|n| n["instance"] == "inf2.48xlarge")
        .unwrap();
    assert_eq!(
        inf2["reason"],
        "compiled at logical_nc_config 2; inf2-profile models LNC 1"
    );

    // Reading the file is typing its values: the same projection from the flags.
    let by_hand = json_of(&[
        "project",
        "--model",
        &format!("{dir}/config.json"),
        "--device",
        "trn2-profile",
        "--instance",
        "trn2.48xlarge",
        "--tp",
        "32",
        "--batch",
        "4",
        "--max-num-seqs",
        "4",
        "--ctx-batch-size",
        "1",
        "--seq-len",
        "4096",
        "--buckets",
        "512,1024,2048",
        "--format",
        "json",
    ]);
    let a = &v["projections"][0];
    let b = &by_hand["projections"][0];
    for key in ["ttft_ms", "tpot_ms", "e2e_ms", "memory_required_bytes"] {
        assert_eq!(a[key], b[key], "{key}");
    }
    assert!(by_hand.get("neuron_config").is_none());
}

#[test]
fn flags_given_win_over_the_file_and_the_table_says_so() {
    let dir = fixture(OPTIMUM);
    let v = json_of(&[
        "project",
        "--neuron-config",
        &dir,
        "--device",
        "inf2-profile",
        "--batch",
        "2",
        "--format",
        "json",
    ]);
    // tp_degree 8: the 12-core and 24-core inf2 sizes.
    assert_eq!(
        instances(&v, "projections"),
        ["inf2.24xlarge", "inf2.48xlarge"]
    );
    for r in v["projections"].as_array().unwrap() {
        assert_eq!((r["tp"].as_u64(), r["batch"].as_u64()), (Some(8), Some(2)));
        assert_eq!(r["max_num_seqs"], 4, "compiled batch from the file");
        // The optimum-neuron backend pads every prompt to max_context_length.
        assert_eq!(r["padded_input_len"], 4096);
    }
    let nc = &v["neuron_config"];
    assert_eq!(nc["format"], "optimum-neuron");
    assert_eq!(nc["overridden"]["batch"], json!({"file": 4, "flag": 2}));
    assert!(nc["applied"].get("batch").is_none());
    assert_eq!(nc["applied"]["tp"], 8);
    assert!(nc["warnings"]
        .to_string()
        .contains("on-device sampling (on_device_sampling)"));
    let small = &nc["not_held"][0];
    assert_eq!(small["instance"], "inf2.xlarge");
    assert_eq!(small["recompile_tp"], 2);

    let t = common::run_ok(&[
        "project",
        "--neuron-config",
        &dir,
        "--device",
        "inf2-profile",
        "--batch",
        "2",
    ]);
    assert!(t.contains("(optimum-neuron)\n"), "{t}");
    assert!(
        t.contains("  from the file: --buckets 4096, --ctx-batch-size 1, --max-num-seqs 4, --seq-len 4096, --tp 8, --weights-dtype bf16\n"),
        "{t}"
    );
    assert!(
        t.contains("  --batch 2 given: wins over the file's 4\n"),
        "{t}"
    );
    assert!(
        t.contains(
            "inf2-profile inf2.xlarge: cannot hold it: tp_degree 8 at LNC 1 needs 4 chip(s)"
        ),
        "{t}"
    );
    assert!(
        t.contains(
            "instances that hold it: inf2.24xlarge (inf2-profile), inf2.48xlarge (inf2-profile)"
        ),
        "{t}"
    );

    // An explicit --tp is a recompile: the file's LNC no longer binds it.
    let v = json_of(&[
        "project",
        "--neuron-config",
        &dir,
        "--device",
        "inf2-profile,trn2-profile",
        "--tp",
        "4",
        "--format",
        "json",
    ]);
    assert_eq!(
        instances(&v, "projections"),
        [
            "inf2.24xlarge",
            "inf2.48xlarge",
            "trn2.3xlarge",
            "trn2.48xlarge",
            "trn2u.48xlarge"
        ]
    );
    assert_eq!(
        v["neuron_config"]["overridden"]["tp"],
        json!({"file": 8, "flag": 4})
    );
    // --model wins over the directory's config.json.
    let v = json_of(&[
        "project",
        "--neuron-config",
        &dir,
        "--model",
        "llama-3.2-1b",
        "--device",
        "inf2-profile",
        "--format",
        "json",
    ]);
    assert_eq!(v["model"], "llama-3.2-1b");
}

#[test]
fn optimum_config_json_with_a_neuron_section() {
    let file = format!("{}/config.json", fixture(TNX));
    let v = json_of(&["project", "--neuron-config", &file, "--format", "json"]);
    assert_eq!(v["neuron_config"]["format"], "optimum-neuron-config-json");
    assert_eq!(
        v["neuron_config"]["applied"],
        json!({"tp": 2, "batch": 1, "max_num_seqs": 1, "seq_len": 2048, "weights_dtype": "bf16"})
    );
    // Every inf2 and trn1 size runs TP 2; GPU profiles are left out, named in a warning.
    let got = instances(&v, "projections");
    assert!(got.contains(&"inf2.xlarge".to_string()), "{got:?}");
    assert!(got.contains(&"trn1.2xlarge".to_string()), "{got:?}");
    assert!(!got.iter().any(|i| i.starts_with('p') || i.starts_with('g')));
    assert!(v["neuron_config"]["warnings"]
        .to_string()
        .contains("left out: a100-profile"));
    // CSV has no room for notes: they go to stderr, the CSV stays a grid.
    let out = common::profiler()
        .args([
            "project",
            "--neuron-config",
            &file,
            "--device",
            "inf2-profile",
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.starts_with("profile,instance,tp,") && !csv.contains("Neuron config"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("from the file: --batch 1"));
}

#[test]
fn compare_simulate_and_plan_take_it_too() {
    let nxdi = fixture(NXDI);
    let optimum = fixture(OPTIMUM);
    let v = json_of(&[
        "compare",
        "--neuron-config",
        &optimum,
        "--device",
        "inf2-profile",
        "--format",
        "json",
    ]);
    assert_eq!(instances(&v, "rows"), ["inf2.24xlarge", "inf2.48xlarge"]);
    assert!(v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["tp"] == 8 && r["batch"] == 4));
    assert!(v["recommendation"].is_string());
    // The compiled length applies to compare as to project: the KV cache is sized for it.
    assert_eq!(v["neuron_config"]["applied"]["seq_len"], 4096);
    assert!(v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["kv_cache_len"] == 4096));

    let v = json_of(&[
        "simulate",
        "--neuron-config",
        &nxdi,
        "--device",
        "trn2-profile",
        "--instance",
        "trn2.48xlarge",
        "--concurrency",
        "4",
        "--requests",
        "50",
        "--input-len",
        "1000",
        "--output-len",
        "100",
        "--format",
        "json",
    ]);
    assert_eq!(v["simulated"], true);
    for key in ["ttft_ms", "tpot_ms", "e2e_ms", "requests_per_s"] {
        assert!(v.get(key).is_some(), "{key} missing");
    }
    assert_eq!(v["neuron_config"]["applied"]["max_num_seqs"], 4);
    assert_eq!(v["neuron_config"]["applied"]["tp"], 32);
    // A prompt beyond the compiled context buckets is refused, naming the largest.
    let out = common::run_err(&[
        "simulate",
        "--neuron-config",
        &nxdi,
        "--device",
        "trn2-profile",
        "--instance",
        "trn2.48xlarge",
        "--concurrency",
        "1",
        "--input-len",
        "3000",
        "--output-len",
        "100",
    ]);
    common::assert_one_line_error(&out, "largest context-encoding bucket (2048)");
    let out = common::run_err(&[
        "simulate",
        "--neuron-config",
        &nxdi,
        "--device",
        "trn2-profile",
        "--instance",
        "trn2.3xlarge",
        "--concurrency",
        "1",
    ]);
    common::assert_one_line_error(
        &out,
        "--instance trn2.3xlarge cannot hold the configuration of",
    );
    common::assert_one_line_error(&out, "fits: trn2.48xlarge (trn2-profile)");

    let v = json_of(&[
        "plan",
        "--neuron-config",
        &optimum,
        "--device",
        "inf2-profile",
        "--rate",
        "2",
        "--input-len",
        "1000",
        "--output-len",
        "200",
        "--slo-ttft-ms",
        "3000",
        "--trial-requests",
        "60",
        "--format",
        "json",
    ]);
    let rows = v["rows"].as_array().unwrap();
    for r in rows {
        let inst = r["instance"].as_str().unwrap();
        if inst == "inf2.24xlarge" || inst == "inf2.48xlarge" {
            assert_eq!(
                (r["tp"].as_u64(), r["max_num_seqs"].as_u64()),
                (Some(8), Some(4))
            );
        } else {
            assert_eq!(r["meets_slo"], false);
            assert!(r["reason"]
                .as_str()
                .unwrap()
                .starts_with("cannot hold the compiled configuration: tp_degree 8"));
        }
    }
    assert_eq!(v["neuron_config"]["format"], "optimum-neuron");
    // A row's reason names a value the file set as the file's.
    let v = json_of(&[
        "plan",
        "--neuron-config",
        &fixture(TNX),
        "--device",
        "inf2-profile",
        "--rate",
        "1",
        "--input-len",
        "2000",
        "--output-len",
        "200",
        "--slo-tpot-ms",
        "100",
        "--format",
        "json",
    ]);
    let reasons: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .filter(|r| r.contains("below input + output"))
        .collect();
    assert!(!reasons.is_empty(), "{v}");
    for r in reasons {
        assert!(
            r.starts_with("seq_len 2048 is below input + output = 2000 + 200 = 2200 tokens (seq_len 2048 read from ")
                && r.ends_with("config.json)"),
            "{r}"
        );
    }
}

#[test]
fn bad_files_are_one_line_errors_naming_file_and_field() {
    let tmp = common::tempdir();
    let write = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        common::path_str(&p)
    };
    let cases = [
        (
            write("bad.json", "{\"neuron_config\": {"),
            "bad.json: not valid JSON",
        ),
        (
            write("plain.json", "{\"model_type\": \"llama\"}"),
            "plain.json: not a Neuron compile configuration",
        ),
        (
            write(
                "missing.json",
                "{\"neuron_config\": {\"tp_degree\": 8, \"seq_len\": 4096}}",
            ),
            "missing.json: required field `neuron_config.batch_size` is missing",
        ),
        (
            write(
                "tnx.json",
                "{\"model_type\": \"llama\", \"neuron\": {\"batch_size\": 1, \"num_cores\": 2}}",
            ),
            "tnx.json: required field `neuron.sequence_length` is missing",
        ),
    ];
    for (path, want) in &cases {
        let out = common::run_err(&[
            "project",
            "--neuron-config",
            path,
            "--model",
            "llama-3.1-8b",
        ]);
        common::assert_one_line_error(&out, want);
    }
    // No architecture anywhere: --model is asked for.
    let nc = write(
        "neuron_config.json",
        "{\"neuron_config\": {\"tp_degree\": 8, \"batch_size\": 1, \"seq_len\": 1024}}",
    );
    let out = common::run_err(&["project", "--neuron-config", &nc]);
    common::assert_one_line_error(
        &out,
        "no config.json beside it and no model attributes in it: give --model",
    );
    // Nothing holds it among the chosen profiles.
    let out = common::run_err(&[
        "project",
        "--neuron-config",
        &fixture(NXDI),
        "--device",
        "inf2-profile",
    ]);
    common::assert_one_line_error(
        &out,
        "--neuron-config: no chosen instance holds tp_degree 32 at LNC 2",
    );
    // A value the file set is named as the file's in the error it causes: by its key, not
    // by a flag the user never typed.
    let out = common::run_err(&[
        "project",
        "--neuron-config",
        &fixture(TNX),
        "--device",
        "inf2-profile",
        "--input-len",
        "2000",
        "--output-len",
        "200",
    ]);
    common::assert_one_line_error(
        &out,
        "error: seq_len 2048 is below input + output = 2000 + 200 = 2200 tokens (seq_len 2048 read from ",
    );
    common::assert_one_line_error(
        &out,
        "optimum-neuron-tnx-llama-3.1-8b-inf2-tp2/config.json)",
    );
    let empty = common::tempdir();
    let out = common::run_err(&[
        "project",
        "--neuron-config",
        &common::path_str(empty.path()),
    ]);
    common::assert_one_line_error(&out, "holds neither neuron_config.json nor config.json");
}

/// An NxD Inference MoE configuration (`moe_tp_degree` × `moe_ep_degree` = `tp_degree`)
/// sets the expert-parallel degree; the same file for a dense model is refused in one line.
#[test]
fn moe_expert_parallel_degree_comes_from_the_file() {
    let src = std::path::Path::new(&fixture(NXDI)).join("neuron_config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(src).unwrap()).unwrap();
    cfg["neuron_config"]["moe_tp_degree"] = json!(2);
    cfg["neuron_config"]["moe_ep_degree"] = json!(16);
    let dir = common::tempdir();
    let file = dir.path().join("neuron_config.json");
    std::fs::write(&file, cfg.to_string()).unwrap();
    let file = common::path_str(&file);
    let v = json_of(&[
        "project",
        "--neuron-config",
        &file,
        "--model",
        "qwen3-30b-a3b",
        "--device",
        "trn2-profile",
        "--instance",
        "trn2.48xlarge",
        "--format",
        "json",
    ]);
    assert_eq!(v["neuron_config"]["applied"]["ep_degree"], 16, "{v}");
    let row = &v["projections"][0];
    assert_eq!(
        (row["tp"].as_u64(), row["ep_degree"].as_u64()),
        (Some(32), Some(16))
    );
    assert!(
        row["notes"]
            .to_string()
            .contains("expert parallelism 16: 16 groups of 2"),
        "{row}"
    );
    let out = common::run_err(&[
        "project",
        "--neuron-config",
        &file,
        "--model",
        "llama-3.1-8b",
        "--device",
        "trn2-profile",
        "--instance",
        "trn2.48xlarge",
    ]);
    common::assert_one_line_error(
        &out,
        "applies to mixture-of-experts models; this one is dense",
    );
}
