//! The JSON report (pretty-printed): the versioned machine-readable contract.

use super::Report;
use anyhow::{Context, Result};

/// The report as pretty-printed JSON with a final newline; its keys and types are those
/// of [`Report`], whose schema is checked in as `tests/schemas/report.json`.
pub fn render(report: &Report) -> Result<String> {
    crate::output::json_text(report).context("cannot encode the report as JSON")
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
    fn validates_against_its_schema() {
        let text = render(&report()).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let schema = crate::output::schemas::schema_of("report").unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["projections"][0]["profile"], "inf2-profile");
        assert!(v["host_check"]["ttft_error_ratio"].is_f64());
        // A projection without a price is null in the JSON, and the schema allows it.
        let mut r = report();
        r.projections[0].cost_usd_per_million_tokens = None;
        let v: Value = serde_json::from_str(&render(&r).unwrap()).unwrap();
        assert!(v["projections"][0]["cost_usd_per_million_tokens"].is_null());
        assert!(validator.is_valid(&v));
        assert_eq!(parse(&render(&r).unwrap(), "r.json").unwrap(), r);
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
