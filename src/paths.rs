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

/// Checks, before any work is done, that a file can be created at `path` given by `flag`
/// (`--out`, `--samples`): it is not a folder and its folder exists and is a folder. This
/// catches a mistyped folder, or a path under a file such as `/dev/null/x`, before a long
/// run instead of after it; a full disk (`/dev/full`) can only show when writing.
pub fn check_output_file(flag: &str, path: &Path) -> Result<()> {
    let p = path.display();
    if path.is_dir() {
        bail!("{flag} {p}: is a folder (expected a file path)");
    }
    let parent = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(parent) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => bail!(
            "{flag} {p}: {} is not a folder (expected the path of a file in an existing folder)",
            parent.display()
        ),
        Err(e) => bail!(
            "{flag} {p}: cannot use the folder {}: {e} (expected the path of a file in an existing folder)",
            parent.display()
        ),
    }
}

/// [`check_output_file`] for a samples file, which must also be new: another run's samples
/// are results too, never replaced silently.
pub fn check_new_samples_file(flag: &str, path: &Path) -> Result<()> {
    check_output_file(flag, path)?;
    if let Ok(m) = std::fs::metadata(path) {
        if m.is_file() && m.len() > 0 {
            bail!(
                "{flag} {}: the file exists ({} bytes); remove it or choose another path",
                path.display(),
                m.len()
            );
        }
    }
    Ok(())
}

fn is_home(d: &Path) -> bool {
    d.join("models").is_dir() && d.join("profiles").is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_file_checks_name_the_flag_the_path_and_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("r.json");
        check_output_file("--out", &ok).unwrap();
        check_output_file("--out", Path::new("relative-file.json")).unwrap();
        check_output_file("--out", Path::new("/dev/full")).unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let cases = [
            (file.join("x"), "is not a folder"),
            (PathBuf::from("/dev/null/x"), "/dev/null is not a folder"),
            (dir.path().join("missing/x"), "cannot use the folder"),
            (dir.path().to_path_buf(), "is a folder"),
        ];
        for (path, want) in cases {
            let e = check_output_file("--samples", &path)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("--samples {}: ", path.display())),
                "{e}"
            );
            assert!(e.contains(want), "{e} (wanted {want})");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
