//! Hands inference commands to `profiler-engine`, the binary linked with libtorch.
//!
//! Loading libtorch and its CUDA libraries takes about half a second; `profiler` itself
//! does not link them, so the commands that run no inference start at once. The engine is
//! the same command line with libtorch: it sits beside `profiler` (both come from one
//! `cargo build`) and is started with the same arguments, replacing this process so that
//! signals, exit status and standard streams are its own.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// File name of the engine binary, beside `profiler`.
pub const ENGINE_BIN: &str = "profiler-engine";

/// The engine beside the running binary.
fn engine_path() -> Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find the running profiler binary")?;
    Ok(me.with_file_name(ENGINE_BIN))
}

/// Replaces this process with the engine, given the same arguments; returns only on error.
pub fn exec() -> Result<()> {
    use std::os::unix::process::CommandExt;
    let engine = engine_path()?;
    if !engine.exists() {
        bail!(
            "this command runs inference and needs {} beside {} (built with the default `torch` feature: cargo build --release)",
            ENGINE_BIN,
            engine.with_file_name("profiler").display()
        );
    }
    let err = std::process::Command::new(&engine)
        .args(std::env::args_os().skip(1))
        .exec();
    bail!("cannot start {}: {err}", engine.display())
}
