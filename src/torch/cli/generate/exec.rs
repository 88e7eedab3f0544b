//! `profiler generate` itself: needs libtorch (the `torch` feature).

use super::GenerateArgs;
use crate::engine::Engine;
use crate::generate::{generate, GenerateOptions, Sampling};
use crate::output::Format;
use crate::paths::Home;
use anyhow::{bail, Result};
pub fn run(a: GenerateArgs) -> Result<()> {
    if !(a.temperature >= 0.0 && a.temperature.is_finite()) {
        bail!("--temperature must be a number >= 0, got {}", a.temperature);
    }
    if !(a.top_p > 0.0 && a.top_p <= 1.0) {
        bail!("--top-p must be in (0, 1], got {}", a.top_p);
    }
    let home = Home::locate()?;
    let engine = Engine::load(&a.engine.options(), &home)?;
    let tok = engine.tokenizer()?;
    let text = if a.chat {
        tok.apply_chat_template(&a.prompt)?
    } else {
        a.prompt.clone()
    };
    let ids = tok.encode(&text)?;
    let window = engine.model.config().max_position_embeddings;
    if a.max_new_tokens == 0 {
        bail!("--max-new-tokens must be at least 1");
    }
    if ids.len() + a.max_new_tokens > window {
        bail!(
            "prompt of {} tokens plus --max-new-tokens {} exceeds the context window of {window} tokens",
            ids.len(),
            a.max_new_tokens
        );
    }
    let mut cache = engine.model.new_cache(1, ids.len() + a.max_new_tokens)?;
    let opts = GenerateOptions {
        max_new_tokens: a.max_new_tokens,
        eos_ids: tok.eos_ids().to_vec(),
        ignore_eos: a.ignore_eos,
        sampling: Sampling {
            temperature: a.temperature,
            top_p: a.top_p,
            seed: a.engine.seed,
        },
    };
    let g = generate(
        &engine.model,
        &mut cache,
        std::slice::from_ref(&ids),
        &opts,
        None,
        |_| {},
    )?;
    let out = &g.tokens[0];
    let continuation = tok.decode(out)?;
    match a.format {
        // The flag's parser admits text (table) and json only.
        Format::Table | Format::Csv | Format::Markdown => {
            if engine.info.origin == crate::model::load::WeightsOrigin::Synthetic {
                eprintln!("note: synthetic weights: the text is meaningless");
            }
            crate::cli::write_out(format!("{continuation}\n").as_bytes())?;
        }
        Format::Json => {
            let v = serde_json::json!({
                "model": engine.info.name,
                "weights": engine.info.origin.as_str(),
                "prompt_tokens": ids,
                "generated_tokens": out,
                "text": continuation,
            });
            crate::cli::write_out(format!("{}\n", serde_json::to_string(&v)?).as_bytes())?;
        }
    }
    Ok(())
}
