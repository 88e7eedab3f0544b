//! The OpenAI-compatible request bodies `profiler serve` accepts (`/v1/completions`,
//! `/v1/chat/completions`), checked into one validated [`GenRequest`], and the JSON it
//! answers with. Fields the server does not use are ignored, as vLLM ignores them; fields
//! it uses are checked, and a bad one is a 400 naming it.

use serde::Deserialize;
use serde_json::{json, Value};

/// Most stop strings per request (OpenAI's limit).
pub const MAX_STOP_STRINGS: usize = 4;

/// A client error: HTTP status and the message of the JSON error body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// The request field at fault, if one is.
    pub param: Option<String>,
}

impl ApiError {
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            message: message.into(),
            param: Some(param.to_string()),
        }
    }

    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            param: None,
        }
    }

    /// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
    pub fn body(&self) -> Value {
        let kind = match self.status {
            404 => "NotFoundError",
            413 => "RequestTooLarge",
            429 | 503 => "ServiceUnavailableError",
            s if s >= 500 => "InternalServerError",
            _ => "BadRequestError",
        };
        json!({"error": {
            "message": self.message,
            "type": kind,
            "param": self.param,
            "code": self.status,
        }})
    }
}

/// What a client asked for, either endpoint, before tokenisation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenRequest {
    pub model: Option<String>,
    pub prompt: Prompt,
    /// `None`: the endpoint's default (16 for completions, the rest of the slot for chat).
    pub max_tokens: Option<usize>,
    pub temperature: f64,
    pub top_p: f64,
    pub seed: Option<i64>,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    pub stream: bool,
    pub include_usage: bool,
}

/// The prompt: text, ids, or a conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
    /// `(role, content)` in order.
    Chat(Vec<(String, String)>),
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Fields both endpoints share. Unknown fields are ignored (clients send many).
#[derive(Deserialize)]
struct Common {
    model: Option<Value>,
    max_tokens: Option<Value>,
    max_completion_tokens: Option<Value>,
    temperature: Option<Value>,
    top_p: Option<Value>,
    seed: Option<Value>,
    stop: Option<Value>,
    ignore_eos: Option<Value>,
    stream: Option<Value>,
    stream_options: Option<Value>,
    n: Option<Value>,
}

fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            400,
            format!("the request body is not valid JSON ({e}); expected a JSON object"),
        )
    })?;
    match v {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::new(
            400,
            format!(
                "the request body is JSON {}, expected a JSON object",
                kind_of(&other)
            ),
        )),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn number(v: &Option<Value>, field: &str) -> Result<Option<f64>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(other) => Err(ApiError::bad(
            field,
            format!("`{field}` is {}, expected a number", kind_of(other)),
        )),
    }
}

fn count(v: &Option<Value>, field: &str) -> Result<Option<usize>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(c) if c >= 1 => Ok(Some(usize::try_from(c).unwrap_or(usize::MAX))),
            _ => Err(ApiError::bad(
                field,
                format!("`{field}` is {n}, expected an integer of at least 1"),
            )),
        },
        Some(other) => Err(ApiError::bad(
            field,
            format!("`{field}` is {}, expected an integer", kind_of(other)),
        )),
    }
}

fn boolean(v: &Option<Value>, field: &str) -> Result<bool, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ApiError::bad(
            field,
            format!("`{field}` is {}, expected true or false", kind_of(other)),
        )),
    }
}

