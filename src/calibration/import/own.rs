//! This tool's own files: the `run --format json` report (schema in `tests/schemas/`,
//! [`Report`]) and samples files (`run --samples`, `serve --samples`; JSON lines, see
//! [`crate::measure::samples`]).

use super::{
    relative, FileDtype, FileSettings, MeasuredLoad, Measurement, Observed, RequestShape, Stat,
    Tool,
};
use crate::measure::samples::parse_samples;
use crate::report::{Environment, Report, Workload, SCHEMA_VERSION};

/// A run report: one static batch of `workload.batch`, TTFT and TPOT its medians (`p50`).
/// A report rebuilt from a served samples file is refused: its load is in the samples.
pub(super) fn report(text: &str, file: &str) -> Result<Vec<Measurement>, String> {
    let r: Report =
        serde_json::from_str(text).map_err(|e| format!("this tool's run report, but {e}"))?;
    if r.schema_version != SCHEMA_VERSION {
        return Err(format!(
            "field schema_version is {}, expected {SCHEMA_VERSION}",
            r.schema_version
        ));
    }
    if served(&r.environment, &r.workload) {
        return Err(
            "a report of served requests: give the samples file (serve --samples) instead, \
             which holds when each request was sent"
                .into(),
        );
    }
    let m = measurement(&r, file, Tool::ProfilerReport, Vec::new())?;
    Ok(vec![m])
}

/// A samples file: a static run (`run --samples`) is a static batch; a served one
/// (`serve --samples`) is a [`MeasuredLoad::Trace`] of its requests' send times. Medians
/// as in the report the file rebuilds.
pub(super) fn samples(text: &str, file: &str) -> Result<Vec<Measurement>, String> {
    let parsed = parse_samples(text.as_bytes(), "").map_err(|e| {
        // parse_samples names the file first; `parse` adds it, so keep the rest.
        let e = e.to_string();
        let rest = e.trim_start_matches(':').trim_start();
        if rest.starts_with(|c: char| c.is_ascii_digit()) {
            format!("line {rest}")
        } else {
            rest.to_string()
        }
    })?;
    let ok: Vec<_> = parsed
        .samples
        .iter()
        .filter(|s| s.is_ok())
        .cloned()
        .collect();
    let starts: Vec<f64> = ok.iter().map(|s| s.start_offset_ms / 1000.0).collect();
    let per_request = ok
        .iter()
        .zip(relative(&starts))
        .map(|(s, t)| RequestShape {
            prompt: u32::try_from(s.prompt_tokens).unwrap_or(u32::MAX),
            output: u32::try_from(s.output_tokens).unwrap_or(u32::MAX),
            start_s: Some(t),
        })
        .collect();
    let r = Report::from_samples_file(parsed, Vec::new());
    let m = measurement(&r, file, Tool::ProfilerSamples, per_request)?;
    Ok(vec![m])
}

/// Whether the run served HTTP requests (`serve`) rather than static batches (`run`).
fn served(env: &Environment, workload: &Workload) -> bool {
    workload.prompt_source.starts_with("HTTP requests")
        || env.command_line.split_whitespace().nth(1) == Some("serve")
}

fn measurement(
    r: &Report,
    file: &str,
    tool: Tool,
    per_request: Vec<RequestShape>,
) -> Result<Measurement, String> {
    if r.requests == 0 {
        return Err("no request finished ok".into());
    }
    let p50 = |s: &Option<crate::measure::stats::Summary>, name: &str| {
        s.as_ref()
            .map(|s| s.p50)
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| format!("no {name} was measured (every request produced one token?)"))
    };
    let n = r.requests as f64;
    let batch = r.workload.batch;
    let is_served = served(&r.environment, &r.workload);
    let (load, label) = if is_served {
        (
            MeasuredLoad::Trace,
            format!("profiler serve, {} requests as sent", r.requests),
        )
    } else {
        (
            MeasuredLoad::StaticBatch { batch },
            format!("profiler run, batch {batch}"),
        )
    };
    let mut notes = Vec::new();
    if r.interrupted {
        notes.push("the run was stopped before it finished".to_string());
    }
    if r.failed_requests > 0 {
        notes.push(format!(
            "{} requests failed; the figures are of the others",
            r.failed_requests
        ));
    }
    let output_tokens = r.output_tokens as f64 / n;
    if output_tokens < 1.0 {
        return Err("the requests produced no output token".into());
    }
    Ok(Measurement {
        file: file.to_string(),
        tool,
        label,
        model: Some(r.environment.model.clone()),
        load,
        input_tokens: r.prompt_tokens as f64 / n,
        output_tokens,
        requests: Some(r.requests),
        per_request,
        ttft: Observed {
            ms: p50(&r.ttft_ms, "TTFT")?,
            stat: Stat::Median,
        },
        tpot: Observed {
            ms: p50(&r.tpot_ms, "TPOT")?,
            stat: Stat::Median,
        },
        output_tokens_per_s: r.output_tokens_per_s.filter(|x| x.is_finite() && *x > 0.0),
        date: r.environment.started_at.get(..10).map(str::to_string),
        settings: FileSettings {
            // `serve --max-num-seqs` or `run --batch`: the sequences decoded together.
            max_num_seqs: Some(batch),
            dtype: Some(FileDtype::read(&r.environment.weights_dtype)),
            ..FileSettings::default()
        },
        notes,
    })
}
