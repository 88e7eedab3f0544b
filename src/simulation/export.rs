//! Renders simulation and plan reports as a table, JSON, CSV or Markdown.

use super::plan::PlanReport;
use super::report::SimReport;
use crate::measure::stats::Summary;
use crate::output::number::{fixed, ranged};
use crate::output::{json_bytes, Format, LineEnd, Table};

/// A simulation report.
pub fn simulation(format: Format, r: &SimReport) -> Vec<u8> {
    if format == Format::Json {
        return json_bytes(r);
    }
    // Each statistic with its interval: the same statistic of the fast and slow runs.
    let metric = |name: &str, s: &Option<Summary>, lo: &Option<Summary>, hi: &Option<Summary>| {
        let cell = |f: fn(&Summary) -> f64| {
            ranged(
                fixed(s.as_ref().map(f), 2),
                lo.as_ref().map(f),
                hi.as_ref().map(f),
                |v| fixed(Some(v), 2),
            )
        };
        vec![
            name.to_string(),
            cell(|x| x.mean),
            cell(|x| x.p50),
            cell(|x| x.p90),
            cell(|x| x.p99),
            cell(|x| x.max),
        ]
    };
    let i = &r.intervals;
    let grid = Table {
        header: ["metric (simulated)", "mean", "p50", "p90", "p99", "max"]
            .map(String::from)
            .to_vec(),
        rows: vec![
            metric("ttft_ms", &r.ttft_ms, &i.ttft_ms_low, &i.ttft_ms_high),
            metric("tpot_ms", &r.tpot_ms, &i.tpot_ms_low, &i.tpot_ms_high),
            metric("itl_ms", &r.itl_ms, &i.itl_ms_low, &i.itl_ms_high),
            metric("e2e_ms", &r.e2e_ms, &i.e2e_ms_low, &i.e2e_ms_high),
            metric("queue_ms", &r.queue_ms, &i.queue_ms_low, &i.queue_ms_high),
        ],
        text_columns: 1,
    };
    let s = &r.setup;
    let head = format!(
        "{}\n{} on {} ({}): TP {}{} × {} replica(s), {} slots, seq-len {}, scheduler {}, {} arrivals{}\n",
        r.label,
        s.model,
        s.instance,
        s.weights_dtype,
        s.tp,
        super::report::ep_text(s.ep_degree),
        s.dp,
        s.max_num_seqs,
        s.seq_len,
        s.scheduler,
        s.arrivals,
        match (s.concurrency, s.rate) {
            (Some(c), _) => format!(" at concurrency {c}"),
            (_, Some(x)) => format!(" at {x} req/s"),
            _ => String::new(),
        }
    );
    let tail = format!(
        "requests {}  requests/s {:.3}  output tokens/s {:.1}  total tokens/s {:.1}\ngoodput {:.3} req/s  SLO met: {}  slot utilisation {:.0}%  peak KV {:.2} GiB\ncost per 1M output tokens {}  per 1M tokens {} ({} price)\n",
        r.requests,
        r.requests_per_s,
        r.output_tokens_per_s,
        r.total_tokens_per_s,
        r.goodput_requests_per_s,
        r.slo_met.map_or("-".into(), |b| b.to_string()),
        r.slot_utilization * 100.0,
        r.peak_kv_memory_bytes / 1073741824.0,
        ranged(
            fixed(r.cost_usd_per_million_output_tokens, 3),
            i.cost_usd_per_million_output_tokens_low,
            i.cost_usd_per_million_output_tokens_high,
            |v| fixed(Some(v), 3)
        ),
        ranged(
            fixed(r.cost_usd_per_million_tokens, 3),
            i.cost_usd_per_million_tokens_low,
            i.cost_usd_per_million_tokens_high,
            |v| fixed(Some(v), 3)
        ),
        s.price_kind
    );
    let mut notes: String = r.notes.iter().map(|n| format!("note: {n}\n")).collect();
    if let Some(b) = &i.interval_basis {
        notes.push_str(&format!(
            "intervals [low–high]: the same load with every step faster and slower by the profile's error bar, {b}\n"
        ));
    }
    match format {
        Format::Csv => grid.csv(LineEnd::Lf).into_bytes(),
        Format::Markdown => format!("{head}\n{}\n{tail}\n{notes}", grid.markdown()).into_bytes(),
        _ => format!("{head}{}{tail}{notes}", grid.text()).into_bytes(),
    }
}

