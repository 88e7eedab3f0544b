//! The samples-file reader on arbitrary bytes, then what `profiler report --samples` does
//! with a file it accepts: rebuild the report and render it in every format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use profiler::measure::samples::parse_samples;
use profiler::output::Format;
use profiler::report::{render, Report};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = parse_samples(data, "fuzz.jsonl") else {
        return;
    };
    let report = Report::from_samples_file(file, Vec::new());
    for format in [Format::Table, Format::Json, Format::Csv, Format::Markdown] {
        let _ = render(&report, format);
    }
});
