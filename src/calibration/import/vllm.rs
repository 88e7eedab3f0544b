//! `vllm bench serve --save-result` JSON (`vllm/benchmarks/serve.py`; earlier
//! `benchmarks/benchmark_serving.py`, same keys): the traffic settings (`request_rate`,
//! `burstiness`, `max_concurrency`), totals, and per-metric `mean_*` / `median_*` / `p99_*`
//! figures in ms; `--save-detailed` adds per-request lists (`input_lens`, `output_lens`,
//! `ttfts`, `itls`, `start_times`, `errors`). `--append-result` writes one result a line.

use super::{
    field, latency, number, opt_number, parse_json, positive, rate, relative, text_at, whole,
    whole_of, FileSettings, MeasuredLoad, Measurement, Observed, RequestShape, Stat, Tool,
};
use serde_json::Value;

/// One result. `line` numbers it in a file of appended results.
///
/// Load: a finite `request_rate` is an open loop with vLLM's gamma `burstiness` (absent in
/// old files, which were always Poisson: 1; `Infinity`: evenly spaced); an infinite rate
/// (`"inf"`) is a closed loop of `max_concurrency`, or every request at once without a cap
/// (or with one at or above the number of requests).
/// TPOT is `median_tpot_ms`: vLLM's TPOT is (latency − TTFT) / (output tokens − 1) per
/// request, the first token excluded, as [`Measurement::tpot`] wants.
pub(super) fn read(doc: &Value, file: &str, line: Option<usize>) -> Result<Measurement, String> {
    let at = |e: String| match line {
        Some(n) => format!("line {n}: {e}"),
        None => e,
    };
    let completed = whole(doc, "completed", 1).map_err(at)?;
    let failed = opt_number(doc, "failed").map_err(at)?.unwrap_or(0.0);
    let sent = opt_number(doc, "num_prompts")
        .map_err(at)?
        .and_then(|n| whole_of(n, 1))
        .unwrap_or(completed + whole_of(failed, 0).unwrap_or(0));
    let per_request = per_request(doc).map_err(at)?;
    let mut notes = Vec::new();
    let (load, label) = load(doc, sent, &per_request, &mut notes).map_err(at)?;
    let total_in = number(doc, "total_input_tokens").map_err(at)?;
    let total_out = number(doc, "total_output_tokens").map_err(at)?;
    let mean = |total: f64, name: &str| {
        let per = total / completed as f64;
        (per.is_finite() && per >= 1.0)
            .then_some(per)
            .ok_or_else(|| {
                at(format!(
                "field {name} is {total} over {completed} requests, expected at least 1 token each"
            ))
            })
    };
    let label = match line {
        Some(n) => format!("line {n}: {label}"),
        None => label,
    };
    Ok(Measurement {
        file: file.to_string(),
        tool: Tool::VllmBenchServe,
        label,
        model: text_at(doc, "model_id"),
        load,
        input_tokens: mean(total_in, "total_input_tokens")?,
        output_tokens: mean(total_out, "total_output_tokens")?,
        requests: Some(completed),
        per_request,
        ttft: Observed {
            ms: latency(doc, "median_ttft_ms", 1.0).map_err(at)?,
            stat: Stat::Median,
        },
        tpot: Observed {
            ms: latency(doc, "median_tpot_ms", 1.0).map_err(at)?,
            stat: Stat::Median,
        },
        output_tokens_per_s: opt_number(doc, "output_throughput")
            .map_err(at)?
            .and_then(positive),
        date: text_at(doc, "date").and_then(|d| date_of(&d)),
        settings: FileSettings::default(),
        notes,
    })
}

/// Results written one a line by `--append-result`.
pub(super) fn appended(text: &str, file: &str) -> Result<Vec<Measurement>, String> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let doc = parse_json(l).map_err(|e| format!("line {}: {e}", i + 1))?;
        out.push(read(&doc, file, Some(i + 1))?);
    }
    Ok(out)
}

