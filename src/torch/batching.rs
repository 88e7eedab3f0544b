//! Continuous batching for `profiler serve`: a fixed number of slots, each one row of a KV
//! cache allocated once for all of them at the full sequence length, each at its own
//! position.
//!
//! Policy (prefill first, one request at a time): before every decode step, every slot
//! that is free takes the oldest waiting request and runs its whole prompt through the
//! model alone (a batch of one, into that slot's row of the cache), which also samples its
//! first token. Then one decode step runs for the busy slots together (the rows from the
//! first up to the last busy slot; free rows among them compute a throw-away token). A
//! sequence that ends (length, end-of-sequence, a stop string, its client gone) frees its
//! slot at once, so the next waiting request is prefilled before the next step. Before new
//! requests are admitted the busy slots are packed first: the sequence in the last busy slot
//! moves (its cached keys and values copied, a few megabytes) into a freed slot below it, so
//! a decode step runs exactly as many rows as sequences are decoding, as vLLM's decode
//! batch does and as the serving simulator prices it. Slots and context length fixed up
//! front, as in Neuron's static-slot continuous batching, without chunked prefill.

use crate::engine::Engine;
use crate::generate::{sync, Sampler, Sampling};
use crate::jobs::{Event, FinishReason, Job, Load};
use crate::measure::samples::{RequestSample, SampleStatus, SamplesWriter};
use crate::metrics::Metrics;
use crate::model::kv_cache::KvCache;
use anyhow::{bail, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// Slots and their length.
#[derive(Debug, Clone, Copy)]
pub struct SlotOptions {
    /// Sequences decoded together at most (`--max-num-seqs`).
    pub max_num_seqs: usize,
    /// Positions of every slot, prompt and generated tokens together (`--seq-len`).
    pub seq_len: usize,
}

/// What the loop served, for the summary and the report.
#[derive(Debug, Default)]
pub struct Served {
    pub samples: Vec<RequestSample>,
    /// Why appending to the samples file failed, if it did (the loop goes on serving).
    pub samples_error: Option<String>,
    /// Most slots busy at once.
    pub peak_busy: usize,
    /// Decode steps run.
    pub steps: u64,
    /// Sequences moved down into a freed slot (see the module's policy).
    pub moves: u64,
}

/// One busy slot.
struct Slot {
    job: Job,
    /// Cache columns filled (prompt, then one per token fed back).
    len: usize,
    /// Generated ids, the last not yet fed back.
    out: Vec<u32>,
    /// When each token was sampled.
    times: Vec<Instant>,
    sampler: Sampler,
    greedy: bool,
    /// Most sequences decoded together while this one ran.
    batch: usize,
}

enum Outcome {
    Finished(FinishReason),
    Failed(String),
}

/// The serving loop: takes jobs from `rx` until `stop` is set or every sender is gone.
pub struct Batcher<'a> {
    engine: &'a Engine,
    cache: KvCache,
    slots: Vec<Option<Slot>>,
    opts: SlotOptions,
    load: &'a Load,
    eos: Vec<u32>,
    samples: Option<&'a mut SamplesWriter>,
    metrics: Option<&'a Metrics>,
    served: Served,
    /// When the first request arrived (sample offsets count from it).
    first: Option<Instant>,
}

impl<'a> Batcher<'a> {
    /// Allocates the cache for every slot at `seq_len` positions, once.
    pub fn new(
        engine: &'a Engine,
        opts: SlotOptions,
        load: &'a Load,
        samples: Option<&'a mut SamplesWriter>,
        metrics: Option<&'a Metrics>,
    ) -> Result<Self> {
        if opts.max_num_seqs == 0 {
            bail!("--max-num-seqs must be at least 1, got 0");
        }
        if opts.seq_len < 2 {
            bail!(
                "--seq-len must be at least 2 (a prompt token and a generated one), got {}",
                opts.seq_len
            );
        }
        let window = engine.model.config().max_position_embeddings;
        if opts.seq_len > window {
            bail!(
                "--seq-len {}: the model's context window is {window} positions",
                opts.seq_len
            );
        }
        let cache = engine.model.new_cache(opts.max_num_seqs, opts.seq_len)?;
        Ok(Batcher {
            engine,
            cache,
            slots: (0..opts.max_num_seqs).map(|_| None).collect(),
            opts,
            load,
            eos: engine
                .tokenizer
                .as_ref()
                .map(|t| t.eos_ids().to_vec())
                .unwrap_or_default(),
            samples,
            metrics,
            served: Served::default(),
            first: None,
        })
    }

