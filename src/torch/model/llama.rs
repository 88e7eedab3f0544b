//! Llama-family decoder in tch: RMSNorm, RoPE (with Llama-3 frequency scaling), grouped-query
//! attention over a pre-allocated KV cache, SwiGLU MLP, tied or untied LM head.
//!
//! The model is immutable; the cache is passed in (`forward(&self, .., &mut cache)`), so one
//! loaded model can serve many requests. Q/K/V and gate/up projections are fused into one
//! matrix each at load time, so a decode step runs two matmuls per block instead of five.
//! On the CPU, one-token steps do their elementwise work in fused loops (`super::fused`).

use super::config::LlamaConfig;
use super::fused::{self, Elem};
use super::kv_cache::KvCache;
use super::quant::{int4_fits, Int4Codes, Linear};
use super::source::{InMemory, WeightSource};
use crate::dtype::WeightsDtype;
use anyhow::{bail, Context, Result};
use half::bf16;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// Logits recomputed in f32 after a quantised LM head (see `Llama::refine_top_logits`).
const REFINED_LOGITS: i64 = 16;

/// How the linear layers' weights are stored and multiplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsMode {
    /// Weights and activations in this kind.
    Dense(Kind),
    /// Per-output-channel int8 weights, bf16 activations.
    Int8,
    /// Group-wise int4 weights, bf16 activations.
    Int4,
}

impl WeightsMode {
    /// Dtype of activations, norms, RoPE tables and the KV cache.
    pub fn activation_kind(self) -> Kind {
        match self {
            WeightsMode::Dense(k) => k,
            WeightsMode::Int8 | WeightsMode::Int4 => Kind::BFloat16,
        }
    }
}

/// The storage of a `--weights-dtype`: the one conversion from the project's dtype to the
/// engine's. fp8 is refused: libtorch here has no fp8 matrix multiply (the flag refuses it
/// first, [`WeightsDtype::parse_run_flag`]).
impl TryFrom<WeightsDtype> for WeightsMode {
    type Error = anyhow::Error;

    fn try_from(d: WeightsDtype) -> Result<Self> {
        Ok(match d {
            WeightsDtype::Fp32 => WeightsMode::Dense(Kind::Float),
            WeightsDtype::Bf16 => WeightsMode::Dense(Kind::BFloat16),
            WeightsDtype::Fp16 => WeightsMode::Dense(Kind::Half),
            WeightsDtype::Int8 => WeightsMode::Int8,
            WeightsDtype::Int4 => WeightsMode::Int4,
            WeightsDtype::Fp8 => bail!(
                "--weights-dtype fp8: {}",
                WeightsDtype::parse_run_flag("fp8").unwrap_err()
            ),
        })
    }
}

/// One decoder block's weights, already fused and in the compute dtype.
struct Block {
    attn_norm: Tensor,
    /// `[(q_heads + 2 kv_heads) * head_dim, hidden]`: Q, K, V stacked.
    wqkv: Linear,
    wo: Linear,
    mlp_norm: Tensor,
    /// `[2 intermediate, hidden]`: gate then up.
    w_gate_up: Linear,
    w_down: Linear,
}

/// A loaded Llama model on one device.
pub struct Llama {
    cfg: LlamaConfig,
    blocks: Vec<Block>,
    embed: Tensor,
    norm: Tensor,
    lm_head: Linear,
    /// int8 copy of an int4 LM head, for `refine_top_logits`.
    head_rows: Option<Linear>,
    /// `[max_positions, head_dim]` RoPE tables in the compute dtype; the sine table's first
    /// half of each row is negated (see `forward`).
    cos: Tensor,
    sin: Tensor,
    device: Device,
    kind: Kind,
    /// Dtype of the residual stream and the norms: f32 with quantised weights (the kernels
    /// want bf16 inputs, but summing 30 blocks' outputs in bf16 costs accuracy for nothing),
    /// else `kind`.
    res_kind: Kind,
    mode: WeightsMode,
    /// Linear layers stored as int8 in int4 mode because their shape does not fit the int4
    /// kernel's layout.
    int8_fallbacks: usize,
    /// Bytes of all linear-layer weights (codes and scales included).
    linear_bytes: i64,
    /// One-token steps run the fused CPU loops (`decode_blocks`): CPU; f32 residual stream
    /// with f32 or bf16 activations, or bf16 throughout.
    fused_decode: bool,
}

/// Inverse RoPE frequencies, with Llama-3 scaling when configured.
///
/// Formula: Su et al. 2021 (RoFormer) `theta^(-2i/d)`; the Llama-3 smoothing follows
/// Hugging Face transformers `_compute_llama3_parameters` (modeling_rope_utils.py).
pub fn inverse_frequencies(cfg: &LlamaConfig) -> Vec<f64> {
    let d = cfg.head_dim();
    let base: Vec<f64> = (0..d / 2)
        .map(|i| 1.0 / cfg.rope_theta.powf((2 * i) as f64 / d as f64))
        .collect();
    let Some(s) = &cfg.rope_scaling else {
        return base;
    };
    let old = s.original_max_position_embeddings as f64;
    let low_wavelen = old / s.low_freq_factor;
    let high_wavelen = old / s.high_freq_factor;
    base.into_iter()
        .map(|f| {
            let wavelen = 2.0 * std::f64::consts::PI / f;
            if wavelen < high_wavelen {
                f
            } else if wavelen > low_wavelen {
                f / s.factor
            } else {
                let smooth =
                    (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * f / s.factor + smooth * f
            }
        })
        .collect()
}

/// Takes `name` out of the source and checks its shape.
fn take(w: &mut dyn WeightSource, name: &str, shape: &[i64]) -> Result<Tensor> {
    let t = w
        .take(name)?
        .with_context(|| format!("weights: tensor {name:?} is missing"))?;
    if t.size() != shape {
        bail!(
            "weights: tensor {name:?} has shape {:?}, expected {:?}",
            t.size(),
            shape
        );
    }
    Ok(t)
}

/// Bytes weight `shape` takes once stored as `mode` keeps it on the host: linear layers
/// (`linear`) in the mode's form, the embedding in the activation dtype, 1-D norms in the
/// residual dtype. Mirrors [`Llama::build_from`]; an int4 layer counts its packed codes,
/// scales and zero points (0.75 byte per weight), an int8 one a byte per weight and its
/// scales.
pub fn stored_bytes(shape: &[i64], linear: bool, mode: WeightsMode) -> u64 {
    let n = shape.iter().product::<i64>().max(0) as u64;
    let rows = shape.first().copied().unwrap_or(0).max(0) as u64;
    let act = mode.activation_kind().elt_size_in_bytes() as u64;
    match (mode, shape.len(), linear) {
        (WeightsMode::Dense(k), _, _) => n * k.elt_size_in_bytes() as u64,
        (_, 1, _) => n * 4,
        (_, _, false) => n * act,
        (WeightsMode::Int8, _, true) => n + rows * (act + 4),
        (WeightsMode::Int4, _, true) => n / 2 + n / 32 * 4 * act,
    }
}

/// The LM head's f32 weight for `linear`, with the file's 4-bit codes of it if any.
struct HeadSource<'a> {
    head: Option<Tensor>,
    file: &'a mut dyn WeightSource,
}

