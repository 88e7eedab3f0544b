//! A guard around libtorch calls that can fail on a device (an out-of-memory in the forward
//! pass, a CUDA error): tch's tensor operations panic on a C++ exception, so the forward
//! pass runs inside [`catch_unwind`](std::panic::catch_unwind) and a failure comes back as
//! one line naming what was being computed, not as a panic and a backtrace. The process's
//! panic hook stays quiet for panics inside a guard (they become errors) and prints every
//! other as before.

use anyhow::{anyhow, Result};
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Inside a guard on this thread: a panic is turned into an error, not printed.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

fn install_quiet_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// The first line of a libtorch error (the rest is its C++ backtrace). In a panic message
/// the error is Debug-formatted, so its line breaks are the two characters `\n`.
pub fn first_line(msg: &str) -> String {
    let line = msg
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let line = line.split("\\n").next().unwrap_or(line).trim();
    // tch wraps the message as `Torch("…")`; keep what libtorch said.
    let line = line
        .strip_prefix("Torch(\"")
        .or_else(|| line.split_once("Torch(\"").map(|(_, r)| r))
        .unwrap_or(line);
    line.trim_end_matches("\")")
        .trim_end_matches('"')
        .to_string()
}

/// Runs `f`; a panic inside it (a libtorch exception through tch) becomes an error
/// `"{what}: {libtorch's first line}"`. `f` must leave nothing half-updated that the
/// caller reuses after an error (callers drop the cache of a failed step).
pub fn guarded<T>(what: impl FnOnce() -> String, f: impl FnOnce() -> Result<T>) -> Result<T> {
    install_quiet_hook();
    let was = GUARDED.with(|g| g.replace(true));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(was));
    match r {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("libtorch failed");
            Err(anyhow!("{}: {}", what(), first_line(msg)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn a_libtorch_exception_is_one_line_naming_the_work() {
        let e = guarded(
            || "forward pass of batch 2 × 3 tokens".to_string(),
            || {
                // Index 10 of a 4-row table: libtorch throws, tch panics.
                let table = Tensor::zeros([4, 2], (Kind::Float, Device::Cpu));
                let ids = Tensor::from_slice(&[10i64]);
                Ok(Tensor::embedding(&table, &ids, -1, false, false))
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("forward pass of batch 2 × 3 tokens: "), "{e}");
        assert!(!e.contains('\n') && !e.contains("frame #"), "{e}");
        assert!(e.contains("index") || e.contains("out of range"), "{e}");
        // Outside a guard nothing changed: results and errors pass through.
        assert_eq!(guarded(|| "x".into(), || Ok(3)).unwrap(), 3);
        assert!(guarded::<()>(|| "x".into(), || Err(anyhow!("plain")))
            .unwrap_err()
            .to_string()
            .eq("plain"));
    }

    #[test]
    fn first_line_keeps_what_libtorch_said() {
        let raw = "called `Result::unwrap()` on an `Err` value: Torch(\"CUDA out of memory. Tried to allocate 2.00 GiB\nException raised from malloc at ...\nframe #0: ...\")";
        assert_eq!(
            first_line(raw),
            "CUDA out of memory. Tried to allocate 2.00 GiB"
        );
        // As tch's panics carry it: Debug-formatted, line breaks escaped.
        let escaped = r#"called `Result::unwrap()` on an `Err` value: Torch("index out of range in self\nException raised from operator()\nframe #0: c10::Error")"#;
        assert_eq!(first_line(escaped), "index out of range in self");
    }
}
