use std::process::ExitCode;

use clap::Parser;

// Training allocates and frees the same large buffers every step; mimalloc reuses them where
// glibc maps and zeroes fresh pages each time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