/// A plan report.
pub fn plan(format: Format, r: &PlanReport) -> Vec<u8> {
    if format == Format::Json {
        return json_bytes(r);
    }
    let u = |v: Option<u32>| v.map_or("-".into(), |x| x.to_string());
    let grid = Table {
        header: [
            "profile",
            "instance",
            "tp",
            "dp",
            "ep",
            "max_num_seqs",
            "max_rate_per_instance",
            "instances_needed",
            "fleet_usd_per_hour",
            "cost_usd_per_million_tokens",
            "p_ttft_ms",
            "p_tpot_ms",
            "meets_slo",
            "reason",
        ]
        .map(String::from)
        .to_vec(),
        rows: r
            .rows
            .iter()
            .map(|x| {
                let i = &x.intervals;
                // A missing upper end: the slow end never meets the SLOs.
                let r = |v: Option<f64>, lo: Option<f64>, hi: Option<f64>, d: usize| match (
                    v, lo, hi,
                ) {
                    (Some(_), Some(l), None) => {
                        format!("{} [{}–unbounded]", fixed(v, d), fixed(Some(l), d))
                    }
                    _ => ranged(fixed(v, d), lo, hi, |b| fixed(Some(b), d)),
                };
                vec![
                    x.profile.clone(),
                    x.instance.clone(),
                    u(x.tp),
                    u(x.dp),
                    u(x.ep_degree),
                    u(x.max_num_seqs),
                    r(
                        x.max_rate_per_instance,
                        i.max_rate_per_instance_low,
                        i.max_rate_per_instance_high,
                        3,
                    ),
                    x.instances_needed.map_or("-".into(), |n| n.to_string()),
                    r(
                        x.fleet_usd_per_hour,
                        i.fleet_usd_per_hour_low,
                        i.fleet_usd_per_hour_high,
                        2,
                    ),
                    r(
                        x.cost_usd_per_million_tokens,
                        i.cost_usd_per_million_tokens_low,
                        i.cost_usd_per_million_tokens_high,
                        3,
                    ),
                    r(
                        x.ttft_ms_at_percentile,
                        i.ttft_ms_at_percentile_low,
                        i.ttft_ms_at_percentile_high,
                        0,
                    ),
                    r(
                        x.tpot_ms_at_percentile,
                        i.tpot_ms_at_percentile_low,
                        i.tpot_ms_at_percentile_high,
                        1,
                    ),
                    x.meets_slo.to_string(),
                    x.reason.clone().unwrap_or_default(),
                ]
            })
            .collect(),
        text_columns: 2,
    };
    let head = format!(
        "simulated capacity plan: {} at {} req/s, {} prompt / {} output tokens, p{} TTFT ≤ {} ms, TPOT ≤ {} ms ({} prices)\n",
        r.model,
        r.rate,
        r.input_len,
        r.output_len,
        r.slo.percentile,
        fixed(r.slo.ttft_ms, 0),
        fixed(r.slo.tpot_ms, 1),
        r.price_kind
    );
    let mut rec = format!(
        "recommendation: {}\n",
        r.recommendation
            .clone()
            .unwrap_or_else(|| "none: no priced instance meets the SLOs".into())
    );
    if let Some(x) = &r.ranking {
        rec.push_str(&format!("{x}\n"));
    }
    // Where each profile's intervals come from, each line once.
    let mut bases: Vec<String> = Vec::new();
    for x in &r.rows {
        if let Some(b) = &x.intervals.interval_basis {
            let line = format!("intervals [low–high] ({}): {b}\n", x.profile);
            if !bases.contains(&line) {
                bases.push(line);
            }
        }
    }
    rec.push_str(&bases.concat());
    match format {
        Format::Csv => grid.csv(LineEnd::Lf).into_bytes(),
        Format::Markdown => format!("{head}\n{}\n{rec}", grid.markdown()).into_bytes(),
        _ => format!("{head}{}{rec}", grid.text()).into_bytes(),
    }
}
