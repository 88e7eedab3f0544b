//! `--neuron-config PATH`: the compile settings of a Neuron-compiled model read from the
//! files its framework saved beside the artifacts, turned into this project's compile flags.
//!
//! Three formats, told apart by content (names and defaults from each project's source):
//! * **NxD Inference** `neuron_config.json`: `InferenceConfig.save` writes
//!   `to_dict(self)` with sorted keys, i.e. the Hugging Face attributes at the top level
//!   (`load_pretrained_config`, `utils/hf_adapter.py`) and the `NeuronConfig` attributes
//!   under `neuron_config` (`tp_degree`, `batch_size`, `ctx_batch_size`, `tkg_batch_size`,
//!   `seq_len`, `max_context_length`, `enable_bucketing`, `context_encoding_buckets`,
//!   `token_generation_buckets`, `torch_dtype`, `quantized`, `logical_nc_config`, …)
//!   (aws-neuron/neuronx-distributed-inference `src/neuronx_distributed_inference/models/config.py`,
//!   commit c63afe02, 2026-04-09). Default buckets: `generate_buckets(128, max)`, powers of
//!   two from 128 with the last one the maximum (`modules/autobucketing.py`, commit cd3abf30,
//!   2026-03-11).
//! * **optimum-neuron** `neuron_config.json` (its NxD backend): `NxDNeuronConfig` serialised
//!   flat by `NeuronConfig.to_dict`, with `_serialized_key`, `optimum_neuron_version`,
//!   `batch_size`, `sequence_length`, `tp_degree`, `target`, `continuous_batching`, … ;
//!   `ctx_batch_size` is 1 with continuous batching else `batch_size`, and
//!   `logical_nc_config` is 2 for `target == "trn2"` else 1 (properties, not saved)
//!   (huggingface/optimum-neuron `optimum/neuron/models/inference/backend/config.py` and
//!   `optimum/neuron/configuration_utils.py`, commit 023a837f, 2026-03-26). It does not
//!   bucket: prompts are padded to `max_context_length` and one token-generation graph
//!   covers `sequence_length` (`modules/decoder/decoder_wrappers.py`
//!   `_pad_to_max_context_length`, commit 4a695bee, 2026-03-13).
//! * **optimum-neuron `config.json` with a `neuron` section** (its transformers-neuronx
//!   exports): `get_export_config` adds `neuron = {batch_size, num_cores, auto_cast_type,
//!   sequence_length, compiler_type, compiler_version, checkpoint_id, checkpoint_revision}`
//!   to the model's `config.json` (`optimum/neuron/modeling_decoder.py`, commit e4dea286,
//!   2025-04-14).
//!
//! These are foreign formats whose fields grow with every release, so the raw read ignores
//! fields it does not know instead of refusing them; the fields that change latency but are
//! not modelled are listed as warnings when set.

use super::dtype::WeightsDtype;
use super::profile::{DeviceKind, Instance, Profile};
use super::setting::{Setting, SettingError};
use crate::model::card::{self, ModelCard};
use crate::model::hf_config;
use crate::output::Format;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file NxD Inference and optimum-neuron save in a compiled model's directory.
pub const NEURON_CONFIG_FILE: &str = "neuron_config.json";

/// Which framework wrote the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// NxD Inference `InferenceConfig` (`neuron_config` object).
    NxdInference,
    /// optimum-neuron `NxDNeuronConfig` (flat, `_serialized_key`).
    OptimumNeuron,
    /// optimum-neuron `config.json` with a `neuron` section (transformers-neuronx exports).
    OptimumNeuronConfigJson,
}

impl Family {
    /// The name shown in output and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Family::NxdInference => "nxd-inference",
            Family::OptimumNeuron => "optimum-neuron",
            Family::OptimumNeuronConfigJson => "optimum-neuron-config-json",
        }
    }
}

/// A validated Neuron compile configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NeuronConfig {
    /// The file read.
    pub path: PathBuf,
    pub family: Family,
    pub tp_degree: u32,
    /// Expert-parallel degree of the routed experts inside the TP group (NxD Inference
    /// `moe_ep_degree`, optimum-neuron `ep_degree`); `None` when the file does not set one.
    pub ep_degree: Option<u32>,
    /// Logical NeuronCore config: physical NeuronCores per TP rank; `None` when the file
    /// does not say (then the instance's own is assumed).
    pub lnc: Option<u32>,
    /// The compile target (`trn2`, `inf2`, …) where the file names one.
    pub target: Option<String>,
    /// Compiled batch of the token-generation graph (the continuous-batching slots).
    pub batch_size: u32,
    /// Prompts per context-encoding call, where the file gives or implies it.
    pub ctx_batch_size: Option<u32>,
    /// Compiled positions.
    pub seq_len: u32,
    /// Longest prompt the context-encoding graph takes.
    pub max_context_length: u32,
    /// Context-encoding buckets as the step model takes them (`--buckets`), where the
    /// file gives or implies them.
    pub buckets: Option<Vec<u32>>,
    pub dtype: Option<WeightsDtype>,
    /// Settings that change latency and are not modelled, one line each.
    pub warnings: Vec<String>,
    /// Where the architecture can be read: the directory's `config.json`, or the file
    /// itself when it carries the Hugging Face attributes.
    pub model_config: Option<PathBuf>,
}

/// One JSON object with errors that name the file and the field.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    file: &'a str,
    prefix: &'a str,
}

impl<'a> Obj<'a> {
    fn get(&self, k: &str) -> Option<&'a Value> {
        self.map.get(k).filter(|v| !v.is_null())
    }

    fn opt_u32(&self, k: &str) -> Result<Option<u32>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => match v.as_u64().and_then(|x| u32::try_from(x).ok()) {
                Some(x) if x > 0 => Ok(Some(x)),
                _ => bail!(
                    "{}: field `{}{k}` is {v}: expected a positive integer",
                    self.file,
                    self.prefix
                ),
            },
        }
    }

    fn req_u32(&self, k: &str) -> Result<u32> {
        match self.opt_u32(k)? {
            Some(v) => Ok(v),
            None => bail!(
                "{}: required field `{}{k}` is missing",
                self.file,
                self.prefix
            ),
        }
    }

    fn opt_bool(&self, k: &str) -> Result<Option<bool>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => bail!(
                "{}: field `{}{k}` is {v}: expected true or false",
                self.file,
                self.prefix
            ),
        }
    }

    fn opt_str(&self, k: &str) -> Result<Option<&'a str>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => bail!(
                "{}: field `{}{k}` is {v}: expected a string",
                self.file,
                self.prefix
            ),
        }
    }

    fn opt_list(&self, k: &str) -> Result<Option<Vec<u32>>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Array(a)) => {
                let mut out = Vec::new();
                for v in a {
                    match v.as_u64().and_then(|x| u32::try_from(x).ok()) {
                        Some(x) if x > 0 => out.push(x),
                        _ => bail!(
                            "{}: field `{}{k}` holds {v}: expected positive token counts",
                            self.file,
                            self.prefix
                        ),
                    }
                }
                if out.is_empty() {
                    return Ok(None);
                }
                out.sort_unstable();
                out.dedup();
                Ok(Some(out))
            }
            Some(v) => bail!(
                "{}: field `{}{k}` is {v}: expected a list of token counts",
                self.file,
                self.prefix
            ),
        }
    }

    /// Whether `k` is set to something other than its default (absent, null, false, 0,
    /// empty): a feature turned on.
    fn on(&self, k: &str) -> bool {
        match self.get(k) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64().is_some_and(|x| x != 0.0),
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(_)) => true,
            Some(Value::Null) => false,
        }
    }

    /// A number above 1 (parallel degrees).
    fn above_one(&self, k: &str) -> Option<u64> {
        self.get(k).and_then(|v| v.as_u64()).filter(|&x| x > 1)
    }
}

