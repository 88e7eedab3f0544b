//! `profiler-engine`: the `profiler` command linked with libtorch. `profiler` hands it the
//! commands that run inference; it takes every command.

fn main() {
    profiler::cli::main_with(profiler::cli::run_engine);
}
