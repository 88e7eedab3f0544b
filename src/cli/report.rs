//! `profiler report --samples FILE`: rebuilds a run's report from its samples file.

use crate::measure::samples::read_samples;
use crate::output::Format;
use crate::report::{self, Report};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Samples file written by `profiler run --samples`.
    #[arg(long)]
    samples: PathBuf,
    #[arg(long, default_value = "table")]
    format: Format,
    /// Also write the report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: ReportArgs) -> Result<()> {
    if let Some(out) = &a.out {
        crate::paths::check_output_file("--out", out)?;
    }
    let file = read_samples(&a.samples)?;
    for w in &file.warnings {
        eprintln!("warning: {w}");
    }
    let report = Report::from_samples_file(file, Vec::new());
    let text = report::render(&report, a.format)?;
    super::emit_report(&text, a.out.as_deref())
}
