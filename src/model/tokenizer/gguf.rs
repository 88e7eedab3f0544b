//! Byte-level BPE built from GGUF tokenizer metadata, the way Hugging Face transformers
//! builds it for the same file, so that both give the same ids for the same text.
//!
//! What transformers does for `tokenizer.ggml.model = "gpt2"`, mirrored here:
//! * tokens spelled outside the byte-level alphabet are respelled byte by byte;
//! * control tokens (type 3) become special added tokens and user-defined ones (type 4)
//!   plain added tokens, both matched whole before BPE and never normalised;
//! * the pre-tokenizer is GPT-2's byte-level regex, or, for the `tokenizer.ggml.pre` values
//!   of the Llama 3 family, Llama 3's split regex followed by a byte-level mapping;
//! * no normaliser, no post-processor (BOS/EOS are added by the caller), byte-level decoder.

use crate::model::gguf::{GgufFile, MetaValue};
use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};

/// Tokenizer fields as stored in GGUF metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`).
#[derive(Debug, Clone, Default)]
pub struct GgufTokenizerSpec {
    /// `tokenizer.ggml.model`, e.g. `gpt2` (byte-level BPE) or `llama` (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`: which pre-tokenizer split the merges were learned with.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`, indexed by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`, each `"left right"`, best first.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: Option<bool>,
    /// `tokenizer.chat_template` (Jinja).
    pub chat_template: Option<String>,
}

impl GgufTokenizerSpec {
    /// The tokenizer fields of a GGUF file's `tokenizer.ggml.*` metadata; `file` names it
    /// in errors.
    pub fn from_gguf(g: &GgufFile, file: &str) -> Result<Self> {
        let opt_u32 = |k: &str| -> Result<Option<u32>> {
            match g.get(k) {
                None => Ok(None),
                Some(_) => Ok(Some(g.get_u64(k).with_context(|| file.to_string())? as u32)),
            }
        };
        let opt_bool = |k: &str| match g.get(k) {
            Some(MetaValue::Bool(b)) => Some(*b),
            _ => None,
        };
        let token_types = match g.get("tokenizer.ggml.token_type") {
            None => None,
            Some(_) => Some(
                g.get_i64_array("tokenizer.ggml.token_type")
                    .with_context(|| file.to_string())?
                    .into_iter()
                    .map(|x| x as i32)
                    .collect(),
            ),
        };
        Ok(GgufTokenizerSpec {
            model: g
                .get_str("tokenizer.ggml.model")
                .with_context(|| file.to_string())?
                .to_string(),
            pre: g.get_str("tokenizer.ggml.pre").ok().map(str::to_string),
            tokens: g
                .get_str_array("tokenizer.ggml.tokens")
                .with_context(|| file.to_string())?,
            token_types,
            merges: if g.get("tokenizer.ggml.merges").is_some() {
                g.get_str_array("tokenizer.ggml.merges")
                    .with_context(|| file.to_string())?
            } else {
                Vec::new()
            },
            bos_id: opt_u32("tokenizer.ggml.bos_token_id")?,
            eos_id: opt_u32("tokenizer.ggml.eos_token_id")?,
            unk_id: opt_u32("tokenizer.ggml.unknown_token_id")?,
            pad_id: opt_u32("tokenizer.ggml.padding_token_id")?,
            add_bos: opt_bool("tokenizer.ggml.add_bos_token"),
            add_eos: opt_bool("tokenizer.ggml.add_eos_token"),
            chat_template: g
                .get_str("tokenizer.chat_template")
                .ok()
                .map(str::to_string),
        })
    }
}

/// llama.cpp's token type for control tokens such as `<|im_start|>`.
const CONTROL: i32 = 3;
/// llama.cpp's token type for user-defined tokens such as `<think>`.
const USER_DEFINED: i32 = 4;

/// `tokenizer.ggml.pre` values whose merges were learned on Llama 3's split regex.
const LLAMA3_PRE: &[&str] = &[
    "llama3",
    "llama-v3",
    "llama-bpe",
    "smaug-bpe",
    "falcon3",
    "dbrx",
];

/// Llama 3's pre-tokenizer split: contractions, words, numbers of up to 3 digits, punctuation
/// runs, newlines and other whitespace.
const LLAMA3_SPLIT: &str = concat!(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);

/// GPT-2's byte-to-character table: printable Latin-1 bytes stand for themselves, the other
/// bytes take the characters from U+0100 upward, in byte order.
pub(super) fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable = matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
        let code = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        // Every code here is below U+0200, so it is always a valid char.
        *slot = char::from_u32(code).unwrap_or('\u{fffd}');
    }
    table
}

