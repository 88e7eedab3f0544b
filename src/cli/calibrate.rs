//! `profiler calibrate`: a profile refitted on its points file (`--points`), or a new
//! profile fitted on benchmark result files (`--from`).

use super::names::Names;
use super::project::{format, CompileArgs};
use super::simulate::host_from_report;
use super::write_out;
use crate::calibration::{self, export as from_export, fit::Flags, profile_out};
use crate::output::Format;
use crate::paths::Home;
use crate::projection::export;
use crate::projection::neuron_config as nconf;
use crate::projection::profile;
use crate::projection::{self as proj, WeightsDtype};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// The profile to fit; with --from, the base profile (its specs, prices and the
    /// parameters not fitted), or `host` with --host-check.
    #[arg(long)]
    device: String,
    /// Measured points (CSV); default: the profile's own calibration points.
    #[arg(long, conflicts_with = "from")]
    points: Option<PathBuf>,
    /// Write the fitted parameters back into the profile file.
    #[arg(long, conflicts_with = "from")]
    write: bool,
    /// Benchmark result files to fit on, detected by content: `vllm bench serve
    /// --save-result` JSON, GuideLLM's report, AIPerf / GenAI-Perf profile exports,
    /// LLMPerf's summary, NxD Inference's benchmark_report.json, this tool's run report or
    /// samples file.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    from: Vec<PathBuf>,
    /// Model card the files measured (default: the model each file names).
    #[arg(long)]
    model: Option<String>,
    /// Instance type the files were measured on (where a file does not say).
    #[arg(long)]
    instance: Option<String>,
    /// Tensor-parallel degree of one replica (where a file does not say).
    #[arg(long)]
    tp: Option<u32>,
    #[command(flatten)]
    compile: CompileArgs,
    /// Weights dtype the files were measured with (where a file does not say).
    #[arg(long, value_parser = WeightsDtype::parse_flag)]
    weights_dtype: Option<WeightsDtype>,
    /// A Neuron-compiled model's configuration (see `project --neuron-config`): sets --tp,
    /// --max-num-seqs, --ctx-batch-size, --seq-len, --buckets and --weights-dtype (flags
    /// given win).
    #[arg(long, requires = "from")]
    neuron_config: Option<PathBuf>,
    /// Prompt tokens, for a file that does not state them (NxD Inference's benchmark
    /// report; default with --neuron-config: its max_context_length).
    #[arg(long, requires = "from")]
    input_len: Option<u32>,
    /// Output tokens, for a file that does not state them (default with --neuron-config:
    /// its seq_len − max_context_length, as `inference_demo --benchmark` generates).
    #[arg(long, requires = "from")]
    output_len: Option<u32>,
    /// GPU and host: the server ran whole prompts in steps of their own (no chunked
    /// prefill; `profiler serve` does so).
    #[arg(long, requires = "from")]
    no_chunked_prefill: bool,
    /// GPU: token budget of one step (default: vLLM's for the chip).
    #[arg(long, requires = "from")]
    max_num_batched_tokens: Option<u32>,
    /// Parameters to fit, comma-separated (default: those the measurements can tell
    /// apart, at most one per measurement; the output says which and why).
    #[arg(long, value_delimiter = ',', requires = "from")]
    fit: Option<Vec<String>>,
    /// With `--device host`: the `run --format json` report whose host self-check makes
    /// this machine's profile.
    #[arg(long, requires = "from")]
    host_check: Option<PathBuf>,
    /// Write the fitted profile to this .toml file (its name is the file stem); `--device
    /// FILE.toml` then projects with it.
    #[arg(long, requires = "from", value_name = "OUT.toml")]
    write_profile: Option<PathBuf>,
    #[arg(long, default_value = "table", value_parser = format)]
    format: Format,
}