impl WeightSource for HeadSource<'_> {
    fn take(&mut self, name: &str) -> Result<Option<Tensor>> {
        Ok(if name == "lm_head.weight" {
            self.head.take()
        } else {
            None
        })
    }
    fn take_codes(&mut self, name: &str) -> Result<Option<Int4Codes>> {
        self.file.take_codes(name)
    }
    fn remaining(&self) -> Vec<String> {
        Vec::new()
    }
}

/// An int8 layer of the named `[rows, in]` weights stacked, each quantised as it is taken
/// (per output row, so the same as quantising the stacked weight).
fn int8_parts(
    w: &mut dyn WeightSource,
    names: &[(String, i64)],
    cols: i64,
    act: Kind,
) -> Result<Linear> {
    let mut parts = Vec::with_capacity(names.len());
    for (name, r) in names {
        parts.push(Linear::int8(&take(w, name, &[*r, cols])?, act)?);
    }
    if parts.len() == 1 {
        return Ok(parts.pop().expect("one part"));
    }
    Linear::cat_int8(&parts)
}

impl Llama {
    /// Builds the model from Hugging Face-named tensors (`model.layers.N.self_attn.q_proj.weight`
    /// ...), checking every shape against `cfg`, and moves it to `device` in `kind`.
    pub fn new(
        cfg: &LlamaConfig,
        w: HashMap<String, Tensor>,
        device: Device,
        kind: Kind,
    ) -> Result<Self> {
        Self::build(cfg, w, HashMap::new(), device, WeightsMode::Dense(kind))
    }

    /// As [`Llama::new`], with the linear layers stored as `mode` says. `codes` may hold a
    /// weight's 4-bit codes straight from the file (GGUF Q4_0/Q4_1, same names as `w`); int4
    /// mode uses them as they are instead of re-quantising the f32 weight.
    pub fn build(
        cfg: &LlamaConfig,
        w: HashMap<String, Tensor>,
        codes: HashMap<String, Int4Codes>,
        device: Device,
        mode: WeightsMode,
    ) -> Result<Self> {
        let mut src = InMemory { tensors: w, codes };
        Self::build_from(cfg, &mut src, device, mode)
    }

