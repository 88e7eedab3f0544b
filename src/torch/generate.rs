//! Token generation: batched prefill with left padding, then decode steps through the
//! KV cache, with greedy or seeded temperature/top-p sampling, timed per step.

use crate::model::kv_cache::KvCache;
use crate::model::llama::Llama;
use anyhow::{bail, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

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

/// Limits and stopping rules of one generation.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub eos_ids: Vec<u32>,
    /// Generate exactly `max_new_tokens` even past EOS (comparable benchmark runs).
    pub ignore_eos: bool,
    pub sampling: Sampling,
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
    mut on_step: impl FnMut(usize),
) -> Result<Generation> {
    let b = prompts.len();
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
    let _guard = tch::no_grad_guard();
    cache.reset();
    let device = model.device();
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
    let mut next_pos: Vec<i64> = prompts.iter().map(|p| p.len() as i64).collect();

    let mut out: Vec<Vec<u32>> = vec![Vec::new(); b];
    let mut done = vec![opts.max_new_tokens == 0; b];
    let mut step_times = Vec::new();
    sync(device);
    let t0 = Instant::now();
    let mut last = t0;
    let mut ttft = Duration::ZERO;
    let mut interrupted = false;
    if opts.max_new_tokens > 0 {
        let logits = model.forward(&tokens, &positions, mask.as_ref(), cache)?;
        let mut sampler = Sampler::new(opts.sampling);
        let mut next = sampler.pick(&logits)?;
        loop {
            let picked: Vec<i64> = Vec::<i64>::try_from(&next.to_device(Device::Cpu))?;
            let now = Instant::now();
            if out.iter().all(Vec::is_empty) {
                ttft = now - t0;
            } else {
                step_times.push(now - last);
            }
            last = now;
            let mut produced = 0;
            for (r, id) in picked.iter().enumerate() {
                if done[r] {
                    continue;
                }
                let id = *id as u32;
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
            let step_pos = Tensor::from_slice(&next_pos)
                .view([b as i64, 1])
                .to_device(device);
            for p in next_pos.iter_mut() {
                *p += 1;
            }
            let logits = model.forward(&next.view([b as i64, 1]), &step_pos, None, cache)?;
            next = sampler.pick(&logits)?;
        }
    }
    Ok(Generation {
        tokens: out,
        ttft,
        step_times,
        total: last - t0,
        interrupted,
    })
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
        GenerateOptions {
            max_new_tokens: n,
            eos_ids: vec![eos],
            ignore_eos,
            sampling: Sampling::greedy(),
        }
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
