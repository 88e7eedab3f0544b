//! One rectangular table, rendered as aligned terminal text, a GitHub Markdown table or
//! CSV (through the `csv` crate: RFC 4180 quoting of fields holding a comma, quote or line
//! break).

/// A table: a header, rows of cells, and how many leading columns hold text.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Columns, counted from the left, that hold text (left-aligned); the rest are
    /// numbers (right-aligned).
    pub text_columns: usize,
}

/// Line end of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    /// `\n`: the projection, comparison, calibration, simulation and plan tables.
    Lf,
    /// `\r\n`: the run report, RFC 4180 to the letter.
    Crlf,
}

impl Table {
    /// An empty table with this header.
    pub fn new(header: &[&str], text_columns: usize) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            text_columns,
        }
    }

    /// Aligned plain text: columns padded to a common width (text left, numbers right),
    /// two spaces apart, a rule of dashes under the header, no trailing spaces.
    pub fn text(&self) -> String {
        let n = self.header.len();
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let line = |cells: &[String]| -> String {
            let parts: Vec<String> = (0..n)
                .map(|i| {
                    let cell = cells.get(i).map_or("", String::as_str);
                    let pad = " ".repeat(widths[i].saturating_sub(width(cell)));
                    if i < self.text_columns {
                        format!("{cell}{pad}")
                    } else {
                        format!("{pad}{cell}")
                    }
                })
                .collect();
            format!("{}\n", parts.join("  ").trim_end())
        };
        let mut out = line(&self.header);
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        out.push_str(&line(&rule));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }

    /// A GitHub-flavoured Markdown table, one line per row: cells made safe by [`inline`]
    /// with pipes escaped, text columns aligned left and numbers right.
    pub fn markdown(&self) -> String {
        let row = |cells: &[String]| {
            let cells: Vec<String> = cells
                .iter()
                .map(|c| inline(c).replace('|', "\\|"))
                .collect();
            format!("| {} |\n", cells.join(" | "))
        };
        let align: Vec<&str> = (0..self.header.len())
            .map(|i| {
                if i < self.text_columns {
                    ":---"
                } else {
                    "---:"
                }
            })
            .collect();
        let mut out = row(&self.header);
        out.push_str(&format!("|{}|\n", align.join("|")));
        for r in &self.rows {
            out.push_str(&row(r));
        }
        out
    }

    /// The header and rows as CSV.
    pub fn csv(&self, end: LineEnd) -> String {
        csv_text(std::iter::once(&self.header).chain(&self.rows), end)
    }
}

/// Records as CSV text (RFC 4180 quoting, through the `csv` crate).
pub fn csv_text<R, F>(records: impl IntoIterator<Item = R>, end: LineEnd) -> String
where
    R: IntoIterator<Item = F>,
    F: AsRef<[u8]>,
{
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .terminator(match end {
            LineEnd::Lf => csv::Terminator::Any(b'\n'),
            LineEnd::Crlf => csv::Terminator::CRLF,
        })
        .from_writer(Vec::new());
    for r in records {
        // Writing to memory cannot fail.
        let _ = w.write_record(r);
    }
    let bytes = w.into_inner().unwrap_or_default();
    // Every field came from a `str`, so the bytes are UTF-8.
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Text made safe for one Markdown line: line breaks become spaces, and characters that
/// would start emphasis, code, links or HTML are backslash-escaped.
pub fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\r' | '\n' => out.push(' '),
            '\\' | '`' | '*' | '_' | '<' | '>' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Table {
        let mut t = Table::new(&["name", "value"], 1);
        t.rows.push(vec!["a".into(), "1.5".into()]);
        t.rows.push(vec!["long name".into(), "12".into()]);
        t
    }

    #[test]
    fn text_aligns_text_left_and_numbers_right() {
        assert_eq!(
            t().text(),
            "name       value\n---------  -----\na            1.5\nlong name     12\n"
        );
    }

    #[test]
    fn markdown_escapes_and_aligns() {
        let mut x = t();
        x.rows.push(vec!["a|b *c*\nd".into(), "1".into()]);
        assert_eq!(
            x.markdown(),
            "| name | value |\n|:---|---:|\n| a | 1.5 |\n| long name | 12 |\n| a\\|b \\*c\\* d | 1 |\n"
        );
    }

    #[test]
    fn csv_quotes_per_rfc_4180() {
        let mut x = Table::new(&["a"], 1);
        x.rows.push(vec!["x,\"y\"".into()]);
        x.rows.push(vec!["line\nbreak".into()]);
        assert_eq!(x.csv(LineEnd::Lf), "a\n\"x,\"\"y\"\"\"\n\"line\nbreak\"\n");
        assert_eq!(
            csv_text([["a", ""], ["b", "c"]], LineEnd::Crlf),
            "a,\r\nb,c\r\n"
        );
    }
}
