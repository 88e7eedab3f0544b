//! The offered load of a simulation: when requests arrive (a closed loop at a fixed
//! concurrency, Poisson or gamma arrivals at a rate, or the arrival times of a workload
//! file) and how long their prompts and outputs are (fixed, normally spread, or the lengths
//! of a workload or samples file).

use super::rng::Rng;
use crate::projection::setting::{Setting, SettingError};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;

/// When requests arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrivals {
    /// `n` requests in flight: a new one arrives when one finishes.
    Closed { concurrency: u32 },
    /// Open loop: inter-arrival gaps drawn from a gamma distribution of shape `burstiness`
    /// and mean `1 / rate` (shape 1 is Poisson; below 1 burstier). The convention of vLLM's
    /// `benchmarks/benchmark_serving.py` (`--burstiness`).
    Rate { rate: f64, burstiness: f64 },
    /// Open loop at the `arrival_s` of each line of a workload file.
    Trace,
}

/// Prompt and output lengths.
#[derive(Debug, Clone, PartialEq)]
pub enum Lengths {
    /// Normal around `input`/`output` with the given standard deviations (0: fixed),
    /// rounded and kept within `[1, limit]`.
    Spread {
        input: u32,
        output: u32,
        input_stddev: f64,
        output_stddev: f64,
    },
    /// One entry per request, in order, repeated when more requests are simulated.
    List(Vec<LengthEntry>),
}

/// One request's lengths from a file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LengthEntry {
    pub prompt: u32,
    pub output: u32,
    pub arrival_s: Option<f64>,
}

/// The whole offered load.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    pub arrivals: Arrivals,
    pub lengths: Lengths,
    /// Requests to simulate (`None`: until `duration_s`).
    pub requests: Option<u64>,
    /// Simulated seconds during which requests arrive (`None`: until `requests`).
    pub duration_s: Option<f64>,
    pub seed: u64,
}

impl Load {
    /// One line per bad setting: rates and concurrency positive, deviations not negative,
    /// a stop condition.
    pub fn validate(&self) -> Result<()> {
        match self.arrivals {
            Arrivals::Closed { concurrency: 0 } => {
                bail!(SettingError::new(
                    Setting::Concurrency,
                    " must be at least 1 (got 0)"
                ))
            }
            Arrivals::Rate { rate, burstiness } => {
                if !(rate > 0.0 && rate.is_finite()) {
                    bail!(SettingError::new(
                        Setting::Rate,
                        format!(" must be a positive number of requests per second (got {rate})")
                    ));
                }
                if !(burstiness > 0.0 && burstiness.is_finite()) {
                    bail!(SettingError::new(
                        Setting::Burstiness,
                        format!(" must be positive (got {burstiness}); 1 is Poisson")
                    ));
                }
            }
            _ => {}
        }
        if let Lengths::Spread {
            input,
            output,
            input_stddev,
            output_stddev,
        } = &self.lengths
        {
            if *input == 0 || *output == 0 {
                bail!(SettingError::new(Setting::InputLen, " and ")
                    .then(Setting::OutputLen, " must be at least 1"));
            }
            for (setting, v) in [
                (Setting::InputLenStddev, input_stddev),
                (Setting::OutputLenStddev, output_stddev),
            ] {
                if !(*v >= 0.0 && v.is_finite()) {
                    bail!(SettingError::new(
                        setting,
                        format!(" must be zero or positive (got {v})")
                    ));
                }
            }
        }
        if self.requests == Some(0) {
            bail!(SettingError::new(Setting::Requests, " must be at least 1"));
        }
        if let Some(d) = self.duration_s {
            if !(d > 0.0 && d.is_finite()) {
                bail!(SettingError::new(Setting::Duration, " must be positive"));
            }
        }
        if self.requests.is_none() && self.duration_s.is_none() {
            bail!(SettingError::text("give ")
                .then(Setting::Requests, " N or ")
                .then(Setting::Duration, " D"));
        }
        Ok(())
    }
}

/// Draws the requests of a [`Load`] one at a time.
#[derive(Debug, Clone)]
pub struct Source {
    load: Load,
    rng: Rng,
    issued: u64,
    clock: f64,
    /// Largest prompt and total length the deployment serves; sampled lengths are kept
    /// within them.
    max_prompt: u32,
    max_total: u32,
    /// Sampled lengths that were cut to the limits.
    pub clipped: u64,
}

impl Source {
    pub fn new(load: &Load, max_prompt: u32, max_total: u32) -> Self {
        Source {
            load: load.clone(),
            rng: Rng::new(load.seed),
            issued: 0,
            clock: 0.0,
            max_prompt,
            max_total,
            clipped: 0,
        }
    }

