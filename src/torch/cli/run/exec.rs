//! `profiler run` itself: needs libtorch (the `torch` feature).

use super::progress::Progress;
use super::RunArgs;
use crate::engine::Engine;
use crate::generation::Sampling;
use crate::measure::rfc3339::format_utc;
use crate::measure::runner::{self, Corpus, PromptSource, RunPlan};
use crate::metrics::BuildInfo;
use crate::model::card::ModelCard;
use crate::paths::Home;
use crate::projection::profile::Profile;
use crate::report::{self, Environment, Workload};
use crate::run::{RunSpec, Targets};
use crate::server;
use crate::session::{Session, SessionOptions};
use crate::workload::{parse_duration, read_workload};
use anyhow::{bail, Context, Result};
use std::time::{Duration, SystemTime};
/// The checks that need no model: done first so bad input fails fast.
fn plan(a: &RunArgs) -> Result<(RunPlan, Workload)> {
    if a.batch == 0 {
        bail!("--batch must be at least 1, got 0");
    }
    if a.output_len == Some(0) || a.max_new_tokens == Some(0) {
        bail!("--output-len and --max-new-tokens must be at least 1");
    }
    if a.input_len == Some(0) {
        bail!("--input-len must be at least 1");
    }
    if a.requests == Some(0) {
        bail!("--requests must be at least 1");
    }
    if a.push_interval == 0 {
        bail!("--push-interval must be at least 1 (seconds)");
    }
    if !(a.temperature >= 0.0 && a.temperature.is_finite()) {
        bail!("--temperature must be a number >= 0, got {}", a.temperature);
    }
    if !(a.top_p > 0.0 && a.top_p <= 1.0) {
        bail!("--top-p must be in (0, 1], got {}", a.top_p);
    }
    let duration = a
        .duration
        .as_deref()
        .map(|d| parse_duration(d).with_context(|| format!("--duration {d}")))
        .transpose()?;
    let (source, desc) = if let Some(p) = &a.prompt {
        (PromptSource::Text(p.clone()), "--prompt".to_string())
    } else if let Some(w) = &a.workload {
        (
            PromptSource::Lines(read_workload(w)?),
            format!("workload file {}", w.display()),
        )
    } else {
        let n = a.input_len.unwrap_or(128);
        (
            PromptSource::InputLen(n),
            format!("{n} tokens cut from models/corpus.txt"),
        )
    };
    let output_len = match (a.output_len, a.max_new_tokens) {
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) if matches!(source, PromptSource::Lines(_)) => None,
        (None, None) => Some(64),
    };
    let max_new = a.max_new_tokens.unwrap_or(64);
    let requests = match (a.requests, duration) {
        (Some(r), _) => Some(r),
        (None, Some(_)) => None,
        (None, None) => Some(10),
    };
    let plan = RunPlan {
        source,
        chat: a.chat,
        output_len,
        max_new_tokens: max_new,
        batch: a.batch,
        requests,
        duration,
        warmup: a.warmup,
        sampling: Sampling {
            temperature: a.temperature,
            top_p: a.top_p,
            seed: a.engine.seed,
        },
    };
    let workload = Workload {
        prompt_source: desc,
        input_len: match plan.source {
            PromptSource::InputLen(n) => Some(n as u32),
            _ => None,
        },
        output_len: output_len.unwrap_or(max_new) as u32,
        batch: a.batch as u32,
        requests: requests.map(|r| r as u64),
        duration_s: duration.map(|d| d.as_secs_f64()),
        warmup: a.warmup as u32,
        seed: a.engine.seed,
        ignore_eos: output_len.is_some(),
    };
    Ok((plan, workload))
}

pub(crate) fn environment(engine: &Engine, started: SystemTime) -> Environment {
    Environment {
        cpu_model: crate::sysinfo::cpu_model(),
        cores: crate::sysinfo::cores() as u32,
        threads: engine.threads as u32,
        run_on: match engine.device {
            tch::Device::Cpu => "cpu".into(),
            _ => "cuda".into(),
        },
        device_name: crate::engine::device_name(engine.device),
        dtype: engine.dtype.activation().run_name().into(),
        weights_dtype: engine.dtype.run_name().into(),
        matmul_precision: Some(engine.matmul_precision.as_str().into()),
        kernels: Some(crate::model::mkl::describe(
            engine.model.uses_fused_decode(),
        )),
        tch_version: crate::TCH_VERSION.into(),
        torch_version: crate::TORCH_VERSION.into(),
        profiler_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: option_env!("PROFILER_GIT_COMMIT").map(str::to_string),
        model: engine.info.name.clone(),
        weights_kind: engine.info.origin.as_str().into(),
        weights_sha256: engine.info.sha256.clone(),
        weights_bytes: Some(engine.model.linear_weight_bytes() as u64),
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        started_at: format_utc(started),
    }
}

/// The checks of the outputs and projection targets, before the model loads: the files
/// that cannot be created, the profiles (`--device`) and `--project-model`.
fn before_load(a: &RunArgs, home: &Home) -> Result<(Vec<Profile>, Option<ModelCard>)> {
    if let Some(out) = &a.out {
        crate::paths::check_output_file("--out", out)?;
    }
    if let Some(samples) = &a.samples {
        crate::paths::check_new_samples_file("--samples", samples)?;
    }
    let profiles = crate::cli::project::resolve_profiles(a.device.as_deref(), home)?;
    let project_model = a
        .project_model
        .as_deref()
        .map(|m| {
            crate::model::card::find(&home.models_dir(), m)
                .with_context(|| format!("--project-model {m}"))
        })
        .transpose()?;
    Ok((profiles, project_model))
}

/// `profiler run`: loads the model, starts the run's telemetry, measures, prints the report.
pub fn run(a: RunArgs) -> Result<()> {
    let started = SystemTime::now();
    let (plan, workload) = plan(&a)?;
    let home = Home::locate()?;
    let (profiles, project_model) = before_load(&a, &home)?;
    let listener = a.metrics_addr.as_deref().map(server::bind).transpose()?;
    let engine = Engine::load(&a.engine.options(), &home)?;
    let corpus = Corpus::load(engine.tokenizer.as_ref(), &home.corpus())?;
    runner::check_fits(&engine.inference(), &plan, corpus.as_ref())?;
    let env = environment(&engine, started);
    let targets = Targets {
        profiles,
        model: project_model,
        dtype: a.projected_dtype(),
    };
    let session = Session::start(SessionOptions {
        listener,
        pushgateway: a.pushgateway.as_deref(),
        push_interval: Duration::from_secs(a.push_interval),
        model: &env.model,
        run_on: &env.run_on,
        build: BuildInfo::of(&env),
        live: Some(targets.live(&engine, a.batch)),
    })?;
    let host = (!a.no_host_check).then(|| crate::run::host_rates(&engine, a.batch));
    let progress = Progress::new(a.quiet, plan.requests.map(|r| r as u64), plan.duration);
    let spec = RunSpec {
        plan: &plan,
        corpus: corpus.as_ref(),
        environment: env,
        workload,
        samples: a.samples.as_deref(),
        targets: &targets,
        host,
    };
    let outcome = crate::run::measure(&engine, spec, &session, &progress);
    progress.finish();
    let outcome = outcome?;
    let text = report::render(&outcome.report, a.format)?;
    let emitted = crate::cli::emit_report(&text, a.out.as_deref());
    session.finish();
    emitted?;
    outcome.status()
}
