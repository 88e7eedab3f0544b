//! The `profiler-engine` command: every command, inference included, in one process.

use super::{accuracy, generate, run, run_core, serve, Cli, Command};
use anyhow::Result;
use clap::Parser;

/// Parses the command line and runs any command.
pub fn run_engine() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(a) => run::run(*a),
        Command::Generate(a) => generate::run(a),
        Command::Accuracy(a) => accuracy::run(a),
        Command::Serve(a) => serve::run(*a),
        Command::ExportTokenizer(a) => serve::export_tokenizer(a),
        other => run_core(other),
    }
}
