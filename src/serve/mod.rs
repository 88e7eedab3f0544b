//! The HTTP side of `profiler serve`: an OpenAI-compatible API on axum (tokio), apart from
//! the inference loop, which it reaches only through [`crate::jobs`].
//!
//! Endpoints: `POST /v1/completions`, `POST /v1/chat/completions` (JSON or server-sent
//! events), `GET /v1/models`, `GET /health`, `GET /metrics` (Prometheus text format).
//! Every error is a JSON body `{"error": {"message", "type", "param", "code"}}`.

pub mod openai;
pub mod text;

use crate::jobs::{self, Event, Rejected, SamplingParams, Submitter};
use crate::model::tokenizer::Tokenizer;
use anyhow::{anyhow, Result};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use openai::{ApiError, GenRequest, Prompt};
use prometheus::{IntGauge, Registry};
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use text::TextStream;
use tokio::sync::mpsc::UnboundedReceiver;

/// Largest request body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Default `max_tokens` of `/v1/completions` when a request gives none (OpenAI's).
pub const DEFAULT_COMPLETION_TOKENS: usize = 16;

/// What the handlers share.
pub struct ServeState {
    /// The name `/v1/models` lists and responses carry.
    pub model: String,
    /// Every name a request's `model` may use (card name, aliases, `--model` as given).
    pub names: Vec<String>,
    pub tokenizer: Arc<Tokenizer>,
    pub seq_len: usize,
    pub max_num_seqs: usize,
    pub submitter: Submitter,
    pub registry: Registry,
    queue_depth: IntGauge,
    busy_slots: IntGauge,
    next_id: AtomicU64,
    created: u64,
}

impl ServeState {
    /// Registers the queue-depth, busy-slot and slot-count gauges into `registry`.
    pub fn new(
        model: String,
        names: Vec<String>,
        tokenizer: Arc<Tokenizer>,
        seq_len: usize,
        max_num_seqs: usize,
        submitter: Submitter,
        registry: Registry,
    ) -> Result<Self> {
        let gauge = |name: &str, help: &str| -> Result<IntGauge> {
            let g = IntGauge::new(name, help).map_err(|e| anyhow!("metric {name}: {e}"))?;
            registry
                .register(Box::new(g.clone()))
                .map_err(|e| anyhow!("metric {name}: {e}"))?;
            Ok(g)
        };
        let queue_depth = gauge(
            "profiler_queue_depth",
            "Requests waiting for a free slot (profiler serve).",
        )?;
        let busy_slots = gauge(
            "profiler_busy_slots",
            "Slots generating a sequence now (profiler serve).",
        )?;
        gauge(
            "profiler_slots",
            "Slots of the continuous batch (--max-num-seqs).",
        )?
        .set(max_num_seqs as i64);
        Ok(ServeState {
            model,
            names,
            tokenizer,
            seq_len,
            max_num_seqs,
            submitter,
            registry,
            queue_depth,
            busy_slots,
            next_id: AtomicU64::new(0),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
    }
}

/// Binds `addr` (`HOST:PORT`, or `PORT`/`:PORT` for 127.0.0.1), so that a port in use is
/// reported before the model loads.
pub fn bind(addr: &str) -> Result<TcpListener> {
    let a = addr.trim();
    let port = a.strip_prefix(':').unwrap_or(a);
    let spec = if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        format!("127.0.0.1:{port}")
    } else {
        a.to_string()
    };
    let addrs: Vec<SocketAddr> = spec
        .to_socket_addrs()
        .map_err(|e| anyhow!("--addr {addr:?}: {e}; expected HOST:PORT, e.g. 127.0.0.1:8000"))?
        .collect();
    let l = TcpListener::bind(&addrs[..])
        .map_err(|e| anyhow!("--addr {addr}: cannot listen on {spec}: {e}"))?;
    l.set_nonblocking(true)
        .map_err(|e| anyhow!("--addr {addr}: {e}"))?;
    Ok(l)
}

/// The routes; any other path is a 404 JSON error, a wrong method a 405 JSON error.
pub fn router(state: Arc<ServeState>) -> Router {
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Serves `listener` on the current tokio runtime until `shutdown` resolves.
pub async fn serve_http(
    listener: TcpListener,
    state: Arc<ServeState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let l = tokio::net::TcpListener::from_std(listener)?;
    axum::serve(l, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

fn error(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = (status, json_body(&e.body())).into_response();
    if matches!(e.status, 429 | 503) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

fn json_body(v: &Value) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        v.to_string(),
    )
        .into_response()
}

async fn not_found(req: Request) -> Response {
    error(ApiError::new(
        404,
        format!(
            "no route {} {}; expected POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health or GET /metrics",
            req.method(),
            req.uri().path()
        ),
    ))
}

async fn method_not_allowed(req: Request) -> Response {
    error(ApiError::new(
        405,
        format!(
            "method {} is not allowed on {}",
            req.method(),
            req.uri().path()
        ),
    ))
}

async fn health() -> Response {
    json_body(&json!({"status": "ok"}))
}

async fn models(State(s): State<Arc<ServeState>>) -> Response {
    json_body(&json!({
        "object": "list",
        "data": [{
            "id": s.model,
            "object": "model",
            "created": s.created,
            "owned_by": "profiler",
            "root": s.model,
            "max_model_len": s.seq_len,
        }],
    }))
}

async fn metrics(State(s): State<Arc<ServeState>>) -> Response {
    let load = s.submitter.load();
    s.queue_depth
        .set(load.queued.load(Ordering::Relaxed) as i64);
    s.busy_slots.set(load.busy.load(Ordering::Relaxed) as i64);
    // Labels sorted by name, as the run's /metrics endpoint writes them.
    let buf = match crate::metrics::encode_text(&s.registry) {
        Ok(b) => b,
        Err(e) => {
            return error(ApiError::new(
                500,
                format!("cannot encode the metrics: {e:#}"),
            ))
        }
    };
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        buf,
    )
        .into_response()
}

/// Which endpoint a generation request came through.
#[derive(Clone, Copy, PartialEq)]
enum Api {
    Completions,
    Chat,
}

async fn completions(State(s): State<Arc<ServeState>>, req: Request) -> Response {
    generate(s, req, Api::Completions).await
}

async fn chat_completions(State(s): State<Arc<ServeState>>, req: Request) -> Response {
    generate(s, req, Api::Chat).await
}

async fn read_body(req: Request) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            // The limit error is the only one whose source says "length limit".
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.to_string().contains("length limit"));
            if too_large {
                ApiError::new(
                    413,
                    format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::new(400, format!("cannot read the request body: {e}"))
            }
        })
}

