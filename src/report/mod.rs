//! The run report: what ran ([`Environment`], [`Workload`]), what it measured (summaries,
//! throughput, memory), what was projected from it, and its exporters (JSON, CSV, Markdown,
//! terminal table). The JSON form (`schema_version` 1) is a documented contract.

pub mod csv;
pub mod json;
mod layout;
pub mod markdown;
pub mod table;

use crate::measure::samples::{RequestSample, RunEnd, SampleStatus, SamplesFile};
use crate::measure::stats::{anomaly_warnings, Summary};
use crate::output::Format;
use crate::projection::host_steps::{StepParams, StepTimes};
use crate::projection::types::Projection;
pub use crate::schema::{Environment, Workload};
use anyhow::Result;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the JSON report schema; raised on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// The latency model run on the local machine and compared with what was measured here:
/// how far to trust the projections for the other targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostCheck {
    pub projected_ttft_ms: f64,
    pub measured_ttft_ms: f64,
    pub projected_tpot_ms: f64,
    /// `None` when no request produced two tokens.
    pub measured_tpot_ms: Option<f64>,
    /// (projected − measured) / measured: 0.1 means projected 10% slower than measured.
    pub ttft_error_ratio: Option<f64>,
    pub tpot_error_ratio: Option<f64>,
    /// Matrix-multiply throughput measured on this machine, GFLOP/s.
    pub matmul_gflops: f64,
    /// Memory bandwidth measured on this machine, GB/s (10⁹ bytes per second).
    pub memory_gb_per_s: f64,
    /// Prompt length of the prefill timed on the loaded model (a fixed shape, not the
    /// run's workload); this and the keys below are null when not measured.
    pub prefill_tokens: Option<u32>,
    /// That prefill's time, ms (best of a few repetitions).
    pub prefill_ms: Option<f64>,
    /// Rows of the batched decode step timed on the loaded model.
    pub decode_rows: Option<u32>,
    /// Cached tokens each row of the timed decode steps attends over.
    pub decode_context_tokens: Option<u32>,
    /// A decode step of one row, ms (best of a few repetitions).
    pub decode_step_1_ms: Option<f64>,
    /// A decode step of `decode_rows` rows, ms (best of a few repetitions).
    pub decode_step_rows_ms: Option<f64>,
    /// Matmul efficiency of a prompt on this machine: the latency model's matmul time of the
    /// timed prefill at efficiency 1 over its measured time (less attention), in (0, 1].
    /// The `host` profile of `simulate --host-check` uses it; the projection above does not.
    pub prefill_compute_efficiency: Option<f64>,
    /// The memory rate a 1-row decode step achieves, as a fraction of `memory_gb_per_s`, in
    /// (0, 1]: what makes the latency model's 1-row step, with `decode_seq_ms`, the measured
    /// one. For the `host` profile of `simulate --host-check`, like the two around it.
    pub bandwidth_efficiency: Option<f64>,
    /// Cost of each decode row beyond the first, ms: the growth from the 1-row to the
    /// `decode_rows`-row step less the roofline's own growth, per extra row. For the `host`
    /// profile of `simulate --host-check`, like `prefill_compute_efficiency`.
    pub decode_seq_ms: Option<f64>,
    /// Decode steps timed at each row count from 1 to `decode_rows` (best of a few
    /// repetitions each, at `decode_context_tokens`): the host profile of
    /// `simulate --host-check` prices decode steps from them. Null when not timed.
    #[serde(default)]
    pub decode_steps: Option<Vec<TimedStep>>,
}

/// One decode step timed on the loaded model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimedStep {
    /// Rows (sequences) of the step.
    pub rows: u32,
    /// Its time, ms.
    pub ms: f64,
}

impl HostCheck {
    /// Builds the check, computing the signed relative errors (`None` when the measured
    /// value is missing or not positive).
    pub fn new(
        projected_ttft_ms: f64,
        measured_ttft_ms: f64,
        projected_tpot_ms: f64,
        measured_tpot_ms: Option<f64>,
        matmul_gflops: f64,
        memory_gb_per_s: f64,
    ) -> Self {
        let ratio = |p: f64, m: f64| (m > 0.0).then(|| (p - m) / m);
        HostCheck {
            projected_ttft_ms,
            measured_ttft_ms,
            projected_tpot_ms,
            measured_tpot_ms,
            ttft_error_ratio: ratio(projected_ttft_ms, measured_ttft_ms),
            tpot_error_ratio: measured_tpot_ms.and_then(|m| ratio(projected_tpot_ms, m)),
            matmul_gflops,
            memory_gb_per_s,
            prefill_tokens: None,
            prefill_ms: None,
            decode_rows: None,
            decode_context_tokens: None,
            decode_step_1_ms: None,
            decode_step_rows_ms: None,
            prefill_compute_efficiency: None,
            bandwidth_efficiency: None,
            decode_seq_ms: None,
            decode_steps: None,
        }
    }

