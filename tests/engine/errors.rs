//! The error-path table: every bad input, run through the real binary, gives one line on
//! stderr that names what is wrong, the documented exit code (2 for command-line usage
//! errors that clap reports, 1 for everything else) and never a panic or backtrace.

#[path = "../common/mod.rs"]
mod common;

use profiler_engine::model::gguf::{write_gguf, GgmlType, GgufFile, MetaValue};
use std::path::Path;
use std::process::Output;

/// Tiny lengths for the cases where a model really loads and runs.
const TINY_RUN: &[&str] = &[
    "--input-len",
    "8",
    "--output-len",
    "2",
    "--requests",
    "1",
    "--warmup",
    "0",
    "--no-host-check",
    "-q",
];

/// One case: arguments (`{dir}` stands for the case's temporary folder), files to write
/// into that folder first, and a substring the one error line must contain.
struct Case {
    name: &'static str,
    args: Vec<String>,
    files: Vec<(&'static str, Vec<u8>)>,
    needle: &'static str,
}

fn case(name: &'static str, args: &[&str], needle: &'static str) -> Case {
    Case {
        name,
        args: args.iter().map(|a| a.to_string()).collect(),
        files: Vec::new(),
        needle,
    }
}

impl Case {
    fn file(mut self, name: &'static str, bytes: impl Into<Vec<u8>>) -> Case {
        self.files.push((name, bytes.into()));
        self
    }

