//! A Hugging Face `config.json` read into an [`Architecture`], for projection (`--model
//! path/to/config.json` or a directory holding one).
//!
//! Field names and defaults follow the `transformers` configuration classes of each
//! `model_type` (`configuration_llama.py`, `configuration_mistral.py`,
//! `configuration_mixtral.py`, `configuration_qwen2.py`, `configuration_qwen3.py`,
//! `configuration_qwen3_moe.py`, `configuration_llama4.py`, `configuration_gpt_oss.py`,
//! `configuration_gemma3.py`). A field the architecture needs and the class gives no
//! default for is an error naming the field and the file.

use super::architecture::{Architecture, Attention, Experts, LayerKind, QuantScope, Quantization};
use super::config::{LlamaConfig, RopeScaling};
use crate::dtype::WeightsDtype;
use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The `model_type`s understood, for error messages.
pub const MODEL_TYPES: &str =
    "llama, mistral, mixtral, qwen2, qwen3, qwen3_moe, llama4, llama4_text, gpt_oss, gemma3, gemma3_text";

/// What was read from a `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct HfModel {
    pub model_type: String,
    pub architecture: Architecture,
    /// `torch_dtype` (or `dtype`): float32 and float16 as they are, anything else (absent,
    /// bfloat16, a quantized checkpoint's) bf16.
    pub dtype: WeightsDtype,
    /// The file read.
    pub path: PathBuf,
    /// Things read but not used by the projection (e.g. a non-Llama-3 RoPE scaling).
    pub notes: Vec<String>,
}

/// The `config.json` that `spec` names: the file itself, or `config.json` in a directory.
/// `None` when `spec` is neither.
pub fn config_path(spec: &str) -> Option<PathBuf> {
    let p = Path::new(spec);
    if p.is_dir() && p.join("config.json").is_file() {
        Some(p.join("config.json"))
    } else if p.is_file() && p.extension().and_then(|e| e.to_str()) == Some("json") {
        Some(p.to_path_buf())
    } else {
        None
    }
}

/// Reads and interprets a `config.json`.
pub fn read(path: &Path) -> Result<HfModel> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {file}"))?;
    parse(&text, path)
}

