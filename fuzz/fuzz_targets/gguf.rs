//! The GGUF reader on arbitrary bytes: header, metadata, tensor table, then every tensor's
//! dequantisation (each block type). Errors are fine; panics, out-of-bounds reads and
//! allocations out of proportion to the input are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use profiler::model::gguf::GgufFile;

/// Largest tensor dequantised (elements); bigger ones are skipped to bound the work per input.
const MAX_ELEMENTS: u64 = 4 << 20;
/// Most elements dequantised per input, all tensors together.
const MAX_TOTAL: u64 = 16 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_bytes("fuzz.gguf", data.to_vec()) else {
        return;
    };
    let mut total = 0u64;
    for t in file.tensors() {
        let n = t
            .dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .unwrap_or(u64::MAX);
        if n > MAX_ELEMENTS || total.saturating_add(n) > MAX_TOTAL {
            continue;
        }
        total += n;
        if let Ok(v) = file.dequantize(t) {
            assert_eq!(v.len() as u64, n, "tensor '{}' dequantised to the wrong length", t.name);
        }
        let _ = file.tensor_bytes(t);
        assert!(file.tensor(&t.name).is_some());
    }
});