    fn with(mut self, extra: &[&str]) -> Case {
        self.args.extend(extra.iter().map(|a| a.to_string()));
        self
    }
}

/// Runs `profiler ARGS` with `{dir}` replaced by `dir`, expecting failure.
fn run_in(dir: &Path, args: &[String]) -> Output {
    let d = common::path_str(dir);
    let args: Vec<String> = args.iter().map(|a| a.replace("{dir}", &d)).collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    common::run_err(&refs)
}

/// Bytes that are not a GGUF file (a fixed pseudo-random sequence).
fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A tiny Llama GGUF with one block whose embedding is Q5_K (GGML type 13), which the
/// reader parses but cannot dequantise; `blocks` is the block count its metadata claims.
fn q5_k_gguf(blocks: u32) -> Vec<u8> {
    let s = |x: &str| x.to_string();
    write_gguf(
        &[
            (s("general.architecture"), MetaValue::Str(s("llama"))),
            (s("llama.block_count"), MetaValue::U32(blocks)),
            (s("llama.context_length"), MetaValue::U32(64)),
            (s("llama.embedding_length"), MetaValue::U32(256)),
            (s("llama.feed_forward_length"), MetaValue::U32(256)),
            (s("llama.attention.head_count"), MetaValue::U32(1)),
            (
                s("llama.attention.layer_norm_rms_epsilon"),
                MetaValue::F32(1e-5),
            ),
        ],
        &[
            (
                s("token_embd.weight"),
                vec![256, 2],
                GgmlType::Other(13),
                vec![0u8; 2 * 176],
            ),
            (
                s("blk.0.attn_norm.weight"),
                vec![256],
                GgmlType::F32,
                vec![0u8; 256 * 4],
            ),
        ],
    )
}

/// The default model with its first RMSNorm weight (f32 in the file) set to NaN.
fn nan_weights(real: &Path) -> Vec<u8> {
    let g = GgufFile::open(real).expect("open the default model");
    let t = g
        .tensor("blk.0.attn_norm.weight")
        .expect("attn_norm tensor");
    assert_eq!(t.ggml_type, GgmlType::F32);
    let mut bytes = std::fs::read(real).expect("read the default model");
    let at = t.offset as usize;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    bytes
}

/// Every case that exits 1 with one `error: ` line.
fn cases() -> Vec<Case> {
    let real = common::default_weights();
    let truncated = std::fs::read(&real).expect("read the default model")[..1000].to_vec();
    let long_prompt = "hello world ".repeat(40);
    let mut v = vec![
        // The model: name, file, directory, contents.
        case(
            "unknown model",
            &["generate", "--model", "lama", "--prompt", "hi"],
            "llama",
        ),
        case(
            "unknown model names what it is",
            &["generate", "--model", "lama", "--prompt", "hi"],
            "unknown model \"lama\"",
        ),
        case(
            "missing .gguf file",
            &[
                "generate",
                "--model",
                "{dir}/missing.gguf",
                "--prompt",
                "hi",
            ],
            "missing.gguf",
        ),
        case(
            "corrupt GGUF",
            &["generate", "--model", "{dir}/x.gguf", "--prompt", "hi"],
            "not a GGUF file",
        )
        .file("x.gguf", random_bytes(4096)),
        case(
            "truncated GGUF",
            &["generate", "--model", "{dir}/t.gguf", "--prompt", "hi"],
            "truncated or corrupt",
        )
        .file("t.gguf", truncated),
        case(
            "unsupported quantisation type",
            &["generate", "--model", "{dir}/q5k.gguf", "--prompt", "hi"],
            "Q5_K",
        )
        .file("q5k.gguf", q5_k_gguf(1)),
        case(
            "NaN weights are refused, not run",
            &["generate", "--model", "{dir}/nan.gguf", "--prompt", "hi"],
            "weight model.layers.0.input_layernorm.weight holds NaN or infinite values",
        )
        .file("nan.gguf", nan_weights(&real)),
        case(
            "a projection beyond the model's positions",
            &[
                "project",
                "--model",
                "llama-3.1-8b",
                "--input-len",
                "1000000000",
            ],
            "more than the 131072 positions of llama-3.1-8b",
        ),
        case(
            "an empty --device for project",
            &["project", "--model", "llama-3.1-8b", "--device", ""],
            "--device \"\": expected profile names",
        ),
        case(
            "an existing samples file is not overwritten",
            &["run", "--requests", "1", "--samples", "{dir}/old.jsonl"],
            "old.jsonl: the file exists (12 bytes); remove it or choose another path",
        )
        .file("old.jsonl", "{\"line\": 1}\n"),
        case(
            "a KV cache larger than the memory is refused with its size",
            &[
                "run",
                "--requests",
                "1",
                "--input-len",
                "8",
                "--output-len",
                "2",
                "--batch",
                "100000000",
            ],
            "batch 100000000 × 10 positions: the K and V tensors of its KV cache need",
        ),
        case(
            "a push interval of 0",
            &[
                "run",
                "--pushgateway",
                "http://127.0.0.1:9",
                "--push-interval",
                "0",
            ],
            "--push-interval must be at least 1",
        ),
        case(
            "generate nothing",
            &["generate", "--prompt", "hi", "--max-new-tokens", "0"],
            "--max-new-tokens must be at least 1",
        ),
        case(
            "threads far beyond the cores",
            &["run", "--threads", "100000", "--requests", "1"],
            "--threads 100000: at most",
        ),
        case(
            "a duration beyond a year",
            &["run", "--duration", "99999999999999999h"],
            "duration \"99999999999999999h\": at most 8784h",
        ),
        case(
            "a block count beyond the file's blocks is refused before anything is allocated",
            &["generate", "--model", "{dir}/blocks.gguf", "--prompt", "hi"],
            "llama.block_count is 4000000000, but the file holds tensors for 1 blocks",
        )
        .file("blocks.gguf", q5_k_gguf(4_000_000_000)),
        case(
            "synthetic weights larger than the free memory (1.5 TiB as f32)",
            &["run", "--model", "llama-3.1-405b", "--run-on", "cpu"],
            "model llama-3.1-405b: its 405853388800 weights (synthetic) as f32 (1511.9 GiB) and a tensor being converted need 15",
        )
        .with(TINY_RUN),
        case(
            "HF directory without tokenizer.json",
            &["generate", "--model", "{dir}/hf", "--prompt", "hi"],
            "tokenizer.json",
        )
        .file("hf/config.json", "{}"),
        // Lengths.
        case(
            "generate: prompt longer than the context window",
            &[
                "generate",
                "--run-on",
                "cpu",
                "--max-new-tokens",
                "8190",
                "--prompt",
                &long_prompt,
            ],
            "context window",
        ),
        case(
            "run: input longer than the context window",
            &["run", "--run-on", "cpu", "--input-len", "9000"],
            "context window",
        )
        .with(&TINY_RUN[2..]),
        // Bad values that parse.
        case("run --batch 0", &["run", "--batch", "0"], "--batch"),
        case("run --duration 5x", &["run", "--duration", "5x"], "5x"),
        case(
            "run --requests 0",
            &["run", "--requests", "0"],
            "--requests",
        ),
        case(
            "generate --temperature -1",
            &["generate", "--temperature=-1", "--prompt", "hi"],
            "--temperature",
        ),
        case(
            "run --temperature -1",
            &["run", "--temperature=-1"],
            "--temperature",
        ),
        case(
            "generate --threads 0",
            &["generate", "--threads", "0", "--prompt", "hi"],
            "--threads",
        ),
        case("run --threads 0", &["run", "--threads", "0"], "--threads"),
        // Workload files: line numbers.
        case(
            "workload: empty line",
            &["run", "--workload", "{dir}/w.jsonl"],
            "w.jsonl:2: empty line",
        )
        .file("w.jsonl", "{\"prompt\": \"hi\"}\n\n{\"prompt\": \"yo\"}\n")
        .with(&TINY_RUN[2..]),
        case(
            "workload: malformed line",
            &["run", "--workload", "{dir}/w.jsonl"],
            "w.jsonl:2:",
        )
        .file("w.jsonl", "{\"prompt\": \"hi\"}\n{\"prompt\":\n")
        .with(&TINY_RUN[2..]),
        case(
            "workload: unknown key",
            &["run", "--workload", "{dir}/w.jsonl"],
            "colour",
        )
        .file("w.jsonl", "{\"prompt\": \"hi\", \"colour\": 1}\n")
        .with(&TINY_RUN[2..]),
        case(
            "workload: missing file",
            &["run", "--workload", "{dir}/none.jsonl"],
            "none.jsonl",
        ),
        // Profiles and projection.
        case(
            "run --device unknown profile",
            &["run", "--device", "nosuch-profile"],
            "inf2-profile",
        ),
        case(
            "project --device unknown profile",
            &[
                "project",
                "--model",
                "llama-3.1-8b",
                "--device",
                "nosuch-profile",
            ],
            "nosuch-profile",
        ),
        case(
            "generate --matmul-precision high with bf16 weights",
            &[
                "generate",
                "--prompt",
                "hi",
                "--run-on",
                "cpu",
                "--weights-dtype",
                "bf16",
                "--matmul-precision",
                "high",
            ],
            "f32 weights",
        ),
        case(
            "project --instance nosuch",
            &["project", "--model", "llama-3.1-8b", "--instance", "nosuch"],
            "inf2.48xlarge",
        ),
        case(
            "project: unknown model",
            &["project", "--model", "lama"],
            "llama",
        ),
        case(
            "calibrate --points missing",
            &[
                "calibrate",
                "--device",
                "inf2-profile",
                "--points",
                "{dir}/missing.csv",
            ],
            "missing.csv",
        ),
        // Outputs that cannot be written: refused before the model loads when the path
        // cannot be a file, at the first write when the disk is full.
        case(
            "run --out under a file",
            &["run", "--out", "/dev/null/x"],
            "--out /dev/null/x: /dev/null is not a folder",
        )
        .with(TINY_RUN),
        case(
            "run --out in a missing folder",
            &["run", "--out", "{dir}/missing/r.json"],
            "cannot use the folder",
        )
        .with(TINY_RUN),
        case(
            "run --out a folder",
            &["run", "--out", "{dir}"],
            "is a folder",
        )
        .with(TINY_RUN),
        case(
            "run --samples under a file",
            &["run", "--samples", "/dev/null/x"],
            "--samples /dev/null/x: /dev/null is not a folder",
        )
        .with(TINY_RUN),
        case(
            "run --samples on a full disk",
            &["run", "--run-on", "cpu", "--samples", "/dev/full"],
            "/dev/full:1: cannot write the samples file: No space left on device",
        )
        .with(TINY_RUN),
        case(
            "report --out under a file",
            &[
                "report",
                "--samples",
                "{dir}/s.jsonl",
                "--out",
                "/dev/null/x",
            ],
            "--out /dev/null/x: /dev/null is not a folder",
        ),
        // Samples files.
        case(
            "report --samples missing",
            &["report", "--samples", "{dir}/missing.jsonl"],
            "missing.jsonl",
        ),
        case(
            "report --samples empty",
            &["report", "--samples", "{dir}/empty.jsonl"],
            "empty.jsonl",
        )
        .file("empty.jsonl", ""),
    ];
    if tch::Cuda::is_available() {
        eprintln!("CUDA is available: skipping the `--run-on cuda` without CUDA case");
    } else {
        v.push(
            case(
                "--run-on cuda without CUDA",
                &["generate", "--run-on", "cuda", "--prompt", "hi"],
                "CUDA is not available",
            )
            .with(&["--max-new-tokens", "1"]),
        );
    }
    v
}

#[test]
fn every_error_is_one_line_with_exit_code_1() {
    let mut failures = Vec::new();
    for c in cases() {
        let dir = common::tempdir();
        for (name, bytes) in &c.files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
        }
        let out = run_in(dir.path(), &c.args);
        let result = std::panic::catch_unwind(|| {
            common::assert_one_line_error(&out, c.needle);
            assert_eq!(out.status.code(), Some(1), "exit code");
        });
        if result.is_err() {
            failures.push(format!(
                "{} (exit {:?}): {}",
                c.name,
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
}

/// Usage errors: clap prints several lines; assert exit 2, the offending flag or value
/// named, and no panic.
#[test]
fn usage_errors_exit_2_and_name_the_flag_or_value() {
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--bogus"], "--bogus"),
        (&["generate", "--prompt", "hi", "--bogus"], "--bogus"),
        (&["run", "--dtype", "f64"], "f64"),
        (&["run", "--run-on", "tpu"], "tpu"),
        (&["run", "--matmul-precision", "medium"], "medium"),
        (&["generate", "--prompt", "hi", "--format", "yaml"], "yaml"),
        (&["run", "--format", "yaml"], "yaml"),
        (&["run", "--batch", "abc"], "abc"),
        (&["run", "--requests", "ten"], "ten"),
        (
            &["generate", "--prompt", "hi", "--threads", "x"],
            "--threads",
        ),
        (
            &["project", "--model", "llama-3.1-8b", "--tp", "many"],
            "many",
        ),
        (
            &["project", "--model", "llama-3.1-8b", "--format", "nosuch"],
            "nosuch",
        ),
        (
            &["compare", "--model", "llama-3.1-8b", "--price", "spot"],
            "spot",
        ),
        (
            &[
                "project",
                "--model",
                "llama-3.1-8b",
                "--weights-dtype",
                "fp64",
            ],
            "fp64",
        ),
        (
            &["calibrate", "--device", "inf2", "--format", "yaml"],
            "yaml",
        ),
        (&["nosuch-command"], "nosuch-command"),
        (&["generate"], "--prompt"),
    ];
    let mut failures = Vec::new();
    for (args, needle) in cases {
        let out = common::run_err(args);
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(2) || !err.contains(needle) || err.contains("panicked") {
            failures.push(format!("{args:?} (exit {:?}): {err}", out.status.code()));
        }
    }
    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
}

/// Runs `profiler ARGS` with stdout on `/dev/full`.
fn run_stdout_full(args: &[&str]) -> Output {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    common::profiler()
        .args(args)
        .stdout(full)
        .output()
        .expect("cannot start profiler")
}

/// A report that cannot be written to `--out` (a full disk) fails with one line naming the
/// path after measuring, and is not lost: it still goes to stdout, and the samples of the
/// finished request are on disk. The same for `report --out`; stdout on a full disk is a
/// one-line error too, never a panic. The samples file then serves the malformed-line
/// case of `profiler report`.
#[test]
fn unwritable_report_fails_after_measuring_and_bad_samples_line_is_named() {
    let dir = common::tempdir();
    let samples = common::path_str(&dir.path().join("s.jsonl"));
    let mut args = vec![
        "run",
        "--run-on",
        "cpu",
        "--format",
        "json",
        "--out",
        "/dev/full",
        "--samples",
        &samples,
    ];
    args.extend_from_slice(TINY_RUN);
    let out = common::run_err(&args);
    common::assert_one_line_error(
        &out,
        "cannot write the report to /dev/full: No space left on device",
    );
    assert_eq!(out.status.code(), Some(1));
    let r: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the report still goes to stdout");
    assert_eq!(r["requests"], 1);
    let text = std::fs::read_to_string(&samples).expect("the samples file was written");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("\"kind\":\"sample\"")),
        "no measured sample before the error: {text}"
    );

    let out = common::run_err(&[
        "report",
        "--samples",
        &samples,
        "--format",
        "json",
        "--out",
        "/dev/full",
    ]);
    common::assert_one_line_error(&out, "cannot write the report to /dev/full");
    assert_eq!(out.status.code(), Some(1));
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["requests"], 1);

