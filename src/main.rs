//! casare-robot binary: parse the command line, run the command, map the outcome to an exit code.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    casare_robot::output::exit_quietly_when_output_closes();
    let cli = casare_robot::cli::Cli::parse();
    ExitCode::from(casare_robot::app::main(cli))
}
