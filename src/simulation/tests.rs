//! Semantics of the simulator, checked against the static projection, closed-form
//! queueing results and invariants (exact or with stated tolerances; no timing).

use super::load::{Arrivals, LengthEntry, Lengths, Load};
use super::report::SloSpec;
use super::*;
use crate::model::card;
use crate::projection::latency::{estimate, Target};
use crate::projection::profile;
use crate::projection::WeightsDtype;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn card8b() -> ModelCard {
    card::find(&root().join("models"), "llama-3.1-8b").unwrap()
}

fn prof(name: &str) -> Profile {
    profile::load(&root().join("profiles"), name).unwrap()
}

fn dep(tp: u32, slots: u32, seq_len: u32) -> Deployment {
    Deployment {
        tp,
        dp: 1,
        ep: 1,
        max_num_seqs: slots,
        seq_len,
        ctx_batch_size: 1,
        buckets: None,
        chunked_prefill: true,
        max_num_batched_tokens: 2048,
        dtype: WeightsDtype::Bf16,
    }
}

fn fixed(input: u32, output: u32, arrivals: Arrivals, n: u64, seed: u64) -> Load {
    Load {
        arrivals,
        lengths: Lengths::Spread {
            input,
            output,
            input_stddev: 0.0,
            output_stddev: 0.0,
        },
        requests: Some(n),
        duration_s: None,
        seed,
    }
}

fn req(d: Deployment, load: Load) -> SimRequest {
    SimRequest {
        dep: d,
        load,
        slo: SloSpec {
            ttft_ms: None,
            tpot_ms: None,
            percentile: 99.0,
        },
        price: PriceKind::OnDemand,
    }
}

fn sim(p: &Profile, inst: &str, r: &SimRequest) -> (report::SimReport, Outcome) {
    let c = card8b();
    run(&c, p, p.instance(inst).unwrap(), r).unwrap()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-12)
}

#[test]
fn one_request_on_one_slot_equals_the_static_projection() {
    let c = card8b();
    for (name, inst, tp, rel) in [
        // Static shapes: every step is a bucket, so the sum is exact.
        ("inf2-profile", "inf2.48xlarge", 24, 1e-9),
        ("trn1-profile", "trn1.32xlarge", 32, 1e-9),
        // Dynamic shapes: `project` averages the decode steps over 64 slices.
        ("h100-profile", "p5.48xlarge", 8, 1e-4),
    ] {
        let p = prof(name);
        let (i, o) = (1500, 250);
        let t = Target::new(tp, 1, i, o, WeightsDtype::Bf16);
        let dep0 = crate::projection::latency::deployment(&p, &t);
        let e = estimate(&c.architecture, &p, &p.latency, &t);
        let mut d = dep(tp, 1, dep0.seq_len);
        d.chunked_prefill = false;
        let (r, _) = sim(
            &p,
            inst,
            &req(d, fixed(i, o, Arrivals::Closed { concurrency: 1 }, 3, 0)),
        );
        let ttft = r.ttft_ms.unwrap().mean;
        let tpot = r.tpot_ms.unwrap().mean;
        let e2e = r.e2e_ms.unwrap().mean;
        assert!(
            close(ttft, e.ttft_ms, rel),
            "{name}: TTFT {ttft} vs {}",
            e.ttft_ms
        );
        assert!(
            close(tpot, e.tpot_ms, rel),
            "{name}: TPOT {tpot} vs {}",
            e.tpot_ms
        );
        assert!(
            close(e2e, e.e2e_ms, rel),
            "{name}: e2e {e2e} vs {}",
            e.e2e_ms
        );
        assert_eq!(r.queue_ms.unwrap().max, 0.0);
    }
}

#[test]
fn intervals_of_a_lone_request_are_the_error_bar_by_hand() {
    // inf2-profile on inf2.48xlarge at TP 24 (the calibrated runs): TTFT and TPOT factors
    // 1 + 0.3456 and 1 + 0.4088, the larger held-out MAPEs of its [calibration] table. A
    // request alone: TTFT is one context-encoding step, TPOT one decode step.
    let p = prof("inf2-profile");
    let (i, o) = (1500, 250);
    let t = Target::new(24, 1, i, o, WeightsDtype::Bf16);
    let dep0 = crate::projection::latency::deployment(&p, &t);
    let mut d = dep(24, 1, dep0.seq_len);
    d.chunked_prefill = false;
    let (r, _) = sim(
        &p,
        "inf2.48xlarge",
        &req(d, fixed(i, o, Arrivals::Closed { concurrency: 1 }, 3, 0)),
    );
    let x = &r.intervals;
    let mean = |s: &Option<crate::measure::stats::Summary>| s.as_ref().unwrap().mean;
    let (ttft, tpot) = (mean(&r.ttft_ms), mean(&r.tpot_ms));
    assert!(close(mean(&x.ttft_ms_low), ttft / 1.3456, 1e-9));
    assert!(close(mean(&x.ttft_ms_high), ttft * 1.3456, 1e-9));
    assert!(close(mean(&x.tpot_ms_low), tpot / 1.4088, 1e-9));
    assert!(close(mean(&x.tpot_ms_high), tpot * 1.4088, 1e-9));
    let (lo, hi) = (
        x.cost_usd_per_million_tokens_low.unwrap(),
        x.cost_usd_per_million_tokens_high.unwrap(),
    );
    let c = r.cost_usd_per_million_tokens.unwrap();
    assert!(lo < c && c < hi, "{lo} {c} {hi}");
}