/// NxD Inference's default buckets: powers of two from `min` below `max`, then `max`
/// (`generate_buckets`, `modules/autobucketing.py`: `range(log2(min), round(log2(max)))`).
pub fn nxdi_buckets(min: u32, max: u32) -> Vec<u32> {
    if min >= max {
        return vec![max];
    }
    let lo = min.max(1).ilog2();
    let hi = (max as f64).log2().round() as u32;
    let mut out: Vec<u32> = (lo..hi).map(|i| 1u32 << i).filter(|&b| b < max).collect();
    out.push(max);
    out
}

/// The step model decodes over the context buckets plus `seq_len`: says so when the
/// compiled token-generation buckets differ.
fn tkg_warning(ctx: &[u32], tkg: &[u32], seq_len: u32) -> Option<String> {
    let mut modelled = ctx.to_vec();
    if modelled.last().is_none_or(|&l| l < seq_len) {
        modelled.push(seq_len);
    }
    (modelled != tkg).then(|| {
        format!(
            "token-generation buckets {tkg:?} are modelled as {modelled:?} (the context-encoding buckets plus seq_len)"
        )
    })
}

/// Maps a `torch_dtype` string (`bfloat16`, `float16`, `float32`, `float8_e4m3fn`, …).
fn torch_dtype(s: &str) -> Option<WeightsDtype> {
    match s.trim_start_matches("torch.") {
        "bfloat16" => Some(WeightsDtype::Bf16),
        "float16" => Some(WeightsDtype::Fp16),
        "float32" => Some(WeightsDtype::Fp32),
        x if x.starts_with("float8") => Some(WeightsDtype::Fp8),
        _ => None,
    }
}

/// Reads `path`: a compiled model's directory (its `neuron_config.json`, else its
/// `config.json` with a `neuron` section) or one of those files.
pub fn read(path: &Path) -> Result<NeuronConfig> {
    let file = if path.is_dir() {
        let nc = path.join(NEURON_CONFIG_FILE);
        let cj = path.join("config.json");
        if nc.is_file() {
            nc
        } else if cj.is_file() {
            cj
        } else {
            bail!(SettingError::new(
                Setting::NeuronConfig,
                format!(
                    " {}: the directory holds neither {NEURON_CONFIG_FILE} nor config.json",
                    path.display()
                )
            ));
        }
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        SettingError::new(
            Setting::NeuronConfig,
            format!(": cannot read {}: {e}", file.display()),
        )
    })?;
    parse(&text, &file)
}

/// Interprets the text of a Neuron config file; `path` names it in errors and locates the
/// `config.json` beside it.
pub fn parse(text: &str, path: &Path) -> Result<NeuronConfig> {
    let file = path.display().to_string();
    let root: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| anyhow::anyhow!("{file}: not valid JSON: {e}"))?;
    let Some(top) = root.as_object() else {
        bail!("{file}: expected a JSON object");
    };
    let top = Obj {
        map: top,
        file: &file,
        prefix: "",
    };
    let beside = path
        .parent()
        .map(|d| d.join("config.json"))
        .filter(|p| p.is_file() && p.as_path() != path);
    let mut c = if let Some(Value::Object(nc)) = top.get("neuron_config") {
        let o = Obj {
            map: nc,
            file: &file,
            prefix: "neuron_config.",
        };
        let mut c = nxdi(&o)?;
        if top.on("fused_spec_config") {
            c.warnings.push(
                "fused_spec_config is set (fused speculative decoding with a draft model): not modelled, the projection is for plain decoding".into(),
            );
        }
        let own = top.get("model_type").is_some().then(|| path.to_path_buf());
        c.model_config = beside.or(own);
        c
    } else if top.get("_serialized_key").is_some() || top.get("optimum_neuron_version").is_some() {
        let mut c = optimum(&top)?;
        c.model_config = beside;
        c
    } else if let Some(Value::Object(n)) = top.get("neuron") {
        let o = Obj {
            map: n,
            file: &file,
            prefix: "neuron.",
        };
        let mut c = optimum_config_json(&o)?;
        c.model_config = top
            .get("model_type")
            .is_some()
            .then(|| path.to_path_buf())
            .or(beside);
        c
    } else {
        bail!(
            "{file}: not a Neuron compile configuration: expected an NxD Inference {NEURON_CONFIG_FILE} (field `neuron_config`), an optimum-neuron {NEURON_CONFIG_FILE} (field `_serialized_key`) or an optimum-neuron config.json (field `neuron`)"
        );
    };
    c.path = path.to_path_buf();
    check(&c, &file)?;
    Ok(c)
}

fn check(c: &NeuronConfig, file: &str) -> Result<()> {
    let field = |nxdi: &str, other: &str| match c.family {
        Family::NxdInference => format!("neuron_config.{nxdi}"),
        Family::OptimumNeuron => other.to_string(),
        Family::OptimumNeuronConfigJson => format!("neuron.{other}"),
    };
    if c.max_context_length > c.seq_len {
        bail!(
            "{file}: field `{}` is {}, more than `{}` {}",
            field("max_context_length", "max_context_length"),
            c.max_context_length,
            field("seq_len", "sequence_length"),
            c.seq_len
        );
    }
    if let Some(b) = &c.buckets {
        if b.last().is_some_and(|&l| l > c.seq_len) {
            bail!(
                "{file}: field `{}` ends at {}, more than `{}` {}",
                field("context_encoding_buckets", "buckets"),
                b.last().copied().unwrap_or(0),
                field("seq_len", "sequence_length"),
                c.seq_len
            );
        }
    }
    Ok(())
}

