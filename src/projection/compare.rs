//! `profiler compare`: every instance of the chosen profiles side by side, sorted by cost
//! per 1M tokens; with SLOs, the largest batch meeting them per instance (or why none
//! does); and a recommendation line.

use super::dtype::WeightsDtype;
use super::profile::{self, PriceKind, Profile};
use super::project::{check_compile, check_settings, natural_tp_for, project_one};
use super::project::{ProjectRequest, Projected};
use super::setting::{Setting, SettingError};
use crate::model::card::ModelCard;
use anyhow::{bail, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Latency objectives; `None` means unconstrained.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Slo {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
}

impl Slo {
    /// Whether any objective is set.
    pub fn is_set(&self) -> bool {
        self.ttft_ms.is_some() || self.tpot_ms.is_some()
    }

    fn met(&self, p: &Projected) -> bool {
        self.ttft_ms.is_none_or(|x| p.projection.ttft_ms <= x)
            && self.tpot_ms.is_none_or(|y| p.projection.tpot_ms <= y)
    }
}

/// Refuses a latency objective that is not a positive number of milliseconds.
pub fn check_slo_ms(ttft_ms: Option<f64>, tpot_ms: Option<f64>) -> Result<()> {
    for (setting, v) in [(Setting::SloTtftMs, ttft_ms), (Setting::SloTpotMs, tpot_ms)] {
        if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            bail!(SettingError::new(
                setting,
                " must be a positive number of milliseconds"
            ));
        }
    }
    Ok(())
}

/// What to compare.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareRequest {
    pub input_len: u32,
    pub output_len: u32,
    pub dtype: WeightsDtype,
    /// Batch used when no SLO is set.
    pub batch: u32,
    pub slo: Slo,
    pub price: PriceKind,
    /// Largest batch the SLO search tries.
    pub max_batch: u32,
    /// Compiled positions (`--seq-len`); by default input + output rounded up.
    pub seq_len: Option<u32>,
    /// Compiled batch / continuous-batching slots (`--max-num-seqs`): the SLO search stays
    /// within them, and on Neuron every decode step runs all of them.
    pub max_num_seqs: Option<u32>,
    /// Prompts per context-encoding call (`--ctx-batch-size`).
    pub ctx_batch_size: Option<u32>,
    /// Context-encoding and token-generation buckets (`--buckets`).
    pub buckets: Option<Vec<u32>>,
    /// Data-parallel replicas per instance (`--dp`); TP is the instance's natural degree for
    /// that many replicas.
    pub dp: u32,
    /// TP degree on every instance (`--neuron-config`); each instance's natural degree
    /// for the replicas when `None`.
    pub tp: Option<u32>,
    /// Expert-parallel degree inside the TP group (`--ep-degree`); a row whose TP degree it
    /// does not divide says so.
    pub ep: u32,
}

impl CompareRequest {
    /// Batch 1, no SLO, on-demand prices, SLO search up to batch 256.
    pub fn new(input_len: u32, output_len: u32, dtype: WeightsDtype) -> Self {
        CompareRequest {
            input_len,
            output_len,
            dtype,
            batch: 1,
            slo: Slo::default(),
            price: PriceKind::OnDemand,
            max_batch: 256,
            seq_len: None,
            max_num_seqs: None,
            ctx_batch_size: None,
            buckets: None,
            dp: 1,
            tp: None,
            ep: 1,
        }
    }

    /// The projection request of one row at its TP degree.
    fn project_request(&self, tp: u32) -> ProjectRequest {
        let mut p = ProjectRequest::new(self.input_len, self.output_len, self.dtype);
        p.tp = Some(tp);
        p.batch = if self.slo.is_set() { 1 } else { self.batch };
        p.price = self.price;
        p.seq_len = self.seq_len;
        p.max_num_seqs = self.max_num_seqs;
        p.ctx_batch_size = self.ctx_batch_size;
        p.buckets = self.buckets.clone();
        p.dp = self.dp.max(1);
        p.ep = self.ep;
        p
    }
}