#[test]
fn plan_ranking_says_whether_cost_intervals_overlap() {
    use super::plan::{ranking_note, PlanIntervals, PlanRow};
    let row = |inst: &str, cost: f64, lo: f64, hi: Option<f64>| PlanRow {
        profile: "p".into(),
        instance: inst.into(),
        tp: Some(1),
        dp: Some(1),
        ep_degree: Some(1),
        max_num_seqs: Some(8),
        max_rate_per_instance: Some(1.0),
        instances_needed: Some(2),
        fleet_usd_per_hour: Some(1.0),
        cost_usd_per_million_tokens: Some(cost),
        meets_slo: true,
        reason: None,
        reason_settings: None,
        ttft_ms_at_percentile: Some(1.0),
        tpot_ms_at_percentile: Some(1.0),
        label: String::new(),
        intervals: PlanIntervals {
            cost_usd_per_million_tokens_low: Some(lo),
            cost_usd_per_million_tokens_high: hi,
            ..PlanIntervals::default()
        },
    };
    let note =
        ranking_note(&[row("a", 1.0, 0.5, Some(2.0)), row("b", 1.5, 1.2, Some(3.0))]).unwrap();
    assert!(note.starts_with("ranking not decided"), "{note}");
    assert!(note.contains("2 × a ($0.500–$2.000)"), "{note}");
    let note =
        ranking_note(&[row("a", 1.0, 0.5, Some(1.1)), row("b", 1.5, 1.2, Some(3.0))]).unwrap();
    assert!(note.starts_with("ranking decided"), "{note}");
    // An unbounded upper end overlaps everything above the lower end.
    let note = ranking_note(&[row("a", 1.0, 0.5, None), row("b", 9.0, 8.0, Some(9.5))]).unwrap();
    assert!(
        note.contains("unbounded") && note.starts_with("ranking not decided"),
        "{note}"
    );
    assert_eq!(ranking_note(&[row("a", 1.0, 0.5, None)]), None);
}

#[test]
fn a_lone_request_on_many_static_slots_pays_the_compiled_batch() {
    // Neuron: the decode step runs all 8 compiled rows, busy or not, so one request alone
    // on 8 slots has the TPOT of a full static batch of 8.
    let c = card8b();
    let p = prof("inf2-profile");
    let (i, o) = (1024, 256);
    let mut t = Target::new(8, 8, i, o, WeightsDtype::Bf16);
    t.compiled_seq_len = Some(4096);
    let full = estimate(&c.architecture, &p, &p.latency, &t);
    let (r, _) = sim(
        &p,
        "inf2.24xlarge",
        &req(
            dep(8, 8, 4096),
            fixed(i, o, Arrivals::Closed { concurrency: 1 }, 2, 0),
        ),
    );
    let tpot = r.tpot_ms.unwrap().mean;
    assert!(
        close(tpot, full.tpot_ms, 1e-9),
        "{tpot} vs {}",
        full.tpot_ms
    );
    let (r1, _) = sim(
        &p,
        "inf2.24xlarge",
        &req(
            dep(8, 1, 4096),
            fixed(i, o, Arrivals::Closed { concurrency: 1 }, 2, 0),
        ),
    );
    assert!(r1.tpot_ms.unwrap().mean < tpot);
}

