//! AIPerf's `profile_export_aiperf.json` and GenAI-Perf's `profile_export_genai_perf.json`
//! (AIPerf grew out of GenAI-Perf and kept its layout): one object per metric with its
//! `unit`, `avg` and percentiles `p1` … `p99`, and the run's settings under `input_config`.
//! Also AIPerf's per-request `profile_export.jsonl` (one record a line).
//!
//! Both tools define the inter-token latency of a request as (request latency − TTFT) /
//! (output tokens − 1), the first token excluded (AIPerf `inter_token_latency`, GenAI-Perf
//! `llm_profile_data_parser.py`), so TPOT is its p50, a median over requests.

use super::{
    field, latency, median, number, opt_number, positive, rate, relative, text_at, tokens,
    whole_of, FileSettings, MeasuredLoad, Measurement, Observed, RequestShape, Stat, Tool,
};
use serde_json::Value;

/// A summary file: one [`Measurement`].
pub(super) fn summary(doc: &Value, file: &str) -> Result<Vec<Measurement>, String> {
    let aiperf = field(doc, "aiperf_version").is_some()
        || field(doc, "input_config.phases").is_some()
        || field(doc, "input_config.loadgen").is_some();
    let (tool, name) = if aiperf {
        (Tool::AiPerf, "AIPerf")
    } else {
        (Tool::GenAiPerf, "GenAI-Perf")
    };
    for metric in ["time_to_first_token", "inter_token_latency"] {
        if let Some(unit) = text_at(doc, &format!("{metric}.unit")) {
            if unit != "ms" {
                return Err(format!("field {metric}.unit is {unit}, expected ms"));
            }
        }
    }
    let mut notes = Vec::new();
    let (load, label) = if aiperf {
        aiperf_load(doc, &mut notes)?
    } else {
        genai_perf_load(doc, &mut notes)?
    };
    let requests = opt_number(doc, "request_count.avg")?.and_then(|n| whole_of(n, 1));
    Ok(vec![Measurement {
        file: file.to_string(),
        tool,
        label: format!("{name}: {label}"),
        model: model(doc),
        load,
        input_tokens: tokens(doc, "input_sequence_length.avg")?,
        output_tokens: tokens(doc, "output_sequence_length.avg")?,
        requests,
        per_request: Vec::new(),
        ttft: Observed {
            ms: latency(doc, "time_to_first_token.p50", 1.0)?,
            stat: Stat::Median,
        },
        tpot: Observed {
            ms: latency(doc, "inter_token_latency.p50", 1.0)?,
            stat: Stat::Median,
        },
        output_tokens_per_s: opt_number(doc, "output_token_throughput.avg")?.and_then(positive),
        date: text_at(doc, "start_time").and_then(|t| iso_date(&t)),
        settings: FileSettings::default(),
        notes,
    }])
}

/// The model: AIPerf `input_config.models.items`, GenAI-Perf `input_config.model_names`
/// (earlier `input_config.model`, a list or a name), older AIPerf
/// `input_config.endpoint.model_names`.
fn model(doc: &Value) -> Option<String> {
    [
        "input_config.models.items.0.name",
        "input_config.model_names.0",
        "input_config.endpoint.model_names.0",
        "input_config.model.0",
        "input_config.model",
    ]
    .iter()
    .find_map(|p| text_at(doc, p))
}