/// One instance in the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CompareRow {
    /// The projection at the chosen batch (the SLO batch when one is found).
    #[serde(flatten)]
    pub projected: Projected,
    /// Whether the row meets the SLOs (true when none is set and the model fits).
    pub meets_slo: bool,
    /// Why the row is not usable, when it is not.
    pub reason: Option<String>,
    /// `reason` with the settings it names kept, for the command line to name them as the
    /// user gave them (`reason` names them by their keys).
    #[serde(skip)]
    pub reason_settings: Option<SettingError>,
}

impl CompareReport {
    /// Rewrites each row's reason with its settings named by `name`.
    pub fn name_settings(&mut self, name: &dyn Fn(&SettingError) -> String) {
        for r in &mut self.rows {
            if let Some(s) = &r.reason_settings {
                r.reason = Some(name(s));
            }
        }
    }
}

/// Result of `profiler compare` (JSON schema version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CompareReport {
    pub schema_version: u32,
    pub model: String,
    pub model_parameters: u64,
    pub input_len: u32,
    pub output_len: u32,
    pub weights_dtype: String,
    pub price_kind: String,
    pub slo: Slo,
    /// Sorted: usable rows by cost per 1M tokens, then the rest.
    pub rows: Vec<CompareRow>,
    pub recommendation: String,
    /// Whether the projection ranks the two cheapest usable rows apart: their cost
    /// intervals overlap or not (`None` with fewer than two priced usable rows).
    #[serde(default)]
    pub ranking: Option<String>,
}

/// Says whether the cost intervals (per 1M tokens) of the two cheapest usable rows overlap,
/// in which case the projection does not decide which is cheaper.
pub fn ranking_note(rows: &[CompareRow]) -> Option<String> {
    let mut usable = rows.iter().filter(|r| sort_key(r).0 == 0);
    let (a, b) = (usable.next()?, usable.next()?);
    let (ia, ib) = (
        a.projected.projection.intervals.cost()?,
        b.projected.projection.intervals.cost()?,
    );
    let (da, db) = (describe(&a.projected), describe(&b.projected));
    Some(if super::interval::overlap(ia, ib) {
        format!(
            "Ranking not decided: the cost intervals of {da} (${:.2}–${:.2}) and {db} (${:.2}–${:.2} per 1M tokens) overlap.",
            ia.0, ia.1, ib.0, ib.1
        )
    } else {
        format!(
            "Ranking decided: {da} costs less than {db} at every point of their intervals (${:.2}–${:.2} against ${:.2}–${:.2} per 1M tokens).",
            ia.0, ia.1, ib.0, ib.1
        )
    })
}

fn describe(p: &Projected) -> String {
    format!(
        "{} ({}, TP {}, batch {})",
        p.projection.instance, p.projection.profile, p.projection.tp, p.projection.batch
    )
}

/// Largest batch in `1..=hi` meeting `slo` (TTFT and TPOT grow with the batch, so the set of
/// good batches is a prefix): binary search.
fn slo_batch(hi: u32, eval: &impl Fn(u32) -> Projected, slo: &Slo) -> Option<Projected> {
    let first = eval(1);
    if !slo.met(&first) {
        return None;
    }
    let (mut lo, mut hi, mut best) = (1u32, hi.max(1), first);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        let p = eval(mid);
        if slo.met(&p) {
            lo = mid;
            best = p;
        } else {
            hi = mid - 1;
        }
    }
    Some(best)
}

