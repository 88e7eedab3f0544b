//! The binary really links libtorch's CUDA library (the linker would drop it and CUDA would
//! silently be unavailable) and finds libtorch through its rpath, without LD_LIBRARY_PATH.

mod common;

use std::process::Command;

#[test]
fn libtorch_cuda_is_linked_and_resolved_without_ld_library_path() {
    let out = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_profiler"))
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("libtorch_cuda.so"))
        .unwrap_or_else(|| panic!("libtorch_cuda.so is not a needed library:\n{text}"));
    assert!(!line.contains("not found"), "{line}");
    assert!(!text.contains("not found"), "unresolved libraries:\n{text}");
    // And it starts without LD_LIBRARY_PATH.
    let out = common::profiler()
        .env_remove("LD_LIBRARY_PATH")
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("profiler "));
}
