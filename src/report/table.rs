//! The terminal report: aligned plain text (the default `--format`). Same content as the
//! Markdown report; projections are labelled "Projected (not measured)", warnings come last.

use super::layout::{provenance, sections, title};
use super::Report;

/// The report as aligned plain text.
pub fn render(report: &Report) -> String {
    let title = title(report);
    let mut out = format!("{title}\n{}\n", "=".repeat(width(&title)));
    for line in provenance(report) {
        out.push_str(&line);
        out.push('\n');
    }
    for s in sections(report) {
        out.push_str(&format!("\n{}\n{}\n", s.title, "-".repeat(width(&s.title))));
        for line in &s.text {
            out.push_str(line);
            out.push('\n');
        }
        if !s.table.header.is_empty() {
            out.push_str(&s.table.text());
        }
        if !s.list.is_empty() {
            if let Some(t) = &s.list_title {
                out.push_str(&format!("{t}:\n"));
            }
            for item in &s.list {
                out.push_str(&format!("  - {}\n", item.replace('\n', " ")));
            }
        }
    }
    out
}

/// Display width, counted in characters (the report's text is mostly ASCII).
fn width(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::report;

    #[test]
    fn columns_line_up() {
        let text = render(&report());
        let lines: Vec<&str> = text.lines().collect();
        let head = lines
            .iter()
            .position(|l| l.starts_with("metric (ms)"))
            .unwrap();
        // The right edge of the "n" column is the same on every row of the table.
        let n_end = lines[head].find(" n ").unwrap() + 2;
        for l in &lines[head + 2..head + 7] {
            let c = l.as_bytes()[n_end - 1];
            assert!(c.is_ascii_digit(), "misaligned: {l}");
            assert_eq!(l.as_bytes()[n_end], b' ', "misaligned: {l}");
        }
    }

    #[test]
    fn labels_projections_and_ends_with_warnings() {
        let mut r = report();
        r.warnings = vec!["e2e_ms: 1 of 20 values are statistical outliers".into()];
        let text = render(&r);
        assert!(text.contains("\nProjected (not measured)\n------------------------\n"));
        assert!(text.contains("Sources and notes:\n  - https://example.org/inf2-pricing"));
        let warnings = text.find("\nWarnings\n").unwrap();
        assert!(warnings > text.find("Projected (not measured)").unwrap());
        assert!(text.trim_end().ends_with("values are statistical outliers"));
    }

    #[test]
    fn without_projections_no_projection_section() {
        let mut r = report();
        r.projections.clear();
        r.host_check = None;
        let text = render(&r);
        assert!(!text.contains("Projected"));
        assert!(!text.contains("Host check"));
        assert!(text.contains("Measured (4 requests)"));
    }
}
