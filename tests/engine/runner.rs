//! The core's measurement loop (`profiler::measure::runner`) driven through the
//! `Inference` trait by the real engine on the real default model: the times it records
//! hold together, the tokens are the engine's own, and warm-up is left out.

#[path = "../common/mod.rs"]
mod common;

use profiler_engine::engine::{
    Engine, EngineOptions, Kernels, MatmulPrecision, RunOn, WeightsDtype,
};
use profiler_engine::generate::{generate, GenerateOptions, Sampling};
use profiler_engine::generation::Inference;
use profiler_engine::measure::clock::MonotonicClock;
use profiler_engine::measure::runner::{execute, Corpus, PromptSource, RunObserver, RunPlan};
use profiler_engine::measure::samples::RequestSample;
use profiler_engine::paths::Home;
use std::cell::Cell;
use std::sync::atomic::AtomicBool;

#[derive(Default)]
struct Counts {
    tokens: Cell<usize>,
    requests: Cell<usize>,
}

impl RunObserver for Counts {
    fn tokens(&self, n: usize) {
        self.tokens.set(self.tokens.get() + n);
    }
    fn request(&self, _: &RequestSample) {
        self.requests.set(self.requests.get() + 1);
    }
}

#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "needs the default model from scripts/setup (scripts/test turns on model-tests)"
)]
fn the_core_runner_measures_the_real_engine_through_the_trait() {
    common::default_weights();
    let home = Home::at(common::home());
    let engine = Engine::load(
        &EngineOptions {
            model: "llama".into(),
            run_on: RunOn::Cpu,
            dtype: WeightsDtype::Fp32,
            matmul_precision: MatmulPrecision::Highest,
            kernels: Kernels::Custom,
            threads: None,
            seed: 0,
        },
        &home,
    )
    .unwrap();
    let corpus = Corpus::load(engine.tokenizer.as_ref(), &home.corpus()).unwrap();
    let plan = RunPlan {
        source: PromptSource::InputLen(12),
        chat: false,
        output_len: Some(5),
        max_new_tokens: 64,
        batch: 2,
        requests: Some(3),
        duration: None,
        warmup: 1,
        sampling: Sampling::greedy(),
    };
    let seen = Counts::default();
    let mut inf = engine.inference();
    let r = execute(
        &mut inf,
        &MonotonicClock::new(),
        &plan,
        corpus.as_ref(),
        &AtomicBool::new(false),
        None,
        &seen,
    )
    .unwrap();
    assert!(!r.interrupted && r.engine_error.is_none(), "{r:?}");
    // Two counted batches of two rows; the last row of the second is not counted.
    assert_eq!(r.samples.len(), 3);
    assert_eq!(seen.requests.get(), 3);
    assert_eq!(seen.tokens.get(), 2 * 2 * 5, "warm-up tokens are left out");
    for s in &r.samples {
        assert!(s.is_ok(), "{s:?}");
        assert_eq!((s.prompt_tokens, s.output_tokens, s.batch), (12, 5, 2));
        assert_eq!(s.decode_step_ms.len(), 4);
        let ttft = s.ttft_ms.unwrap();
        assert!(
            ttft > 0.0 && s.decode_step_ms.iter().all(|t| *t > 0.0),
            "{s:?}"
        );
        let e2e = ttft + s.decode_step_ms.iter().sum::<f64>();
        assert!((s.e2e_ms - e2e).abs() <= 1e-9 * e2e, "{s:?}");
        assert_eq!(s.tpot_ms, RequestSample::tpot(s.e2e_ms, ttft, 5));
    }
    // Rows of a batch start together; the next batch after the first one ended.
    let (first, third) = (&r.samples[0], &r.samples[2]);
    assert_eq!(first.start_offset_ms, r.samples[1].start_offset_ms);
    assert!(third.start_offset_ms >= first.start_offset_ms + first.e2e_ms);
    assert!(inf.memory().peak_rss_bytes.unwrap_or(0) > 0);

    // Step by step through the trait, the engine gives what its generate gives.
    let text = std::fs::read_to_string(home.corpus()).unwrap();
    let ids = engine.tokenizer().unwrap().encode(&text).unwrap();
    let prompt = profiler_engine::workload::corpus_prompt(&ids, 12, 0, 0).unwrap();
    let opts = GenerateOptions {
        max_new_tokens: 5,
        eos_ids: Vec::new(),
        ignore_eos: true,
        sampling: Sampling::greedy(),
    };
    let mut cache = engine.model.new_cache(1, 32).unwrap();
    let g = generate(
        &engine.model,
        &mut cache,
        std::slice::from_ref(&prompt),
        &opts,
        None,
        |_| {},
    )
    .unwrap();
    inf.reserve(1, 32).unwrap();
    inf.load(&[prompt], &opts).unwrap();
    let mut steps = vec![inf.prefill().unwrap()];
    for _ in 1..5 {
        steps.push(inf.decode_step().unwrap());
    }
    let by_steps: Vec<u32> = steps.iter().map(|s| s[0]).collect();
    assert_eq!(by_steps, g.tokens[0]);
}
