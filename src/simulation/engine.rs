//! The discrete-event simulation of one serving instance: `dp` replicas of a deployment
//! pulling requests from one FIFO queue, each running engine steps whose durations come
//! from [`crate::projection::step::StepModel`].
//!
//! Schedulers (one per profile kind):
//! * **static slots** (Neuron, as vLLM on Neuron / NxD Inference continuous batching):
//!   `max_num_seqs` slots. When requests wait and a slot is free, the next step is a
//!   context encoding of up to `ctx_batch_size` of them (prefill first, as vLLM's
//!   scheduler without chunked prefill does); otherwise a decode step of the compiled batch,
//!   whose cost does not depend on how many slots are busy.
//! * **continuous batching with chunked prefill** (GPU, vLLM's default): each step has a
//!   budget of `max_num_batched_tokens`; every running sequence decodes one token first,
//!   then unfinished prompts continue, then waiting requests are admitted while slots, KV
//!   blocks and budget last, their prompts cut into chunks that fit (vLLM docs,
//!   "Optimization and Tuning", chunked prefill: decode requests are prioritised, then
//!   pending prefills). Without chunked prefill: a step is either whole prompts or decodes.
//!
//! Events are processed in time order (arrivals before step ends at equal times), so the
//! same load and seed give the same result.

use super::load::{Arrivals, Source};
use crate::projection::step::StepModel;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// What happened to one request, seconds from the start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record {
    pub arrival: f64,
    /// Start of the first step that worked on it.
    pub start: f64,
    pub first_token: f64,
    pub finish: f64,
    pub prompt: u32,
    pub output: u32,
}

impl Record {
    pub fn ttft(&self) -> f64 {
        self.first_token - self.arrival
    }
    pub fn e2e(&self) -> f64 {
        self.finish - self.arrival
    }
    pub fn queue(&self) -> f64 {
        self.start - self.arrival
    }
    /// Mean time per output token after the first (`None` for one-token outputs).
    pub fn tpot(&self) -> Option<f64> {
        (self.output > 1).then(|| (self.finish - self.first_token) / (self.output - 1) as f64)
    }
}

/// Ends a run early once its objectives are certainly missed: `max_violations` requests
/// over the TTFT (or the TPOT) limit put the percentile the objectives are judged at over
/// it whatever the other requests do (see [`StopRule::for_percentile`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopRule {
    /// Milliseconds, compared as the objectives are (`Record::ttft() × 1e3`).
    pub ttft_ms: Option<f64>,
    /// Milliseconds.
    pub tpot_ms: Option<f64>,
    pub max_violations: usize,
}

impl StopRule {
    /// The rule for the `q`-quantile (linear interpolation, as
    /// [`super::report::quantile`]) of `n` values: once `k ≥ n − ⌊(n − 1)·q⌋` values exceed
    /// a limit, the value at sorted index `⌊(n − 1)·q⌋` does, and so does the quantile.
    /// With fewer values (TPOT skips one-token outputs) the bound only gets smaller, so
    /// the rule stays safe.
    pub fn for_percentile(ttft_ms: Option<f64>, tpot_ms: Option<f64>, q: f64, n: u64) -> Self {
        let n = n.max(1) as f64;
        let lo = ((n - 1.0) * q.clamp(0.0, 1.0)).floor();
        StopRule {
            ttft_ms,
            tpot_ms,
            max_violations: (n - lo).max(1.0) as usize,
        }
    }
}

/// Everything a run of the simulator measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Finished requests, in the order they were issued.
    pub records: Vec<Record>,
    /// Every inter-token gap (between consecutive tokens of one request), seconds, run-length
    /// encoded: `(gap, how many times in a row)`.
    pub itl: Vec<(f64, u64)>,
    /// Time from the first arrival to the last finish, seconds.
    pub span_s: f64,
    /// Time integral of the number of requests in the system (arrived, not finished).
    pub in_system_area: f64,
    /// Time integral of busy slots over all replicas.
    pub busy_slot_area: f64,
    /// Largest number of KV-cache tokens held at once over all replicas (dynamic shapes).
    pub peak_kv_tokens: f64,
    /// Engine steps run.
    pub steps: u64,
    /// Sampled lengths cut to the deployment's limits.
    pub clipped: u64,
    /// The run was ended by its [`StopRule`]: the objectives are missed.
    pub stopped: bool,
}

