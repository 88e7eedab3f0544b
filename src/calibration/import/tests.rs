//! Each reader on its fixture, the expected figures read by hand from the fixture (the
//! tool's own summary fields, or medians computed independently with Python's
//! `statistics.median` over the file's requests), and the one-line errors.

use super::*;
use serde_json::json;

const VLLM: &str = include_str!(
    "../../../tests/fixtures/results/vllm/vllm-2.0qps-Llama-3.1-8B-Instruct-20261130-142207.json"
);
const GENAI_PERF: &str =
    include_str!("../../../tests/fixtures/results/genai-perf/profile_export_genai_perf.json");
const LLMPERF: &str = include_str!(
    "../../../tests/fixtures/results/llmperf/meta-llama-Meta-Llama-3-8B-Instruct_550_150_summary.json"
);
const NXDI: &str = include_str!("../../../tests/fixtures/results/nxdi/benchmark_report.json");
const GUIDELLM_CONCURRENT: &str =
    include_str!("../../../tests/fixtures/clients/guidellm/guidellm-concurrent.json");
const GUIDELLM_POISSON: &str =
    include_str!("../../../tests/fixtures/clients/guidellm/guidellm-poisson.json");
const SERVED: &str = include_str!("../../../tests/fixtures/clients/guidellm/served.jsonl");
const AIPERF: &str =
    include_str!("../../../tests/fixtures/clients/aiperf/profile_export_aiperf.json");
const AIPERF_RECORDS: &str =
    include_str!("../../../tests/fixtures/clients/aiperf/profile_export.jsonl");
const RUN_SAMPLES: &str = include_str!("../../../tests/fixtures/samples/three-requests.jsonl");

