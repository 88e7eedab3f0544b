//! The model-card loader (TOML text → validated card) on arbitrary UTF-8 text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use profiler::model::card::ModelCard;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ModelCard::parse(text, Path::new("fuzz.toml"));
    }
});