/// What a non-`gpt2` tokenizer model is, for the error message.
fn model_kind(model: &str) -> &'static str {
    match model {
        "llama" => "SentencePiece BPE",
        "t5" => "SentencePiece Unigram",
        "bert" => "WordPiece",
        "rwkv" => "RWKV",
        _ => "unknown",
    }
}

/// Checks the spec's fields against each other before anything is built.
fn validate(spec: &GgufTokenizerSpec, file: &str) -> Result<()> {
    if spec.model != "gpt2" {
        bail!(
            "{file}: tokenizer.ggml.model is {:?} ({}); only \"gpt2\" (byte-level BPE) is supported",
            spec.model,
            model_kind(&spec.model)
        );
    }
    let n = spec.tokens.len();
    if n == 0 {
        bail!("{file}: tokenizer.ggml.tokens is empty; expected the vocabulary");
    }
    if let Some(types) = &spec.token_types {
        if types.len() != n {
            bail!(
                "{file}: tokenizer.ggml.token_type has {} entries; expected one per token ({n})",
                types.len()
            );
        }
    }
    let ids = [
        ("bos_token_id", spec.bos_id),
        ("eos_token_id", spec.eos_id),
        ("unknown_token_id", spec.unk_id),
        ("padding_token_id", spec.pad_id),
    ];
    for (key, id) in ids {
        if let Some(id) = id.filter(|&i| i as usize >= n) {
            bail!("{file}: tokenizer.ggml.{key} is {id}; expected an id below the {n} tokens");
        }
    }
    if spec.add_bos == Some(true) && spec.bos_id.is_none() {
        bail!("{file}: tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is missing");
    }
    if spec.add_eos == Some(true) && spec.eos_id.is_none() {
        bail!("{file}: tokenizer.ggml.add_eos_token is true but tokenizer.ggml.eos_token_id is missing");
    }
    Ok(())
}

/// The merges as `[left, right]` pairs; each must be two tokens separated by one space.
fn merge_pairs(merges: &[String], file: &str) -> Result<Vec<Value>> {
    merges
        .iter()
        .enumerate()
        .map(|(i, m)| match m.split(' ').collect::<Vec<_>>()[..] {
            [l, r] if !l.is_empty() && !r.is_empty() => Ok(json!([l, r])),
            _ => bail!(
                "{file}: tokenizer.ggml.merges[{i}] is {m:?}; expected two tokens separated by one space"
            ),
        })
        .collect()
}

