//! `wgml info`: what GPU wgml sees and what it will use.

use std::process::ExitCode;

use wgml::Context;
use wgml::Result;
use wgml::kernels::tune::{self, TuneMode};

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
    match ctx.coop_matrix() {
        Some(c) => println!(
            "cooperative matrices: {0}×{0}×{0} f16 → f32 for the tensor-core matmul ({1} configuration(s) offered)",
            c.frag, c.offered
        ),
        None => println!("cooperative matrices: none usable (no tensor-core matmul on this adapter)"),
    }
    let tensor_cores = wgml::kernels::matmul_coop::tensor_cores_allowed(&ctx);
    println!(
        "matmul precision: {}{}",
        ctx.matmul_precision().name(),
        if tensor_cores {
            " (products may run on tensor cores; they agreed with the f32 kernel here)"
        } else {
            " (every product in f32)"
        }
    );
    if let Some(Err(why)) = ctx.coop_check() {
        println!("  tensor cores failed wgml's check: {why}");
    }
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
    print!("{}", tuning_table(&ctx));
    Ok(ExitCode::SUCCESS)
}

/// The tuning mode, the cache file and the measured choices `ctx` knows for its
/// adapter, as text for people.
pub fn tuning_table(ctx: &Context) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mode = match tune::mode(ctx) {
        Ok(m) if m.measures_on(ctx) => "measures kernel choices on this adapter".to_string(),
        Ok(TuneMode::Off) => "off (built-in rules, cache ignored)".to_string(),
        Ok(_) => {
            "uses cached choices only on this CPU adapter (WGML_TUNE=on or `wgml tune` measures)".to_string()
        }
        Err(e) => format!("{e}"),
    };
    let _ = writeln!(out, "kernel tuning ({}): {mode}", tune::TUNE_ENV);
    let _ = writeln!(
        out,
        "  cache: {}",
        ctx.tuning_cache_path().map_or_else(
            || "none (no cache directory known; set WGML_CACHE_DIR)".to_string(),
            |p| p.display().to_string()
        )
    );
    let entries = ctx.tuned_entries();
    let _ = writeln!(
        out,
        "  {} measured choices for this adapter and driver",
        entries.len()
    );
    for (key, e) in entries {
        let _ = writeln!(
            out,
            "  {key:<40} {:<26} {:>9.4} ms  ({} candidates)",
            e.choice, e.ms, e.candidates
        );
    }
    out
}
