//! The samples file (`--samples FILE.jsonl`): one JSON line per finished request, written and
//! flushed as each request finishes so that nothing measured is lost when a run is killed,
//! and read back by `profiler report --samples FILE` to rebuild the full report.
//!
//! Layout: line 1 is `{"kind":"header","schema_version":1,"environment":{..},"workload":{..}}`,
//! then one `{"kind":"sample",..}` line per request, then, when the run ended by itself or
//! on Ctrl-C, one `{"kind":"end",..}` line with what is known only at the end (peak memory).

use crate::schema::{Environment, Workload};
pub use crate::schema::{
    RequestSample, RunEnd, SampleStatus, SamplesHeader, SAMPLES_SCHEMA_VERSION,
};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One line of the file, tagged by `kind` (owned form, for reading).
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Line {
    Header(Box<SamplesHeader>),
    Sample(RequestSample),
    End(RunEnd),
}

/// One line of the file (borrowed form, for writing).
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum LineRef<'a> {
    Header(&'a SamplesHeader),
    Sample(&'a RequestSample),
    End(&'a RunEnd),
}

/// Writes a samples file line by line, flushing each line to the operating system as soon
/// as it is written (so a killed process loses at most the line being written). Every I/O
/// error is returned, with the file and line, for the caller to report.
#[derive(Debug)]
pub struct SamplesWriter {
    file: File,
    path: PathBuf,
    lines: u64,
}

impl SamplesWriter {
    /// Creates (or truncates) `path` and writes the header line.
    pub fn create(path: &Path, environment: &Environment, workload: &Workload) -> Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .with_context(|| format!("{}: cannot create the samples file", path.display()))?;
        let mut writer = SamplesWriter {
            file,
            path: path.to_path_buf(),
            lines: 0,
        };
        let header = SamplesHeader {
            schema_version: SAMPLES_SCHEMA_VERSION,
            environment: environment.clone(),
            workload: workload.clone(),
        };
        writer.write_line(&LineRef::Header(&header))?;
        Ok(writer)
    }

    /// Appends one finished request and flushes it.
    pub fn append(&mut self, sample: &RequestSample) -> Result<()> {
        self.write_line(&LineRef::Sample(sample))
    }

    /// Writes the end line and syncs the file to disk.
    pub fn finish(mut self, end: &RunEnd) -> Result<()> {
        self.write_line(&LineRef::End(end))?;
        self.file
            .sync_all()
            .with_context(|| format!("{}: cannot sync the samples file", self.path.display()))
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_line(&mut self, line: &LineRef<'_>) -> Result<()> {
        let n = self.lines + 1;
        let mut bytes = serde_json::to_vec(line)
            .with_context(|| format!("{}:{n}: cannot encode the line", self.path.display()))?;
        bytes.push(b'\n');
        // One write of the whole line, then a flush: a partial line can only be the last.
        self.file
            .write_all(&bytes)
            .and_then(|()| self.file.flush())
            .with_context(|| {
                format!("{}:{n}: cannot write the samples file", self.path.display())
            })?;
        self.lines = n;
        Ok(())
    }
}

/// A samples file read back.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplesFile {
    pub header: SamplesHeader,
    /// The requests in file order.
    pub samples: Vec<RequestSample>,
    /// The end line; `None` when the run was killed before writing it.
    pub end: Option<RunEnd>,
    /// Things worth telling that did not stop the read (e.g. a partial last line).
    pub warnings: Vec<String>,
}

/// Reads a samples file. A partial last line (the run killed mid-write) is dropped with a
/// warning; any other malformed line is an error naming the file and line number.
pub fn read_samples(path: &Path) -> Result<SamplesFile> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("{}: cannot read the samples file", path.display()))?;
    parse_samples(&bytes, &path.display().to_string())
}

