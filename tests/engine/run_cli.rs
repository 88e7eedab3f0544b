//! End-to-end tests of `profiler run` and `profiler report` through the real binary on the
//! real default model, with tiny lengths. No timing thresholds: only relations that must
//! hold whatever the machine's speed.

#[path = "../common/mod.rs"]
mod common;

use serde_json::Value;
use std::time::{Duration, Instant};

const TINY: &[&str] = &[
    "run",
    "--model",
    "llama",
    "--run-on",
    "cpu",
    "--input-len",
    "16",
    "--output-len",
    "4",
    "--requests",
    "3",
    "--warmup",
    "1",
    "-q",
];

fn summary_ordered(v: &Value, name: &str) {
    let s = &v[name];
    let g = |k: &str| {
        s[k].as_f64()
            .unwrap_or_else(|| panic!("{name}.{k} missing: {s}"))
    };
    assert!(
        g("min") <= g("p50")
            && g("p50") <= g("p90")
            && g("p90") <= g("p99")
            && g("p99") <= g("max"),
        "{name}: {s}"
    );
    assert!(
        g("min") <= g("mean") && g("mean") <= g("max"),
        "{name}: {s}"
    );
    assert!(
        g("ci95_low") <= g("mean") && g("mean") <= g("ci95_high"),
        "{name}: {s}"
    );
}

