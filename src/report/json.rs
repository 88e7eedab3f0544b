//! The JSON report (pretty-printed): the versioned machine-readable contract.

use super::Report;
use anyhow::{Context, Result};

/// Top-level keys every JSON report has (values may be `null` where documented).
pub const REQUIRED_KEYS: [&str; 21] = [
    "schema_version",
    "environment",
    "workload",
    "requests",
    "failed_requests",
    "ttft_ms",
    "tpot_ms",
    "e2e_ms",
    "decode_step_ms",
    "tokenize_ms",
    "wall_s",
    "output_tokens_per_s",
    "total_tokens_per_s",
    "prompt_tokens",
    "output_tokens",
    "peak_rss_bytes",
    "cuda_peak_allocated_bytes",
    "interrupted",
    "warnings",
    "projections",
    "host_check",
];

/// Keys of every summary object (`ttft_ms`, `tpot_ms`, ...).
pub const SUMMARY_KEYS: [&str; 10] = [
    "count",
    "mean",
    "stddev",
    "min",
    "p50",
    "p90",
    "p99",
    "max",
    "ci95_low",
    "ci95_high",
];

/// The report as pretty-printed JSON with a final newline. serde_json writes any
/// non-finite number as `null`, so the text never holds `NaN` or `Infinity`.
pub fn render(report: &Report) -> Result<String> {
    let mut text =
        serde_json::to_string_pretty(report).context("cannot encode the report as JSON")?;
    text.push('\n');
    Ok(text)
}

/// Reads a JSON report back; the error names `file` and what was expected.
pub fn parse(text: &str, file: &str) -> Result<Report> {
    serde_json::from_str(text)
        .with_context(|| format!("{file}: not a schema_version 1 profiler report"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::report;
    use serde_json::Value;

    #[test]
    fn has_every_required_key_and_summary_fields() {
        let text = render(&report()).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        for key in REQUIRED_KEYS {
            assert!(v.get(key).is_some(), "missing key {key}");
        }
        assert_eq!(v["schema_version"], 1);
        for metric in [
            "ttft_ms",
            "tpot_ms",
            "e2e_ms",
            "decode_step_ms",
            "tokenize_ms",
        ] {
            for key in SUMMARY_KEYS {
                assert!(v[metric].get(key).is_some(), "missing {metric}.{key}");
            }
        }
        assert_eq!(v["projections"][0]["profile"], "inf2-profile");
        assert!(v["host_check"]["ttft_error_ratio"].is_f64());
        assert_eq!(v["environment"]["weights_kind"], "gguf");
        assert_eq!(v["workload"]["requests"], 4);
    }

    #[test]
    fn never_contains_nan_and_round_trips() {
        let r = report();
        let text = render(&r).unwrap();
        assert_eq!(parse(&text, "r.json").unwrap(), r);
        let mut bad = r.clone();
        bad.output_tokens_per_s = Some(f64::NAN);
        bad.projections[0].ttft_ms = f64::INFINITY;
        let text = render(&bad).unwrap();
        assert!(
            !text.contains("NaN") && !text.contains("Infinity"),
            "{text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v["output_tokens_per_s"].is_null());
        assert!(v["projections"][0]["ttft_ms"].is_null());
    }

    #[test]
    fn single_request_gives_nulls_not_nan() {
        let mut r = report();
        r.ttft_ms = crate::measure::stats::Summary::of(&[5.0]);
        let v: Value = serde_json::from_str(&render(&r).unwrap()).unwrap();
        assert!(v["ttft_ms"]["stddev"].is_null() && v["ttft_ms"]["ci95_low"].is_null());
        assert_eq!(v["ttft_ms"]["p99"], 5.0);
    }

    #[test]
    fn parse_error_is_one_line_naming_the_file() {
        let err = parse("{\"schema_version\": 1}", "r.json").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.starts_with("r.json: not a schema_version 1"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }
}