    for args in [
        &["report", "--samples", &samples][..],
        &[
            "generate",
            "--run-on",
            "cpu",
            "--prompt",
            "hi",
            "--max-new-tokens",
            "1",
        ],
    ] {
        let out = run_stdout_full(args);
        common::assert_one_line_error(&out, "cannot write to stdout: No space left on device");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }

    // Header, a malformed line, then the rest: the error names line 2.
    let bad = dir.path().join("bad.jsonl");
    let mut body = vec![lines[0], "{\"kind\": "];
    body.extend_from_slice(&lines[1..]);
    std::fs::write(&bad, body.join("\n") + "\n").unwrap();
    let out = common::run_err(&["report", "--samples", &common::path_str(&bad)]);
    common::assert_one_line_error(&out, "bad.jsonl:2:");
    assert_eq!(out.status.code(), Some(1));
}

/// A GGUF whose tensors need more memory than the machine has available is refused before
/// anything is dequantised, with both numbers and the file. The file is sparse: a real
/// header describing a Llama model with one Q4_0 tensor of at least 200 GiB as f32 (twice
/// MemAvailable on larger machines), and a hole where its data would be, so the reader's
/// bounds checks pass without the disk holding the data.
#[test]
fn gguf_too_big_for_memory_is_refused_before_loading() {
    let gib = 1u64 << 30;
    let available = profiler_engine::sysinfo::available_memory_bytes().expect("MemAvailable");
    let need_gib = (2 * available).div_ceil(gib).max(200);
    let hidden = 8192u64;
    let weights = need_gib * gib / 4;
    let rows = weights / hidden;
    let s = |x: &str| x.to_string();
    let header = write_gguf(
        &[
            (s("general.architecture"), MetaValue::Str(s("llama"))),
            (s("llama.block_count"), MetaValue::U32(1)),
            (s("llama.context_length"), MetaValue::U32(64)),
            (s("llama.embedding_length"), MetaValue::U32(hidden as u32)),
            (
                s("llama.feed_forward_length"),
                MetaValue::U32(hidden as u32),
            ),
            (s("llama.attention.head_count"), MetaValue::U32(64)),
            (
                s("llama.attention.layer_norm_rms_epsilon"),
                MetaValue::F32(1e-5),
            ),
        ],
        &[
            (
                s("blk.0.attn_norm.weight"),
                vec![hidden],
                GgmlType::F32,
                vec![0u8; hidden as usize * 4],
            ),
            // Last, so that its data can be a sparse tail of the file.
            (
                s("token_embd.weight"),
                vec![hidden, rows],
                GgmlType::Q4_0,
                Vec::new(),
            ),
        ],
    );
    let dir = common::tempdir();
    let path = dir.path().join("huge.gguf");
    std::fs::write(&path, &header).unwrap();
    // Q4_0: 18 bytes per block of 32 weights.
    let data = weights / 32 * 18;
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(header.len() as u64 + data)
        .expect("a sparse file");
    let p = common::path_str(&path);
    let out = common::run_err(&[
        "generate", "--run-on", "cpu", "--model", &p, "--prompt", "hi",
    ]);
    // Tied (no output.weight): the embedding is kept twice, as itself and as the LM head,
    // each `need_gib` GiB in f32, so the figure is at least twice that.
    common::assert_one_line_error(&out, &format!("{p}: its "));
    common::assert_one_line_error(&out, " weights as f32 (");
    common::assert_one_line_error(&out, " GiB) and a tensor being converted need ");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let figure = |before: &str, after: &str| -> f64 {
        err.split(before)
            .nth(1)
            .and_then(|r| r.split(after).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no figure between {before:?} and {after:?} in: {err}"))
    };
    let stored = figure("weights as f32 (", " GiB) and");
    let need = figure("being converted need ", " GiB but only");
    assert!(
        stored >= 2.0 * need_gib as f64 && need > stored,
        "weights {stored} GiB, need {need} GiB, for 2 x {need_gib} GiB of f32 embedding: {err}"
    );
    let shown = figure("but only ", " GiB of memory is available");
    assert!(
        shown > 0.0 && shown < need_gib as f64,
        "available {shown} GiB: {err}"
    );
}

/// A libtorch failure inside the forward pass (here an id outside the vocabulary: libtorch
/// throws, as it does for a CUDA out-of-memory, and tch turns the exception into a panic)
/// is one line naming the batch, the lengths and the device, through the real model.
#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "needs the default model from scripts/setup (scripts/test turns on model-tests)"
)]
fn a_failed_forward_pass_is_one_line_naming_the_batch() {
    use profiler_engine::model::llama::WeightsMode;
    use profiler_engine::model::load;
    use profiler_engine::paths::Home;
    use tch::{Device, Kind, Tensor};
    common::default_weights();
    let home = Home::at(common::home());
    let r = load::resolve("llama", &home).unwrap();
    let w = load::load(&r, &home, 0, (WeightsMode::Dense(Kind::Float), Device::Cpu)).unwrap();
    let (model, _) = load::build_model(w, Device::Cpu, WeightsMode::Dense(Kind::Float)).unwrap();
    let mut cache = model.new_cache(2, 16).unwrap();
    let toks = Tensor::from_slice(&[1i64, 2, 3, 1, 2, 999_999]).view([2, 3]);
    let pos = Tensor::arange(3, (Kind::Int64, Device::Cpu))
        .view([1, 3])
        .repeat([2, 1]);
    let e = model
        .forward(&toks, &pos, None, &mut cache)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "the forward pass of batch 2 × 3 tokens (0 cached positions) failed on Cpu: "
        ),
        "{e}"
    );
    assert!(!e.contains('\n') && !e.contains("frame #"), "{e}");
    // The same model still answers a good request afterwards, on a fresh cache.
    let mut cache = model.new_cache(2, 16).unwrap();
    let ok = Tensor::from_slice(&[1i64, 2, 3, 1, 2, 3]).view([2, 3]);
    assert!(model.forward(&ok, &pos, None, &mut cache).is_ok());
}