fn nxdi(o: &Obj) -> Result<NeuronConfig> {
    let tp = o.req_u32("tp_degree")?;
    let batch = o.req_u32("batch_size")?;
    let seq_len = o.req_u32("seq_len")?;
    let tkg = o.opt_u32("tkg_batch_size")?.unwrap_or(batch);
    let ctx = o.opt_u32("ctx_batch_size")?.unwrap_or(batch);
    let mcl = o.opt_u32("max_context_length")?.unwrap_or(seq_len);
    let bucketing = o.opt_bool("enable_bucketing")?.unwrap_or(false);
    let ctx_b = o.opt_list("context_encoding_buckets")?;
    let tkg_b = o.opt_list("token_generation_buckets")?;
    let mut warnings = Vec::new();
    // What NxD Inference compiles (autobucketing.py): one bucket each without bucketing.
    let (ctx_buckets, tkg_buckets) = if bucketing {
        (
            ctx_b.unwrap_or_else(|| nxdi_buckets(128, mcl)),
            tkg_b.unwrap_or_else(|| nxdi_buckets(128, seq_len)),
        )
    } else {
        (vec![mcl], vec![seq_len])
    };
    warnings.extend(tkg_warning(&ctx_buckets, &tkg_buckets, seq_len));
    if tkg != batch {
        warnings.push(format!(
            "tkg_batch_size {tkg} differs from batch_size {batch}: the token-generation batch is used"
        ));
    }
    let dtype = match o.opt_str("torch_dtype")? {
        None => None,
        Some(s) => Some(torch_dtype(s).with_context(|| {
            format!(
                "{}: field `neuron_config.torch_dtype` is {s:?}: expected bfloat16, float16, float32 or float8_*",
                o.file
            )
        })?),
    };
    // Weight quantisation sets the stored dtype (quantization_dtype `int8` or `f8e4m3`).
    let dtype = if o.opt_bool("quantized")?.unwrap_or(false) {
        match o.opt_str("quantization_dtype")?.unwrap_or("int8") {
            "int8" => Some(WeightsDtype::Int8),
            q if q.starts_with("f8") || q.starts_with("float8") => Some(WeightsDtype::Fp8),
            q => {
                warnings.push(format!(
                    "quantized weights of quantization_dtype {q:?}: not a modelled dtype, projected as {}",
                    dtype.unwrap_or(WeightsDtype::Bf16).name()
                ));
                dtype
            }
        }
    } else {
        dtype
    };
    let unmodelled: &[(&str, &str)] = &[
        ("enable_fused_speculation", "fused speculative decoding"),
        ("enable_eagle_speculation", "EAGLE speculative decoding"),
        ("speculation_length", "speculative decoding"),
        ("is_medusa", "Medusa speculative decoding"),
        ("async_mode", "asynchronous execution"),
        ("on_device_sampling_config", "on-device sampling"),
        ("kv_cache_quant", "quantised KV cache"),
        ("kv_quant_config", "quantised KV cache"),
        ("flash_decoding_enabled", "flash decoding"),
        ("is_prefix_caching", "prefix caching"),
        ("chunked_prefill_config", "chunked prefill"),
        ("is_block_kv_layout", "block (paged) KV cache"),
        ("token_generation_batches", "token-generation batch buckets"),
        (
            "windowed_context_encoding_size",
            "windowed context encoding",
        ),
        ("sequence_parallel_enabled", "sequence parallelism"),
        ("lora_config", "LoRA serving"),
    ];
    let mut seen = Vec::new();
    for (k, what) in unmodelled {
        if o.on(k) && !seen.contains(what) {
            seen.push(*what);
            warnings.push(format!("{what} ({k}) changes latency and is not modelled"));
        }
    }
    for k in ["cp_degree", "attention_dp_degree", "pp_degree"] {
        if let Some(d) = o.above_one(k) {
            warnings.push(format!(
                "{k} {d} changes latency and is not modelled (tensor and expert parallelism only)"
            ));
        }
    }
    // MoENeuronConfig: the routed experts over `moe_ep_degree` groups of `moe_tp_degree`
    // ranks each (NxD Inference model card for Qwen3-235B-A22B: tp_degree 64 = moe_tp_degree
    // 2 × moe_ep_degree 32).
    // A degree of 1 is the default (every expert TP-sharded), as if not set.
    let ep = match o.opt_u32("moe_ep_degree")? {
        Some(e) => Some(e),
        None => o.opt_u32("ep_degree")?,
    }
    .filter(|&e| e > 1);
    if let (Some(e), Some(m)) = (ep, o.opt_u32("moe_tp_degree")?) {
        if e.saturating_mul(m) != tp {
            warnings.push(format!(
                "moe_tp_degree {m} × moe_ep_degree {e} differs from tp_degree {tp}: projected with the experts over {e} groups of {} ranks (tp_degree / moe_ep_degree)",
                tp / e.max(1)
            ));
        }
    }
    let kernels: Vec<&str> = [
        "attn_kernel_enabled",
        "qkv_kernel_enabled",
        "mlp_kernel_enabled",
        "attn_tkg_nki_kernel_enabled",
        "attn_block_tkg_nki_kernel_enabled",
        "mlp_tkg_nki_kernel_enabled",
        "out_proj_kernel_enabled",
    ]
    .into_iter()
    .filter(|k| o.on(k))
    .collect();
    if !kernels.is_empty() {
        warnings.push(format!(
            "NKI kernels ({}) change latency; the profile's efficiencies do not depend on them",
            kernels.join(", ")
        ));
    }
    Ok(NeuronConfig {
        ep_degree: ep,
        path: PathBuf::new(),
        family: Family::NxdInference,
        tp_degree: tp,
        lnc: o.opt_u32("logical_nc_config")?,
        target: o.opt_str("target")?.map(String::from),
        batch_size: tkg,
        ctx_batch_size: Some(ctx),
        seq_len,
        max_context_length: mcl,
        buckets: Some(ctx_buckets),
        dtype,
        warnings,
        model_config: None,
    })
}

fn optimum(o: &Obj) -> Result<NeuronConfig> {
    let tp = o.req_u32("tp_degree")?;
    let batch = o.req_u32("batch_size")?;
    let seq_len = o.req_u32("sequence_length")?;
    let mcl = o.opt_u32("max_context_length")?.unwrap_or(seq_len);
    let cb = o.opt_bool("continuous_batching")?.unwrap_or(false);
    let target = o.opt_str("target")?.map(String::from);
    let dtype = match o.opt_str("torch_dtype")? {
        None => None,
        Some(s) => Some(torch_dtype(s).with_context(|| {
            format!(
                "{}: field `torch_dtype` is {s:?}: expected bfloat16, float16, float32 or float8_*",
                o.file
            )
        })?),
    };
    // No bucketing in the optimum-neuron NxD backend: prompts are padded to
    // max_context_length (`_pad_to_max_context_length`, decoder_wrappers.py) and one
    // token-generation graph covers sequence_length (modeling_decoder.py).
    let mut warnings: Vec<String> = tkg_warning(&[mcl], &[seq_len], seq_len)
        .into_iter()
        .collect();
    for (k, what) in [
        ("speculation_length", "speculative decoding"),
        ("on_device_sampling", "on-device sampling"),
        ("prefill_chunk_size", "chunked prefill"),
    ] {
        if o.on(k) {
            warnings.push(format!("{what} ({k}) changes latency and is not modelled"));
        }
    }
    if let Some(d) = o.above_one("pp_degree") {
        warnings.push(format!(
            "pp_degree {d} changes latency and is not modelled (tensor and expert parallelism only)"
        ));
    }
    let ep = o.opt_u32("ep_degree")?.filter(|&e| e > 1);
    Ok(NeuronConfig {
        ep_degree: ep,
        path: PathBuf::new(),
        family: Family::OptimumNeuron,
        tp_degree: tp,
        // `logical_nc_config` property of NxDNeuronConfig.
        lnc: Some(if target.as_deref() == Some("trn2") {
            2
        } else {
            1
        }),
        target,
        batch_size: o.opt_u32("max_batch_size")?.unwrap_or(batch).max(batch),
        // `ctx_batch_size` property of NxDNeuronConfig.
        ctx_batch_size: Some(if cb { 1 } else { batch }),
        seq_len,
        max_context_length: mcl,
        buckets: Some(vec![mcl]),
        dtype,
        warnings,
        model_config: None,
    })
}