fn one(text: &str, file: &str) -> Measurement {
    let mut all = parse(text, file).unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[track_caller]
fn assert_close(got: f64, want: f64) {
    assert!(close(got, want), "got {got}, want {want}");
}

/// The error of `text`, checked to be one line naming the file.
#[track_caller]
fn error(text: &str, file: &str) -> String {
    let e = format!("{:#}", parse(text, file).unwrap_err());
    assert!(e.starts_with(&format!("{file}: ")), "{e}");
    assert!(!e.contains('\n'), "{e}");
    e
}

fn edited(text: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(text).unwrap();
    edit(&mut v);
    v.to_string()
}

#[test]
fn vllm_result_reads_its_summary_and_requests() {
    let m = one(VLLM, "v.json");
    assert_eq!(m.tool, Tool::VllmBenchServe);
    assert_eq!(m.model.as_deref(), Some("meta-llama/Llama-3.1-8B-Instruct"));
    assert_eq!(
        m.load,
        MeasuredLoad::Rate {
            rate: 2.0,
            burstiness: Some(1.0)
        }
    );
    assert_eq!(m.requests, Some(15));
    // total_input_tokens 7556 and total_output_tokens 1969 over completed 15.
    assert_close(m.input_tokens, 7556.0 / 15.0);
    assert_close(m.output_tokens, 1969.0 / 15.0);
    // median_ttft_ms and median_tpot_ms.
    assert_eq!(m.ttft.stat, Stat::Median);
    assert_close(m.ttft.ms, 42.024499999999996);
    assert_close(m.tpot.ms, 7.966659813084111);
    assert_close(m.output_tokens_per_s.unwrap(), 228.6454975695183);
    assert_eq!(m.date.as_deref(), Some("2026-11-30"));
    // 16 sent, request 11 failed: 15 shapes, send times from start_times[0] = 4182.913887.
    assert_eq!(m.per_request.len(), 15);
    assert_eq!(
        (m.per_request[0].prompt, m.per_request[0].output),
        (595, 124)
    );
    assert_eq!(m.per_request[0].start_s, Some(0.0));
    assert_close(m.per_request[2].start_s.unwrap(), 4183.560583 - 4182.913887);
    assert_eq!(m.missing(), Vec::<&str>::new());
}

#[test]
fn vllm_load_follows_rate_cap_and_burstiness() {
    let with = |rate: Value, cap: Value| {
        let text = edited(VLLM, |v| {
            v["request_rate"] = rate;
            v["max_concurrency"] = cap;
        });
        one(&text, "v.json").load
    };
    assert_eq!(
        with(json!("inf"), json!(8)),
        MeasuredLoad::Concurrency { concurrency: 8 }
    );
    // Unlimited rate, no cap or one above the requests: all num_prompts (16) at once.
    assert_eq!(
        with(json!("inf"), json!(32)),
        MeasuredLoad::Concurrency { concurrency: 16 }
    );
    assert_eq!(
        with(json!("inf"), Value::Null),
        MeasuredLoad::Concurrency { concurrency: 16 }
    );
    let capped = one(&edited(VLLM, |v| v["max_concurrency"] = json!(4)), "v.json");
    assert!(matches!(capped.load, MeasuredLoad::Rate { rate, .. } if rate == 2.0));
    assert!(
        capped.notes[0].contains("max_concurrency 4"),
        "{:?}",
        capped.notes
    );
    // Python writes an infinite burstiness as a bare Infinity: evenly spaced arrivals.
    let text = VLLM.replace("\"burstiness\": 1.0", "\"burstiness\": Infinity");
    assert_ne!(text, VLLM);
    assert_eq!(
        one(&text, "v.json").load,
        MeasuredLoad::Rate {
            rate: 2.0,
            burstiness: None
        }
    );
    let gamma = VLLM.replace("\"burstiness\": 1.0", "\"burstiness\": 0.5");
    assert_eq!(
        one(&gamma, "v.json").load,
        MeasuredLoad::Rate {
            rate: 2.0,
            burstiness: Some(0.5)
        }
    );
}

#[test]
fn vllm_ramp_up_is_replayed_or_refused() {
    let ramp = edited(VLLM, |v| v["ramp_up_strategy"] = json!("linear"));
    let m = one(&ramp, "v.json");
    assert_eq!(m.load, MeasuredLoad::Trace);
    assert!(m
        .per_request
        .windows(2)
        .all(|w| w[0].start_s <= w[1].start_s));
    let bare = edited(&ramp, |v| {
        v.as_object_mut().unwrap().remove("start_times");
    });
    let e = error(&bare, "v.json");
    assert!(e.contains("field ramp_up_strategy is linear"), "{e}");
}

#[test]
fn vllm_appended_results_are_one_measurement_a_line() {
    let a: Value = serde_json::from_str(VLLM).unwrap();
    let b = edited(VLLM, |v| v["max_concurrency"] = json!(2));
    let text = format!("{a}\n{b}\n");
    let all = parse(&text, "a.json").unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[1].label.starts_with("line 2: "), "{}", all[1].label);
    let broken = format!(
        "{a}\n{}\n",
        edited(VLLM, |v| {
            v.as_object_mut().unwrap().remove("median_tpot_ms");
        })
    );
    assert_eq!(
        error(&broken, "a.json"),
        "a.json: line 2: field median_tpot_ms is missing"
    );
}

#[test]
fn vllm_missing_or_invalid_fields_are_named() {
    let cases = [
        (
            "median_tpot_ms",
            Value::Null,
            "field median_tpot_ms is missing",
        ),
        (
            "median_ttft_ms",
            json!(0.0),
            "field median_ttft_ms is 0, expected a latency above 0",
        ),
        (
            "request_rate",
            json!("fast"),
            "field request_rate is \"fast\", expected a number",
        ),
        (
            "completed",
            json!(0),
            "field completed is 0, expected a whole number ≥ 1",
        ),
        (
            "burstiness",
            json!(-1),
            "field burstiness is -1, expected a value above 0",
        ),
    ];
    for (key, value, want) in cases {
        let text = edited(VLLM, |v| v[key] = value);
        let e = error(&text, "v.json");
        assert!(
            e.starts_with(&format!("v.json: {want}")),
            "{e} (wanted {want})"
        );
    }
}

