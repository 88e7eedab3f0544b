//! Tokenizer: byte-level BPE built from GGUF metadata exactly as Hugging Face transformers
//! builds it for the same file, or a Hugging Face `tokenizer.json`; plus the chat template.
//! Ids, BOS/EOS handling and decoding match transformers' `tokenizer(text)` and
//! `tokenizer.decode(ids)`, so prompts and outputs compare one to one with it.

mod chat;
mod gguf;

pub use gguf::GgufTokenizerSpec;

use super::card::one_line;
use anyhow::{anyhow, Context, Result};
use chat::ChatTemplate;
use serde_json::Value;
use std::path::Path;

/// Where BOS/EOS come from when text is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpecialsPolicy {
    /// `tokenizer.json`'s own post-processor adds them (Hugging Face default).
    PostProcessor,
    /// Added here, as the GGUF flags or `tokenizer_config.json`'s `add_*_token` say.
    Explicit { bos: bool, eos: bool },
}

/// A model's tokenizer with its special ids and chat template.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    /// The tokenizer's own EOS first, then any others generation stops on.
    eos: Vec<u32>,
    policy: SpecialsPolicy,
    chat: Option<ChatTemplate>,
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes; only `gpt2` (byte-level BPE) is supported,
    /// any other `tokenizer.ggml.model` gives a one-line error naming it. `file` is for errors.
    pub fn from_gguf_spec(spec: GgufTokenizerSpec, file: &str) -> Result<Self> {
        let inner = gguf::build(&spec, file)?;
        let text = |id: Option<u32>| id.and_then(|i| spec.tokens.get(i as usize).cloned());
        let specials = [
            ("bos_token", text(spec.bos_id)),
            ("eos_token", text(spec.eos_id)),
            ("unk_token", text(spec.unk_id)),
            ("pad_token", text(spec.pad_id)),
        ];
        let specials = specials
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
        Ok(Tokenizer {
            inner,
            bos: spec.bos_id,
            eos: spec.eos_id.into_iter().collect(),
            policy: SpecialsPolicy::Explicit {
                bos: spec.add_bos.unwrap_or(false),
                eos: spec.add_eos.unwrap_or(false),
            },
            chat: spec.chat_template.map(|t| ChatTemplate::new(t, specials)),
        })
    }

    /// The tokenizer a parsed GGUF file carries; `file` names it in errors.
    pub fn from_gguf(g: &crate::model::gguf::GgufFile, file: &str) -> Result<Self> {
        Self::from_gguf_spec(GgufTokenizerSpec::from_gguf(g, file)?, file)
    }

    /// The tokenizer of a GGUF file (its metadata only; no tensor is read).
    pub fn from_gguf_file(path: &Path) -> Result<Self> {
        let g = crate::model::gguf::GgufFile::open(path)?;
        Self::from_gguf(&g, &path.display().to_string())
    }

    /// Loads `tokenizer.json` from a Hugging Face directory, with the special tokens,
    /// `add_bos_token`/`add_eos_token` and chat template of `tokenizer_config.json`
    /// (or `chat_template.jinja`) and the EOS ids of `generation_config.json`, when present.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| {
            anyhow!(
                "{}: cannot load the tokenizer: {}",
                path.display(),
                one_line(&e.to_string())
            )
        })?;
        let cfg = read_json_if_present(&dir.join("tokenizer_config.json"))?;
        let gen = read_json_if_present(&dir.join("generation_config.json"))?;
        let model_cfg = read_json_if_present(&dir.join("config.json"))?;

        let specials: Vec<(&'static str, String)> =
            ["bos_token", "eos_token", "unk_token", "pad_token"]
                .into_iter()
                .filter_map(|k| Some((k, special_token(&cfg, k)?)))
                .collect();
        let id_of = |key: &str| {
            let text = specials.iter().find(|(k, _)| *k == key)?;
            inner.token_to_id(&text.1)
        };
        let from_configs = |key: &str| -> Vec<u32> {
            let ids = [&gen, &model_cfg]
                .into_iter()
                .find_map(|c| c.get(key).filter(|v| !v.is_null()));
            match ids {
                Some(Value::Array(a)) => a.iter().filter_map(as_u32).collect(),
                Some(v) => as_u32(v).into_iter().collect(),
                None => Vec::new(),
            }
        };
        let bos = id_of("bos_token").or_else(|| from_configs("bos_token_id").first().copied());
        let mut eos: Vec<u32> = id_of("eos_token").into_iter().collect();
        for id in from_configs("eos_token_id") {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
        let flag = |k: &str| cfg.get(k).and_then(Value::as_bool);
        let policy = match (flag("add_bos_token"), flag("add_eos_token")) {
            (None, None) => SpecialsPolicy::PostProcessor,
            (b, e) => SpecialsPolicy::Explicit {
                bos: b.unwrap_or(false),
                eos: e.unwrap_or(false),
            },
        };
        if let SpecialsPolicy::Explicit { bos: true, .. } = policy {
            if bos.is_none() {
                anyhow::bail!(
                    "{}: add_bos_token is true but bos_token is missing or not in the vocabulary",
                    dir.join("tokenizer_config.json").display()
                );
            }
        }
        let chat = chat_template_source(dir, &cfg)?.map(|t| ChatTemplate::new(t, specials));
        Ok(Tokenizer {
            inner,
            bos,
            eos,
            policy,
            chat,
        })
    }

    /// Token ids of `text`, with BOS (and EOS) exactly where the model's Hugging Face tokenizer
    /// adds them; special-token text such as `<|im_start|>` becomes its single id.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let post = self.policy == SpecialsPolicy::PostProcessor;
        let enc = self.inner.encode(text, post).map_err(|e| {
            anyhow!(
                "cannot tokenize a {}-byte text: {}",
                text.len(),
                one_line(&e.to_string())
            )
        })?;
        let SpecialsPolicy::Explicit { bos, eos } = self.policy else {
            return Ok(enc.get_ids().to_vec());
        };
        let mut ids = Vec::with_capacity(enc.len() + 2);
        if bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        if eos {
            ids.extend(self.eos.first());
        }
        Ok(ids)
    }

    /// Text of `ids` with special tokens written out, as Hugging Face
    /// `decode(ids, skip_special_tokens=False)`; ids outside the vocabulary are skipped, as there.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| {
            anyhow!(
                "cannot decode {} token ids: {}",
                ids.len(),
                one_line(&e.to_string())
            )
        })
    }

    /// The model's chat template rendered for one user message, with the assistant's
    /// generation prompt after it (`add_generation_prompt=True`).
    pub fn apply_chat_template(&self, user_prompt: &str) -> Result<String> {
        self.chat
            .as_ref()
            .context("this model has no chat template (tokenizer.chat_template); give the prompt as plain text")?
            .render_user(user_prompt)
    }

    /// The model's chat template rendered for a conversation of `(role, content)` pairs,
    /// with the assistant's generation prompt after it.
    pub fn apply_chat_messages(&self, messages: &[(&str, &str)]) -> Result<String> {
        self.chat
            .as_ref()
            .context("this model has no chat template (tokenizer.chat_template); use /v1/completions with a plain prompt")?
            .render_messages(messages)
    }

    /// Writes this tokenizer as a Hugging Face tokenizer folder (`tokenizer.json` and
    /// `tokenizer_config.json` with the special tokens and chat template), so that
    /// transformers' `AutoTokenizer.from_pretrained(dir)` gives the same ids without a hub
    /// (load generators such as GuideLLM and AIPerf count tokens with it).
    pub fn write_hf_dir(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the folder {}", dir.display()))?;
        let json = dir.join("tokenizer.json");
        self.inner.save(&json, false).map_err(|e| {
            anyhow!(
                "cannot write {}: {}",
                json.display(),
                one_line(&e.to_string())
            )
        })?;
        let token = |id: Option<u32>| id.and_then(|i| self.inner.id_to_token(i));
        let (add_bos, add_eos) = match self.policy {
            SpecialsPolicy::Explicit { bos, eos } => (bos, eos),
            SpecialsPolicy::PostProcessor => (false, false),
        };
        let cfg = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": token(self.bos),
            "eos_token": token(self.eos.first().copied()),
            "add_bos_token": add_bos,
            "add_eos_token": add_eos,
            "clean_up_tokenization_spaces": false,
            "chat_template": self.chat.as_ref().map(|c| c.source()),
        });
        let path = dir.join("tokenizer_config.json");
        std::fs::write(&path, serde_json::to_string_pretty(&cfg)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// End-of-sequence ids that stop generation, the tokenizer's own first.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos
    }

    /// Beginning-of-sequence id, if the model has one (whether or not `encode` adds it).
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// A JSON file's contents, or `Null` when the file does not exist.
fn read_json_if_present(path: &Path) -> Result<Value> {
    if !path.is_file() {
        return Ok(Value::Null);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow!("{}: not valid JSON: {e}", path.display()))
}