fn optimum_config_json(o: &Obj) -> Result<NeuronConfig> {
    let tp = o.req_u32("num_cores")?;
    let batch = o.req_u32("batch_size")?;
    let seq_len = o.req_u32("sequence_length")?;
    let dtype = match o.opt_str("auto_cast_type")? {
        None => None,
        Some(s) => Some(match s {
            "bf16" => WeightsDtype::Bf16,
            "fp16" => WeightsDtype::Fp16,
            "fp32" | "tf32" => WeightsDtype::Fp32,
            other => bail!(
                "{}: field `neuron.auto_cast_type` is {other:?}: expected bf16, fp16, fp32 or tf32",
                o.file
            ),
        }),
    };
    Ok(NeuronConfig {
        ep_degree: None,
        path: PathBuf::new(),
        family: Family::OptimumNeuronConfigJson,
        tp_degree: tp,
        // transformers-neuronx ran on inf2 and trn1, where a NeuronCore is one rank.
        lnc: Some(1),
        target: None,
        batch_size: batch,
        ctx_batch_size: None,
        seq_len,
        max_context_length: seq_len,
        buckets: None,
        dtype,
        warnings: Vec::new(),
        model_config: None,
    })
}

/// Values given explicitly on the command line; `None` where the flag was not given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Explicit {
    pub tp: Option<u32>,
    pub ep_degree: Option<u32>,
    /// `--batch` (`project`, `compare`).
    pub batch: Option<u32>,
    pub max_num_seqs: Option<u32>,
    pub ctx_batch_size: Option<u32>,
    pub seq_len: Option<u32>,
    pub buckets: Option<Vec<u32>>,
    pub weights_dtype: Option<WeightsDtype>,
}

/// A flag whose explicit value won over the file's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overridden {
    pub file: Value,
    pub flag: Value,
}

/// A chosen instance that cannot hold the compiled configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotHeld {
    pub profile: String,
    pub instance: String,
    pub reason: String,
    /// Instances of the chosen profiles that hold it.
    pub would_fit: Vec<String>,
    /// The largest TP degree this instance runs, to recompile for it.
    pub recompile_tp: Option<u32>,
}

impl NotHeld {
    /// "reason; fits: …; recompiled at TP n it would run here".
    pub fn line(&self) -> String {
        let mut s = self.reason.clone();
        if self.would_fit.is_empty() {
            s.push_str("; no chosen instance holds it");
        } else {
            s.push_str(&format!("; fits: {}", self.would_fit.join(", ")));
        }
        if let Some(t) = self.recompile_tp {
            s.push_str(&format!("; recompiled at tp_degree {t} it would run here"));
        }
        s
    }
}

/// What `--neuron-config` did to a command: the JSON `neuron_config` object and the note
/// lines of the text formats.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    pub path: String,
    pub format: String,
    /// Flag (JSON spelling) → value taken from the file.
    pub applied: BTreeMap<String, Value>,
    /// Flags given explicitly that won over the file.
    pub overridden: BTreeMap<String, Overridden>,
    /// Settings the command cannot take (with why).
    pub not_applied: BTreeMap<String, String>,
    pub warnings: Vec<String>,
    /// Chosen instances that cannot hold the configuration.
    pub not_held: Vec<NotHeld>,
}

/// The compile settings a command runs with: the file's, with explicit flags winning.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub tp: Option<u32>,
    pub ep_degree: Option<u32>,
    pub batch: Option<u32>,
    pub max_num_seqs: Option<u32>,
    pub ctx_batch_size: Option<u32>,
    pub seq_len: Option<u32>,
    pub buckets: Option<Vec<u32>>,
    pub weights_dtype: Option<WeightsDtype>,
    /// The LNC the TP degree was compiled at: the file's, unless `--tp` was given.
    pub lnc: Option<u32>,
    pub report: Option<Applied>,
}

impl Settings {
    /// No file: the explicit flags as they are.
    pub fn plain(e: &Explicit) -> Self {
        Settings {
            tp: e.tp,
            ep_degree: e.ep_degree,
            batch: e.batch,
            max_num_seqs: e.max_num_seqs,
            ctx_batch_size: e.ctx_batch_size,
            seq_len: e.seq_len,
            buckets: e.buckets.clone(),
            weights_dtype: e.weights_dtype,
            lnc: None,
            report: None,
        }
    }

    /// Records that `flags` are not taken by this command (`why`), dropping their values.
    pub fn not_taken(&mut self, flags: &[&str], why: &str) {
        let Some(r) = &mut self.report else { return };
        for f in flags {
            if let Some(v) = r.applied.remove(*f) {
                r.not_applied
                    .insert(f.to_string(), format!("{v} from the file not used: {why}"));
            }
            match *f {
                "batch" => self.batch = None,
                "ctx_batch_size" => self.ctx_batch_size = None,
                "seq_len" => self.seq_len = None,
                "buckets" => self.buckets = None,
                "max_num_seqs" => self.max_num_seqs = None,
                _ => {}
            }
        }
    }
}

/// The settings of `cfg` with the explicit flags `e` winning; `batch` is set only for the
/// commands that take `--batch` (`takes_batch`).
pub fn resolve(cfg: &NeuronConfig, e: &Explicit, takes_batch: bool) -> Settings {
    let mut applied = BTreeMap::new();
    let mut overridden = BTreeMap::new();
    fn pick<T: Clone + Serialize>(
        name: &str,
        file: Option<T>,
        flag: Option<T>,
        applied: &mut BTreeMap<String, Value>,
        overridden: &mut BTreeMap<String, Overridden>,
    ) -> Option<T> {
        let j = |v: &T| serde_json::to_value(v).unwrap_or(Value::Null);
        match (file, flag) {
            (Some(f), Some(x)) => {
                if j(&f) != j(&x) {
                    overridden.insert(
                        name.to_string(),
                        Overridden {
                            file: j(&f),
                            flag: j(&x),
                        },
                    );
                }
                Some(x)
            }
            (Some(f), None) => {
                applied.insert(name.to_string(), j(&f));
                Some(f)
            }
            (None, x) => x,
        }
    }
    let (a, o) = (&mut applied, &mut overridden);
    let tp = pick("tp", Some(cfg.tp_degree), e.tp, a, o);
    let ep_degree = pick("ep_degree", cfg.ep_degree, e.ep_degree, a, o);
    let batch = if takes_batch {
        pick("batch", Some(cfg.batch_size), e.batch, a, o)
    } else {
        e.batch
    };
    let max_num_seqs = pick("max_num_seqs", Some(cfg.batch_size), e.max_num_seqs, a, o);
    let ctx = pick("ctx_batch_size", cfg.ctx_batch_size, e.ctx_batch_size, a, o);
    let seq_len = pick("seq_len", Some(cfg.seq_len), e.seq_len, a, o);
    let buckets = pick("buckets", cfg.buckets.clone(), e.buckets.clone(), a, o);
    let dtype = pick("weights_dtype", cfg.dtype, e.weights_dtype, a, o);
    Settings {
        tp,
        ep_degree,
        batch,
        max_num_seqs,
        ctx_batch_size: ctx,
        seq_len,
        buckets,
        weights_dtype: dtype,
        lnc: if e.tp.is_some() { None } else { cfg.lnc },
        report: Some(Applied {
            path: cfg.path.display().to_string(),
            format: cfg.family.name().to_string(),
            applied,
            overridden,
            not_applied: BTreeMap::new(),
            warnings: cfg.warnings.clone(),
            not_held: Vec::new(),
        }),
    }
}