    /// As [`Llama::build`], taking the weights from `w` one at a time: each is converted to
    /// the dtype it is kept in (or quantised) and its f32 form dropped before the next is
    /// read, so the host holds the model at its run dtype plus one tensor in f32.
    /// Conversions are elementwise and quantisation is per output row, so converting each
    /// part of a fused layer before stacking gives the same weights as stacking first.
    pub fn build_from(
        cfg: &LlamaConfig,
        w: &mut dyn WeightSource,
        device: Device,
        mode: WeightsMode,
    ) -> Result<Self> {
        cfg.validate("model config")?;
        if matches!(mode, WeightsMode::Int8 | WeightsMode::Int4) && device != Device::Cpu {
            bail!("int8 and int4 weights run on the CPU only (libtorch's weight-only kernels); use --weights-dtype bf16 or f16 on CUDA");
        }
        let kind = mode.activation_kind();
        let h = cfg.hidden_size as i64;
        let hd = cfg.head_dim() as i64;
        let nq = cfg.num_attention_heads as i64;
        let nkv = cfg.num_key_value_heads as i64;
        let inter = cfg.intermediate_size as i64;
        let v = cfg.vocab_size as i64;
        let res_kind = match mode {
            WeightsMode::Dense(k) => k,
            WeightsMode::Int8 | WeightsMode::Int4 => Kind::Float,
        };
        let put_as = |t: Tensor, kind: Kind| -> Result<Tensor> {
            t.f_to_device(device)
                .and_then(|t| t.f_to_kind(kind))
                .and_then(|t| t.f_contiguous())
                .context("cannot move weights to the device")
        };
        let put = |t: Tensor| put_as(t, kind);
        let mut fallbacks = 0usize;
        // Fuses the named `[rows, in]` weights into one layer stored as `mode` says, each
        // part converted as it is taken.
        let mut linear = |w: &mut dyn WeightSource,
                          names: &[(String, i64)],
                          cols: i64,
                          head: bool|
         -> Result<Linear> {
            let rows: i64 = names.iter().map(|(_, r)| r).sum();
            match mode {
                WeightsMode::Dense(_) => {
                    if let [(name, r)] = names {
                        return Ok(Linear::Dense(put(take(w, name, &[*r, cols])?)?));
                    }
                    // Each part is copied into its rows of the fused weight, converted on
                    // the way (the same rounding as converting the stacked f32 weight).
                    let out = Tensor::f_empty([rows, cols], (kind, device))
                        .context("cannot move weights to the device")?;
                    let mut at = 0;
                    for (name, r) in names {
                        let part = take(w, name, &[*r, cols])?;
                        out.f_narrow(0, at, *r)?
                            .f_copy_(&part)
                            .context("cannot move weights to the device")?;
                        drop(part);
                        at += r;
                    }
                    Ok(Linear::Dense(out))
                }
                WeightsMode::Int8 => int8_parts(w, names, cols, kind),
                WeightsMode::Int4 if !int4_fits(rows, cols) => {
                    fallbacks += usize::from(!head);
                    int8_parts(w, names, cols, kind)
                }
                WeightsMode::Int4 => {
                    // The file's own codes when it has them for every part; otherwise every
                    // part is quantised from f32.
                    let mut native = Vec::with_capacity(names.len());
                    for (name, r) in names {
                        if let Some(c) = w.take_codes(name)? {
                            if c.q.size() != [*r, cols] {
                                bail!("weights: 4-bit codes of {name:?} have shape {:?}, expected [{r}, {cols}]", c.q.size());
                            }
                            native.push(c);
                        }
                    }
                    let all_native = native.len() == names.len();
                    let mut quantised = Vec::with_capacity(names.len());
                    for (name, r) in names {
                        let part = take(w, name, &[*r, cols])?;
                        if !all_native {
                            quantised.push(Int4Codes::quantize(&part)?);
                        }
                    }
                    let c = Int4Codes::cat(if all_native { &native } else { &quantised });
                    Linear::int4(&c, kind)
                }
            }
        };
        let embed_f32 = take(w, "model.embed_tokens.weight", &[v, h])?;
        // Untied, the embedding's f32 form is not needed again.
        let (embed, embed_f32) = if cfg.tie_word_embeddings {
            (put(embed_f32.shallow_clone())?, Some(embed_f32))
        } else {
            (put(embed_f32)?, None)
        };
        let norm = put_as(take(w, "model.norm.weight", &[h])?, res_kind)?;
        let head_f32 = match embed_f32 {
            Some(e) => e,
            None => take(w, "lm_head.weight", &[v, h])?,
        };
        let mut head_src = HeadSource {
            head: Some(head_f32.shallow_clone()),
            file: &mut *w,
        };
        let lm_head = linear(&mut head_src, &[("lm_head.weight".into(), v)], h, true)?;
        // An int4 head's top logits are recomputed from an int8 copy (see
        // `refine_top_logits`), of which only a few rows are read per step.
        let head_rows = match (&mode, &lm_head) {
            (WeightsMode::Int4, Linear::Int4 { .. }) => Some(Linear::int8(&head_f32, kind)?),
            _ => None,
        };
        drop(head_f32);
        let mut blocks = Vec::new();
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let n = |s: &str| format!("{p}.{s}");
            let wqkv = linear(
                w,
                &[
                    (n("self_attn.q_proj.weight"), nq * hd),
                    (n("self_attn.k_proj.weight"), nkv * hd),
                    (n("self_attn.v_proj.weight"), nkv * hd),
                ],
                h,
                false,
            )?;
            let wo = linear(w, &[(n("self_attn.o_proj.weight"), h)], nq * hd, false)?;
            let w_gate_up = linear(
                w,
                &[
                    (n("mlp.gate_proj.weight"), inter),
                    (n("mlp.up_proj.weight"), inter),
                ],
                h,
                false,
            )?;
            let w_down = linear(w, &[(n("mlp.down_proj.weight"), h)], inter, false)?;
            let an = take(w, &n("input_layernorm.weight"), &[h])?;
            let mn = take(w, &n("post_attention_layernorm.weight"), &[h])?;
            blocks.push(Block {
                attn_norm: put_as(an, res_kind)?,
                wqkv,
                wo,
                mlp_norm: put_as(mn, res_kind)?,
                w_gate_up,
                w_down,
            });
        }
        let mut left = w.remaining();
        left.sort();
        if let Some(extra) = left.iter().find(|k| !k.ends_with("rotary_emb.inv_freq")) {
            bail!("weights: unexpected tensor {extra:?} for a Llama model");
        }
        let inv = inverse_frequencies(cfg);
        let n = cfg.max_position_embeddings;
        let mut cos = Vec::with_capacity(n * inv.len() * 2);
        let mut sin = Vec::with_capacity(n * inv.len() * 2);
        for pos in 0..n {
            for sign in [-1.0, 1.0] {
                for f in &inv {
                    let a = pos as f64 * f;
                    cos.push(a.cos() as f32);
                    sin.push((sign * a.sin()) as f32);
                }
            }
        }
        let table = |x: Vec<f32>| put(Tensor::from_slice(&x).view([n as i64, hd]));
        let linear_bytes = lm_head.bytes()
            + blocks
                .iter()
                .map(|b| b.wqkv.bytes() + b.wo.bytes() + b.w_gate_up.bytes() + b.w_down.bytes())
                .sum::<i64>();
        Ok(Llama {
            cfg: cfg.clone(),
            blocks,
            embed,
            norm,
            lm_head,
            head_rows,
            cos: table(cos)?,
            sin: table(sin)?,
            device,
            kind,
            res_kind,
            mode,
            int8_fallbacks: fallbacks,
            linear_bytes,
            fused_decode: device == Device::Cpu
                && super::mkl::custom_kernels()
                && matches!(
                    (res_kind, kind),
                    (Kind::Float, Kind::Float)
                        | (Kind::Float, Kind::BFloat16)
                        | (Kind::BFloat16, Kind::BFloat16)
                ),
        })
    }

    /// Gives the blocks' f32 layers bf16 high and low parts, so that prompts multiply
    /// through three bf16 products at f32 accuracy less about 7 bits (`--matmul-precision
    /// high`, see [`super::bf16x3`]). The one-token steps and the LM head keep the f32
    /// weights. Refused for anything but f32 weights on a CPU that runs bf16 products fast.
    pub fn split_f32_matmuls(mut self) -> Result<Self> {
        if self.device != Device::Cpu || self.mode != WeightsMode::Dense(Kind::Float) {
            bail!("--matmul-precision high applies to f32 weights on the CPU (--weights-dtype f32 --run-on cpu)");
        }
        super::bf16x3::check_available()?;
        for blk in &mut self.blocks {
            for l in [
                &mut blk.wqkv,
                &mut blk.wo,
                &mut blk.w_gate_up,
                &mut blk.w_down,
            ] {
                let dense = std::mem::replace(l, Linear::Dense(Tensor::new()));
                *l = dense.with_split()?;
            }
        }
        Ok(self)
    }

    /// How the linear layers are stored.
    pub fn weights_mode(&self) -> WeightsMode {
        self.mode
    }

    /// Linear layers stored as int8 in int4 mode (shapes outside the int4 kernel's layout).
    pub fn int8_fallbacks(&self) -> usize {
        self.int8_fallbacks
    }

    /// Bytes of the linear layers' weights: what a decode step reads at least once.
    /// Whether one-token steps run the fused CPU loops (see [`super::fused`]).
    pub fn uses_fused_decode(&self) -> bool {
        self.fused_decode
    }

    pub fn linear_weight_bytes(&self) -> i64 {
        self.linear_bytes
    }

    /// The architecture this model was built with.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Device the weights live on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Compute dtype of weights and activations.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Allocates a cache for `batch` sequences of up to `max_len` positions.
    pub fn new_cache(&self, batch: usize, max_len: usize) -> Result<KvCache> {
        if max_len > self.cfg.max_position_embeddings {
            bail!(
                "{max_len} positions exceed the model's context window of {}",
                self.cfg.max_position_embeddings
            );
        }
        KvCache::new(
            self.cfg.num_hidden_layers,
            batch,
            self.cfg.num_key_value_heads,
            max_len,
            self.cfg.head_dim(),
            self.kind,
            self.device,
        )
    }

    /// Runs `tokens` (`[batch, t]`, i64) at `positions` (`[batch, t]`, i64: each row's own
    /// token positions, so left-padded rows start at 0) through the model, appending their
    /// keys and values to `cache`. Returns the last column's logits, `[batch, vocab]` in f32.
    ///
    /// `prompt_mask` (`[batch, t]` bool, true = real token) marks left padding; pass it with
    /// the prompt only.
    pub fn forward(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        prompt_mask: Option<&Tensor>,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let (b, t) = (
            tokens.size().first().copied(),
            tokens.size().get(1).copied(),
        );
        let cached = cache.len();
        super::guard::guarded(
            || {
                format!(
                    "the forward pass of batch {} × {} tokens ({cached} cached positions) failed on {:?}",
                    b.unwrap_or(0),
                    t.unwrap_or(0),
                    self.device
                )
            },
            || self.forward_inner(tokens, positions, prompt_mask, cache, None),
        )
    }

    /// One decode step for rows that each have their own length (continuous batching):
    /// row `r` of `tokens` (`[batch]` ids) goes to cache column and position `cols[r]` and
    /// attends to columns `0..=cols[r]` of its own row. The cache's shared length is left
    /// alone (the caller keeps each row's). Returns `[batch, vocab]` f32 logits.
    pub fn forward_slots(
        &self,
        tokens: &[i64],
        cols: &[usize],
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let longest = cols.iter().max().copied().unwrap_or(0);
        super::guard::guarded(
            || {
                format!(
                    "the decode step of {} slots (longest at position {longest}) failed on {:?}",
                    tokens.len(),
                    self.device
                )
            },
            || self.forward_slots_inner(tokens, cols, cache),
        )
    }

    fn forward_slots_inner(
        &self,
        tokens: &[i64],
        cols: &[usize],
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let b = tokens.len();
        if b != cols.len() || b != cache.batch {
            bail!(
                "{b} tokens and {} columns for a cache of {} rows",
                cols.len(),
                cache.batch
            );
        }
        if let Some(c) = cols.iter().find(|c| **c >= cache.max_len) {
            bail!(
                "column {c} is beyond the cache's {} positions",
                cache.max_len
            );
        }
        let pos: Vec<i64> = cols.iter().map(|c| *c as i64).collect();
        let t = Tensor::from_slice(tokens)
            .view([b as i64, 1])
            .to_device(self.device);
        let p = Tensor::from_slice(&pos)
            .view([b as i64, 1])
            .to_device(self.device);
        self.forward_inner(&t, &p, None, cache, Some(cols))
    }

    fn forward_inner(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        prompt_mask: Option<&Tensor>,
        cache: &mut KvCache,
        slot_cols: Option<&[usize]>,
    ) -> Result<Tensor> {
        let size = tokens.size();
        let (b, t) = match size.as_slice() {
            [b, t] => (*b, *t),
            _ => bail!("tokens must be [batch, len], got {size:?}"),
        };
        // With per-row columns, `start` is the furthest row's column: attention spans
        // `0..=start` and a mask keeps each row to its own columns.
        let start = match slot_cols {
            Some(c) => c.iter().copied().max().unwrap_or(0) as i64,
            None => cache.len as i64,
        };
        let uniform = slot_cols.is_none_or(|c| c.iter().all(|x| *x as i64 == start));
        if slot_cols.is_some() && (t != 1 || prompt_mask.is_some() || cache.valid.is_some()) {
            bail!("per-row columns take one token per row, on a cache without padding");
        }
        if b != cache.batch as i64 {
            bail!(
                "batch of {b} rows does not match the cache's {} rows",
                cache.batch
            );
        }
        if start + t > cache.max_len as i64 {
            bail!(
                "{} positions exceed the cache's {} (context window)",
                start + t,
                cache.max_len
            );
        }
        if let Some(m) = prompt_mask {
            cache.set_prompt_mask(m);
        }
        let hd = self.cfg.head_dim() as i64;
        let nq = self.cfg.num_attention_heads as i64;
        let nkv = self.cfg.num_key_value_heads as i64;
        let inter = self.cfg.intermediate_size as i64;
        let eps = self.cfg.rms_norm_eps;
        let hsz = [self.cfg.hidden_size as i64];

        let flat = positions.reshape([-1]);
        let cos = self.cos.index_select(0, &flat).view([b, 1, t, hd]);
        let sin = self.sin.index_select(0, &flat).view([b, 1, t, hd]);
        // rotate_half (x1, x2) -> (-x2, x1), the layout of Hugging Face Llama, as a roll by
        // half a head times a sine table whose first half is negated: the same products.
        let rope = |x: &Tensor| -> Tensor { x * &cos + x.roll([hd / 2], [-1]) * &sin };
        let end = start + t;
        let (mask, causal) = match slot_cols {
            Some(c) if !uniform => (Some(self.slot_mask(c, end)), false),
            _ => self.attention_mask(cache, start, t),
        };
        let cols: Vec<usize> = match slot_cols {
            Some(c) => c.to_vec(),
            None => vec![start as usize; b as usize],
        };

        let mut x = Tensor::embedding(&self.embed, tokens, -1, false, false).to_kind(self.res_kind);
        let fused = t == 1 && self.fused_decode;
        if fused {
            let m = mask.as_ref();
            match (self.res_kind, self.kind) {
                (Kind::Float, Kind::Float) => {
                    self.decode_blocks::<f32, f32>(&mut x, &cos, &sin, m, &cols, cache)?
                }
                (Kind::Float, _) => {
                    self.decode_blocks::<f32, bf16>(&mut x, &cos, &sin, m, &cols, cache)?
                }
                _ => self.decode_blocks::<bf16, bf16>(&mut x, &cos, &sin, m, &cols, cache)?,
            }
        }
        // The general path below runs the blocks only when the fused step has not.
        let blocks = if fused { &[][..] } else { &self.blocks[..] };
        for (i, blk) in blocks.iter().enumerate() {
            let h = x
                .rms_norm(hsz, Some(&blk.attn_norm), eps)
                .to_kind(self.kind);
            let qkv = blk.wqkv.apply(&h);
            // Q and K are adjacent: one rotation for both.
            let qk = rope(
                &qkv.narrow(2, 0, (nq + nkv) * hd)
                    .view([b, t, nq + nkv, hd])
                    .transpose(1, 2),
            );
            let q = qk.narrow(1, 0, nq);
            let k = qk.narrow(1, nq, nkv);
            let v = qkv
                .narrow(2, (nq + nkv) * hd, nkv * hd)
                .view([b, t, nkv, hd])
                .transpose(1, 2);
            if uniform {
                cache.k[i].narrow(2, start, t).copy_(&k);
                cache.v[i].narrow(2, start, t).copy_(&v);
            } else {
                for (r, c) in cols.iter().enumerate() {
                    let (r, c) = (r as i64, *c as i64);
                    cache.k[i]
                        .narrow(0, r, 1)
                        .narrow(2, c, 1)
                        .copy_(&k.narrow(0, r, 1));
                    cache.v[i]
                        .narrow(0, r, 1)
                        .narrow(2, c, 1)
                        .copy_(&v.narrow(0, r, 1));
                }
            }
            let keys = cache.k[i].narrow(2, 0, end);
            let values = cache.v[i].narrow(2, 0, end);
            let y = Tensor::scaled_dot_product_attention(
                &q,
                &keys,
                &values,
                mask.as_ref(),
                0.0,
                causal,
                None,
                nq != nkv,
            );
            let y = y.transpose(1, 2).reshape([b, t, nq * hd]);
            let y = blk.wo.apply(&y);
            x += y;
            let h = x.rms_norm(hsz, Some(&blk.mlp_norm), eps).to_kind(self.kind);
            let gu = blk.w_gate_up.apply(&h);
            let act = gu.narrow(2, 0, inter).silu() * gu.narrow(2, inter, inter);
            x += blk.w_down.apply(&act);
        }
        if slot_cols.is_none() {
            cache.len = end as usize;
        }
        // Only the last column is needed to pick the next token (left padding keeps it real).
        let last = x
            .narrow(1, t - 1, 1)
            .rms_norm(hsz, Some(&self.norm), eps)
            .squeeze_dim(1);
        let logits = self
            .lm_head
            .apply(&last.to_kind(self.kind))
            .to_kind(Kind::Float);
        if self.res_kind == self.kind {
            return Ok(logits);
        }
        Ok(self.refine_top_logits(logits, &last))
    }

    /// The blocks for one new token per row (`x`: `[batch, 1, hidden]` in the residual
    /// dtype `R`, updated in place; activations in `T`), with the elementwise work in fused
    /// loops (see [`super::fused`]): the same arithmetic as the general path in `forward`,
    /// in about a third of the libtorch calls.
    fn decode_blocks<R: Elem, T: Elem>(
        &self,
        x: &mut Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cols: &[usize],
        cache: &mut KvCache,
    ) -> Result<()> {
        let b = cache.batch;
        let h = self.cfg.hidden_size;
        let inter = self.cfg.intermediate_size;
        let (nq, nkv, hd) = (
            self.cfg.num_attention_heads,
            self.cfg.num_key_value_heads,
            self.cfg.head_dim(),
        );
        let pos = cols.iter().copied().max().unwrap_or(0);
        let heads = fused::Heads {
            batch: b,
            q: nq,
            kv: nkv,
            dim: hd,
            max_len: cache.max_len,
            pos,
        };
        let eps = self.cfg.rms_norm_eps;
        let opts = (self.kind, self.device);
        let (bi, hi, ii) = (b as i64, h as i64, inter as i64);
        let mut normed = Tensor::empty([bi, hi], opts);
        let mut q = Tensor::empty([bi, nq as i64, 1, hd as i64], opts);
        let mut act = Tensor::empty([bi, ii], opts);
        let mut attn = Tensor::empty([bi, (nq * hd) as i64], opts);
        let (cos, sin) = (cos.contiguous(), sin.contiguous());
        let keys_end = pos as i64 + 1;
        for (i, blk) in self.blocks.iter().enumerate() {
            fused::rms_norm::<R, T>(x, &blk.attn_norm, eps, &mut normed, b, h)?;
            let qkv = blk.wqkv.apply_rows(&normed);
            fused::rope_into_cache_at::<T>(
                &qkv,
                &cos,
                &sin,
                heads,
                cols,
                &mut q,
                &mut cache.k[i],
                &mut cache.v[i],
            )?;
            // f32: two batched MKL calls for all rows and key/value heads beat libtorch's
            // kernel (decode steps, interleaved A/B: 4.0 % shorter at batch 1 after 128
            // tokens, 0.7 % after 512; 1.8 % at batch 2 and 1.4 % at batch 8 after 128).
            let ours = T::KIND == Kind::Float
                && fused::attend_one(
                    &q,
                    &cache.k[i],
                    &cache.v[i],
                    heads,
                    keys_end as usize,
                    mask,
                    &mut attn,
                )?;
            let y = if ours {
                blk.wo.apply_rows(&attn)
            } else {
                let y = Tensor::scaled_dot_product_attention(
                    &q,
                    &cache.k[i].narrow(2, 0, keys_end),
                    &cache.v[i].narrow(2, 0, keys_end),
                    mask,
                    0.0,
                    false,
                    None,
                    nq != nkv,
                );
                blk.wo.apply_rows(&y.reshape([bi, (nq * hd) as i64]))
            };
            fused::add_into::<R, T>(x, &y, b * h)?;
            fused::rms_norm::<R, T>(x, &blk.mlp_norm, eps, &mut normed, b, h)?;
            let gu = blk.w_gate_up.apply_rows(&normed);
            fused::silu_mul::<T>(&gu, &mut act, b, inter)?;
            let y = blk.w_down.apply_rows(&act);
            fused::add_into::<R, T>(x, &y, b * h)?;
        }
        Ok(())
    }

    /// `[b, 1, 1, len]` bool: row `r` attends to its own columns `0..=cols[r]`.
    fn slot_mask(&self, cols: &[usize], len: i64) -> Tensor {
        let b = cols.len() as i64;
        let last: Vec<i64> = cols.iter().map(|c| *c as i64).collect();
        let last = Tensor::from_slice(&last)
            .view([b, 1])
            .to_device(self.device);
        let at = Tensor::arange(len, (Kind::Int64, self.device)).view([1, len]);
        at.le_tensor(&last).view([b, 1, 1, len]).contiguous()
    }

    /// With quantised weights the LM head's kernel returns bf16 logits, whose rounding
    /// (0.06 at a logit of 10) is as large as the gaps that decide greedy picks. The
    /// [`REFINED_LOGITS`] largest are recomputed in f32 from the f32 hidden state and the
    /// head's stored weights, so the top of the distribution is as exact as the weights.
    fn refine_top_logits(&self, mut logits: Tensor, hidden: &Tensor) -> Tensor {
        let b = logits.size()[0];
        let k = REFINED_LOGITS.min(logits.size()[1]);
        let (_, idx) = logits.topk(k, -1, true, false);
        let exact_from = self.head_rows.as_ref().unwrap_or(&self.lm_head);
        let Some(rows) = exact_from.exact_rows(&idx.reshape([-1])) else {
            return logits;
        };
        let h = hidden.size()[1];
        let exact = (rows.view([b, k, h]) * hidden.to_kind(Kind::Float).unsqueeze(1))
            .sum_dim_intlist(-1, false, Kind::Float);
        let _ = logits.scatter_(1, &idx, &exact);
        logits
    }

    /// Mask for attention of `t` new tokens at cache columns `start..start+t`: `None` plus
    /// `is_causal` when plain causal attention suffices, else an explicit `[b,1,t,len]` mask.
    fn attention_mask(&self, cache: &KvCache, start: i64, t: i64) -> (Option<Tensor>, bool) {
        let len = start + t;
        if cache.valid.is_none() && (start == 0 || t == 1) {
            return (None, t > 1);
        }
        let opts = (Kind::Int64, self.device);
        let cols = Tensor::arange(len, opts).view([1, len]);
        let rows = Tensor::arange_start(start, len, opts).view([t, 1]);
        let causal = cols.le_tensor(&rows);
        let diag = cols.eq_tensor(&rows);
        let mask = match &cache.valid {
            Some(valid) => {
                let valid = valid.narrow(1, 0, len).unsqueeze(1);
                // A padded query row may attend to itself only: keeps its values finite.
                causal
                    .unsqueeze(0)
                    .logical_and(&valid)
                    .logical_or(&diag.unsqueeze(0))
            }
            None => causal.unsqueeze(0),
        };
        (Some(mask.unsqueeze(1)), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::RopeScaling;
    use crate::model::source::WeightSource;

    fn tiny(tie: bool) -> LlamaConfig {
        LlamaConfig {
            vocab_size: 11,
            hidden_size: 8,
            intermediate_size: 12,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: None,
            max_position_embeddings: 32,
            tie_word_embeddings: tie,
        }
    }

    /// A small model whose shapes fit the int4 kernel's layout (multiples of 64).
    fn quantisable(heads: usize, kv_heads: usize, tie: bool) -> LlamaConfig {
        LlamaConfig {
            vocab_size: 64,
            hidden_size: 64,
            intermediate_size: 128,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            max_position_embeddings: 64,
            ..tiny(tie)
        }
    }

    /// Converting (or quantising) each part of a fused layer as it is taken gives the same
    /// stored weight as stacking the f32 parts first and converting the stack, as loading
    /// did before it went tensor by tensor; and the synthetic source draws the same weights
    /// as `random_weights`.
    #[test]
    fn tensor_by_tensor_conversion_matches_converting_the_stack() {
        let cfg = quantisable(4, 2, false);
        let w = crate::model::synthetic::random_weights(&cfg, 13);
        let stack = |names: &[&str]| {
            let parts: Vec<&Tensor> = names
                .iter()
                .map(|n| &w[&format!("model.layers.0.{n}")])
                .collect();
            Tensor::cat(&parts, 0)
        };
        let qkv = stack(&[
            "self_attn.q_proj.weight",
            "self_attn.k_proj.weight",
            "self_attn.v_proj.weight",
        ]);
        let gate_up = stack(&["mlp.gate_proj.weight", "mlp.up_proj.weight"]);
        let same = |a: &Tensor, b: &Tensor| a.kind() == b.kind() && a.equal(b);
        for mode in [
            WeightsMode::Dense(Kind::Float),
            WeightsMode::Dense(Kind::BFloat16),
            WeightsMode::Dense(Kind::Half),
            WeightsMode::Int8,
            WeightsMode::Int4,
        ] {
            let mut src = crate::model::synthetic::SyntheticSource::new(&cfg, 13);
            let m = Llama::build_from(&cfg, &mut src, Device::Cpu, mode).unwrap();
            assert!(src.remaining().is_empty());
            let b = &m.blocks[0];
            for (got, whole) in [(&b.wqkv, &qkv), (&b.w_gate_up, &gate_up)] {
                let ok = match (got, mode) {
                    (Linear::Dense(t), WeightsMode::Dense(k)) => same(t, &whole.to_kind(k)),
                    (Linear::Int8 { q, scales, .. }, WeightsMode::Int8) => {
                        let Linear::Int8 {
                            q: wq, scales: ws, ..
                        } = Linear::int8(whole, Kind::BFloat16).unwrap()
                        else {
                            unreachable!()
                        };
                        same(q, &wq) && same(scales, &ws)
                    }
                    (
                        Linear::Int4 {
                            packed,
                            scales_zeros,
                            ..
                        },
                        WeightsMode::Int4,
                    ) => {
                        let codes = Int4Codes::quantize(whole).unwrap();
                        let Linear::Int4 {
                            packed: wp,
                            scales_zeros: wz,
                            ..
                        } = Linear::int4(&codes, Kind::BFloat16).unwrap()
                        else {
                            unreachable!()
                        };
                        same(packed, &wp) && same(scales_zeros, &wz)
                    }
                    _ => false,
                };
                assert!(
                    ok,
                    "{mode:?}: a fused layer differs from the converted stack"
                );
            }
            let embed_kind = mode.activation_kind();
            let e = &w["model.embed_tokens.weight"];
            assert!(
                same(&m.embed, &e.to_kind(embed_kind)),
                "{mode:?}: embedding"
            );
        }
    }

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let mut c = tiny(true);
        c.head_dim = Some(128);
        c.hidden_size = 512;
        c.rope_theta = 500000.0;
        let plain = inverse_frequencies(&c);
        c.rope_scaling = Some(RopeScaling {
            rope_type: "llama3".into(),
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        });
        let scaled = inverse_frequencies(&c);
        assert_eq!(scaled[0], plain[0]);
        let last = plain.len() - 1;
        assert!((scaled[last] - plain[last] / 8.0).abs() < 1e-15);
        assert!(scaled.iter().zip(&plain).all(|(s, p)| s <= p));
    }

    #[test]
    fn missing_and_misshapen_tensors_are_named() {
        let cfg = tiny(true);
        let w = crate::model::synthetic::random_weights(&cfg, 1);
        let mut bad = w
            .iter()
            .map(|(k, v)| (k.clone(), v.shallow_clone()))
            .collect::<HashMap<_, _>>();
        bad.remove("model.layers.1.mlp.up_proj.weight");
        let e = Llama::new(&cfg, bad, Device::Cpu, Kind::Float)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("model.layers.1.mlp.up_proj.weight"), "{e}");
        let mut bad = w;
        bad.insert(
            "model.norm.weight".into(),
            Tensor::ones([3], (Kind::Float, Device::Cpu)),
        );
        let e = Llama::new(&cfg, bad, Device::Cpu, Kind::Float)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("expected [8]"), "{e}");
    }

    /// int8 and int4 models follow the dense one closely, decode as they prefill, and int4
    /// uses 4-bit codes given for a weight as they are.
    #[test]
    fn quantised_models_track_the_dense_model() {
        let cfg = quantisable(2, 1, true);
        let w = || {
            crate::model::synthetic::random_weights(&cfg, 11)
                .into_iter()
                .collect::<HashMap<_, _>>()
        };
        let run = |m: &Llama| {
            let ids = [3i64, 9, 27, 1, 44];
            let mut c = m.new_cache(1, 16).unwrap();
            let n = ids.len() as i64;
            let toks = Tensor::from_slice(&ids).view([1, n]);
            let pos = Tensor::arange(n, (Kind::Int64, Device::Cpu)).view([1, n]);
            let a = m.forward(&toks, &pos, None, &mut c).unwrap();
            let t = Tensor::from_slice(&[7i64]).view([1, 1]);
            let p = Tensor::from_slice(&[n]).view([1, 1]);
            let b = m.forward(&t, &p, None, &mut c).unwrap();
            Tensor::cat(&[a, b], 0)
        };
        let dense = run(&Llama::new(&cfg, w(), Device::Cpu, Kind::Float).unwrap());
        let spread = dense.abs().max().double_value(&[]);
        for mode in [WeightsMode::Int8, WeightsMode::Int4] {
            let m = Llama::build(&cfg, w(), HashMap::new(), Device::Cpu, mode).unwrap();
            assert_eq!(m.int8_fallbacks(), 0);
            let got = run(&m);
            let err = (&got - &dense).abs().max().double_value(&[]);
            assert!(
                err < 0.1 * spread,
                "{mode:?}: {err} against logits up to {spread}"
            );
        }
        // Codes given for every block weight are used as they are: codes equal to what
        // quantisation would produce give the same model; shifted codes give another one.
        let codes = |shift: i64| {
            w().into_iter()
                .filter(|(k, _)| k.starts_with("model.layers."))
                .filter(|(k, _)| !k.ends_with("layernorm.weight"))
                .map(|(k, t)| {
                    let c = Int4Codes::quantize(&t).unwrap();
                    let q = (c.q.to_kind(Kind::Int64) + shift)
                        .clamp(0, 15)
                        .to_kind(Kind::Uint8);
                    (k, Int4Codes { q, ..c })
                })
                .collect::<HashMap<_, _>>()
        };
        let plain =
            run(&Llama::build(&cfg, w(), HashMap::new(), Device::Cpu, WeightsMode::Int4).unwrap());
        let same = run(&Llama::build(&cfg, w(), codes(0), Device::Cpu, WeightsMode::Int4).unwrap());
        assert!(same.equal(&plain));
        let other =
            run(&Llama::build(&cfg, w(), codes(1), Device::Cpu, WeightsMode::Int4).unwrap());
        assert!(!other.equal(&plain));
    }

    /// The fused one-token step (`decode_blocks`) computes what the general path computes,
    /// for every mode that uses it, with left padding in a batch of two.
    #[test]
    fn fused_decode_matches_the_general_path() {
        let cfg = quantisable(4, 2, false);
        let w = || crate::model::synthetic::random_weights(&cfg, 5);
        // Two rows, the first left-padded, then the second row alone (a batch of one takes
        // the f32 step's own attention).
        let run = |m: &Llama| {
            let mut c = m.new_cache(2, 16).unwrap();
            let t = Tensor::from_slice(&[0i64, 4, 6, 1, 2, 3]).view([2, 3]);
            let p = Tensor::from_slice(&[0i64, 0, 1, 0, 1, 2]).view([2, 3]);
            let mask = Tensor::from_slice(&[false, true, true, true, true, true]).view([2, 3]);
            let mut out = vec![m.forward(&t, &p, Some(&mask), &mut c).unwrap()];
            for step in 0..4i64 {
                let t = Tensor::from_slice(&[8 + step, 20 + step]).view([2, 1]);
                let p = Tensor::from_slice(&[2 + step, 3 + step]).view([2, 1]);
                out.push(m.forward(&t, &p, None, &mut c).unwrap());
            }
            let mut c = m.new_cache(1, 16).unwrap();
            let t = Tensor::from_slice(&[1i64, 2, 3]).view([1, 3]);
            let p = Tensor::from_slice(&[0i64, 1, 2]).view([1, 3]);
            let mut one = vec![m.forward(&t, &p, None, &mut c).unwrap()];
            for step in 0..4i64 {
                let t = Tensor::from_slice(&[20 + step]).view([1, 1]);
                let p = Tensor::from_slice(&[3 + step]).view([1, 1]);
                one.push(m.forward(&t, &p, None, &mut c).unwrap());
            }
            Tensor::cat(&[Tensor::stack(&out, 0), Tensor::stack(&one, 0)], 1)
        };
        for mode in [
            WeightsMode::Dense(Kind::Float),
            WeightsMode::Dense(Kind::BFloat16),
            WeightsMode::Int8,
            WeightsMode::Int4,
        ] {
            let mut m = Llama::build(&cfg, w(), HashMap::new(), Device::Cpu, mode).unwrap();
            assert!(m.fused_decode, "{mode:?} should use the fused step");
            let fused = run(&m);
            m.fused_decode = false;
            let general = run(&m);
            let spread = general.abs().max().double_value(&[]);
            let err = (&fused - &general).abs().max().double_value(&[]);
            // f32: summation order only; bf16 activations: an ulp of bf16 here and there.
            let tol = if mode == WeightsMode::Dense(Kind::Float) {
                1e-5
            } else {
                2e-2
            };
            assert!(
                err <= tol * spread,
                "{mode:?}: {err} against logits up to {spread}"
            );
            assert!(fused.argmax(-1, false).equal(&general.argmax(-1, false)));
        }
        // Other dtypes keep the general path.
        for mode in [
            WeightsMode::Dense(Kind::Half),
            WeightsMode::Dense(Kind::Double),
        ] {
            let m = Llama::build(&cfg, w(), HashMap::new(), Device::Cpu, mode).unwrap();
            assert!(!m.fused_decode, "{mode:?}");
        }
    }

    /// bf16x3 products for prompts: logits near the IEEE f32 model's (about 2^-17 per
    /// product, far below bf16's 2^-9), not equal to them (the split path ran), and refused
    /// for anything but f32 weights.
    #[test]
    #[cfg_attr(
        not(feature = "bf16-tests"),
        ignore = "needs a CPU with bf16 matrix instructions (scripts/test turns on bf16-tests where there is one)"
    )]
    fn split_matmuls_track_f32_on_long_prompts() {
        super::super::bf16x3::check_available()
            .expect("bf16-tests is on, so bf16x3 must be available");
        let cfg = LlamaConfig {
            max_position_embeddings: 128,
            ..quantisable(4, 2, false)
        };
        let w = || crate::model::synthetic::random_weights(&cfg, 9);
        let build = |mode| Llama::build(&cfg, w(), HashMap::new(), Device::Cpu, mode).unwrap();
        let n = 64i64;
        let run = |m: &Llama| {
            let mut c = m.new_cache(1, n as usize + 1).unwrap();
            let t = (Tensor::arange(n, (Kind::Int64, Device::Cpu)) * 7).remainder(64);
            let p = Tensor::arange(n, (Kind::Int64, Device::Cpu)).view([1, n]);
            let first = m.forward(&t.view([1, n]), &p, None, &mut c).unwrap();
            let t1 = Tensor::from_slice(&[5i64]).view([1, 1]);
            let p1 = Tensor::from_slice(&[n]).view([1, 1]);
            Tensor::stack(&[first, m.forward(&t1, &p1, None, &mut c).unwrap()], 0)
        };
        let exact = run(&build(WeightsMode::Dense(Kind::Float)));
        let split = run(&build(WeightsMode::Dense(Kind::Float))
            .split_f32_matmuls()
            .unwrap());
        let spread = exact.abs().max().double_value(&[]);
        let err = (&split - &exact).abs().max().double_value(&[]);
        assert!(err > 0.0, "the split path did not run");
        assert!(err <= 1e-4 * spread, "{err} against logits up to {spread}");
        for mode in [WeightsMode::Dense(Kind::BFloat16), WeightsMode::Int8] {
            let e = build(mode).split_f32_matmuls().err().expect("refused");
            assert!(e.to_string().contains("f32 weights"), "{e}");
        }
    }

    /// Decoding token by token through the cache equals one full causal pass.
    #[test]
    fn incremental_decode_matches_full_prefill() {
        let cfg = tiny(false);
        let m = Llama::new(
            &cfg,
            crate::model::synthetic::random_weights(&cfg, 7),
            Device::Cpu,
            Kind::Double,
        )
        .unwrap();
        let ids = [1i64, 5, 2, 9, 3, 7];
        let n = ids.len() as i64;
        let mut full = m.new_cache(1, 16).unwrap();
        let toks = Tensor::from_slice(&ids).view([1, n]);
        let pos = Tensor::arange(n, (Kind::Int64, Device::Cpu)).view([1, n]);
        let a = m.forward(&toks, &pos, None, &mut full).unwrap();
        let mut inc = m.new_cache(1, 16).unwrap();
        let mut b = Tensor::zeros([1], (Kind::Float, Device::Cpu));
        for (i, id) in ids.iter().enumerate() {
            let t = Tensor::from_slice(&[*id]).view([1, 1]);
            let p = Tensor::from_slice(&[i as i64]).view([1, 1]);
            b = m.forward(&t, &p, None, &mut inc).unwrap();
        }
        let diff = (a - b).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "max difference {diff}");
        assert_eq!(inc.len(), ids.len());
    }

    /// A left-padded row gives the same logits as the same prompt alone.
    #[test]
    fn left_padding_does_not_change_a_row() {
        let cfg = tiny(true);
        let m = Llama::new(
            &cfg,
            crate::model::synthetic::random_weights(&cfg, 3),
            Device::Cpu,
            Kind::Double,
        )
        .unwrap();
        let mut alone = m.new_cache(1, 16).unwrap();
        let t = Tensor::from_slice(&[4i64, 6]).view([1, 2]);
        let p = Tensor::from_slice(&[0i64, 1]).view([1, 2]);
        let want = m.forward(&t, &p, None, &mut alone).unwrap();
        let mut both = m.new_cache(2, 16).unwrap();
        let t = Tensor::from_slice(&[0i64, 4, 6, 1, 2, 3]).view([2, 3]);
        let p = Tensor::from_slice(&[0i64, 0, 1, 0, 1, 2]).view([2, 3]);
        let mask = Tensor::from_slice(&[false, true, true, true, true, true]).view([2, 3]);
        let got = m.forward(&t, &p, Some(&mask), &mut both).unwrap();
        let diff = (got.get(0) - want.get(0)).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "max difference {diff}");
        // Next decode step keeps agreeing.
        let want2 = m
            .forward(
                &Tensor::from_slice(&[8i64]).view([1, 1]),
                &Tensor::from_slice(&[2i64]).view([1, 1]),
                None,
                &mut alone,
            )
            .unwrap();
        let got2 = m
            .forward(
                &Tensor::from_slice(&[8i64, 8]).view([2, 1]),
                &Tensor::from_slice(&[2i64, 3]).view([2, 1]),
                None,
                &mut both,
            )
            .unwrap();
        let diff = (got2.get(0) - want2.get(0)).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "max difference {diff}");
    }
}