/// Builds the `tokenizers` tokenizer the spec describes (see the module doc).
pub(super) fn build(spec: &GgufTokenizerSpec, file: &str) -> Result<tokenizers::Tokenizer> {
    validate(spec, file)?;
    let chars = byte_chars();
    let alphabet: HashSet<char> = chars.iter().copied().collect();
    let in_alphabet = |t: &str| t.chars().all(|c| alphabet.contains(&c));
    let spelled = |t: &str| -> String {
        if in_alphabet(t) {
            t.to_string()
        } else {
            t.bytes().map(|b| chars[b as usize]).collect()
        }
    };

    // A later token with the same spelling wins, as in a Python dict built in id order.
    let mut vocab = Map::with_capacity(spec.tokens.len());
    let mut ids: HashMap<String, usize> = HashMap::with_capacity(spec.tokens.len());
    for (i, t) in spec.tokens.iter().enumerate() {
        let s = spelled(t);
        vocab.insert(s.clone(), json!(i));
        ids.insert(s, i);
    }

    let types = spec.token_types.as_deref().unwrap_or(&[]);
    let added_token = |id: usize, content: &str, special: bool| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": special})
    };
    // Control tokens spelled outside the alphabet are llama.cpp mislabels: left out.
    let mut added: Vec<Value> = spec
        .tokens
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (t, &ty))| ty == CONTROL && in_alphabet(t))
        .map(|(i, (t, _))| added_token(i, t, true))
        .collect();
    // User-defined tokens are added only where their own spelling is in the vocabulary.
    for (t, _) in spec
        .tokens
        .iter()
        .zip(types)
        .filter(|(_, &ty)| ty == USER_DEFINED)
    {
        if let Some(&id) = ids.get(t.as_str()) {
            added.push(added_token(id, t, false));
        }
    }

    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let llama3 = spec.pre.as_deref().is_some_and(|p| LLAMA3_PRE.contains(&p));
    let pre_tokenizer = if llama3 {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": false},
            byte_level(false),
        ]})
    } else {
        byte_level(true)
    };
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "",
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merge_pairs(&spec.merges, file)?},
    });
    let text = doc.to_string();
    text.parse::<tokenizers::Tokenizer>().map_err(|e| {
        anyhow::anyhow!(
            "{file}: tokenizer.ggml.* does not form a byte-level BPE tokenizer: {}",
            super::one_line(&e.to_string())
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tokens: &[&str], types: &[i32], merges: &[&str]) -> GgufTokenizerSpec {
        GgufTokenizerSpec {
            model: "gpt2".into(),
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            token_types: Some(types.to_vec()),
            merges: merges.iter().map(|m| m.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn byte_table_is_gpt2s() {
        let t = byte_chars();
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[0], 'Ā');
        assert_eq!(t[0xad], 'Ń');
        assert_eq!(t.iter().collect::<HashSet<_>>().len(), 256);
    }

    #[test]
    fn merges_apply_and_control_tokens_stay_whole() {
        let s = spec(
            &["<|x|>", "a", "b", "Ġ", "ab", "Ġab"],
            &[3, 1, 1, 1, 1, 1],
            &["a b", "Ġ ab"],
        );
        let t = build(&s, "m.gguf").unwrap();
        let ids = t.encode("ab ab<|x|>", false).unwrap().get_ids().to_vec();
        assert_eq!(ids, vec![4, 5, 0]);
    }

    #[test]
    fn user_defined_tokens_are_matched_whole() {
        let s = spec(
            &["a", "b", "ab", "<t>", "<", "t", ">"],
            &[1, 1, 1, 4, 1, 1, 1],
            &["a b"],
        );
        let t = build(&s, "m.gguf").unwrap();
        let enc = t.encode("<t>ab", false).unwrap();
        assert_eq!(enc.get_ids(), &[3, 2]);
        assert_eq!(t.decode(&[3, 2], false).unwrap(), "<t>ab");
    }

    #[test]
    fn tokens_outside_the_alphabet_are_respelled() {
        // "日" (bytes E6 97 A5) written as itself is looked up as its three bytes' spelling.
        let c = byte_chars();
        let [a, b, d] = [c[0xe6], c[0x97], c[0xa5]].map(String::from);
        let (ab, merges) = (
            format!("{a}{b}"),
            [format!("{a} {b}"), format!("{a}{b} {d}")],
        );
        let s = spec(&["日", &a, &b, &d, &ab], &[1; 5], &[&merges[0], &merges[1]]);
        let t = build(&s, "m.gguf").unwrap();
        assert_eq!(t.encode("日", false).unwrap().get_ids(), &[0]);
        assert_eq!(t.decode(&[0], false).unwrap(), "日");
    }

    #[test]
    fn llama3_pre_splits_numbers_in_threes() {
        let mut s = spec(
            &["1", "2", "3", "4", "12", "123", "1234"],
            &[1; 7],
            &["1 2", "12 3", "123 4"],
        );
        assert_eq!(
            build(&s, "m")
                .unwrap()
                .encode("1234", false)
                .unwrap()
                .get_ids(),
            &[6]
        );
        s.pre = Some("llama-bpe".into());
        assert_eq!(
            build(&s, "m")
                .unwrap()
                .encode("1234", false)
                .unwrap()
                .get_ids(),
            &[5, 3]
        );
    }

    #[test]
    fn sentencepiece_is_refused_by_name() {
        let mut s = spec(&["a"], &[1], &[]);
        s.model = "llama".into();
        let e = build(&s, "m.gguf").unwrap_err().to_string();
        assert!(
            e.starts_with("m.gguf: tokenizer.ggml.model is \"llama\" (SentencePiece BPE)"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn bad_fields_are_named() {
        let mut s = spec(&["a", "b"], &[1], &[]);
        let e = build(&s, "m.gguf").unwrap_err().to_string();
        assert!(e.contains("tokenizer.ggml.token_type has 1 entries"), "{e}");
        s.token_types = None;
        s.eos_id = Some(2);
        let e = build(&s, "m.gguf").unwrap_err().to_string();
        assert!(e.contains("tokenizer.ggml.eos_token_id is 2"), "{e}");
        s.eos_id = None;
        s.merges = vec!["ab".into()];
        let e = build(&s, "m.gguf").unwrap_err().to_string();
        assert!(e.contains("tokenizer.ggml.merges[0] is \"ab\""), "{e}");
        s.merges.clear();
        s.add_bos = Some(true);
        let e = build(&s, "m.gguf").unwrap_err().to_string();
        assert!(e.contains("bos_token_id is missing"), "{e}");
        s.add_bos = None;
        s.tokens.clear();
        let e = build(&s, "m.gguf").unwrap_err().to_string();
        assert!(e.contains("tokenizer.ggml.tokens is empty"), "{e}");
    }
}