#[test]
fn littles_law_holds_on_a_long_run() {
    for (name, inst, tp) in [
        ("h100-profile", "p5.48xlarge", 8),
        ("inf2-profile", "inf2.24xlarge", 8),
    ] {
        let p = prof(name);
        let d = dep(tp, 16, 2048);
        let (r, _) = sim(
            &p,
            inst,
            &req(
                d,
                Load {
                    arrivals: Arrivals::Rate {
                        rate: 2.0,
                        burstiness: 1.0,
                    },
                    lengths: Lengths::Spread {
                        input: 800,
                        output: 200,
                        input_stddev: 200.0,
                        output_stddev: 50.0,
                    },
                    requests: Some(5000),
                    duration_s: None,
                    seed: 11,
                },
            ),
        );
        let l = r.mean_in_system;
        let lambda_w = r.requests_per_s * r.e2e_ms.as_ref().unwrap().mean / 1e3;
        assert!(close(l, lambda_w, 0.02), "{name}: L {l} vs λW {lambda_w}");
        assert_eq!(r.requests, 5000);
    }
}

#[test]
fn single_slot_prefill_only_queue_is_m_d_1() {
    // One slot, one output token: each request is one context encoding of fixed length, a
    // deterministic service time D. With Poisson arrivals at ρ = λD = 0.5 the mean wait in
    // queue is the Pollaczek–Khinchine result for M/D/1: Wq = ρ·D / (2(1 − ρ)).
    let p = prof("inf2-profile");
    let c = card8b();
    let d = dep(8, 1, 1024);
    let m = StepModel::new(&c.architecture, &p, &p.latency, &d);
    let service = m.encode_s(&[512]);
    let rho = 0.5;
    let lambda = rho / service;
    let (r, _) = sim(
        &p,
        "inf2.24xlarge",
        &req(
            d,
            fixed(
                512,
                1,
                Arrivals::Rate {
                    rate: lambda,
                    burstiness: 1.0,
                },
                200_000,
                5,
            ),
        ),
    );
    let wq = r.queue_ms.unwrap().mean / 1e3;
    let want = rho * service / (2.0 * (1.0 - rho));
    assert!(close(wq, want, 0.03), "Wq {wq} vs M/D/1 {want}");
    // Utilisation of the one slot is ρ.
    assert!(
        close(r.slot_utilization, rho, 0.02),
        "{}",
        r.slot_utilization
    );
}

#[test]
fn same_seed_same_output_other_seed_other_output() {
    let p = prof("h100-profile");
    let mk = |seed| {
        let l = Load {
            arrivals: Arrivals::Rate {
                rate: 5.0,
                burstiness: 0.5,
            },
            lengths: Lengths::Spread {
                input: 1000,
                output: 100,
                input_stddev: 300.0,
                output_stddev: 30.0,
            },
            requests: Some(500),
            duration_s: None,
            seed,
        };
        let (r, o) = sim(&p, "p5.48xlarge", &req(dep(8, 32, 2048), l));
        (serde_json::to_string(&r).unwrap(), per_request_jsonl(&o))
    };
    assert_eq!(mk(1), mk(1));
    assert_ne!(mk(1).0, mk(2).0);
}

#[test]
fn more_load_never_lowers_latency() {
    for (name, inst, tp) in [
        ("inf2-profile", "inf2.24xlarge", 8),
        ("h100-profile", "p5.48xlarge", 8),
    ] {
        let p = prof(name);
        let mut last = (0.0, 0.0);
        for c in [1, 2, 4, 8, 16, 32] {
            let (r, _) = sim(
                &p,
                inst,
                &req(
                    dep(tp, 16, 2048),
                    fixed(1000, 100, Arrivals::Closed { concurrency: c }, 400, 0),
                ),
            );
            let now = (r.e2e_ms.unwrap().mean, r.ttft_ms.unwrap().mean);
            assert!(
                now.0 >= last.0 && now.1 >= last.1,
                "{name} concurrency {c}: {now:?} < {last:?}"
            );
            last = now;
        }
        let mut last = 0.0;
        for rate in [0.5, 1.0, 2.0, 4.0, 8.0] {
            let (r, _) = sim(
                &p,
                inst,
                &req(
                    dep(tp, 16, 2048),
                    fixed(
                        1000,
                        100,
                        Arrivals::Rate {
                            rate,
                            burstiness: 1.0,
                        },
                        400,
                        3,
                    ),
                ),
            );
            let now = r.e2e_ms.unwrap().mean;
            assert!(now >= last, "{name} rate {rate}: {now} < {last}");
            last = now;
        }
    }
}

