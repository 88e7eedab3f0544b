//! Resolves `--model` (a card name, a `.gguf` file, or a Hugging Face directory), reads its
//! config and tokenizer, and opens its weights as a [`WeightSource`] that hands them over
//! one tensor at a time, so that [`build_model`] converts each to the run dtype as it reads
//! it.

use super::card::{self, ModelCard};
use super::config::LlamaConfig;
use super::gguf::GgufFile;
use super::llama::{stored_bytes, WeightsMode};
use super::source::{GgufSource, SafetensorsSource, WeightSource};
use super::synthetic;
use super::tokenizer::Tokenizer;
use crate::paths::Home;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::{Device, Kind};

/// Where a model's weights came from (not how they are stored: that is
/// [`WeightsMode`]); every output produced with synthetic weights says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightsOrigin {
    Gguf,
    Safetensors,
    Synthetic,
}

impl WeightsOrigin {
    /// The name used in reports (run reports' `weights_kind`, `weights` elsewhere).
    pub fn as_str(self) -> &'static str {
        match self {
            WeightsOrigin::Gguf => "gguf",
            WeightsOrigin::Safetensors => "safetensors",
            WeightsOrigin::Synthetic => "synthetic",
        }
    }
}

/// What `--model` named.
#[derive(Debug, Clone)]
pub enum ModelRef {
    Card(Box<ModelCard>),
    GgufFile(PathBuf),
    HfDir(PathBuf),
}

/// A model's config, tokenizer and opened weights, ready for [`build_model`].
pub struct LoadedWeights {
    /// Card name, or the file or folder name.
    pub name: String,
    pub card: Option<ModelCard>,
    pub config: LlamaConfig,
    /// The weights, read (and for GGUF dequantised) as they are taken.
    pub source: Box<dyn WeightSource>,
    pub origin: WeightsOrigin,
    pub sha256: Option<String>,
    pub path: Option<PathBuf>,
    /// `None` for synthetic weights of a card that ships no tokenizer.
    pub tokenizer: Option<Tokenizer>,
}

/// Interprets `spec`: an existing `.gguf` file, an existing directory, or a card name.
pub fn resolve(spec: &str, home: &Home) -> Result<ModelRef> {
    let p = Path::new(spec);
    if p.is_dir() {
        return Ok(ModelRef::HfDir(p.to_path_buf()));
    }
    if p.is_file() {
        if p.extension().and_then(|e| e.to_str()) == Some("json") {
            // An architecture only: runs with synthetic weights, like a card without any.
            let card = ModelCard::from_hf(super::hf_config::read(p)?);
            return Ok(ModelRef::Card(Box::new(card)));
        }
        if p.extension().and_then(|e| e.to_str()) != Some("gguf") {
            bail!("model file {spec} is not a .gguf file (expected a card name, a .gguf file, a Hugging Face config.json or directory)");
        }
        return Ok(ModelRef::GgufFile(p.to_path_buf()));
    }
    if spec.ends_with(".gguf") || spec.contains('/') {
        bail!("model file or directory {spec} does not exist");
    }
    Ok(ModelRef::Card(Box::new(card::find_or(
        &home.models_dir(),
        spec,
        ", a .gguf file or a Hugging Face directory",
    )?)))
}

/// Opens the weights `r` names, to be stored as `to` says (the weights mode and the
/// device): refused first, with the numbers, when the host has less memory available than
/// that needs while loading ([`memory_while_loading`]). Synthetic weights (cards without a
/// checkpoint) are seeded by `seed`. For int4, a GGUF's Q4_0/Q4_1 codes are used as they are.
/// Nothing large is read yet: [`build_model`] takes the weights one at a time.
pub fn load(
    r: &ModelRef,
    home: &Home,
    seed: i64,
    to: (WeightsMode, Device),
) -> Result<LoadedWeights> {
    match r {
        ModelRef::GgufFile(p) => load_gguf(p, None, to),
        ModelRef::HfDir(p) => load_hf_dir(p, to),
        ModelRef::Card(c) => match &c.weights {
            Some(w) => {
                let path = home.weights_cache().join(&w.file);
                if !path.is_file() {
                    bail!(
                        "weights of model {} are not downloaded (expected .cache/models/{}): run scripts/setup",
                        c.name,
                        w.file
                    );
                }
                let loaded = load_gguf(&path, Some((**c).clone()), to)?;
                if loaded.sha256.as_deref() != Some(w.sha256.as_str()) {
                    bail!(
                        "{}: sha256 does not match the card {} (expected {}): delete it and run scripts/setup",
                        path.display(),
                        c.path.display(),
                        w.sha256
                    );
                }
                Ok(loaded)
            }
            None => load_synthetic(c, seed, to),
        },
    }
}