fn row(card: &ModelCard, profile: &Profile, inst_idx: usize, req: &CompareRequest) -> CompareRow {
    let inst = &profile.instances[inst_idx];
    let tp = req
        .tp
        .unwrap_or_else(|| natural_tp_for(profile, inst, req.dp));
    let preq = req.project_request(tp);
    let eval = |b: u32| project_one(card, profile, inst, tp, b, &preq);
    let base = eval(preq.batch.max(1));
    // Settings this instance cannot run (replicas beyond it, a prompt beyond its buckets):
    // listed with the reason, not ranked.
    if let Err(e) = check_compile(card, profile, inst, tp, &preq) {
        let why = SettingError::from_chain(&e);
        return CompareRow {
            projected: base,
            meets_slo: false,
            reason: Some(why.to_string()),
            reason_settings: Some(why),
        };
    }
    if !base.projection.fits {
        let reason = base.projection.notes.first().cloned();
        return CompareRow {
            projected: base,
            meets_slo: false,
            reason,
            reason_settings: None,
        };
    }
    if !req.slo.is_set() {
        return CompareRow {
            projected: base,
            meets_slo: true,
            reason: None,
            reason_settings: None,
        };
    }
    let hi = base
        .max_batch_that_fits
        .min(req.max_batch)
        .min(req.max_num_seqs.unwrap_or(u32::MAX))
        .max(1);
    match slo_batch(hi, &eval, &req.slo) {
        Some(p) => CompareRow {
            projected: p,
            meets_slo: true,
            reason: None,
            reason_settings: None,
        },
        None => {
            let x = &base.projection;
            let mut why = Vec::new();
            if let Some(t) = req.slo.ttft_ms.filter(|t| x.ttft_ms > *t) {
                why.push(format!("TTFT at batch 1 is {:.0} ms > {t} ms", x.ttft_ms));
            }
            if let Some(t) = req.slo.tpot_ms.filter(|t| x.tpot_ms > *t) {
                why.push(format!("TPOT at batch 1 is {:.1} ms > {t} ms", x.tpot_ms));
            }
            CompareRow {
                projected: base,
                meets_slo: false,
                reason: Some(why.join("; ")),
                reason_settings: None,
            }
        }
    }
}

/// Usable rows first, by cost per 1M tokens (rows without a price after priced ones).
fn sort_key(r: &CompareRow) -> (u8, f64) {
    let c = r.projected.projection.cost_usd_per_million_tokens;
    let class = match (r.meets_slo, c.is_some()) {
        (true, true) => 0,
        (true, false) => 1,
        (false, _) if r.projected.projection.fits => 2,
        _ => 3,
    };
    (class, c.unwrap_or(f64::MAX))
}

/// Compares `card` on every instance of `profiles`.
pub fn compare_profiles(
    card: &ModelCard,
    profiles: &[Profile],
    req: &CompareRequest,
) -> Result<CompareReport> {
    if req.input_len == 0 || req.output_len == 0 || req.batch == 0 {
        bail!(SettingError::new(Setting::InputLen, ", ")
            .then(Setting::OutputLen, " and ")
            .then(Setting::Batch, " must be positive"));
    }
    super::project::check_positions(card, req.input_len, req.output_len)?;
    if req.dp == 0 {
        bail!(SettingError::new(Setting::Dp, " must be at least 1"));
    }
    check_settings(&req.project_request(1))?;
    check_slo_ms(req.slo.ttft_ms, req.slo.tpot_ms)?;
    let mut rows: Vec<CompareRow> = profiles
        .iter()
        .flat_map(|p| (0..p.instances.len()).map(move |i| (p, i)))
        .map(|(p, i)| row(card, p, i, req))
        .collect();
    rows.sort_by(|a, b| {
        let (ca, xa) = sort_key(a);
        let (cb, xb) = sort_key(b);
        ca.cmp(&cb).then(xa.total_cmp(&xb))
    });
    let recommendation = match rows.iter().find(|r| sort_key(r).0 == 0) {
        Some(r) => {
            let x = &r.projected.projection;
            format!(
                "Recommendation: {} at ${:.2} per 1M tokens (${:.2} per 1M output tokens), TTFT {:.0} ms, TPOT {:.1} ms{} (projected, not measured).",
                describe(&r.projected),
                x.cost_usd_per_million_tokens.unwrap_or(f64::NAN),
                x.cost_usd_per_million_output_tokens.unwrap_or(f64::NAN),
                x.ttft_ms,
                x.tpot_ms,
                if req.slo.is_set() { ", largest batch within the SLOs" } else { "" }
            )
        }
        None if rows.iter().any(|r| r.meets_slo) => {
            "No priced instance meets the request; the usable ones have no price of this kind.".into()
        }
        None if req.slo.is_set() => {
            "No instance meets the SLOs: see each row's reason (a lower TP degree never helps; try a smaller model, int8/fp8 weights or looser SLOs).".into()
        }
        None => "No instance fits the model: see each row's memory.".into(),
    };
    let ranking = ranking_note(&rows);
    Ok(CompareReport {
        schema_version: 1,
        model: card.name.clone(),
        model_parameters: card.architecture.parameter_count(),
        input_len: req.input_len,
        output_len: req.output_len,
        weights_dtype: req.dtype.name().to_string(),
        price_kind: req.price.name().to_string(),
        slo: req.slo,
        rows,
        recommendation,
        ranking,
    })
}

