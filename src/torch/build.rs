//! Links libtorch's CUDA library for real, records where libtorch lives and which git commit
//! the engine is built from (for run reports; the core needs neither, and has no build
//! script).
//!
//! The linker drops `libtorch_cuda.so` (nothing references its symbols directly), and
//! libtorch then reports CUDA as unavailable; `--no-as-needed` keeps it. The rpath lets
//! the binary run without `LD_LIBRARY_PATH`; on another machine, point
//! `LD_LIBRARY_PATH` at that torch's `lib/` folder instead.
use std::path::{Path, PathBuf};

/// libtorch's folder (`LIBTORCH`, set by `.cargo/config.toml` to the project venv's torch).
fn libtorch_dir() -> Option<PathBuf> {
    std::env::var("LIBTORCH").ok().map(PathBuf::from)
}

/// torch-sys checks the version only through Python; a pip wheel has no `build-version`
/// file, so check `version.py` here: tch 0.24.0 needs torch 2.11.0.
fn check_version(torch: &std::path::Path) {
    const WANT: &str = "2.11.0";
    let Ok(text) = std::fs::read_to_string(torch.join("version.py")) else {
        return;
    };
    let found = text
        .lines()
        .find_map(|l| l.strip_prefix("__version__"))
        .map(|v| {
            v.trim_start_matches([' ', '=', ':', 's', 't', 'r'])
                .trim()
                .trim_matches(['\'', '"'])
                .to_string()
        });
    if let Some(v) = found {
        println!("cargo:rustc-env=PROFILER_TORCH_VERSION={v}");
        if v.split('+').next() != Some(WANT) {
            panic!(
                "libtorch at {} is torch {v}; tch 0.24.0 needs torch {WANT} (run scripts/setup)",
                torch.display()
            );
        }
    }
}

/// Records the git commit (when built from a checkout) for reports, with `-dirty` when
/// tracked files differ from it, so that a report never names code it did not run.
fn git_commit(checkout: &std::path::Path) {
    for p in [
        ".git/HEAD",
        ".git/refs",
        ".git/index",
        "src",
        "Cargo.toml",
        "build.rs",
    ] {
        println!("cargo:rerun-if-changed={}", checkout.join(p).display());
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(checkout)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let Some(c) = git(&["rev-parse", "--short=12", "HEAD"]) {
        let dirty =
            git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        let suffix = if dirty { "-dirty" } else { "" };
        println!("cargo:rustc-env=PROFILER_GIT_COMMIT={c}{suffix}");
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(profiler_cuda_stats)");
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    git_commit(&checkout);
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(torch) = libtorch_dir() else {
        println!("cargo:warning=LIBTORCH is not set; run scripts/setup first");
        return;
    };
    check_version(&torch);
    // Resolve the `.venv/torch` link so the rpath names the real folder.
    let lib = torch
        .join("lib")
        .canonicalize()
        .unwrap_or_else(|_| torch.join("lib"));
    println!("cargo:rustc-link-search=native={}", lib.display());
    // The binary finds libtorch beside the checkout it was built in, wherever that
    // checkout is moved (target/release/profiler -> ../../.venv/torch/lib), and at the
    // folder it was built against otherwise.
    link_arg("-Wl,-rpath,$ORIGIN/../../.venv/torch/lib");
    link_arg(&format!("-Wl,-rpath,{}", lib.display()));
    if lib.join("libtorch_cuda.so").exists() {
        link_arg("-Wl,--no-as-needed");
        link_arg("-ltorch_cuda");
        link_arg("-Wl,--as-needed");
        println!("cargo:rustc-env=PROFILER_LIBTORCH_CUDA=1");
        cuda_memory_shim(&torch, &lib);
    }
}

/// A linker argument for everything this crate links (`profiler-engine`, the tests).
fn link_arg(arg: &str) {
    println!("cargo:rustc-link-arg={arg}");
}

/// Compiles `src/measure/cuda_memory.cpp`, which reads the CUDA caching allocator's peak
/// (tch has no binding for it), and sets `cfg(profiler_cuda_stats)`. Only libtorch's own
/// headers are needed; the allocator is libtorch's CUDA one, linked above.
fn cuda_memory_shim(torch: &Path, lib: &Path) {
    const SHIM: &str = "measure/cuda_memory.cpp";
    println!("cargo:rerun-if-changed={SHIM}");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    // The same C++ ABI as torch-sys uses for libtorch (pip wheels: the C++11 ABI).
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file(SHIM)
        .include(torch.join("include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .warnings(false)
        .compile("profiler_cuda_memory");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-cfg=profiler_cuda_stats");
}
