//! The CSV report: one rectangular RFC 4180 table (comma-separated, CRLF line ends, fields
//! quoted when they hold a comma, quote or line break), one row per metric, so that any CSV
//! reader or spreadsheet loads it as-is.
//!
//! `section` is `measured`, `host_check` or `projected`. A distribution (measured TTFT,
//! TPOT, e2e, decode step, tokenize) fills `count` to `ci95_high` and leaves `value` empty;
//! a single number fills `value` only. `profile`, `instance` and `tp` are set on projected
//! rows; `batch` on every row. Booleans are written 1/0. An unknown value is an empty field.

use super::{Report, Summary};
use crate::output::number::exact;
use crate::output::table::{csv_text, LineEnd};

/// Columns naming where a row's metric comes from and for which target.
const TARGET_COLUMNS: [&str; 7] = [
    "section", "metric", "unit", "profile", "instance", "tp", "batch",
];

/// The header row: the target columns, `value`, then the summary fields
/// ([`Summary::FIELDS`], `count` … `ci95_high`).
pub fn header() -> Vec<&'static str> {
    TARGET_COLUMNS
        .into_iter()
        .chain(["value"])
        .chain(Summary::FIELDS)
        .collect()
}

/// Where a row's metric comes from and for which target.
struct Target<'a> {
    section: &'a str,
    profile: &'a str,
    instance: &'a str,
    tp: String,
    batch: String,
}

/// The report as CSV text (see the module documentation for the layout).
pub fn render(report: &Report) -> String {
    let mut rows: Vec<Vec<String>> = vec![header().into_iter().map(String::from).collect()];
    let measured = Target {
        section: "measured",
        profile: "",
        instance: "",
        tp: String::new(),
        batch: report.workload.batch.to_string(),
    };
    for (key, _, summary) in report.summaries() {
        rows.push(distribution_row(&measured, key, summary));
    }
    let int = |x: u64| Some(x as f64);
    let flag = |b: bool| Some(if b { 1.0 } else { 0.0 });
    let scalars = [
        ("requests", "requests", int(report.requests)),
        ("failed_requests", "requests", int(report.failed_requests)),
        ("prompt_tokens", "tokens", int(report.prompt_tokens)),
        ("output_tokens", "tokens", int(report.output_tokens)),
        ("wall_s", "s", Some(report.wall_s)),
        (
            "output_tokens_per_s",
            "tokens/s",
            report.output_tokens_per_s,
        ),
        ("total_tokens_per_s", "tokens/s", report.total_tokens_per_s),
        (
            "peak_rss_bytes",
            "bytes",
            report.peak_rss_bytes.and_then(int),
        ),
        (
            "cuda_peak_allocated_bytes",
            "bytes",
            report.cuda_peak_allocated_bytes.and_then(int),
        ),
        ("interrupted", "bool", flag(report.interrupted)),
    ];
    for (metric, unit, value) in scalars {
        rows.push(value_row(&measured, metric, unit, value));
    }
    if let Some(h) = &report.host_check {
        let host = Target {
            section: "host_check",
            ..measured
        };
        let values = [
            ("projected_ttft_ms", "ms", Some(h.projected_ttft_ms)),
            ("measured_ttft_ms", "ms", Some(h.measured_ttft_ms)),
            ("projected_tpot_ms", "ms", Some(h.projected_tpot_ms)),
            ("measured_tpot_ms", "ms", h.measured_tpot_ms),
            ("ttft_error_ratio", "ratio", h.ttft_error_ratio),
            ("tpot_error_ratio", "ratio", h.tpot_error_ratio),
            ("matmul_gflops", "GFLOP/s", Some(h.matmul_gflops)),
            ("memory_gb_per_s", "GB/s", Some(h.memory_gb_per_s)),
            ("prefill_tokens", "tokens", h.prefill_tokens.map(f64::from)),
            ("prefill_ms", "ms", h.prefill_ms),
            ("decode_rows", "rows", h.decode_rows.map(f64::from)),
            (
                "decode_context_tokens",
                "tokens",
                h.decode_context_tokens.map(f64::from),
            ),
            ("decode_step_1_ms", "ms", h.decode_step_1_ms),
            ("decode_step_rows_ms", "ms", h.decode_step_rows_ms),
            (
                "prefill_compute_efficiency",
                "ratio",
                h.prefill_compute_efficiency,
            ),
            ("bandwidth_efficiency", "ratio", h.bandwidth_efficiency),
            ("decode_seq_ms", "ms", h.decode_seq_ms),
        ];
        for (metric, unit, value) in values {
            rows.push(value_row(&host, metric, unit, value));
        }
    }
    for p in &report.projections {
        let target = Target {
            section: "projected",
            profile: &p.profile,
            instance: &p.instance,
            tp: p.tp.to_string(),
            batch: p.batch.to_string(),
        };
        let mape = p.calibration_mape;
        let values = [
            ("ttft_ms", "ms", Some(p.ttft_ms)),
            ("tpot_ms", "ms", Some(p.tpot_ms)),
            ("e2e_ms", "ms", Some(p.e2e_ms)),
            (
                "output_tokens_per_s",
                "tokens/s",
                Some(p.output_tokens_per_s),
            ),
            (
                "cost_usd_per_million_output_tokens",
                "USD",
                p.cost_usd_per_million_output_tokens,
            ),
            (
                "cost_usd_per_million_tokens",
                "USD",
                p.cost_usd_per_million_tokens,
            ),
            (
                "energy_kwh_per_million_tokens",
                "kWh",
                p.energy_kwh_per_million_tokens,
            ),
            ("fits", "bool", flag(p.fits)),
            (
                "memory_required_bytes",
                "bytes",
                int(p.memory_required_bytes),
            ),
            (
                "memory_available_bytes",
                "bytes",
                int(p.memory_available_bytes),
            ),
            ("calibration_mape_ttft", "ratio", mape.map(|m| m.ttft)),
            ("calibration_mape_tpot", "ratio", mape.map(|m| m.tpot)),
        ];
        let i = &p.intervals;
        let bounds = [
            ("ttft_ms", "ms", i.ttft_ms_low, i.ttft_ms_high),
            ("tpot_ms", "ms", i.tpot_ms_low, i.tpot_ms_high),
            ("e2e_ms", "ms", i.e2e_ms_low, i.e2e_ms_high),
            (
                "output_tokens_per_s",
                "tokens/s",
                i.output_tokens_per_s_low,
                i.output_tokens_per_s_high,
            ),
            (
                "cost_usd_per_million_output_tokens",
                "USD",
                i.cost_usd_per_million_output_tokens_low,
                i.cost_usd_per_million_output_tokens_high,
            ),
            (
                "cost_usd_per_million_tokens",
                "USD",
                i.cost_usd_per_million_tokens_low,
                i.cost_usd_per_million_tokens_high,
            ),
            (
                "energy_kwh_per_million_tokens",
                "kWh",
                i.energy_kwh_per_million_tokens_low,
                i.energy_kwh_per_million_tokens_high,
            ),
        ];
        for (metric, unit, value) in values {
            rows.push(value_row(&target, metric, unit, value));
        }
        // The interval of each projected number: `X_low` and `X_high` rows.
        for (metric, unit, low, high) in bounds {
            rows.push(value_row(&target, &format!("{metric}_low"), unit, low));
            rows.push(value_row(&target, &format!("{metric}_high"), unit, high));
        }
    }
    csv_text(rows, LineEnd::Crlf)
}