#[test]
fn json_report_has_the_schema_and_consistent_numbers() {
    common::default_weights();
    let dir = common::tempdir();
    let samples = dir.path().join("s.jsonl");
    let out = dir.path().join("r.json");
    let mut args = TINY.to_vec();
    let (s, o) = (common::path_str(&samples), common::path_str(&out));
    args.extend([
        "--format",
        "json",
        "--samples",
        &s,
        "--out",
        &o,
        "--device",
        "inf2-profile,h100-profile",
    ]);
    let stdout = common::run_ok(&args);
    let r: Value = serde_json::from_str(&stdout).expect("stdout is the JSON report");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(r, written, "--out writes the same report");
    for key in [
        "schema_version",
        "environment",
        "workload",
        "requests",
        "ttft_ms",
        "tpot_ms",
        "e2e_ms",
        "output_tokens_per_s",
        "total_tokens_per_s",
        "prompt_tokens",
        "output_tokens",
        "warnings",
        "projections",
        "host_check",
    ] {
        assert!(r.get(key).is_some(), "missing key {key}");
    }
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["requests"], 3);
    assert_eq!(
        r["prompt_tokens"],
        3 * 16,
        "prompts of exactly --input-len tokens"
    );
    assert_eq!(
        r["output_tokens"],
        3 * 4,
        "exactly --output-len tokens, EOS ignored"
    );
    for name in ["ttft_ms", "tpot_ms", "e2e_ms", "decode_step_ms"] {
        summary_ordered(&r, name);
    }
    assert!(r["e2e_ms"]["min"].as_f64().unwrap() >= r["ttft_ms"]["min"].as_f64().unwrap());
    assert!(r["e2e_ms"]["mean"].as_f64().unwrap() >= r["ttft_ms"]["mean"].as_f64().unwrap());
    // tokens/s is tokens over the measured wall time, to rounding.
    let tps = r["output_tokens_per_s"].as_f64().unwrap();
    let want = 12.0 / r["wall_s"].as_f64().unwrap();
    assert!((tps - want).abs() <= 1e-6 * want, "{tps} vs {want}");
    let env = &r["environment"];
    assert_eq!(env["weights_kind"], "gguf");
    assert_eq!(env["model"], "smollm2-135m");
    assert_eq!(env["run_on"], "cpu");
    assert_eq!(env["matmul_precision"], "highest");
    assert_eq!(env["tch_version"], "0.24.0");
    assert!(env["torch_version"].as_str().unwrap().starts_with("2.11.0"));
    assert_eq!(
        env["weights_sha256"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    // Projections: every instance of both profiles, labelled with their sources and error.
    let p = r["projections"].as_array().unwrap();
    assert!(p
        .iter()
        .any(|x| x["profile"] == "inf2-profile" && x["instance"] == "inf2.48xlarge"));
    assert!(p.iter().any(|x| x["profile"] == "h100-profile"));
    for x in p {
        assert_eq!(x["input_len"], 16);
        assert_eq!(x["output_len"], 4);
        assert!(!x["sources"].as_array().unwrap().is_empty());
        assert!(x["ttft_ms"].as_f64().unwrap() > 0.0);
        // Each projected number has its interval beside it (README, Error bars).
        for k in ["ttft_ms", "tpot_ms", "e2e_ms", "output_tokens_per_s"] {
            let (lo, v, hi) = (
                x[format!("{k}_low")].as_f64().unwrap(),
                x[k].as_f64().unwrap(),
                x[format!("{k}_high")].as_f64().unwrap(),
            );
            assert!(lo < v && v < hi, "{k}: {lo} {v} {hi}");
        }
        assert!(x["interval_basis"].is_string());
    }
    let inf2 = p.iter().find(|x| x["profile"] == "inf2-profile").unwrap();
    assert!(inf2["calibration_mape"]["ttft"].as_f64().unwrap() > 0.0);
    // Host self-check: projected against measured on this machine.
    let h = &r["host_check"];
    assert!(h["projected_tpot_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(h["measured_ttft_ms"], r["ttft_ms"]["mean"]);
    // The model's own steps at fixed shapes (a 128-token prefill; 1 and 4 decode rows at
    // batch 1) and the host-profile parameters derived from them.
    assert_eq!(h["prefill_tokens"], 128, "{h}");
    assert_eq!(h["decode_rows"], 4, "{h}");
    assert_eq!(h["decode_context_tokens"], 128, "{h}");
    let num = |k: &str| {
        let x = h[k]
            .as_f64()
            .unwrap_or_else(|| panic!("host_check.{k}: {h}"));
        assert!(x.is_finite(), "host_check.{k}: {h}");
        x
    };
    for k in ["prefill_ms", "decode_step_1_ms", "decode_step_rows_ms"] {
        assert!(num(k) > 0.0, "host_check.{k}: {h}");
    }
    for k in ["prefill_compute_efficiency", "bandwidth_efficiency"] {
        let e = num(k);
        assert!(e > 0.0 && e <= 1.0, "host_check.{k}: {h}");
    }
    assert!(num("decode_seq_ms") >= 0.0, "{h}");
    // The report is what `simulate --device host --host-check` reads.
    let sim: Value = serde_json::from_str(&common::run_ok(&[
        "simulate",
        "--model",
        "llama",
        "--device",
        "host",
        "--host-check",
        &o,
        "--instance",
        "host",
        "--weights-dtype",
        "fp32",
        "--max-num-seqs",
        "4",
        "--seq-len",
        "256",
        "--concurrency",
        "4",
        "--requests",
        "4",
        "--format",
        "json",
    ]))
    .unwrap();
    assert!(sim["tpot_ms"]["mean"].as_f64().unwrap() > 0.0, "{sim}");

    // The samples file: header, 3 samples, end; `report` rebuilds the same numbers.
    let text = std::fs::read_to_string(&samples).unwrap();
    let kinds: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["header", "sample", "sample", "sample", "end"]);
    let again: Value = serde_json::from_str(&common::run_ok(&[
        "report",
        "--samples",
        &s,
        "--format",
        "json",
    ]))
    .unwrap();
    for key in ["requests", "prompt_tokens", "output_tokens"] {
        assert_eq!(again[key], r[key], "report --samples rebuilds {key}");
    }
    for name in ["ttft_ms", "tpot_ms", "e2e_ms"] {
        for (k, v) in r[name].as_object().unwrap() {
            let (a, b) = (v.as_f64().unwrap(), again[name][k].as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-9 * a.abs().max(1.0),
                "report --samples rebuilds {name}.{k}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn csv_and_markdown_parse() {
    common::default_weights();
    let mut args = TINY.to_vec();
    args.extend([
        "--no-host-check",
        "--device",
        "trn1-profile",
        "--format",
        "csv",
    ]);
    let csv = common::run_ok(&args);
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    let width = rows[0].len();
    assert!(width >= 10, "{csv}");
    assert!(
        rows.iter().all(|r| r.len() == width),
        "rectangular CSV:\n{csv}"
    );
    assert!(csv.contains("ttft"), "{csv}");
    assert!(csv.contains("projected"), "{csv}");

    let mut args = TINY.to_vec();
    args.extend([
        "--no-host-check",
        "--device",
        "trn1-profile",
        "--format",
        "markdown",
    ]);
    let md = common::run_ok(&args);
    assert!(md.contains("Projected (not measured)"), "{md}");
    for table in md.split("\n\n").filter(|b| b.trim_start().starts_with('|')) {
        let cells: Vec<usize> = table.lines().map(|l| l.matches('|').count()).collect();
        assert!(
            cells.windows(2).all(|w| w[0] == w[1]),
            "ragged table:\n{table}"
        );
    }
}

/// Starts a long `profiler run` writing `samples` and waits until it holds `n` samples.
// The child is returned to the caller, which waits for it.
#[allow(clippy::zombie_processes)]
fn start_long_run(samples: &str, extra: &[&str], n: usize) -> std::process::Child {
    let mut args = vec![
        "run",
        "--model",
        "llama",
        "--run-on",
        "cpu",
        "--duration",
        "10m",
        "--warmup",
        "0",
        "--no-host-check",
        "-q",
        "--format",
        "json",
        "--samples",
        samples,
    ];
    args.extend_from_slice(extra);
    let mut child = common::profiler()
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let got = std::fs::read_to_string(samples)
            .map(|t| t.matches("\"kind\":\"sample\"").count())
            .unwrap_or(0);
        if got >= n {
            return child;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fewer than {n} samples within 180 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn interrupt(child: &std::process::Child) {
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
}

/// SIGINT during a long run: the run stops after the current step, still prints a valid
/// report of what finished, exits 130, and the samples file rebuilds the same report.
#[test]
fn interrupted_run_keeps_what_it_measured() {
    common::default_weights();
    let dir = common::tempdir();
    let samples = dir.path().join("s.jsonl");
    let s = common::path_str(&samples);
    let child = start_long_run(&s, &["--input-len", "16", "--output-len", "8"], 2);
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("a JSON report after Ctrl-C");
    assert_eq!(r["interrupted"], true);
    assert!(r["requests"].as_u64().unwrap() >= 2);
    assert!(r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("interrupted")));
    let again: Value = serde_json::from_str(&common::run_ok(&[
        "report",
        "--samples",
        &s,
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(again["requests"], r["requests"]);
    assert_eq!(again["interrupted"], true);
}

/// `kill -9` during a run, then a torn write at the end of the samples file: `report`
/// still rebuilds a valid report from every complete line, warns about the partial last
/// line by file and line number, and exits 0.
#[test]
fn killed_run_with_a_torn_last_line_still_reports() {
    common::default_weights();
    let dir = common::tempdir();
    let samples = dir.path().join("s.jsonl");
    let s = common::path_str(&samples);
    let mut child = start_long_run(&s, &["--input-len", "16", "--output-len", "8"], 2);
    child.kill().expect("SIGKILL the run");
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        None,
        "killed by a signal, not exited: {status:?}"
    );

    let mut bytes = std::fs::read(&samples).unwrap();
    // Complete lines end in '\n'; a write torn by the kill itself would be a partial tail,
    // which the line appended below extends.
    let complete: Vec<&[u8]> = bytes
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| l.ends_with(b"\n"))
        .collect();
    let kinds: Vec<String> = complete
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_slice(l).expect("every complete line is JSON");
            v["kind"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(kinds[0], "header");
    assert!(
        kinds[1..].iter().all(|k| k == "sample"),
        "no end line after kill -9: {kinds:?}"
    );
    let n = kinds.len() - 1;
    assert!(n >= 2, "{n} samples before the kill");
    let partial_line = complete.len() + 1;
    bytes.extend_from_slice(br#"{"kind":"sample","index":999,"start_offset_ms":12.5,"prompt_tok"#);
    std::fs::write(&samples, &bytes).unwrap();

    let out = common::profiler()
        .args(["report", "--samples", &s, "--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let warning = format!("warning: {s}:{partial_line}: ignored a partial last line");
    assert!(
        stderr.lines().any(|l| l.starts_with(&warning)),
        "expected {warning:?} on stderr: {stderr}"
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(r["schema_version"], 1);
    assert_eq!(
        r["requests"], n as u64,
        "one request per complete sample line"
    );
    assert_eq!(r["output_tokens"], 8 * n as u64);
    assert_eq!(r["prompt_tokens"], 16 * n as u64);
    assert_eq!(r["ttft_ms"]["count"], n as u64);
    assert_eq!(r["interrupted"], true, "no end line: the run was cut short");
    assert!(r["peak_rss_bytes"].is_null(), "unknown after kill -9");
    let warnings: Vec<&str> = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&format!(":{partial_line}: ignored a partial last line"))),
        "{warnings:?}"
    );
}

#[test]
fn workload_file_and_batch() {
    common::default_weights();
    let dir = common::tempdir();
    let w = dir.path().join("w.jsonl");
    std::fs::write(&w, "{\"prompt\": \"Hello there\", \"max_new_tokens\": 3}\n{\"prompt\": \"The sea is\", \"max_new_tokens\": 5}\n").unwrap();
    let ws = common::path_str(&w);
    let r: Value = serde_json::from_str(&common::run_ok(&[
        "run",
        "--model",
        "llama",
        "--run-on",
        "cpu",
        "--workload",
        &ws,
        "--requests",
        "4",
        "--warmup",
        "0",
        "--batch",
        "2",
        "--output-len",
        "3",
        "--no-host-check",
        "-q",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(r["requests"], 4);
    assert_eq!(r["output_tokens"], 12);
    assert_eq!(r["workload"]["batch"], 2);
}

/// A second Ctrl-C while the first is being handled exits at once with 130: no report is
/// printed and no end line written (the run did not wind down), and the samples already
/// written are whole lines that `report` reads without warnings.
#[test]
fn second_ctrl_c_exits_at_once_keeping_the_samples() {
    common::default_weights();
    let dir = common::tempdir();
    let samples = dir.path().join("s.jsonl");
    let s = common::path_str(&samples);
    // Long prefills (batch 8 × 512 tokens, seconds on a CPU) so that both signals land
    // inside one step: the first asks to stop after it, the second must not wait for it.
    let child = start_long_run(
        &s,
        &["--input-len", "512", "--output-len", "2", "--batch", "8"],
        1,
    );
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(50));
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "an exit with status 130, not a death by signal: {:?}",
        out.status
    );
    assert!(
        out.stdout.is_empty(),
        "the second Ctrl-C must not wait to print the report: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    let text = std::fs::read_to_string(&samples).unwrap();
    assert!(text.ends_with('\n'), "a torn last line: {text:?}");
    let kinds: Vec<String> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("every line is JSON");
            v["kind"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(kinds[0], "header");
    assert!(
        kinds[1..].iter().all(|k| k == "sample"),
        "no end line: the run did not wind down: {kinds:?}"
    );
    let n = kinds.len() as u64 - 1;
    assert!(n >= 1);

    let out = common::profiler()
        .args(["report", "--samples", &s, "--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(!stderr.contains("partial"), "{stderr}");
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["requests"], n);
    assert_eq!(
        again["interrupted"], true,
        "no end line: the run was cut short"
    );
}

/// A samples file that stops accepting writes mid-run (here a file-size limit, as a full
/// disk would): the run stops at that request, prints the report of every finished request
/// with a warning, and exits 1 with one line naming the file.
#[test]
fn samples_file_failing_mid_run_keeps_the_report() {
    common::default_weights();
    let dir = common::tempdir();
    let samples = dir.path().join("s.jsonl");
    let s = common::path_str(&samples);
    // bash: ignore SIGXFSZ (so writes past the limit fail with EFBIG instead of killing the
    // process), limit files to 4 KiB, then run the profiler.
    let out = std::process::Command::new("bash")
        .args(["-c", "trap '' XFSZ; ulimit -f 4; exec \"$@\"", "bash"])
        .arg(common::profiler_bin())
        .args([
            "run",
            "--model",
            "llama",
            "--run-on",
            "cpu",
            "--input-len",
            "8",
            "--output-len",
            "4",
            "--requests",
            "200",
            "--warmup",
            "0",
            "--no-host-check",
            "-q",
            "--format",
            "json",
            "--samples",
            &s,
        ])
        .env("PROFILER_HOME", common::home())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains(&s), "{err}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("the report is still printed");
    let n = r["requests"].as_u64().unwrap();
    assert!((1..200).contains(&n), "stopped early with {n} requests");
    assert!(
        r["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("samples file could not be written")),
        "{r}"
    );
    // Every request on disk is in the report, and the file stays readable.
    let on_disk = std::fs::read(&samples).unwrap();
    assert!(on_disk.len() <= 4096);
    let rebuilt = common::profiler()
        .args(["report", "--samples", &s, "--format", "json"])
        .output()
        .unwrap();
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    let rebuilt: Value = serde_json::from_slice(&rebuilt.stdout).unwrap();
    let kept = rebuilt["requests"].as_u64().unwrap();
    assert!((1..n).contains(&kept), "{kept} on disk, {n} measured");
}

/// `--matmul-precision high` is stated in the report, in JSON and in the table.
#[test]
#[cfg_attr(
    not(feature = "bf16-tests"),
    ignore = "needs a CPU with bf16 matrix instructions (scripts/test turns on bf16-tests where there is one)"
)]
fn report_states_the_matmul_precision() {
    profiler_engine::model::bf16x3::check_available()
        .expect("bf16-tests is on, so bf16x3 must be available");
    common::default_weights();
    let args = [
        "run",
        "--model",
        "llama",
        "--run-on",
        "cpu",
        "--matmul-precision",
        "high",
        "--input-len",
        "80",
        "--output-len",
        "2",
    ]
    .iter()
    .chain(common::ONE_QUIET_REQUEST)
    .copied()
    .collect::<Vec<_>>();
    let mut json = args.clone();
    json.extend(["--format", "json"]);
    let r: Value = serde_json::from_str(&common::run_ok(&json)).unwrap();
    assert_eq!(r["environment"]["matmul_precision"], "high");
    assert_eq!(r["environment"]["weights_dtype"], "f32");
    assert!(common::run_ok(&args).contains("matmul precision high"));
}

/// `--project-model`: the default model is measured; the projections are of the card
/// asked for, at the measured prompt and output lengths, and the report says which is which.
#[test]
fn project_model_projects_another_card_at_the_measured_shape() {
    common::default_weights();
    let base = [
        "run",
        "--model",
        "llama",
        "--run-on",
        "cpu",
        "--input-len",
        "16",
        "--output-len",
        "4",
        "--device",
        "inf2-profile",
        "--project-model",
        "qwen3-30b-a3b",
    ];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        base.iter()
            .chain(extra)
            .chain(common::ONE_QUIET_REQUEST)
            .copied()
            .collect()
    };
    let r: Value = serde_json::from_str(&common::run_ok(&with(&["--format", "json"]))).unwrap();
    assert_eq!(r["environment"]["model"], "smollm2-135m");
    assert_eq!(r["projected_model"], "qwen3-30b-a3b");
    let rows = r["projections"].as_array().unwrap();
    assert!(!rows.is_empty());
    for p in rows {
        assert_eq!(
            (p["input_len"].as_u64(), p["output_len"].as_u64()),
            (Some(16), Some(4))
        );
        assert!(p["sources"].to_string().contains("Qwen3-30B-A3B"), "{p}");
    }
    // The table says it in words.
    let text = common::run_ok(&with(&[]));
    assert!(
        text.contains("Projections of model qwen3-30b-a3b (not the measured model smollm2-135m)"),
        "{text}"
    );
}
