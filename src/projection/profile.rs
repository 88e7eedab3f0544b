//! Device profiles: loading `profiles/NAME.toml` by name, validating it, and the profile of
//! the local machine built from two micro-benchmark numbers.

use super::dtype::{ComputeRate, WeightsDtype};
use super::params::{LatencyParams, PARAM_NAMES};
use super::points;
use super::profile_file::{self, HeldOutFile, Num, PriceFile, ProfileFile, Qty};
use super::setting::{Setting, SettingError};
use super::types::{CalibrationError, HeldOut};
use crate::model::architecture::Architecture;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Family of device; decides defaults such as what a TP unit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Neuron,
    Gpu,
    Host,
}

/// One accelerator chip, in SI units (FLOP/s, bytes, bytes/s, W).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chip {
    pub name: String,
    pub cores: u32,
    pub bf16_flops: f64,
    pub fp8_flops: Option<f64>,
    pub int8_ops: Option<f64>,
    pub fp32_flops: Option<f64>,
    pub memory_bytes: f64,
    pub memory_bandwidth: f64,
    pub interconnect_bandwidth: Option<f64>,
    pub tdp_watts: Option<f64>,
    /// Output width below which a matrix multiply leaves part of the matrix engine idle:
    /// a routed expert's matmuls whose sharded width `w` is below it run at `w / width` of
    /// the rate. `None`: no such effect modelled (GPU profiles).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matmul_tile_width: Option<u32>,
}

impl Chip {
    /// Peak dense FLOP/s of the whole chip at `rate`; fp8 and fp32 fall back to the bf16
    /// figure when the profile gives none.
    pub fn peak_flops(&self, rate: ComputeRate) -> f64 {
        match rate {
            ComputeRate::Bf16 => self.bf16_flops,
            ComputeRate::Fp8 => self.fp8_flops.unwrap_or(self.bf16_flops),
            ComputeRate::Fp32 => self.fp32_flops.unwrap_or(self.bf16_flops),
        }
    }
}

/// Neuron-style static shapes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StaticShapes {
    /// Smallest sequence bucket; buckets double up to the compiled length.
    pub bucket_min: u32,
    /// The compiled sequence length is input + output rounded up to this.
    pub seq_len_multiple: u32,
}

/// How the software stack runs a model on the chip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Runtime {
    /// What one TP rank is (`NeuronCore`, `GPU`).
    pub tp_unit: String,
    pub tp_units_per_chip: u32,
    /// Allowed tensor-parallel degrees, ascending.
    pub tp_degrees: Vec<u32>,
    pub usable_memory_fraction: f64,
    /// Whether a prefill kernel skips the masked half of the attention square.
    pub causal_prefill_attention: bool,
    pub static_shapes: Option<StaticShapes>,
    /// Checkpoint quantisation methods (`quant_method`, lower case) this runtime has no
    /// kernels for: it dequantizes them to the serving dtype at load, so they count at
    /// that dtype (empty: every declared quantisation is served as stored).
    pub dequantized_formats: Vec<String>,
    /// Tokens per block of the routed experts' prefill kernel: each expert a prefill
    /// touches computes whole blocks (NxD Inference blockwise matmul); `None`: tokens are
    /// computed as they come (GPU grouped GEMMs).
    pub moe_block_size: Option<u32>,
}

impl Runtime {
    /// `arch` as this runtime serves it: without its declared quantisation when the
    /// runtime dequantizes that method at load.
    pub fn serves<'a>(&self, arch: &'a Architecture) -> std::borrow::Cow<'a, Architecture> {
        match &arch.quantization {
            Some(q) if self.dequantizes(&q.method) => {
                let mut a = arch.clone();
                a.quantization = None;
                std::borrow::Cow::Owned(a)
            }
            _ => std::borrow::Cow::Borrowed(arch),
        }
    }

    /// Whether checkpoints quantised with `method` are dequantized at load.
    pub fn dequantizes(&self, method: &str) -> bool {
        self.dequantized_formats
            .iter()
            .any(|f| f.eq_ignore_ascii_case(method))
    }
}

/// Whether a profile's latency parameters were fitted or assumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CalibrationStatus {
    Fitted,
    Assumed,
}

/// What the latency parameters rest on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    pub status: CalibrationStatus,
    pub note: String,
    /// Points file (resolved against the profile's folder) for fitted profiles.
    pub points: Option<PathBuf>,
    /// Names of the parameters the fit adjusts.
    pub fitted: Vec<String>,
    /// Error on the points, as last written by `calibrate --write`.
    pub error: Option<CalibrationError>,
    /// Leave-one-source-out error (or why there is none), as last written by
    /// `calibrate --write`; `None` where the file does not record it.
    pub leave_one_source_out: Option<HeldOut>,
    /// Leave-one-model-out error (or why there is none), likewise.
    pub leave_one_model_out: Option<HeldOut>,
    /// The (instance, TP degree, weights dtype) runs of the points file on this profile's
    /// instances, read when the profile is loaded from a file, so that a projection
    /// outside them can say that its calibration error was not measured there.
    pub runs: Option<Vec<CalibratedRun>>,
}

/// One kind of run the calibration points cover.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibratedRun {
    pub instance: String,
    pub tp: u32,
    pub dtype: WeightsDtype,
    /// Sequences in flight: the static batch, or the serving concurrency (`None` where
    /// not recorded).
    pub batch: Option<u32>,
}

