//! `--kernels`: the model run on this project's custom CPU kernels (MKL routines checked at
//! start, the fused one-token step) and on libtorch's operators only gives the same logits;
//! the run report says which kernels ran. One test per process state: the switch is
//! process-wide, so the library test flips it and nothing else here depends on it.

#[path = "../common/mod.rs"]
mod common;

use profiler_engine::model::llama::{Llama, WeightsMode};
use profiler_engine::model::{load, mkl};
use profiler_engine::paths::Home;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

/// Logits of a 12-token prompt and of 8 one-token steps after it, batch 2 (one row per
/// prompt), in f32.
fn logits(model: &Llama) -> Vec<Tensor> {
    let _g = tch::no_grad_guard();
    let prompts: [[i64; 12]; 2] = [
        [504, 1463, 282, 260, 7510, 1757, 2585, 281, 260, 216, 33, 36],
        [1, 4093, 314, 253, 3937, 4026, 30, 378, 808, 7510, 1757, 436],
    ];
    let flat: Vec<i64> = prompts.iter().flatten().copied().collect();
    let toks = Tensor::from_slice(&flat).view([2, 12]);
    let pos = Tensor::arange(12, (Kind::Int64, Device::Cpu))
        .view([1, 12])
        .repeat([2, 1]);
    let mut cache = model.new_cache(2, 32).unwrap();
    let first = model.forward(&toks, &pos, None, &mut cache).unwrap();
    // The model gives the logits of each row's last position: [rows, vocabulary].
    let mut out = vec![first];
    let mut next = out[0].argmax(-1, false).view([2, 1]);
    for step in 0..8 {
        let p = Tensor::full([2, 1], 12 + step, (Kind::Int64, Device::Cpu));
        let l = model.forward(&next, &p, None, &mut cache).unwrap();
        next = l.argmax(-1, false).view([2, 1]);
        out.push(l);
    }
    out
}

fn build(home: &Home) -> Llama {
    let r = load::resolve("llama", home).unwrap();
    let w = load::load(&r, home, 0, (WeightsMode::Dense(Kind::Float), Device::Cpu)).unwrap();
    load::build_model(w, Device::Cpu, WeightsMode::Dense(Kind::Float))
        .unwrap()
        .0
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "needs the default model from scripts/setup (scripts/test turns on model-tests)"
)]
fn custom_and_libtorch_kernels_give_the_same_logits() {
    common::default_weights();
    let home = Home::at(common::home());
    mkl::set_libtorch_only(false);
    let custom_model = build(&home);
    assert!(custom_model.uses_fused_decode());
    let d = mkl::describe(true);
    assert!(d.starts_with("custom: mkl sgemv"), "{d}");
    let custom = logits(&custom_model);
    mkl::set_libtorch_only(true);
    let plain_model = build(&home);
    assert!(!plain_model.uses_fused_decode());
    assert_eq!(mkl::describe(true), "libtorch");
    let plain = logits(&plain_model);
    mkl::set_libtorch_only(false);
    assert_eq!(custom.len(), plain.len());
    for (step, (a, b)) in custom.iter().zip(&plain).enumerate() {
        let scale = b.abs().max().double_value(&[]);
        let diff = (a - b).abs().max().double_value(&[]);
        // f32 throughout; the orders of summation differ (MKL's gemv and batched products
        // against libtorch's linear and SDPA), nothing else.
        assert!(
            diff <= 1e-4 * scale,
            "step {step}: logits differ by {diff} (largest logit {scale})"
        );
        assert_eq!(
            a.argmax(-1, false),
            b.argmax(-1, false),
            "step {step}: greedy token"
        );
    }
}

/// The run report's environment names the kernels that ran.
#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "needs the default model from scripts/setup (scripts/test turns on model-tests)"
)]
fn the_run_report_says_which_kernels_ran() {
    common::default_weights();
    for (kernels, want) in [("custom", "custom: mkl sgemv"), ("libtorch", "libtorch")] {
        let mut args = vec![
            "run",
            "--model",
            "llama",
            "--run-on",
            "cpu",
            "--input-len",
            "8",
            "--output-len",
            "3",
            "--format",
            "json",
            "--kernels",
            kernels,
        ];
        args.extend_from_slice(common::ONE_QUIET_REQUEST);
        let v: Value = serde_json::from_str(&common::run_ok(&args)).unwrap();
        let got = v["environment"]["kernels"].as_str().unwrap_or_default();
        assert!(got.starts_with(want), "--kernels {kernels}: {got}");
        if kernels == "custom" {
            assert!(got.contains("fused one-token step"), "{got}");
        }
    }
    // The bf16x3 products are a custom kernel: refused, in one line, without them.
    let out = common::run_err(&[
        "generate",
        "--model",
        "llama",
        "--run-on",
        "cpu",
        "--kernels",
        "libtorch",
        "--matmul-precision",
        "high",
        "--prompt",
        "Hi",
        "--max-new-tokens",
        "1",
    ]);
    common::assert_one_line_error(&out, "--kernels libtorch");
}