fn target_fields(t: &Target, metric: &str, unit: &str) -> Vec<String> {
    [
        t.section, metric, unit, t.profile, t.instance, &t.tp, &t.batch,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A distribution: `value` empty, the summary fields filled (`count` 0 and the rest empty
/// when there is none).
fn distribution_row(t: &Target, metric: &str, s: Option<&Summary>) -> Vec<String> {
    let mut fields = target_fields(t, metric, "ms");
    fields.push(String::new()); // value
    match s {
        Some(s) => fields.extend(s.values().map(exact)),
        None => {
            fields.push("0".into());
            fields.extend(std::iter::repeat_n(
                String::new(),
                Summary::FIELDS.len() - 1,
            ));
        }
    }
    fields
}

/// A single number: `value` filled, the summary fields empty.
fn value_row(t: &Target, metric: &str, unit: &str, value: Option<f64>) -> Vec<String> {
    let mut fields = target_fields(t, metric, unit);
    fields.push(exact(value));
    fields.extend(std::iter::repeat_n(String::new(), Summary::FIELDS.len()));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::report;

    /// A strict RFC 4180 reader (test oracle): records of fields, erroring on a stray quote.
    fn parse(text: &str) -> Result<Vec<Vec<String>>, String> {
        let mut records = Vec::new();
        let mut record = Vec::new();
        let mut field = String::new();
        let mut chars = text.chars().peekable();
        let mut at_field_start = true;
        while let Some(c) = chars.next() {
            match c {
                '"' if at_field_start => {
                    loop {
                        match chars.next() {
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                field.push('"');
                            }
                            Some('"') => break,
                            Some(c) => field.push(c),
                            None => return Err("unterminated quoted field".into()),
                        }
                    }
                    match chars.peek() {
                        Some(',') | Some('\r') | None => {}
                        other => return Err(format!("{other:?} after a closing quote")),
                    }
                    at_field_start = false;
                }
                '"' => return Err("quote inside an unquoted field".into()),
                ',' => {
                    record.push(std::mem::take(&mut field));
                    at_field_start = true;
                }
                '\r' => {
                    if chars.next() != Some('\n') {
                        return Err("CR without LF".into());
                    }
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                    at_field_start = true;
                }
                '\n' => return Err("bare LF".into()),
                c => {
                    field.push(c);
                    at_field_start = false;
                }
            }
        }
        if !record.is_empty() || !field.is_empty() {
            return Err("last record not terminated".into());
        }
        Ok(records)
    }

    fn cell<'a>(rows: &'a [Vec<String>], section: &str, metric: &str, column: &str) -> &'a str {
        let c = header().iter().position(|h| *h == column).unwrap();
        let row = rows
            .iter()
            .find(|r| r[0] == section && r[1] == metric)
            .unwrap_or_else(|| panic!("no row {section}/{metric}"));
        &row[c]
    }

    #[test]
    fn parses_as_one_rectangular_table() {
        let r = report();
        let rows = parse(&render(&r)).unwrap();
        // The documented header (README, Other formats).
        assert_eq!(
            rows[0].join(","),
            "section,metric,unit,profile,instance,tp,batch,value,count,mean,stddev,min,p50,p90,p99,max,ci95_low,ci95_high"
        );
        assert!(rows.iter().all(|row| row.len() == header().len()));
        // 5 distributions + 10 scalars + 17 host check + 12 + 7 × 2 bounds per projection.
        assert_eq!(rows.len(), 1 + 5 + 10 + 17 + 12 + 14);
        assert_eq!(cell(&rows, "host_check", "decode_seq_ms", "value"), "22.7");
        assert_eq!(cell(&rows, "host_check", "decode_rows", "unit"), "rows");
        assert_eq!(cell(&rows, "projected", "ttft_ms_high", "value"), "15.625");
        let ttft = r.ttft_ms.as_ref().unwrap();
        assert_eq!(
            cell(&rows, "measured", "ttft_ms", "p99").parse::<f64>(),
            Ok(ttft.p99)
        );
        assert_eq!(cell(&rows, "measured", "ttft_ms", "value"), "");
        assert_eq!(cell(&rows, "measured", "output_tokens", "value"), "32");
        assert_eq!(cell(&rows, "projected", "fits", "value"), "1");
        assert_eq!(
            cell(&rows, "projected", "tpot_ms", "instance"),
            "inf2.48xlarge"
        );
        assert_eq!(
            cell(&rows, "projected", "energy_kwh_per_million_tokens", "value"),
            ""
        );
        let tps: f64 = cell(&rows, "measured", "output_tokens_per_s", "value")
            .parse()
            .unwrap();
        assert_eq!(tps, r.output_tokens_per_s.unwrap());
    }

    #[test]
    fn fields_with_commas_and_quotes_are_quoted() {
        let mut r = report();
        r.projections[0].profile = "odd, \"quoted\"\nprofile".into();
        let rows = parse(&render(&r)).unwrap();
        let c = header().iter().position(|h| *h == "profile").unwrap();
        assert!(rows.iter().any(|row| row[c] == "odd, \"quoted\"\nprofile"));
        assert!(rows.iter().all(|row| row.len() == header().len()));
    }

    #[test]
    fn empty_run_still_parses() {
        let mut r = report();
        r.ttft_ms = None;
        r.output_tokens_per_s = None;
        r.host_check = None;
        r.projections.clear();
        let rows = parse(&render(&r)).unwrap();
        assert_eq!(rows.len(), 1 + 5 + 10);
        assert_eq!(cell(&rows, "measured", "ttft_ms", "count"), "0");
        assert_eq!(cell(&rows, "measured", "output_tokens_per_s", "value"), "");
    }

    #[test]
    fn oracle_rejects_broken_csv() {
        assert!(parse("a,b\"c\r\n").is_err());
        assert!(parse("\"a\r\n").is_err());
        assert!(parse("a,b\n").is_err());
    }
}