#[test]
fn guidellm_reports_read_per_benchmark_with_medians_over_requests() {
    // Medians by Python's statistics.median over benchmarks[0].requests.successful[*]
    // (GuideLLM's own summary medians differ: nearest rank, ITL over all tokens).
    let m = one(GUIDELLM_CONCURRENT, "c.json");
    assert_eq!(m.tool, Tool::GuideLlm);
    assert_eq!(m.load, MeasuredLoad::Concurrency { concurrency: 4 });
    assert_eq!(m.label, "benchmark 1 of 1: concurrent, 4 streams");
    assert_eq!(m.model.as_deref(), Some("smollm2-135m"));
    assert_eq!(m.requests, Some(16));
    assert_close(m.ttft.ms, 569.1515207290649);
    assert_close(m.tpot.ms, 199.65296677180697);
    // metrics.prompt_token_count / output_token_count .successful.mean.
    assert_close(m.input_tokens, 73.8125);
    assert_close(m.output_tokens, 17.6875);
    assert_close(m.output_tokens_per_s.unwrap(), 17.46444242660501);
    assert_eq!(m.date.as_deref(), Some("2026-12-02"));
    assert_eq!(m.per_request.len(), 16);
    // The first listed request: 46 prompt tokens, 14 output, sent 1796197716.840014 s,
    // the earliest being 1796197716.821363 s.
    let r = m.per_request[0];
    assert_eq!((r.prompt, r.output), (46, 14));
    assert!((r.start_s.unwrap() - 0.018651).abs() < 1e-5, "{r:?}");
    assert!(m.notes.is_empty(), "{:?}", m.notes);

    let m = one(GUIDELLM_POISSON, "p.json");
    assert_eq!(
        m.load,
        MeasuredLoad::Rate {
            rate: 0.5,
            burstiness: Some(1.0)
        }
    );
    assert_close(m.ttft.ms, 419.40486431121826);
    assert_close(m.tpot.ms, 108.51491689682007);
}

/// Two benchmarks (a sweep's worth) out of the two fixtures.
fn guidellm_sweep() -> Value {
    let mut a: Value = serde_json::from_str(GUIDELLM_CONCURRENT).unwrap();
    let b: Value = serde_json::from_str(GUIDELLM_POISSON).unwrap();
    let second = b["benchmarks"][0].clone();
    a["benchmarks"].as_array_mut().unwrap().push(second);
    a
}

#[test]
fn guidellm_sweep_and_strategies() {
    let sweep = guidellm_sweep();
    let all = parse(&sweep.to_string(), "s.json").unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].label, "benchmark 2 of 2: poisson at 0.5 req/s");
    let strategy = |s: Value| {
        let mut v = sweep.clone();
        v["benchmarks"][1]["config"]["strategy"] = s;
        parse(&v.to_string(), "s.json").map(|mut all| all.remove(1).load)
    };
    assert_eq!(
        strategy(json!({"type_": "synchronous"})).unwrap(),
        MeasuredLoad::Concurrency { concurrency: 1 }
    );
    assert_eq!(
        strategy(json!({"type_": "constant", "rate": 2.5})).unwrap(),
        MeasuredLoad::Rate {
            rate: 2.5,
            burstiness: None
        }
    );
    // Throughput: all 16 at once under a cap of 10240, or 8 in flight under a cap of 8.
    assert_eq!(
        strategy(json!({"type_": "throughput", "max_concurrency": 10240})).unwrap(),
        MeasuredLoad::Concurrency { concurrency: 16 }
    );
    assert_eq!(
        strategy(json!({"type_": "throughput", "max_concurrency": 8})).unwrap(),
        MeasuredLoad::Concurrency { concurrency: 8 }
    );
    let e = format!(
        "{:#}",
        strategy(json!({"type_": "throughput"})).unwrap_err()
    );
    assert!(
        e.starts_with("s.json: benchmark 2: a throughput benchmark without"),
        "{e}"
    );
    let e = format!("{:#}", strategy(json!({"type_": "burst"})).unwrap_err());
    assert!(e.contains("field config.strategy.type_ is burst"), "{e}");
}

#[test]
fn guidellm_missing_fields_name_the_benchmark() {
    let mut v = guidellm_sweep();
    v["benchmarks"][1]["metrics"]
        .as_object_mut()
        .unwrap()
        .remove("request_totals");
    assert_eq!(
        error(&v.to_string(), "s.json"),
        "s.json: benchmark 2: field metrics.request_totals.successful is missing"
    );
    // Without its requests, a benchmark falls back on the summary medians (and says so)…
    let mut v = guidellm_sweep();
    v["benchmarks"][1]["requests"]["successful"] = json!([]);
    let all = parse(&v.to_string(), "s.json").unwrap();
    // GuideLLM's summary: time_to_first_token_ms.successful.median 403.21874618530273,
    // inter_token_latency_ms.successful.median 104.59342002868652.
    assert_close(all[1].ttft.ms, 403.21874618530273);
    assert_close(all[1].tpot.ms, 104.59342002868652);
    assert!(all[1].per_request.is_empty());
    assert!(all[1].notes[0].contains("summary medians"));
    // … which then must be there.
    v["benchmarks"][1]["metrics"]
        .as_object_mut()
        .unwrap()
        .remove("time_to_first_token_ms");
    assert_eq!(
        error(&v.to_string(), "s.json"),
        "s.json: benchmark 2: field metrics.time_to_first_token_ms.successful.median is missing"
    );
}