/// [`read_samples`] on bytes already read; `file` names them in messages.
pub fn parse_samples(bytes: &[u8], file: &str) -> Result<SamplesFile> {
    let mut pieces: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // After a final '\n' the split leaves an empty piece; without one, the last line is
    // unterminated: the writer was stopped before finishing it.
    let unterminated = match pieces.last() {
        Some([]) => {
            pieces.pop();
            false
        }
        _ => true,
    };
    if pieces.is_empty() {
        bail!("{file}: empty samples file (expected a header line first)");
    }
    let count = pieces.len();
    let mut header = None;
    let mut samples = Vec::new();
    let mut index_lines = std::collections::HashMap::new();
    let mut end = None;
    let mut warnings = Vec::new();
    for (i, piece) in pieces.into_iter().enumerate() {
        let n = i + 1;
        let is_partial_candidate = unterminated && n == count;
        if piece.iter().all(u8::is_ascii_whitespace) && !is_partial_candidate {
            bail!("{file}:{n}: empty line (expected one JSON object per line)");
        }
        let line: Line = match serde_json::from_slice(piece) {
            Ok(line) => line,
            Err(_) if is_partial_candidate && n > 1 => {
                warnings.push(format!(
                    "{file}:{n}: ignored a partial last line (the run was probably killed while \
                     writing it)"
                ));
                break;
            }
            Err(e) if is_partial_candidate => {
                bail!("{file}:{n}: partial header line ({e}); the run stopped before writing it")
            }
            Err(e) => bail!(
                "{file}:{n}: {e} (expected a JSON object with \"kind\" header, sample or end)"
            ),
        };
        if end.is_some() {
            bail!("{file}:{n}: line after the end line (expected the end line to be last)");
        }
        match (line, header.is_some()) {
            (Line::Header(h), false) => {
                if h.schema_version != SAMPLES_SCHEMA_VERSION {
                    bail!(
                        "{file}:{n}: field `schema_version` is {}, expected {SAMPLES_SCHEMA_VERSION}",
                        h.schema_version
                    );
                }
                header = Some(*h);
            }
            (Line::Header(_), true) => {
                bail!("{file}:{n}: a second header line (expected one header, on line 1)")
            }
            (_, false) => bail!("{file}:{n}: expected the header line (\"kind\":\"header\") first"),
            (Line::Sample(s), true) => {
                s.validate().map_err(|e| anyhow!("{file}:{n}: {e}"))?;
                if let Some(first) = index_lines.get(&s.index) {
                    bail!(
                        "{file}:{n}: sample index {} was already on line {first} (expected each request once)",
                        s.index
                    );
                }
                index_lines.insert(s.index, n);
                samples.push(s);
            }
            (Line::End(e), true) => end = Some(e),
        }
    }
    let header = header.ok_or_else(|| anyhow!("{file}: no header line"))?;
    Ok(SamplesFile {
        header,
        samples,
        end,
        warnings,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::schema::tests::{environment, workload};

    /// An ok sample with `n` output tokens and steady 10 ms decode steps.
    pub(crate) fn ok_sample(index: u64, ttft: f64, n: u64) -> RequestSample {
        let steps = vec![10.0; n.saturating_sub(1) as usize];
        let e2e = ttft + steps.iter().sum::<f64>();
        RequestSample {
            index,
            start_offset_ms: index as f64 * (e2e + 1.0),
            prompt_tokens: 16,
            output_tokens: n,
            tokenize_ms: 0.5,
            ttft_ms: Some(ttft),
            e2e_ms: e2e,
            tpot_ms: RequestSample::tpot(e2e, ttft, n),
            decode_step_ms: steps,
            batch: 1,
            status: SampleStatus::Ok,
        }
    }

    fn error_sample(index: u64) -> RequestSample {
        RequestSample {
            ttft_ms: None,
            tpot_ms: None,
            output_tokens: 0,
            decode_step_ms: vec![],
            status: SampleStatus::Error {
                message: "prompt too long: 9000 tokens, context 2048".into(),
            },
            ..ok_sample(index, 0.0, 0)
        }
    }

    fn write_file(samples: &[RequestSample], end: Option<&RunEnd>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let mut w = SamplesWriter::create(&path, &environment(), &workload()).unwrap();
        for s in samples {
            w.append(s).unwrap();
        }
        if let Some(end) = end {
            w.finish(end).unwrap();
        }
        (dir, path)
    }

    #[test]
    fn tpot_follows_the_usual_definition() {
        assert_eq!(RequestSample::tpot(130.0, 30.0, 11), Some(10.0));
        assert_eq!(RequestSample::tpot(30.0, 30.0, 1), None);
        assert_eq!(RequestSample::tpot(30.0, 30.0, 0), None);
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let samples = vec![
            ok_sample(0, 50.0, 8),
            error_sample(1),
            ok_sample(2, 40.0, 1),
        ];
        let end = RunEnd {
            peak_rss_bytes: Some(123_456_789),
            cuda_peak_allocated_bytes: None,
            interrupted: true,
            warnings: vec!["stopped by SIGINT".into()],
        };
        let (_dir, path) = write_file(&samples, Some(&end));
        let read = read_samples(&path).unwrap();
        assert_eq!(read.header.environment, environment());
        assert_eq!(read.header.workload, workload());
        assert_eq!(read.samples, samples);
        assert_eq!(read.end, Some(end));
        assert!(read.warnings.is_empty());
    }

    #[test]
    fn lines_are_tagged_and_status_is_flat() {
        let (_dir, path) = write_file(&[ok_sample(0, 5.0, 1), error_sample(1)], None);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["kind"], "header");
        assert_eq!(lines[0]["schema_version"], 1);
        assert_eq!(lines[1]["kind"], "sample");
        assert_eq!(lines[1]["status"], "ok");
        assert!(lines[1]["tpot_ms"].is_null());
        assert_eq!(lines[2]["status"], "error");
        assert!(lines[2]["message"]
            .as_str()
            .unwrap()
            .starts_with("prompt too long"));
    }

    #[test]
    fn partial_last_line_is_dropped_with_a_warning() {
        let (_dir, path) = write_file(&[ok_sample(0, 5.0, 3), ok_sample(1, 5.0, 3)], None);
        let mut bytes = std::fs::read(&path).unwrap();
        let full = bytes.len();
        bytes.extend_from_slice(br#"{"kind":"sample","index":2,"start_off"#);
        let read = parse_samples(&bytes, "s.jsonl").unwrap();
        assert_eq!(read.samples.len(), 2);
        assert_eq!(read.end, None);
        assert_eq!(read.warnings.len(), 1);
        assert!(read.warnings[0].starts_with("s.jsonl:4: ignored a partial last line"));
        // A complete file without a final newline is read whole, silently.
        let read = parse_samples(&bytes[..full - 1], "s.jsonl").unwrap();
        assert_eq!((read.samples.len(), read.warnings.len()), (2, 0));
    }

    #[test]
    fn malformed_middle_line_is_an_error_naming_it() {
        let (_dir, path) = write_file(&[ok_sample(0, 5.0, 3), ok_sample(1, 5.0, 3)], None);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines[1] = r#"{"kind":"sample","index":"#;
        let broken = lines.join("\n") + "\n";
        let err = parse_samples(broken.as_bytes(), "s.jsonl")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.jsonl:2: "), "{err}");
        assert!(!err.contains('\n'), "{err}");
        // A malformed line at the end that is newline-terminated is not a partial write.
        let mut lines: Vec<&str> = text.lines().collect();
        lines[2] = "{nonsense";
        let broken = lines.join("\n") + "\n";
        let err = parse_samples(broken.as_bytes(), "s.jsonl")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.jsonl:3: "), "{err}");
    }

    #[test]
    fn invalid_sample_is_an_error_naming_line_and_field() {
        let (_dir, path) = write_file(&[ok_sample(0, 5.0, 3)], None);
        let text = std::fs::read_to_string(&path).unwrap();
        let bad = text.replace("\"batch\":1", "\"batch\":0");
        let err = parse_samples(bad.as_bytes(), "f").unwrap_err().to_string();
        assert!(err.starts_with("f:2: field `batch`"), "{err}");
        let bad = text.replace("\"ttft_ms\":5.0", "\"ttft_ms\":500.0");
        let err = parse_samples(bad.as_bytes(), "f").unwrap_err().to_string();
        assert!(err.starts_with("f:2: field `e2e_ms`"), "{err}");
    }

    #[test]
    fn a_sample_must_agree_with_itself_and_come_once() {
        let (_dir, path) = write_file(&[ok_sample(0, 5.0, 3), ok_sample(0, 5.0, 3)], None);
        let text = std::fs::read_to_string(&path).unwrap();
        let err = parse_samples(text.as_bytes(), "f").unwrap_err().to_string();
        assert!(
            err.starts_with("f:3: sample index 0 was already on line 2"),
            "{err}"
        );
        let one: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
        parse_samples(one.as_bytes(), "f").unwrap();
        let cases = [
            (
                "\"output_tokens\":3",
                "\"output_tokens\":99",
                "f:2: field `decode_step_ms` holds 2 steps, expected 98",
            ),
            (
                "\"output_tokens\":3",
                "\"output_tokens\":0",
                "f:2: field `output_tokens` is 0",
            ),
            (
                "\"tpot_ms\":10.0",
                "\"tpot_ms\":1e300",
                "f:2: field `tpot_ms`",
            ),
            (
                "\"tpot_ms\":10.0",
                "\"tpot_ms\":null",
                "f:2: field `tpot_ms`",
            ),
            (
                "\"e2e_ms\":25.0",
                "\"e2e_ms\":26.0",
                "f:2: field `e2e_ms` is 26",
            ),
        ];
        for (from, to, want) in cases {
            assert!(one.contains(from), "{from} not in {one}");
            let bad = one.replace(from, to);
            let err = parse_samples(bad.as_bytes(), "f").unwrap_err().to_string();
            assert!(err.starts_with(want), "{err} (wanted {want})");
        }
    }

    #[test]
    fn structure_errors_name_the_line() {
        let (_dir, path) = write_file(&[ok_sample(0, 5.0, 3)], Some(&RunEnd::default()));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let cases = [
            (vec![lines[1]], "f:1: expected the header line"),
            (vec![lines[0], lines[0]], "f:2: a second header line"),
            (
                vec![lines[0], lines[2], lines[1]],
                "f:3: line after the end line",
            ),
            (vec![lines[0], "", lines[1]], "f:2: empty line"),
        ];
        for (ls, want) in cases {
            let text = ls.join("\n") + "\n";
            let err = parse_samples(text.as_bytes(), "f").unwrap_err().to_string();
            assert!(err.starts_with(want), "{err} (wanted {want})");
        }
        let v2 = lines[0].replace("\"schema_version\":1", "\"schema_version\":2");
        let err = parse_samples(v2.as_bytes(), "f").unwrap_err().to_string();
        assert!(err.starts_with("f:1: field `schema_version` is 2"), "{err}");
        let err = parse_samples(b"", "f").unwrap_err().to_string();
        assert!(err.starts_with("f: empty samples file"), "{err}");
        let err = parse_samples(&lines[0].as_bytes()[..20], "f")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("f:1: partial header line"), "{err}");
    }

    #[test]
    fn unwritable_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("s.jsonl");
        let err = SamplesWriter::create(&path, &environment(), &workload()).unwrap_err();
        assert!(format!("{err:#}").contains("cannot create the samples file"));
    }
}