/// Interprets the text of a `config.json`; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<HfModel> {
    let file = path.display().to_string();
    let root: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| anyhow::anyhow!("{file}: not valid JSON: {e}"))?;
    let Some(top) = root.as_object() else {
        bail!("{file}: expected a JSON object");
    };
    let top = Fields {
        map: top,
        file: &file,
        prefix: "",
    };
    let Some(model_type) = top.opt_str("model_type")? else {
        bail!("{file}: field `model_type` is missing (expected one of {MODEL_TYPES})");
    };
    // Multimodal configs keep the language model under `text_config`.
    let text_part = matches!(model_type.as_str(), "llama4" | "gemma3");
    let nested;
    let f = if text_part {
        let Some(t) = top.map.get("text_config").and_then(|v| v.as_object()) else {
            bail!("{file}: field `text_config` is missing (model_type {model_type:?} keeps its language model there)");
        };
        nested = Fields {
            map: t,
            file: &file,
            prefix: "text_config.",
        };
        &nested
    } else {
        &top
    };
    let kind = match model_type.as_str() {
        "llama" | "mistral" | "mixtral" | "qwen2" | "qwen3" | "qwen3_moe" | "gpt_oss" => {
            model_type.clone()
        }
        "llama4" | "llama4_text" => "llama4".into(),
        "gemma3" | "gemma3_text" => "gemma3".into(),
        other => {
            bail!("{file}: model_type {other:?} is not supported (expected one of {MODEL_TYPES})")
        }
    };
    let mut notes = Vec::new();
    let gemma = kind == "gemma3";
    // Gemma3TextConfig gives defaults to fields its published configs leave out.
    let usize_or = |name: &str, gemma_default: usize| -> Result<usize> {
        match f.opt_usize(name)? {
            Some(v) => Ok(v),
            None if gemma => Ok(gemma_default),
            None => f.missing(name),
        }
    };
    let heads = usize_or("num_attention_heads", 8)?;
    let hidden = f.req_usize("hidden_size")?;
    let dense_width = if kind == "llama4" {
        f.req_usize("intermediate_size_mlp")?
    } else {
        f.req_usize("intermediate_size")?
    };
    let tie_default = gemma;
    let tie = match f.opt_bool("tie_word_embeddings")? {
        Some(t) => t,
        None => top.opt_bool("tie_word_embeddings")?.unwrap_or(tie_default),
    };
    let rope_scaling = match f.map.get("rope_scaling") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let kind = v
                .get("rope_type")
                .or_else(|| v.get("type"))
                .and_then(|t| t.as_str())
                .unwrap_or("?");
            // Kept only where the inference engine could use it (a well-formed Llama-3
            // scaling); positions do not change the projected cost either way.
            let llama3 = serde_json::from_value::<RopeScaling>(v.clone())
                .ok()
                .filter(|s| {
                    s.rope_type == "llama3"
                        && s.factor > 0.0
                        && s.low_freq_factor > 0.0
                        && s.high_freq_factor > s.low_freq_factor
                });
            if llama3.is_some() {
                llama3
            } else {
                notes.push(format!(
                    "rope_scaling of type {kind:?} read but not used (positions do not change the projected cost)"
                ));
                None
            }
        }
    };
    let base = LlamaConfig {
        vocab_size: usize_or("vocab_size", 262_208)?,
        hidden_size: hidden,
        intermediate_size: dense_width,
        num_hidden_layers: f.req_usize("num_hidden_layers")?,
        num_attention_heads: heads,
        num_key_value_heads: match f.opt_usize("num_key_value_heads")? {
            Some(k) => k,
            None if gemma => 4,
            None => heads,
        },
        head_dim: match f.opt_usize("head_dim")? {
            Some(d) => Some(d),
            None if gemma => Some(256),
            None => None,
        },
        rms_norm_eps: f.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
        rope_theta: f.opt_f64("rope_theta")?.unwrap_or(match kind.as_str() {
            "gemma3" => 1_000_000.0,
            "llama4" => 500_000.0,
            _ => 10_000.0,
        }),
        rope_scaling,
        max_position_embeddings: usize_or("max_position_embeddings", 131_072)?,
        tie_word_embeddings: tie,
    };
    let layers = base.num_hidden_layers;

    let mut attention = Attention::default();
    let bias = f.opt_bool("attention_bias")?.unwrap_or(false);
    match kind.as_str() {
        // Qwen2Attention: q, k, v with bias, o without.
        "qwen2" => attention.qkv_bias = true,
        "qwen3" | "qwen3_moe" => {
            attention.qk_norm = true;
            attention.qkv_bias = bias;
            attention.o_bias = bias;
        }
        "gpt_oss" => {
            attention.qkv_bias = bias;
            attention.o_bias = bias;
            attention.sinks = true;
        }
        "gemma3" => {
            attention.qk_norm = true;
            attention.norms_per_layer = 4;
            attention.qkv_bias = bias;
            attention.o_bias = bias;
        }
        _ => {
            attention.qkv_bias = bias;
            attention.o_bias = bias;
        }
    }
    // Layer kinds: an explicit `layer_types` list wins; otherwise each family's rule.
    let sliding = f.opt_usize("sliding_window")?;
    if let Some(types) = f.map.get("layer_types").filter(|v| !v.is_null()) {
        let Some(list) = types.as_array() else {
            bail!("{file}: field `{}layer_types` must be a list", f.prefix);
        };
        if list.len() != layers {
            bail!(
                "{file}: field `{}layer_types` lists {} layers, but `num_hidden_layers` is {layers}",
                f.prefix,
                list.len()
            );
        }
        let mut kinds = Vec::new();
        for t in list {
            kinds.push(match t.as_str() {
                Some("full_attention") => LayerKind::Full,
                Some("sliding_attention") => LayerKind::Sliding,
                Some("chunked_attention") => LayerKind::Chunked,
                _ => bail!("{file}: field `{}layer_types` holds {t}, expected \"full_attention\", \"sliding_attention\" or \"chunked_attention\"", f.prefix),
            });
        }
        let window = if kinds.contains(&LayerKind::Chunked) {
            Some(f.req_usize("attention_chunk_size")?)
        } else if kinds.contains(&LayerKind::Sliding) {
            Some(f.req_usize("sliding_window")?)
        } else {
            None
        };
        set_pattern(&mut attention, kinds, window);
    } else {
        match kind.as_str() {
            // MistralConfig / MixtralConfig: `sliding_window` on every layer when set.
            "mistral" | "mixtral" => {
                if let Some(w) = sliding {
                    set_pattern(&mut attention, vec![LayerKind::Sliding], Some(w));
                }
            }
            // Qwen2/Qwen3: layers from `max_window_layers` on slide when `use_sliding_window`.
            "qwen2" | "qwen3" | "qwen3_moe" => {
                if f.opt_bool("use_sliding_window")?.unwrap_or(false) {
                    let w = f.req_usize("sliding_window")?;
                    let from = f.opt_usize("max_window_layers")?.unwrap_or(layers);
                    let kinds = (0..layers)
                        .map(|i| {
                            if i >= from {
                                LayerKind::Sliding
                            } else {
                                LayerKind::Full
                            }
                        })
                        .collect();
                    set_pattern(&mut attention, kinds, Some(w));
                }
            }
            // Llama 4: layers that use RoPE (`no_rope_layers[i] == 1`, by default all but
            // every 4th) attend within chunks of `attention_chunk_size`.
            "llama4" => {
                if let Some(chunk) = f.opt_usize("attention_chunk_size")? {
                    let rope: Vec<bool> = match f.map.get("no_rope_layers") {
                        Some(Value::Array(a)) if !a.is_empty() => {
                            if a.len() != layers {
                                bail!("{file}: field `{}no_rope_layers` lists {} layers, but `num_hidden_layers` is {layers}", f.prefix, a.len());
                            }
                            a.iter().map(|x| x.as_u64() == Some(1)).collect()
                        }
                        _ => {
                            let every = f.opt_usize("no_rope_layer_interval")?.unwrap_or(4).max(1);
                            (0..layers)
                                .map(|i| !(i + 1).is_multiple_of(every))
                                .collect()
                        }
                    };
                    let kinds = rope
                        .iter()
                        .map(|r| {
                            if *r {
                                LayerKind::Chunked
                            } else {
                                LayerKind::Full
                            }
                        })
                        .collect();
                    set_pattern(&mut attention, kinds, Some(chunk));
                }
            }
            // Gemma 3: every `sliding_window_pattern`-th layer global, the others local.
            "gemma3" => {
                let w = sliding.unwrap_or(4096);
                let every = f.opt_usize("sliding_window_pattern")?.unwrap_or(6).max(1);
                let kinds = (0..layers)
                    .map(|i| {
                        if (i + 1).is_multiple_of(every) {
                            LayerKind::Full
                        } else {
                            LayerKind::Sliding
                        }
                    })
                    .collect();
                set_pattern(&mut attention, kinds, Some(w));
            }
            "gpt_oss" => {
                // GptOssConfig: sliding and full alternate, starting with sliding.
                let w = f.req_usize("sliding_window")?;
                set_pattern(
                    &mut attention,
                    vec![LayerKind::Sliding, LayerKind::Full],
                    Some(w),
                );
            }
            _ => {
                if sliding.is_some() {
                    notes.push("sliding_window read but no layer uses it".into());
                }
            }
        }
    }

    let experts = match kind.as_str() {
        "mixtral" => Some(Experts {
            count: f.req_usize("num_local_experts")?,
            per_token: f.req_usize("num_experts_per_tok")?,
            intermediate_size: f.req_usize("intermediate_size")?,
            shared: 0,
            shared_intermediate_size: None,
            layer_step: 1,
            dense_layers: Vec::new(),
            router_bias: false,
            expert_bias: false,
        }),
        "qwen3_moe" => Some(Experts {
            count: f.req_usize("num_experts")?,
            per_token: f.req_usize("num_experts_per_tok")?,
            intermediate_size: f.req_usize("moe_intermediate_size")?,
            shared: 0,
            shared_intermediate_size: None,
            layer_step: f.opt_usize("decoder_sparse_step")?.unwrap_or(1),
            dense_layers: f.opt_usize_list("mlp_only_layers")?.unwrap_or_default(),
            router_bias: false,
            expert_bias: false,
        }),
        "llama4" => {
            let step = f.opt_usize("interleave_moe_layer_step")?.unwrap_or(1);
            // An explicit `moe_layers` list overrides the step.
            let dense_layers = match f.opt_usize_list("moe_layers")? {
                Some(moe) => (0..layers).filter(|i| !moe.contains(i)).collect(),
                None => Vec::new(),
            };
            let explicit = f.map.get("moe_layers").is_some_and(|v| !v.is_null());
            Some(Experts {
                count: f.req_usize("num_local_experts")?,
                per_token: f.req_usize("num_experts_per_tok")?,
                intermediate_size: f.req_usize("intermediate_size")?,
                shared: 1,
                shared_intermediate_size: None,
                layer_step: if explicit { 1 } else { step },
                dense_layers,
                router_bias: false,
                expert_bias: false,
            })
        }
        "gpt_oss" => Some(Experts {
            count: f.req_usize("num_local_experts")?,
            per_token: match f.opt_usize("num_experts_per_tok")? {
                Some(k) => k,
                None => f.req_usize("experts_per_token")?,
            },
            intermediate_size: f.req_usize("intermediate_size")?,
            shared: 0,
            shared_intermediate_size: None,
            layer_step: 1,
            dense_layers: Vec::new(),
            router_bias: true,
            expert_bias: true,
        }),
        _ => None,
    };

    let quantization = match top.map.get("quantization_config") {
        None | Some(Value::Null) => None,
        Some(q) => Some(quantization(q, &file, experts.is_some())?),
    };
    let dtype = match top
        .opt_str("torch_dtype")?
        .or(top.opt_str("dtype")?)
        .as_deref()
    {
        Some("float32") => WeightsDtype::Fp32,
        Some("float16") => WeightsDtype::Fp16,
        _ => WeightsDtype::Bf16,
    };
    let architecture = Architecture {
        base,
        experts,
        attention,
        quantization,
    };
    architecture.validate(&file)?;
    Ok(HfModel {
        model_type,
        architecture,
        dtype,
        path: path.to_path_buf(),
        notes,
    })
}