#[test]
fn aiperf_summary_reads_p50s_and_its_phase() {
    let m = one(AIPERF, "a.json");
    assert_eq!(m.tool, Tool::AiPerf);
    assert_eq!(m.load, MeasuredLoad::Concurrency { concurrency: 4 });
    assert_eq!(m.model.as_deref(), Some("smollm2-135m"));
    assert_eq!(m.requests, Some(16));
    // time_to_first_token.p50, inter_token_latency.p50, *_sequence_length.avg.
    assert_close(m.ttft.ms, 677.1031105);
    assert_close(m.tpot.ms, 160.72948662121212);
    assert_close(m.input_tokens, 73.8125);
    assert_close(m.output_tokens, 17.625);
    assert_close(m.output_tokens_per_s.unwrap(), 15.857092380065586);
    assert_eq!(m.date.as_deref(), Some("2026-12-02"));

    let phase = |p: Value| {
        let text = edited(AIPERF, |v| v["input_config"]["phases"][0] = p);
        parse(&text, "a.json").map(|mut all| all.remove(0).load)
    };
    assert_eq!(
        phase(json!({"kind": "profiling", "type": "poisson", "rate": 3.0})).unwrap(),
        MeasuredLoad::Rate {
            rate: 3.0,
            burstiness: Some(1.0)
        }
    );
    assert_eq!(
        phase(json!({"kind": "profiling", "type": "gamma", "rate": 3.0, "smoothness": 0.5}))
            .unwrap(),
        MeasuredLoad::Rate {
            rate: 3.0,
            burstiness: Some(0.5)
        }
    );
    assert_eq!(
        phase(json!({"kind": "profiling", "type": "constant", "rate": 3.0})).unwrap(),
        MeasuredLoad::Rate {
            rate: 3.0,
            burstiness: None
        }
    );
    let e = format!(
        "{:#}",
        phase(json!({"kind": "profiling", "type": "poisson"})).unwrap_err()
    );
    assert_eq!(e, "a.json: field input_config.phases.0.rate is missing");
    let e = format!(
        "{:#}",
        phase(json!({"kind": "profiling", "type": "fixed_schedule"})).unwrap_err()
    );
    assert!(
        e.starts_with("a.json: a fixed-schedule (trace replay) run"),
        "{e}"
    );
    let no_ttft = edited(AIPERF, |v| {
        v.as_object_mut().unwrap().remove("inter_token_latency");
    });
    assert_eq!(
        error(&no_ttft, "a.json"),
        "a.json: field inter_token_latency.p50 is missing"
    );
}

#[test]
fn aiperf_records_are_a_trace_with_medians_over_records() {
    // statistics.median over the 16 records' metrics.*.value.
    let m = one(AIPERF_RECORDS, "r.jsonl");
    assert_eq!(m.tool, Tool::AiPerf);
    assert_eq!(m.load, MeasuredLoad::Trace);
    assert_eq!(m.requests, Some(16));
    assert_close(m.ttft.ms, 677.1031105);
    assert_close(m.tpot.ms, 160.72948662121212);
    assert_close(m.input_tokens, 73.8125);
    assert_close(m.output_tokens, 17.625);
    // Sorted by send time: the first at 0, the last 16.536934412 s later.
    assert_eq!(m.per_request[0].start_s, Some(0.0));
    assert!((m.per_request[15].start_s.unwrap() - 16.536934412).abs() < 1e-6);
}

