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
}