    /// Serves until `stop` is set (requests in flight then fail with "server stopping") or
    /// the queue's senders are all gone and the slots are empty.
    pub fn run(mut self, rx: &Receiver<Job>, stop: &AtomicBool) -> Result<Served> {
        let _guard = tch::no_grad_guard();
        let mut open = true;
        loop {
            self.retire_abandoned();
            if stop.load(Ordering::Relaxed) {
                break;
            }
            self.pack()?;
            // Admit: every free slot takes the oldest waiting request.
            while open {
                let Some(free) = self.slots.iter().position(Option::is_none) else {
                    break;
                };
                let got = if self.busy() > 0 {
                    match rx.try_recv() {
                        Ok(j) => Some(j),
                        Err(TryRecvError::Empty) => None,
                        Err(TryRecvError::Disconnected) => {
                            open = false;
                            None
                        }
                    }
                } else {
                    match rx.recv_timeout(Duration::from_millis(50)) {
                        Ok(j) => Some(j),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => {
                            open = false;
                            None
                        }
                    }
                };
                let Some(job) = got else { break };
                self.load.queued.fetch_sub(1, Ordering::Relaxed);
                self.admit(free, job)?;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            if self.busy() == 0 {
                if !open {
                    break;
                }
                continue;
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            self.step()?;
        }
        for i in 0..self.slots.len() {
            if self.slots[i].is_some() {
                self.finish(i, Outcome::Failed("server stopping".into()));
            }
        }
        // Requests still queued get an answer too.
        while let Ok(job) = rx.try_recv() {
            self.load.queued.fetch_sub(1, Ordering::Relaxed);
            let _ = job.events.send(Event::Failed("server stopping".into()));
        }
        Ok(self.served)
    }

    /// Moves sequences from the last busy slots into the free slots below them, until the
    /// busy slots are `0..busy`: a decode step then runs no throw-away rows.
    fn pack(&mut self) -> Result<()> {
        loop {
            let Some(free) = self.slots.iter().position(Option::is_none) else {
                return Ok(());
            };
            let Some(last) = self.slots.iter().rposition(Option::is_some) else {
                return Ok(());
            };
            if last < free {
                return Ok(());
            }
            let cols = self.slots[last].as_ref().map_or(0, |s| s.len);
            self.cache.copy_row(last, free, cols)?;
            self.slots[free] = self.slots[last].take();
            self.served.moves += 1;
        }
    }

    fn busy(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Frees the slots whose client is gone (disconnected, or its handler dropped).
    fn retire_abandoned(&mut self) {
        for i in 0..self.slots.len() {
            let gone = match &self.slots[i] {
                Some(s) => s.job.control.is_abandoned() || s.job.events.is_closed(),
                None => false,
            };
            // A stop string ends a request as finished, even though its handler is gone.
            if let Some(keep) = self.slots[i]
                .as_ref()
                .and_then(|s| s.job.control.stopped_after())
            {
                let s = self.slots[i].as_mut().expect("checked above");
                s.out.truncate(keep.max(1));
                s.times.truncate(keep.max(1));
                self.finish(i, Outcome::Finished(FinishReason::Stop));
            } else if gone {
                self.finish(i, Outcome::Failed("client disconnected".into()));
            }
        }
    }

    /// Prefills `job` into slot `i` and samples its first token.
    fn admit(&mut self, i: usize, job: Job) -> Result<()> {
        self.first.get_or_insert(job.arrived);
        if job.control.is_abandoned() || job.events.is_closed() {
            self.record_unstarted(&job, "client disconnected while queued");
            return Ok(());
        }
        let n = job.prompt.len();
        if n == 0 || n + job.max_tokens > self.opts.seq_len {
            // The HTTP side checks this; a job that slips through fails alone.
            let msg = format!(
                "prompt of {n} tokens plus max_tokens {} does not fit --seq-len {}",
                job.max_tokens, self.opts.seq_len
            );
            let _ = job.events.send(Event::Failed(msg.clone()));
            self.record_unstarted(&job, &msg);
            return Ok(());
        }
        let device = self.engine.model.device();
        let ids: Vec<i64> = job.prompt.iter().map(|t| *t as i64).collect();
        let tokens = Tensor::from_slice(&ids)
            .view([1, n as i64])
            .to_device(device);
        let positions = Tensor::arange(n as i64, (Kind::Int64, device)).view([1, n as i64]);
        let mut row = self.cache.rows(i, 1)?;
        let logits = self
            .engine
            .model
            .forward(&tokens, &positions, None, &mut row)?;
        let s = job.sampling;
        let mut sampler = Sampler::new(Sampling {
            temperature: s.temperature,
            top_p: s.top_p,
            seed: s.seed,
        });
        let id = first_id(&sampler.pick(&logits)?)?;
        sync(device);
        let now = Instant::now();
        let busy = self.busy() + 1;
        self.slots[i] = Some(Slot {
            greedy: s.temperature <= 0.0,
            job,
            len: n,
            out: Vec::new(),
            times: Vec::new(),
            sampler,
            batch: busy,
        });
        self.load.busy.store(busy, Ordering::Relaxed);
        self.served.peak_busy = self.served.peak_busy.max(busy);
        self.push_token(i, id, now);
        Ok(())
    }

    /// One decode step for every busy slot (packed first by [`Self::pack`], unless a request
    /// ended while others were being admitted).
    fn step(&mut self) -> Result<()> {
        let rows = self
            .slots
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |r| r + 1);
        let busy = self.busy();
        let mut tokens = Vec::with_capacity(rows);
        let mut cols = Vec::with_capacity(rows);
        for s in &self.slots[..rows] {
            match s {
                Some(s) => {
                    tokens.push(*s.out.last().expect("a busy slot has a token") as i64);
                    cols.push(s.len);
                }
                // A free row in the middle: a throw-away token at its column 0.
                None => {
                    tokens.push(0);
                    cols.push(0);
                }
            }
        }
        let mut view = self.cache.rows(0, rows)?;
        let logits = self.engine.model.forward_slots(&tokens, &cols, &mut view)?;
        let greedy: Vec<i64> =
            Vec::<i64>::try_from(&logits.argmax(-1, false).to_device(Device::Cpu))?;
        let mut picked = greedy;
        for (r, slot) in self.slots[..rows].iter_mut().enumerate() {
            if let Some(s) = slot {
                if !s.greedy {
                    picked[r] =
                        first_id(&s.sampler.pick(&logits.get(r as i64).unsqueeze(0))?)? as i64;
                }
            }
        }
        sync(self.engine.model.device());
        let now = Instant::now();
        self.served.steps += 1;
        for (r, id) in picked.iter().enumerate() {
            if let Some(s) = self.slots[r].as_mut() {
                s.len += 1;
                s.batch = s.batch.max(busy);
                self.push_token(r, *id as u32, now);
            }
        }
        Ok(())
    }

    /// Hands slot `i` its next token and finishes it when that ends it.
    fn push_token(&mut self, i: usize, id: u32, at: Instant) {
        let s = self.slots[i].as_mut().expect("busy slot");
        s.out.push(id);
        s.times.push(at);
        if let Some(m) = self.metrics {
            m.observe_tokens(1);
        }
        if s.job.events.send(Event::Token(id)).is_err() {
            self.finish(i, Outcome::Failed("client disconnected".into()));
            return;
        }
        let eos = !s.job.ignore_eos && self.eos.contains(&id);
        if s.out.len() >= s.job.max_tokens {
            self.finish(i, Outcome::Finished(FinishReason::Length));
        } else if eos {
            self.finish(i, Outcome::Finished(FinishReason::Stop));
        }
    }

    /// Frees slot `i` at once, tells its handler, records its sample.
    fn finish(&mut self, i: usize, outcome: Outcome) {
        let Some(s) = self.slots[i].take() else {
            return;
        };
        self.load.busy.store(self.busy(), Ordering::Relaxed);
        let arrived = s.job.arrived;
        let offset = ms(&arrived.saturating_duration_since(self.first.unwrap_or(arrived)));
        let ttft = s.times.first().map(|t| ms(&t.duration_since(arrived)));
        let last = s.times.last().copied().unwrap_or(arrived);
        let e2e = ms(&last.duration_since(arrived));
        let steps: Vec<f64> = s
            .times
            .windows(2)
            .map(|w| ms(&w[1].duration_since(w[0])))
            .collect();
        let n = s.out.len() as u64;
        let status = match &outcome {
            Outcome::Finished(_) => SampleStatus::Ok,
            Outcome::Failed(msg) => SampleStatus::Error {
                message: format!("{msg} after {n} tokens"),
            },
        };
        let sample = RequestSample {
            index: self.served.samples.len() as u64,
            start_offset_ms: offset,
            prompt_tokens: s.job.prompt.len() as u64,
            output_tokens: n,
            tokenize_ms: ms(&s.job.tokenize),
            ttft_ms: ttft,
            // e2e is TTFT plus the steps exactly, as the samples file requires.
            e2e_ms: ttft.map_or(e2e, |t| t + steps.iter().sum::<f64>()),
            tpot_ms: ttft.and_then(|t| RequestSample::tpot(t + steps.iter().sum::<f64>(), t, n)),
            decode_step_ms: steps,
            batch: s.batch.max(1) as u32,
            status,
        };
        // Recorded (metrics, samples) before the client hears of the end, so that what a
        // client sees finished is already counted.
        self.record(sample);
        let _ = s.job.events.send(match outcome {
            Outcome::Finished(reason) => Event::Done {
                reason,
                completion_tokens: s.out.len(),
            },
            Outcome::Failed(msg) => Event::Failed(msg),
        });
    }

    /// A request that never reached a slot.
    fn record_unstarted(&mut self, job: &Job, msg: &str) {
        let arrived = job.arrived;
        let sample = RequestSample {
            index: self.served.samples.len() as u64,
            start_offset_ms: ms(&arrived.saturating_duration_since(self.first.unwrap_or(arrived))),
            prompt_tokens: job.prompt.len() as u64,
            output_tokens: 0,
            tokenize_ms: ms(&job.tokenize),
            ttft_ms: None,
            e2e_ms: ms(&arrived.elapsed()),
            tpot_ms: None,
            decode_step_ms: Vec::new(),
            batch: 1,
            status: SampleStatus::Error {
                message: msg.to_string(),
            },
        };
        self.record(sample);
    }

    fn record(&mut self, s: RequestSample) {
        if let Some(m) = self.metrics {
            // Generated tokens were counted step by step (`observe_tokens`).
            m.observe_sample(&s, 0);
        }
        if let Some(w) = self.samples.as_deref_mut() {
            if let Err(e) = w.append(&s) {
                self.served.samples_error = Some(format!("{e:#}"));
                self.samples = None;
            }
        }
        self.served.samples.push(s);
    }
}

fn first_id(t: &Tensor) -> Result<u32> {
    let v: Vec<i64> = Vec::<i64>::try_from(&t.to_device(Device::Cpu).reshape([-1]))?;
    match v.first() {
        Some(id) => Ok(*id as u32),
        None => bail!("the sampler returned no token"),
    }
}

fn ms(d: &Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