#[derive(Debug, Clone)]
struct Active {
    id: usize,
    prompt: u32,
    /// Prompt tokens already in the cache (dynamic shapes, chunked prefill).
    prefilled: u32,
    /// Attention length of this sequence's next decode step.
    ctx: u32,
    /// Tokens still to emit.
    remaining: u32,
    last_token: f64,
    /// KV tokens reserved for it (prompt + output).
    reserved: u32,
    /// Its first token came out of the step that just ended.
    fresh: bool,
}

#[derive(Debug, Clone, Default)]
struct Replica {
    active: Vec<Active>,
    busy_until: f64,
    busy: bool,
    /// Work of the running step: (index into `active`, prompt tokens computed this step).
    chunks: Vec<(usize, u32)>,
    decoding: bool,
    reserved: u64,
}

/// A time ordered by `f64::total_cmp`, for the arrival heap.
#[derive(Debug, Clone, Copy)]
struct Time(f64);
impl PartialEq for Time {
    fn eq(&self, o: &Self) -> bool {
        self.0.total_cmp(&o.0).is_eq()
    }
}
impl Eq for Time {}
impl PartialOrd for Time {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Time {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

type Future = BinaryHeap<Reverse<(Time, usize)>>;

/// Draws the next request from `source` (arriving at `now` in a closed loop) into `sim`
/// and `future`; false when the load is exhausted.
fn issue(sim: &mut Sim, source: &mut Source, now: f64, future: &mut Future) -> bool {
    let Some((p, o, t)) = source.next(now) else {
        return false;
    };
    let id = sim.reqs.len();
    sim.reqs.push(Record {
        arrival: t,
        start: f64::NAN,
        first_token: f64::NAN,
        finish: f64::NAN,
        prompt: p,
        output: o,
    });
    sim.done.push(false);
    future.push(Reverse((Time(t), id)));
    true
}

struct Sim<'a> {
    m: &'a StepModel,
    queue: VecDeque<usize>,
    reqs: Vec<Record>,
    done: Vec<bool>,
    itl: Vec<(f64, u64)>,
    kv_now: f64,
    peak_kv: f64,
    steps: u64,
    finished: Vec<usize>,
    kv_capacity: f64,
    /// Reused buffer of decode contexts.
    buf: Vec<u32>,
    stop: Option<StopRule>,
    ttft_over: usize,
    tpot_over: usize,
}

impl Sim<'_> {
    /// Starts the next step of `r` at `now`, if it has work.
    fn start(&mut self, r: &mut Replica, now: f64) {
        r.chunks.clear();
        r.decoding = false;
        let m = self.m;
        let slots = m.dep.max_num_seqs as usize;
        let dur = if m.static_shapes {
            let free = slots - r.active.len();
            if free > 0 && !self.queue.is_empty() {
                let k = free
                    .min(m.dep.ctx_batch_size as usize)
                    .min(self.queue.len());
                let mut prompts = Vec::with_capacity(k);
                for _ in 0..k {
                    let id = self.queue.pop_front().unwrap_or(0);
                    let p = self.reqs[id].prompt;
                    self.reqs[id].start = now;
                    prompts.push(p);
                    r.chunks.push((r.active.len(), p));
                    r.active.push(Active {
                        id,
                        prompt: p,
                        prefilled: 0,
                        ctx: 0,
                        remaining: self.reqs[id].output,
                        last_token: now,
                        reserved: 0,
                        fresh: false,
                    });
                }
                m.encode_s(&prompts)
            } else if !r.active.is_empty() {
                r.decoding = true;
                // Static shapes: only the longest context matters.
                let longest = r.active.iter().map(|a| a.ctx).max().unwrap_or(1);
                m.decode_s(&[longest])
            } else {
                r.busy = false;
                return;
            }
        } else {
            self.plan_dynamic(r, now)
        };
        if dur.is_nan() {
            r.busy = false;
            return;
        }
        r.busy = true;
        r.busy_until = now + dur;
        self.steps += 1;
    }

