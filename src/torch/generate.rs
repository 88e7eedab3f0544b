//! Token generation on libtorch: the engine's side of [`crate::generation::Inference`]
//! (batched prefill with left padding, then decode steps through the KV cache, with greedy
//! or seeded temperature/top-p sampling), and [`generate`] over a model and its cache.

use crate::engine::Engine;
pub use crate::generation::{GenerateOptions, Generation, Sampling};
use crate::generation::{Inference, MemoryStats};
use crate::measure::clock::MonotonicClock;
use crate::model::kv_cache::KvCache;
use crate::model::llama::Llama;
use crate::model::tokenizer::Tokenizer;
use anyhow::{bail, Context, Result};
use std::sync::atomic::AtomicBool;
use tch::{Device, Kind, Tensor};

/// Chooses next tokens; seeded with its own generator so results do not depend on
/// libtorch's global random state (shared by every thread).
pub struct Sampler {
    s: Sampling,
    state: u64,
}

impl Sampler {
    /// A sampler for `s`, seeded from `s.seed`.
    pub fn new(s: Sampling) -> Self {
        Sampler {
            s,
            state: (s.seed as u64) ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// SplitMix64 (Steele et al. 2014): a uniform draw in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// One token id per row of `logits` (`[batch, vocab]`, f32), as a `[batch]` i64 tensor
    /// on the logits' device.
    pub fn pick(&mut self, logits: &Tensor) -> Result<Tensor> {
        if self.s.temperature <= 0.0 {
            return Ok(logits.argmax(-1, false));
        }
        let probs = (logits / self.s.temperature)
            .softmax(-1, Kind::Float)
            .to_device(Device::Cpu);
        let rows = probs.size()[0];
        let mut picked = Vec::with_capacity(rows as usize);
        for r in 0..rows {
            let p: Vec<f32> = Vec::<f32>::try_from(&probs.get(r))?;
            let mut order: Vec<usize> = (0..p.len()).collect();
            order.sort_unstable_by(|a, b| p[*b].total_cmp(&p[*a]));
            // Nucleus (Holtzman et al. 2019): the smallest prefix whose mass reaches top_p.
            let mut mass = 0.0f64;
            let mut keep = 0;
            for &i in &order {
                keep += 1;
                mass += p[i] as f64;
                if mass >= self.s.top_p {
                    break;
                }
            }
            let mut u = self.uniform() * mass;
            let mut choice = order[keep - 1];
            for &i in &order[..keep] {
                u -= p[i] as f64;
                if u < 0.0 {
                    choice = i;
                    break;
                }
            }
            picked.push(choice as i64);
        }
        Ok(Tensor::from_slice(&picked).to_device(logits.device()))
    }
}

/// Waits for queued device work so clock reads are true (a no-op on the CPU).
pub fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Generates for `prompts` (one id list per row, decoded together) into `cache`, which is
/// reset first. `on_step(tokens_this_step)` is called after every step (metrics); `stop`
/// ends the generation after the current step.
pub fn generate(
    model: &Llama,
    cache: &mut KvCache,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    stop: Option<&AtomicBool>,
    on_step: impl FnMut(usize),
) -> Result<Generation> {
    let mut inf = TchInference::over(model, cache);
    crate::generation::generate(
        &mut inf,
        &MonotonicClock::new(),
        prompts,
        opts,
        stop,
        on_step,
    )
}

/// The KV cache a [`TchInference`] runs in: its own once reserved, or one it was lent.
enum Cache<'a> {
    None,
    Owned(KvCache),
    Lent(&'a mut KvCache),
}

/// A model generating through libtorch, one step at a time ([`Inference`]).
pub struct TchInference<'a> {
    model: &'a Llama,
    tokenizer: Option<&'a Tokenizer>,
    name: &'a str,
    cache: Cache<'a>,
    sampler: Sampler,
    /// The loaded prompts' ids, positions and padding mask, until the prefill.
    inputs: Option<(Tensor, Tensor, Option<Tensor>)>,
    /// The tokens last picked (`[batch]`, on the device), fed to the next step.
    next: Option<Tensor>,
    /// Each row's position of its next token.
    next_pos: Vec<i64>,
}

impl Engine {
    /// The loaded model as an [`Inference`] (its KV cache made by `reserve`).
    pub fn inference(&self) -> TchInference<'_> {
        TchInference {
            tokenizer: self.tokenizer.as_ref(),
            name: &self.info.name,
            ..TchInference::new(&self.model, Cache::None)
        }
    }
}