/// Seeded random weights at the card's shapes (drawn as they are taken), if they fit.
fn load_synthetic(c: &ModelCard, seed: i64, to: (WeightsMode, Device)) -> Result<LoadedWeights> {
    if !c.architecture.is_plain_llama() {
        bail!(
            "model {} cannot run here: the engine runs dense Llama models and this one has {} (project it instead: `profiler project --model {}`, or `run --project-model {}`)",
            c.name,
            c.architecture.variant_summary(),
            c.name,
            c.name
        );
    }
    check_memory(
        &format!("model {}", c.name),
        &c.architecture.base,
        to,
        " (synthetic)",
        " (try `profiler project` for models this large)",
    )?;
    Ok(LoadedWeights {
        name: c.name.clone(),
        config: c.architecture.base.clone(),
        source: Box::new(synthetic::SyntheticSource::new(&c.architecture.base, seed)),
        origin: WeightsOrigin::Synthetic,
        sha256: None,
        path: None,
        tokenizer: None,
        card: Some(c.clone()),
    })
}

/// Host memory a model needs while it is built from its source, bytes: tensor by tensor
/// in the order they are taken ([`synthetic::tensor_shapes`], the order of
/// [`super::llama::Llama::build_from`]), the weights already stored at their run dtype
/// (none on a GPU, where they go) plus the tensor being converted: read and in f32 (twice
/// its f32 bytes; three times when it is quantised, for the quantisation's temporaries).
/// Returns (bytes of all weights as stored, the peak).
pub fn memory_while_loading(cfg: &LlamaConfig, mode: WeightsMode, device: Device) -> (u64, u64) {
    let on_host = device == Device::Cpu;
    let converting = match mode {
        WeightsMode::Dense(_) => 2,
        WeightsMode::Int8 | WeightsMode::Int4 => 3,
    };
    let mut shapes = synthetic::tensor_shapes(cfg);
    if cfg.tie_word_embeddings {
        // The embedding is also stored as the LM head.
        let e = shapes[0].1.clone();
        shapes.insert(1, ("lm_head.weight".into(), e));
    }
    let (mut stored, mut peak, mut largest) = (0u64, 0u64, 0u64);
    for (name, shape) in &shapes {
        let linear = shape.len() == 2 && name != "model.embed_tokens.weight";
        let mut bytes = stored_bytes(shape, linear, mode);
        if name == "lm_head.weight" && mode == WeightsMode::Int4 {
            // An int4 head keeps an int8 copy of itself (see `Llama::refine_top_logits`).
            bytes += stored_bytes(shape, true, WeightsMode::Int8);
        }
        let f32_bytes = shape.iter().product::<i64>().max(0) as u64 * 4;
        largest = largest.max(converting * f32_bytes);
        peak = peak.max(stored.saturating_add(converting * f32_bytes));
        stored = stored.saturating_add(bytes);
    }
    // The RoPE tables: built in f32 (a vector and its tensor), kept in the activation dtype.
    let table = (cfg.max_position_embeddings * cfg.head_dim()) as u64;
    let building = 2 * 2 * table * 4;
    let kept = 2 * table * mode.activation_kind().elt_size_in_bytes() as u64;
    let peak = if on_host {
        peak.max(stored.saturating_add(kept + building))
    } else {
        largest.max(building)
    };
    (stored, peak)
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Llama architecture from GGUF `llama.*` metadata.
pub fn config_from_gguf(g: &GgufFile, file: &str) -> Result<LlamaConfig> {
    let arch = g
        .get_str("general.architecture")
        .with_context(|| file.to_string())?;
    if arch != "llama" {
        bail!("{file}: architecture {arch:?} is not supported (expected \"llama\")");
    }
    let u =
        |k: &str| -> Result<usize> { Ok(g.get_u64(k).with_context(|| file.to_string())? as usize) };
    let heads = u("llama.attention.head_count")?;
    let hidden = u("llama.embedding_length")?;
    let kv = if g.get("llama.attention.head_count_kv").is_some() {
        u("llama.attention.head_count_kv")?
    } else {
        heads
    };
    let vocab = match g.get("llama.vocab_size") {
        Some(_) => u("llama.vocab_size")?,
        None => g
            .tensor("token_embd.weight")
            .and_then(|t| t.dims.get(1).copied())
            .with_context(|| format!("{file}: no llama.vocab_size and no token_embd.weight"))?
            as usize,
    };
    let head_dim = match g.get("llama.rope.dimension_count") {
        Some(_) if heads > 0 && u("llama.rope.dimension_count")? != hidden / heads => {
            Some(u("llama.rope.dimension_count")?)
        }
        _ => None,
    };
    if g.tensor("rope_freqs.weight").is_some() {
        bail!("{file}: per-frequency RoPE factors (rope_freqs.weight, Llama-3.1 GGUF) are not supported yet; use the Hugging Face directory of this model");
    }
    let cfg = LlamaConfig {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: u("llama.feed_forward_length")?,
        num_hidden_layers: u("llama.block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        head_dim,
        rms_norm_eps: g
            .get_f64("llama.attention.layer_norm_rms_epsilon")
            .with_context(|| file.to_string())?,
        rope_theta: if g.get("llama.rope.freq_base").is_some() {
            g.get_f64("llama.rope.freq_base")
                .with_context(|| file.to_string())?
        } else {
            10000.0
        },
        rope_scaling: None,
        max_position_embeddings: u("llama.context_length")?,
        tie_word_embeddings: g.tensor("output.weight").is_none(),
    };
    cfg.validate(file)?;
    // The block count sizes everything built per layer: it must match the blocks whose
    // tensors the file holds, before anything is allocated for them.
    let blocks = g
        .tensors()
        .iter()
        .filter_map(|t| {
            t.name
                .strip_prefix("blk.")?
                .split_once('.')?
                .0
                .parse::<usize>()
                .ok()
        })
        .map(|i| i + 1)
        .max()
        .unwrap_or(0);
    if blocks != cfg.num_hidden_layers {
        bail!(
            "{file}: metadata llama.block_count is {}, but the file holds tensors for {blocks} blocks",
            cfg.num_hidden_layers
        );
    }
    Ok(cfg)
}

/// Hugging Face name of a GGUF tensor, and the head count to un-permute it with (Q and K).
fn hf_name(gguf: &str, cfg: &LlamaConfig) -> Option<(String, Option<usize>)> {
    match gguf {
        "token_embd.weight" => return Some(("model.embed_tokens.weight".into(), None)),
        "output_norm.weight" => return Some(("model.norm.weight".into(), None)),
        "output.weight" => return Some(("lm_head.weight".into(), None)),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, what) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (name, heads) = match what {
        "attn_norm.weight" => ("input_layernorm.weight", None),
        "attn_q.weight" => ("self_attn.q_proj.weight", Some(cfg.num_attention_heads)),
        "attn_k.weight" => ("self_attn.k_proj.weight", Some(cfg.num_key_value_heads)),
        "attn_v.weight" => ("self_attn.v_proj.weight", None),
        "attn_output.weight" => ("self_attn.o_proj.weight", None),
        "ffn_norm.weight" => ("post_attention_layernorm.weight", None),
        "ffn_gate.weight" => ("mlp.gate_proj.weight", None),
        "ffn_up.weight" => ("mlp.up_proj.weight", None),
        "ffn_down.weight" => ("mlp.down_proj.weight", None),
        _ => return None,
    };
    Some((format!("model.layers.{layer}.{name}"), heads))
}

/// Opens a Llama GGUF file: config, tokenizer, and its tensors to be dequantised to f32
/// one at a time (and, for int4, the 4-bit codes of its Q4_0/Q4_1 tensors).
pub fn load_gguf(
    path: &Path,
    card: Option<ModelCard>,
    to: (WeightsMode, Device),
) -> Result<LoadedWeights> {
    let file = path.display().to_string();
    let g = GgufFile::open(path)?;
    let cfg = config_from_gguf(&g, &file)?;
    check_memory(&file, &cfg, to, "", "")?;
    g.check_supported()?;
    let mut names = HashMap::new();
    for (i, t) in g.tensors().iter().enumerate() {
        let (name, heads) = hf_name(&t.name, &cfg)
            .with_context(|| format!("{file}: unexpected tensor {:?} for a Llama model", t.name))?;
        names.insert(name, (i, heads));
    }
    let tokenizer = Tokenizer::from_gguf(&g, &file)?;
    let sha256 = sha256_file(path)?;
    let name = card
        .as_ref()
        .map(|c| c.name.clone())
        .unwrap_or_else(|| file_name(path));
    Ok(LoadedWeights {
        name,
        card,
        config: cfg,
        source: Box::new(GgufSource::new(g, names, to.0 == WeightsMode::Int4)),
        origin: WeightsOrigin::Gguf,
        sha256: Some(sha256),
        path: Some(path.to_path_buf()),
        tokenizer: Some(tokenizer),
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// The parts of a Hugging Face `config.json` this project reads (other keys are ignored:
/// the file belongs to another tool).
#[derive(Debug, Deserialize)]
struct HfConfig {
    #[serde(default)]
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    #[serde(default)]
    rope_scaling: Option<super::config::RopeScaling>,
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10000.0
}

/// Architecture from a Hugging Face `config.json`.
pub fn config_from_hf(path: &Path) -> Result<LlamaConfig> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {file}"))?;
    let hf: HfConfig = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    if let Some(t) = &hf.model_type {
        if t != "llama" && t != "mistral" {
            bail!("{file}: model_type {t:?} is not supported (expected \"llama\")");
        }
    }
    let cfg = LlamaConfig {
        vocab_size: hf.vocab_size,
        hidden_size: hf.hidden_size,
        intermediate_size: hf.intermediate_size,
        num_hidden_layers: hf.num_hidden_layers,
        num_attention_heads: hf.num_attention_heads,
        num_key_value_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
        head_dim: hf.head_dim,
        rms_norm_eps: hf.rms_norm_eps,
        rope_theta: hf.rope_theta,
        rope_scaling: hf.rope_scaling,
        max_position_embeddings: hf.max_position_embeddings,
        tie_word_embeddings: hf.tie_word_embeddings,
    };
    cfg.validate(&file)?;
    Ok(cfg)
}

/// Loads a Hugging Face directory: `config.json`, `tokenizer.json`, and `model.safetensors`
/// or the shards listed in `model.safetensors.index.json`.
pub fn load_hf_dir(dir: &Path, to: (WeightsMode, Device)) -> Result<LoadedWeights> {
    let d = dir.display();
    let need = "expected config.json, tokenizer.json and model.safetensors or model.safetensors.index.json";
    for f in ["config.json", "tokenizer.json"] {
        if !dir.join(f).is_file() {
            bail!("Hugging Face directory {d} has no {f} ({need})");
        }
    }
    let cfg = config_from_hf(&dir.join("config.json"))?;
    check_memory(&d.to_string(), &cfg, to, " (config.json)", "")?;
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<PathBuf> = if single.is_file() {
        vec![single]
    } else if index.is_file() {
        shard_files(&index)?
            .into_iter()
            .map(|f| dir.join(f))
            .collect()
    } else {
        bail!("Hugging Face directory {d} has no model.safetensors nor model.safetensors.index.json ({need})");
    };
    for f in &files {
        if !f.is_file() {
            bail!(
                "{}: shard listed in model.safetensors.index.json is missing",
                f.display()
            );
        }
    }
    let source = SafetensorsSource::open(&files)?;
    let tokenizer = Tokenizer::from_hf_dir(dir)?;
    Ok(LoadedWeights {
        name: file_name(dir),
        card: None,
        config: cfg,
        source: Box::new(source),
        origin: WeightsOrigin::Safetensors,
        sha256: None,
        path: Some(dir.to_path_buf()),
        tokenizer: Some(tokenizer),
    })
}

/// Shard file names from a safetensors index, deduplicated, in first-seen order.
fn shard_files(index: &Path) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    let file = index.display().to_string();
    let text = std::fs::read_to_string(index).with_context(|| format!("cannot read {file}"))?;
    let idx: Index = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    let mut files: Vec<String> = idx.weight_map.into_values().collect();
    files.sort();
    files.dedup();
    if files.iter().any(|f| f.contains('/') || f.contains("..")) {
        bail!("{file}: weight_map must name files in the same directory");
    }
    Ok(files)
}

/// Builds the model on `device` from the opened weights, its linear layers stored as
/// `mode` says (the mode they were opened for), each tensor converted as it is read.
pub fn build_model(
    mut w: LoadedWeights,
    device: Device,
    mode: WeightsMode,
) -> Result<(super::llama::Llama, ModelInfo)> {
    let info = ModelInfo {
        name: w.name.clone(),
        origin: w.origin,
        sha256: w.sha256.clone(),
        path: w.path.clone(),
        card: w.card.clone(),
    };
    let model = super::llama::Llama::build_from(&w.config, w.source.as_mut(), device, mode)?;
    Ok((model, info))
}

/// Refuses, before anything large is read, a model whose weights need more host memory
/// while loading than is available ([`memory_while_loading`]), naming both figures and
/// the weights at their run dtype. `from` says where the shapes came from, if not the file.
fn check_memory(
    subject: &str,
    cfg: &LlamaConfig,
    to: (WeightsMode, Device),
    from: &str,
    hint: &str,
) -> Result<()> {
    let (mode, device) = to;
    let (stored, peak) = memory_while_loading(cfg, mode, device);
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let what = if device == Device::Cpu {
        format!(
            "its {} weights{from} as {} ({:.1} GiB) and a tensor being converted",
            cfg.parameter_count(),
            dtype_name(mode),
            gib(stored)
        )
    } else {
        format!("converting its weights{from} tensor by tensor on the host")
    };
    crate::sysinfo::ensure_memory_for(subject, &what, peak, hint)
}

/// The name of a weights dtype in messages (the `--weights-dtype` spelling).
fn dtype_name(mode: WeightsMode) -> &'static str {
    match mode {
        WeightsMode::Dense(Kind::Float) => "f32",
        WeightsMode::Dense(Kind::BFloat16) => "bf16",
        WeightsMode::Dense(Kind::Half) => "f16",
        WeightsMode::Dense(_) => "dense tensors",
        WeightsMode::Int8 => "int8",
        WeightsMode::Int4 => "int4",
    }
}

/// Provenance of a loaded model, for reports.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub origin: WeightsOrigin,
    pub sha256: Option<String>,
    pub path: Option<PathBuf>,
    pub card: Option<ModelCard>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::source::unpermute_rows;
    use tch::Tensor;

    /// Applying llama.cpp's permutation then ours gives back the original rows.
    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        let heads = 3i64;
        let hd = 4i64;
        let cols = 2i64;
        let w =
            Tensor::arange(heads * hd * cols, (Kind::Float, Device::Cpu)).view([heads * hd, cols]);
        // llama.cpp: reshape(n_head, 2, hd/2, cols).swapaxes(1, 2)
        let permuted = w
            .reshape([heads, 2, hd / 2, cols])
            .transpose(1, 2)
            .reshape([heads * hd, cols]);
        assert!(!permuted.equal(&w));
        assert!(unpermute_rows(&permuted, heads as usize).equal(&w));
    }

    #[test]
    fn hf_config_reads_llama3_scaling_and_ignores_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","vocab_size":128256,"hidden_size":4096,
            "intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,
            "rms_norm_eps":1e-5,"rope_theta":500000.0,"max_position_embeddings":131072,"tie_word_embeddings":false,
            "rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192,"rope_type":"llama3"},
            "torch_dtype":"bfloat16","bos_token_id":128000}"#,
        )
        .unwrap();
        let c = config_from_hf(&p).unwrap();
        assert_eq!(c.num_key_value_heads, 8);
        assert_eq!(c.rope_scaling.unwrap().factor, 8.0);
    }

    #[test]
    fn missing_hf_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let to = (WeightsMode::Dense(Kind::Float), Device::Cpu);
        let e = load_hf_dir(dir.path(), to).err().unwrap().to_string();
        assert!(e.contains("has no tokenizer.json"), "{e}");
    }
}