    /// vLLM-style step: decodes first, then prompt chunks within the token budget.
    fn plan_dynamic(&mut self, r: &mut Replica, now: f64) -> f64 {
        let m = self.m;
        let slots = m.dep.max_num_seqs as usize;
        let chunked = m.dep.chunked_prefill;
        let mut decoders = std::mem::take(&mut self.buf);
        decoders.clear();
        decoders.extend(
            r.active
                .iter()
                .filter(|a| a.prefilled >= a.prompt)
                .map(|a| a.ctx),
        );
        let pending = r.active.iter().any(|a| a.prefilled < a.prompt);
        // Without chunked prefill a step is whole prompts (when any can start) or decodes.
        let mut budget = m.dep.max_num_batched_tokens as i64;
        if chunked {
            budget -= decoders.len() as i64;
        } else if !self.queue.is_empty() && r.active.len() < slots && !pending {
            let first = self.reqs[self.queue[0]].prompt as i64;
            budget = budget.max(first);
        } else if !decoders.is_empty() {
            budget = 0;
        }
        let mut chunks: Vec<(u32, u32)> = Vec::new();
        if budget > 0 {
            for (i, a) in r.active.iter().enumerate() {
                if budget <= 0 {
                    break;
                }
                if a.prefilled < a.prompt {
                    let left = (a.prompt - a.prefilled) as i64;
                    let q = if chunked { left.min(budget) } else { left };
                    if q > budget {
                        break;
                    }
                    chunks.push((q as u32, a.prefilled));
                    r.chunks.push((i, q as u32));
                    budget -= q;
                }
            }
            while budget > 0 && r.active.len() < slots {
                let Some(&id) = self.queue.front() else { break };
                let rec = self.reqs[id];
                let need = (rec.prompt + rec.output) as u64;
                if (r.reserved + need) as f64 > self.kv_capacity {
                    break;
                }
                let left = rec.prompt as i64;
                if !chunked && left > budget {
                    break;
                }
                self.queue.pop_front();
                let q = left.min(budget);
                self.reqs[id].start = now;
                r.reserved += need;
                r.chunks.push((r.active.len(), q as u32));
                chunks.push((q as u32, 0));
                r.active.push(Active {
                    id,
                    prompt: rec.prompt,
                    prefilled: 0,
                    ctx: 0,
                    remaining: rec.output,
                    last_token: now,
                    reserved: need as u32,
                    fresh: false,
                });
                budget -= q;
            }
        }
        let decode_now = chunked || chunks.is_empty();
        if decode_now && !decoders.is_empty() {
            r.decoding = true;
        }
        let dur = if chunks.is_empty() && !r.decoding {
            f64::NAN
        } else {
            let dec: &[u32] = if r.decoding { &decoders } else { &[] };
            m.mixed_step_s(dec, &chunks)
        };
        self.buf = decoders;
        dur
    }

    /// Applies the effects of `r`'s step ending at `now`.
    fn finish(&mut self, r: &mut Replica, now: f64) {
        let m = self.m;
        for &(i, q) in &r.chunks {
            let a = &mut r.active[i];
            a.prefilled += q;
            if m.static_shapes {
                a.prefilled = a.prompt;
            } else {
                self.kv_now += q as f64;
            }
            if a.prefilled >= a.prompt {
                // Prefill complete: the first token.
                a.fresh = true;
                self.reqs[a.id].first_token = now;
                if let Some(limit) = self.stop.and_then(|s| s.ttft_ms) {
                    if self.reqs[a.id].ttft() * 1e3 > limit {
                        self.ttft_over += 1;
                    }
                }
                a.ctx = a.prompt + 1;
                a.remaining -= 1;
                a.last_token = now;
            }
        }
        if r.decoding {
            for a in r.active.iter_mut() {
                if a.fresh || a.prefilled < a.prompt || a.remaining == 0 {
                    continue;
                }
                let gap = now - a.last_token;
                match self.itl.last_mut() {
                    Some((g, n)) if *g == gap => *n += 1,
                    _ => self.itl.push((gap, 1)),
                }
                a.last_token = now;
                a.ctx += 1;
                a.remaining -= 1;
                if !m.static_shapes {
                    self.kv_now += 1.0;
                }
            }
        }
        self.peak_kv = self.peak_kv.max(self.kv_now);
        let mut k = 0;
        while k < r.active.len() {
            let a = &r.active[k];
            if a.prefilled >= a.prompt && a.remaining == 0 {
                self.reqs[a.id].finish = now;
                self.done[a.id] = true;
                if let Some(limit) = self.stop.and_then(|s| s.tpot_ms) {
                    if self.reqs[a.id].tpot().is_some_and(|t| t * 1e3 > limit) {
                        self.tpot_over += 1;
                    }
                }
                self.finished.push(a.id);
                if !m.static_shapes {
                    self.kv_now -= (a.ctx - 1) as f64;
                }
                r.reserved -= a.reserved as u64;
                r.active.swap_remove(k);
            } else {
                r.active[k].fresh = false;
                k += 1;
            }
        }
        r.busy = false;
    }
}

