//! The reader of benchmark tools' result files (`calibrate --from`) on arbitrary text: it
//! must answer every input with measurements or one line naming the file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use profiler::calibration::import::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = parse(text, "fuzz.json") {
        let line = format!("{e:#}");
        assert!(line.starts_with("fuzz.json: "), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }
});