#[test]
fn genai_perf_summary_reads_p50s_and_its_stimulus() {
    let m = one(GENAI_PERF, "g.json");
    assert_eq!(m.tool, Tool::GenAiPerf);
    assert_eq!(m.load, MeasuredLoad::Concurrency { concurrency: 8 });
    assert_eq!(m.model.as_deref(), Some("meta-llama/Llama-3.1-8B-Instruct"));
    assert_eq!(m.requests, Some(100));
    assert_close(m.ttft.ms, 69.02816310106975);
    assert_close(m.tpot.ms, 10.053727788180254);
    assert_close(m.input_tokens, 550.0);
    assert_close(m.output_tokens, 150.45);
    assert_close(m.output_tokens_per_s.unwrap(), 751.9879093551389);
    // The earlier flat input_config, an unset setting written as "".
    let flat =
        edited(
            GENAI_PERF,
            |v| {
                v["input_config"] =
                    json!({"model": ["llama"], "concurrency": "", "request_rate": 5.0})
            },
        );
    let m = one(&flat, "g.json");
    assert_eq!(
        m.load,
        MeasuredLoad::Rate {
            rate: 5.0,
            burstiness: None
        }
    );
    assert_eq!(m.model.as_deref(), Some("llama"));
    let ns = edited(GENAI_PERF, |v| {
        v["time_to_first_token"]["unit"] = json!("ns")
    });
    assert_eq!(
        error(&ns, "g.json"),
        "g.json: field time_to_first_token.unit is ns, expected ms"
    );
}

#[test]
fn llmperf_tpot_is_derived_without_the_first_token() {
    let m = one(LLMPERF, "l.json");
    assert_eq!(m.tool, Tool::LlmPerf);
    assert_eq!(m.load, MeasuredLoad::Concurrency { concurrency: 2 });
    assert_eq!(
        m.model.as_deref(),
        Some("meta-llama/Meta-Llama-3-8B-Instruct")
    );
    assert_eq!(m.requests, Some(60));
    // results_ttft_s_quantiles_p50, in ms.
    assert_eq!(m.ttft.stat, Stat::Median);
    assert_close(m.ttft.ms, 0.47109956562664923 * 1000.0);
    // (results_end_to_end_latency_s_mean − results_ttft_s_mean)
    //   / (results_number_output_tokens_mean − 1), in ms.
    assert_eq!(m.tpot.stat, Stat::Mean);
    assert_close(
        m.tpot.ms,
        (4.74465557957477 - 0.4611836502202411) / (150.4 - 1.0) * 1000.0,
    );
    // Not LLMPerf's inter-token latency (31.6 ms here), which includes the TTFT.
    assert!(m.tpot.ms < 29.0, "{}", m.tpot.ms);
    assert!(
        m.notes[0].contains("includes the first token"),
        "{:?}",
        m.notes
    );
    assert_close(m.input_tokens, 563.4);
    assert_close(m.output_tokens, 150.4);
    assert_close(m.output_tokens_per_s.unwrap(), 62.7699476143871);
    // timestamp 1764336512.
    assert_eq!(m.date.as_deref(), Some("2025-11-28"));
    let e = error(
        &edited(LLMPERF, |v| {
            v["results_end_to_end_latency_s_mean"] = json!(0.3)
        }),
        "l.json",
    );
    assert!(e.contains("leave no decode time"), "{e}");
}

#[test]
fn nxdi_report_is_a_static_batch_the_command_completes() {
    let m = one(NXDI, "b.json");
    assert_eq!(m.tool, Tool::NxdInference);
    assert_eq!(m.load, MeasuredLoad::StaticBatch { batch: 0 });
    // context_encoding_model / token_generation_model latency_ms_p50.
    assert_close(m.ttft.ms, 97.62085750536312);
    assert_close(m.tpot.ms, 9.080554719048676);
    assert_eq!(m.missing(), vec!["batch", "input_tokens", "output_tokens"]);
    assert!(m.notes[0].contains("context-encoding"), "{:?}", m.notes);
    let e2e_only = edited(NXDI, |v| {
        v.as_object_mut().unwrap().remove("token_generation_model");
    });
    let e = error(&e2e_only, "b.json");
    assert!(
        e.starts_with("b.json: field token_generation_model is missing"),
        "{e}"
    );
}