/// A special token from `tokenizer_config.json`: a string or an `{"content": ...}` object.
fn special_token(cfg: &Value, key: &str) -> Option<String> {
    match cfg.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

fn as_u32(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

/// The chat template: `chat_template.jinja`, else `tokenizer_config.json`'s `chat_template`
/// (a string, or a list of `{name, template}` of which `default` is taken).
fn chat_template_source(dir: &Path, cfg: &Value) -> Result<Option<String>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let text = std::fs::read_to_string(&jinja)
            .with_context(|| format!("cannot read {}", jinja.display()))?;
        return Ok(Some(text));
    }
    Ok(match cfg.get("chat_template") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template")?.as_str())
            .map(str::to_string),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's chat template, as its GGUF stores it.
    const SMOLLM2_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// A ChatML-style vocabulary: three control tokens, all 256 byte characters (so any text
    /// encodes), and merges for " the", "12" and "ab".
    fn chatml_spec() -> GgufTokenizerSpec {
        let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
            .map(String::from)
            .to_vec();
        let mut types = vec![3, 3, 3];
        tokens.extend(gguf::byte_chars().iter().map(|c| c.to_string()));
        types.extend([1; 256]);
        for t in ["Ġt", "Ġth", "Ġthe", "12", "ab"] {
            tokens.push(t.into());
            types.push(1);
        }
        GgufTokenizerSpec {
            model: "gpt2".into(),
            pre: Some("smollm".into()),
            tokens,
            token_types: Some(types),
            merges: ["Ġ t", "Ġt h", "Ġth e", "1 2", "a b"]
                .map(String::from)
                .to_vec(),
            bos_id: Some(1),
            eos_id: Some(2),
            unk_id: Some(0),
            pad_id: Some(2),
            add_bos: Some(false),
            add_eos: None,
            chat_template: Some(SMOLLM2_TEMPLATE.into()),
        }
    }

    fn id_of(t: &Tokenizer, s: &str) -> u32 {
        t.inner.token_to_id(s).unwrap()
    }

    #[test]
    fn special_tokens_are_single_ids() {
        let t = Tokenizer::from_gguf_spec(chatml_spec(), "m.gguf").unwrap();
        let ids = t
            .encode("<|im_start|>user\nab<|im_end|><|endoftext|>")
            .unwrap();
        let nl = id_of(&t, "Ċ");
        assert_eq!(
            ids,
            vec![
                1,
                id_of(&t, "u"),
                id_of(&t, "s"),
                id_of(&t, "e"),
                id_of(&t, "r"),
                nl,
                id_of(&t, "ab"),
                2,
                0
            ]
        );
        assert_eq!(
            t.decode(&ids).unwrap(),
            "<|im_start|>user\nab<|im_end|><|endoftext|>"
        );
    }

    #[test]
    fn round_trips_ascii_digits_and_unicode() {
        let t = Tokenizer::from_gguf_spec(chatml_spec(), "m.gguf").unwrap();
        for text in [
            "Hello, the world!  Tabs\tand\nnewlines ",
            "12 + 1234 = 1246; 3.14159",
            "café naïve Ångström — 日本語のテキスト 🙂🚀 👩‍👩‍👧",
            "",
        ] {
            let ids = t.encode(text).unwrap();
            assert_eq!(t.decode(&ids).unwrap(), text, "{ids:?}");
        }
        let the = t.encode(" the 12").unwrap();
        assert_eq!(
            the,
            vec![id_of(&t, "Ġthe"), id_of(&t, "Ġ"), id_of(&t, "12")]
        );
        // One emoji is four byte tokens.
        assert_eq!(t.encode("🙂").unwrap().len(), 4);
    }

    #[test]
    fn bos_and_eos_follow_the_flags() {
        let mut s = chatml_spec();
        let t = Tokenizer::from_gguf_spec(s.clone(), "m.gguf").unwrap();
        assert_eq!(t.encode("ab").unwrap(), vec![id_of(&t, "ab")]);
        assert_eq!((t.bos_id(), t.eos_ids()), (Some(1), &[2][..]));
        s.add_bos = Some(true);
        s.add_eos = Some(true);
        let t = Tokenizer::from_gguf_spec(s, "m.gguf").unwrap();
        assert_eq!(t.encode("ab").unwrap(), vec![1, id_of(&t, "ab"), 2]);
        assert_eq!(t.vocab_size(), 3 + 256 + 5);
    }

    #[test]
    fn smollm2_chat_template_renders_chatml() {
        let t = Tokenizer::from_gguf_spec(chatml_spec(), "m.gguf").unwrap();
        assert_eq!(
            t.apply_chat_template("Write a haiku about the sea.").unwrap(),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn missing_chat_template_is_a_clear_error() {
        let mut s = chatml_spec();
        s.chat_template = None;
        let t = Tokenizer::from_gguf_spec(s, "m.gguf").unwrap();
        let e = t.apply_chat_template("hi").unwrap_err().to_string();
        assert!(e.contains("no chat template") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn sentencepiece_gguf_is_refused_by_name() {
        let mut s = chatml_spec();
        s.model = "llama".into();
        let e = Tokenizer::from_gguf_spec(s, "m.gguf")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("m.gguf: tokenizer.ggml.model is \"llama\""),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    /// A tokenizer.json written by hand: byte-level BPE over "a", "b", "Ġ", "ab", a BOS the
    /// post-processor adds, and an EOS.
    const TINY_TOKENIZER_JSON: &str = r#"{
      "version": "1.0", "truncation": null, "padding": null,
      "added_tokens": [
        {"id": 0, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
        {"id": 1, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
      ],
      "normalizer": null,
      "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
      "post_processor": {"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}},
      "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
      "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
        "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
        "vocab": {"<s>": 0, "</s>": 1, "a": 2, "b": 3, "Ġ": 4, "ab": 5, "Ġab": 6},
        "merges": [["a", "b"], ["Ġ", "ab"]]}
    }"#;

    #[test]
    fn hf_dir_uses_the_post_processor_and_configs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), TINY_TOKENIZER_JSON).unwrap();
        let t = Tokenizer::from_hf_dir(dir.path()).unwrap();
        assert_eq!(t.encode("ab ab</s>").unwrap(), vec![0, 5, 6, 1]);
        assert_eq!(t.decode(&[0, 5, 6]).unwrap(), "<s>ab ab");
        assert!(t.eos_ids().is_empty() && t.bos_id().is_none());

        let cfg = r#"{"bos_token": "<s>", "eos_token": {"content": "</s>"}, "add_bos_token": false,
                      "chat_template": "{{ bos_token }}{{ messages[0]['content'] }}{{ eos_token }}"}"#;
        std::fs::write(dir.path().join("tokenizer_config.json"), cfg).unwrap();
        std::fs::write(
            dir.path().join("generation_config.json"),
            r#"{"eos_token_id": [1, 4]}"#,
        )
        .unwrap();
        let t = Tokenizer::from_hf_dir(dir.path()).unwrap();
        assert_eq!(t.encode("ab ab").unwrap(), vec![5, 6]);
        assert_eq!((t.bos_id(), t.eos_ids()), (Some(0), &[1, 4][..]));
        assert_eq!(t.apply_chat_template("ab").unwrap(), "<s>ab</s>");

        std::fs::write(
            dir.path().join("chat_template.jinja"),
            "[{{ messages[0].content }}]",
        )
        .unwrap();
        let t = Tokenizer::from_hf_dir(dir.path()).unwrap();
        assert_eq!(t.apply_chat_template("x").unwrap(), "[x]");
    }

    #[test]
    fn hf_dir_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = Tokenizer::from_hf_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("tokenizer.json: cannot load the tokenizer") && !e.contains('\n'),
            "{e}"
        );
        std::fs::write(dir.path().join("tokenizer.json"), TINY_TOKENIZER_JSON).unwrap();
        std::fs::write(dir.path().join("tokenizer_config.json"), "{not json").unwrap();
        let e = Tokenizer::from_hf_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("tokenizer_config.json: not valid JSON"), "{e}");
    }
}

