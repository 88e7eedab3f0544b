//! `profiler serve` and `profiler export-tokenizer` themselves: they need the engine.

use super::{ExportTokenizerArgs, ServeArgs};
use crate::batching::{Batcher, SlotOptions};
use crate::engine::Engine;
use crate::jobs::{self, Load};
use crate::measure::samples::{RunEnd, SamplesWriter};
use crate::paths::Home;
use crate::report::{self, Report, Workload};
use crate::serve::{self, ServeState};
use crate::signals::StopFlags;
use anyhow::{bail, Context, Result};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Every name a request may give for the model: the card's name and aliases, the name the
/// weights report, and `--model` as given.
fn model_names(engine: &Engine, given: &str) -> (String, Vec<String>) {
    let info = &engine.info;
    let mut names = vec![info.name.clone()];
    if let Some(c) = &info.card {
        names.push(c.name.clone());
        names.extend(c.aliases.iter().cloned());
    }
    names.push(given.to_string());
    names.dedup();
    let mut seen = Vec::new();
    for n in names {
        if !seen.contains(&n) {
            seen.push(n);
        }
    }
    (info.name.clone(), seen)
}

pub fn run(a: ServeArgs) -> Result<()> {
    let started = SystemTime::now();
    if a.max_num_seqs == 0 {
        bail!("--max-num-seqs must be at least 1, got 0");
    }
    if a.max_queue == 0 {
        bail!("--max-queue must be at least 1, got 0");
    }
    if a.seq_len < 2 {
        bail!("--seq-len must be at least 2, got {}", a.seq_len);
    }
    if let Some(samples) = &a.samples {
        crate::paths::check_new_samples_file("--samples", samples)?;
    }
    let home = Home::locate()?;
    let listener = serve::bind(&a.addr)?;
    let addr = listener.local_addr().context("--addr: no local address")?;
    let engine = Engine::load(&a.engine.options(), &home)?;
    let tokenizer = Arc::new(engine.tokenizer()?.clone());
    let env = crate::cli::run::environment(&engine, started);
    let workload = Workload {
        prompt_source: format!("HTTP requests to profiler serve on {addr}"),
        input_len: None,
        output_len: serve::DEFAULT_COMPLETION_TOKENS as u32,
        batch: a.max_num_seqs as u32,
        requests: None,
        duration_s: None,
        warmup: 0,
        seed: a.engine.seed,
        ignore_eos: false,
    };
    let metrics =
        crate::metrics::Metrics::new(&env.model, &env.run_on, crate::metrics::BuildInfo::of(&env))?;
    let registry = metrics.registry();
    let mut writer = a
        .samples
        .as_deref()
        .map(|p| SamplesWriter::create(p, &env, &workload))
        .transpose()?;
    let load = Arc::new(Load::default());
    let (submitter, rx) = jobs::queue(a.max_queue, load.clone());
    let (name, names) = model_names(&engine, &a.engine.model);
    let state = Arc::new(ServeState::new(
        name.clone(),
        names,
        tokenizer,
        a.seq_len,
        a.max_num_seqs,
        submitter,
        registry,
    )?);
    let batcher = Batcher::new(
        &engine,
        SlotOptions {
            max_num_seqs: a.max_num_seqs,
            seq_len: a.seq_len,
        },
        &load,
        writer.as_mut(),
        Some(&metrics),
    )?;
    let flags = StopFlags::install()?;

    // HTTP on a tokio runtime of its own thread; inference stays on this one.
    let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
    let http = std::thread::Builder::new()
        .name("serve-http".into())
        .spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the HTTP runtime")?;
            let r = rt.block_on(async move {
                let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
                let server = tokio::spawn(serve::serve_http(listener, state, async move {
                    let _ = drain_rx.await;
                }));
                let _ = stopped.await;
                let _ = drain_tx.send(());
                // Connections still open after this long are cut.
                match tokio::time::timeout(Duration::from_secs(3), server).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => Err(anyhow::anyhow!("the HTTP server failed: {e}")),
                    Err(_) => Ok(()),
                }
            });
            rt.shutdown_background();
            r
        })
        .context("cannot start the HTTP thread")?;
    if !a.quiet {
        eprintln!(
            "serving {name} on http://{addr}/v1 ({} slots x {} positions, queue {}, {} weights on {}); Ctrl-C stops",
            a.max_num_seqs,
            a.seq_len,
            a.max_queue,
            engine.dtype.run_name(),
            env.run_on
        );
    }
    let t0 = Instant::now();
    let served = batcher.run(&rx, &flags.stop);
    drop(rx);
    let _ = stop_http.send(());
    let http = http
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the HTTP thread panicked")));
    let served = served?;
    let end = RunEnd {
        peak_rss_bytes: crate::sysinfo::peak_rss_bytes(),
        cuda_peak_allocated_bytes: crate::measure::cuda_memory::peak_for(engine.device),
        interrupted: flags.stopped(),
        warnings: Vec::new(),
    };
    if let Some(w) = writer {
        if served.samples_error.is_none() {
            w.finish(&end)?;
        }
    }
    let ok = served.samples.iter().filter(|s| s.is_ok()).count();
    eprintln!(
        "served {} requests ({ok} ok, {} failed) in {:.1} s; {} decode steps, at most {} slots busy",
        served.samples.len(),
        served.samples.len() - ok,
        t0.elapsed().as_secs_f64(),
        served.steps,
        served.peak_busy
    );
    let report = Report::from_samples(env, workload, &served.samples, end, Vec::new(), None);
    let text = report::render(&report, a.format)?;
    crate::cli::write_out(text.as_bytes())?;
    http?;
    if let Some(e) = served.samples_error {
        bail!("the samples file could not be written: {e}");
    }
    Ok(())
}

/// `profiler export-tokenizer`: the model's tokenizer as a Hugging Face folder.
pub fn export_tokenizer(a: ExportTokenizerArgs) -> Result<()> {
    let home = Home::locate()?;
    let r = crate::model::load::resolve(&a.model, &home)?;
    // Weights are not taken: nothing is read but the tokenizer.
    let to = (
        crate::model::llama::WeightsMode::Dense(tch::Kind::BFloat16),
        tch::Device::Cpu,
    );
    let w = crate::model::load::load(&r, &home, 0, to)?;
    let Some(tok) = w.tokenizer else {
        bail!("--model {}: synthetic weights have no tokenizer", a.model);
    };
    tok.write_hf_dir(&a.out)?;
    eprintln!("wrote {}", a.out.join("tokenizer.json").display());
    Ok(())
}
