//! Generation without libtorch: the small interface an inference engine offers
//! ([`Inference`]: load a batch, prefill, decode a step, memory used) and the loop that
//! drives it and times each step against a [`Clock`]: [`generate`]. The `torch` engine
//! implements the interface; the measurement loop ([`crate::measure::runner`]) and the
//! tests use it through this module only, so that they build and run without a tensor.

use crate::measure::clock::Clock;
use crate::model::tokenizer::Tokenizer;
use anyhow::{bail, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// 0 means greedy (argmax).
    pub temperature: f64,
    /// Nucleus sampling mass (Holtzman et al. 2019); 1.0 keeps the whole distribution.
    pub top_p: f64,
    pub seed: i64,
}

impl Sampling {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Sampling {
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

/// Limits and stopping rules of one generation.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub eos_ids: Vec<u32>,
    /// Generate exactly `max_new_tokens` even past EOS (comparable benchmark runs).
    pub ignore_eos: bool,
    pub sampling: Sampling,
}

impl GenerateOptions {
    /// Greedy decoding of at most `max_new_tokens`, stopping at `eos` unless `ignore_eos`.
    pub fn greedy(max_new_tokens: usize, ignore_eos: bool, eos: u32) -> Self {
        GenerateOptions {
            max_new_tokens,
            eos_ids: vec![eos],
            ignore_eos,
            sampling: Sampling::greedy(),
        }
    }
}

/// What a generation produced, and how long each part took.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated ids per row (EOS included as the last id when it stopped a row).
    pub tokens: Vec<Vec<u32>>,
    /// Prefill plus the first sampled token.
    pub ttft: Duration,
    /// Each later decode step (one token for every row).
    pub step_times: Vec<Duration>,
    /// Prefill start to last token.
    pub total: Duration,
    /// Stopped early by the stop flag.
    pub interrupted: bool,
}

/// Peak memory an engine used, for the report (`None` where unknown or not applicable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Peak resident set size of the process, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Peak memory the device's allocator handed out, bytes (`None` off CUDA).
    pub device_peak_bytes: Option<u64>,
}

/// A loaded model that generates for a batch of prompts, one step at a time. Every call
/// returns once the device has finished its work, so that clock reads around it are true.
pub trait Inference {
    /// The model's name, for messages.
    fn name(&self) -> &str;
    /// The tokenizer; `None` for synthetic weights (prompts are then token ids).
    fn tokenizer(&self) -> Option<&Tokenizer>;
    /// Size of the vocabulary (random prompts draw ids below it).
    fn vocab_size(&self) -> usize;
    /// Positions the model can attend over (prompt plus generated tokens).
    fn context_window(&self) -> usize;
    /// Makes room (the KV cache) for `batch` rows of up to `max_len` positions.
    fn reserve(&mut self, batch: usize, max_len: usize) -> Result<()>;
    /// Loads the prompts of a new generation (one row each, decoded together) and its
    /// sampling; not part of the timed span.
    fn load(&mut self, prompts: &[Vec<u32>], opts: &GenerateOptions) -> Result<()>;
    /// Runs the loaded prompts through the model: the first token of every row.
    fn prefill(&mut self) -> Result<Vec<u32>>;
    /// One decode step of every row: the next token of each.
    fn decode_step(&mut self) -> Result<Vec<u32>>;
    /// Peak memory so far.
    fn memory(&self) -> MemoryStats;
}

/// The tokenizer of `inf`, or the error that says text prompts need one.
pub fn require_tokenizer(inf: &(impl Inference + ?Sized)) -> Result<&Tokenizer> {
    match inf.tokenizer() {
        Some(t) => Ok(t),
        None => bail!(
            "model {} has synthetic weights and no tokenizer: give token counts (--input-len) instead of text",
            inf.name()
        ),
    }
}

