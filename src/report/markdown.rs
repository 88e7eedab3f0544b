//! The Markdown report (GitHub-flavoured tables): for pasting into issues, PRs and docs.
//! Same content as the terminal table; projections are under "Projected (not measured)".

use super::layout::{provenance, sections, title};
use super::Report;
use crate::output::table::inline;

/// The report as Markdown text: blocks (heading, paragraph, table, list) separated by one
/// blank line.
pub fn render(report: &Report) -> String {
    let mut blocks = vec![format!("# {}", inline(&title(report)))];
    let lines: Vec<String> = provenance(report).iter().map(|l| inline(l)).collect();
    blocks.push(lines.join("  \n"));
    for s in sections(report) {
        blocks.push(format!("## {}", inline(&s.title)));
        blocks.extend(s.text.iter().map(|line| inline(line)));
        if !s.table.header.is_empty() {
            blocks.push(s.table.markdown().trim_end().to_string());
        }
        if !s.list.is_empty() {
            if let Some(t) = &s.list_title {
                blocks.push(format!("**{}**", inline(t)));
            }
            let items: Vec<String> = s.list.iter().map(|i| format!("- {}", inline(i))).collect();
            blocks.push(items.join("\n"));
        }
    }
    blocks.join("\n\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::report;

    /// Cells of a Markdown table line, splitting on pipes not escaped by a backslash.
    fn cells(line: &str) -> usize {
        let mut count = 0;
        let mut escaped = false;
        for c in line.trim().chars() {
            match c {
                '\\' if !escaped => escaped = true,
                '|' if !escaped => count += 1,
                _ => escaped = false,
            }
            if c != '\\' {
                escaped = false;
            }
        }
        count - 1
    }

    /// Every table: header, alignment row, then rows with as many cells as the header.
    fn check_tables(md: &str) {
        let lines: Vec<&str> = md.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            if lines[i].starts_with('|') {
                let width = cells(lines[i]);
                assert!(
                    lines[i + 1].starts_with("|:---"),
                    "no alignment row: {}",
                    lines[i]
                );
                while i < lines.len() && lines[i].starts_with('|') {
                    assert_eq!(cells(lines[i]), width, "ragged row: {}", lines[i]);
                    i += 1;
                }
            } else {
                i += 1;
            }
        }
    }

    #[test]
    fn has_measured_and_projected_sections_and_parses() {
        let md = render(&report());
        assert!(md.starts_with("# LLM profile: tiny-llama (gguf weights)"));
        assert!(md.contains("\n## Measured (4 requests)\n"));
        assert!(md.contains("\n## Projected (not measured)\n"));
        assert!(md.contains("| inf2-profile | inf2.48xlarge | 2 | 1 | yes |"));
        assert!(md.contains("12.0% / 8.0% (5 points)"));
        assert!(md.contains("**Sources and notes**"));
        // The source holds a pipe: escaped, so the list item stays one item.
        assert!(md.contains("- https://example.org/inf2-pricing, \"2024-05\" | a\n"));
        assert!(md.contains("\n## Host check"));
        assert!(
            md.contains("a 128-token prefill 400.0 ms (matmul efficiency 0.700), a decode step of 1 row 54.00 ms and of 4 rows 123.0 ms (bandwidth efficiency 0.500, 22.70 ms per extra row)"),
            "{md}"
        );
        check_tables(&md);
    }

    #[test]
    fn projected_heading_only_with_projections() {
        let mut r = report();
        r.projections.clear();
        r.warnings = vec!["a *warning* | with a pipe".into()];
        let md = render(&r);
        assert!(!md.contains("Projected"));
        assert!(md.contains("\n## Warnings\n\n- a \\*warning\\* | with a pipe"));
        check_tables(&md);
    }

    #[test]
    fn pipes_in_cells_are_escaped() {
        let mut r = report();
        r.projections[0].instance = "a|b".into();
        let md = render(&r);
        assert!(md.contains("| a\\|b |"));
        check_tables(&md);
    }
}
