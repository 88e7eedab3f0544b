//! NxD Inference's `benchmark_report.json`, written by `inference_demo --benchmark`
//! (aws-neuron/neuronx-distributed-inference `utils/benchmark.py`, `generate_report`): per
//! sub-model (`e2e_model`, `context_encoding_model`, `token_generation_model`, …) the
//! latency percentiles `latency_ms_p50` … `latency_ms_p100`, `latency_ms_avg` and a
//! `throughput`. Each of 20 runs generates from one static batch of the compiled size.

use super::{field, latency, FileSettings, MeasuredLoad, Measurement, Observed, Stat, Tool};
use serde_json::Value;

/// The sub-models a report may hold; any of them tells the format.
pub(super) const SUB_MODELS: [&str; 5] = [
    "e2e_model",
    "context_encoding_model",
    "token_generation_model",
    "speculation_model",
    "medusa_speculation_model",
];

/// One [`Measurement`] of a static batch.
///
/// TTFT ≈ the context-encoding model's p50 (one prefill of the batch) and TPOT ≈ the
/// token-generation model's p50 (one decode step of the batch), each a median over the
/// sub-model's forward calls; host-side sampling and scheduling between calls are not in
/// them. The report holds neither the batch size nor the lengths: they are left as
/// `StaticBatch { batch: 0 }` and 0 tokens, listed by [`Measurement::missing`], for the
/// command to fill from the compiled configuration (`--batch-size`, `--max-context-length`,
/// `--seq-len` of `inference_demo`).
pub(super) fn read(doc: &Value, file: &str) -> Result<Vec<Measurement>, String> {
    for key in ["context_encoding_model", "token_generation_model"] {
        if field(doc, key).is_none() {
            return Err(format!(
                "field {key} is missing: the report must come from `inference_demo --benchmark` \
                 with the default target (all), which times the sub-models"
            ));
        }
    }
    let ttft = latency(doc, "context_encoding_model.latency_ms_p50", 1.0)?;
    let tpot = latency(doc, "token_generation_model.latency_ms_p50", 1.0)?;
    let mut notes = vec![
        "TTFT is the context-encoding model's p50 latency and TPOT the token-generation \
         model's p50 (one decode step), as NxD Inference times its sub-models"
            .to_string(),
        "the report holds no batch size and no lengths: the command must give them".to_string(),
    ];
    if let Some(e2e) = super::opt_number(doc, "e2e_model.latency_ms_p50")? {
        notes.push(format!("end-to-end p50 {e2e:.1} ms per generate call"));
    }
    Ok(vec![Measurement {
        file: file.to_string(),
        tool: Tool::NxdInference,
        label: "static batch (inference_demo --benchmark)".into(),
        model: None,
        load: MeasuredLoad::StaticBatch { batch: 0 },
        input_tokens: 0.0,
        output_tokens: 0.0,
        requests: None,
        per_request: Vec::new(),
        ttft: Observed {
            ms: ttft,
            stat: Stat::Median,
        },
        tpot: Observed {
            ms: tpot,
            stat: Stat::Median,
        },
        output_tokens_per_s: None,
        date: None,
        settings: FileSettings::default(),
        notes,
    }])
}