fn common(m: &serde_json::Map<String, Value>, prompt: Prompt) -> Result<GenRequest, ApiError> {
    let c: Common = serde_json::from_value(Value::Object(m.clone()))
        .map_err(|e| ApiError::new(400, format!("the request body does not parse: {e}")))?;
    let model = match &c.model {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(ApiError::bad(
                "model",
                format!("`model` is {}, expected a string", kind_of(other)),
            ))
        }
    };
    let max_tokens = match count(&c.max_tokens, "max_tokens")? {
        Some(n) => Some(n),
        None => count(&c.max_completion_tokens, "max_completion_tokens")?,
    };
    let temperature = number(&c.temperature, "temperature")?.unwrap_or(1.0);
    if !(temperature.is_finite() && (0.0..=100.0).contains(&temperature)) {
        return Err(ApiError::bad(
            "temperature",
            format!(
                "`temperature` is {temperature}, expected a number from 0 to 100 (0 is greedy)"
            ),
        ));
    }
    let top_p = number(&c.top_p, "top_p")?.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::bad(
            "top_p",
            format!("`top_p` is {top_p}, expected a number in (0, 1]"),
        ));
    }
    let seed = match &c.seed {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(s) => Some(s),
            None => {
                return Err(ApiError::bad(
                    "seed",
                    format!("`seed` is {n}, expected a 64-bit integer"),
                ))
            }
        },
        Some(other) => {
            return Err(ApiError::bad(
                "seed",
                format!("`seed` is {}, expected an integer", kind_of(other)),
            ))
        }
    };
    let stop = match &c.stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| match s {
                Value::String(s) => Ok(s.clone()),
                other => Err(ApiError::bad(
                    "stop",
                    format!("`stop` holds {}, expected strings", kind_of(other)),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(ApiError::bad(
                "stop",
                format!(
                    "`stop` is {}, expected a string or an array of strings",
                    kind_of(other)
                ),
            ))
        }
    };
    if stop.len() > MAX_STOP_STRINGS || stop.iter().any(String::is_empty) {
        return Err(ApiError::bad(
            "stop",
            format!(
                "`stop` has {} strings, expected at most {MAX_STOP_STRINGS}, none empty",
                stop.len()
            ),
        ));
    }
    if let Some(n) = count(&c.n, "n")? {
        if n != 1 {
            return Err(ApiError::bad(
                "n",
                format!("`n` is {n}; this server generates one choice per request (n = 1)"),
            ));
        }
    }
    let include_usage = match &c.stream_options {
        None | Some(Value::Null) => false,
        Some(v @ Value::Object(_)) => {
            let o: StreamOptions = serde_json::from_value(v.clone()).map_err(|e| {
                ApiError::bad(
                    "stream_options",
                    format!("`stream_options` does not parse: {e}"),
                )
            })?;
            o.include_usage
        }
        Some(other) => {
            return Err(ApiError::bad(
                "stream_options",
                format!("`stream_options` is {}, expected an object", kind_of(other)),
            ))
        }
    };
    Ok(GenRequest {
        model,
        prompt,
        max_tokens,
        temperature,
        top_p,
        seed,
        stop,
        ignore_eos: boolean(&c.ignore_eos, "ignore_eos")?,
        stream: boolean(&c.stream, "stream")?,
        include_usage,
    })
}

/// Parses a `/v1/completions` body: `prompt` is a string, an array of one string, or an
/// array of token ids.
pub fn parse_completion(body: &[u8]) -> Result<GenRequest, ApiError> {
    let m = parse_object(body)?;
    let expected = "expected a string, an array of one string, or an array of token ids";
    let prompt = match m.get("prompt") {
        None | Some(Value::Null) => {
            return Err(ApiError::bad("prompt", "`prompt` is missing"));
        }
        Some(Value::String(s)) => Prompt::Text(s.clone()),
        Some(Value::Array(a)) => match a.as_slice() {
            [Value::String(s)] => Prompt::Text(s.clone()),
            ids if !ids.is_empty() && ids.iter().all(Value::is_u64) => Prompt::Ids(
                ids.iter()
                    .map(|v| u32::try_from(v.as_u64().unwrap_or(u64::MAX)).unwrap_or(u32::MAX))
                    .collect(),
            ),
            _ => {
                return Err(ApiError::bad(
                    "prompt",
                    format!(
                        "`prompt` is an array of {} items that are not all token ids; {expected} (one prompt per request)",
                        a.len()
                    ),
                ))
            }
        },
        Some(other) => {
            return Err(ApiError::bad(
                "prompt",
                format!("`prompt` is {}, {expected}", kind_of(other)),
            ))
        }
    };
    common(&m, prompt)
}

/// Parses a `/v1/chat/completions` body: `messages` is an array of `{role, content}`,
/// `content` a string or an array of `{"type": "text", "text": ...}` parts.
pub fn parse_chat(body: &[u8]) -> Result<GenRequest, ApiError> {
    let m = parse_object(body)?;
    let Some(Value::Array(msgs)) = m.get("messages") else {
        return Err(ApiError::bad(
            "messages",
            "`messages` is missing or not an array, expected an array of {\"role\", \"content\"} objects",
        ));
    };
    if msgs.is_empty() {
        return Err(ApiError::bad(
            "messages",
            "`messages` is empty, expected at least one message",
        ));
    }
    let mut out = Vec::with_capacity(msgs.len());
    for (i, msg) in msgs.iter().enumerate() {
        let field = format!("messages[{i}]");
        let role = msg.get("role").and_then(Value::as_str).ok_or_else(|| {
            ApiError::bad(&field, format!("`{field}.role` is missing or not a string"))
        })?;
        if !matches!(role, "system" | "user" | "assistant" | "developer") {
            return Err(ApiError::bad(
                &field,
                format!(
                    "`{field}.role` is {role:?}, expected system, user, assistant or developer"
                ),
            ));
        }
        let content = match msg.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for p in parts {
                    match (p.get("type").and_then(Value::as_str), p.get("text")) {
                        (Some("text"), Some(Value::String(t))) => text.push_str(t),
                        _ => {
                            return Err(ApiError::bad(
                                &field,
                                format!("`{field}.content` holds a part that is not {{\"type\": \"text\", \"text\": ...}} (this model reads text only)"),
                            ))
                        }
                    }
                }
                text
            }
            _ => {
                return Err(ApiError::bad(
                    &field,
                    format!(
                        "`{field}.content` is missing, expected a string or an array of text parts"
                    ),
                ))
            }
        };
        let role = if role == "developer" { "system" } else { role };
        out.push((role.to_string(), content));
    }
    common(&m, Prompt::Chat(out))
}

