//! Renders simulation and plan reports as a table, JSON, CSV or Markdown.

use super::plan::PlanReport;
use super::report::SimReport;
use crate::measure::stats::Summary;
use crate::output::number::fixed;
use crate::output::{json_bytes, Format, LineEnd, Table};

/// A simulation report.
pub fn simulation(format: Format, r: &SimReport) -> Vec<u8> {
    if format == Format::Json {
        return json_bytes(r);
    }
    let metric = |name: &str, s: &Option<Summary>| {
        let s = s.as_ref();
        vec![
            name.to_string(),
            fixed(s.map(|x| x.mean), 2),
            fixed(s.map(|x| x.p50), 2),
            fixed(s.map(|x| x.p90), 2),
            fixed(s.map(|x| x.p99), 2),
            fixed(s.map(|x| x.max), 2),
        ]
    };
    let grid = Table {
        header: ["metric (simulated)", "mean", "p50", "p90", "p99", "max"]
            .map(String::from)
            .to_vec(),
        rows: vec![
            metric("ttft_ms", &r.ttft_ms),
            metric("tpot_ms", &r.tpot_ms),
            metric("itl_ms", &r.itl_ms),
            metric("e2e_ms", &r.e2e_ms),
            metric("queue_ms", &r.queue_ms),
        ],
        text_columns: 1,
    };
    let s = &r.setup;
    let head = format!(
        "{}\n{} on {} ({}): TP {} × {} replica(s), {} slots, seq-len {}, scheduler {}, {} arrivals{}\n",
        r.label,
        s.model,
        s.instance,
        s.weights_dtype,
        s.tp,
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
        fixed(r.cost_usd_per_million_output_tokens, 3),
        fixed(r.cost_usd_per_million_tokens, 3),
        s.price_kind
    );
    let notes: String = r.notes.iter().map(|n| format!("note: {n}\n")).collect();
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
                vec![
                    x.profile.clone(),
                    x.instance.clone(),
                    u(x.tp),
                    u(x.dp),
                    u(x.max_num_seqs),
                    fixed(x.max_rate_per_instance, 3),
                    x.instances_needed.map_or("-".into(), |n| n.to_string()),
                    fixed(x.fleet_usd_per_hour, 2),
                    fixed(x.cost_usd_per_million_tokens, 3),
                    fixed(x.ttft_ms_at_percentile, 0),
                    fixed(x.tpot_ms_at_percentile, 1),
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
    let rec = format!(
        "recommendation: {}\n",
        r.recommendation
            .clone()
            .unwrap_or_else(|| "none: no priced instance meets the SLOs".into())
    );
    match format {
        Format::Csv => grid.csv(LineEnd::Lf).into_bytes(),
        Format::Markdown => format!("{head}\n{}\n{rec}", grid.markdown()).into_bytes(),
        _ => format!("{head}{}{rec}", grid.text()).into_bytes(),
    }
}
