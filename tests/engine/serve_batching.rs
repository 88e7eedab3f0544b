//! Continuous batching (`profiler_engine::batching`) on the real default model: every request's
//! greedy tokens must equal what `generate` gives for it alone, token for token, while
//! other requests of other lengths start and finish around it in the same slots; and at
//! f32 they must follow Hugging Face transformers' greedy tokens (tests/fixtures/
//! reference.json) except past a near tie.

#[path = "../common/mod.rs"]
mod common;

use profiler_engine::batching::{Batcher, SlotOptions};
use profiler_engine::engine::{
    Engine, EngineOptions, Kernels, MatmulPrecision, RunOn, WeightsDtype,
};
use profiler_engine::generate::{generate, GenerateOptions, Sampling};
use profiler_engine::jobs::{self, Event, FinishReason, Load, SamplingParams};
use profiler_engine::paths::Home;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn fixtures() -> Value {
    let p = common::home().join("tests/fixtures/reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn engine(dtype: WeightsDtype) -> Engine {
    common::default_weights();
    Engine::load(
        &EngineOptions {
            model: "llama".into(),
            run_on: RunOn::Cpu,
            dtype,
            matmul_precision: MatmulPrecision::Highest,
            kernels: Kernels::Custom,
            threads: None,
            seed: 0,
        },
        &Home::at(common::home()),
    )
    .unwrap()
}

/// Tokens per request: different lengths, so slots free and refill at different steps.
const LIMITS: [usize; 7] = [24, 9, 17, 24, 5, 20, 13];

/// `generate` alone (a batch of one) for each fixture prompt.
fn alone(e: &Engine, prompts: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let mut cache = e.model.new_cache(1, 448).unwrap();
    prompts
        .iter()
        .zip(LIMITS)
        .map(|(p, n)| {
            let o = GenerateOptions {
                max_new_tokens: n,
                eos_ids: vec![],
                ignore_eos: true,
                sampling: Sampling::greedy(),
            };
            generate(
                &e.model,
                &mut cache,
                std::slice::from_ref(p),
                &o,
                None,
                |_| {},
            )
            .unwrap()
            .tokens
            .remove(0)
        })
        .collect()
}

/// Every prompt through the batcher at once, `slots` slots: each request's tokens, and
/// what the loop reports.
fn batched(
    e: &Engine,
    prompts: &[Vec<u32>],
    slots: usize,
) -> (Vec<Vec<u32>>, profiler_engine::batching::Served) {
    let load = Arc::new(Load::default());
    let (sub, rx) = jobs::queue(prompts.len(), load.clone());
    let mut receivers = Vec::new();
    for (p, n) in prompts.iter().zip(LIMITS) {
        let (job, events, _) = jobs::job(
            p.clone(),
            n,
            true,
            SamplingParams {
                temperature: 0.0,
                top_p: 1.0,
                seed: 0,
            },
            Instant::now(),
            Duration::ZERO,
        );
        sub.submit(job).unwrap();
        receivers.push(events);
    }
    drop(sub);
    let opts = SlotOptions {
        max_num_seqs: slots,
        seq_len: 448,
    };
    let served = Batcher::new(e, opts, &load, None, None)
        .unwrap()
        .run(&rx, &AtomicBool::new(false))
        .unwrap();
    assert_eq!(load.busy.load(Ordering::Relaxed), 0, "slots left busy");
    assert_eq!(
        load.queued.load(Ordering::Relaxed),
        0,
        "requests left queued"
    );
    let outs = receivers
        .into_iter()
        .zip(LIMITS)
        .map(|(mut rx, n)| {
            let mut toks = Vec::new();
            let mut done = None;
            while let Ok(ev) = rx.try_recv() {
                match ev {
                    Event::Token(t) => toks.push(t),
                    Event::Done {
                        reason,
                        completion_tokens,
                    } => done = Some((reason, completion_tokens)),
                    Event::Failed(m) => panic!("request failed: {m}"),
                }
            }
            assert_eq!(done, Some((FinishReason::Length, n)));
            toks
        })
        .collect();
    (outs, served)
}

/// Largest gap, in logits, between generate's best next token and the batched run's, where
/// the two may part (see [`first_difference_is_a_tie`]): two bf16 rounding steps of a logit
/// of this model's size (one step is 0.125 between 16 and 32), far below the gaps between a
/// model's choices in general (the ties seen on an AVX512-BF16 CPU: 0.045 and 0).
const TIE: f64 = 0.25;

/// With bf16 activations (int8, int4) the matrix products of one row and of several need not
/// round alike: on CPUs with bf16 dot-product instructions (AVX512-BF16, AMX) libtorch's
/// kernels for one row and for several sum in different orders. A request may then leave
/// generate's path, but only where generate's own two best next tokens are all but tied.
/// Checks exactly that: the tokens agree up to the first difference, and there the batched
/// token's logit, from the model's own forward pass over the common prefix (batch of one),
/// is within [`TIE`] of the best. Identical tokens pass.
fn first_difference_is_a_tie(
    e: &Engine,
    prompt: &[u32],
    got: &[u32],
    want: &[u32],
) -> Result<(), String> {
    let Some(d) = got.iter().zip(want).position(|(a, b)| a != b) else {
        return Ok(());
    };
    let prefix: Vec<i64> = prompt
        .iter()
        .chain(&want[..d])
        .map(|&t| i64::from(t))
        .collect();
    let n = prefix.len() as i64;
    let mut cache = e.model.new_cache(1, prefix.len() + 1).unwrap();
    let toks = tch::Tensor::from_slice(&prefix).view([1, n]);
    let pos = tch::Tensor::arange(n, (tch::Kind::Int64, tch::Device::Cpu)).view([1, n]);
    let logits = e.model.forward(&toks, &pos, None, &mut cache).unwrap();
    let at = |t: u32| logits.double_value(&[0, i64::from(t)]);
    let best = logits.max().double_value(&[]);
    let gap = best - at(got[d]);
    eprintln!(
        "first difference at token {d}: batched {} (logit {:.3}), alone {} (logit {:.3}), best {best:.3}, gap {gap:.3}",
        got[d],
        at(got[d]),
        want[d],
        at(want[d])
    );
    if gap <= TIE {
        Ok(())
    } else {
        Err(format!(
            "at token {d} the batched token {} is {gap:.3} logits below the best (tie: {TIE})",
            got[d]
        ))
    }
}

fn check(dtype: WeightsDtype) {
    let f = fixtures();
    let cases = f["cases"].as_array().unwrap();
    let prompts: Vec<Vec<u32>> = cases.iter().map(|c| ids(&c["prompt_tokens"])).collect();
    let e = engine(dtype);
    let want = alone(&e, &prompts);
    for slots in [3, 1] {
        let (got, served) = batched(&e, &prompts, slots);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let what = format!(
                "{dtype:?}, {slots} slots: request {i} ({}) differs from generate alone",
                cases[i]["name"]
            );
            if dtype == WeightsDtype::Fp32 {
                assert_eq!(g, w, "{what}");
            } else {
                assert_eq!(g.len(), w.len(), "{what}");
                if let Err(e) = first_difference_is_a_tie(&e, &prompts[i], g, w) {
                    panic!("{what}: {e}\n  batched: {g:?}\n  alone:   {w:?}");
                }
            }
        }
        assert_eq!(served.samples.len(), prompts.len());
        assert!(served.samples.iter().all(|s| s.is_ok()));
        assert_eq!(served.peak_busy, slots, "{dtype:?}: slots never all busy");
        for s in &served.samples {
            s.validate().unwrap();
        }
        // Requests joined while others were decoding: some ran beside 3 others.
        if slots == 3 {
            assert!(served.samples.iter().any(|s| s.batch == 3));
            // Request 1 (9 tokens) ends before request 2 in the slot above it: the loop
            // moved sequences down into freed slots, and their tokens above still agree.
            assert!(served.moves > 0, "{dtype:?}: no sequence changed slot");
        }
    }
    if dtype == WeightsDtype::Fp32 {
        // Independent of this project: transformers' greedy tokens, up to a near tie.
        for (i, c) in cases.iter().enumerate() {
            let reference = ids(&c["greedy_tokens"]);
            let gaps: Vec<f64> = c["top2_gap"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g.as_f64().unwrap())
                .collect();
            for (step, (a, b)) in want[i].iter().zip(&reference).enumerate() {
                if a != b {
                    assert!(
                        gaps[step] < 1e-3,
                        "{}: step {step}: ours {a}, transformers {b} (top-2 gap {})",
                        c["name"],
                        gaps[step]
                    );
                    break;
                }
            }
        }
    }
}

#[test]
fn continuous_batching_matches_generate_at_f32_and_transformers() {
    check(WeightsDtype::Fp32);
}

#[test]
fn continuous_batching_matches_generate_at_int8() {
    check(WeightsDtype::Int8);
}

#[test]
fn continuous_batching_matches_generate_at_int4() {
    check(WeightsDtype::Int4);
}
