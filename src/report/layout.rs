//! The human-readable content of a report, laid out once as titled sections of tables and
//! lists, so that the Markdown and terminal renderings say exactly the same things.

use super::Report;
use crate::measure::stats::Summary;
use crate::output::number::{self, ranged, LONG};
use crate::output::Table;

fn human(x: f64) -> String {
    number::sig(x, LONG)
}

fn human_opt(x: Option<f64>) -> String {
    number::sig_opt(x, LONG)
}

/// One titled part of the human-readable report.
pub(super) struct Section {
    pub title: String,
    /// Lines of text before the table.
    pub text: Vec<String>,
    /// The table (none when its header is empty).
    pub table: Table,
    /// A titled list after the table (sources, warnings).
    pub list_title: Option<String>,
    pub list: Vec<String>,
}

impl Section {
    fn new(title: impl Into<String>, header: &[&str], text_columns: usize) -> Section {
        Section {
            title: title.into(),
            text: Vec::new(),
            table: Table::new(header, text_columns),
            list_title: None,
            list: Vec::new(),
        }
    }
}

/// The report's title line.
pub(super) fn title(r: &Report) -> String {
    let e = &r.environment;
    format!(
        "LLM profile: {} ({} weights) on {} ({}, {}, {} threads)",
        e.model, e.weights_kind, e.device_name, e.run_on, e.dtype, e.threads
    )
}

/// Lines under the title: when, what software, which machine, which command.
pub(super) fn provenance(r: &Report) -> Vec<String> {
    let e = &r.environment;
    let commit = e.git_commit.as_deref().unwrap_or("unknown commit");
    vec![
        format!(
            "Started {} with profiler {} ({commit}), torch {}, tch {}.",
            e.started_at, e.profiler_version, e.torch_version, e.tch_version
        ),
        format!(
            "CPU: {}, {} cores. Weights: {}{}, sha256 {}.",
            e.cpu_model,
            e.cores,
            e.weights_dtype,
            match e.matmul_precision.as_deref() {
                Some("high") => " (matmul precision high: prompts as bf16x3)",
                _ => "",
            },
            e.weights_sha256.as_deref().unwrap_or("-")
        ),
        format!("Command: {}", e.command_line),
    ]
}

/// All sections, in reading order; optional ones only when they have content.
pub(super) fn sections(r: &Report) -> Vec<Section> {
    let mut out = vec![workload(r), measured(r), totals(r)];
    out.extend(host_check(r));
    out.extend(projections(r));
    out.extend(warnings(r));
    out
}

fn workload(r: &Report) -> Section {
    let w = &r.workload;
    let mut s = Section::new("Workload", &["setting", "value"], 2);
    let opt = |x: Option<String>| x.unwrap_or_else(|| "-".into());
    let rows = [
        ("prompts", w.prompt_source.clone()),
        (
            "input length (tokens)",
            opt(w.input_len.map(|n| n.to_string())),
        ),
        ("output length (tokens)", w.output_len.to_string()),
        ("batch", w.batch.to_string()),
        ("requests asked", opt(w.requests.map(|n| n.to_string()))),
        ("duration asked (s)", opt(w.duration_s.map(human))),
        ("warm-up requests", w.warmup.to_string()),
        ("seed", w.seed.to_string()),
        ("ignore EOS", w.ignore_eos.to_string()),
    ];
    s.table.rows = rows
        .into_iter()
        .map(|(k, v)| vec![k.to_string(), v])
        .collect();
    s
}

fn measured(r: &Report) -> Section {
    let title = if r.interrupted {
        format!("Measured ({} requests, run interrupted)", r.requests)
    } else {
        format!("Measured ({} requests)", r.requests)
    };
    // The summary fields in order, `count` shown as `n` and the two bounds of the
    // confidence interval as one column.
    let shown = Summary::FIELDS.len() - 2;
    let header: Vec<&str> = ["metric (ms)"]
        .into_iter()
        .chain(Summary::FIELDS[..shown].iter().map(|&f| match f {
            "count" => "n",
            f => f,
        }))
        .chain(["95% CI of mean"])
        .collect();
    let mut s = Section::new(title, &header, 1);
    for (_, label, summary) in r.summaries() {
        let mut row = vec![label.to_string()];
        match summary {
            Some(m) => {
                let ci = match (m.ci95_low, m.ci95_high) {
                    (Some(lo), Some(hi)) => format!("{} … {}", human(lo), human(hi)),
                    _ => "-".into(),
                };
                row.push(m.count.to_string());
                row.extend(m.values()[1..shown].iter().map(|&v| human_opt(v)));
                row.push(ci);
            }
            None => row.extend(
                ["0".to_string()]
                    .into_iter()
                    .chain(std::iter::repeat_n("-".to_string(), header.len() - 2)),
            ),
        }
        s.table.rows.push(row);
    }
    s
}

fn totals(r: &Report) -> Section {
    let mut s = Section::new("Throughput and totals", &["quantity", "value"], 1);
    let bytes = |b: Option<u64>| b.map_or_else(|| "-".into(), number::bytes);
    let rows = [
        ("output tokens/s", human_opt(r.output_tokens_per_s)),
        ("total tokens/s", human_opt(r.total_tokens_per_s)),
        ("prompt tokens", r.prompt_tokens.to_string()),
        ("output tokens", r.output_tokens.to_string()),
        ("measured wall time (s)", human(r.wall_s)),
        ("failed requests", r.failed_requests.to_string()),
        ("peak RSS", bytes(r.peak_rss_bytes)),
        ("peak CUDA allocated", bytes(r.cuda_peak_allocated_bytes)),
    ];
    s.table.rows = rows
        .into_iter()
        .map(|(k, v)| vec![k.to_string(), v])
        .collect();
    s
}

