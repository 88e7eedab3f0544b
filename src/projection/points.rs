//! Calibration points: published (or measured) TTFT and TPOT for known workloads, read from
//! a CSV file such as `profiles/calibration/neuron_published_points.csv`.
//!
//! Required columns: `model, instance, tp, batch, input_len, output_len, ttft_p50_ms,
//! tpot_p50_ms`; optional: `compiled_seq_len, weight_dtype, source`, and for a serving run
//! `concurrency` (a closed loop of that many clients; the row is then replayed through the
//! serving simulator, not projected as a static batch), `max_num_seqs` (the engine's batch
//! limit) and `use` (`validation…` keeps the row out of every fit). Other columns are kept
//! out of the way. A line starting with `#` is a comment.

use super::dtype::WeightsDtype;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::Path;

/// One measured point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// 1-based line of the CSV file.
    pub line: usize,
    pub model: String,
    pub instance: String,
    pub tp: u32,
    pub batch: u32,
    pub input_len: u32,
    pub output_len: u32,
    /// Compiled sequence length where the run states one.
    pub compiled_seq_len: Option<u32>,
    pub weights_dtype: WeightsDtype,
    pub ttft_ms: f64,
    pub tpot_ms: f64,
    pub source: String,
    /// Client concurrency of a serving run (closed loop); `None`: a static batch.
    pub concurrency: Option<u32>,
    /// The serving engine's batch limit, where the row states it.
    pub max_num_seqs: Option<u32>,
    /// The `use` column as written (`fit`, `validation …`; empty where there is none).
    pub use_for: String,
}

impl Point {
    /// Whether the row is kept out of fits (its `use` column starts with `validation`):
    /// values read off a chart, or points kept to judge the model.
    pub fn validation_only(&self) -> bool {
        self.use_for
            .trim()
            .to_ascii_lowercase()
            .starts_with("validation")
    }
}

/// Splits one CSV record (RFC 4180 quoting, no embedded newlines).
fn split_record(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Parses the points CSV text; `what` names the file in errors.
pub fn parse(text: &str, what: &str) -> Result<Vec<Point>> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let Some((_, header)) = lines.next() else {
        bail!("{what}: the file is empty, expected a CSV header line");
    };
    let header: Vec<String> = split_record(header)
        .into_iter()
        .map(|h| h.trim().to_string())
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let need = |name: &str| {
        col(name).with_context(|| format!("{what}: column `{name}` is missing from the header"))
    };
    let (c_model, c_inst, c_tp, c_batch) = (
        need("model")?,
        need("instance")?,
        need("tp")?,
        need("batch")?,
    );
    let (c_in, c_out, c_ttft, c_tpot) = (
        need("input_len")?,
        need("output_len")?,
        need("ttft_p50_ms")?,
        need("tpot_p50_ms")?,
    );
    let (c_seq, c_dtype, c_src) = (col("compiled_seq_len"), col("weight_dtype"), col("source"));
    let (c_conc, c_mns, c_use) = (col("concurrency"), col("max_num_seqs"), col("use"));
    let mut points = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let f = split_record(line);
        let get = |c: usize, name: &str| -> Result<&str> {
            f.get(c)
                .map(|s| s.trim())
                .with_context(|| format!("{what}: line {n}: column `{name}` is missing"))
        };
        let int = |c: usize, name: &str| -> Result<u32> {
            let s = get(c, name)?;
            match s.parse::<u32>() {
                Ok(v) if v > 0 => Ok(v),
                _ => {
                    bail!("{what}: line {n}: column `{name}` is {s:?}, expected a positive integer")
                }
            }
        };
        let ms = |c: usize, name: &str| -> Result<f64> {
            let s = get(c, name)?;
            match s.parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
                _ => bail!("{what}: line {n}: column `{name}` is {s:?}, expected a positive number of milliseconds"),
            }
        };
        // An optional integer column: empty is `None`.
        let opt_int = |c: Option<usize>, name: &str| -> Result<Option<u32>> {
            match c.and_then(|c| f.get(c)).map(|s| s.trim()) {
                None | Some("") => Ok(None),
                Some(_) => int(c.unwrap_or_default(), name).map(Some),
            }
        };
        let weights_dtype = match c_dtype.map(|c| get(c, "weight_dtype")).transpose()? {
            Some(s) if !s.is_empty() => WeightsDtype::parse(s)
                .with_context(|| format!("{what}: line {n}: column `weight_dtype`"))?,
            _ => WeightsDtype::Bf16,
        };
        points.push(Point {
            line: n,
            model: get(c_model, "model")?.to_string(),
            instance: get(c_inst, "instance")?.to_string(),
            tp: int(c_tp, "tp")?,
            batch: int(c_batch, "batch")?,
            input_len: int(c_in, "input_len")?,
            output_len: int(c_out, "output_len")?,
            compiled_seq_len: opt_int(c_seq, "compiled_seq_len")?,
            weights_dtype,
            ttft_ms: ms(c_ttft, "ttft_p50_ms")?,
            tpot_ms: ms(c_tpot, "tpot_p50_ms")?,
            source: c_src
                .and_then(|c| f.get(c))
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            concurrency: opt_int(c_conc, "concurrency")?,
            max_num_seqs: opt_int(c_mns, "max_num_seqs")?,
            use_for: c_use
                .and_then(|c| f.get(c))
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
        });
    }
    Ok(points)
}