#[test]
fn own_run_samples_are_a_static_batch() {
    // Two ok requests of three: TTFT 21.5 and 20.0 ms, TPOT 10.0 and 11.0 ms.
    let m = one(RUN_SAMPLES, "s.jsonl");
    assert_eq!(m.tool, Tool::ProfilerSamples);
    assert_eq!(m.load, MeasuredLoad::StaticBatch { batch: 1 });
    assert_eq!(m.requests, Some(2));
    assert_close(m.ttft.ms, 20.75);
    assert_close(m.tpot.ms, 10.5);
    assert_close(m.input_tokens, 16.0);
    assert_close(m.output_tokens, 4.0);
    assert_eq!(m.per_request.len(), 2);
    assert_eq!(m.per_request[1].start_s, Some(0.06));
    assert_eq!(m.date.as_deref(), Some("2024-05-01"));
    assert_eq!(m.settings.dtype, Some(FileDtype::Other("q4_1".into())));
}

#[test]
fn own_served_samples_are_a_trace() {
    // statistics.median over the 32 ok samples' ttft_ms and tpot_ms.
    let m = one(SERVED, "served.jsonl");
    assert_eq!(m.load, MeasuredLoad::Trace);
    assert_eq!(m.requests, Some(32));
    assert_close(m.ttft.ms, 477.80283499999996);
    assert_close(m.tpot.ms, 151.08943254545454);
    assert_close(m.input_tokens, 73.8125);
    assert_close(m.output_tokens, 17.6875);
    assert_eq!(m.settings.max_num_seqs, Some(4));
    assert_eq!(m.per_request.len(), 32);
    assert_eq!(m.per_request[0].start_s, Some(0.0));
    assert!(m
        .per_request
        .windows(2)
        .all(|w| w[0].start_s <= w[1].start_s));
    // The latest send: start_offset_ms 50992.655338.
    assert_close(m.per_request[31].start_s.unwrap(), 50.992655338);
    let e = error(
        &SERVED.replacen("\"batch\":4,\"status\"", "\"batch\":0,\"status\"", 1),
        "x.jsonl",
    );
    assert!(e.starts_with("x.jsonl: line 2: field `batch` is 0"), "{e}");
}

#[test]
fn own_run_report_reads_back() {
    let file = crate::measure::samples::parse_samples(RUN_SAMPLES.as_bytes(), "s").unwrap();
    let report = crate::report::Report::from_samples_file(file, Vec::new());
    let text = serde_json::to_string_pretty(&report).unwrap();
    let m = one(&text, "r.json");
    assert_eq!(m.tool, Tool::ProfilerReport);
    assert_eq!(m.load, MeasuredLoad::StaticBatch { batch: 1 });
    assert_close(m.ttft.ms, 20.75);
    assert_close(m.tpot.ms, 10.5);
    assert_eq!(m.model.as_deref(), Some("smollm2-135m"));
    assert!(
        m.notes.iter().any(|n| n.contains("1 requests failed")),
        "{:?}",
        m.notes
    );
    // A report of served requests has lost their send times.
    let served = SERVED.lines().next().unwrap().to_string() + "\n";
    let mut served: Value = serde_json::from_str(&served).unwrap();
    let mut r: Value = serde_json::from_str(&text).unwrap();
    r["workload"] = served["workload"].take();
    let e = error(&r.to_string(), "r.json");
    assert!(e.starts_with("r.json: a report of served requests"), "{e}");
    let bad = edited(&text, |v| {
        v.as_object_mut().unwrap().remove("prompt_tokens");
    });
    let e = error(&bad, "r.json");
    assert!(e.contains("missing field `prompt_tokens`"), "{e}");
    let bad = edited(&text, |v| v["tpot_ms"] = Value::Null);
    let e = error(&bad, "r.json");
    assert_eq!(
        e,
        "r.json: no TPOT was measured (every request produced one token?)"
    );
}

#[test]
fn each_format_is_told_by_content() {
    let cases: [(&str, Tool); 9] = [
        (VLLM, Tool::VllmBenchServe),
        (GUIDELLM_CONCURRENT, Tool::GuideLlm),
        (AIPERF, Tool::AiPerf),
        (AIPERF_RECORDS, Tool::AiPerf),
        (GENAI_PERF, Tool::GenAiPerf),
        (LLMPERF, Tool::LlmPerf),
        (NXDI, Tool::NxdInference),
        (RUN_SAMPLES, Tool::ProfilerSamples),
        (SERVED, Tool::ProfilerSamples),
    ];
    for (text, tool) in cases {
        // The name says nothing: detection is by content.
        assert_eq!(one(text, "result").tool, tool);
    }
}