impl<'a> TchInference<'a> {
    fn new(model: &'a Llama, cache: Cache<'a>) -> Self {
        TchInference {
            model,
            tokenizer: None,
            name: "",
            cache,
            sampler: Sampler::new(Sampling::greedy()),
            inputs: None,
            next: None,
            next_pos: Vec::new(),
        }
    }

    /// `model` generating into `cache` (no tokenizer: prompts are ids).
    pub fn over(model: &'a Llama, cache: &'a mut KvCache) -> Self {
        Self::new(model, Cache::Lent(cache))
    }

    fn cache(&mut self) -> Result<&mut KvCache> {
        match &mut self.cache {
            Cache::None => bail!("no KV cache: reserve one before loading prompts"),
            Cache::Owned(c) => Ok(c),
            Cache::Lent(c) => Ok(c),
        }
    }

    /// Keeps `next` for the following step and returns it on the host (which waits for
    /// the device).
    fn picked(&mut self, next: Tensor) -> Result<Vec<u32>> {
        let ids = Vec::<i64>::try_from(&next.to_device(Device::Cpu))?;
        self.next = Some(next);
        Ok(ids.into_iter().map(|id| id as u32).collect())
    }
}

impl Inference for TchInference<'_> {
    fn name(&self) -> &str {
        self.name
    }

    fn tokenizer(&self) -> Option<&Tokenizer> {
        self.tokenizer
    }

    fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }

    fn context_window(&self) -> usize {
        self.model.config().max_position_embeddings
    }

    fn reserve(&mut self, batch: usize, max_len: usize) -> Result<()> {
        self.cache = Cache::Owned(self.model.new_cache(batch, max_len)?);
        Ok(())
    }

    fn load(&mut self, prompts: &[Vec<u32>], opts: &GenerateOptions) -> Result<()> {
        let b = prompts.len();
        let cache = self.cache()?;
        if b == 0 || b != cache.batch() {
            bail!("{b} prompts for a cache of {} rows", cache.batch());
        }
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        if prompts.iter().any(Vec::is_empty) {
            bail!("a prompt has no tokens (expected at least one)");
        }
        let window = cache.max_len();
        if longest + opts.max_new_tokens > window {
            bail!(
                "prompt of {longest} tokens plus {} new tokens exceeds the context of {window} positions",
                opts.max_new_tokens
            );
        }
        cache.reset();
        let device = self.model.device();
        let padded = prompts.iter().any(|p| p.len() != longest);
        let mut ids = Vec::with_capacity(b * longest);
        let mut pos = Vec::with_capacity(b * longest);
        let mut real = Vec::with_capacity(b * longest);
        for p in prompts {
            let pad = longest - p.len();
            for j in 0..longest {
                let is_real = j >= pad;
                ids.push(if is_real { p[j - pad] as i64 } else { 0 });
                pos.push(j.saturating_sub(pad) as i64);
                real.push(is_real);
            }
        }
        let shape = [b as i64, longest as i64];
        let tokens = Tensor::from_slice(&ids).view(shape).to_device(device);
        let positions = Tensor::from_slice(&pos).view(shape).to_device(device);
        let mask = padded.then(|| Tensor::from_slice(&real).view(shape).to_device(device));
        self.inputs = Some((tokens, positions, mask));
        self.next = None;
        self.next_pos = prompts.iter().map(|p| p.len() as i64).collect();
        self.sampler = Sampler::new(opts.sampling);
        sync(device);
        Ok(())
    }

    fn prefill(&mut self) -> Result<Vec<u32>> {
        let _guard = tch::no_grad_guard();
        let (tokens, positions, mask) = self.inputs.take().context("prefill before load")?;
        let model = self.model;
        let logits = model.forward(&tokens, &positions, mask.as_ref(), self.cache()?)?;
        let next = self.sampler.pick(&logits)?;
        self.picked(next)
    }

    fn decode_step(&mut self) -> Result<Vec<u32>> {
        let _guard = tch::no_grad_guard();
        let next = self.next.take().context("decode step before prefill")?;
        let b = self.next_pos.len() as i64;
        let device = self.model.device();
        let step_pos = Tensor::from_slice(&self.next_pos)
            .view([b, 1])
            .to_device(device);
        for p in self.next_pos.iter_mut() {
            *p += 1;
        }
        let model = self.model;
        let logits = model.forward(&next.view([b, 1]), &step_pos, None, self.cache()?)?;
        let next = self.sampler.pick(&logits)?;
        self.picked(next)
    }

    fn memory(&self) -> MemoryStats {
        MemoryStats {
            peak_rss_bytes: crate::sysinfo::peak_rss_bytes(),
            device_peak_bytes: crate::measure::cuda_memory::peak_for(self.model.device()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::LlamaConfig;

    fn model() -> Llama {
        let cfg = LlamaConfig {
            vocab_size: 13,
            hidden_size: 8,
            intermediate_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            num_key_value_heads: 1,
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: 1e4,
            rope_scaling: None,
            max_position_embeddings: 64,
            tie_word_embeddings: true,
        };
        let w = crate::model::synthetic::random_weights(&cfg, 11);
        Llama::new(&cfg, w, Device::Cpu, Kind::Float).unwrap()
    }

    fn opts(n: usize, ignore_eos: bool, eos: u32) -> GenerateOptions {
        GenerateOptions::greedy(n, ignore_eos, eos)
    }

    #[test]
    fn generates_exactly_n_when_ignoring_eos_and_times_each_step() {
        let m = model();
        let mut cache = m.new_cache(1, 32).unwrap();
        let mut calls = 0;
        let g = generate(
            &m,
            &mut cache,
            &[vec![1, 2, 3]],
            &opts(6, true, 0),
            None,
            |_| calls += 1,
        )
        .unwrap();
        assert_eq!(g.tokens[0].len(), 6);
        assert_eq!(g.step_times.len(), 5);
        assert_eq!(calls, 6);
        assert!(g.total >= g.ttft);
        assert_eq!(cache.len(), 3 + 5);
    }

    #[test]
    fn batched_rows_equal_unbatched_greedy() {
        let m = model();
        let a = vec![1u32, 2, 3, 4, 5];
        let b = vec![7u32, 8];
        let mut c1 = m.new_cache(1, 32).unwrap();
        let ga = generate(
            &m,
            &mut c1,
            std::slice::from_ref(&a),
            &opts(5, true, 0),
            None,
            |_| {},
        )
        .unwrap();
        let gb = generate(
            &m,
            &mut c1,
            std::slice::from_ref(&b),
            &opts(5, true, 0),
            None,
            |_| {},
        )
        .unwrap();
        let mut c2 = m.new_cache(2, 32).unwrap();
        let g = generate(&m, &mut c2, &[a, b], &opts(5, true, 0), None, |_| {}).unwrap();
        assert_eq!(g.tokens[0], ga.tokens[0]);
        assert_eq!(g.tokens[1], gb.tokens[0]);
    }

    #[test]
    fn stops_at_eos_and_includes_it() {
        let m = model();
        let mut cache = m.new_cache(1, 32).unwrap();
        let free = generate(
            &m,
            &mut cache,
            &[vec![4, 5]],
            &opts(8, true, 0),
            None,
            |_| {},
        )
        .unwrap();
        let eos = free.tokens[0][2];
        let g = generate(
            &m,
            &mut cache,
            &[vec![4, 5]],
            &opts(8, false, eos),
            None,
            |_| {},
        )
        .unwrap();
        let first = free.tokens[0].iter().position(|t| *t == eos).unwrap();
        assert_eq!(g.tokens[0], free.tokens[0][..=first].to_vec());
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_top_p_tiny_is_greedy() {
        let m = model();
        let mut cache = m.new_cache(1, 32).unwrap();
        let mut o = opts(8, true, 0);
        o.sampling = Sampling {
            temperature: 1.5,
            top_p: 0.9,
            seed: 42,
        };
        let a = generate(&m, &mut cache, &[vec![3, 1]], &o, None, |_| {}).unwrap();
        let b = generate(&m, &mut cache, &[vec![3, 1]], &o, None, |_| {}).unwrap();
        assert_eq!(a.tokens, b.tokens);
        o.sampling.top_p = 1e-9;
        let c = generate(&m, &mut cache, &[vec![3, 1]], &o, None, |_| {}).unwrap();
        let greedy = generate(
            &m,
            &mut cache,
            &[vec![3, 1]],
            &opts(8, true, 0),
            None,
            |_| {},
        )
        .unwrap();
        assert_eq!(c.tokens, greedy.tokens);
    }

    #[test]
    fn too_long_for_the_window_is_refused() {
        let m = model();
        let mut cache = m.new_cache(1, 8).unwrap();
        let e = generate(
            &m,
            &mut cache,
            &[vec![1; 6]],
            &opts(4, true, 0),
            None,
            |_| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("exceeds the context"), "{e}");
    }

    #[test]
    fn stop_flag_interrupts_after_the_current_step() {
        let m = model();
        let mut cache = m.new_cache(1, 32).unwrap();
        let stop = AtomicBool::new(true);
        let g = generate(
            &m,
            &mut cache,
            &[vec![1]],
            &opts(10, true, 0),
            Some(&stop),
            |_| {},
        )
        .unwrap();
        assert!(g.interrupted);
        assert_eq!(g.tokens[0].len(), 1);
    }
}