/// A request ready to queue: its prompt ids and token limit.
struct Prepared {
    req: GenRequest,
    ids: Vec<u32>,
    max_tokens: usize,
    tokenize: std::time::Duration,
}

fn prepare(s: &ServeState, body: &[u8], api: Api) -> Result<Prepared, ApiError> {
    let req = match api {
        Api::Completions => openai::parse_completion(body)?,
        Api::Chat => openai::parse_chat(body)?,
    };
    if let Some(m) = &req.model {
        if !s.names.iter().any(|n| n == m) {
            return Err(ApiError {
                status: 404,
                message: format!(
                    "the model `{m}` does not exist here; this server holds `{}` (also named {})",
                    s.model,
                    s.names.join(", ")
                ),
                param: Some("model".into()),
            });
        }
    }
    let t0 = Instant::now();
    let ids = match &req.prompt {
        Prompt::Text(t) => s.tokenizer.encode(t),
        Prompt::Ids(ids) => {
            let vocab = s.tokenizer.vocab_size();
            if let Some(bad) = ids.iter().find(|i| **i as usize >= vocab) {
                return Err(ApiError::bad(
                    "prompt",
                    format!("token id {bad} is outside the vocabulary of {vocab} ids"),
                ));
            }
            Ok(ids.clone())
        }
        Prompt::Chat(msgs) => {
            let pairs: Vec<(&str, &str)> =
                msgs.iter().map(|(r, c)| (r.as_str(), c.as_str())).collect();
            s.tokenizer
                .apply_chat_messages(&pairs)
                .and_then(|t| s.tokenizer.encode(&t))
        }
    }
    .map_err(|e| ApiError::bad("prompt", format!("{e:#}")))?;
    let tokenize = t0.elapsed();
    if ids.is_empty() {
        return Err(ApiError::bad(
            "prompt",
            "the prompt has no tokens, expected at least one",
        ));
    }
    let n = ids.len();
    let max_tokens = match (req.max_tokens, api) {
        (Some(m), _) => m,
        (None, Api::Completions) => DEFAULT_COMPLETION_TOKENS,
        (None, Api::Chat) => s.seq_len.saturating_sub(n).max(1),
    };
    if n + max_tokens > s.seq_len {
        return Err(ApiError::bad(
            if req.max_tokens.is_some() {
                "max_tokens"
            } else {
                "prompt"
            },
            format!(
                "the prompt has {n} tokens and max_tokens is {max_tokens}: {} positions, more than this server's --seq-len of {}",
                n + max_tokens,
                s.seq_len
            ),
        ));
    }
    Ok(Prepared {
        req,
        ids,
        max_tokens,
        tokenize,
    })
}