/// Where a model card's tokenizer is, when it has one here: `tokenizer.json` beside a
/// Hugging Face `config.json`, or the GGUF weights a card ships once they are in
/// `weights_cache`. `Err` carries why there is none, for the caller's message.
pub fn locate_for_card(
    card: &super::card::ModelCard,
    weights_cache: &Path,
) -> std::result::Result<TokenizerSource, String> {
    if let Some(dir) = card.path.parent() {
        if card.weights.is_none() && dir.join("tokenizer.json").is_file() {
            return Ok(TokenizerSource::HfDir(dir.to_path_buf()));
        }
    }
    match &card.weights {
        Some(w) => {
            let p = weights_cache.join(&w.file);
            if p.is_file() {
                Ok(TokenizerSource::Gguf(p))
            } else {
                Err(format!(
                    "the weights of {} carry its tokenizer but are not downloaded (`scripts/setup` fetches them)",
                    card.name
                ))
            }
        }
        None => Err(format!(
            "{} has no tokenizer here (no weights, no tokenizer.json beside its config)",
            card.name
        )),
    }
}

/// A tokenizer's files.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenizerSource {
    /// A Hugging Face directory with `tokenizer.json`.
    HfDir(std::path::PathBuf),
    /// A GGUF file's metadata.
    Gguf(std::path::PathBuf),
}

impl TokenizerSource {
    /// A directory is read as a Hugging Face tokenizer, a file as GGUF.
    pub fn from_path(p: &Path) -> Self {
        if p.is_dir() {
            TokenizerSource::HfDir(p.to_path_buf())
        } else {
            TokenizerSource::Gguf(p.to_path_buf())
        }
    }

    pub fn load(&self) -> Result<Tokenizer> {
        match self {
            TokenizerSource::HfDir(d) => Tokenizer::from_hf_dir(d),
            TokenizerSource::Gguf(f) => Tokenizer::from_gguf_file(f),
        }
    }
}