fn host_check(r: &Report) -> Option<Section> {
    let h = r.host_check.as_ref()?;
    let mut s = Section::new(
        "Host check (the latency model on this machine, against what was measured)",
        &["metric (ms)", "projected", "measured", "error"],
        1,
    );
    let pct = number::signed_pct;
    s.table.rows = vec![
        vec![
            "TTFT".into(),
            human(h.projected_ttft_ms),
            human(h.measured_ttft_ms),
            pct(h.ttft_error_ratio),
        ],
        vec![
            "TPOT".into(),
            human(h.projected_tpot_ms),
            human_opt(h.measured_tpot_ms),
            pct(h.tpot_error_ratio),
        ],
    ];
    s.text.push(format!(
        "Measured here: matmul {} GFLOP/s, memory {} GB/s.",
        human(h.matmul_gflops),
        human(h.memory_gb_per_s)
    ));
    if let (Some(n), Some(pf), Some(r), Some(t1), Some(tr)) = (
        h.prefill_tokens,
        h.prefill_ms,
        h.decode_rows,
        h.decode_step_1_ms,
        h.decode_step_rows_ms,
    ) {
        s.text.push(format!(
            "Measured on the model (for `simulate --device host --host-check`): a {n}-token prefill {} ms (matmul efficiency {}), a decode step of 1 row {} ms and of {r} rows {} ms (bandwidth efficiency {}, {} ms per extra row).",
            human(pf),
            human_opt(h.prefill_compute_efficiency),
            human(t1),
            human(tr),
            human_opt(h.bandwidth_efficiency),
            human_opt(h.decode_seq_ms)
        ));
    }
    Some(s)
}

fn projections(r: &Report) -> Option<Section> {
    if r.projections.is_empty() {
        return None;
    }
    let header = [
        "profile",
        "instance",
        "tp",
        "batch",
        "fits",
        "TTFT (ms)",
        "TPOT (ms)",
        "e2e (ms)",
        "output tok/s",
        "$ / 1M output tok",
        "$ / 1M tok",
        "calibration MAPE (TTFT / TPOT)",
    ];
    let mut s = Section::new("Projected (not measured)", &header, 2);
    let dtype = r
        .projections
        .first()
        .map(|p| p.weights_dtype.as_str())
        .unwrap_or("-");
    match &r.projected_model {
        Some(m) => s.text.push(format!(
            "Projections of model {m} (not the measured model {}) at this run's measured batch and mean prompt and output lengths, by the latency model, with {dtype} weights on the devices; they were not measured.",
            r.environment.model
        )),
        None => s.text.push(format!(
            "Projections of this run's workload by the latency model, with {dtype} weights on the devices; they were not measured."
        )),
    }
    let mut sources: Vec<String> = Vec::new();
    for p in &r.projections {
        let mape = p.calibration_mape.map_or_else(
            || "-".into(),
            |c| {
                format!(
                    "{:.1}% / {:.1}% ({} points)",
                    c.ttft * 100.0,
                    c.tpot * 100.0,
                    c.points
                )
            },
        );
        let i = &p.intervals;
        s.table.rows.push(vec![
            p.profile.clone(),
            p.instance.clone(),
            p.tp.to_string(),
            p.batch.to_string(),
            if p.fits { "yes" } else { "no" }.into(),
            ranged(human(p.ttft_ms), i.ttft_ms_low, i.ttft_ms_high, human),
            ranged(human(p.tpot_ms), i.tpot_ms_low, i.tpot_ms_high, human),
            ranged(human(p.e2e_ms), i.e2e_ms_low, i.e2e_ms_high, human),
            ranged(
                human(p.output_tokens_per_s),
                i.output_tokens_per_s_low,
                i.output_tokens_per_s_high,
                human,
            ),
            ranged(
                human_opt(p.cost_usd_per_million_output_tokens),
                i.cost_usd_per_million_output_tokens_low,
                i.cost_usd_per_million_output_tokens_high,
                human,
            ),
            ranged(
                human_opt(p.cost_usd_per_million_tokens),
                i.cost_usd_per_million_tokens_low,
                i.cost_usd_per_million_tokens_high,
                human,
            ),
            mape,
        ]);
        for source in &p.sources {
            if !sources.contains(source) {
                sources.push(source.clone());
            }
        }
        if let Some(b) = &i.interval_basis {
            let line = format!("intervals [low–high] ({}): {b}", p.profile);
            if !sources.contains(&line) {
                sources.push(line);
            }
        }
        for note in &p.notes {
            let note = format!("note ({} {}): {note}", p.profile, p.instance);
            if !sources.contains(&note) {
                sources.push(note);
            }
        }
    }
    s.list_title = Some("Sources and notes".into());
    s.list = sources;
    Some(s)
}

fn warnings(r: &Report) -> Option<Section> {
    if r.warnings.is_empty() {
        return None;
    }
    let mut s = Section::new("Warnings", &[], 0);
    s.list = r.warnings.clone();
    Some(s)
}
