use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = nfield::commands::Cli::parse();
    match nfield::commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
