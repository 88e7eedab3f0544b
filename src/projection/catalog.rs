//! `profiler devices` and `profiler models`: what is available, one line each.

use super::dates;
use super::export::held_out_text;
use super::profile::{self, CalibrationStatus, Profile};
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
    /// `fitted` with its fit, leave-one-source-out and leave-one-model-out errors, or
    /// `assumed`.
    pub calibration: String,
}

/// What `profiler devices` says of a profile's calibration.
fn calibration_text(p: &Profile) -> String {
    let c = &p.calibration;
    match (c.status, c.error) {
        (CalibrationStatus::Fitted, Some(e)) => {
            let held = |h: &Option<crate::projection::types::HeldOut>, what: &str| match h {
                Some(h) => held_out_text(h, what),
                None => "not recorded (re-run `profiler calibrate --write`)".to_string(),
            };
            format!(
                "fitted; MAPE fit TTFT {:.1}%, TPOT {:.1}% on {} points; leave-one-source-out {}; leave-one-model-out {}",
                e.ttft * 100.0,
                e.tpot * 100.0,
                e.points,
                held(&c.leave_one_source_out, "sources"),
                held(&c.leave_one_model_out, "models")
            )
        }
        _ => "assumed (no calibration points)".into(),
    }
}

/// One figure of a profile whose source or price date is older than asked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StaleFigure {
    pub profile: String,
    /// Dotted field path; instances are named, e.g. `instances[inf2.xlarge].on_demand`.
    pub field: String,
    /// The price's date, or the newest date its source mentions.
    pub date: String,
    pub age_days: i64,
    pub source: String,
}

/// Every sourced figure of the profiles in `dir` dated more than `max_age_days` before
/// day `today`: prices by their own date, other numbers by the newest date their source
/// mentions. Assumptions (`assume-` sources) carry no date and are not listed.
pub fn stale(dir: &Path, max_age_days: i64, today: i64) -> Result<Vec<StaleFigure>> {
    let mut out = Vec::new();
    for p in profile::load_all(dir)? {
        for (field, source) in &p.field_sources {
            let mut name = field.clone();
            let mut dated = dates::latest_date(source);
            if let Some(rest) = field.strip_prefix("instances[") {
                let (idx, tail) = rest.split_once(']').unwrap_or((rest, ""));
                if let Some(inst) = idx.parse::<usize>().ok().and_then(|i| p.instances.get(i)) {
                    name = format!("instances[{}]{tail}", inst.name);
                    let price = match tail {
                        ".on_demand" => inst.on_demand.as_ref(),
                        ".reserved" => inst.reserved.as_ref(),
                        ".capacity_block" => inst.capacity_block.as_ref(),
                        _ => None,
                    };
                    if let Some(pr) = price {
                        dated = dates::day_number(&pr.date).map(|d| (pr.date.clone(), d));
                    }
                }
            }
            if let Some((date, day)) = dated {
                if today - day > max_age_days {
                    out.push(StaleFigure {
                        profile: p.name.clone(),
                        field: name,
                        date,
                        age_days: today - day,
                        source: source.clone(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// `profiler devices --stale DAYS`: one line per stale figure, oldest first per profile.
pub fn stale_text(list: &[StaleFigure], max_age_days: i64, today: i64) -> String {
    let day = dates::civil_from_days(today);
    if list.is_empty() {
        return format!("No figure is dated more than {max_age_days} days before {day} (today).\n");
    }
    let mut sorted = list.to_vec();
    sorted.sort_by(|a, b| {
        (&a.profile, -a.age_days, &a.field).cmp(&(&b.profile, -b.age_days, &b.field))
    });
    let wp = sorted.iter().map(|s| s.profile.len()).max().unwrap_or(0);
    let wf = sorted.iter().map(|s| s.field.len()).max().unwrap_or(0);
    let mut s = format!(
        "{} figure(s) dated more than {max_age_days} days before {day} (today): profile, field, date, age in days, source\n",
        sorted.len()
    );
    for f in &sorted {
        s.push_str(&format!(
            "{:<wp$}  {:<wf$}  {:<10}  {:>5}  {}\n",
            f.profile, f.field, f.date, f.age_days, f.source
        ));
    }
    s
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
            calibration: calibration_text(&p),
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
    let _ = writeln!(o, "published dtype    {}", c.default_dtype.run_name());
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