/// Sets the layer pattern and window, shortening a periodic list to its period.
fn set_pattern(a: &mut Attention, kinds: Vec<LayerKind>, window: Option<usize>) {
    let period = (1..=kinds.len())
        .find(|p| {
            kinds.len().is_multiple_of(*p) && (0..kinds.len()).all(|i| kinds[i] == kinds[i % p])
        })
        .unwrap_or(kinds.len());
    let mut kinds = kinds;
    kinds.truncate(period);
    if kinds.iter().all(|k| *k == LayerKind::Full) {
        return;
    }
    a.layer_pattern = kinds;
    a.window = window;
}

/// `quantization_config`: the storage bits per weight of the methods understood.
fn quantization(q: &Value, file: &str, moe: bool) -> Result<Quantization> {
    let method = q
        .get("quant_method")
        .and_then(|m| m.as_str())
        .with_context(|| format!("{file}: field `quantization_config.quant_method` is missing"))?;
    let bits = |name: &str| {
        q.get(name).and_then(|b| b.as_f64()).with_context(|| {
            format!("{file}: field `quantization_config.{name}` is missing ({method} needs it)")
        })
    };
    let (bits_per_weight, scope) = match method {
        // OCP Microscaling: 4-bit elements, one 8-bit scale per block of 32
        // (OCP MX Formats Specification v1.0, 2023); gpt-oss quantises the experts only.
        "mxfp4" => (
            4.0 + 8.0 / 32.0,
            if moe {
                QuantScope::Experts
            } else {
                QuantScope::Layers
            },
        ),
        "fp8" => (8.0, QuantScope::Layers),
        "awq" | "gptq" => (bits("bits")?, QuantScope::Layers),
        "bitsandbytes" => {
            let four = q.get("load_in_4bit").and_then(|b| b.as_bool()) == Some(true);
            (if four { 4.0 } else { 8.0 }, QuantScope::Layers)
        }
        other => bail!("{file}: field `quantization_config.quant_method` is {other:?}, not supported (expected mxfp4, fp8, awq, gptq or bitsandbytes)"),
    };
    Ok(Quantization {
        method: method.to_string(),
        bits_per_weight,
        scope,
    })
}