    /// Adds the step times measured on the loaded model and the parameters derived from
    /// them (`None` when they could not be derived).
    pub fn with_steps(mut self, t: &StepTimes, p: Option<StepParams>) -> Self {
        self.prefill_tokens = Some(t.prefill_tokens);
        self.prefill_ms = Some(t.prefill_ms);
        self.decode_rows = Some(t.decode_rows);
        self.decode_context_tokens = Some(t.decode_context);
        self.decode_step_1_ms = Some(t.decode_1_ms);
        self.decode_step_rows_ms = Some(t.decode_rows_ms);
        self.prefill_compute_efficiency = p.map(|p| p.compute_efficiency);
        self.bandwidth_efficiency = p.map(|p| p.bandwidth_efficiency);
        self.decode_seq_ms = p.map(|p| p.decode_seq_ms);
        self.decode_steps = (!t.decode_steps_ms.is_empty()).then(|| {
            t.decode_steps_ms
                .iter()
                .map(|&(rows, ms)| TimedStep { rows, ms })
                .collect()
        });
        self
    }
}

/// The report of one run (JSON schema version [`SCHEMA_VERSION`]).
///
/// Only requests with status `ok` are counted. A summary is `null` when no counted request
/// has a value for it (e.g. `tpot_ms` when every request produced a single token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    pub schema_version: u32,
    pub environment: Environment,
    pub workload: Workload,
    /// Requests counted (finished with status `ok`, warm-up excluded).
    pub requests: u64,
    /// Requests that failed; not counted anywhere else.
    pub failed_requests: u64,
    pub ttft_ms: Option<Summary>,
    pub tpot_ms: Option<Summary>,
    pub e2e_ms: Option<Summary>,
    /// Over every decode step of every counted request (a step shared by the rows of a
    /// batch is counted once per row, like the per-request metrics).
    pub decode_step_ms: Option<Summary>,
    pub tokenize_ms: Option<Summary>,
    /// Wall time covered by the counted requests' end-to-end spans, seconds: the length of
    /// the union of the intervals `[start_offset_ms, start_offset_ms + e2e_ms]`. Rows of a
    /// batch overlap and count once; gaps between requests (tokenisation, bookkeeping) do not
    /// count.
    pub wall_s: f64,
    /// `output_tokens / wall_s`; `None` when `wall_s` is 0.
    pub output_tokens_per_s: Option<f64>,
    /// `(prompt_tokens + output_tokens) / wall_s`; `None` when `wall_s` is 0.
    pub total_tokens_per_s: Option<f64>,
    /// Prompt tokens of the counted requests, summed.
    pub prompt_tokens: u64,
    /// Output tokens of the counted requests, summed.
    pub output_tokens: u64,
    /// `None` where unknown (a report rebuilt from a samples file without an end line).
    pub peak_rss_bytes: Option<u64>,
    pub cuda_peak_allocated_bytes: Option<u64>,
    /// The run was stopped (Ctrl-C, SIGTERM, or killed) before doing all it was asked.
    pub interrupted: bool,
    pub warnings: Vec<String>,
    /// Projections of this run's workload onto other targets (never measured).
    pub projections: Vec<Projection>,
    /// The model the projections are of when it is not the measured one (`run
    /// --project-model`); absent when they project the measured model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = null))]
    pub projected_model: Option<String>,
    /// Projection against measurement on this machine, when it was run.
    pub host_check: Option<HostCheck>,
}

