//! `wgml bench`: kernel timings on random inputs.

use std::process::ExitCode;

use clap::Args;
use wgml::Result;

use super::GpuArgs;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Which kernel family to time.
    #[arg(default_value = "matmul")]
    pub what: String,
}

pub fn run(_gpu: &GpuArgs, args: &BenchArgs) -> Result<ExitCode> {
    Err(wgml::Error::invalid(format!("unknown benchmark '{}'", args.what)))
}