/// Typed reads from one JSON object, with errors naming the field and the file.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    file: &'a str,
    prefix: &'a str,
}

impl Fields<'_> {
    fn missing<T>(&self, name: &str) -> Result<T> {
        bail!("{}: field `{}{name}` is missing", self.file, self.prefix)
    }

    fn wrong<T>(&self, name: &str, v: &Value, expected: &str) -> Result<T> {
        bail!(
            "{}: field `{}{name}` is {v}, expected {expected}",
            self.file,
            self.prefix
        )
    }

    fn opt_usize(&self, name: &str) -> Result<Option<usize>> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) => Ok(Some(n as usize)),
                None => self.wrong(name, v, "a non-negative integer"),
            },
        }
    }

    fn req_usize(&self, name: &str) -> Result<usize> {
        match self.opt_usize(name)? {
            Some(n) => Ok(n),
            None => self.missing(name),
        }
    }

    fn opt_usize_list(&self, name: &str) -> Result<Option<Vec<usize>>> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| match x.as_u64() {
                    Some(n) => Ok(n as usize),
                    None => self.wrong(name, x, "a list of layer numbers"),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(v) => self.wrong(name, v, "a list of layer numbers"),
        }
    }

    fn opt_f64(&self, name: &str) -> Result<Option<f64>> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) => Ok(Some(x)),
                None => self.wrong(name, v, "a number"),
            },
        }
    }

    fn opt_bool(&self, name: &str) -> Result<Option<bool>> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => self.wrong(name, v, "true or false"),
        }
    }

    fn opt_str(&self, name: &str) -> Result<Option<String>> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => self.wrong(name, v, "a string"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::architecture::LayerKind::{Chunked, Full, Sliding};

    fn fixture(name: &str) -> HfModel {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hf-configs")
            .join(name)
            .join("config.json");
        read(&p).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `(fixture, published total, published active, half a unit of the last published
    /// digit of the total)`, in billions; sources in tests/fixtures/hf-configs/SOURCES.md.
    /// Active counts are published to two significant figures and the model cards differ on
    /// counting the embedding table in them (0.3B for Qwen3-30B-A3B), so they are checked
    /// to 2%.
    const PUBLISHED: [(&str, f64, Option<f64>, f64); 11] = [
        ("Qwen3-8B", 8.2, None, 0.05),
        ("Qwen3-32B", 32.8, None, 0.05),
        ("Qwen3-30B-A3B", 30.5, Some(3.3), 0.05),
        ("Qwen3-235B-A22B", 235.0, Some(22.0), 0.5),
        ("Mixtral-8x7B-v0.1", 46.7, Some(12.9), 0.05),
        ("Mistral-7B-v0.1", 7.24, None, 0.005),
        ("Llama-3.3-70B-Instruct", 70.6, None, 0.05),
        ("DeepSeek-R1-Distill-Llama-70B", 70.6, None, 0.05),
        ("gpt-oss-20b", 20.91, None, 0.005),
        ("gpt-oss-120b", 116.83, None, 0.005),
        ("Llama-4-Scout-17B-16E", 109.0, Some(17.0), 0.5),
    ];

    #[test]
    fn parameter_counts_match_the_published_totals() {
        for (name, total, active, tol) in PUBLISHED {
            let a = fixture(name).architecture;
            let mut t = a.parameter_count() as f64 / 1e9;
            if name.starts_with("Llama-4") {
                // The published total counts the vision encoder, which is not read:
                // 34 layers of width 1408 / MLP 5632 (4·1408² + 2·1408·5632 each, its
                // config's `vision_config`), about 0.81B.
                t += 34.0 * (4.0 * 1408.0 * 1408.0 + 2.0 * 1408.0 * 5632.0) / 1e9;
            }
            assert!(
                (t - total).abs() <= tol,
                "{name}: {t} B vs published {total} B"
            );
            if let Some(want) = active {
                let got = a.active_parameter_count() as f64 / 1e9;
                assert!(
                    (got / want - 1.0).abs() <= 0.02,
                    "{name}: active {got} B vs {want} B"
                );
            }
        }
    }

    #[test]
    fn qwen2_5_matches_its_published_non_embedding_count() {
        // Model card: 7.61B parameters, 6.53B non-embedding (embedding table and LM head).
        let a = fixture("Qwen2.5-7B").architecture;
        let embeddings = 2.0 * (a.vocab_size * a.hidden_size) as f64;
        let non_embedding = (a.parameter_count() as f64 - embeddings) / 1e9;
        assert!((non_embedding - 6.53).abs() <= 0.005, "{non_embedding}");
        let total = a.parameter_count() as f64 / 1e9;
        assert!((7.61..7.62).contains(&total), "{total}");
    }

    #[test]
    fn gpt_oss_active_counts_match_without_the_embedding_table() {
        // The gpt-oss model card's active counts leave the embedding table out.
        for (name, want) in [("gpt-oss-20b", 3.61), ("gpt-oss-120b", 5.13)] {
            let a = fixture(name).architecture;
            let embedding = (a.vocab_size * a.hidden_size) as f64;
            let got = (a.active_parameter_count() as f64 - embedding) / 1e9;
            assert!((got - want).abs() <= 0.005, "{name}: {got} vs {want}");
        }
    }

    #[test]
    fn maverick_and_gemma3_match_their_published_figures() {
        let a = fixture("Llama-4-Maverick-17B-128E").architecture;
        assert_eq!(a.moe_layers(), 24);
        let total = a.parameter_count() as f64 / 1e9;
        // "400B total" (model card), vision encoder (~0.81B, not read) included.
        assert!((total + 0.81 - 400.0).abs() <= 2.0, "{total}");
        let active = a.active_parameter_count() as f64 / 1e9;
        assert!((active - 17.0).abs() <= 0.5, "{active}");
        // Gemma 3 technical report, Table 1: 27B has 25,600M non-embedding parameters.
        let g = fixture("gemma-3-27b-it").architecture;
        let embedding = (g.vocab_size * g.hidden_size) as f64;
        let non_embedding = (g.parameter_count() as f64 - embedding) / 1e6;
        assert!((non_embedding - 25_600.0).abs() <= 5.0, "{non_embedding}");
    }

    #[test]
    fn variants_are_read() {
        let g = fixture("gpt-oss-20b");
        let a = &g.architecture;
        assert_eq!(a.attention.layer_pattern, vec![Sliding, Full]);
        assert_eq!(a.attention.window, Some(128));
        assert_eq!(a.windowed_layers(), 12);
        let q = a.quantization.as_ref().unwrap();
        assert_eq!((q.method.as_str(), q.scope), ("mxfp4", QuantScope::Experts));
        assert_eq!(q.bits_per_weight, 4.25);
        assert!(!g.notes.is_empty()); // the yarn rope_scaling is named as unused
        let s = fixture("Llama-4-Scout-17B-16E").architecture;
        assert_eq!(
            s.attention.layer_pattern,
            vec![Chunked, Chunked, Chunked, Full]
        );
        assert_eq!(s.attention.window, Some(8192));
        assert_eq!(s.experts.as_ref().unwrap().shared, 1);
        let m = fixture("Mistral-7B-v0.1").architecture;
        assert_eq!(m.attention.layer_pattern, vec![Sliding]);
        assert_eq!(m.attention.window, Some(4096));
        let gm = fixture("gemma-3-27b-it").architecture;
        assert_eq!(gm.windowed_layers(), 62 - 10);
        assert_eq!(gm.attention.window, Some(1024));
        assert!(gm.tie_word_embeddings);
        let q = fixture("Qwen2.5-7B").architecture;
        assert!(q.attention.qkv_bias && !q.attention.o_bias);
        assert!(q.attention.layer_pattern.is_empty());
        assert!(fixture("Llama-3.3-70B-Instruct")
            .architecture
            .is_plain_llama());
    }

    #[test]
    fn unknown_type_and_missing_field_are_one_line_naming_the_file() {
        let p = Path::new("x/config.json");
        let e = parse(r#"{"model_type": "falcon"}"#, p)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("x/config.json: model_type \"falcon\" is not supported"),
            "{e}"
        );
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/hf-configs/Qwen3-30B-A3B/config.json"),
        )
        .unwrap();
        let e = parse(&text.replace("\"num_experts\"", "\"n_experts\""), p)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "x/config.json: field `num_experts` is missing");
        let e = parse(r#"{"model_type": "llama4"}"#, p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("field `text_config` is missing"), "{e}");
        let e = parse(r#"{"hidden_size": 8}"#, p).unwrap_err().to_string();
        assert!(e.contains("field `model_type` is missing"), "{e}");
        let e = parse(
            &text.replace("\"hidden_size\": 2048", "\"hidden_size\": \"big\""),
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("field `hidden_size` is \"big\""), "{e}");
        assert!(!e.contains('\n'));
    }
}
