//! What a weights dtype costs in accuracy: the same prompts through a reference model (f32)
//! and a candidate (bf16, int8, int4 ...), compared step by step.
//!
//! The candidate is teacher-forced on the reference's greedy tokens, so every step compares
//! logits for the same context: the absolute logit differences, whether the candidate's
//! argmax picks the reference's token, and the reference's top-2 margin at that step (a
//! mismatch where the reference itself hesitates is not a real disagreement). A free-running
//! greedy continuation of the candidate also gives the number of leading tokens that match.

use crate::generate::{generate, GenerateOptions, Sampling};
use crate::model::llama::Llama;
use anyhow::{bail, Result};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

/// One prompt's comparison over `steps` generated tokens.
#[derive(Debug, Clone, Serialize)]
pub struct PromptAccuracy {
    pub prompt: String,
    pub prompt_tokens: usize,
    /// The reference's greedy tokens.
    pub reference_tokens: Vec<i64>,
    /// The candidate's argmax at each step, given the reference's tokens before it.
    pub candidate_tokens: Vec<i64>,
    /// The candidate's own greedy continuation.
    pub candidate_free_tokens: Vec<i64>,
    /// Reference top-1 minus top-2 logit at each step.
    pub reference_margin: Vec<f32>,
    /// Largest and mean absolute logit difference (over the vocabulary) at each step.
    pub max_abs_diff: Vec<f32>,
    pub mean_abs_diff: Vec<f32>,
}

impl PromptAccuracy {
    /// Steps where the candidate's argmax equals the reference's token.
    pub fn agreeing_steps(&self) -> usize {
        self.reference_tokens
            .iter()
            .zip(&self.candidate_tokens)
            .filter(|(a, b)| a == b)
            .count()
    }

    /// Steps where they differ although the reference's margin is at least `margin`.
    pub fn real_disagreements(&self, margin: f32) -> usize {
        self.reference_tokens
            .iter()
            .zip(&self.candidate_tokens)
            .zip(&self.reference_margin)
            .filter(|((a, b), m)| a != b && **m >= margin)
            .count()
    }

    /// Leading tokens of the candidate's own continuation equal to the reference's.
    pub fn free_running_prefix(&self) -> usize {
        self.reference_tokens
            .iter()
            .zip(&self.candidate_free_tokens)
            .take_while(|(a, b)| a == b)
            .count()
    }
}

/// Runs `prompt_ids` through both models for `steps` greedy tokens (end-of-sequence ignored).
pub fn compare(
    reference: &Llama,
    candidate: &Llama,
    prompt: &str,
    prompt_ids: &[i64],
    steps: usize,
) -> Result<PromptAccuracy> {
    if prompt_ids.is_empty() {
        bail!("prompt {prompt:?} has no tokens");
    }
    if steps == 0 {
        bail!("--steps must be at least 1");
    }
    let len = prompt_ids.len() + steps;
    let mut out = PromptAccuracy {
        prompt: prompt.to_string(),
        prompt_tokens: prompt_ids.len(),
        reference_tokens: Vec::with_capacity(steps),
        candidate_tokens: Vec::with_capacity(steps),
        candidate_free_tokens: Vec::with_capacity(steps),
        reference_margin: Vec::with_capacity(steps),
        max_abs_diff: Vec::with_capacity(steps),
        mean_abs_diff: Vec::with_capacity(steps),
    };
    let mut rc = reference.new_cache(1, len)?;
    let mut cc = candidate.new_cache(1, len)?;
    let mut r = prefill(reference, prompt_ids, &mut rc)?;
    let mut c = prefill(candidate, prompt_ids, &mut cc)?;
    for s in 0..steps {
        let top = r.topk(2, -1, true, true).0;
        let (t1, t2) = (top.double_value(&[0]), top.double_value(&[1]));
        let rt = r.argmax(-1, false).int64_value(&[]);
        let diff = (&c - &r).abs();
        out.reference_tokens.push(rt);
        out.candidate_tokens
            .push(c.argmax(-1, false).int64_value(&[]));
        out.reference_margin.push((t1 - t2) as f32);
        out.max_abs_diff.push(diff.max().double_value(&[]) as f32);
        out.mean_abs_diff
            .push(diff.mean(Kind::Float).double_value(&[]) as f32);
        if s + 1 < steps {
            let pos = (prompt_ids.len() + s) as i64;
            r = step(reference, rt, pos, &mut rc)?;
            c = step(candidate, rt, pos, &mut cc)?;
        }
    }
    // The candidate's own greedy continuation, through the same loop `generate` and `run` use.
    let mut fc = candidate.new_cache(1, len)?;
    let ids: Vec<u32> = prompt_ids.iter().map(|&t| t as u32).collect();
    let opts = GenerateOptions {
        max_new_tokens: steps,
        eos_ids: Vec::new(),
        ignore_eos: true,
        sampling: Sampling::greedy(),
    };
    let g = generate(candidate, &mut fc, &[ids], &opts, None, |_| {})?;
    out.candidate_free_tokens = g.tokens[0].iter().map(|&t| i64::from(t)).collect();
    Ok(out)
}

