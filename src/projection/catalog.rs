//! `profiler devices` and `profiler models`: what is available, one line each.

use super::profile::{self, CalibrationStatus};
use crate::model::card;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;

/// One profile, for `profiler devices`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileSummary {
    pub name: String,
    pub description: String,
    pub instances: Vec<String>,
    /// `fitted (TTFT x%, TPOT y% on n points)` or `assumed`.
    pub calibration: String,
}

/// One model card, for `profiler models`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    pub name: String,
    pub description: String,
    pub parameters: u64,
    pub aliases: Vec<String>,
}

/// Every profile in `dir`, sorted by name.
pub fn devices(dir: &Path) -> Result<Vec<ProfileSummary>> {
    Ok(profile::load_all(dir)?
        .into_iter()
        .map(|p| ProfileSummary {
            calibration: match (p.calibration.status, p.calibration.error) {
                (CalibrationStatus::Fitted, Some(e)) => format!(
                    "fitted (MAPE TTFT {:.1}%, TPOT {:.1}% on {} points)",
                    e.ttft * 100.0,
                    e.tpot * 100.0,
                    e.points
                ),
                _ => "assumed (no calibration points)".into(),
            },
            instances: p.instances.iter().map(|i| i.name.clone()).collect(),
            name: p.name,
            description: p.description,
        })
        .collect())
}

/// Every model card in `dir`, sorted by name.
pub fn models(dir: &Path) -> Result<Vec<ModelSummary>> {
    Ok(card::load_all(dir)?
        .into_iter()
        .map(|c| ModelSummary {
            parameters: c.architecture.parameter_count(),
            name: c.name,
            description: c.description,
            aliases: c.aliases,
        })
        .collect())
}

/// One line per profile: name, description, instances, calibration.
pub fn devices_text(list: &[ProfileSummary]) -> String {
    let w = list.iter().map(|p| p.name.len()).max().unwrap_or(0);
    list.iter()
        .map(|p| {
            format!(
                "{:<w$}  {} [{}; {}]\n",
                p.name,
                p.description,
                p.instances.join(", "),
                p.calibration
            )
        })
        .collect()
}

/// What `profiler models --show` prints: the architecture as read (core, experts,
/// attention variants, quantisation) and the parameter counts derived from it.
pub fn show_text(c: &card::ModelCard, notes: &[String]) -> String {
    use std::fmt::Write;
    let a = &c.architecture;
    let mut o = String::new();
    let b = |n: u64| format!("{:.2} B ({n})", n as f64 / 1e9);
    let _ = writeln!(o, "model              {}", c.name);
    let _ = writeln!(o, "description        {}", c.description);
    let _ = writeln!(o, "source             {}", c.source);
    let _ = writeln!(o, "published dtype    {}", c.default_dtype);
    let _ = writeln!(o, "layers             {}", a.num_hidden_layers);
    let _ = writeln!(o, "hidden size        {}", a.hidden_size);
    let _ = writeln!(
        o,
        "attention heads    {} query, {} KV, head dim {}",
        a.num_attention_heads,
        a.num_key_value_heads,
        a.head_dim()
    );
    let _ = writeln!(o, "vocabulary         {}", a.vocab_size);
    let _ = writeln!(o, "tied embeddings    {}", a.tie_word_embeddings);
    let _ = writeln!(o, "max positions      {}", a.max_position_embeddings);
    let dense_layers = a.num_hidden_layers - a.moe_layers();
    if dense_layers > 0 {
        let _ = writeln!(
            o,
            "dense MLP          {} layers of intermediate size {}",
            dense_layers, a.intermediate_size
        );
    }
    if let Some(e) = &a.experts {
        let _ = writeln!(
            o,
            "experts            {} MoE layers: {} routed experts of intermediate size {}, {} per token; {} shared",
            a.moe_layers(),
            e.count,
            e.intermediate_size,
            e.per_token,
            e.shared
        );
    }
    let at = &a.attention;
    let windowed = a.windowed_layers();
    if windowed > 0 {
        let kinds: Vec<String> = at
            .layer_pattern
            .iter()
            .map(|k| format!("{k:?}").to_lowercase())
            .collect();
        let _ = writeln!(
            o,
            "windowed layers    {windowed} of {} attend to {} tokens (pattern {})",
            a.num_hidden_layers,
            at.window.unwrap_or(0),
            kinds.join(", ")
        );
    }
    let mut extras = Vec::new();
    for (on, what) in [
        (at.qkv_bias, "q/k/v bias"),
        (at.o_bias, "output bias"),
        (at.qk_norm, "q/k norms"),
        (at.sinks, "attention sinks"),
    ] {
        if on {
            extras.push(what.to_string());
        }
    }
    if at.norms_per_layer != 2 {
        extras.push(format!("{} norms per layer", at.norms_per_layer));
    }
    if !extras.is_empty() {
        let _ = writeln!(o, "attention extras   {}", extras.join(", "));
    }
    if let Some(q) = &a.quantization {
        let _ = writeln!(
            o,
            "quantization       {} ({} bits per weight) on the {}",
            q.method,
            q.bits_per_weight,
            match q.scope {
                crate::model::architecture::QuantScope::Experts => "routed experts",
                crate::model::architecture::QuantScope::Layers => "decoder layers",
            }
        );
    }
    let _ = writeln!(o, "parameters total   {}", b(a.parameter_count()));
    let _ = writeln!(o, "parameters active  {}", b(a.active_parameter_count()));
    for n in notes {
        let _ = writeln!(o, "note               {n}");
    }
    o
}

/// One line per model: name, parameters, description.
pub fn models_text(list: &[ModelSummary]) -> String {
    let w = list.iter().map(|m| m.name.len()).max().unwrap_or(0);
    list.iter()
        .map(|m| {
            let aliases = if m.aliases.is_empty() {
                String::new()
            } else {
                format!(" (also: {})", m.aliases.join(", "))
            };
            format!(
                "{:<w$}  {:>7.2} B  {}{aliases}\n",
                m.name,
                m.parameters as f64 / 1e9,
                m.description
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn lists_profiles_with_calibration() {
        let d = devices(&root().join("profiles")).unwrap();
        let inf2 = d.iter().find(|p| p.name == "inf2-profile").unwrap();
        assert!(
            inf2.calibration.starts_with("fitted"),
            "{}",
            inf2.calibration
        );
        assert!(inf2.instances.contains(&"inf2.48xlarge".to_string()));
        let t = devices_text(&d);
        assert_eq!(t.lines().count(), d.len());
    }

    #[test]
    fn lists_models_with_parameter_counts() {
        let m = models(&root().join("models")).unwrap();
        let l405 = m.iter().find(|x| x.name == "llama-3.1-405b").unwrap();
        assert!(
            (l405.parameters as f64 / 405.85e9 - 1.0).abs() < 0.005,
            "{}",
            l405.parameters
        );
        let t = models_text(&m);
        assert!(t.contains("llama-3.2-1b") && t.contains("1.24 B"), "{t}");
        // The default model's card lists the alias that `--model llama` uses.
        let line = t.lines().find(|l| l.starts_with("smollm2-135m")).unwrap();
        assert!(line.ends_with("(also: llama, smollm2)"), "{line}");
    }
}