pub fn calibrate(a: CalibrateArgs) -> Result<()> {
    let home = Home::locate()?;
    if !a.from.is_empty() {
        return calibrate_from(a, &home);
    }
    for (flag, given) in [
        ("--model", a.model.is_some()),
        ("--instance", a.instance.is_some()),
        ("--tp", a.tp.is_some()),
        ("--weights-dtype", a.weights_dtype.is_some()),
        ("--seq-len", a.compile.seq_len.is_some()),
        ("--max-num-seqs", a.compile.max_num_seqs.is_some()),
        ("--ctx-batch-size", a.compile.ctx_batch_size.is_some()),
        ("--buckets", a.compile.buckets.is_some()),
        ("--dp", a.compile.dp != 1),
    ] {
        if given {
            bail!("{flag} describes the runs of --from files; a --points file states its own");
        }
    }
    let r = calibration::points::calibrate(
        &home.profiles_dir(),
        &home.models_dir(),
        &a.device,
        a.points.as_deref(),
    )?;
    write_out(&export::calibration(a.format, &r))?;
    if a.write {
        proj::write_profile(&r.profile_path, &r)?;
        eprintln!(
            "wrote the fitted parameters to {}",
            r.profile_path.display()
        );
    }
    Ok(())
}

fn calibrate_from(a: CalibrateArgs, home: &Home) -> Result<()> {
    let base = match (a.device.as_str(), &a.host_check) {
        ("host", Some(report)) => host_from_report(report)?,
        ("host", None) => bail!(
            "--device host needs --host-check REPORT.json (a `profiler run --format json` report with its host self-check)"
        ),
        (d, Some(_)) => bail!("--host-check goes with --device host, not --device {d}"),
        (d, None) => profile::load(&home.profiles_dir(), d)?,
    };
    let out_name = a
        .write_profile
        .as_deref()
        .map(profile_out::name_of)
        .transpose()?;
    if let Some(out) = &a.write_profile {
        crate::paths::check_output_file("--write-profile", out)?;
    }
    let nc = nconf::read_opt(a.neuron_config.as_deref())?;
    let explicit = a.compile.explicit(a.tp, None, a.weights_dtype);
    let mut s = nconf::settings(nc.as_ref(), &explicit, false);
    if nc.is_some() {
        nconf::hold(
            vec![base.clone()],
            &mut s,
            a.compile.dp,
            a.instance.as_deref(),
        )?;
    }
    let card = match (&a.model, &nc) {
        (None, None) => None,
        (m, c) => Some(nconf::model_card(
            &home.models_dir(),
            m.as_deref(),
            c.as_ref(),
        )?),
    };
    let flags = Flags {
        card,
        instance: a.instance.clone(),
        tp: s.tp,
        dp: a.compile.dp,
        max_num_seqs: s.max_num_seqs,
        seq_len: s.seq_len,
        ctx_batch_size: s.ctx_batch_size,
        buckets: s.buckets.clone(),
        weights_dtype: s.weights_dtype,
        no_chunked_prefill: a.no_chunked_prefill,
        max_num_batched_tokens: a.max_num_batched_tokens,
        input_len: a.input_len.or(nc.as_ref().map(|c| c.max_context_length)),
        output_len: a.output_len.or(nc
            .as_ref()
            .map(|c| c.seq_len.saturating_sub(c.max_context_length))
            .filter(|&n| n > 0)),
    };
    let (report, resolved) =
        calibration::from_files(&base, &home.models_dir(), &a.from, &flags, a.fit.as_deref())
            .map_err(|e| Names::with_file(s.report.as_ref()).error(e))?;
    let written = match (&a.write_profile, &out_name) {
        (Some(out), Some(name)) => {
            let base_text = std::fs::read_to_string(&base.path).with_context(|| {
                format!(
                    "--write-profile needs the base profile's file: {} cannot be read{}",
                    base.path.display(),
                    if a.device == "host" {
                        " (the host profile is made at run time and has none: fit a shipped profile)"
                    } else {
                        ""
                    }
                )
            })?;
            let today = proj::dates::civil_from_days(proj::dates::today());
            let text =
                profile_out::profile_text(&base_text, &base, name, &report, &resolved, &today)?;
            std::fs::write(out, text)
                .with_context(|| format!("cannot write --write-profile {}", out.display()))?;
            Some(out.display().to_string())
        }
        _ => None,
    };
    write_out(&nconf::attach(
        s.report.as_ref(),
        a.format,
        from_export::render(a.format, &report, written.as_deref()),
    ))
}
