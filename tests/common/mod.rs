//! Helpers shared by the end-to-end tests: run the real binary on the real default model.
#![allow(dead_code)]
pub mod http;
pub mod prom;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The project folder (models/, profiles/, .cache/): the package's folder, or for the
/// engine crate's tests (`src/torch/`) the checkout above it.
pub fn home() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|d| d.join("profiles").is_dir() && d.join("models").is_dir())
        .unwrap_or(manifest)
        .to_path_buf()
}

/// The `profiler` binary: this package's own, or, for the engine crate's tests, the one
/// beside `profiler-engine` (a workspace build makes both: `cargo test` at the top).
pub fn profiler_bin() -> PathBuf {
    let engine = match (
        option_env!("CARGO_BIN_EXE_profiler"),
        option_env!("CARGO_BIN_EXE_profiler-engine"),
    ) {
        (Some(p), _) => return PathBuf::from(p),
        (None, Some(e)) => PathBuf::from(e),
        (None, None) => panic!("tests/common serves the profiler and profiler-engine tests only"),
    };
    let p = engine.with_file_name("profiler");
    assert!(
        p.is_file(),
        "{} is missing: build the whole workspace (cargo build --release at the top)",
        p.display()
    );
    p
}

/// The default model's weights; tests need `scripts/setup` to have fetched them.
pub fn default_weights() -> PathBuf {
    let p = home().join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/setup (scripts/test does)",
        p.display()
    );
    p
}

/// The tail of a `profiler run` that measures one request and nothing else: no warm-up,
/// no host self-check, no progress output.
pub const ONE_QUIET_REQUEST: &[&str] =
    &["--requests", "1", "--warmup", "0", "--no-host-check", "-q"];

/// A `profiler` command with the project home set.
pub fn profiler() -> Command {
    let mut c = Command::new(profiler_bin());
    c.env("PROFILER_HOME", home());
    c
}

/// Runs `profiler ARGS`, expecting success; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let out = profiler()
        .args(args)
        .output()
        .expect("cannot start profiler");
    assert!(
        out.status.success(),
        "profiler {args:?} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is not UTF-8")
}

/// Runs `profiler ARGS`, expecting failure; returns the output.
pub fn run_err(args: &[&str]) -> Output {
    let out = profiler()
        .args(args)
        .output()
        .expect("cannot start profiler");
    assert!(
        !out.status.success(),
        "profiler {args:?} unexpectedly succeeded"
    );
    out
}

/// Asserts stderr is exactly one line starting with "error: " and containing `needle`,
/// and has no panic or backtrace.
pub fn assert_one_line_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[0].contains(needle), "expected {needle:?} in: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

/// A fresh temporary folder.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("cannot create a temporary folder")
}

/// Path inside a temp dir as a `&str`.
pub fn path_str(p: &Path) -> String {
    p.to_str().expect("non-UTF-8 path").to_string()
}