impl Calibration {
    /// Why the calibration error does not vouch for a projection at this instance, TP
    /// degree and dtype (`None` when the points cover it, or when they were not read).
    pub fn outside(
        &self,
        instance: &str,
        tp: u32,
        dtype: WeightsDtype,
        batch: Option<u32>,
    ) -> Option<String> {
        let runs = self.runs.as_ref()?;
        let here = runs
            .iter()
            .any(|r| r.instance.eq_ignore_ascii_case(instance) && r.tp == tp);
        let dtype_seen = runs.iter().any(|r| r.dtype == dtype);
        let mut seen: Vec<String> = runs
            .iter()
            .map(|r| format!("{} at TP {}", r.instance, r.tp))
            .collect();
        seen.dedup();
        let mut why = Vec::new();
        if !here {
            why.push(format!(
                "for {instance} at TP {tp} (points: {})",
                seen.join(", ")
            ));
        }
        if !dtype_seen {
            why.push(format!("for {} weights (no point has them)", dtype.name()));
        }
        let batches: Vec<u32> = runs.iter().filter_map(|r| r.batch).collect();
        if let (Some(b), Some(&lo), Some(&hi)) = (batch, batches.iter().min(), batches.iter().max())
        {
            if b < lo || b > hi {
                let range = if lo == hi {
                    format!("{lo}")
                } else {
                    format!("{lo}–{hi}")
                };
                why.push(format!(
                    "at batch {b} (points: batch or concurrency {range})"
                ));
            }
        }
        (!why.is_empty()).then(|| format!("calibration error not measured {}", why.join(" nor ")))
    }
}

/// An hourly price.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Price {
    pub usd_per_hour: f64,
    pub region: String,
    pub date: String,
    /// Address of the source (resolved from the `[sources]` key).
    pub source: String,
    pub note: Option<String>,
}

/// Which price a projection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PriceKind {
    #[default]
    OnDemand,
    Reserved,
    CapacityBlock,
}

impl PriceKind {
    /// Parses `on-demand|reserved|capacity-block`.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "on-demand" | "ondemand" => Self::OnDemand,
            "reserved" => Self::Reserved,
            "capacity-block" => Self::CapacityBlock,
            _ => bail!(
                "price kind {s:?} is not known: expected on-demand, reserved or capacity-block"
            ),
        })
    }

    /// The name used in files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::OnDemand => "on-demand",
            Self::Reserved => "reserved",
            Self::CapacityBlock => "capacity-block",
        }
    }
}

/// One instance type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instance {
    pub name: String,
    pub accelerators: u32,
    pub vcpus: u32,
    pub host_memory_bytes: f64,
    pub on_demand: Option<Price>,
    pub reserved: Option<Price>,
    pub capacity_block: Option<Price>,
    pub note: Option<String>,
}

impl Instance {
    /// The price of `kind`, if the profile has one.
    pub fn price(&self, kind: PriceKind) -> Option<&Price> {
        match kind {
            PriceKind::OnDemand => self.on_demand.as_ref(),
            PriceKind::Reserved => self.reserved.as_ref(),
            PriceKind::CapacityBlock => self.capacity_block.as_ref(),
        }
    }
}

/// A validated device profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub kind: DeviceKind,
    pub chip: Chip,
    pub runtime: Runtime,
    pub latency: LatencyParams,
    pub calibration: Calibration,
    pub instances: Vec<Instance>,
    /// Address (with date) behind each number, keyed by its dotted field path.
    pub field_sources: BTreeMap<String, String>,
    /// File the profile was read from (empty for the host profile).
    #[serde(skip)]
    pub path: PathBuf,
    /// The host's decode steps timed on the model (`simulate --host-check`); `None` for
    /// every other profile.
    #[serde(skip)]
    pub measured_decode: Option<super::measured_decode::MeasuredDecode>,
}

impl Profile {
    /// TP units of one instance.
    pub fn units(&self, inst: &Instance) -> u32 {
        inst.accelerators * self.runtime.tp_units_per_chip
    }

    /// Natural TP degree of an instance: the largest allowed degree using at most all of its
    /// units (all NeuronCores or all GPUs where allowed).
    pub fn natural_tp(&self, inst: &Instance) -> u32 {
        let units = self.units(inst);
        self.runtime
            .tp_degrees
            .iter()
            .copied()
            .filter(|&d| d <= units)
            .max()
            .unwrap_or(1)
    }

    /// Checks a requested TP degree against the profile and the instance.
    pub fn check_tp(&self, inst: &Instance, tp: u32) -> Result<()> {
        let units = self.units(inst);
        if !self.runtime.tp_degrees.contains(&tp) {
            bail!(SettingError::new(
                Setting::Tp,
                format!(
                    " {tp} is not allowed on {}: {} allows TP degrees {:?}",
                    inst.name, self.name, self.runtime.tp_degrees
                )
            ));
        }
        if tp > units {
            bail!(SettingError::new(
                Setting::Tp,
                format!(
                    " {tp} is more than the {units} {}s of {}",
                    self.runtime.tp_unit, inst.name
                )
            ));
        }
        Ok(())
    }

