//! Where the project's data lives: `models/`, `profiles/`, and the weights cache.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// The project folder holding `models/`, `profiles/` and `.cache/`.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// A home rooted at `root` (used by tests and by `PROFILER_HOME`).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }

    /// `PROFILER_HOME` if set, else the nearest ancestor of the executable (then of the
    /// current folder) that has both `models/` and `profiles/`.
    pub fn locate() -> Result<Self> {
        if let Some(dir) = std::env::var_os("PROFILER_HOME") {
            let home = Home::at(dir);
            if !home.models_dir().is_dir() {
                bail!(
                    "PROFILER_HOME={} has no models/ folder (expected the profiler project folder)",
                    home.root.display()
                );
            }
            return Ok(home);
        }
        let starts = [std::env::current_exe().ok(), std::env::current_dir().ok()];
        for start in starts.into_iter().flatten() {
            if let Some(root) = start.ancestors().find(|d| is_home(d)) {
                return Ok(Home::at(root));
            }
        }
        bail!("cannot find the profiler project folder (with models/ and profiles/): set PROFILER_HOME")
    }

    /// The project folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Model cards.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    /// Calibration profiles.
    pub fn profiles_dir(&self) -> PathBuf {
        self.root.join("profiles")
    }

    /// Downloaded weights (ignored by git).
    pub fn weights_cache(&self) -> PathBuf {
        self.root.join(".cache").join("models")
    }

    /// Text corpus that `--input-len` prompts are cut from.
    pub fn corpus(&self) -> PathBuf {
        self.root.join("models").join("corpus.txt")
    }
}

fn is_home(d: &Path) -> bool {
    d.join("models").is_dir() && d.join("profiles").is_dir()
}
