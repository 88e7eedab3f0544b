//! `profiler-engine` really links libtorch's CUDA library (the linker would drop it and CUDA
//! would silently be unavailable) and finds libtorch through its rpath, without
//! LD_LIBRARY_PATH; `profiler` itself links no libtorch at all, so that the commands that
//! run no inference do not pay for loading it.

#[path = "../common/mod.rs"]
mod common;

use std::process::Command;

fn ldd(binary: &str) -> String {
    let out = Command::new("ldd")
        .arg(binary)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("ldd");
    assert!(out.status.success(), "ldd {binary} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn engine_links_libtorch_cuda_and_resolves_it_without_ld_library_path() {
    let text = ldd(env!("CARGO_BIN_EXE_profiler-engine"));
    let line = text
        .lines()
        .find(|l| l.contains("libtorch_cuda.so"))
        .unwrap_or_else(|| panic!("libtorch_cuda.so is not a needed library:\n{text}"));
    assert!(!line.contains("not found"), "{line}");
    assert!(!text.contains("not found"), "unresolved libraries:\n{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_profiler-engine"))
        .env_remove("LD_LIBRARY_PATH")
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("profiler "));
}

#[test]
fn profiler_links_no_libtorch() {
    let text = ldd(&common::profiler_bin().display().to_string());
    for lib in ["libtorch", "libc10", "libcuda", "libcudart"] {
        assert!(
            !text.contains(lib),
            "profiler should not load {lib} (inference goes to profiler-engine):\n{text}"
        );
    }
    let out = common::profiler()
        .env_remove("LD_LIBRARY_PATH")
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("profiler "));
}
