//! One-line descriptions of TOML parse errors for the project's own files (profiles and
//! model cards): file, line, message and the table the error is in.

use anyhow::anyhow;

/// `{what}: line N: message (in [table])`, from an error of parsing `text`.
pub fn describe(text: &str, what: &str, e: &toml::de::Error) -> anyhow::Error {
    let start = e.span().map(|s| s.start.min(text.len()));
    let line = start.map(|s| text[..s].matches('\n').count() + 1);
    // The table the error is in: the last `[header]` at or before the error's line.
    let table = line.and_then(|l| {
        text.lines()
            .take(l)
            .filter(|x| x.trim_start().starts_with('['))
            .last()
            .map(|h| format!(" (in {})", h.trim()))
    });
    let msg = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    let at = line.map_or(String::new(), |l| format!(" line {l}:"));
    anyhow!("{what}:{at} {msg}{}", table.unwrap_or_default())
}
