//! The `netloom` command: parses the command line and hands it to
//! [`netloom::cli`], which runs the designer or a headless tool.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    netloom::cli::main(netloom::cli::Cli::parse())
}
