//! Seeded random weights at a card's shapes, so timing works without a checkpoint.
//! Outputs produced with them are meaningless text and are labelled `synthetic`.

use super::config::LlamaConfig;
use super::source::WeightSource;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// Hugging Face tensor names and shapes of a Llama model.
pub fn tensor_shapes(cfg: &LlamaConfig) -> Vec<(String, Vec<i64>)> {
    let h = cfg.hidden_size as i64;
    let hd = cfg.head_dim() as i64;
    let q = cfg.num_attention_heads as i64 * hd;
    let kv = cfg.num_key_value_heads as i64 * hd;
    let i = cfg.intermediate_size as i64;
    let v = cfg.vocab_size as i64;
    let mut s = vec![
        ("model.embed_tokens.weight".to_string(), vec![v, h]),
        ("model.norm.weight".to_string(), vec![h]),
    ];
    if !cfg.tie_word_embeddings {
        s.push(("lm_head.weight".to_string(), vec![v, h]));
    }
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", vec![q, h]),
            ("self_attn.k_proj.weight", vec![kv, h]),
            ("self_attn.v_proj.weight", vec![kv, h]),
            ("self_attn.o_proj.weight", vec![h, q]),
            ("mlp.gate_proj.weight", vec![i, h]),
            ("mlp.up_proj.weight", vec![i, h]),
            ("mlp.down_proj.weight", vec![h, i]),
            ("input_layernorm.weight", vec![h]),
            ("post_attention_layernorm.weight", vec![h]),
        ] {
            s.push((format!("{p}.{name}"), shape));
        }
    }
    s
}

/// Random normal weights (std 0.02, the usual Llama initialisation) and unit norm
/// weights, reproducible for a given `seed`, in f32 on the CPU.
pub fn random_weights(cfg: &LlamaConfig, seed: i64) -> HashMap<String, Tensor> {
    seeded(seed, || {
        tensor_shapes(cfg)
            .into_iter()
            .map(|(name, shape)| {
                let t = draw(&shape);
                (name, t)
            })
            .collect()
    })
}

/// One weight: ones for a norm, else normal with std 0.02 (scaled in place, so that only
/// one copy is ever held).
fn draw(shape: &[i64]) -> Tensor {
    if shape.len() == 1 {
        Tensor::ones(shape, (Kind::Float, Device::Cpu))
    } else {
        let mut t = Tensor::randn(shape, (Kind::Float, Device::Cpu));
        t *= 0.02;
        t
    }
}

/// The same weights as [`random_weights`], drawn one tensor at a time as they are taken
/// (in [`tensor_shapes`] order, the order [`super::llama::Llama::build_from`] takes them),
/// so a large card never needs all of them in f32 at once. Holds libtorch's generator from
/// the first draw to the last, as [`seeded`] does.
pub struct SyntheticSource {
    seed: i64,
    /// Weights not drawn yet, in order.
    next: std::collections::VecDeque<(String, Vec<i64>)>,
    /// Weights drawn before they were asked for (not in the usual order).
    drawn: HashMap<String, Tensor>,
    held: Option<std::sync::MutexGuard<'static, ()>>,
}

impl SyntheticSource {
    pub fn new(cfg: &LlamaConfig, seed: i64) -> Self {
        SyntheticSource {
            seed,
            next: tensor_shapes(cfg).into(),
            drawn: HashMap::new(),
            held: None,
        }
    }
}

impl WeightSource for SyntheticSource {
    fn take(&mut self, name: &str) -> anyhow::Result<Option<Tensor>> {
        if let Some(t) = self.drawn.remove(name) {
            return Ok(Some(t));
        }
        if !self.next.iter().any(|(n, _)| n == name) {
            return Ok(None);
        }
        if self.held.is_none() {
            self.held = Some(GENERATOR.lock().unwrap_or_else(|e| e.into_inner()));
            tch::manual_seed(self.seed);
        }
        let mut found = None;
        while let Some((n, shape)) = self.next.pop_front() {
            let t = draw(&shape);
            if n == name {
                found = Some(t);
                break;
            }
            self.drawn.insert(n, t);
        }
        if self.next.is_empty() {
            self.held = None;
        }
        Ok(found)
    }

    fn remaining(&self) -> Vec<String> {
        self.next
            .iter()
            .map(|(n, _)| n.clone())
            .chain(self.drawn.keys().cloned())
            .collect()
    }
}

/// libtorch's global generator, held by whoever seeds it and draws from it.
static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` right after seeding libtorch's global generator, with no other `seeded` call
/// in between: threads (tests run in parallel) would otherwise draw from each other's
/// sequences, and "reproducible for a seed" would hold only by luck.
pub(crate) fn seeded<R>(seed: i64, f: impl FnOnce() -> R) -> R {
    let _held = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_add_up_to_the_parameter_count() {
        let cfg = LlamaConfig {
            vocab_size: 100,
            hidden_size: 16,
            intermediate_size: 40,
            num_hidden_layers: 3,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: 1e4,
            rope_scaling: None,
            max_position_embeddings: 64,
            tie_word_embeddings: false,
        };
        let n: i64 = tensor_shapes(&cfg)
            .iter()
            .map(|(_, s)| s.iter().product::<i64>())
            .sum();
        assert_eq!(n as u64, cfg.parameter_count());
    }

    #[test]
    fn same_seed_same_weights() {
        let cfg = LlamaConfig {
            vocab_size: 10,
            hidden_size: 4,
            intermediate_size: 8,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            num_key_value_heads: 1,
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: 1e4,
            rope_scaling: None,
            max_position_embeddings: 8,
            tie_word_embeddings: true,
        };
        let a = random_weights(&cfg, 5);
        let b = random_weights(&cfg, 5);
        let k = "model.layers.0.mlp.up_proj.weight";
        assert!(a[k].equal(&b[k]));
        let c = random_weights(&cfg, 6);
        assert!(!a[k].equal(&c[k]));
    }
}