/// Token counts of a response.
pub fn usage(prompt: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_fields_are_read_and_defaults_are_openai_s() {
        let r = parse_completion(
            br#"{"model":"llama","prompt":"hi","max_tokens":5,"stop":"x","stream":true,
                 "stream_options":{"include_usage":true},"ignore_eos":true,"seed":3,"logprobs":null}"#,
        )
        .unwrap();
        assert_eq!(r.model.as_deref(), Some("llama"));
        assert_eq!(r.prompt, Prompt::Text("hi".into()));
        assert_eq!(r.max_tokens, Some(5));
        assert_eq!(r.stop, vec!["x".to_string()]);
        assert!(r.stream && r.include_usage && r.ignore_eos);
        assert_eq!(r.seed, Some(3));
        assert_eq!((r.temperature, r.top_p), (1.0, 1.0));
        let r = parse_completion(br#"{"prompt":[1,2,3]}"#).unwrap();
        assert_eq!(r.prompt, Prompt::Ids(vec![1, 2, 3]));
        assert_eq!(r.max_tokens, None);
    }

    #[test]
    fn chat_messages_and_text_parts() {
        let r = parse_chat(
            br#"{"messages":[{"role":"system","content":"be brief"},
                 {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
                 "max_completion_tokens":7,"temperature":0}"#,
        )
        .unwrap();
        assert_eq!(
            r.prompt,
            Prompt::Chat(vec![
                ("system".into(), "be brief".into()),
                ("user".into(), "ab".into())
            ])
        );
        assert_eq!(r.max_tokens, Some(7));
        assert_eq!(r.temperature, 0.0);
    }

    #[test]
    fn bad_bodies_name_what_is_wrong() {
        let cases: &[(&[u8], &str)] = &[
            (b"{not json", "not valid JSON"),
            (b"[1]", "JSON an array, expected a JSON object"),
            (br#"{"prompt":"a","max_tokens":0}"#, "`max_tokens` is 0"),
            (br#"{"prompt":"a","max_tokens":"5"}"#, "expected an integer"),
            (br#"{"prompt":"a","temperature":-1}"#, "`temperature` is -1"),
            (br#"{"prompt":"a","top_p":0}"#, "`top_p` is 0"),
            (br#"{"prompt":"a","n":2}"#, "`n` is 2"),
            (br#"{"prompt":"a","stop":["","b"]}"#, "none empty"),
            (br#"{"prompt":"a","stop":[1]}"#, "expected strings"),
            (br#"{"prompt":["a","b"]}"#, "one prompt per request"),
            (br#"{"prompt":7}"#, "`prompt` is a number"),
            (br#"{"max_tokens":3}"#, "`prompt` is missing"),
            (
                br#"{"prompt":"a","stream":"yes"}"#,
                "expected true or false",
            ),
            (br#"{"prompt":"a","model":3}"#, "`model` is a number"),
        ];
        for (body, needle) in cases {
            let e = parse_completion(body).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.contains(needle), "{needle:?} in {:?}", e.message);
            assert_eq!(e.body()["error"]["code"], 400);
        }
        for (body, needle) in [
            (&br#"{"messages":[]}"#[..], "`messages` is empty"),
            (br#"{"messages":"hi"}"#, "not an array"),
            (br#"{"messages":[{"role":"bot","content":"x"}]}"#, "\"bot\""),
            (br#"{"messages":[{"role":"user"}]}"#, "content` is missing"),
            (
                br#"{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
                "text only",
            ),
        ] {
            let e = parse_chat(body).unwrap_err();
            assert!(e.message.contains(needle), "{needle:?} in {:?}", e.message);
        }
    }
}
