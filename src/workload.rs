//! What a run sends to the model: prompts from text, a JSONL file, or exact token counts
//! cut from the shipped corpus; and how long it goes on.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// One request of a workload file (`--workload FILE.jsonl`), one JSON object per line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadLine {
    pub prompt: String,
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
}

/// Parses a workload file's text; errors name the file and line.
pub fn parse_workload(text: &str, file: &str) -> Result<Vec<WorkloadLine>> {
    let mut out = Vec::new();
    // A byte-order mark some editors write is not part of the first line's JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            bail!("{file}:{n}: empty line (expected a JSON object like {{\"prompt\": \"...\", \"max_new_tokens\": 64}})");
        }
        let w: WorkloadLine = serde_json::from_str(line).map_err(|e| {
            anyhow::anyhow!(
                "{file}:{n}: {e} (expected {{\"prompt\": \"...\", \"max_new_tokens\": 64}})"
            )
        })?;
        if w.prompt.is_empty() {
            bail!("{file}:{n}: field `prompt` is empty");
        }
        if w.max_new_tokens == Some(0) {
            bail!("{file}:{n}: field `max_new_tokens` must be at least 1");
        }
        out.push(w);
    }
    if out.is_empty() {
        bail!("{file}: no requests (expected one JSON object per line)");
    }
    Ok(out)
}

/// Reads and parses a workload file.
pub fn read_workload(path: &Path) -> Result<Vec<WorkloadLine>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read workload file {}", path.display()))?;
    parse_workload(&text, &path.display().to_string())
}

/// Parses `30s`, `10m`, `2h`, `1500ms` (also combined: `1h30m`).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || {
        anyhow::anyhow!(
            "duration {s:?}: expected a number followed by ms, s, m or h (e.g. 30s, 10m, 2h)"
        )
    };
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total <= 0.0 {
        bail!("duration {s:?}: must be longer than 0 (e.g. 30s, 10m, 2h)");
    }
    // A year: long enough for any soak, and far inside what a Duration and the clock hold.
    const MAX_S: f64 = 366.0 * 24.0 * 3600.0;
    if total > MAX_S {
        bail!("duration {s:?}: at most 8784h (a year), got {total:.0} s");
    }
    Ok(Duration::from_secs_f64(total))
}

/// Cuts prompts of exactly `len` tokens from a tokenised corpus, one per request, starting
/// at seeded offsets; the corpus wraps around when shorter than `len`.
pub fn corpus_prompt(corpus: &[u32], len: usize, request: usize, seed: i64) -> Result<Vec<u32>> {
    if corpus.is_empty() {
        bail!("the text corpus has no tokens");
    }
    // SplitMix64 of (seed, request): a reproducible offset per request.
    let mut z = (seed as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(request as u64 + 1);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let start = ((z ^ (z >> 31)) % corpus.len() as u64) as usize;
    Ok((0..len)
        .map(|i| corpus[(start + i) % corpus.len()])
        .collect())
}

/// Seeded random token ids in `[0, vocab)`, for models without a tokenizer (synthetic).
pub fn random_prompt(vocab: usize, len: usize, request: usize, seed: i64) -> Vec<u32> {
    let mut state = (seed as u64) ^ ((request as u64 + 1) << 32) ^ 0xD1B5_4A32_D192_ED03;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % vocab.max(1) as u64) as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["5x", "", "s", "10", "-3s"] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains("expected a number followed by"), "{bad}: {e}");
        }
        let e = parse_duration("0s").unwrap_err().to_string();
        assert!(e.contains("must be longer than 0"), "{e}");
        assert_eq!(
            parse_duration("8784h").unwrap(),
            Duration::from_secs(8784 * 3600)
        );
        for huge in ["8785h", "99999999999999999h", "18446744073709551615ms"] {
            let e = parse_duration(huge).unwrap_err().to_string();
            assert!(e.contains("at most 8784h"), "{huge}: {e}");
        }
    }

    #[test]
    fn workload_lines_and_errors_name_the_line() {
        let ok = parse_workload(
            "{\"prompt\":\"a\"}\n{\"prompt\":\"b\",\"max_new_tokens\":3}\n",
            "w.jsonl",
        )
        .unwrap();
        assert_eq!(ok[1].max_new_tokens, Some(3));
        let bom = parse_workload("\u{feff}{\"prompt\":\"a\"}\n", "w.jsonl").unwrap();
        assert_eq!(bom[0].prompt, "a");
        let e = parse_workload("{\"prompt\":\"a\"}\n{\"prompt\": 3}\n", "w.jsonl")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("w.jsonl:2:"), "{e}");
        let e = parse_workload("{\"prompt\":\"a\"}\n\n", "w.jsonl")
            .unwrap_err()
            .to_string();
        assert!(e.contains("w.jsonl:2: empty line"), "{e}");
        let e = parse_workload("{\"prompt\":\"a\",\"extra\":1}", "w.jsonl")
            .unwrap_err()
            .to_string();
        assert!(e.contains("extra"), "{e}");
        assert!(parse_workload("", "w.jsonl").is_err());
    }

    #[test]
    fn corpus_prompts_have_exact_length_and_are_reproducible() {
        let corpus: Vec<u32> = (0..50).collect();
        let a = corpus_prompt(&corpus, 120, 3, 7).unwrap();
        assert_eq!(a.len(), 120);
        assert_eq!(a, corpus_prompt(&corpus, 120, 3, 7).unwrap());
        assert_ne!(a, corpus_prompt(&corpus, 120, 4, 7).unwrap());
        let r = random_prompt(10, 64, 0, 1);
        assert!(r.iter().all(|t| *t < 10));
    }
}