#[test]
fn unknown_and_malformed_files_are_one_line_naming_what_was_expected() {
    let e = error(r#"{"foo": 1, "bar": [2]}"#, "x.json");
    assert!(e.starts_with("x.json: unknown JSON (keys "), "{e}");
    for telltale in [
        "median_ttft_ms",
        "benchmarks",
        "results_ttft_s_quantiles_p50",
        "token_generation_model",
    ] {
        assert!(e.contains(telltale), "{e}");
    }
    let e = error("latency: 12 ms\nthroughput: 3\n", "notes.txt");
    assert!(e.starts_with("notes.txt: not a JSON document ("), "{e}");
    assert!(e.contains("AIPerf or GenAI-Perf"), "{e}");
    let e = error(" \n", "empty.json");
    assert!(
        e.starts_with("empty.json: empty file; expected a result file of"),
        "{e}"
    );
    let e = error("[1, 2]", "list.json");
    assert!(
        e.starts_with("list.json: a JSON array at the top, expected an object"),
        "{e}"
    );
    let e = error("{\"a\": 1}\n{\"a\": 2}\n", "lines.jsonl");
    assert!(
        e.starts_with("lines.jsonl: JSON lines of an unknown kind (line 1 has keys a)"),
        "{e}"
    );
    // The file's own strings cannot break the line.
    let e = error("{\"a\\nb\": 1}", "x.json");
    assert!(e.starts_with("x.json: unknown JSON (keys a b)"), "{e}");
    let ramp = edited(VLLM, |v| {
        v["ramp_up_strategy"] = json!("up\r\ndown");
        v.as_object_mut().unwrap().remove("start_times");
    });
    let e = error(&ramp, "v.json");
    assert!(e.contains("field ramp_up_strategy is up  down"), "{e}");
    let e = error("{\"benchmarks\": 3, \"metadata\": {}}", "g.json");
    assert_eq!(e, "g.json: field benchmarks is missing or not a list");
    let e = error("{\"benchmarks\": [], \"metadata\": {}}", "g.json");
    assert_eq!(e, "g.json: holds no benchmark");
}

#[test]
fn python_non_finite_floats_are_quoted_outside_strings_only() {
    let fixed =
        python_floats(r#"{"a": NaN, "b": "NaN \" Infinity", "c": [-Infinity, Infinity]}"#).unwrap();
    assert_eq!(
        fixed,
        r#"{"a": "NaN", "b": "NaN \" Infinity", "c": ["-Infinity", "Infinity"]}"#
    );
    assert_eq!(python_floats(r#"{"a": 1}"#), None);
    // A NaN latency is named, not taken.
    let text = VLLM.replace(
        "\"median_tpot_ms\": 7.966659813084111",
        "\"median_tpot_ms\": NaN",
    );
    assert_ne!(text, VLLM);
    assert_eq!(
        error(&text, "v.json"),
        "v.json: field median_tpot_ms is NaN, expected a latency above 0 (was it streamed?)"
    );
}

#[test]
fn truncated_files_are_errors_not_panics() {
    for text in [
        VLLM,
        GENAI_PERF,
        LLMPERF,
        NXDI,
        AIPERF,
        AIPERF_RECORDS,
        RUN_SAMPLES,
        SERVED,
    ] {
        let cuts = (1..40).map(|i| text.len() * i / 40);
        for cut in cuts {
            let Some(prefix) = text.get(..cut) else {
                continue;
            };
            if let Err(e) = parse(prefix, "t") {
                assert!(!format!("{e:#}").contains('\n'), "{e:#}");
            }
        }
    }
}

#[test]
fn read_names_unreadable_and_binary_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    std::fs::write(&path, [b'{', 0xff, 0xfe, b'}']).unwrap();
    let e = format!("{:#}", read(&path).unwrap_err());
    let want = format!(
        "{}: not UTF-8 text (byte 1); expected {EXPECTED}",
        path.display()
    );
    assert_eq!(e, want);
    let e = format!("{:#}", read(&dir.path().join("absent.json")).unwrap_err());
    assert!(
        e.starts_with("cannot read ") && e.contains("absent.json"),
        "{e}"
    );
    std::fs::write(&path, NXDI).unwrap();
    assert_eq!(read(&path).unwrap()[0].file, path.display().to_string());
}
