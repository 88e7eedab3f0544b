//! Facts about the local machine read from `/proc` (Linux): CPU model, memory, RSS.

/// CPU model name from `/proc/cpuinfo`, or "unknown".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// Logical CPUs available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// `MemAvailable` from `/proc/meminfo`, bytes.
pub fn available_memory_bytes() -> Option<u64> {
    meminfo_kib("/proc/meminfo", "MemAvailable:").map(|k| k * 1024)
}

/// Peak resident set size of this process (`VmHWM`), bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    meminfo_kib("/proc/self/status", "VmHWM:").map(|k| k * 1024)
}

/// Current resident set size of this process (`VmRSS`), bytes.
pub fn rss_bytes() -> Option<u64> {
    meminfo_kib("/proc/self/status", "VmRSS:").map(|k| k * 1024)
}

fn meminfo_kib(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Refuses to materialise `need` bytes of weights when the machine has less memory
/// available (`MemAvailable`); when that is unknown the load goes ahead. The error gives
/// both numbers: `{subject}: {what} need(s) N GiB but only M GiB ... {hint}`.
pub fn ensure_memory_for(subject: &str, what: &str, need: u64, hint: &str) -> anyhow::Result<()> {
    memory_verdict(subject, what, need, available_memory_bytes(), hint)
}

fn memory_verdict(
    subject: &str,
    what: &str,
    need: u64,
    available: Option<u64>,
    hint: &str,
) -> anyhow::Result<()> {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    match available {
        Some(avail) if need > avail => anyhow::bail!(
            "{subject}: {what} need {:.1} GiB but only {:.1} GiB of memory is available (MemAvailable in /proc/meminfo){hint}",
            gib(need),
            gib(avail)
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_linux_proc() {
        assert!(cores() >= 1);
        assert!(available_memory_bytes().unwrap() > 0);
        // Current first: the peak read after it can only be as large or larger.
        let rss = rss_bytes().unwrap();
        assert!(peak_rss_bytes().unwrap() >= rss);
        assert_ne!(cpu_model(), "");
    }
    #[test]
    fn memory_verdict_refuses_with_both_numbers_only_when_too_big() {
        let gib = 1u64 << 30;
        let e = memory_verdict("m.gguf", "its weights", 200 * gib, Some(gib * 3 / 2), "!")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "m.gguf: its weights need 200.0 GiB but only 1.5 GiB of memory is available \
             (MemAvailable in /proc/meminfo)!"
        );
        memory_verdict("m", "w", gib, Some(gib), "").unwrap();
        memory_verdict("m", "w", u64::MAX, None, "").unwrap();
    }
}
