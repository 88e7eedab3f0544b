//! The workload JSONL parser (`--workload FILE.jsonl`) on arbitrary UTF-8 text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use profiler::workload::parse_workload;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_workload(text, "fuzz.jsonl");
    }
});
