//! `wgml info`: what GPU wgml sees and what it will use.

use std::process::ExitCode;

use wgml::Result;

use super::GpuArgs;

pub fn run(gpu: &GpuArgs) -> Result<ExitCode> {
    let ctx = gpu.context()?;
    println!("adapters found:");
    for a in &ctx.adapters {
        println!(
            "  {:<40} {:?} on {:?} (driver: {} {})",
            a.info.name, a.info.device_type, a.info.backend, a.info.driver, a.info.driver_info
        );
    }
    println!("chosen: {} on {:?}", ctx.info.name, ctx.info.backend);
    println!("  why: {}", ctx.choice);
    println!("features used: {:?}", ctx.features);
    let l = &ctx.limits;
    println!("limits:");
    println!("  max_buffer_size                      {}", l.max_buffer_size);
    println!(
        "  max_storage_buffer_binding_size      {}",
        l.max_storage_buffer_binding_size
    );
    println!(
        "  max_storage_buffers_per_shader_stage {}",
        l.max_storage_buffers_per_shader_stage
    );
    println!(
        "  max_compute_workgroups_per_dimension {}",
        l.max_compute_workgroups_per_dimension
    );
    println!(
        "  max_compute_invocations_per_workgroup {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  max_compute_workgroup_size           {}x{}x{}",
        l.max_compute_workgroup_size_x, l.max_compute_workgroup_size_y, l.max_compute_workgroup_size_z
    );
    println!(
        "  max_compute_workgroup_storage_size   {}",
        l.max_compute_workgroup_storage_size
    );
    println!("  timestamp queries                    {}", ctx.has_timestamps());
    Ok(ExitCode::SUCCESS)
}
