//! `profiler-engine`: the `profiler` command with libtorch. `profiler` hands it the commands
//! that run inference; it takes every command.

fn main() {
    profiler::cli::main_with(profiler_engine::cli::run_engine);
}