    /// Requests issued so far.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// Whether another request may be issued at time `t`.
    pub fn more(&self, t: f64) -> bool {
        self.load.requests.is_none_or(|n| self.issued < n)
            && self.load.duration_s.is_none_or(|d| t < d)
    }

    /// The next request's `(prompt, output)` and, in an open loop, its arrival time.
    /// `None` when the load is exhausted (for an open loop: the next arrival would fall
    /// after the duration).
    pub fn next(&mut self, now: f64) -> Option<(u32, u32, f64)> {
        if self.load.requests.is_some_and(|n| self.issued >= n) {
            return None;
        }
        let (prompt, output, arrival_s) = match &self.load.lengths {
            Lengths::Spread {
                input,
                output,
                input_stddev,
                output_stddev,
            } => {
                let mut draw = |mean: u32, sd: f64| {
                    if sd > 0.0 {
                        (mean as f64 + sd * self.rng.normal()).round().max(1.0) as u32
                    } else {
                        mean
                    }
                };
                (
                    draw(*input, *input_stddev),
                    draw(*output, *output_stddev),
                    None,
                )
            }
            Lengths::List(v) => {
                let e = v[(self.issued % v.len() as u64) as usize];
                (e.prompt, e.output, e.arrival_s)
            }
        };
        let mut p = prompt.min(self.max_prompt).max(1);
        let o = output.min(self.max_total.saturating_sub(p)).max(1);
        if p + o > self.max_total {
            p = self.max_total.saturating_sub(o).max(1);
        }
        if p != prompt || o != output {
            self.clipped += 1;
        }
        let arrival = match self.load.arrivals {
            Arrivals::Closed { .. } => now,
            Arrivals::Rate { rate, burstiness } => {
                let gap = self.rng.gamma(burstiness) / (burstiness * rate);
                self.clock += gap;
                self.clock
            }
            Arrivals::Trace => {
                // Lines without a time come right after the previous one.
                let t = arrival_s.unwrap_or(self.clock).max(self.clock);
                self.clock = t;
                t
            }
        };
        if !matches!(self.load.arrivals, Arrivals::Closed { .. })
            && self.load.duration_s.is_some_and(|d| arrival >= d)
        {
            return None;
        }
        self.issued += 1;
        Some((p, o, arrival))
    }
}

/// One line of a simulation workload file (`--workload FILE.jsonl`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadLine {
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    output_tokens: Option<u32>,
    #[serde(default)]
    max_new_tokens: Option<u32>,
    #[serde(default)]
    arrival_s: Option<f64>,
}

/// Parses a workload file: one JSON object per line with `prompt_tokens` (or `prompt`
/// text, counted by `count_tokens`) and `output_tokens` (or `max_new_tokens`), optionally
/// `arrival_s`. Errors name the file and line.
pub fn parse_workload(
    text: &str,
    file: &str,
    count_tokens: &mut dyn FnMut(&str) -> Result<u32>,
) -> Result<Vec<LengthEntry>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let expected = "expected {\"prompt_tokens\": 1500, \"output_tokens\": 250, \"arrival_s\": 0.5}";
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let w: WorkloadLine = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{file}:{n}: {e} ({expected})"))?;
        let output = w.output_tokens.or(w.max_new_tokens);
        let prompt = match (w.prompt_tokens, &w.prompt) {
            (Some(p), _) => Some(p),
            (None, Some(text)) if output.is_some() => {
                Some(count_tokens(text).map_err(|e| anyhow::anyhow!("{file}:{n}: {e:#}"))?)
            }
            _ => None,
        };
        let (Some(prompt), Some(output)) = (prompt, output) else {
            bail!(
                "{file}:{n}: no lengths: `prompt_tokens` (or `prompt` text) and `output_tokens` are required ({expected})"
            );
        };
        if prompt == 0 || output == 0 {
            bail!("{file}:{n}: the prompt and `output_tokens` must be at least 1 token");
        }
        if let Some(t) = w.arrival_s {
            if !(t >= 0.0 && t.is_finite()) {
                bail!("{file}:{n}: `arrival_s` must be a time ≥ 0 in seconds (got {t})");
            }
        }
        out.push(LengthEntry {
            prompt,
            output,
            arrival_s: w.arrival_s,
        });
    }
    if out.is_empty() {
        bail!("{file}: no requests ({expected}, one per line)");
    }
    Ok(out)
}

/// Reads a workload file; `prompt` texts are counted by `count_tokens`.
pub fn read_workload(
    path: &Path,
    count_tokens: &mut dyn FnMut(&str) -> Result<u32>,
) -> Result<Vec<LengthEntry>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read workload file {}", path.display()))?;
    parse_workload(&text, &path.display().to_string(), count_tokens)
}

