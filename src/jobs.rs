//! Requests handed from the HTTP side of `profiler serve` to its inference loop, and the
//! events that come back: the one contract between them (pure Rust, no libtorch), so the
//! HTTP part builds and is tested without the engine.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// How a request's next tokens are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 is greedy (argmax).
    pub temperature: f64,
    /// Nucleus mass in (0, 1].
    pub top_p: f64,
    pub seed: i64,
}

/// One generation request, tokenised and checked against the server's limits.
pub struct Job {
    pub prompt: Vec<u32>,
    /// At least 1; `prompt.len() + max_tokens` fits the slot's positions.
    pub max_tokens: usize,
    /// Generate exactly `max_tokens`, past end-of-sequence.
    pub ignore_eos: bool,
    pub sampling: SamplingParams,
    /// When the HTTP side had the request whole (TTFT and e2e count from here, so queueing
    /// is included, as a client sees it).
    pub arrived: Instant,
    /// Time the prompt took to tokenise (reported apart, as in `profiler run`).
    pub tokenize: Duration,
    pub events: UnboundedSender<Event>,
    pub control: Arc<Control>,
}

/// What the inference loop tells a request's HTTP handler.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// One generated token id.
    Token(u32),
    /// Generation ended; `completion_tokens` counts the tokens sent (an end-of-sequence
    /// token that ended it included).
    Done {
        reason: FinishReason,
        completion_tokens: usize,
    },
    /// The request failed (server stopping, an engine error).
    Failed(String),
}

/// Why generation ended, named as OpenAI's `finish_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// `max_tokens` reached.
    Length,
    /// End-of-sequence token or a stop string.
    Stop,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::Stop => "stop",
        }
    }
}

/// Signals from the HTTP side to a running request (read by the inference loop between
/// steps).
#[derive(Debug)]
pub struct Control {
    abandoned: AtomicBool,
    /// Tokens to keep when a stop string ended the request (`usize::MAX`: not ended).
    keep: AtomicUsize,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            abandoned: AtomicBool::new(false),
            keep: AtomicUsize::new(usize::MAX),
        }
    }
}

impl Control {
    /// The client is gone: free the slot, record the request as failed.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::Relaxed);
    }

    pub fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// A stop string matched within the first `tokens` tokens: the request is finished.
    pub fn stop_after(&self, tokens: usize) {
        self.keep.fetch_min(tokens, Ordering::Relaxed);
    }

    /// Tokens to keep if a stop string ended the request.
    pub fn stopped_after(&self) -> Option<usize> {
        let k = self.keep.load(Ordering::Relaxed);
        (k != usize::MAX).then_some(k)
    }
}

/// Counters both sides read: requests waiting for a slot, and slots in use.
#[derive(Debug, Default)]
pub struct Load {
    pub queued: AtomicUsize,
    pub busy: AtomicUsize,
}

/// Why a request was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// The queue holds `max_queue` requests already.
    Full { max_queue: usize },
    /// The inference loop has stopped.
    Closed,
}

/// The HTTP side's end of the bounded queue of requests waiting for a slot.
#[derive(Clone)]
pub struct Submitter {
    tx: SyncSender<Job>,
    load: Arc<Load>,
    max_queue: usize,
}

/// A bounded queue of `max_queue` requests (at least 1): the submitting end and the
/// inference loop's end.
pub fn queue(max_queue: usize, load: Arc<Load>) -> (Submitter, Receiver<Job>) {
    let max_queue = max_queue.max(1);
    let (tx, rx) = std::sync::mpsc::sync_channel(max_queue);
    (
        Submitter {
            tx,
            load,
            max_queue,
        },
        rx,
    )
}

impl Submitter {
    /// Queues `job` without waiting; a full queue or a stopped loop is refused at once.
    pub fn submit(&self, job: Job) -> Result<(), Rejected> {
        self.load.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.load.queued.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => Rejected::Full {
                        max_queue: self.max_queue,
                    },
                    TrySendError::Disconnected(_) => Rejected::Closed,
                })
            }
        }
    }

    pub fn load(&self) -> &Load {
        &self.load
    }
}

/// A job and the receiving end of its events, for `prompt` and the given limits.
pub fn job(
    prompt: Vec<u32>,
    max_tokens: usize,
    ignore_eos: bool,
    sampling: SamplingParams,
    arrived: Instant,
    tokenize: Duration,
) -> (Job, UnboundedReceiver<Event>, Arc<Control>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let control = Arc::new(Control::default());
    (
        Job {
            prompt,
            max_tokens,
            ignore_eos,
            sampling,
            arrived,
            tokenize,
            events: tx,
            control: control.clone(),
        },
        rx,
        control,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SamplingParams {
        SamplingParams {
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        }
    }

    #[test]
    fn a_full_queue_refuses_and_counts_stay_true() {
        let load = Arc::new(Load::default());
        let (sub, rx) = queue(2, load.clone());
        let mk = || job(vec![1], 1, false, params(), Instant::now(), Duration::ZERO).0;
        assert!(sub.submit(mk()).is_ok());
        assert!(sub.submit(mk()).is_ok());
        assert_eq!(sub.submit(mk()), Err(Rejected::Full { max_queue: 2 }));
        assert_eq!(load.queued.load(Ordering::Relaxed), 2);
        drop(rx);
        assert_eq!(sub.submit(mk()), Err(Rejected::Closed));
        assert_eq!(load.queued.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn stop_keeps_the_earliest_count() {
        let c = Control::default();
        assert_eq!(c.stopped_after(), None);
        c.stop_after(5);
        c.stop_after(7);
        assert_eq!(c.stopped_after(), Some(5));
        assert!(!c.is_abandoned());
        c.abandon();
        assert!(c.is_abandoned());
    }
}
