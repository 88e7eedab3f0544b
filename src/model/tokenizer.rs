//! Tokenizer: byte-level BPE built from GGUF metadata (as Hugging Face transformers builds
//! it for the same file), or a Hugging Face `tokenizer.json`; plus the chat template.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;

/// Tokenizer fields as stored in GGUF metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`).
#[derive(Debug, Clone, Default)]
pub struct GgufTokenizerSpec {
    /// `tokenizer.ggml.model`, e.g. `gpt2`.
    pub model: String,
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    /// 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte (llama.cpp).
    pub token_types: Option<Vec<i32>>,
    pub merges: Vec<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub pad_id: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub chat_template: Option<String>,
}

/// A model's tokenizer with its special ids and chat template.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    eos: Vec<u32>,
    add_bos: bool,
    chat_template: Option<String>,
    bos_text: String,
    eos_text: String,
}

fn err(file: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "{file}: tokenizer: {}",
        super::card::one_line(&e.to_string())
    )
}

impl Tokenizer {
    /// Builds a gpt2-style byte-level BPE tokenizer from GGUF metadata: control and
    /// user-defined tokens become special added tokens, matched whole before BPE.
    pub fn from_gguf_spec(spec: GgufTokenizerSpec, file: &str) -> Result<Self> {
        if spec.model != "gpt2" {
            bail!(
                "{file}: tokenizer model {:?} is not supported (expected \"gpt2\", byte-level BPE)",
                spec.model
            );
        }
        if spec.tokens.is_empty() {
            bail!("{file}: tokenizer.ggml.tokens is empty");
        }
        let n = spec.tokens.len();
        if let Some(t) = &spec.token_types {
            if t.len() != n {
                bail!(
                    "{file}: tokenizer.ggml.token_type has {} entries for {n} tokens",
                    t.len()
                );
            }
        }
        for (what, id) in [
            ("bos", spec.bos_id),
            ("eos", spec.eos_id),
            ("unknown", spec.unk_id),
            ("padding", spec.pad_id),
        ] {
            if id.is_some_and(|i| i as usize >= n) {
                bail!("{file}: tokenizer.ggml.{what}_token_id is past the {n} tokens");
            }
        }
        let mut vocab = serde_json::Map::with_capacity(n);
        for (i, t) in spec.tokens.iter().enumerate() {
            vocab.insert(t.clone(), json!(i));
        }
        let added: Vec<Value> = spec
            .tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                spec.token_types
                    .as_ref()
                    .is_some_and(|t| matches!(t[*i], 3 | 4))
            })
            .map(|(i, t)| {
                json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let byte_level = |prefix: bool| json!({"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": true, "use_regex": true});
        let doc = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": byte_level(false),
            "post_processor": null,
            "decoder": byte_level(true),
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": "", "end_of_word_suffix": "",
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": spec.merges},
        });
        let inner: tokenizers::Tokenizer = doc.to_string().parse().map_err(|e| err(file, e))?;
        let text = |id: Option<u32>| {
            id.and_then(|i| spec.tokens.get(i as usize).cloned())
                .unwrap_or_default()
        };
        Ok(Tokenizer {
            bos_text: text(spec.bos_id),
            eos_text: text(spec.eos_id),
            inner,
            bos: spec.bos_id,
            eos: spec.eos_id.into_iter().collect(),
            add_bos: spec.add_bos.unwrap_or(false),
            chat_template: spec.chat_template,
        })
    }

    /// Loads `tokenizer.json` from a Hugging Face directory, with BOS/EOS, `add_bos_token`
    /// and the chat template from `tokenizer_config.json` when present.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let file = path.display().to_string();
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| err(&file, e))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: Value = if cfg_path.is_file() {
            let text = std::fs::read_to_string(&cfg_path)
                .with_context(|| format!("cannot read {}", cfg_path.display()))?;
            serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", cfg_path.display()))?
        } else {
            Value::Null
        };
        // Special tokens are strings or {"content": ...} objects in tokenizer_config.json.
        let special = |key: &str| -> Option<String> {
            match cfg.get(key)? {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
                _ => None,
            }
        };
        let bos_text = special("bos_token").unwrap_or_default();
        let eos_text = special("eos_token").unwrap_or_default();
        let bos = inner.token_to_id(&bos_text);
        let eos: Vec<u32> = inner.token_to_id(&eos_text).into_iter().collect();
        Ok(Tokenizer {
            inner,
            bos,
            eos,
            add_bos: cfg
                .get("add_bos_token")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            chat_template: cfg
                .get("chat_template")
                .and_then(Value::as_str)
                .map(str::to_string),
            bos_text,
            eos_text,
        })
    }

    /// Token ids of `text`, with BOS first when the model adds one.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("cannot tokenize the prompt: {e}"))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Text of `ids`, special tokens included (as Hugging Face `decode` by default).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| anyhow::anyhow!("cannot decode tokens: {e}"))
    }

    /// Renders the model's chat template with one user message and the generation prompt.
    pub fn apply_chat_template(&self, user_prompt: &str) -> Result<String> {
        let Some(t) = &self.chat_template else {
            bail!("--chat: this model has no chat template");
        };
        let mut env = minijinja::Environment::new();
        env.add_template("chat", t)
            .map_err(|e| anyhow::anyhow!("the model's chat template does not parse: {e}"))?;
        let ctx = minijinja::context! {
            messages => vec![minijinja::context! { role => "user", content => user_prompt }],
            add_generation_prompt => true,
            bos_token => self.bos_text.clone(),
            eos_token => self.eos_text.clone(),
        };
        env.get_template("chat")
            .and_then(|tpl| tpl.render(ctx))
            .map_err(|e| anyhow::anyhow!("cannot render the model's chat template: {e}"))
    }

    /// End-of-sequence ids that stop generation.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos
    }

    /// Beginning-of-sequence id, if the model has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny byte-level vocabulary: the bytes of "ab c" plus one merge and one special token.
    fn spec() -> GgufTokenizerSpec {
        let tokens = ["<|end|>", "a", "b", "Ġ", "c", "ab", "Ġc"]
            .map(String::from)
            .to_vec();
        GgufTokenizerSpec {
            model: "gpt2".into(),
            token_types: Some(vec![3, 1, 1, 1, 1, 1, 1]),
            tokens,
            merges: vec!["a b".into(), "Ġ c".into()],
            eos_id: Some(0),
            chat_template: Some("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<bot>{% endif %}".into()),
            ..Default::default()
        }
    }

    #[test]
    fn merges_special_tokens_and_round_trip() {
        let t = Tokenizer::from_gguf_spec(spec(), "t.gguf").unwrap();
        assert_eq!(t.encode("ab c").unwrap(), vec![5, 6]);
        assert_eq!(t.encode("ab<|end|>").unwrap(), vec![5, 0]);
        assert_eq!(t.decode(&[5, 6, 0]).unwrap(), "ab c<|end|>");
        assert_eq!(t.eos_ids(), &[0]);
    }

    #[test]
    fn chat_template_renders() {
        let t = Tokenizer::from_gguf_spec(spec(), "t.gguf").unwrap();
        assert_eq!(t.apply_chat_template("hi").unwrap(), "<user>hi<bot>");
        let mut s = spec();
        s.chat_template = None;
        let t = Tokenizer::from_gguf_spec(s, "t.gguf").unwrap();
        assert!(t
            .apply_chat_template("hi")
            .unwrap_err()
            .to_string()
            .contains("no chat template"));
    }

    #[test]
    fn sentencepiece_model_is_named() {
        let mut s = spec();
        s.model = "llama".into();
        let e = Tokenizer::from_gguf_spec(s, "m.gguf")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("\"llama\"") && e.starts_with("m.gguf"), "{e}");
    }

    #[test]
    fn hf_dir_tokenizer_json() {
        let t = Tokenizer::from_gguf_spec(spec(), "t.gguf").unwrap();
        let dir = tempfile::tempdir().unwrap();
        t.inner
            .save(dir.path().join("tokenizer.json"), false)
            .unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"eos_token": {"content": "<|end|>"}, "add_bos_token": false}"#,
        )
        .unwrap();
        let h = Tokenizer::from_hf_dir(dir.path()).unwrap();
        assert_eq!(h.encode("ab c").unwrap(), vec![5, 6]);
        assert_eq!(h.eos_ids(), &[0]);
    }
}