/// On CUDA a KV cache beyond the device's free memory is refused before it is asked for,
/// in one line naming the batch, the positions and the memory (the CPU's counterpart is the
/// table's "a KV cache larger than the memory" case). Synthetic weights: nothing to download.
#[test]
#[cfg_attr(
    not(feature = "gpu-tests"),
    ignore = "needs a CUDA GPU (scripts/test turns on gpu-tests where nvidia-smi lists one)"
)]
fn an_impossible_batch_on_cuda_is_one_line() {
    let out = common::profiler()
        .args([
            "run",
            "--model",
            "llama-3.2-1b",
            "--run-on",
            "cuda",
            "--weights-dtype",
            "bf16",
            "--requests",
            "1",
            "--input-len",
            "8",
            "--output-len",
            "2",
            "--batch",
            "100000000",
        ])
        .output()
        .expect("cannot start profiler");
    assert_eq!(out.status.code(), Some(1));
    common::assert_one_line_error(&out, "batch 100000000 × 10 positions: the KV cache needs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GiB is free"), "{err}");
}

/// The engine's storage comes from the dtype by one conversion: each dtype that runs maps
/// to its libtorch storage, and fp8 (accepted by projections) is refused in one line that
/// names the flag and lists what runs, should it get past the command line.
#[test]
fn weights_mode_is_built_from_the_dtype_and_refuses_fp8() {
    use profiler_engine::dtype::WeightsDtype;
    use profiler_engine::model::llama::WeightsMode;
    use tch::Kind;
    for (d, mode) in [
        (WeightsDtype::Fp32, WeightsMode::Dense(Kind::Float)),
        (WeightsDtype::Bf16, WeightsMode::Dense(Kind::BFloat16)),
        (WeightsDtype::Fp16, WeightsMode::Dense(Kind::Half)),
        (WeightsDtype::Int8, WeightsMode::Int8),
        (WeightsDtype::Int4, WeightsMode::Int4),
    ] {
        assert_eq!(WeightsMode::try_from(d).unwrap(), mode, "{d}");
        assert_eq!(
            mode.activation_kind(),
            WeightsMode::try_from(d.activation())
                .unwrap()
                .activation_kind(),
            "{d}"
        );
    }
    let e = WeightsMode::try_from(WeightsDtype::Fp8)
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\n'), "{e}");
    assert!(e.starts_with("--weights-dtype fp8: "), "{e}");
    assert!(e.contains(WeightsDtype::RUNS), "{e}");
}