/// Generates for `prompts` (one id list per row, decoded together): loads them, prefills
/// and decodes until every row has `max_new_tokens` tokens or its EOS, timing the first
/// token and each later step on `clock`. `on_step(tokens_this_step)` is called after
/// every step (metrics); `stop` ends the generation after the current step.
pub fn generate<I: Inference + ?Sized>(
    inf: &mut I,
    clock: &dyn Clock,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    stop: Option<&AtomicBool>,
    mut on_step: impl FnMut(usize),
) -> Result<Generation> {
    inf.load(prompts, opts)?;
    let b = prompts.len();
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); b];
    let mut done = vec![opts.max_new_tokens == 0; b];
    let mut step_times = Vec::new();
    let t0 = clock.now();
    let mut last = t0;
    let mut ttft = Duration::ZERO;
    let mut interrupted = false;
    if opts.max_new_tokens > 0 {
        let mut picked = inf.prefill()?;
        let mut first = true;
        loop {
            let now = clock.now();
            if first {
                ttft = now.saturating_sub(t0);
                first = false;
            } else {
                step_times.push(now.saturating_sub(last));
            }
            last = now;
            if picked.len() != b {
                bail!(
                    "the engine returned {} tokens for a batch of {b} rows",
                    picked.len()
                );
            }
            let mut produced = 0;
            for (r, &id) in picked.iter().enumerate() {
                if done[r] {
                    continue;
                }
                out[r].push(id);
                produced += 1;
                if out[r].len() >= opts.max_new_tokens
                    || (!opts.ignore_eos && opts.eos_ids.contains(&id))
                {
                    done[r] = true;
                }
            }
            on_step(produced);
            if done.iter().all(|d| *d) {
                break;
            }
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                interrupted = true;
                break;
            }
            picked = inf.decode_step()?;
        }
    }
    Ok(Generation {
        tokens: out,
        ttft,
        step_times,
        total: last.saturating_sub(t0),
        interrupted,
    })
}

