//! Calibration from users' own measurements: result files of the benchmark tools people
//! already run ([`import`]) become calibration points, static runs projected through
//! [`crate::projection::latency`] and serving runs replayed through [`crate::simulation`]
//! ([`fit`]); the base profile's parameters are fitted on them ([`fit::calibrate_from`])
//! and written out as a new profile ([`profile_out`]), reported by [`export`]. A shipped
//! profile's points CSV with serving rows is fitted the same way ([`points`]).
//!
//! Sits above both the projection and the simulation (it needs the two), so neither
//! depends on it.

pub mod export;
pub mod fit;
pub mod import;
pub mod points;
pub mod profile_out;

use crate::model::card::{self, ModelCard};
use crate::projection::profile::Profile;
use anyhow::{Context, Result};
use fit::{FileProvenance, Flags, FromReport, Resolved};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// sha256 of `bytes`, hex.
fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Reads every file, resolves each measurement against `profile` with `flags` (the model
/// cards from `models_dir`), and fits: `profiler calibrate --from`.
pub fn from_files(
    profile: &Profile,
    models_dir: &Path,
    files: &[PathBuf],
    flags: &Flags,
    fit_names: Option<&[String]>,
) -> Result<(FromReport, Vec<Resolved>)> {
    let find = |name: &str| -> Result<ModelCard> { card::find(models_dir, name) };
    let mut resolved = Vec::new();
    let mut provenance = Vec::new();
    for path in files {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let file = path.display().to_string();
        let ms = import::parse_bytes(&bytes, &file)?;
        let tool = ms
            .first()
            .and_then(|m| serde_json::to_value(m.tool).ok())
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        provenance.push(FileProvenance {
            path: file,
            sha256: sha256_hex(&bytes),
            tool,
            measurements: ms.len() as u32,
            date: ms.iter().find_map(|m| m.date.clone()),
        });
        for m in ms {
            resolved.push(fit::resolve(m, flags, profile, &find)?);
        }
    }
    let report = fit::calibrate_from(profile, &resolved, provenance, fit_names)?;
    Ok((report, resolved))
}
