//! `wgml selftest`: every kernel family against its CPU twin on this adapter.

use std::process::ExitCode;

use wgml::{Result, selftest};

use super::GpuArgs;

pub fn run(gpu: &GpuArgs) -> Result<ExitCode> {
    let ctx = gpu.context()?;
    println!("selftest on {} ({:?})", ctx.info.name, ctx.info.backend);
    let checks = selftest::run(&ctx)?;
    print!("{}", selftest::table(&checks));
    let failed = checks.iter().filter(|c| !c.pass).count();
    if failed == 0 {
        println!(
            "all {} checks pass (max error < {:.0e})",
            checks.len(),
            selftest::TOLERANCE
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{failed} of {} checks FAILED", checks.len());
        Ok(ExitCode::FAILURE)
    }
}