/// AIPerf's load: the profiling phase of `input_config.phases` (0.13: `type` concurrency,
/// poisson, gamma with `smoothness` — vLLM's burstiness —, or constant), else the older
/// `input_config.loadgen` (`request_rate` with `request_rate_mode`, or `concurrency`).
fn aiperf_load(doc: &Value, notes: &mut Vec<String>) -> Result<(MeasuredLoad, String), String> {
    if let Some(phases) = field(doc, "input_config.phases").and_then(Value::as_array) {
        let i = phases
            .iter()
            .position(|p| text_at(p, "kind").as_deref() == Some("profiling"))
            .or(phases.len().checked_sub(1))
            .ok_or_else(|| "field input_config.phases is empty".to_string())?;
        let phase = &phases[i];
        let path = |k: &str| format!("input_config.phases.{i}.{k}");
        let kind =
            text_at(phase, "type").ok_or_else(|| format!("field {} is missing", path("type")))?;
        let cap = opt_number(phase, "concurrency")?.and_then(|c| whole_of(c, 1));
        return match kind.as_str() {
            "concurrency" => {
                let c = cap.ok_or_else(|| {
                    format!(
                        "field {} is missing or not a whole number ≥ 1",
                        path("concurrency")
                    )
                })?;
                let c = u32::try_from(c).unwrap_or(u32::MAX);
                Ok((
                    MeasuredLoad::Concurrency { concurrency: c },
                    format!("concurrency {c}"),
                ))
            }
            "poisson" | "gamma" | "constant" => {
                let r = rate(phase, "rate")
                    .map_err(|e| e.replace("field rate", &format!("field {}", path("rate"))))?;
                let burstiness = match kind.as_str() {
                    "poisson" => Some(1.0),
                    "gamma" => Some(
                        opt_number(phase, "smoothness")?
                            .and_then(positive)
                            .unwrap_or(1.0),
                    ),
                    _ => None,
                };
                if let Some(c) = cap {
                    notes.push(format!(
                        "concurrency {c} also capped the requests in flight"
                    ));
                }
                Ok((
                    MeasuredLoad::Rate {
                        rate: r,
                        burstiness,
                    },
                    format!("{kind} at {} req/s", super::num_label(r)),
                ))
            }
            "fixed_schedule" => Err(FIXED_SCHEDULE.into()),
            other => Err(format!(
                "field {} is {other}, expected concurrency, poisson, gamma or constant",
                path("type")
            )),
        };
    }
    if field(doc, "input_config.input.fixed_schedule").and_then(Value::as_bool) == Some(true) {
        return Err(FIXED_SCHEDULE.into());
    }
    let r = opt_number(doc, "input_config.loadgen.request_rate")?.and_then(positive);
    let c = opt_number(doc, "input_config.loadgen.concurrency")?.and_then(|c| whole_of(c, 1));
    match (r, c) {
        (Some(r), cap) => {
            let mode = text_at(doc, "input_config.loadgen.request_rate_mode")
                .unwrap_or_else(|| "poisson".into());
            let burstiness = (mode != "constant").then_some(1.0);
            if let Some(c) = cap {
                notes.push(format!(
                    "concurrency {c} also capped the requests in flight"
                ));
            }
            Ok((
                MeasuredLoad::Rate {
                    rate: r,
                    burstiness,
                },
                format!("{mode} at {} req/s", super::num_label(r)),
            ))
        }
        (None, Some(c)) => {
            let c = u32::try_from(c).unwrap_or(u32::MAX);
            Ok((
                MeasuredLoad::Concurrency { concurrency: c },
                format!("concurrency {c}"),
            ))
        }
        (None, None) => Err(
            "neither input_config.phases nor input_config.loadgen says the load \
             (concurrency or request_rate)"
                .into(),
        ),
    }
}

/// A replayed trace: its summary has no rate, its records have the send times.
const FIXED_SCHEDULE: &str = "a fixed-schedule (trace replay) run has no single load: give its \
per-request profile_export.jsonl, which holds the send times";

/// GenAI-Perf's load: `input_config.perf_analyzer.stimulus` (`{"concurrency": N}` or
/// `{"request_rate": r}`), or the earlier flat `input_config.concurrency` /
/// `input_config.request_rate`. Perf Analyzer spaces a request rate evenly by default.
fn genai_perf_load(doc: &Value, notes: &mut Vec<String>) -> Result<(MeasuredLoad, String), String> {
    let base = if field(doc, "input_config.perf_analyzer.stimulus").is_some() {
        "input_config.perf_analyzer.stimulus"
    } else {
        "input_config"
    };
    let r = opt_number(doc, &format!("{base}.request_rate"))?.and_then(positive);
    let c = opt_number(doc, &format!("{base}.concurrency"))?.and_then(|c| whole_of(c, 1));
    match (r, c) {
        (Some(r), _) => {
            notes.push(
                "GenAI-Perf's request rate is taken as evenly spaced, Perf Analyzer's default"
                    .into(),
            );
            Ok((
                MeasuredLoad::Rate {
                    rate: r,
                    burstiness: None,
                },
                format!("{} req/s", super::num_label(r)),
            ))
        }
        (None, Some(c)) => {
            let c = u32::try_from(c).unwrap_or(u32::MAX);
            Ok((
                MeasuredLoad::Concurrency { concurrency: c },
                format!("concurrency {c}"),
            ))
        }
        (None, None) => Err(format!(
            "field {base}.concurrency or {base}.request_rate is missing: the load is unknown"
        )),
    }
}