/// Reads and parses a points file.
pub fn load(path: &Path) -> Result<Vec<Point>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read calibration points {}", path.display()))?;
    parse(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "model,instance,tp,batch,compiled_seq_len,input_len,output_len,weight_dtype,ttft_p50_ms,tpot_p50_ms,source\n\
Llama-2-7b,inf2.48xlarge,24,1,4096,128,3968,bf16,27.6,6.47,\"repo, file (2024-04-30)\"\n";

    #[test]
    fn parses_quoted_source() {
        let p = parse(CSV, "p.csv").unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].line, 2);
        assert_eq!(p[0].compiled_seq_len, Some(4096));
        assert_eq!(p[0].source, "repo, file (2024-04-30)");
        assert_eq!(p[0].tpot_ms, 6.47);
        assert_eq!((p[0].concurrency, p[0].max_num_seqs), (None, None));
        assert!(!p[0].validation_only());
    }

    #[test]
    fn serving_columns_are_read() {
        let csv = "model,instance,tp,batch,concurrency,max_num_seqs,input_len,output_len,ttft_p50_ms,tpot_p50_ms,use\n\
m,i,2,5,5,,500,20,40,10,fit\n\
m,i,2,1,1,2,500,20,40,10,validation (read off a chart)\n";
        let p = parse(csv, "p.csv").unwrap();
        assert_eq!((p[0].concurrency, p[0].max_num_seqs), (Some(5), None));
        assert_eq!((p[1].concurrency, p[1].max_num_seqs), (Some(1), Some(2)));
        assert!(!p[0].validation_only() && p[1].validation_only());
        let e = parse(&csv.replace(",5,5,,", ",5,x,,"), "p.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("`concurrency`"), "{e}");
    }

    #[test]
    fn bad_cell_names_line_and_column() {
        let e = parse(&CSV.replace(",6.47,", ",-1,"), "p.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("tpot_p50_ms"), "{e}");
        let e = parse(&CSV.replace("tp,batch", "tp,batches"), "p.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`batch`"), "{e}");
    }

    #[test]
    fn shipped_points_parse() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/profiles/calibration/neuron_published_points.csv"
        );
        let p = load(Path::new(path)).unwrap();
        assert_eq!(p.len(), 90);
        assert!(p.iter().all(|x| x.source.contains("aws-neuron-sdk")));
    }
}