/// Logical NeuronCore config a Neuron profile models: physical NeuronCores per TP unit
/// (trn2 and trn3: 8 cores, 4 units per chip, LNC 2; inf2 and trn1: 1).
pub fn profile_lnc(p: &Profile) -> u32 {
    (p.chip.cores / p.runtime.tp_units_per_chip.max(1)).max(1)
}

/// Why `inst` of `p` cannot hold TP `tp` compiled at LNC `lnc` with `dp` replicas; `None`
/// when it can.
pub fn why_not_held(
    p: &Profile,
    inst: &Instance,
    tp: u32,
    lnc: Option<u32>,
    dp: u32,
) -> Option<String> {
    if p.kind != DeviceKind::Neuron {
        return Some(format!(
            "a Neuron-compiled configuration runs on Neuron instances only ({} is not one)",
            p.name
        ));
    }
    let plnc = profile_lnc(p);
    if let Some(l) = lnc.filter(|&l| l != plnc) {
        return Some(format!(
            "compiled at logical_nc_config {l}; {} models LNC {plnc}",
            p.name
        ));
    }
    if !p.runtime.tp_degrees.contains(&tp) {
        return Some(format!(
            "tp_degree {tp} is not a degree {} runs (it allows {:?})",
            p.name, p.runtime.tp_degrees
        ));
    }
    let units = p.units(inst);
    let need = tp as u64 * dp.max(1) as u64;
    if need > units as u64 {
        let chips = need.div_ceil(p.runtime.tp_units_per_chip.max(1) as u64);
        return Some(format!(
            "tp_degree {tp}{} at LNC {plnc} needs {chips} chip(s), {need} × {}; {} has {} chip(s), {units}",
            if dp > 1 {
                format!(" × {dp} replicas")
            } else {
                String::new()
            },
            p.runtime.tp_unit,
            inst.name,
            inst.accelerators
        ));
    }
    None
}

/// Splits the instances of `profiles` into those that hold the configuration (the
/// profiles returned, each keeping only them) and those that do not (with why and what
/// would fit).
///
/// Profiles that are not Neuron ones (GPU, host) are left out whole: their names are the
/// third value.
pub fn split_profiles(
    profiles: &[Profile],
    tp: u32,
    lnc: Option<u32>,
    dp: u32,
) -> (Vec<Profile>, Vec<NotHeld>, Vec<String>) {
    let mut kept = Vec::new();
    let mut out = Vec::new();
    let mut fits = Vec::new();
    let mut other = Vec::new();
    for p in profiles {
        if p.kind != DeviceKind::Neuron {
            other.push(p.name.clone());
            continue;
        }
        let mut q = p.clone();
        q.instances.clear();
        for inst in &p.instances {
            match why_not_held(p, inst, tp, lnc, dp) {
                None => {
                    fits.push(format!("{} ({})", inst.name, p.name));
                    q.instances.push(inst.clone());
                }
                Some(reason) => out.push(NotHeld {
                    profile: p.name.clone(),
                    instance: inst.name.clone(),
                    reason,
                    would_fit: Vec::new(),
                    recompile_tp: Some(super::project::natural_tp_for(p, inst, dp)),
                }),
            }
        }
        if !q.instances.is_empty() {
            kept.push(q);
        }
    }
    for n in &mut out {
        n.would_fit = fits.clone();
    }
    (kept, out, other)
}

/// Reads `--neuron-config PATH` when it is given.
pub fn read_opt(path: Option<&Path>) -> Result<Option<NeuronConfig>> {
    path.map(read).transpose()
}

/// The settings a command runs with: the file's with explicit flags winning, or the
/// flags alone without a file.
pub fn settings(cfg: Option<&NeuronConfig>, e: &Explicit, takes_batch: bool) -> Settings {
    match cfg {
        Some(c) => resolve(c, e, takes_batch),
        None => Settings::plain(e),
    }
}

/// The model card: `--model` when given, else the architecture saved with the compiled
/// model (`config.json` beside the file, or the file's own Hugging Face attributes).
pub fn model_card(
    models_dir: &Path,
    model: Option<&str>,
    cfg: Option<&NeuronConfig>,
) -> Result<ModelCard> {
    if let Some(m) = model {
        return card::find(models_dir, m);
    }
    let Some(c) = cfg else {
        bail!(SettingError::new(
            Setting::Model,
            " is required (a model card, a config.json or a directory holding one)"
        ));
    };
    let Some(src) = &c.model_config else {
        bail!(SettingError::text(format!(
            "{}: no config.json beside it and no model attributes in it: give ",
            c.path.display()
        ))
        .then(Setting::Model, ""));
    };
    let mut card = ModelCard::from_hf(hf_config::read(src)?);
    // NxD Inference's own file: name the card after the compiled model's directory.
    if src.file_name().and_then(|n| n.to_str()) == Some(NEURON_CONFIG_FILE) {
        if let Some(d) = src
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|d| d.to_str())
        {
            card.name = d.to_string();
        }
    }
    Ok(card)
}

/// Keeps the instances of `profiles` that hold the configuration of `s` (TP `s.tp`, at
/// `dp` replicas), recording the others in its report; the profiles unchanged without a
/// file. `instance` (`--instance`) must hold it.
pub fn hold(
    profiles: Vec<Profile>,
    s: &mut Settings,
    dp: u32,
    instance: Option<&str>,
) -> Result<Vec<Profile>> {
    let (Some(report), Some(tp)) = (&mut s.report, s.tp) else {
        return Ok(profiles);
    };
    let (kept, mut not_held, other) = split_profiles(&profiles, tp, s.lnc, dp);
    if let Some(name) = instance {
        if let Some(p) = profiles.iter().find(|p| {
            p.kind != DeviceKind::Neuron
                && p.instances
                    .iter()
                    .any(|i| i.name.eq_ignore_ascii_case(name))
        }) {
            bail!(SettingError::new(
                Setting::Instance,
                format!(
                    " {name} is in {}: a Neuron-compiled configuration runs on Neuron instances only",
                    p.name
                )
            ));
        }
    }
    if !other.is_empty() {
        report.warnings.push(format!(
            "left out: {} (a Neuron-compiled configuration runs on Neuron instances only)",
            other.join(", ")
        ));
    }
    if let Some(name) = instance {
        if let Some(n) = not_held
            .iter()
            .find(|n| n.instance.eq_ignore_ascii_case(name))
        {
            bail!(SettingError::new(
                Setting::Instance,
                format!(
                    " {name} cannot hold the configuration of {}: {}",
                    report.path,
                    n.line()
                )
            ));
        }
        not_held.clear();
    }
    if kept.is_empty() && not_held.is_empty() {
        bail!(SettingError::new(
            Setting::NeuronConfig,
            format!(
                ": {} not Neuron profiles: a Neuron-compiled configuration runs on Neuron instances only",
                other.join(", ")
            )
        ));
    }
    if kept.is_empty() {
        bail!(none_held(tp, s.lnc, &not_held));
    }
    report.not_held = not_held;
    Ok(kept)
}