/// `YYYY-MM-DD` from an ISO 8601 time.
fn iso_date(t: &str) -> Option<String> {
    let d = t.get(..10)?;
    let ok = d.bytes().enumerate().all(|(i, b)| {
        if i == 4 || i == 7 {
            b == b'-'
        } else {
            b.is_ascii_digit()
        }
    });
    ok.then(|| d.to_string())
}

/// AIPerf's `profile_export.jsonl`: the profiling phase's successful records, replayed at
/// their send times (`metadata.request_start_ns`), medians computed here.
pub(super) fn records(text: &str, file: &str) -> Result<Vec<Measurement>, String> {
    let mut shapes = Vec::new();
    let mut starts = Vec::new();
    let (mut ttfts, mut itls) = (Vec::new(), Vec::new());
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let at = |e: String| format!("line {}: {e}", i + 1);
        let r: Value = super::parse_json(l).map_err(at)?;
        let phase = text_at(&r, "metadata.benchmark_phase");
        if phase.is_some_and(|p| p != "profiling") || field(&r, "error").is_some() {
            continue;
        }
        let count = |k: &str| -> Result<u32, String> {
            let x = number(&r, k).map_err(at)?;
            whole_of(x, 0)
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
                .ok_or_else(|| at(format!("field {k} is {x}, expected a whole number")))
        };
        shapes.push(RequestShape {
            prompt: count("metrics.input_sequence_length.value")?,
            output: count("metrics.output_sequence_length.value")?,
            start_s: None,
        });
        starts.extend(
            opt_number(&r, "metadata.request_start_ns")
                .map_err(at)?
                .map(|ns| ns / 1e9),
        );
        ttfts.extend(opt_number(&r, "metrics.time_to_first_token.value").map_err(at)?);
        itls.extend(opt_number(&r, "metrics.inter_token_latency.value").map_err(at)?);
    }
    if shapes.is_empty() {
        return Err("no successful record of the profiling phase".into());
    }
    if starts.len() != shapes.len() {
        return Err("a record lacks metadata.request_start_ns, its send time".into());
    }
    for (s, t) in shapes.iter_mut().zip(relative(&starts)) {
        s.start_s = Some(t);
    }
    let n = shapes.len() as f64;
    let mean =
        |f: fn(&RequestShape) -> u32| shapes.iter().map(|s| f64::from(f(s))).sum::<f64>() / n;
    let med = |v: Vec<f64>, name: &str| {
        median(v).and_then(positive).ok_or_else(|| {
            format!("no record has a metrics.{name}.value above 0 (was it streamed?)")
        })
    };
    let input_tokens = mean(|s| s.prompt);
    let output_tokens = mean(|s| s.output);
    if output_tokens < 1.0 {
        return Err("the records produced no output token".into());
    }
    Ok(vec![Measurement {
        file: file.to_string(),
        tool: Tool::AiPerf,
        label: "AIPerf records, at their send times".into(),
        model: None,
        load: MeasuredLoad::Trace,
        input_tokens,
        output_tokens,
        requests: Some(shapes.len() as u64),
        ttft: Observed {
            ms: med(ttfts, "time_to_first_token")?,
            stat: Stat::Median,
        },
        tpot: Observed {
            ms: med(itls, "inter_token_latency")?,
            stat: Stat::Median,
        },
        per_request: shapes,
        output_tokens_per_s: None,
        date: starts
            .iter()
            .copied()
            .reduce(f64::min)
            .and_then(super::date_of_unix),
        settings: FileSettings::default(),
        notes: vec![
            "the records do not say the load: replayed at their recorded send times".into(),
        ],
    }])
}
