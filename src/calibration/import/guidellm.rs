//! GuideLLM's JSON report (`guidellm benchmark run --outputs report.json`, 0.8.x): a
//! `benchmarks` list, one per load of the run (a sweep holds several), each with its
//! scheduling `config.strategy`, summary `metrics` (`successful` / `errored` / … figures of
//! each metric) and, unless sampled away, the `requests` themselves.

use super::{
    field, latency, median, opt_number, positive, rate, relative, text_at, tokens, whole, whole_of,
    FileSettings, MeasuredLoad, Measurement, Observed, RequestShape, Stat, Tool,
};
use serde_json::Value;

/// One [`Measurement`] per benchmark.
///
/// TTFT is the median over successful requests of `time_to_first_token_ms`. TPOT is the
/// median over successful requests of `inter_token_latency_ms`, GuideLLM's (last token −
/// first token) / (output tokens − 1), the first token excluded; not its
/// `time_per_output_token_ms`, which spreads the TTFT over the tokens too. Both medians are
/// computed here from the requests, per request; only where the report kept no request is
/// GuideLLM's own summary median used, whose inter-token latency is over all tokens (each
/// request weighted by its tokens) — a note says so.
pub(super) fn read(doc: &Value, file: &str) -> Result<Vec<Measurement>, String> {
    let benchmarks = field(doc, "benchmarks")
        .and_then(Value::as_array)
        .ok_or_else(|| "field benchmarks is missing or not a list".to_string())?;
    let n = benchmarks.len();
    let default_model = text_at(doc, "config.spec.backend.model");
    benchmarks
        .iter()
        .enumerate()
        .map(|(i, b)| {
            one(b, file, default_model.clone())
                .map(|mut m| {
                    m.label = format!("benchmark {} of {n}: {}", i + 1, m.label);
                    m
                })
                .map_err(|e| format!("benchmark {}: {e}", i + 1))
        })
        .collect()
}

fn one(b: &Value, file: &str, default_model: Option<String>) -> Result<Measurement, String> {
    let successful = whole(b, "metrics.request_totals.successful", 1)?;
    let requests = field(b, "requests.successful")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let (load, label) = load(b, successful)?;
    let mut notes = Vec::new();
    let (ttft, tpot) = if requests.is_empty() {
        notes.push(
            "the report kept no request: TTFT and TPOT are GuideLLM's summary medians, its \
             inter-token latency taken over all tokens rather than per request"
                .to_string(),
        );
        (
            latency(b, "metrics.time_to_first_token_ms.successful.median", 1.0)?,
            latency(b, "metrics.inter_token_latency_ms.successful.median", 1.0)?,
        )
    } else {
        let ttfts = per(requests, "time_to_first_token_ms")?;
        let itls = per(requests, "inter_token_latency_ms")?;
        let m = |v: Vec<f64>, name: &str| {
            median(v).and_then(positive).ok_or_else(|| {
                format!("no successful request has a {name} above 0 (was it streamed?)")
            })
        };
        (
            m(ttfts, "time_to_first_token_ms")?,
            m(itls, "inter_token_latency_ms")?,
        )
    };
    let mut shapes = Vec::new();
    let mut starts = Vec::new();
    for (j, r) in requests.iter().enumerate() {
        let at = |e: String| format!("requests.successful.{j}: {e}");
        let prompt = whole(r, "prompt_tokens", 0).map_err(at)?;
        let output = whole(r, "output_tokens", 0).map_err(at)?;
        shapes.push(RequestShape {
            prompt: u32::try_from(prompt).unwrap_or(u32::MAX),
            output: u32::try_from(output).unwrap_or(u32::MAX),
            start_s: None,
        });
        starts.extend(
            opt_number(r, "request_start_time")
                .map_err(at)?
                .or(opt_number(r, "info.timings.request_start").map_err(at)?),
        );
    }
    if starts.len() == shapes.len() {
        for (s, t) in shapes.iter_mut().zip(relative(&starts)) {
            s.start_s = Some(t);
        }
    }
    Ok(Measurement {
        file: file.to_string(),
        tool: Tool::GuideLlm,
        label,
        model: text_at(b, "config.backend.model").or(default_model),
        load,
        input_tokens: tokens(b, "metrics.prompt_token_count.successful.mean")?,
        output_tokens: tokens(b, "metrics.output_token_count.successful.mean")?,
        requests: Some(successful),
        per_request: shapes,
        ttft: Observed {
            ms: ttft,
            stat: Stat::Median,
        },
        tpot: Observed {
            ms: tpot,
            stat: Stat::Median,
        },
        output_tokens_per_s: opt_number(b, "metrics.output_tokens_per_second.successful.mean")?
            .and_then(positive),
        date: opt_number(b, "start_time")?.and_then(super::date_of_unix),
        settings: FileSettings::default(),
        notes,
    })
}

/// The successful requests' values of `key` (`null` ones, e.g. the inter-token latency of a
/// one-token request, left out).
fn per(requests: &[Value], key: &str) -> Result<Vec<f64>, String> {
    requests
        .iter()
        .enumerate()
        .filter_map(|(j, r)| {
            opt_number(r, key)
                .map_err(|e| format!("requests.successful.{j}: {e}"))
                .transpose()
        })
        .collect()
}

/// The load of a benchmark from its strategy (`config.strategy.type_`).
fn load(b: &Value, successful: u64) -> Result<(MeasuredLoad, String), String> {
    let kind = text_at(b, "config.strategy.type_")
        .ok_or_else(|| "field config.strategy.type_ is missing".to_string())?;
    let count = |path: &str| whole(b, path, 1).map(|c| u32::try_from(c).unwrap_or(u32::MAX));
    Ok(match kind.as_str() {
        "synchronous" => (
            MeasuredLoad::Concurrency { concurrency: 1 },
            "synchronous".to_string(),
        ),
        "concurrent" => {
            let c = count("config.strategy.streams")?;
            (
                MeasuredLoad::Concurrency { concurrency: c },
                format!("concurrent, {c} streams"),
            )
        }
        "poisson" | "constant" => {
            let r = rate(b, "config.strategy.rate")?;
            let label = format!("{kind} at {} req/s", super::num_label(r));
            let burstiness = (kind == "poisson").then_some(1.0);
            (
                MeasuredLoad::Rate {
                    rate: r,
                    burstiness,
                },
                label,
            )
        }
        "throughput" => {
            // Every request is sent at once, up to the cap on requests in flight.
            let total = opt_number(b, "metrics.request_totals.total")?
                .and_then(|t| whole_of(t, 1))
                .unwrap_or(successful);
            let cap = match opt_number(b, "config.strategy.max_concurrency")? {
                Some(c) => whole_of(c, 1).ok_or_else(|| {
                    format!(
                        "field config.strategy.max_concurrency is {c}, expected a whole number ≥ 1"
                    )
                })?,
                None => {
                    return Err(
                        "a throughput benchmark without config.strategy.max_concurrency: its \
                         concurrency cannot be known"
                            .to_string(),
                    )
                }
            };
            let c = u32::try_from(cap.min(total)).unwrap_or(u32::MAX);
            (
                MeasuredLoad::Concurrency { concurrency: c },
                format!("throughput, {c} in flight"),
            )
        }
        other => {
            return Err(format!(
                "field config.strategy.type_ is {other}, expected synchronous, concurrent, \
                 throughput, constant or poisson"
            ))
        }
    })
}
