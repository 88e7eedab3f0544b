//! The output layer every command writes through: one [`Format`] (`--format`), one table
//! renderer for the terminal, Markdown and CSV ([`table`]), one number formatter
//! ([`number`]), pretty JSON, and the JSON schemas of the machine-readable outputs
//! ([`schemas`]). Pure: text in, text out, no I/O.

pub mod number;
pub mod schemas;
pub mod table;

pub use table::{LineEnd, Table};

use serde::Serialize;
use std::str::FromStr;

/// Output format of every command (`--format table|json|csv|markdown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned plain text for a terminal (the default; `text` is accepted too).
    Table,
    Json,
    Csv,
    Markdown,
}

impl Format {
    /// Parses `table|json|csv|markdown` (also `text` and `md`).
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "table" | "text" => Self::Table,
            "json" => Self::Json,
            "csv" => Self::Csv,
            "markdown" | "md" => Self::Markdown,
            _ => anyhow::bail!("unknown format `{s}` (expected table, json, csv or markdown)"),
        })
    }

    /// A clap value parser accepting only `allowed` (for commands with fewer formats):
    /// the error names the value and the formats the command has.
    pub fn parser(
        allowed: &'static [Format],
    ) -> impl Fn(&str) -> std::result::Result<Format, String> + Clone + Send + Sync + 'static {
        move |s: &str| {
            let f = Format::parse(s).map_err(|e| format!("{e:#}"))?;
            if allowed.contains(&f) {
                Ok(f)
            } else {
                let names: Vec<&str> = allowed.iter().map(|f| f.name()).collect();
                Err(format!(
                    "format `{s}` is not available here (expected {})",
                    names.join(" or ")
                ))
            }
        }
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Table => "table",
            Self::Json => "json",
            Self::Csv => "csv",
            Self::Markdown => "markdown",
        }
    }
}

impl FromStr for Format {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        Format::parse(s)
    }
}

/// `v` as pretty-printed JSON with a final newline. serde_json writes a non-finite number
/// as `null`; the types keep unknown values in `Option`s, so no `null` stands for NaN.
pub fn json_text(v: &impl Serialize) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(v)
        .map_err(|e| anyhow::anyhow!("cannot encode the output as JSON: {e}"))?;
    text.push('\n');
    Ok(text)
}

/// [`json_text`] as bytes; an encoding failure (none of the output types can fail) becomes
/// a JSON object naming it rather than empty output.
pub fn json_bytes(v: &impl Serialize) -> Vec<u8> {
    json_text(v)
        .unwrap_or_else(|e| format!("{}\n", serde_json::json!({ "error": format!("{e:#}") })))
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_parse() {
        assert_eq!("json".parse::<Format>().unwrap(), Format::Json);
        assert_eq!("md".parse::<Format>().unwrap(), Format::Markdown);
        assert_eq!("text".parse::<Format>().unwrap(), Format::Table);
        let err = "xml".parse::<Format>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown format `xml` (expected table, json, csv or markdown)"
        );
        let p = Format::parser(&[Format::Table, Format::Json]);
        assert_eq!(p("text"), Ok(Format::Table));
        assert_eq!(
            p("csv").unwrap_err(),
            "format `csv` is not available here (expected table or json)"
        );
        assert!(p("yaml").unwrap_err().contains("yaml"));
    }

    #[test]
    fn json_ends_with_a_newline_and_has_no_nan() {
        let t = json_text(&serde_json::json!({"a": f64::NAN})).unwrap();
        assert_eq!(t, "{\n  \"a\": null\n}\n");
    }
}