#[test]
fn prompts_beyond_the_buckets_or_the_compiled_length_are_refused() {
    let p = prof("inf2-profile");
    let c = card8b();
    let inst = p.instance("inf2.24xlarge").unwrap();
    let mut d = dep(8, 4, 2048);
    d.buckets = Some(vec![128, 256]);
    let e = check(
        &c,
        &p,
        inst,
        &req(d, fixed(300, 10, Arrivals::Closed { concurrency: 1 }, 1, 0)),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("longer than the largest context-encoding bucket (256)"),
        "{e}"
    );
    let e = check(
        &c,
        &p,
        inst,
        &req(
            dep(8, 4, 1024),
            fixed(1000, 100, Arrivals::Closed { concurrency: 1 }, 1, 0),
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("seq_len 1024 is below input + output"), "{e}");
    // A workload line too long is named by its request number.
    let mut r = req(dep(8, 4, 1024), fixed(10, 10, Arrivals::Trace, 2, 0));
    r.load.lengths = Lengths::List(vec![
        LengthEntry {
            prompt: 10,
            output: 10,
            arrival_s: Some(0.0),
        },
        LengthEntry {
            prompt: 1000,
            output: 100,
            arrival_s: Some(1.0),
        },
    ]);
    let e = check(&c, &p, inst, &r).unwrap_err();
    assert!(
        format!("{e:#}").starts_with("request 2: seq_len 1024"),
        "{e:#}"
    );
    let named = crate::projection::setting::chain_with_flags(&e);
    assert!(named.starts_with("request 2: --seq-len 1024"), "{named}");
}

#[test]
fn replicas_beyond_the_instance_and_oversized_slots_are_refused() {
    let p = prof("inf2-profile");
    let c = card8b();
    let inst = p.instance("inf2.24xlarge").unwrap(); // 12 NeuronCores
    let mut d = dep(8, 4, 2048);
    d.dp = 2;
    let e = check(
        &c,
        &p,
        inst,
        &req(d, fixed(100, 10, Arrivals::Closed { concurrency: 1 }, 1, 0)),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("dp 2 × tp 8 = 16 NeuronCores, more than the 12"),
        "{e}"
    );
    let e = check(
        &c,
        &p,
        inst,
        &req(
            dep(8, 4096, 8192),
            fixed(100, 10, Arrivals::Closed { concurrency: 1 }, 1, 0),
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("max_num_seqs 4096") && e.contains("GiB usable"),
        "{e}"
    );
}

#[test]
fn replicas_share_the_load() {
    // Two replicas at twice the rate give the latency of one at the rate (same seed and
    // deterministic service: not exactly, since the queue is shared; the shared queue is
    // never worse on average).
    let p = prof("inf2-profile");
    let l = |rate| {
        fixed(
            1000,
            100,
            Arrivals::Rate {
                rate,
                burstiness: 1.0,
            },
            2000,
            4,
        )
    };
    let (one, _) = sim(&p, "inf2.48xlarge", &req(dep(8, 8, 2048), l(1.0)));
    let mut d = dep(8, 8, 2048);
    d.dp = 3;
    let (three, _) = sim(&p, "inf2.48xlarge", &req(d, l(3.0)));
    assert!(three.requests_per_s > 2.5 * one.requests_per_s);
    assert!(three.e2e_ms.unwrap().mean <= one.e2e_ms.unwrap().mean * 1.02);
}

#[test]
fn chunked_prefill_bounds_the_token_budget_and_lowers_decode_stalls() {
    let p = prof("h100-profile");
    let l = fixed(
        6000,
        200,
        Arrivals::Rate {
            rate: 3.0,
            burstiness: 1.0,
        },
        600,
        9,
    );
    let (chunked, _) = sim(&p, "p5.48xlarge", &req(dep(8, 32, 8192), l.clone()));
    let mut d = dep(8, 32, 8192);
    d.chunked_prefill = false;
    let (whole, _) = sim(&p, "p5.48xlarge", &req(d, l));
    assert_eq!(chunked.setup.scheduler, "chunked-prefill");
    assert_eq!(whole.setup.scheduler, "prefill-first");
    // A 6000-token prompt stalls every decoding sequence for a whole prefill without
    // chunking; with 2048-token chunks the longest gap between two tokens is shorter.
    assert!(chunked.itl_ms.unwrap().max < whole.itl_ms.unwrap().max);
}

#[test]
fn stop_rule_bound_is_the_hand_computed_one() {
    use super::engine::StopRule;
    // p99 of 200 values: sorted index ⌊199 × 0.99⌋ = 197, so 3 values over the limit
    // decide it; p50 of 10: index ⌊9 × 0.5⌋ = 4, so 6.
    assert_eq!(
        StopRule::for_percentile(None, None, 0.99, 200).max_violations,
        3
    );
    assert_eq!(
        StopRule::for_percentile(None, None, 0.5, 10).max_violations,
        6
    );
    assert_eq!(
        StopRule::for_percentile(None, None, 1.0, 1).max_violations,
        1
    );
}

#[test]
fn a_run_stopped_early_misses_the_objectives_the_full_run_misses() {
    use super::engine::StopRule;
    let c = card8b();
    let mut stops = 0;
    for (name, _inst, tp) in [
        ("inf2-profile", "inf2.48xlarge", 24),
        ("h100-profile", "p5.48xlarge", 8),
    ] {
        let p = prof(name);
        let d = dep(tp, 8, 2048);
        let m = StepModel::new(&c.architecture, &p, &p.latency, &d);
        for rate in [0.5, 2.0, 8.0, 32.0] {
            let l = fixed(
                1500,
                250,
                Arrivals::Rate {
                    rate,
                    burstiness: 1.0,
                },
                200,
                7,
            );
            let full = run_model(&m, &l);
            let mut ttft: Vec<f64> = full.records.iter().map(|r| r.ttft() * 1e3).collect();
            let mut tpot: Vec<f64> = full
                .records
                .iter()
                .filter_map(|r| r.tpot().map(|t| t * 1e3))
                .collect();
            let p99t = report::quantile(&mut ttft, 0.99).unwrap();
            let p99p = report::quantile(&mut tpot, 0.99).unwrap();
            // Limits just below and above the full run's p99: a run stops only when the
            // full run misses them.
            for (lt, lp) in [
                (p99t * 0.999, None),
                (p99t * 1.001, None),
                (f64::MAX, Some(p99p * 0.999)),
                (f64::MAX, Some(p99p * 1.001)),
            ] {
                let rule = StopRule::for_percentile(Some(lt), lp, 0.99, 200);
                let early = run_model_until(&m, &l, Some(rule));
                let missed = p99t > lt || lp.is_some_and(|x| p99p > x);
                if early.stopped {
                    assert!(
                        missed,
                        "{name} rate {rate}: stopped, yet {lt} {lp:?} are met"
                    );
                    stops += 1;
                } else {
                    // Not stopped: the same run, so the same verdict.
                    assert_eq!(early.records, full.records, "{name} rate {rate}");
                }
            }
        }
    }
    assert!(stops >= 4, "the rule never stopped a run ({stops})");
}

#[test]
fn prefill_first_with_a_budget_below_a_prompt_prefills_one_prompt_per_step() {
    // Three 500-token prompts arrive at 0; the first starts a step on its own (a step starts
    // as soon as a request arrives). Hand computation from the step model's own prompt
    // steps: with a 2048-token budget the other two share the next step; with a budget
    // of 1 every prompt has a step of its own, so first tokens come at p, 2p, 3p.
    let c = card8b();
    let p = prof("h100-profile");
    let mut d = dep(8, 4, 2048);
    d.chunked_prefill = false;
    let l = fixed(500, 4, Arrivals::Closed { concurrency: 3 }, 3, 1);
    let firsts = |m: &StepModel| {
        let mut f: Vec<f64> = run_model(m, &l)
            .records
            .iter()
            .map(|r| r.first_token)
            .collect();
        f.sort_by(f64::total_cmp);
        f
    };
    let together = StepModel::new(&c.architecture, &p, &p.latency, &d);
    let one = together.mixed_step_s(&[], &[(500, 0)]);
    let two = together.mixed_step_s(&[], &[(500, 0), (500, 0)]);
    let f = firsts(&together);
    for (t, want) in f.iter().zip([one, one + two, one + two]) {
        assert!(close(*t, want, 1e-12), "{f:?}: {one} then {two}");
    }
    d.max_num_batched_tokens = 1;
    let alone = StepModel::new(&c.architecture, &p, &p.latency, &d);
    let f = firsts(&alone);
    for (k, t) in f.iter().enumerate() {
        assert!(
            close(*t, (k + 1) as f64 * one, 1e-12),
            "{f:?}: steps of {one}"
        );
    }
}

#[test]
fn plan_tries_expert_parallelism_for_mixture_of_experts_models_only() {
    let models = root().join("models");
    let c = |name: &str| card::find(&models, name).unwrap();
    assert_eq!(plan::ep_candidates(&c("qwen3-30b-a3b"), 16), vec![1, 16]);
    assert_eq!(plan::ep_candidates(&c("qwen3-30b-a3b"), 1), vec![1]);
    // Mixtral has 8 experts: no group of its own for each of 16 units
    assert_eq!(plan::ep_candidates(&c("mixtral-8x7b"), 16), vec![1]);
    assert_eq!(plan::ep_candidates(&c("mixtral-8x7b"), 8), vec![1, 8]);
    assert_eq!(plan::ep_candidates(&card8b(), 8), vec![1]);
}
