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
