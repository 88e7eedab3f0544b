//! The device-profile loader (TOML text → validated profile) on arbitrary UTF-8 text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use profiler::projection::profile::Profile;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Profile::parse(text, Path::new("fuzz.toml"));
    }
});