impl Report {
    /// Computes the report from the finished requests (any order; sorted by `index` for the
    /// first-run check). Warnings: `end.warnings` first, then interruption, failures, too few
    /// requests, and outliers / first-run effects in TTFT, TPOT and e2e.
    pub fn from_samples(
        environment: Environment,
        workload: Workload,
        samples: &[RequestSample],
        end: RunEnd,
        projections: Vec<Projection>,
        host_check: Option<HostCheck>,
    ) -> Report {
        let mut ok: Vec<&RequestSample> = samples.iter().filter(|s| s.is_ok()).collect();
        ok.sort_by_key(|s| s.index);
        let collect = |f: fn(&RequestSample) -> Option<f64>| -> Vec<f64> {
            ok.iter().filter_map(|s| f(s)).collect()
        };
        let ttft = collect(|s| s.ttft_ms);
        let tpot = collect(|s| s.tpot_ms);
        let e2e = collect(|s| Some(s.e2e_ms));
        let tokenize = collect(|s| Some(s.tokenize_ms));
        let steps: Vec<f64> = ok
            .iter()
            .flat_map(|s| s.decode_step_ms.iter().copied())
            .collect();
        let prompt_tokens: u64 = ok.iter().map(|s| s.prompt_tokens).sum();
        let output_tokens: u64 = ok.iter().map(|s| s.output_tokens).sum();
        let wall_s = covered_ms(ok.iter().map(|s| (s.start_offset_ms, s.e2e_ms))) / 1000.0;
        let rate = |tokens: u64| (wall_s > 0.0).then(|| tokens as f64 / wall_s);

        let requests = ok.len() as u64;
        let failed: Vec<&RequestSample> = samples.iter().filter(|s| !s.is_ok()).collect();
        let mut warnings = end.warnings;
        if end.interrupted {
            warnings.push(format!(
                "the run was interrupted: this report covers the {requests} requests that finished"
            ));
        }
        if let Some(first) = failed.first() {
            let message = match &first.status {
                SampleStatus::Error { message } => message.as_str(),
                SampleStatus::Ok => "",
            };
            warnings.push(format!(
                "{} requests failed and are not counted; the first (request {}): {message}",
                failed.len(),
                first.index
            ));
        }
        match requests {
            0 => warnings.push("no request finished: there is nothing to summarise".into()),
            1 => warnings.push(
                "only 1 request was counted: no standard deviation or confidence interval".into(),
            ),
            _ => {}
        }
        for (metric, values) in [("ttft_ms", &ttft), ("tpot_ms", &tpot), ("e2e_ms", &e2e)] {
            warnings.extend(anomaly_warnings(metric, values, workload.warmup));
        }

        Report {
            schema_version: SCHEMA_VERSION,
            environment,
            workload,
            requests,
            failed_requests: failed.len() as u64,
            ttft_ms: Summary::of(&ttft),
            tpot_ms: Summary::of(&tpot),
            e2e_ms: Summary::of(&e2e),
            decode_step_ms: Summary::of(&steps),
            tokenize_ms: Summary::of(&tokenize),
            wall_s,
            output_tokens_per_s: rate(output_tokens),
            total_tokens_per_s: rate(prompt_tokens + output_tokens),
            prompt_tokens,
            output_tokens,
            peak_rss_bytes: end.peak_rss_bytes,
            cuda_peak_allocated_bytes: end.cuda_peak_allocated_bytes,
            interrupted: end.interrupted,
            warnings,
            projections,
            projected_model: None,
            host_check,
        }
    }

    /// Rebuilds the report of a run from its samples file (`profiler report --samples`).
    /// A file without an end line is from a killed run: interrupted, peak memory unknown.
    pub fn from_samples_file(file: SamplesFile, projections: Vec<Projection>) -> Report {
        let end = file.end.unwrap_or_else(|| RunEnd {
            interrupted: true,
            warnings: vec![
                "the samples file has no end line: the run was killed before it finished, so \
                 peak memory is unknown"
                    .into(),
            ],
            ..RunEnd::default()
        });
        let mut end = end;
        let mut warnings = file.warnings;
        warnings.append(&mut end.warnings);
        end.warnings = warnings;
        Report::from_samples(
            file.header.environment,
            file.header.workload,
            &file.samples,
            end,
            projections,
            None,
        )
    }

    /// The measured distributions in display order: (JSON key, label, summary).
    pub fn summaries(&self) -> [(&'static str, &'static str, Option<&Summary>); 5] {
        [
            ("ttft_ms", "TTFT", self.ttft_ms.as_ref()),
            ("tpot_ms", "TPOT", self.tpot_ms.as_ref()),
            ("e2e_ms", "end-to-end", self.e2e_ms.as_ref()),
            (
                "decode_step_ms",
                "decode step",
                self.decode_step_ms.as_ref(),
            ),
            ("tokenize_ms", "tokenize", self.tokenize_ms.as_ref()),
        ]
    }
}

