//! `profiler accuracy` itself: needs libtorch (the `torch` feature).

use super::AccuracyArgs;
use crate::accuracy::{compare, summarize, PromptAccuracy, Summary};
use crate::engine::{Engine, MatmulPrecision};
use crate::output::Format;
use crate::paths::Home;
use anyhow::{bail, Result};
pub fn run(a: AccuracyArgs) -> Result<()> {
    let mut prompts = a.prompt.clone();
    if let Some(w) = &a.workload {
        prompts.extend(
            crate::workload::read_workload(w)?
                .into_iter()
                .map(|l| l.prompt),
        );
    }
    if prompts.is_empty() {
        bail!("no prompts: give --prompt TEXT (repeatable) or --workload FILE.jsonl");
    }
    if a.steps == 0 {
        bail!("--steps must be at least 1, got 0");
    }
    if !(a.margin >= 0.0 && a.margin.is_finite()) {
        bail!("--margin must be a number >= 0, got {}", a.margin);
    }
    let home = Home::locate()?;
    let mut ref_opts = a.engine.options();
    ref_opts.dtype = a.reference_dtype;
    // The reference is IEEE f32 whatever the candidate's products are.
    ref_opts.matmul_precision = MatmulPrecision::Highest;
    let reference = Engine::load(&ref_opts, &home)?;
    let candidate = Engine::load(&a.engine.options(), &home)?;
    let tok = reference.tokenizer()?;
    let window = reference.model.config().max_position_embeddings;
    let mut results = Vec::with_capacity(prompts.len());
    for p in &prompts {
        let ids: Vec<i64> = tok.encode(p)?.into_iter().map(i64::from).collect();
        if ids.len() + a.steps > window {
            bail!(
                "prompt of {} tokens plus --steps {} exceeds the context window of {window} tokens",
                ids.len(),
                a.steps
            );
        }
        results.push(compare(
            &reference.model,
            &candidate.model,
            p,
            &ids,
            a.steps,
        )?);
    }
    let summary = summarize(&results, a.margin);
    match a.format {
        Format::Json => {
            let v = serde_json::json!({
                "model": reference.info.name,
                "weights": reference.info.origin.as_str(),
                "reference_dtype": reference.dtype.run_name(),
                "candidate_dtype": candidate.dtype.run_name(),
                "candidate_activation_dtype": candidate.dtype.activation().run_name(),
                "candidate_matmul_precision": candidate.matmul_precision.as_str(),
                "summary": summary,
                "prompts": results,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        // The flag's parser admits table and json only.
        _ => print!(
            "{}",
            table(
                &results,
                &summary,
                reference.dtype.run_name(),
                &match candidate.matmul_precision {
                    MatmulPrecision::Highest => candidate.dtype.run_name().to_string(),
                    p => format!(
                        "{} (matmul precision {})",
                        candidate.dtype.run_name(),
                        p.as_str()
                    ),
                }
            )
        ),
    }
    Ok(())
}

fn table(results: &[PromptAccuracy], s: &Summary, reference: &str, candidate: &str) -> String {
    let mut out = format!(
        "{candidate} against {reference}, {} greedy steps per prompt (candidate teacher-forced on the reference's tokens)\n\n",
        s.steps / s.prompts.max(1)
    );
    out += &format!(
        "{:<40} {:>9} {:>14} {:>12} {:>14} {:>13}\n",
        "prompt", "argmax =", "disagree >=m", "free prefix", "mean |dlogit|", "max |dlogit|"
    );
    for r in results {
        let mut p: String = r.prompt.chars().take(38).collect();
        p = p.replace('\n', " ");
        let n = r.reference_tokens.len();
        out += &format!(
            "{:<40} {:>9} {:>14} {:>12} {:>14.4} {:>13.4}\n",
            p,
            format!("{}/{n}", r.agreeing_steps()),
            r.real_disagreements(s.margin),
            format!("{}/{n}", r.free_running_prefix()),
            r.mean_abs_diff.iter().sum::<f32>() / n.max(1) as f32,
            r.max_abs_diff.iter().fold(0f32, |a, b| a.max(*b)),
        );
    }
    out += &format!(
        "\nall: argmax equal at {}/{} steps; {} disagreement(s) where the reference's top-2 margin is >= {}; \
         {}/{} continuations identical; mean |dlogit| {:.4}, max {:.4}\n",
        s.agreeing_steps,
        s.steps,
        s.real_disagreements,
        s.margin,
        s.identical_continuations,
        s.prompts,
        s.mean_abs_logit_diff,
        s.max_abs_logit_diff
    );
    out
}