async fn generate(s: Arc<ServeState>, req: Request, api: Api) -> Response {
    let arrived = Instant::now();
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return error(e),
    };
    let p = match prepare(&s, &body, api) {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let n = s.next_id.fetch_add(1, Ordering::Relaxed);
    let sampling = SamplingParams {
        temperature: p.req.temperature,
        top_p: p.req.top_p,
        // Unseeded requests still differ from each other, reproducibly per server run.
        seed: p.req.seed.unwrap_or(n as i64),
    };
    let (job, rx, control) = jobs::job(
        p.ids.clone(),
        p.max_tokens,
        p.req.ignore_eos,
        sampling,
        arrived,
        p.tokenize,
    );
    if let Err(r) = s.submitter.submit(job) {
        return error(match r {
            Rejected::Full { max_queue } => ApiError::new(
                503,
                format!(
                    "the server is busy: {} slots in use and {max_queue} requests queued (--max-queue {max_queue}); retry later",
                    s.max_num_seqs
                ),
            ),
            Rejected::Closed => ApiError::new(503, "the server is stopping"),
        });
    }
    let ctx = Generation {
        state: s.clone(),
        api,
        id: match api {
            Api::Completions => format!("cmpl-{n}"),
            Api::Chat => format!("chatcmpl-{n}"),
        },
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        prompt_tokens: p.ids.len(),
        include_usage: p.req.include_usage,
        text: TextStream::new(p.req.stop.clone()),
        rx,
        control,
        tokens: 0,
        ended: None,
    };
    if p.req.stream {
        stream_response(ctx)
    } else {
        whole_response(ctx).await
    }
}

/// One request in flight on the HTTP side: its events and its text so far. Dropping it
/// (client gone) tells the inference loop to free the slot.
struct Generation {
    state: Arc<ServeState>,
    api: Api,
    id: String,
    created: u64,
    prompt_tokens: usize,
    include_usage: bool,
    text: TextStream,
    rx: UnboundedReceiver<Event>,
    control: Arc<jobs::Control>,
    /// Tokens received (up to a stop string's end once one matched).
    tokens: usize,
    /// The end, once known, given after the text that came with it.
    ended: Option<(&'static str, usize)>,
}

impl Drop for Generation {
    fn drop(&mut self) {
        // A no-op after the request finished; else the client is gone.
        self.control.abandon();
    }
}

/// The next piece of a generation: text to send, or its end.
enum Step {
    Text(String),
    End { reason: &'static str, tokens: usize },
    Failed(String),
}

impl Generation {
    async fn next(&mut self) -> Step {
        loop {
            if let Some((reason, tokens)) = self.ended.take() {
                return Step::End { reason, tokens };
            }
            let Some(ev) = self.rx.recv().await else {
                return Step::Failed("the inference loop stopped".into());
            };
            match ev {
                Event::Token(id) => {
                    self.tokens += 1;
                    let tok = &self.state.tokenizer;
                    // An end-of-sequence token counts but adds no text.
                    let piece = if tok.eos_ids().contains(&id) {
                        String::new()
                    } else {
                        match self.text.push(id, &|ids| tok.decode(ids)) {
                            Ok(p) => p,
                            Err(e) => return Step::Failed(format!("{e:#}")),
                        }
                    };
                    if self.text.stopped_at().is_some() {
                        // The text before the stop string, then the end; the inference
                        // loop keeps this many tokens and frees the slot.
                        self.control.stop_after(self.tokens);
                        self.ended = Some(("stop", self.tokens));
                        let rest = piece + &self.text.flush();
                        if !rest.is_empty() {
                            return Step::Text(rest);
                        }
                    } else if !piece.is_empty() {
                        return Step::Text(piece);
                    }
                }
                Event::Done {
                    reason,
                    completion_tokens,
                } => {
                    self.ended = Some((reason.as_str(), completion_tokens));
                    let rest = self.text.flush();
                    if !rest.is_empty() {
                        return Step::Text(rest);
                    }
                }
                Event::Failed(m) => return Step::Failed(m),
            }
        }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.api, chunk) {
            (Api::Completions, _) => "text_completion",
            (Api::Chat, false) => "chat.completion",
            (Api::Chat, true) => "chat.completion.chunk",
        }
    }