/// Length of the union of the spans `(start, length)`, in the spans' unit.
fn covered_ms(spans: impl Iterator<Item = (f64, f64)>) -> f64 {
    let mut spans: Vec<(f64, f64)> = spans
        .filter(|(s, l)| s.is_finite() && l.is_finite() && *l > 0.0)
        .map(|(s, l)| (s, s + l))
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut total = 0.0;
    let mut current: Option<(f64, f64)> = None;
    for (start, end) in spans {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    total + current.map_or(0.0, |(s, e)| e - s)
}

/// Renders `report` in `format`. Pure: the same report always gives the same text.
pub fn render(report: &Report, format: Format) -> Result<String> {
    Ok(match format {
        Format::Table => table::render(report),
        Format::Json => json::render(report)?,
        Format::Csv => csv::render(report),
        Format::Markdown => markdown::render(report),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::measure::samples::tests::ok_sample;
    use crate::projection::types::CalibrationError;

    pub(crate) use crate::schema::tests::{environment, workload};

    pub(crate) fn projection() -> Projection {
        Projection {
            profile: "inf2-profile".into(),
            instance: "inf2.48xlarge".into(),
            tp: 2,
            batch: 1,
            input_len: 16,
            output_len: 8,
            weights_dtype: "bf16".into(),
            fits: true,
            memory_required_bytes: 3 << 30,
            memory_available_bytes: 64 << 30,
            ttft_ms: 12.5,
            tpot_ms: 4.25,
            e2e_ms: 42.25,
            output_tokens_per_s: 235.3,
            cost_usd_per_million_output_tokens: Some(15.4),
            cost_usd_per_million_tokens: Some(5.1),
            energy_kwh_per_million_tokens: None,
            intervals: crate::projection::types::Intervals {
                ttft_ms_low: Some(10.0),
                ttft_ms_high: Some(15.625),
                tpot_ms_low: Some(3.4),
                tpot_ms_high: Some(5.3125),
                e2e_ms_low: Some(33.8),
                e2e_ms_high: Some(52.8125),
                output_tokens_per_s_low: Some(151.5),
                output_tokens_per_s_high: Some(236.7),
                cost_usd_per_million_output_tokens_low: Some(15.3),
                cost_usd_per_million_output_tokens_high: Some(23.9),
                cost_usd_per_million_tokens_low: Some(5.1),
                cost_usd_per_million_tokens_high: Some(8.0),
                energy_kwh_per_million_tokens_low: None,
                energy_kwh_per_million_tokens_high: None,
                interval_basis: Some("a factor 1.25 (TTFT) and 1.25 (TPOT) either way".into()),
            },
            calibration_mape: Some(CalibrationError {
                ttft: 0.12,
                tpot: 0.08,
                points: 5,
            }),
            sources: vec!["https://example.org/inf2-pricing, \"2024-05\" | a".into()],
            notes: vec!["assumes NeuronCore-v2 at 90% of peak".into()],
        }
    }

    /// A report with four requests, a projection and a host check.
    pub(crate) fn report() -> Report {
        let samples: Vec<RequestSample> = (0..4).map(|i| ok_sample(i, 50.0, 8)).collect();
        let host = HostCheck::new(55.0, 50.0, 9.0, Some(10.0), 80.0, 12.5).with_steps(
            &StepTimes {
                prefill_tokens: 128,
                prefill_ms: 400.0,
                decode_rows: 4,
                decode_context: 128,
                decode_1_ms: 54.0,
                decode_rows_ms: 123.0,
                decode_steps_ms: vec![(1, 54.0), (2, 90.0), (4, 123.0)],
            },
            Some(StepParams {
                compute_efficiency: 0.7,
                bandwidth_efficiency: 0.5,
                decode_seq_ms: 22.7,
            }),
        );
        Report::from_samples(
            environment(),
            workload(),
            &samples,
            RunEnd {
                peak_rss_bytes: Some(512 << 20),
                ..RunEnd::default()
            },
            vec![projection()],
            Some(host),
        )
    }

    #[test]
    fn totals_and_throughput_follow_their_definitions() {
        let r = report();
        assert_eq!((r.requests, r.failed_requests), (4, 0));
        assert_eq!((r.prompt_tokens, r.output_tokens), (64, 32));
        // Each request: ttft 50 + 7 steps × 10 = 120 ms, starting 121 ms apart: no overlap.
        assert!((r.wall_s - 0.48).abs() < 1e-12);
        assert!((r.output_tokens_per_s.unwrap() - 32.0 / 0.48).abs() < 1e-9);
        assert!((r.total_tokens_per_s.unwrap() - 96.0 / 0.48).abs() < 1e-9);
        assert_eq!(r.tpot_ms.as_ref().unwrap().mean, 10.0);
        assert_eq!(r.decode_step_ms.as_ref().unwrap().count, 28);
        assert_eq!(r.peak_rss_bytes, Some(512 << 20));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn overlapping_spans_count_once() {
        assert_eq!(covered_ms([(0.0, 10.0), (0.0, 10.0)].into_iter()), 10.0);
        assert_eq!(covered_ms([(5.0, 10.0), (0.0, 10.0)].into_iter()), 15.0);
        assert_eq!(covered_ms([(0.0, 1.0), (3.0, 1.0)].into_iter()), 2.0);
        assert_eq!(covered_ms(std::iter::empty()), 0.0);
    }

    #[test]
    fn failed_and_interrupted_runs_are_reported() {
        let mut failed = ok_sample(1, 50.0, 8);
        failed.status = SampleStatus::Error {
            message: "out of memory".into(),
        };
        let samples = vec![ok_sample(0, 50.0, 8), failed];
        let end = RunEnd {
            interrupted: true,
            ..RunEnd::default()
        };
        let r = Report::from_samples(environment(), workload(), &samples, end, vec![], None);
        assert_eq!((r.requests, r.failed_requests, r.output_tokens), (1, 1, 8));
        assert!(r.interrupted);
        let all = r.warnings.join("\n");
        assert!(all.contains("interrupted"), "{all}");
        assert!(
            all.contains("1 requests failed") && all.contains("out of memory"),
            "{all}"
        );
        assert!(all.contains("only 1 request"), "{all}");
        assert_eq!(r.ttft_ms.as_ref().unwrap().stddev, None);
    }

    #[test]
    fn empty_run_has_null_summaries_and_no_rates() {
        let r = Report::from_samples(
            environment(),
            workload(),
            &[],
            RunEnd::default(),
            vec![],
            None,
        );
        assert_eq!(r.requests, 0);
        assert_eq!((r.ttft_ms.clone(), r.output_tokens_per_s), (None, None));
        assert!(r.warnings[0].starts_with("no request finished"));
    }

    #[test]
    fn slow_first_request_raises_a_warning() {
        let mut samples: Vec<RequestSample> = (0..10)
            .map(|i| ok_sample(i, 50.0 + i as f64 * 0.5, 8))
            .collect();
        samples[0] = ok_sample(0, 900.0, 8);
        let r = Report::from_samples(
            environment(),
            workload(),
            &samples,
            RunEnd::default(),
            vec![],
            None,
        );
        assert!(r
            .warnings
            .iter()
            .any(|w| w.starts_with("ttft_ms: the first counted")));
    }

    #[test]
    fn rebuilt_from_a_killed_runs_file_is_interrupted() {
        let file = SamplesFile {
            header: crate::measure::samples::SamplesHeader {
                schema_version: 1,
                environment: environment(),
                workload: workload(),
            },
            samples: vec![ok_sample(0, 50.0, 8), ok_sample(1, 50.0, 8)],
            end: None,
            warnings: vec!["s.jsonl:4: ignored a partial last line".into()],
        };
        let r = Report::from_samples_file(file, vec![]);
        assert!(r.interrupted);
        assert_eq!(r.requests, 2);
        assert_eq!(r.peak_rss_bytes, None);
        assert!(r.warnings[0].contains("partial last line"));
        assert!(r.warnings[1].contains("no end line"));
    }

    #[test]
    fn host_check_ratios_are_signed_relative_errors() {
        let h = HostCheck::new(55.0, 50.0, 9.0, Some(10.0), 1.0, 1.0);
        assert!((h.ttft_error_ratio.unwrap() - 0.1).abs() < 1e-12);
        assert!((h.tpot_error_ratio.unwrap() + 0.1).abs() < 1e-12);
        let h = HostCheck::new(55.0, 0.0, 9.0, None, 1.0, 1.0);
        assert_eq!((h.ttft_error_ratio, h.tpot_error_ratio), (None, None));
    }
}