/// The load and its label.
fn load(
    doc: &Value,
    sent: u64,
    per_request: &[RequestShape],
    notes: &mut Vec<String>,
) -> Result<(MeasuredLoad, String), String> {
    let cap =
        match opt_number(doc, "max_concurrency")? {
            None => None,
            Some(c) => Some(whole_of(c, 1).ok_or_else(|| {
                format!("field max_concurrency is {c}, expected a whole number ≥ 1")
            })? as u32),
        };
    if let Some(strategy) = text_at(doc, "ramp_up_strategy") {
        if per_request.iter().all(|r| r.start_s.is_some()) && !per_request.is_empty() {
            notes.push(format!(
                "a {strategy} ramp-up of the request rate: replayed at the recorded send times"
            ));
            return Ok((MeasuredLoad::Trace, format!("{strategy} ramp-up, as sent")));
        }
        return Err(format!(
            "field ramp_up_strategy is {strategy}: a ramp-up has no single rate; save the \
             benchmark with --save-detailed so that its send times (start_times) are kept"
        ));
    }
    let r = number(doc, "request_rate")?;
    if r.is_infinite() && r > 0.0 {
        return Ok(match cap {
            // A cap above the number of requests sent them all at once.
            Some(c) if u64::from(c) < sent => (
                MeasuredLoad::Concurrency { concurrency: c },
                format!("max concurrency {c}"),
            ),
            Some(_) | None => {
                let n = u32::try_from(sent).unwrap_or(u32::MAX);
                (
                    MeasuredLoad::Concurrency { concurrency: n },
                    format!("all {n} requests at once"),
                )
            }
        });
    }
    let r = rate(doc, "request_rate")?;
    let burstiness = match opt_number(doc, "burstiness")? {
        None => Some(1.0),
        Some(b) if b.is_infinite() && b > 0.0 => None,
        Some(b) => Some(
            positive(b)
                .ok_or_else(|| format!("field burstiness is {b}, expected a value above 0"))?,
        ),
    };
    if let Some(c) = cap {
        notes.push(format!(
            "max_concurrency {c} also capped the requests in flight"
        ));
    }
    let shape = match burstiness {
        Some(1.0) => "Poisson".to_string(),
        Some(b) => format!("burstiness {}", super::num_label(b)),
        None => "evenly spaced".to_string(),
    };
    Ok((
        MeasuredLoad::Rate {
            rate: r,
            burstiness,
        },
        format!("{} req/s, {shape}", super::num_label(r)),
    ))
}

/// The successful requests' lengths and send times, where `--save-detailed` kept them.
fn per_request(doc: &Value) -> Result<Vec<RequestShape>, String> {
    let (Some(ins), Some(outs)) = (
        field(doc, "input_lens").and_then(Value::as_array),
        field(doc, "output_lens").and_then(Value::as_array),
    ) else {
        return Ok(Vec::new());
    };
    if ins.len() != outs.len() {
        return Err(format!(
            "field input_lens holds {} requests and output_lens {}, expected as many",
            ins.len(),
            outs.len()
        ));
    }
    let starts = field(doc, "start_times").and_then(Value::as_array);
    let errors = field(doc, "errors").and_then(Value::as_array);
    let mut shapes = Vec::new();
    let mut times = Vec::new();
    for i in 0..ins.len() {
        let failed = match errors.and_then(|e| e.get(i)) {
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Null) | None => false,
            Some(_) => true,
        };
        let path = |name: &str| format!("{name}.{i}");
        let output = number(doc, &path("output_lens"))?;
        if failed || output == 0.0 {
            continue;
        }
        let prompt = whole(doc, &path("input_lens"), 0)?;
        let output = whole(doc, &path("output_lens"), 1)?;
        let start = match starts {
            Some(s) if s.len() == ins.len() => Some(number(doc, &path("start_times"))?),
            _ => None,
        };
        shapes.push(RequestShape {
            prompt: u32::try_from(prompt).unwrap_or(u32::MAX),
            output: u32::try_from(output).unwrap_or(u32::MAX),
            start_s: None,
        });
        times.extend(start);
    }
    if times.len() == shapes.len() {
        for (shape, t) in shapes.iter_mut().zip(relative(&times)) {
            shape.start_s = Some(t);
        }
    }
    Ok(shapes)
}

/// `YYYY-MM-DD` from vLLM's `%Y%m%d-%H%M%S` date.
fn date_of(d: &str) -> Option<String> {
    let digits = d
        .get(..8)
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))?;
    Some(format!(
        "{}-{}-{}",
        &digits[..4],
        &digits[4..6],
        &digits[6..8]
    ))
}
