//! The `profiler` command: everything happens in the library (`cli::run`); commands that
//! run inference are handed to `profiler-engine`.

fn main() {
    profiler::cli::main_with(profiler::cli::run);
}