fn prefill(m: &Llama, ids: &[i64], cache: &mut crate::model::kv_cache::KvCache) -> Result<Tensor> {
    let n = ids.len() as i64;
    let toks = Tensor::from_slice(ids).view([1, n]).to_device(m.device());
    let pos = Tensor::arange(n, (Kind::Int64, m.device())).view([1, n]);
    Ok(m.forward(&toks, &pos, None, cache)?
        .get(0)
        .to_device(Device::Cpu))
}

fn step(
    m: &Llama,
    token: i64,
    pos: i64,
    cache: &mut crate::model::kv_cache::KvCache,
) -> Result<Tensor> {
    let t = Tensor::from_slice(&[token])
        .view([1, 1])
        .to_device(m.device());
    let p = Tensor::from_slice(&[pos])
        .view([1, 1])
        .to_device(m.device());
    Ok(m.forward(&t, &p, None, cache)?
        .get(0)
        .to_device(Device::Cpu))
}

/// Totals over prompts, as reports and `scripts/bench` show them.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub prompts: usize,
    pub steps: usize,
    pub mean_abs_logit_diff: f32,
    pub max_abs_logit_diff: f32,
    /// Teacher-forced steps whose argmax equals the reference's token.
    pub agreeing_steps: usize,
    /// Disagreeing steps where the reference's top-2 margin is at least `margin`.
    pub real_disagreements: usize,
    pub margin: f32,
    /// Shortest leading run of free-running tokens equal to the reference's, over prompts.
    pub min_free_running_prefix: usize,
    /// Prompts whose whole free-running continuation equals the reference's.
    pub identical_continuations: usize,
}

/// Sums up `results` with `margin` as the hesitation threshold.
pub fn summarize(results: &[PromptAccuracy], margin: f32) -> Summary {
    let steps: usize = results.iter().map(|r| r.reference_tokens.len()).sum();
    let all_mean: f32 = results.iter().flat_map(|r| &r.mean_abs_diff).sum();
    Summary {
        prompts: results.len(),
        steps,
        mean_abs_logit_diff: if steps == 0 {
            0.0
        } else {
            all_mean / steps as f32
        },
        max_abs_logit_diff: results
            .iter()
            .flat_map(|r| &r.max_abs_diff)
            .fold(0.0, |a, b| a.max(*b)),
        agreeing_steps: results.iter().map(|r| r.agreeing_steps()).sum(),
        real_disagreements: results.iter().map(|r| r.real_disagreements(margin)).sum(),
        margin,
        min_free_running_prefix: results
            .iter()
            .map(|r| r.free_running_prefix())
            .min()
            .unwrap_or(0),
        identical_continuations: results
            .iter()
            .filter(|r| r.free_running_prefix() == r.reference_tokens.len())
            .count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(
        reference: Vec<i64>,
        cand: Vec<i64>,
        free: Vec<i64>,
        margin: Vec<f32>,
    ) -> PromptAccuracy {
        let n = reference.len();
        PromptAccuracy {
            prompt: "p".into(),
            prompt_tokens: 3,
            reference_tokens: reference,
            candidate_tokens: cand,
            candidate_free_tokens: free,
            reference_margin: margin,
            max_abs_diff: vec![0.5; n],
            mean_abs_diff: vec![0.1; n],
        }
    }

    #[test]
    fn disagreements_at_small_margins_are_excused() {
        let a = fake(
            vec![1, 2, 3, 4],
            vec![1, 9, 3, 8],
            vec![1, 2, 7, 7],
            vec![1.0, 0.05, 1.0, 0.5],
        );
        assert_eq!(a.agreeing_steps(), 2);
        assert_eq!(a.real_disagreements(0.1), 1);
        assert_eq!(a.real_disagreements(0.01), 2);
        assert_eq!(a.free_running_prefix(), 2);
        let s = summarize(
            &[a.clone(), fake(vec![5], vec![5], vec![5], vec![2.0])],
            0.1,
        );
        assert_eq!((s.prompts, s.steps, s.agreeing_steps), (2, 5, 3));
        assert_eq!(s.min_free_running_prefix, 1);
        assert_eq!(s.identical_continuations, 1);
        assert!((s.mean_abs_logit_diff - 0.1).abs() < 1e-6);
    }

    /// A model compared with itself agrees everywhere with zero difference.
    #[test]
    fn a_model_equals_itself() {
        let cfg = crate::model::config::LlamaConfig {
            vocab_size: 17,
            hidden_size: 8,
            intermediate_size: 12,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            num_key_value_heads: 1,
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: None,
            max_position_embeddings: 32,
            tie_word_embeddings: true,
        };
        let m = Llama::new(
            &cfg,
            crate::model::synthetic::random_weights(&cfg, 4),
            Device::Cpu,
            Kind::Float,
        )
        .unwrap();
        let a = compare(&m, &m, "x", &[1, 2, 3], 5).unwrap();
        assert_eq!(a.agreeing_steps(), 5);
        assert_eq!(a.free_running_prefix(), 5);
        assert!(a.max_abs_diff.iter().all(|d| *d == 0.0));
        assert!(compare(&m, &m, "x", &[], 5).is_err());
    }
}
