//! LLMPerf's `*_summary.json` (ray-project/llmperf `token_benchmark_ray.py`): the run's
//! settings (`model`, `num_concurrent_requests`, `mean_input_tokens`, …) and its results
//! flattened to `results_<metric>_<stat>` keys, times in seconds.

use super::{
    latency, opt_number, positive, text_at, tokens, whole, whole_of, FileSettings, MeasuredLoad,
    Measurement, Observed, Stat, Tool,
};
use serde_json::Value;

/// One [`Measurement`]: a closed loop of `num_concurrent_requests`.
///
/// LLMPerf's `inter_token_latency_s` of a request is its end-to-end latency over its output
/// tokens, the first token (its TTFT) included, so it is not a TPOT. TPOT is derived
/// instead as (mean e2e − mean TTFT) / (mean output tokens − 1), a ratio of means (the file
/// holds no per-request pairs), marked [`Stat::Mean`], and a note says so.
pub(super) fn read(doc: &Value, file: &str) -> Result<Vec<Measurement>, String> {
    let c = whole(doc, "num_concurrent_requests", 1)?;
    let c = u32::try_from(c).unwrap_or(u32::MAX);
    let e2e = latency(doc, "results_end_to_end_latency_s_mean", 1000.0)?;
    let ttft_mean = latency(doc, "results_ttft_s_mean", 1000.0)?;
    let output_tokens = tokens(doc, "results_number_output_tokens_mean")?;
    if output_tokens <= 1.0 {
        return Err(format!(
            "field results_number_output_tokens_mean is {output_tokens}, expected more than 1 \
             token to derive a TPOT"
        ));
    }
    let tpot = positive((e2e - ttft_mean) / (output_tokens - 1.0)).ok_or_else(|| {
        format!(
            "fields results_end_to_end_latency_s_mean ({}) and results_ttft_s_mean ({}) leave \
             no decode time, expected e2e above TTFT",
            e2e / 1000.0,
            ttft_mean / 1000.0
        )
    })?;
    let itl = opt_number(doc, "results_inter_token_latency_s_mean")?;
    let mut notes = vec![format!(
        "LLMPerf's inter-token latency includes the first token (e2e / output tokens{}); TPOT \
         is derived as (mean e2e − mean TTFT) / (mean output tokens − 1) = {tpot:.2} ms, a \
         ratio of means",
        itl.map(|s| format!(", mean {:.2} ms", s * 1000.0))
            .unwrap_or_default()
    )];
    let errors = opt_number(doc, "results_number_errors")?.unwrap_or(0.0);
    if errors > 0.0 {
        notes.push(format!(
            "{errors} requests failed; the figures are of the others"
        ));
    }
    Ok(vec![Measurement {
        file: file.to_string(),
        tool: Tool::LlmPerf,
        label: format!("{c} concurrent requests"),
        model: text_at(doc, "model"),
        load: MeasuredLoad::Concurrency { concurrency: c },
        input_tokens: tokens(doc, "results_number_input_tokens_mean")?,
        output_tokens,
        requests: opt_number(doc, "results_num_completed_requests")?.and_then(|n| whole_of(n, 0)),
        per_request: Vec::new(),
        ttft: Observed {
            ms: latency(doc, "results_ttft_s_quantiles_p50", 1000.0)?,
            stat: Stat::Median,
        },
        tpot: Observed {
            ms: tpot,
            stat: Stat::Mean,
        },
        output_tokens_per_s: opt_number(doc, "results_mean_output_throughput_token_per_s")?
            .and_then(positive),
        date: opt_number(doc, "timestamp")?.and_then(super::date_of_unix),
        settings: FileSettings::default(),
        notes,
    }])
}