/// The lengths of the successful requests of a `profiler run` samples file, at the
/// times they started.
pub fn read_samples(path: &Path) -> Result<Vec<LengthEntry>> {
    let file = crate::measure::samples::read_samples(path)?;
    let mut out: Vec<LengthEntry> = file
        .samples
        .iter()
        .filter(|s| s.is_ok() && s.prompt_tokens > 0 && s.output_tokens > 0)
        .map(|s| LengthEntry {
            prompt: s.prompt_tokens.min(u32::MAX as u64) as u32,
            output: s.output_tokens.min(u32::MAX as u64) as u32,
            arrival_s: Some(s.start_offset_ms / 1e3),
        })
        .collect();
    if out.is_empty() {
        bail!(
            "{}: no successful request with prompt and output tokens",
            path.display()
        );
    }
    // Lines are written as requests end; they arrived in the order of their start.
    out.sort_by(|a, b| {
        a.arrival_s
            .partial_cmp(&b.arrival_s)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_lines_need_lengths_and_errors_name_the_line() {
        let ok = "{\"prompt_tokens\": 10, \"output_tokens\": 5}\n{\"prompt_tokens\": 7, \"max_new_tokens\": 3, \"arrival_s\": 1.5}\n";
        let v = parse_workload(ok, "w.jsonl", &mut words).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].output, 3);
        assert_eq!(v[1].arrival_s, Some(1.5));
        let e = parse_workload(
            "{\"prompt_tokens\": 10, \"output_tokens\": 5}\n{\"arrival_s\": 1}\n",
            "w.jsonl",
            &mut words,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("w.jsonl:2: no lengths"), "{e}");
        // Text without an output length is not a request.
        let e = parse_workload("{\"prompt\": \"hi\"}\n", "w.jsonl", &mut words)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("w.jsonl:1:") && e.contains("output_tokens"),
            "{e}"
        );
    }

    /// A stand-in counter for the parser's own tests: one token per word.
    fn words(text: &str) -> Result<u32> {
        Ok(text.split_whitespace().count() as u32)
    }

    #[test]
    fn prompt_text_is_counted_and_a_counter_error_names_the_line() {
        let text = "{\"prompt\": \"one two three\", \"output_tokens\": 4}\n{\"prompt\": \"x\", \"prompt_tokens\": 9, \"output_tokens\": 1}\n";
        let v = parse_workload(text, "w.jsonl", &mut words).unwrap();
        assert_eq!((v[0].prompt, v[0].output), (3, 4));
        // An explicit count wins over the text.
        assert_eq!(v[1].prompt, 9);
        let mut none = |_: &str| -> Result<u32> { bail!("no tokenizer here") };
        let e = parse_workload(text, "w.jsonl", &mut none)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "w.jsonl:1: no tokenizer here");
        let e = parse_workload(
            "{\"prompt\": \"\", \"output_tokens\": 4}\n",
            "w.jsonl",
            &mut words,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("w.jsonl:1: the prompt"), "{e}");
    }

    #[test]
    fn bad_loads_are_refused() {
        let mut l = Load {
            arrivals: Arrivals::Rate {
                rate: 0.0,
                burstiness: 1.0,
            },
            lengths: Lengths::Spread {
                input: 10,
                output: 10,
                input_stddev: 0.0,
                output_stddev: 0.0,
            },
            requests: Some(10),
            duration_s: None,
            seed: 0,
        };
        assert!(l
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("rate must be"));
        l.arrivals = Arrivals::Closed { concurrency: 0 };
        assert!(l
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("concurrency must be"));
        l.arrivals = Arrivals::Closed { concurrency: 1 };
        l.lengths = Lengths::Spread {
            input: 10,
            output: 10,
            input_stddev: -1.0,
            output_stddev: 0.0,
        };
        assert!(l
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("input_len_stddev must be"));
    }

    #[test]
    fn poisson_arrivals_have_the_asked_rate() {
        let l = Load {
            arrivals: Arrivals::Rate {
                rate: 4.0,
                burstiness: 1.0,
            },
            lengths: Lengths::Spread {
                input: 10,
                output: 10,
                input_stddev: 0.0,
                output_stddev: 0.0,
            },
            requests: Some(100_000),
            duration_s: None,
            seed: 3,
        };
        let mut s = Source::new(&l, 100, 100);
        let mut last = 0.0;
        while let Some((_, _, t)) = s.next(0.0) {
            last = t;
        }
        let rate = 100_000.0 / last;
        assert!((rate - 4.0).abs() < 0.05, "{rate}");
    }
}