/// Runs the load of `source` on `dp` replicas of `m`.
pub fn simulate(m: &StepModel, arrivals: Arrivals, source: Source) -> Outcome {
    simulate_until(m, arrivals, source, None)
}

/// [`simulate`], ended early by `stop` once the objectives are certainly missed.
pub fn simulate_until(
    m: &StepModel,
    arrivals: Arrivals,
    mut source: Source,
    stop: Option<StopRule>,
) -> Outcome {
    let dp = m.dep.dp.max(1) as usize;
    let mut replicas: Vec<Replica> = vec![Replica::default(); dp];
    let mut sim = Sim {
        m,
        queue: VecDeque::new(),
        reqs: Vec::new(),
        done: Vec::new(),
        itl: Vec::new(),
        kv_now: 0.0,
        peak_kv: 0.0,
        steps: 0,
        finished: Vec::new(),
        buf: Vec::new(),
        stop,
        ttft_over: 0,
        tpot_over: 0,
        kv_capacity: if m.static_shapes {
            f64::INFINITY
        } else {
            m.kv_capacity_tokens()
        },
    };
    // Future arrivals: (time, issue order).
    let mut future: Future = BinaryHeap::new();
    match arrivals {
        Arrivals::Closed { concurrency } => {
            for _ in 0..concurrency {
                if !source.more(0.0) || !issue(&mut sim, &mut source, 0.0, &mut future) {
                    break;
                }
            }
        }
        _ => {
            issue(&mut sim, &mut source, 0.0, &mut future);
        }
    }
    let closed = matches!(arrivals, Arrivals::Closed { .. });
    let mut now = 0.0f64;
    let mut last_event = f64::NAN;
    let mut in_system = 0usize;
    let mut in_system_area = 0.0;
    let mut busy_slot_area = 0.0;
    let mut first_arrival = f64::NAN;
    let mut stopped = false;
    loop {
        let next_arrival = future.peek().map(|Reverse((t, _))| t.0);
        let next_done = replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| r.busy)
            .min_by(|a, b| a.1.busy_until.total_cmp(&b.1.busy_until))
            .map(|(i, r)| (i, r.busy_until));
        let t = match (next_arrival, next_done) {
            (None, None) => break,
            (Some(a), Some((_, d))) => a.min(d),
            (Some(a), None) => a,
            (None, Some((_, d))) => d,
        };
        if !last_event.is_nan() {
            let dt = t - last_event;
            in_system_area += in_system as f64 * dt;
            busy_slot_area += replicas.iter().map(|r| r.active.len()).sum::<usize>() as f64 * dt;
        }
        last_event = t;
        now = t;
        if next_arrival.is_some_and(|a| a <= t) {
            let Some(Reverse((_, id))) = future.pop() else {
                break;
            };
            if first_arrival.is_nan() {
                first_arrival = now;
            }
            in_system += 1;
            sim.queue.push_back(id);
            if !closed {
                issue(&mut sim, &mut source, now, &mut future);
            }
            for r in replicas.iter_mut().filter(|r| !r.busy) {
                sim.start(r, now);
            }
            continue;
        }
        let Some((i, _)) = next_done else { break };
        sim.finish(&mut replicas[i], now);
        if sim
            .stop
            .is_some_and(|s| sim.ttft_over.max(sim.tpot_over) >= s.max_violations)
        {
            stopped = true;
            break;
        }
        let n_finished = sim.finished.len();
        in_system -= n_finished;
        if closed {
            for _ in 0..n_finished {
                if source.more(now) {
                    issue(&mut sim, &mut source, now, &mut future);
                }
            }
        }
        sim.finished.clear();
        sim.start(&mut replicas[i], now);
        for r in replicas.iter_mut().filter(|r| !r.busy) {
            sim.start(r, now);
        }
    }
    let records: Vec<Record> = sim
        .reqs
        .iter()
        .zip(&sim.done)
        .filter(|(_, d)| **d)
        .map(|(r, _)| *r)
        .collect();
    let start = if first_arrival.is_nan() {
        0.0
    } else {
        first_arrival
    };
    Outcome {
        records,
        itl: sim.itl,
        span_s: (now - start).max(0.0),
        in_system_area,
        busy_slot_area,
        peak_kv_tokens: sim.peak_kv,
        steps: sim.steps,
        clipped: source.clipped,
        stopped,
    }
}