    /// The instance called `name`; the error lists the profile's instances.
    pub fn instance(&self, name: &str) -> Result<&Instance> {
        self.instances
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(name))
            .with_context(|| {
                format!(
                    "instance {name:?} is not in {}: expected one of {}",
                    self.name,
                    self.instances
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// Parses and validates a profile from its text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let what = path.display().to_string();
        let raw = profile_file::parse(text, &what)?;
        Validator::new(&what, &raw)?.profile(raw, path)
    }

    /// Reads and validates one profile file, and the kinds of run its calibration points
    /// cover where the points file is present (a profile copied elsewhere to change a
    /// price still loads; its projections then make no claim about coverage).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read profile {}", path.display()))?;
        let mut p = Self::parse(&text, path)?;
        if let Some(points_path) = p.calibration.points.as_ref().filter(|f| f.is_file()) {
            let pts = points::load(points_path).with_context(|| {
                format!(
                    "{}: field `calibration.points` names {}",
                    path.display(),
                    points_path.display()
                )
            })?;
            let mut runs: Vec<CalibratedRun> = Vec::new();
            for q in pts {
                // Validation rows are not fitted on: the calibration error says nothing there.
                if p.instance(&q.instance).is_err() || q.validation_only() {
                    continue;
                }
                let r = CalibratedRun {
                    instance: q.instance,
                    tp: q.tp,
                    dtype: q.weights_dtype,
                    batch: Some(q.batch),
                };
                if !runs.contains(&r) {
                    runs.push(r);
                }
            }
            p.calibration.runs = Some(runs);
        }
        Ok(p)
    }
}

/// Names of the profiles in `dir` (file stems of `*.toml`), sorted.
pub fn names(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read profile folder {}", dir.display()))?;
    let mut out = Vec::new();
    for e in entries {
        let p = e?.path();
        if p.extension().and_then(|x| x.to_str()) == Some("toml") {
            if let Some(s) = p.file_stem().and_then(|s| s.to_str()) {
                out.push(s.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Loads the profile called `name` from `dir` (`inf2` also finds `inf2-profile`), or from
/// a file when `name` is a path to a `.toml` file (users' own profiles, validated the same
/// way); an unknown name is an error listing the known ones.
pub fn load(dir: &Path, name: &str) -> Result<Profile> {
    if name.ends_with(".toml") || name.contains('/') {
        let path = Path::new(name);
        if !path.is_file() {
            bail!("profile file {name} does not exist (expected a profile name or a .toml file)");
        }
        return Profile::load(path);
    }
    let known = names(dir)?;
    let stem = [name.to_string(), format!("{name}-profile")]
        .into_iter()
        .find(|n| known.contains(n));
    match stem {
        Some(s) => Profile::load(&dir.join(format!("{s}.toml"))),
        None => bail!(
            "unknown profile {name:?} in {}: known profiles are {}",
            dir.display(),
            known.join(", ")
        ),
    }
}

/// Loads every profile in `dir`, sorted by name.
pub fn load_all(dir: &Path) -> Result<Vec<Profile>> {
    names(dir)?
        .iter()
        .map(|n| Profile::load(&dir.join(format!("{n}.toml"))))
        .collect()
}

/// Resolves a `--device` list: `all`, or comma-separated profile names.
pub fn load_selection(dir: &Path, selection: &str) -> Result<Vec<Profile>> {
    if selection.trim().eq_ignore_ascii_case("all") {
        return load_all(dir);
    }
    if selection.split(',').any(|n| n.trim().is_empty()) {
        bail!(SettingError::new(
            Setting::Device,
            format!(" {selection:?}: expected profile names (comma-separated) or `all`, with no empty name (see `profiler devices`)")
        ));
    }
    let mut out: Vec<Profile> = Vec::new();
    for n in selection.split(',') {
        let p = load(dir, n.trim())?;
        // The same profile named twice (`inf2,inf2-profile`) is projected once.
        if !out.iter().any(|q| q.name == p.name) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Profile of the local machine from two micro-benchmark results: achieved matmul FLOP/s
/// and achieved memory bandwidth (bytes/s). Efficiencies are 1 because the benchmarks
/// already measure achieved rates; fixed overheads and collectives are 0 (one device).
pub fn host_profile(
    matmul_flops_per_s: f64,
    mem_bytes_per_s: f64,
    memory_bytes: u64,
    name: &str,
) -> Profile {
    let src = format!("measured on this machine at start-up ({name})");
    let mut field_sources = BTreeMap::new();
    for f in ["chip.bf16_tflops", "chip.memory_bandwidth", "chip.memory"] {
        field_sources.insert(f.to_string(), src.clone());
    }
    Profile {
        name: "host".into(),
        description: format!("This machine ({name}), from start-up micro-benchmarks"),
        kind: DeviceKind::Host,
        chip: Chip {
            name: name.to_string(),
            cores: 1,
            bf16_flops: matmul_flops_per_s.max(1.0),
            fp8_flops: None,
            int8_ops: None,
            fp32_flops: None,
            memory_bytes: memory_bytes.max(1) as f64,
            memory_bandwidth: mem_bytes_per_s.max(1.0),
            interconnect_bandwidth: None,
            tdp_watts: None,
            matmul_tile_width: None,
        },
        runtime: Runtime {
            tp_unit: "device".into(),
            tp_units_per_chip: 1,
            tp_degrees: vec![1],
            usable_memory_fraction: 1.0,
            causal_prefill_attention: false,
            static_shapes: None,
            dequantized_formats: Vec::new(),
            moe_block_size: None,
        },
        latency: LatencyParams {
            bandwidth_efficiency: 1.0,
            compute_efficiency: 1.0,
            attention_efficiency: 1.0,
            step_overhead_ms: 0.0,
            prefill_overhead_ms: 0.0,
            collective_latency_us: 0.0,
            decode_seq_ms: 0.0,
        },
        calibration: Calibration {
            status: CalibrationStatus::Assumed,
            note: "host: achieved rates measured by micro-benchmarks, no fitted overheads".into(),
            points: None,
            fitted: Vec::new(),
            error: None,
            leave_one_source_out: None,
            leave_one_model_out: None,
            runs: None,
        },
        instances: vec![Instance {
            name: "host".into(),
            accelerators: 1,
            vcpus: 1,
            host_memory_bytes: memory_bytes as f64,
            on_demand: None,
            reserved: None,
            capacity_block: None,
            note: None,
        }],
        field_sources,
        path: PathBuf::new(),
        measured_decode: None,
    }
}

/// `YYYY-MM-DD` (a real calendar day) or `YYYY-MM`.
pub(crate) fn is_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let num = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_digit());
    let (y, m) = match parts.as_slice() {
        [y, m] | [y, m, _] if num(y, 4) && num(m, 2) => {
            (y.parse::<u32>().unwrap_or(0), m.parse::<u32>().unwrap_or(0))
        }
        _ => return false,
    };
    if !(1..=12).contains(&m) {
        return false;
    }
    match parts.as_slice() {
        [_, _, d] if num(d, 2) => {
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let days = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            let d = d.parse::<u32>().unwrap_or(0);
            (1..=days[m as usize - 1]).contains(&d)
        }
        [_, _] => true,
        _ => false,
    }
}

/// Whether `text` holds a date as [`is_date`] reads it, between non-digits.
fn has_date(text: &str) -> bool {
    let b = text.as_bytes();
    (0..b.len()).any(|i| {
        (i == 0 || !b[i - 1].is_ascii_digit())
            && [10, 7].iter().any(|&n| {
                i + n <= b.len()
                    && (i + n == b.len() || !b[i + n].is_ascii_digit())
                    && text.is_char_boundary(i)
                    && text.is_char_boundary(i + n)
                    && is_date(&text[i..i + n])
            })
    })
}

/// Validation state: the file name for messages and the `[sources]` table.
struct Validator<'a> {
    what: &'a str,
    sources: BTreeMap<String, String>,
    field_sources: BTreeMap<String, String>,
}

const GB: f64 = 1e9;
const GIB: f64 = 1073741824.0;

impl<'a> Validator<'a> {
    fn new(what: &'a str, raw: &ProfileFile) -> Result<Self> {
        for (k, v) in &raw.sources {
            if v.trim().is_empty() {
                bail!("{what}: field `sources.{k}` must not be empty");
            }
            // A source is an address with its date; `assume-` entries are this project's
            // own assumptions and carry their reason instead.
            let sourced = v.contains('/') && has_date(v);
            if !(k.starts_with("assume-") || sourced) {
                bail!(
                    "{what}: field `sources.{k}` must give an address (URL or repository path) and a date (YYYY-MM-DD or YYYY-MM); a key starting with `assume-` marks an assumption instead"
                );
            }
        }
        Ok(Validator {
            what,
            sources: raw.sources.clone(),
            field_sources: BTreeMap::new(),
        })
    }

    fn source(&mut self, field: &str, key: &str) -> Result<String> {
        match self.sources.get(key) {
            Some(addr) => {
                self.field_sources.insert(field.to_string(), addr.clone());
                Ok(addr.clone())
            }
            None if self.sources.is_empty() => bail!(
                "{}: field `{field}.source` names unknown source {key:?} (the [sources] table is empty)",
                self.what
            ),
            None => bail!(
                "{}: field `{field}.source` names unknown source {key:?} (the [sources] table has {})",
                self.what,
                self.sources.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }

    fn positive(&mut self, field: &str, n: &Num) -> Result<f64> {
        self.source(field, &n.source)?;
        if !(n.value.is_finite() && n.value > 0.0) {
            bail!(
                "{}: field `{field}` must be a positive number, got {}",
                self.what,
                n.value
            );
        }
        Ok(n.value)
    }

    fn non_negative(&mut self, field: &str, n: &Num) -> Result<f64> {
        self.source(field, &n.source)?;
        if !(n.value.is_finite() && n.value >= 0.0) {
            bail!(
                "{}: field `{field}` must be zero or positive, got {}",
                self.what,
                n.value
            );
        }
        Ok(n.value)
    }

    fn fraction(&mut self, field: &str, n: &Num) -> Result<f64> {
        let v = self.positive(field, n)?;
        if v > 1.0 {
            bail!("{}: field `{field}` must be in (0, 1], got {v}", self.what);
        }
        Ok(v)
    }

    fn count(&mut self, field: &str, n: &Num) -> Result<u32> {
        let v = self.positive(field, n)?;
        if v.fract() != 0.0 || v > u32::MAX as f64 {
            bail!(
                "{}: field `{field}` must be a positive integer, got {v}",
                self.what
            );
        }
        Ok(v as u32)
    }

    fn bytes(&mut self, field: &str, q: &Qty) -> Result<f64> {
        let v = self.positive(
            field,
            &Num {
                value: q.value,
                source: q.source.clone(),
            },
        )?;
        let f = match q.unit.as_str() {
            "GB" => GB,
            "GiB" => GIB,
            "TB" => 1e12,
            u => bail!(
                "{}: field `{field}.unit` is {u:?}, expected one of GB, GiB, TB",
                self.what
            ),
        };
        Ok(v * f)
    }

    fn rate(&mut self, field: &str, q: &Qty) -> Result<f64> {
        let v = self.positive(
            field,
            &Num {
                value: q.value,
                source: q.source.clone(),
            },
        )?;
        let f = match q.unit.as_str() {
            "GB/s" => GB,
            "GiB/s" => GIB,
            "TB/s" => 1e12,
            u => bail!(
                "{}: field `{field}.unit` is {u:?}, expected one of GB/s, GiB/s, TB/s",
                self.what
            ),
        };
        Ok(v * f)
    }

    fn price(&mut self, field: &str, p: &Option<PriceFile>) -> Result<Option<Price>> {
        let Some(p) = p else { return Ok(None) };
        let source = self.source(field, &p.source)?;
        if !(p.usd_per_hour.is_finite() && p.usd_per_hour > 0.0) {
            bail!(
                "{}: field `{field}.usd_per_hour` must be a positive price, got {}",
                self.what,
                p.usd_per_hour
            );
        }
        if !is_date(&p.date) {
            bail!(
                "{}: field `{field}.date` is {:?}, expected YYYY-MM-DD or YYYY-MM",
                self.what,
                p.date
            );
        }
        if p.region.trim().is_empty() {
            bail!("{}: field `{field}.region` must not be empty", self.what);
        }
        Ok(Some(Price {
            usd_per_hour: p.usd_per_hour,
            region: p.region.clone(),
            date: p.date.clone(),
            source,
            note: p.note.clone(),
        }))
    }

    fn profile(mut self, raw: ProfileFile, path: &Path) -> Result<Profile> {
        let what = self.what;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if raw.name != stem {
            bail!(
                "{what}: field `name` is {:?}, expected {stem:?} (the file name)",
                raw.name
            );
        }
        let kind = match raw.kind.as_str() {
            "neuron" => DeviceKind::Neuron,
            "gpu" => DeviceKind::Gpu,
            k => bail!("{what}: field `kind` is {k:?}, expected \"neuron\" or \"gpu\""),
        };
        let c = &raw.chip;
        let opt = |v: &mut Self, f: &str, n: &Option<Num>| -> Result<Option<f64>> {
            n.as_ref().map(|n| v.positive(f, n)).transpose()
        };
        let chip = Chip {
            name: c.name.clone(),
            cores: self.count("chip.cores", &c.cores)?,
            bf16_flops: self.positive("chip.bf16_tflops", &c.bf16_tflops)? * 1e12,
            fp8_flops: opt(&mut self, "chip.fp8_tflops", &c.fp8_tflops)?.map(|v| v * 1e12),
            int8_ops: opt(&mut self, "chip.int8_tops", &c.int8_tops)?.map(|v| v * 1e12),
            fp32_flops: opt(&mut self, "chip.fp32_tflops", &c.fp32_tflops)?.map(|v| v * 1e12),
            memory_bytes: self.bytes("chip.memory", &c.memory)?,
            memory_bandwidth: self.rate("chip.memory_bandwidth", &c.memory_bandwidth)?,
            interconnect_bandwidth: c
                .interconnect_bandwidth
                .as_ref()
                .map(|q| self.rate("chip.interconnect_bandwidth", q))
                .transpose()?,
            tdp_watts: opt(&mut self, "chip.tdp_watts", &c.tdp_watts)?,
            matmul_tile_width: c
                .matmul_tile_width
                .as_ref()
                .map(|n| self.count("chip.matmul_tile_width", n))
                .transpose()?,
        };
        let runtime = self.runtime(&raw)?;
        match (kind, runtime.static_shapes.is_some()) {
            (DeviceKind::Neuron, false) => bail!("{what}: table `[runtime.static_shapes]` is missing: Neuron compiles static shapes (prompt buckets, a compiled sequence length)"),
            (DeviceKind::Gpu, true) => bail!("{what}: table `[runtime.static_shapes]` is for Neuron profiles; GPU engines run dynamic shapes"),
            _ => {}
        }
        if raw.description.trim().is_empty() || runtime.tp_unit.trim().is_empty() {
            bail!("{what}: fields `description` and `runtime.tp_unit` must not be empty");
        }
        let latency = self.latency(&raw)?;
        let calibration = self.calibration(&raw, path)?;
        let mut instances = Vec::new();
        for (i, inst) in raw.instances.iter().enumerate() {
            let f = format!("instances[{i}]");
            if inst.name.trim().is_empty() {
                bail!("{what}: field `{f}.name` must not be empty");
            }
            if raw.instances[..i]
                .iter()
                .any(|o| o.name.eq_ignore_ascii_case(&inst.name))
            {
                bail!(
                    "{what}: field `{f}.name`: instance {:?} is listed twice",
                    inst.name
                );
            }
            let accelerators = self.count(&format!("{f}.accelerators"), &inst.accelerators)?;
            let units = accelerators * runtime.tp_units_per_chip;
            let max_tp = runtime.tp_degrees.last().copied().unwrap_or(1);
            if units > max_tp {
                bail!(
                    "{what}: field `{f}.accelerators`: {} has {accelerators} accelerators ({units} {}s), more than the largest TP degree {max_tp} allowed by `runtime.tp_degrees`",
                    inst.name,
                    runtime.tp_unit
                );
            }
            instances.push(Instance {
                name: inst.name.clone(),
                accelerators,
                vcpus: self.count(&format!("{f}.vcpus"), &inst.vcpus)?,
                host_memory_bytes: self.bytes(&format!("{f}.host_memory"), &inst.host_memory)?,
                on_demand: self.price(&format!("{f}.on_demand"), &inst.on_demand)?,
                reserved: self.price(&format!("{f}.reserved"), &inst.reserved)?,
                capacity_block: self.price(&format!("{f}.capacity_block"), &inst.capacity_block)?,
                note: inst.note.clone(),
            });
        }
        if instances.is_empty() {
            bail!("{what}: field `instances` must list at least one instance");
        }
        Ok(Profile {
            name: raw.name,
            description: raw.description,
            kind,
            chip,
            runtime,
            latency,
            calibration,
            instances,
            field_sources: self.field_sources,
            path: path.to_path_buf(),
            measured_decode: None,
        })
    }

    fn runtime(&mut self, raw: &ProfileFile) -> Result<Runtime> {
        let what = self.what;
        let r = &raw.runtime;
        self.source("runtime.tp_degrees", &r.tp_degrees.source)?;
        let mut degrees = Vec::new();
        for &d in &r.tp_degrees.value {
            if d <= 0 || d > u32::MAX as i64 {
                bail!("{what}: field `runtime.tp_degrees` must hold positive integers, got {d}");
            }
            degrees.push(d as u32);
        }
        if degrees.is_empty() || degrees.windows(2).any(|w| w[0] >= w[1]) {
            bail!("{what}: field `runtime.tp_degrees` must be a non-empty ascending list, got {degrees:?}");
        }
        let causal = match r.prefill_attention.as_str() {
            "causal" => true,
            "full" => false,
            o => bail!("{what}: field `runtime.prefill_attention` is {o:?}, expected \"full\" or \"causal\""),
        };
        let mut dequantized_formats = Vec::new();
        if let Some(l) = &r.dequantized_formats {
            self.source("runtime.dequantized_formats", &l.source)?;
            for f in &l.value {
                if f.trim().is_empty() {
                    bail!("{what}: field `runtime.dequantized_formats` holds an empty name: expected quant_method names such as \"mxfp4\"");
                }
                dequantized_formats.push(f.trim().to_ascii_lowercase());
            }
        }
        let static_shapes = match &r.static_shapes {
            Some(s) => Some(StaticShapes {
                bucket_min: self.count("runtime.static_shapes.bucket_min", &s.bucket_min)?,
                seq_len_multiple: self.count(
                    "runtime.static_shapes.seq_len_multiple",
                    &s.seq_len_multiple,
                )?,
            }),
            None => None,
        };
        Ok(Runtime {
            tp_unit: r.tp_unit.clone(),
            tp_units_per_chip: self.count("runtime.tp_units_per_chip", &r.tp_units_per_chip)?,
            tp_degrees: degrees,
            usable_memory_fraction: self
                .fraction("runtime.usable_memory_fraction", &r.usable_memory_fraction)?,
            causal_prefill_attention: causal,
            static_shapes,
            dequantized_formats,
            moe_block_size: r
                .moe_block_size
                .as_ref()
                .map(|n| self.count("runtime.moe_block_size", n))
                .transpose()?,
        })
    }

    fn latency(&mut self, raw: &ProfileFile) -> Result<LatencyParams> {
        let l = &raw.latency;
        Ok(LatencyParams {
            bandwidth_efficiency: self
                .fraction("latency.bandwidth_efficiency", &l.bandwidth_efficiency)?,
            compute_efficiency: self
                .fraction("latency.compute_efficiency", &l.compute_efficiency)?,
            attention_efficiency: self
                .fraction("latency.attention_efficiency", &l.attention_efficiency)?,
            step_overhead_ms: self.non_negative("latency.step_overhead_ms", &l.step_overhead_ms)?,
            prefill_overhead_ms: self
                .non_negative("latency.prefill_overhead_ms", &l.prefill_overhead_ms)?,
            collective_latency_us: self
                .non_negative("latency.collective_latency_us", &l.collective_latency_us)?,
            decode_seq_ms: self.non_negative("latency.decode_seq_ms", &l.decode_seq_ms)?,
        })
    }

    fn calibration(&mut self, raw: &ProfileFile, path: &Path) -> Result<Calibration> {
        let what = self.what;
        let c = &raw.calibration;
        let status = match c.status.as_str() {
            "fitted" => CalibrationStatus::Fitted,
            "assumed" => CalibrationStatus::Assumed,
            s => bail!(
                "{what}: field `calibration.status` is {s:?}, expected \"fitted\" or \"assumed\""
            ),
        };
        if c.note.trim().is_empty() {
            bail!("{what}: field `calibration.note` must say what the parameters rest on");
        }
        let fitted = c.fitted.clone().unwrap_or_default();
        for f in &fitted {
            if !PARAM_NAMES.contains(&f.as_str()) {
                bail!(
                    "{what}: field `calibration.fitted` names {f:?}, expected some of {}",
                    PARAM_NAMES.join(", ")
                );
            }
        }
        let folder = path.parent().unwrap_or(Path::new("."));
        let points = c.points.as_ref().map(|p| folder.join(p));
        let error = match (c.ttft_mape, c.tpot_mape, c.point_count) {
            (Some(t), Some(p), Some(n)) => {
                if !(t.is_finite() && t >= 0.0 && p.is_finite() && p >= 0.0 && n > 0) {
                    bail!("{what}: fields `calibration.ttft_mape`, `tpot_mape` must be ≥ 0 and `point_count` > 0");
                }
                Some(CalibrationError {
                    ttft: t,
                    tpot: p,
                    points: n as u32,
                })
            }
            (None, None, None) => None,
            _ => bail!(
                "{what}: fields `calibration.ttft_mape`, `tpot_mape` and `point_count` go together"
            ),
        };
        if status == CalibrationStatus::Assumed && error.is_some() {
            bail!("{what}: fields `calibration.ttft_mape`, `tpot_mape` and `point_count` belong to a fitted profile, but `calibration.status` is \"assumed\"");
        }
        let held = |key: &str, h: &Option<HeldOutFile>| -> Result<Option<HeldOut>> {
            let Some(h) = h else { return Ok(None) };
            let f = format!("calibration.{key}");
            if status == CalibrationStatus::Assumed {
                bail!("{what}: field `{f}` belongs to a fitted profile, but `calibration.status` is \"assumed\"");
            }
            if !(0..=i64::from(u32::MAX)).contains(&h.groups) {
                bail!(
                    "{what}: field `{f}.groups` must be a count, got {}",
                    h.groups
                );
            }
            let groups = h.groups as u32;
            match (h.ttft_mape, h.tpot_mape, h.point_count, &h.reason) {
                (Some(t), Some(p), Some(n), None) => {
                    if !(t.is_finite() && t >= 0.0 && p.is_finite() && p >= 0.0 && n > 0) {
                        bail!("{what}: field `{f}`: `ttft_mape`, `tpot_mape` must be ≥ 0 and `point_count` > 0");
                    }
                    Ok(Some(HeldOut {
                        error: Some(CalibrationError { ttft: t, tpot: p, points: n as u32 }),
                        groups,
                        reason: None,
                    }))
                }
                (None, None, None, Some(r)) if !r.trim().is_empty() => {
                    Ok(Some(HeldOut::none(groups, r.clone())))
                }
                _ => bail!("{what}: field `{f}` must hold either `ttft_mape`, `tpot_mape` and `point_count`, or a non-empty `reason` saying why there is no held-out error"),
            }
        };
        let leave_one_source_out = held("leave_one_source_out", &c.leave_one_source_out)?;
        let leave_one_model_out = held("leave_one_model_out", &c.leave_one_model_out)?;
        let runs = match &c.measurements {
            None => None,
            Some(_) if status == CalibrationStatus::Assumed => bail!(
                "{what}: field `calibration.measurements` belongs to a fitted profile, but `calibration.status` is \"assumed\""
            ),
            Some(ms) => {
                let mut runs: Vec<CalibratedRun> = Vec::new();
                for (i, m) in ms.iter().enumerate() {
                    let f = format!("calibration.measurements[{i}]");
                    let tp = u32::try_from(m.tp)
                        .ok()
                        .filter(|&t| t > 0)
                        .with_context(|| format!("{what}: field `{f}.tp` must be a positive integer, got {}", m.tp))?;
                    let dtype = WeightsDtype::parse(&m.weights_dtype)
                        .with_context(|| format!("{what}: field `{f}.weights_dtype`"))?;
                    for (k, v) in [
                        ("measured_ttft_ms", m.measured_ttft_ms),
                        ("measured_tpot_ms", m.measured_tpot_ms),
                    ] {
                        if !(v.is_finite() && v > 0.0) {
                            bail!("{what}: field `{f}.{k}` must be a positive number of milliseconds, got {v}");
                        }
                    }
                    let batch = match m.in_flight {
                        None => None,
                        Some(n) => Some(u32::try_from(n).ok().filter(|&n| n > 0).with_context(
                            || format!("{what}: field `{f}.in_flight` must be a positive integer, got {n}"),
                        )?),
                    };
                    let r = CalibratedRun {
                        instance: m.instance.clone(),
                        tp,
                        dtype,
                        batch,
                    };
                    if !runs.contains(&r) {
                        runs.push(r);
                    }
                }
                Some(runs)
            }
        };
        if status == CalibrationStatus::Fitted {
            if points.is_none() && runs.is_none() {
                bail!("{what}: field `calibration.points` is missing (needed when status is \"fitted\", unless `calibration.measurements` lists what was fitted)");
            }
            if fitted.is_empty() {
                bail!("{what}: field `calibration.fitted` is missing (needed when status is \"fitted\")");
            }
            if error.is_none() {
                bail!("{what}: field `calibration.ttft_mape` is missing (needed when status is \"fitted\")");
            }
        }
        Ok(Calibration {
            status,
            note: c.note.clone(),
            points,
            fitted,
            error,
            leave_one_source_out,
            leave_one_model_out,
            runs,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal valid profile, for tests here and elsewhere.
    pub(crate) const GOOD: &str = r#"
name = "test-profile"
description = "test"
kind = "neuron"
[sources]
doc = "https://example.org/chip (2025-01-01)"
fit = "Fitted on calibration/points.csv (2025-01-01)"
[chip]
name = "Chip"
cores = { value = 2, source = "doc" }
bf16_tflops = { value = 190, source = "doc" }
memory = { value = 32, unit = "GiB", source = "doc" }
memory_bandwidth = { value = 820, unit = "GiB/s", source = "doc" }
interconnect_bandwidth = { value = 192, unit = "GB/s", source = "doc" }
[runtime]
tp_unit = "NeuronCore"
tp_units_per_chip = { value = 2, source = "doc" }
tp_degrees = { value = [2, 4, 8, 12, 24], source = "doc" }
usable_memory_fraction = { value = 0.9, source = "doc" }
prefill_attention = "full"
[runtime.static_shapes]
bucket_min = { value = 128, source = "doc" }
seq_len_multiple = { value = 128, source = "doc" }
[latency]
bandwidth_efficiency = { value = 0.5, source = "fit" }
compute_efficiency = { value = 0.4, source = "fit" }
attention_efficiency = { value = 0.1, source = "fit" }
step_overhead_ms = { value = 3.0, source = "fit" }
prefill_overhead_ms = { value = 10.0, source = "fit" }
collective_latency_us = { value = 20.0, source = "fit" }
decode_seq_ms = { value = 0.0, source = "fit" }
[calibration]
status = "assumed"
note = "test values"
[[instances]]
name = "x.small"
accelerators = { value = 1, source = "doc" }
vcpus = { value = 4, source = "doc" }
host_memory = { value = 16, unit = "GiB", source = "doc" }
on_demand = { usd_per_hour = 0.75, region = "us-east-1", date = "2024-04-30", source = "doc" }
[[instances]]
name = "x.large"
accelerators = { value = 12, source = "doc" }
vcpus = { value = 192, source = "doc" }
host_memory = { value = 768, unit = "GiB", source = "doc" }
on_demand = { usd_per_hour = 12.981, region = "us-east-1", date = "2024-04-30", source = "doc" }
"#;

    fn parse(text: &str) -> Result<Profile> {
        Profile::parse(text, Path::new("profiles/test-profile.toml"))
    }

    fn err(text: &str) -> String {
        let e = parse(text).unwrap_err().to_string();
        assert!(!e.contains('\n'), "not one line: {e}");
        assert!(e.starts_with("profiles/test-profile.toml"), "{e}");
        e
    }

    #[test]
    fn sources_dates_names_and_shapes_are_checked() {
        let e = err(&GOOD.replace(
            "doc = \"https://example.org/chip (2025-01-01)\"",
            "doc = \"https://example.org/chip\"",
        ));
        assert!(
            e.contains("field `sources.doc` must give an address"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "doc = \"https://example.org/chip (2025-01-01)\"",
            "doc = \"x (2025-01-01)\"",
        ));
        assert!(e.contains("field `sources.doc`"), "{e}");
        // An assumption carries its reason, not an address.
        parse(&GOOD.replace("fit = ", "assume-x = \"reason\"\nfit = ")).unwrap();
        for bad in [
            "2024-13-01",
            "2024-02-30",
            "2023-02-29",
            "2024-4-30",
            "24-04-30",
        ] {
            let e = err(&GOOD.replacen("2024-04-30", bad, 1));
            assert!(e.contains("expected YYYY-MM-DD or YYYY-MM"), "{bad}: {e}");
        }
        parse(&GOOD.replacen("2024-04-30", "2024-02-29", 1)).unwrap();
        // Multi-byte characters next to digits are not dates and do not panic.
        assert!(!has_date("5 µs per step"));
        assert!(!has_date("µ2024-13µ"));
        assert!(has_date("µ2024-01-02µ"));
        parse(&GOOD.replacen("2024-04-30", "2024-12", 1)).unwrap();
        let e = err(&GOOD.replace("name = \"x.large\"", "name = \"X.small\""));
        assert!(e.contains("instance \"X.small\" is listed twice"), "{e}");
        let e = err(&GOOD.replace("name = \"x.large\"", "name = \" \""));
        assert!(
            e.contains("field `instances[1].name` must not be empty"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "note = \"test values\"",
            "note = \"test values\"\nttft_mape = 0.1\ntpot_mape = 0.1\npoint_count = 3",
        ));
        assert!(e.contains("belong to a fitted profile"), "{e}");
        let start = GOOD.find("[runtime.static_shapes]").unwrap();
        let end = GOOD[start..].find("[latency]").unwrap() + start;
        let e = err(&format!("{}{}", &GOOD[..start], &GOOD[end..]));
        assert!(e.contains("`[runtime.static_shapes]` is missing"), "{e}");
        let e = err(&GOOD.replace("kind = \"neuron\"", "kind = \"gpu\""));
        assert!(e.contains("is for Neuron profiles"), "{e}");
    }

    #[test]
    fn held_out_errors_are_a_number_or_a_reason() {
        let fitted = GOOD
            .replace("status = \"assumed\"", "status = \"fitted\"")
            .replace(
                "note = \"test values\"",
                "note = \"test values\"\npoints = \"calibration/points.csv\"\nfitted = [\"step_overhead_ms\"]\nttft_mape = 0.1\ntpot_mape = 0.1\npoint_count = 3",
            );
        let with =
            |extra: &str| fitted.replace("point_count = 3", &format!("point_count = 3\n{extra}"));
        let p = parse(&with(
            "leave_one_source_out = { groups = 1, reason = \"one source\" }\nleave_one_model_out = { ttft_mape = 0.2, tpot_mape = 0.3, point_count = 3, groups = 2 }",
        ))
        .unwrap();
        let s = p.calibration.leave_one_source_out.unwrap();
        assert!(s.error.is_none());
        assert_eq!((s.groups, s.reason.as_deref()), (1, Some("one source")));
        let m = p.calibration.leave_one_model_out.unwrap();
        assert_eq!(m.error.unwrap().tpot, 0.3);
        // Older profiles without them still load.
        assert!(parse(&fitted)
            .unwrap()
            .calibration
            .leave_one_source_out
            .is_none());
        for bad in [
            "leave_one_source_out = { groups = 2 }",
            "leave_one_source_out = { groups = 2, reason = \" \" }",
            "leave_one_source_out = { groups = 2, ttft_mape = 0.1, tpot_mape = 0.1 }",
            "leave_one_source_out = { groups = 2, ttft_mape = 0.1, tpot_mape = 0.1, point_count = 3, reason = \"x\" }",
            "leave_one_source_out = { groups = 2, ttft_mape = -0.1, tpot_mape = 0.1, point_count = 3 }",
        ] {
            let e = err(&with(bad));
            assert!(e.contains("field `calibration.leave_one_source_out`"), "{bad}: {e}");
        }
        let e = err(&GOOD.replace(
            "note = \"test values\"",
            "note = \"test values\"\nleave_one_model_out = { groups = 1, reason = \"x\" }",
        ));
        assert!(e.contains("belongs to a fitted profile"), "{e}");
    }

    #[test]
    fn a_profile_can_be_given_as_a_file() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles"));
        let file = dir.join("inf2-profile.toml");
        let p = load(dir, file.to_str().unwrap()).unwrap();
        assert_eq!(p.name, "inf2-profile");
        let e = load(dir, "/nonexistent/x.toml").unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn good_profile_loads_in_si_units() {
        let p = parse(GOOD).unwrap();
        assert_eq!(p.chip.memory_bytes, 32.0 * GIB);
        assert_eq!(p.chip.bf16_flops, 190e12);
        assert_eq!(p.natural_tp(&p.instances[1]), 24);
        assert_eq!(p.natural_tp(&p.instances[0]), 2);
        assert_eq!(
            p.field_sources["chip.bf16_tflops"],
            "https://example.org/chip (2025-01-01)"
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = err(&GOOD.replace(
            "prefill_attention = \"full\"",
            "prefill_attention = \"full\"\nbogus = 1",
        ));
        assert!(e.contains("bogus") && e.contains("line"), "{e}");
    }

    #[test]
    fn missing_field_is_named() {
        let e = err(&GOOD.replace("bf16_tflops = { value = 190, source = \"doc\" }\n", ""));
        assert!(e.contains("bf16_tflops"), "{e}");
    }

    #[test]
    fn zero_and_negative_prices_are_rejected() {
        let e = err(&GOOD.replace("usd_per_hour = 0.75", "usd_per_hour = 0.0"));
        assert!(e.contains("instances[0].on_demand.usd_per_hour"), "{e}");
        let e = err(&GOOD.replace("usd_per_hour = 12.981", "usd_per_hour = -1.0"));
        assert!(e.contains("instances[1].on_demand.usd_per_hour"), "{e}");
    }

    #[test]
    fn negative_rate_is_rejected() {
        let e = err(&GOOD.replace("value = 820,", "value = -820,"));
        assert!(e.contains("chip.memory_bandwidth"), "{e}");
        let e = err(&GOOD.replace(
            "value = 0.5, source = \"fit\"",
            "value = 1.5, source = \"fit\"",
        ));
        assert!(e.contains("latency.bandwidth_efficiency"), "{e}");
    }

    #[test]
    fn more_accelerators_than_tp_allows() {
        let e = err(&GOOD.replace("value = 12, source", "value = 16, source"));
        assert!(
            e.contains("instances[1].accelerators") && e.contains("24"),
            "{e}"
        );
    }

    #[test]
    fn unknown_source_key_is_named() {
        let e = err(&GOOD.replace(
            "cores = { value = 2, source = \"doc\" }",
            "cores = { value = 2, source = \"nope\" }",
        ));
        assert!(e.contains("chip.cores.source") && e.contains("nope"), "{e}");
    }

    #[test]
    fn name_must_match_file() {
        let e = err(&GOOD.replace("name = \"test-profile\"", "name = \"other\""));
        assert!(e.contains("`name`"), "{e}");
    }

    #[test]
    fn unknown_profile_lists_known_ones() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles");
        let e = load(Path::new(dir), "tpu-profile").unwrap_err().to_string();
        assert!(
            e.contains("tpu-profile") && e.contains("inf2-profile"),
            "{e}"
        );
        assert!(e.contains("h100-profile"), "{e}");
        assert!(load(Path::new(dir), "inf2").is_ok());
    }

    #[test]
    fn shipped_profiles_all_load() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles");
        let all = load_all(Path::new(dir)).unwrap();
        let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
        for want in [
            "inf2-profile",
            "trn1-profile",
            "trn2-profile",
            "a10g-profile",
            "l4-profile",
            "l40s-profile",
            "a100-profile",
            "h100-profile",
            "h200-profile",
            "trn3-profile",
            "b200-profile",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
    }

    #[test]
    fn tp_requests_are_checked() {
        let p = parse(GOOD).unwrap();
        assert!(p.check_tp(&p.instances[1], 8).is_ok());
        assert!(p.check_tp(&p.instances[1], 6).is_err());
        assert!(p.check_tp(&p.instances[0], 4).is_err());
    }

    #[test]
    fn host_profile_has_one_device() {
        let h = host_profile(1e11, 2e10, 16 << 30, "test cpu");
        assert_eq!(h.instances.len(), 1);
        assert_eq!(h.natural_tp(&h.instances[0]), 1);
        assert_eq!(h.chip.memory_bandwidth, 2e10);
    }
}