/// A deterministic stand-in for an engine, for tests of the loops above it: each prefill
/// advances the shared [`crate::measure::clock::FakeClock`] by `prefill` and each decode
/// step by `step`; the tokens are `1, 2, 3, ...` per row, with `eos` as the `eos_at`-th
/// token of row 0 when set; `fail_at` makes the n-th call to `prefill` (0-based, over the
/// fake's life) fail.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use crate::measure::clock::FakeClock;

    pub struct FakeInference<'c> {
        pub clock: &'c FakeClock,
        pub prefill: Duration,
        pub step: Duration,
        pub eos_at: Option<(usize, u32)>,
        pub fail_at: Option<usize>,
        pub window: usize,
        pub prefills: usize,
        pub reserved: Option<(usize, usize)>,
        rows: usize,
        produced: u32,
    }

    impl<'c> FakeInference<'c> {
        pub fn new(clock: &'c FakeClock, prefill_ms: u64, step_ms: u64) -> Self {
            FakeInference {
                clock,
                prefill: Duration::from_millis(prefill_ms),
                step: Duration::from_millis(step_ms),
                eos_at: None,
                fail_at: None,
                window: 1024,
                prefills: 0,
                reserved: None,
                rows: 0,
                produced: 0,
            }
        }

        fn next(&mut self) -> Vec<u32> {
            self.produced += 1;
            let n = self.produced;
            (0..self.rows)
                .map(|r| match self.eos_at {
                    Some((at, eos)) if r == 0 && n as usize == at => eos,
                    _ => n,
                })
                .collect()
        }
    }

    impl Inference for FakeInference<'_> {
        fn name(&self) -> &str {
            "fake"
        }
        fn tokenizer(&self) -> Option<&Tokenizer> {
            None
        }
        fn vocab_size(&self) -> usize {
            100
        }
        fn context_window(&self) -> usize {
            self.window
        }
        fn reserve(&mut self, batch: usize, max_len: usize) -> Result<()> {
            self.reserved = Some((batch, max_len));
            Ok(())
        }
        fn load(&mut self, prompts: &[Vec<u32>], _: &GenerateOptions) -> Result<()> {
            self.rows = prompts.len();
            self.produced = 0;
            Ok(())
        }
        fn prefill(&mut self) -> Result<Vec<u32>> {
            let n = self.prefills;
            self.prefills += 1;
            self.clock.advance(self.prefill);
            if self.fail_at == Some(n) {
                bail!("out of device memory");
            }
            Ok(self.next())
        }
        fn decode_step(&mut self) -> Result<Vec<u32>> {
            self.clock.advance(self.step);
            Ok(self.next())
        }
        fn memory(&self) -> MemoryStats {
            MemoryStats {
                peak_rss_bytes: Some(1 << 20),
                device_peak_bytes: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeInference;
    use super::*;
    use crate::measure::clock::FakeClock;

    fn opts(n: usize, ignore_eos: bool, eos: u32) -> GenerateOptions {
        GenerateOptions::greedy(n, ignore_eos, eos)
    }

    #[test]
    fn times_the_first_token_and_each_step_on_the_clock() {
        let clock = FakeClock::default();
        let mut f = FakeInference::new(&clock, 30, 7);
        let mut steps = Vec::new();
        let g = generate(
            &mut f,
            &clock,
            &[vec![1, 2], vec![3]],
            &opts(4, true, 0),
            None,
            |n| steps.push(n),
        )
        .unwrap();
        assert_eq!(g.tokens, vec![vec![1, 2, 3, 4]; 2]);
        assert_eq!(g.ttft, Duration::from_millis(30));
        assert_eq!(g.step_times, vec![Duration::from_millis(7); 3]);
        assert_eq!(g.total, Duration::from_millis(51));
        assert_eq!(steps, vec![2, 2, 2, 2]);
        assert!(!g.interrupted);
    }

    #[test]
    fn a_row_stops_at_its_eos_and_the_others_go_on() {
        let clock = FakeClock::default();
        let mut f = FakeInference::new(&clock, 10, 5);
        f.eos_at = Some((2, 99));
        let mut steps = Vec::new();
        let g = generate(
            &mut f,
            &clock,
            &[vec![1], vec![2]],
            &opts(3, false, 99),
            None,
            |n| steps.push(n),
        )
        .unwrap();
        assert_eq!(g.tokens, vec![vec![1, 99], vec![1, 2, 3]]);
        assert_eq!(steps, vec![2, 2, 1]);
        // With ignore_eos the EOS id is just a token.
        let g = generate(&mut f, &clock, &[vec![1]], &opts(3, true, 99), None, |_| {}).unwrap();
        assert_eq!(g.tokens, vec![vec![1, 99, 3]]);
    }

    #[test]
    fn the_stop_flag_ends_after_the_current_step() {
        let clock = FakeClock::default();
        let mut f = FakeInference::new(&clock, 10, 5);
        let stop = AtomicBool::new(true);
        let g = generate(
            &mut f,
            &clock,
            &[vec![1]],
            &opts(9, true, 0),
            Some(&stop),
            |_| {},
        )
        .unwrap();
        assert!(g.interrupted);
        assert_eq!(g.tokens, vec![vec![1]]);
        assert_eq!(g.ttft, Duration::from_millis(10));
    }

    #[test]
    fn zero_new_tokens_runs_nothing() {
        let clock = FakeClock::default();
        let mut f = FakeInference::new(&clock, 10, 5);
        let g = generate(&mut f, &clock, &[vec![1]], &opts(0, true, 0), None, |_| {}).unwrap();
        assert_eq!(g.tokens, vec![Vec::<u32>::new()]);
        assert_eq!(f.prefills, 0);
        assert_eq!(g.ttft, Duration::ZERO);
    }

    #[test]
    fn text_prompts_without_a_tokenizer_are_refused_in_words() {
        let clock = FakeClock::default();
        let f = FakeInference::new(&clock, 1, 1);
        let e = require_tokenizer(&f).unwrap_err().to_string();
        assert!(e.contains("model fake has synthetic weights"), "{e}");
    }
}