/// `profiler compare`: loads the profiles named by `selection` (`all` or a comma list).
pub fn compare(
    profiles_dir: &Path,
    card: &ModelCard,
    selection: &str,
    req: &CompareRequest,
) -> Result<CompareReport> {
    let profiles = profile::load_selection(profiles_dir, selection)?;
    compare_profiles(card, &profiles, req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::card;
    use std::path::PathBuf;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn run(model: &str, sel: &str, req: &CompareRequest) -> CompareReport {
        let c = card::find(&root().join("models"), model).unwrap();
        compare(&root().join("profiles"), &c, sel, req).unwrap()
    }

    #[test]
    fn rows_sorted_by_cost_and_unfit_last() {
        let r = run(
            "llama-3.1-70b",
            "all",
            &CompareRequest::new(512, 256, WeightsDtype::Bf16),
        );
        let keys: Vec<(u8, f64)> = r.rows.iter().map(sort_key).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{keys:?}");
        let small = r
            .rows
            .iter()
            .find(|x| x.projected.projection.instance == "inf2.xlarge")
            .unwrap();
        assert!(!small.projected.projection.fits && small.reason.is_some());
        assert!(
            r.recommendation.starts_with("Recommendation: "),
            "{}",
            r.recommendation
        );
        // Every instance of every shipped profile (trn2.3xlarge, trn2u.48xlarge, the Trn3
        // server and p6-b200.48xlarge included).
        assert_eq!(r.rows.len(), 25);
    }

    #[test]
    fn slo_search_finds_the_largest_batch() {
        let mut req = CompareRequest::new(256, 256, WeightsDtype::Bf16);
        req.slo.tpot_ms = Some(40.0);
        let r = run("llama-3.1-8b", "inf2-profile", &req);
        let row = r
            .rows
            .iter()
            .find(|x| x.projected.projection.instance == "inf2.48xlarge")
            .unwrap();
        assert!(row.meets_slo);
        let b = row.projected.projection.batch;
        assert!(b > 1 && row.projected.projection.tpot_ms <= 40.0);
        // One more sequence breaks the SLO or the memory (or hits the search cap).
        let c = card::find(&root().join("models"), "llama-3.1-8b").unwrap();
        let p = profile::load(&root().join("profiles"), "inf2-profile").unwrap();
        let inst = p.instance("inf2.48xlarge").unwrap();
        let mut preq = ProjectRequest::new(256, 256, WeightsDtype::Bf16);
        preq.tp = Some(24);
        let next = project_one(&c, &p, inst, 24, b + 1, &preq);
        assert!(next.projection.tpot_ms > 40.0 || !next.projection.fits || b == 256);
    }

    #[test]
    fn ranking_says_whether_the_cost_intervals_overlap() {
        let req = CompareRequest::new(128, 128, WeightsDtype::Bf16);
        let r = run("llama-3.1-8b", "inf2-profile,trn1-profile", &req);
        let mut rows = r.rows.clone();
        let usable: Vec<usize> = (0..rows.len())
            .filter(|&i| sort_key(&rows[i]).0 == 0)
            .take(2)
            .collect();
        let set = |row: &mut CompareRow, lo: f64, hi: f64| {
            let i = &mut row.projected.projection.intervals;
            i.cost_usd_per_million_tokens_low = Some(lo);
            i.cost_usd_per_million_tokens_high = Some(hi);
        };
        set(&mut rows[usable[0]], 1.0, 2.0);
        set(&mut rows[usable[1]], 1.5, 3.0);
        let note = ranking_note(&rows).unwrap();
        assert!(
            note.starts_with("Ranking not decided") && note.contains("($1.00–$2.00)"),
            "{note}"
        );
        set(&mut rows[usable[1]], 2.5, 3.0);
        let note = ranking_note(&rows).unwrap();
        assert!(note.starts_with("Ranking decided"), "{note}");
        // The report carries it; with one priced usable row there is nothing to rank.
        assert!(r.ranking.is_some());
        let one = run("llama-3.1-8b", "trn2-profile", &req);
        assert_eq!(one.ranking, None);
    }

    #[test]
    fn impossible_slo_gives_reasons() {
        let mut req = CompareRequest::new(128, 128, WeightsDtype::Bf16);
        req.slo.ttft_ms = Some(0.001);
        let r = run("llama-3.1-8b", "inf2-profile,trn1", &req);
        assert!(r.rows.iter().all(|x| !x.meets_slo));
        assert!(r
            .rows
            .iter()
            .filter(|x| x.projected.projection.fits)
            .all(|x| x.reason.as_deref().unwrap().contains("TTFT at batch 1")));
        assert!(
            r.recommendation.starts_with("No instance meets the SLOs"),
            "{}",
            r.recommendation
        );
    }

    #[test]
    fn compile_settings_bound_the_search_and_name_what_an_instance_cannot_run() {
        let mut req = CompareRequest::new(1500, 250, WeightsDtype::Bf16);
        req.slo.tpot_ms = Some(1000.0);
        req.max_num_seqs = Some(8);
        req.seq_len = Some(2048);
        req.dp = 3;
        let r = run("llama-3.1-8b", "inf2-profile", &req);
        let get = |name: &str| {
            r.rows
                .iter()
                .find(|x| x.projected.projection.instance == name)
                .unwrap()
        };
        // 24 NeuronCores hold 3 replicas of TP 8; the loose SLO fills the 8 slots, no more.
        let big = get("inf2.48xlarge");
        assert!(big.meets_slo, "{:?}", big.reason);
        assert_eq!(big.projected.projection.tp, 8);
        assert_eq!(big.projected.dp, 3);
        assert_eq!(big.projected.projection.batch, 8);
        assert_eq!(big.projected.kv_cache_len, 2048);
        // Two NeuronCores cannot hold three replicas: listed, not ranked, with the numbers.
        let small = get("inf2.xlarge");
        assert!(!small.meets_slo);
        let why = small.reason.as_deref().unwrap();
        // The command line names the settings by their flags.
        let named = small.reason_settings.as_ref().unwrap().with_flags();
        assert!(named.starts_with("--dp 3 × --tp "), "{named}");
        assert!(
            why.starts_with("dp 3 × tp ") && why.contains("inf2.xlarge"),
            "{why}"
        );
        assert_eq!(sort_key(small).0, 2);
        // A compiled length below the request is refused for every instance at once.
        let mut bad = CompareRequest::new(1500, 250, WeightsDtype::Bf16);
        bad.seq_len = Some(1024);
        let c = card::find(&root().join("models"), "llama-3.1-8b").unwrap();
        let e = compare(&root().join("profiles"), &c, "inf2-profile", &bad)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("seq_len 1024 is below"), "{e}");
    }
}
