//! Ctrl-C and SIGTERM: the first asks the run to stop after the current step (so the
//! report is still written); a second Ctrl-C exits at once (samples already on disk).

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Flags set by the signal handlers.
#[derive(Clone)]
pub struct StopFlags {
    /// Set by SIGINT or SIGTERM.
    pub stop: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
}

impl StopFlags {
    /// Installs the handlers.
    pub fn install() -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let term = Arc::new(AtomicBool::new(false));
        // Registered before the flag setter, so it sees the flag a first signal set.
        signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(&stop))
            .context("cannot install the Ctrl-C handler")?;
        signal_hook::flag::register(SIGINT, Arc::clone(&stop))
            .context("cannot install the Ctrl-C handler")?;
        signal_hook::flag::register(SIGTERM, Arc::clone(&term))
            .context("cannot install the SIGTERM handler")?;
        signal_hook::flag::register(SIGTERM, Arc::clone(&stop))
            .context("cannot install the SIGTERM handler")?;
        Ok(StopFlags { stop, term })
    }

    /// Whether a stop was asked for.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The conventional exit status for the signal received: 143 for SIGTERM, 130 for SIGINT.
    pub fn exit_code(&self) -> i32 {
        if self.term.load(Ordering::Relaxed) {
            143
        } else {
            130
        }
    }
}