    /// One streamed chunk with `text` (or the role, for chat's first chunk) and an
    /// optional finish reason.
    fn chunk(&self, text: Option<&str>, finish: Option<&str>, role: bool) -> Value {
        let choice = match self.api {
            Api::Completions => json!({
                "index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish,
            }),
            Api::Chat => {
                let mut delta = serde_json::Map::new();
                if role {
                    delta.insert("role".into(), json!("assistant"));
                }
                if let Some(t) = text {
                    delta.insert("content".into(), json!(t));
                }
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
            }
        };
        let mut v = json!({
            "id": self.id, "object": self.object(true), "created": self.created,
            "model": self.state.model, "choices": [choice],
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    fn usage_chunk(&self, tokens: usize) -> Value {
        json!({
            "id": self.id, "object": self.object(true), "created": self.created,
            "model": self.state.model, "choices": [],
            "usage": openai::usage(self.prompt_tokens, tokens),
        })
    }
}

async fn whole_response(mut g: Generation) -> Response {
    let mut text = String::new();
    loop {
        match g.next().await {
            Step::Text(t) => text.push_str(&t),
            Step::Failed(m) => {
                return error(ApiError::new(500, format!("generation failed: {m}")));
            }
            Step::End { reason, tokens } => {
                let choice = match g.api {
                    Api::Completions => json!({
                        "index": 0, "text": text, "logprobs": null, "finish_reason": reason,
                    }),
                    Api::Chat => json!({
                        "index": 0, "message": {"role": "assistant", "content": text},
                        "logprobs": null, "finish_reason": reason,
                    }),
                };
                return json_body(&json!({
                    "id": g.id, "object": g.object(false), "created": g.created,
                    "model": g.state.model, "choices": [choice],
                    "usage": openai::usage(g.prompt_tokens, tokens),
                }));
            }
        }
    }
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// Server-sent events: `data: {chunk}` per text piece, the finish reason, the usage when
/// asked (`stream_options.include_usage`), then `data: [DONE]`. A failure after the
/// stream began is sent as an `{"error": ...}` event, then `[DONE]`.
fn stream_response(g: Generation) -> Response {
    /// Where the stream is.
    enum At {
        Start,
        Running,
        Done,
    }
    let stream = futures_util::stream::unfold((g, At::Start), |(mut g, at)| async move {
        let out: Bytes = match at {
            At::Done => return None,
            At::Start if g.api == Api::Chat => {
                let c = sse(&g.chunk(Some(""), None, true));
                return Some((Ok::<_, std::convert::Infallible>(c), (g, At::Running)));
            }
            At::Start | At::Running => match g.next().await {
                Step::Text(t) => sse(&g.chunk(Some(&t), None, false)),
                Step::End { reason, tokens } => {
                    let mut b = sse(&g.chunk(None, Some(reason), false)).to_vec();
                    if g.include_usage {
                        b.extend_from_slice(&sse(&g.usage_chunk(tokens)));
                    }
                    b.extend_from_slice(b"data: [DONE]\n\n");
                    return Some((Ok(Bytes::from(b)), (g, At::Done)));
                }
                Step::Failed(m) => {
                    let e = ApiError::new(500, format!("generation failed: {m}"));
                    let mut b = sse(&e.body()).to_vec();
                    b.extend_from_slice(b"data: [DONE]\n\n");
                    return Some((Ok(Bytes::from(b)), (g, At::Done)));
                }
            },
        };
        Some((Ok(out), (g, At::Running)))
    });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
