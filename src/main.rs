//! The `wgml` command line.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The library reports through the `log` crate: warnings (and errors) on stderr
    // by default, more with RUST_LOG (e.g. RUST_LOG=wgml=info).
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format(|out, record| {
            use std::io::Write;
            writeln!(
                out,
                "{}: {}",
                record.level().as_str().to_lowercase(),
                record.args()
            )
        })
        .init();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
