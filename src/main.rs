//! The `flyplan` binary: parse arguments, run the command, map the result
//! to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = flyplan::cli::Cli::parse();
    flyplan::logging::init(cli.verbose);
    match flyplan::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            flyplan::cli::report_error(&err);
            ExitCode::FAILURE
        }
    }
}
