//! Records the git commit the profiler is built from, for reports. (The engine crate's
//! build script, `src/torch/build.rs`, links libtorch and records the same commit.)

/// Records the git commit (when built from a checkout) for reports, with `-dirty` when
/// tracked files differ from it, so that a report never names code it did not run.
pub fn git_commit(checkout: &std::path::Path) {
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
    git_commit(std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
}