/// [`Applied::attach`] for a command's `--format`, when a file was read.
pub fn attach(report: Option<&Applied>, format: Format, out: Vec<u8>) -> Vec<u8> {
    match report {
        Some(r) => r.attach(format == Format::Json, format == Format::Csv, out),
        None => out,
    }
}

/// One error line when no chosen instance holds the configuration.
pub fn none_held(tp: u32, lnc: Option<u32>, not_held: &[NotHeld]) -> SettingError {
    let lines: Vec<String> = not_held
        .iter()
        .take(4)
        .map(|n| format!("{}: {}", n.instance, n.reason))
        .collect();
    SettingError::new(
        Setting::NeuronConfig,
        format!(
            ": no chosen instance holds tp_degree {tp}{}: {}{}",
            lnc.map_or(String::new(), |l| format!(" at LNC {l}")),
            lines.join("; "),
            if not_held.len() > 4 { "; …" } else { "" }
        ),
    )
}

impl Applied {
    /// The value the file set for the setting `key` (`seq_len`), as typed on a command
    /// line; `None` when the file did not set it or a flag won.
    pub fn file_value(&self, key: &str) -> Option<String> {
        self.applied.get(key).map(flag_value)
    }

    /// The note lines of the text formats.
    pub fn text(&self) -> String {
        let mut s = format!("Neuron config: {} ({})\n", self.path, self.format);
        let kv = |m: &BTreeMap<String, Value>| {
            m.iter()
                .map(|(k, v)| format!("--{} {}", k.replace('_', "-"), flag_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.applied.is_empty() {
            s.push_str(&format!("  from the file: {}\n", kv(&self.applied)));
        }
        for (k, o) in &self.overridden {
            s.push_str(&format!(
                "  --{} {} given: wins over the file's {}\n",
                k.replace('_', "-"),
                flag_value(&o.flag),
                flag_value(&o.file)
            ));
        }
        for (k, why) in &self.not_applied {
            s.push_str(&format!("  not applied: {k}: {why}\n"));
        }
        for w in &self.warnings {
            s.push_str(&format!("  warning: {w}\n"));
        }
        if let Some(first) = self.not_held.first() {
            s.push_str(&format!(
                "  instances that hold it: {}\n",
                if first.would_fit.is_empty() {
                    "none of those chosen".to_string()
                } else {
                    first.would_fit.join(", ")
                }
            ));
        }
        for n in &self.not_held {
            s.push_str(&format!(
                "  {} {}: cannot hold it: {}{}\n",
                n.profile,
                n.instance,
                n.reason,
                n.recompile_tp.map_or(String::new(), |t| format!(
                    "; recompiled at tp_degree {t} it would run here"
                ))
            ));
        }
        s
    }

    /// Adds this report to a command's rendered output: a `neuron_config` key in JSON, the
    /// note lines after text and Markdown, nothing in CSV (the notes go to stderr there).
    pub fn attach(&self, json: bool, csv: bool, out: Vec<u8>) -> Vec<u8> {
        if json {
            // The command's own bytes stay as they are: the key goes before the closing
            // brace of the top-level object.
            let text = String::from_utf8_lossy(&out);
            let end = text.trim_end();
            let Some(body) = end.strip_suffix('}').map(str::trim_end) else {
                return out;
            };
            if body.ends_with('{') {
                return out;
            }
            let inner = serde_json::to_string_pretty(self)
                .unwrap_or_else(|_| "null".into())
                .replace('\n', "\n  ");
            return format!("{body},\n  \"neuron_config\": {inner}\n}}\n").into_bytes();
        }
        if csv {
            eprint!("{}", self.text());
            return out;
        }
        let mut b = out;
        b.push(b'\n');
        b.extend_from_slice(self.text().as_bytes());
        b
    }
}

/// A value as typed on the command line (`128,512` for a list).
fn flag_value(v: &Value) -> String {
    match v {
        Value::Array(a) => a.iter().map(flag_value).collect::<Vec<_>>().join(","),
        Value::String(s) => s.clone(),
        x => x.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::profile;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn fixture(rel: &str) -> PathBuf {
        root().join("tests/fixtures/neuron_config").join(rel)
    }

    fn err(text: &str) -> String {
        format!(
            "{:#}",
            parse(text, Path::new("x/neuron_config.json")).unwrap_err()
        )
    }

    #[test]
    fn nxd_inference_directory() {
        let c = read(&fixture("nxdi-llama-3.1-8b-trn2-tp32")).unwrap();
        assert_eq!(c.family, Family::NxdInference);
        assert!(c.path.ends_with("neuron_config.json"));
        assert_eq!(
            (
                c.tp_degree,
                c.lnc,
                c.batch_size,
                c.ctx_batch_size,
                c.seq_len
            ),
            (32, Some(2), 4, Some(1), 4096)
        );
        assert_eq!(c.max_context_length, 2048);
        assert_eq!(c.buckets, Some(vec![512, 1024, 2048]));
        assert_eq!(c.dtype, Some(WeightsDtype::Bf16));
        assert_eq!(c.target.as_deref(), Some("trn2"));
        assert!(c.model_config.unwrap().ends_with("config.json"));
        let w = c.warnings.join("\n");
        for want in [
            "on-device sampling (on_device_sampling_config) changes latency and is not modelled",
            "asynchronous execution (async_mode) changes latency",
            "NKI kernels (attn_kernel_enabled)",
        ] {
            assert!(w.contains(want), "{want} missing from {w}");
        }
        // The token-generation buckets are the context ones plus seq_len: nothing to say.
        assert!(!w.contains("token-generation buckets"), "{w}");
        // Off in the file: not listed.
        assert!(
            !w.contains("flash decoding") && !w.contains("KV cache") && !w.contains("speculat"),
            "{w}"
        );
        assert_eq!(c.warnings.len(), 3, "{w}");
        // Speculation, in either of its forms, is listed.
        let c = parse(
            r#"{"neuron_config": {"tp_degree": 8, "batch_size": 1, "seq_len": 128, "enable_fused_speculation": true, "speculation_length": 5}, "fused_spec_config": {"draft_model_path": "d"}}"#,
            Path::new("x/neuron_config.json"),
        )
        .unwrap();
        let w = c.warnings.join("\n");
        assert!(
            w.contains("fused speculative decoding (enable_fused_speculation)"),
            "{w}"
        );
        assert!(
            w.contains("speculative decoding (speculation_length)"),
            "{w}"
        );
        assert!(w.contains("fused_spec_config is set"), "{w}");
    }

    #[test]
    fn optimum_neuron_files() {
        let c = read(&fixture("optimum-neuron-llama-3.1-8b-inf2-tp8")).unwrap();
        assert_eq!(c.family, Family::OptimumNeuron);
        assert_eq!(
            (
                c.tp_degree,
                c.lnc,
                c.batch_size,
                c.ctx_batch_size,
                c.seq_len
            ),
            (8, Some(1), 4, Some(1), 4096)
        );
        // No bucketing: every prompt padded to max_context_length.
        assert_eq!(c.buckets, Some(vec![4096]));
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings.iter().any(|w| w.contains("on-device sampling")));
        let c = read(&fixture("optimum-neuron-tnx-llama-3.1-8b-inf2-tp2")).unwrap();
        assert_eq!(c.family, Family::OptimumNeuronConfigJson);
        assert!(c.path.ends_with("config.json"));
        assert_eq!((c.tp_degree, c.batch_size, c.seq_len), (2, 1, 2048));
        assert_eq!(c.dtype, Some(WeightsDtype::Bf16));
        assert_eq!(c.model_config.as_deref(), Some(c.path.as_path()));
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn nxdi_defaults_follow_the_source() {
        // No bucketing: one context graph at max_context_length, one decode graph at seq_len.
        let c = parse(
            r#"{"neuron_config": {"tp_degree": 8, "batch_size": 2, "seq_len": 1024, "max_context_length": 512, "enable_bucketing": false}}"#,
            Path::new("x/neuron_config.json"),
        )
        .unwrap();
        assert_eq!(c.buckets, Some(vec![512]));
        assert_eq!(c.ctx_batch_size, Some(2));
        assert_eq!(c.dtype, None);
        assert_eq!(c.model_config, None);
        // Bucketing without lists: generate_buckets(128, max).
        assert_eq!(
            nxdi_buckets(128, 4096),
            vec![128, 256, 512, 1024, 2048, 4096]
        );
        assert_eq!(nxdi_buckets(128, 1000), vec![128, 256, 512, 1000]);
        assert_eq!(nxdi_buckets(128, 128), vec![128]);
        let c = parse(
            r#"{"neuron_config": {"tp_degree": 8, "batch_size": 1, "seq_len": 4096, "max_context_length": 1024, "enable_bucketing": true, "quantized": true, "quantization_dtype": "int8", "kv_cache_quant": true}}"#,
            Path::new("x/neuron_config.json"),
        )
        .unwrap();
        assert_eq!(c.buckets, Some(vec![128, 256, 512, 1024]));
        assert_eq!(c.dtype, Some(WeightsDtype::Int8));
        let w = c.warnings.join("\n");
        assert!(w.contains("quantised KV cache"), "{w}");
        assert!(
            w.contains(
                "[128, 256, 512, 1024, 2048, 4096] are modelled as [128, 256, 512, 1024, 4096]"
            ),
            "{w}"
        );
    }

    #[test]
    fn moe_expert_parallel_degrees_are_read() {
        // MoENeuronConfig: moe_tp_degree × moe_ep_degree = tp_degree (the NxD Inference
        // model card of Qwen3-235B-A22B: 2 × 32 = 64); optimum-neuron: ep_degree.
        let nxdi = |extra: &str| {
            parse(
                &format!(
                    r#"{{"neuron_config": {{"tp_degree": 64, "batch_size": 1, "seq_len": 1024{extra}}}}}"#
                ),
                Path::new("x/neuron_config.json"),
            )
            .unwrap()
        };
        let c = nxdi(r#", "moe_tp_degree": 2, "moe_ep_degree": 32"#);
        assert_eq!(c.ep_degree, Some(32));
        assert!(
            c.warnings.iter().all(|w| !w.contains("moe_")),
            "{:?}",
            c.warnings
        );
        assert_eq!(nxdi("").ep_degree, None);
        let c = nxdi(r#", "moe_tp_degree": 4, "moe_ep_degree": 32"#);
        assert_eq!(c.ep_degree, Some(32));
        let w = c.warnings.join("\n");
        assert!(
            w.contains("moe_tp_degree 4 × moe_ep_degree 32 differs from tp_degree 64: projected with the experts over 32 groups of 2 ranks"),
            "{w}"
        );
        let o = parse(
            r#"{"_serialized_key": "NxDNeuronConfig", "tp_degree": 8, "batch_size": 1, "sequence_length": 1024, "ep_degree": 8}"#,
            Path::new("x/neuron_config.json"),
        )
        .unwrap();
        assert_eq!(o.ep_degree, Some(8));
        // the file's degree reaches the settings unless the flag is given
        let s = resolve(&o, &Explicit::default(), false);
        assert_eq!(s.ep_degree, Some(8));
        let e = Explicit {
            ep_degree: Some(1),
            ..Explicit::default()
        };
        assert_eq!(resolve(&o, &e, false).ep_degree, Some(1));
    }

    #[test]
    fn errors_are_one_line_naming_file_and_field() {
        for (text, want) in [
            ("{not json", "x/neuron_config.json: not valid JSON"),
            ("[1]", "x/neuron_config.json: expected a JSON object"),
            (
                r#"{"model_type": "llama"}"#,
                "x/neuron_config.json: not a Neuron compile configuration",
            ),
            (
                r#"{"neuron_config": {"batch_size": 1, "seq_len": 128}}"#,
                "x/neuron_config.json: required field `neuron_config.tp_degree` is missing",
            ),
            (
                r#"{"neuron_config": {"tp_degree": "eight", "batch_size": 1, "seq_len": 128}}"#,
                "field `neuron_config.tp_degree` is \"eight\": expected a positive integer",
            ),
            (
                r#"{"neuron_config": {"tp_degree": 8, "batch_size": 1, "seq_len": 128, "torch_dtype": "int3"}}"#,
                "field `neuron_config.torch_dtype` is \"int3\"",
            ),
            (
                r#"{"neuron_config": {"tp_degree": 8, "batch_size": 1, "seq_len": 128, "max_context_length": 256}}"#,
                "field `neuron_config.max_context_length` is 256, more than `neuron_config.seq_len` 128",
            ),
            (
                r#"{"_serialized_key": "NxDNeuronConfig", "tp_degree": 2, "batch_size": 1}"#,
                "required field `sequence_length` is missing",
            ),
            (
                r#"{"model_type": "llama", "neuron": {"batch_size": 1, "sequence_length": 128}}"#,
                "required field `neuron.num_cores` is missing",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(want), "{want:?} not in {e:?}");
            assert!(!e.contains('\n'), "{e}");
        }
        let e = format!("{:#}", read(&root().join("src")).unwrap_err());
        assert!(
            e.contains("holds neither neuron_config.json nor config.json"),
            "{e}"
        );
    }

    #[test]
    fn explicit_flags_win_and_are_reported() {
        let c = read(&fixture("nxdi-llama-3.1-8b-trn2-tp32")).unwrap();
        let s = resolve(&c, &Explicit::default(), true);
        assert_eq!(
            (s.tp, s.batch, s.max_num_seqs, s.ctx_batch_size, s.seq_len),
            (Some(32), Some(4), Some(4), Some(1), Some(4096))
        );
        assert_eq!(s.lnc, Some(2));
        let r = s.report.unwrap();
        assert_eq!(r.applied["tp"], 32);
        assert_eq!(r.applied["buckets"], serde_json::json!([512, 1024, 2048]));
        assert_eq!(r.applied["weights_dtype"], "bf16");
        assert!(r.overridden.is_empty());
        let e = Explicit {
            tp: Some(16),
            seq_len: Some(4096),
            weights_dtype: Some(WeightsDtype::Fp8),
            ..Explicit::default()
        };
        let s = resolve(&c, &e, false);
        assert_eq!((s.tp, s.batch, s.seq_len), (Some(16), None, Some(4096)));
        assert_eq!(s.weights_dtype, Some(WeightsDtype::Fp8));
        // --tp given: the user recompiles, the file's LNC no longer binds it.
        assert_eq!(s.lnc, None);
        let r = s.report.clone().unwrap();
        assert_eq!(r.overridden["tp"].file, 32);
        assert_eq!(r.overridden["tp"].flag, 16);
        assert!(!r.applied.contains_key("tp") && !r.applied.contains_key("batch"));
        // Equal to the file's: neither applied nor overridden.
        assert!(!r.overridden.contains_key("seq_len") && !r.applied.contains_key("seq_len"));
        let t = r.text();
        assert!(t.contains("--tp 16 given: wins over the file's 32"), "{t}");
        assert!(t.contains("--buckets 512,1024,2048"), "{t}");
        // What the file set is its to name (an error names `seq_len 4096 read from` it);
        // a flag that won is the user's own.
        let from_file = resolve(&c, &Explicit::default(), true).report.unwrap();
        assert_eq!(from_file.file_value("seq_len").as_deref(), Some("4096"));
        assert_eq!(
            from_file.file_value("buckets").as_deref(),
            Some("512,1024,2048")
        );
        assert_eq!(r.file_value("tp"), None);
        let mut s = s;
        s.not_taken(&["buckets"], "no --buckets here");
        assert_eq!(s.buckets, None);
        assert!(s.report.unwrap().not_applied["buckets"].contains("no --buckets here"));
    }

    #[test]
    fn the_model_comes_from_the_compiled_directory() {
        let models = root().join("models");
        let c = read(&fixture("nxdi-llama-3.1-8b-trn2-tp32")).unwrap();
        let card = model_card(&models, None, Some(&c)).unwrap();
        assert_eq!(card.name, "nxdi-llama-3.1-8b-trn2-tp32");
        // NxD Inference's own file carries the Hugging Face attributes: alone in its
        // directory it still gives the architecture (Llama-3.1-8B: 8.03B parameters).
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("compiled");
        std::fs::create_dir(&dir).unwrap();
        std::fs::copy(c.path.as_path(), dir.join(NEURON_CONFIG_FILE)).unwrap();
        let alone = read(&dir).unwrap();
        assert_eq!(
            alone.model_config.as_deref(),
            Some(dir.join(NEURON_CONFIG_FILE).as_path())
        );
        let card = model_card(&models, None, Some(&alone)).unwrap();
        assert_eq!(card.name, "compiled");
        let n = card.architecture.parameter_count() as f64;
        assert!((n / 8.03e9 - 1.0).abs() < 0.005, "{n}");
        // --model wins.
        let card = model_card(&models, Some("llama-3.2-1b"), Some(&c)).unwrap();
        assert_eq!(card.name, "llama-3.2-1b");
        assert!(model_card(&models, None, None).is_err());
    }

    #[test]
    fn hold_keeps_the_instances_that_hold_it_and_json_keeps_its_bytes() {
        let dir = root().join("profiles");
        let ps = profile::load_selection(&dir, "trn2-profile,h100-profile").unwrap();
        let c = read(&fixture("nxdi-llama-3.1-8b-trn2-tp32")).unwrap();
        let mut s = resolve(&c, &Explicit::default(), true);
        let kept = hold(ps.clone(), &mut s, 1, None).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].instances.len(), 2);
        let r = s.report.clone().unwrap();
        assert_eq!(r.not_held.len(), 1);
        assert!(r
            .warnings
            .last()
            .unwrap()
            .starts_with("left out: h100-profile"));
        let e = hold(ps.clone(), &mut s, 1, Some("trn2.3xlarge"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("fits: trn2.48xlarge (trn2-profile)"), "{e}");
        let e = hold(ps.clone(), &mut s, 1, Some("p5.48xlarge"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("Neuron instances only"), "{e}");
        // Two replicas of TP 32 still fit the 64 units of a trn2.48xlarge; three do not.
        assert!(hold(ps.clone(), &mut s, 2, None).is_ok());
        let e = hold(ps, &mut s, 3, None).unwrap_err().to_string();
        assert!(e.contains("tp_degree 32 × 3 replicas"), "{e}");
        let out = b"{\n  \"a\": 1,\n  \"z\": [2]\n}\n".to_vec();
        let j = String::from_utf8(r.attach(true, false, out)).unwrap();
        assert!(
            j.starts_with("{\n  \"a\": 1,\n  \"z\": [2],\n  \"neuron_config\": {\n    \"path\""),
            "{j}"
        );
        let v: Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["neuron_config"]["applied"]["tp"], 32);
        assert_eq!(v["z"], serde_json::json!([2]));
    }

    #[test]
    fn instances_are_checked_against_tp_lnc_and_size() {
        let dir = root().join("profiles");
        let ps = profile::load_selection(&dir, "inf2-profile,trn2-profile,h100-profile").unwrap();
        let (kept, not, other) = split_profiles(&ps, 64, Some(2), 1);
        assert_eq!(other, ["h100-profile"]);
        let names: Vec<&str> = kept
            .iter()
            .flat_map(|p| p.instances.iter().map(|i| i.name.as_str()))
            .collect();
        assert_eq!(names, ["trn2.48xlarge", "trn2u.48xlarge"]);
        let get = |n: &str| not.iter().find(|x| x.instance == n).unwrap();
        let small = get("trn2.3xlarge");
        assert_eq!(
            small.reason,
            "tp_degree 64 at LNC 2 needs 16 chip(s), 64 × logical NeuronCore (LNC=2); trn2.3xlarge has 1 chip(s), 4"
        );
        assert_eq!(small.recompile_tp, Some(4));
        assert!(small
            .line()
            .contains("fits: trn2.48xlarge (trn2-profile), trn2u.48xlarge (trn2-profile)"));
        assert!(get("inf2.48xlarge")
            .reason
            .contains("compiled at logical_nc_config 2; inf2-profile models LNC 1"));
        assert!(!not.iter().any(|n| n.profile == "h100-profile"));
        // LNC 1, TP 8: the two larger inf2 sizes; TP 32 is no inf2 degree.
        let (kept, _, _) = split_profiles(&ps, 8, Some(1), 1);
        let names: Vec<&str> = kept
            .iter()
            .flat_map(|p| p.instances.iter().map(|i| i.name.as_str()))
            .collect();
        assert_eq!(names, ["inf2.24xlarge", "inf2.48xlarge"]);
        let (kept, not, _) = split_profiles(&ps[..1], 32, Some(1), 1);
        assert!(kept.is_empty());
        assert!(not[0]
            .reason
            .contains("tp_degree 32 is not a degree inf2-profile runs"));
        let e = none_held(32, Some(1), &not).to_string();
        assert!(e.starts_with("neuron_config: no chosen instance holds tp_degree 32 at LNC 1"));
    }
}
