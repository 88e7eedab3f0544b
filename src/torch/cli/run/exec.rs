//! `profiler run` itself: needs libtorch (the `torch` feature).

use super::RunArgs;
use crate::cli::Exit;
use crate::engine::Engine;
use crate::generate::Sampling;
use crate::measure::rfc3339::format_utc;
use crate::measure::samples::{RunEnd, SamplesWriter};
use crate::paths::Home;
use crate::report::{self, Environment, Report, Workload};
use crate::runner::{self, Corpus, PromptSource, RunObserver, RunPlan};
use crate::signals::StopFlags;
use crate::workload::{parse_duration, read_workload};
use anyhow::{bail, Context, Result};
use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime};
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

/// Progress on stderr: a bar on a terminal, a line every 5 s otherwise, nothing with -q.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    started: Instant,
    last_line: std::cell::Cell<Instant>,
    done: std::cell::Cell<u64>,
    tokens: std::cell::Cell<u64>,
    total: Option<u64>,
    duration: Option<Duration>,
}

impl Progress {
    fn new(quiet: bool, total: Option<u64>, duration: Option<Duration>) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (!quiet && terminal).then(|| {
            let b = match total {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new(duration.map(|d| d.as_secs()).unwrap_or(0)),
            };
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} {msg} (eta {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        let now = Instant::now();
        Progress {
            bar,
            plain: !quiet && !terminal,
            started: now,
            last_line: std::cell::Cell::new(now),
            done: Default::default(),
            tokens: Default::default(),
            total,
            duration,
        }
    }

    fn rate(&self) -> f64 {
        self.tokens.get() as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    fn update(&self) {
        if let Some(b) = &self.bar {
            if self.total.is_some() {
                b.set_position(self.done.get());
            } else {
                b.set_position(self.started.elapsed().as_secs());
            }
            b.set_message(format!(
                "requests {} | {:.1} tok/s",
                self.done.get(),
                self.rate()
            ));
        } else if self.plain && self.last_line.get().elapsed() >= Duration::from_secs(5) {
            self.last_line.set(Instant::now());
            let of = match (self.total, self.duration) {
                (Some(t), _) => format!("{}/{t} requests", self.done.get()),
                (None, Some(d)) => format!(
                    "{} requests, {:.0}/{:.0} s",
                    self.done.get(),
                    self.started.elapsed().as_secs_f64(),
                    d.as_secs_f64()
                ),
                _ => format!("{} requests", self.done.get()),
            };
            eprintln!(
                "progress: {of}, {:.1} tok/s, {:.0} s elapsed",
                self.rate(),
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Fans events out to the progress display and the metrics.
struct Observers<'a> {
    progress: &'a Progress,
    metrics: Option<&'a crate::metrics::Metrics>,
    live: Option<&'a crate::cli::run_projections::LiveProjections<'a>>,
}

impl RunObserver for Observers<'_> {
    fn tokens(&self, n: usize) {
        self.progress
            .tokens
            .set(self.progress.tokens.get() + n as u64);
        if let Some(m) = self.metrics {
            m.observe_tokens(n as u64);
        }
    }

    fn request(&self, s: &crate::measure::samples::RequestSample) {
        self.progress.done.set(self.progress.done.get() + 1);
        self.progress.update();
        if let Some(m) = self.metrics {
            m.observe_request(
                s.ttft_ms.map_or(f64::NAN, |t| t / 1e3),
                s.tpot_ms.map(|t| t / 1e3),
                s.e2e_ms / 1e3,
                s.prompt_tokens,
                s.output_tokens,
            );
        }
        if let Some(l) = self.live {
            l.observe(s.prompt_tokens, s.output_tokens);
        }
    }
}

pub fn run(a: RunArgs) -> Result<()> {
    let started = SystemTime::now();
    let (plan, workload) = plan(&a)?;
    // Outputs that cannot be created fail now, not after the run.
    if let Some(out) = &a.out {
        crate::paths::check_output_file("--out", out)?;
    }
    if let Some(samples) = &a.samples {
        crate::paths::check_new_samples_file("--samples", samples)?;
    }
    let home = Home::locate()?;
    let profiles = crate::cli::project::resolve_profiles(a.device.as_deref(), &home)?;
    let project_model = a
        .project_model
        .as_deref()
        .map(|m| {
            crate::model::card::find(&home.models_dir(), m)
                .with_context(|| format!("--project-model {m}"))
        })
        .transpose()?;
    let listener = a
        .metrics_addr
        .as_deref()
        .map(crate::server::bind)
        .transpose()?;
    let engine = Engine::load(&a.engine.options(), &home)?;
    let corpus = Corpus::load(&engine, &home.corpus())?;
    runner::check_fits(&engine, &plan, corpus.as_ref())?;
    let env = environment(&engine, started);

    let metrics = if listener.is_some() || a.pushgateway.is_some() {
        Some(crate::metrics::Metrics::new(
            &env.model,
            &env.run_on,
            crate::metrics::BuildInfo::of(&env),
        )?)
    } else {
        None
    };
    let registry = metrics.as_ref().map(|m| m.registry()).unwrap_or_default();
    let server = listener
        .map(|l| crate::server::serve(l, registry.clone()))
        .transpose()?;
    let pusher = a
        .pushgateway
        .as_deref()
        .map(|url| {
            crate::push::Pusher::start(
                url,
                registry.clone(),
                &env.model,
                &env.run_on,
                Duration::from_secs(a.push_interval),
            )
        })
        .transpose()?;

    let host_rates = (!a.no_host_check).then(|| {
        let mut r = crate::hostbench::measure(
            engine.device,
            engine.model.weights_mode().activation_kind(),
            engine.matmul_precision,
            1024,
            256 << 20,
        );
        r.steps = crate::hostbench::measure_steps(
            &engine,
            crate::hostbench::step_rows(a.batch),
            crate::hostbench::STEP_PROMPT_TOKENS,
            5,
        )
        .map_err(|e| format!("{e:#}"));
        r
    });

    let mut writer = a
        .samples
        .as_deref()
        .map(|p| SamplesWriter::create(p, &env, &workload))
        .transpose()?;
    let flags = StopFlags::install()?;
    let progress = Progress::new(a.quiet, plan.requests.map(|r| r as u64), plan.duration);
    let live = crate::cli::run_projections::LiveProjections::new(
        &engine,
        project_model.as_ref(),
        &profiles,
        a.projected_dtype(),
        u32::try_from(a.batch).unwrap_or(u32::MAX),
        metrics.as_ref(),
    )?;
    let obs = Observers {
        progress: &progress,
        metrics: metrics.as_ref(),
        live: live.as_ref(),
    };
    let result = runner::execute(
        &engine,
        &plan,
        corpus.as_ref(),
        &flags.stop,
        writer.as_mut(),
        &obs,
    );
    progress.finish();
    let result = result?;

    let end = RunEnd {
        peak_rss_bytes: crate::sysinfo::peak_rss_bytes(),
        cuda_peak_allocated_bytes: crate::measure::cuda_memory::peak_for(engine.device),
        interrupted: result.interrupted,
        warnings: result.warnings.clone(),
    };
    let mut report = Report::from_samples(
        env,
        workload,
        &result.samples,
        end.clone(),
        Vec::new(),
        None,
    );
    crate::cli::run_projections::attach_projections(
        &mut report,
        &engine,
        project_model.as_ref(),
        &profiles,
        a.projected_dtype(),
        host_rates,
        metrics.as_ref(),
    )?;
    if let Some(e) = &result.engine_error {
        report.warnings.push(format!(
            "the engine failed ({e}); the run stopped after {} requests",
            result.samples.len()
        ));
    }
    if let Some(e) = &result.samples_error {
        report.warnings.push(format!(
            "the samples file could not be written ({e}); the run stopped after {} requests",
            result.samples.len()
        ));
    } else if let Some(w) = writer {
        w.finish(&end)?;
    }
    let text = report::render(&report, a.format)?;
    let emitted = crate::cli::emit_report(&text, a.out.as_deref());
    if let Some(p) = pusher {
        p.finish();
    }
    if let Some(s) = server {
        s.shutdown();
    }
    emitted?;
    if let Some(e) = result.engine_error {
        bail!(
            "{e}: the run stopped after {} requests (the report above covers them)",
            result.samples.len()
        );
    }
    if let Some(e) = result.samples_error {
        bail!(
            "{e}: the run stopped after {} requests (the report above covers them)",
            result.samples.len()
        );
    }
    if result.interrupted {
        return Err(Exit(flags.exit_code()).into());
    }
    Ok(())
}
