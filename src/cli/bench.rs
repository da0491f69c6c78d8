//! `wgml bench`: kernel timings on random inputs.
//!
//! Each benchmark builds its dispatches once, runs a few warm-up submissions, then
//! times `--repeat` submissions (submit + wait, wall clock) and reports the median.
//! Benchmarks are named by the positional `what`; each family adds an arm to
//! [`run`] and returns [`BenchResult`]s, which are printed as a table and written
//! as a JSON array with `--json`.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use wgml::kernels::matmul::{self, MatmulDesc, MatmulVariant};
use wgml::{Context, Error, Result, Tensor};

use super::GpuArgs;

/// Benchmarks `wgml bench` knows.
const KNOWN: &[&str] = &["matmul"];

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Which kernel family to time: matmul.
    #[arg(default_value = "matmul")]
    pub what: String,
    /// Problem sizes, comma-separated (matmul: square M = N = K).
    #[arg(long, value_delimiter = ',', default_values_t = [256usize, 512, 1024])]
    pub sizes: Vec<usize>,
    /// Timed runs per size; the median is reported.
    #[arg(long, default_value_t = 10)]
    pub repeat: usize,
    /// Untimed runs per size before timing.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Write the results as a JSON array to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// matmul: layouts to time, comma-separated: nn, nt, tn.
    #[arg(long, value_delimiter = ',', default_values_t = [String::from("nn")])]
    pub layouts: Vec<String>,
    /// matmul: force a kernel variant (register, tiled64, tiled128); default: the
    /// one chosen for this adapter.
    #[arg(long)]
    pub variant: Option<String>,
}

/// One timed configuration.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    /// Kernel name, e.g. `matmul_nn`.
    pub kernel: String,
    /// Kernel variant or configuration, e.g. `register`.
    pub variant: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Median wall time of one submission (submit + wait), milliseconds.
    pub ms: f64,
    /// Fastest repeat, milliseconds.
    pub min_ms: f64,
    /// Floating-point throughput at the median time.
    pub gflops: f64,
    pub repeat: usize,
    pub adapter: String,
}

pub fn run(gpu: &GpuArgs, args: &BenchArgs) -> Result<ExitCode> {
    if !KNOWN.contains(&args.what.as_str()) {
        return Err(Error::invalid(format!(
            "unknown benchmark '{}'; known: {}",
            args.what,
            KNOWN.join(", ")
        )));
    }
    if args.repeat == 0 {
        return Err(Error::invalid("--repeat must be at least 1"));
    }
    let ctx = gpu.context()?;
    println!(
        "adapter: {} ({:?} on {:?})",
        ctx.info.name, ctx.info.device_type, ctx.info.backend
    );
    let results = match args.what.as_str() {
        "matmul" => bench_matmul(&ctx, args)?,
        _ => unreachable!("checked against KNOWN above"),
    };
    print_table(&results);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&results).map_err(|e| Error::invalid(e.to_string()))?;
        std::fs::write(path, text + "\n").map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_variant(name: &str) -> Result<MatmulVariant> {
    MatmulVariant::ALL
        .into_iter()
        .find(|v| v.name() == name)
        .ok_or_else(|| {
            Error::invalid(format!(
                "unknown matmul variant '{name}'; known: {}",
                MatmulVariant::ALL.map(|v| v.name()).join(", ")
            ))
        })
}

/// Random values in [-1, 1) that are never exactly zero.
fn random_nonzero(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v: f32 = rng.random_range(-1.0..1.0);
            if v == 0.0 { 0.5 } else { v }
        })
        .collect()
}

/// Runs `dispatch` `warmup` times untimed, then `repeat` times; returns (median, min) ms.
fn time_runs(
    ctx: &Context,
    dispatch: &wgml::gpu::Dispatch,
    warmup: usize,
    repeat: usize,
) -> Result<(f64, f64)> {
    for _ in 0..warmup {
        ctx.run(&[dispatch])?;
    }
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let t0 = Instant::now();
        ctx.run(&[dispatch])?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let median = if repeat % 2 == 1 {
        times[repeat / 2]
    } else {
        0.5 * (times[repeat / 2 - 1] + times[repeat / 2])
    };
    Ok((median, times[0]))
}

fn bench_matmul(ctx: &Context, args: &BenchArgs) -> Result<Vec<BenchResult>> {
    let forced = args.variant.as_deref().map(parse_variant).transpose()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut results = Vec::new();
    for &size in &args.sizes {
        if size == 0 {
            return Err(Error::invalid("--sizes must be at least 1"));
        }
        let (m, n, k) = (size, size, size);
        let a = Tensor::from_f32(ctx, &random_nonzero(&mut rng, m * k), &[m * k])?;
        let b = Tensor::from_f32(ctx, &random_nonzero(&mut rng, k * n), &[k * n])?;
        let c = Tensor::from_f32(ctx, &vec![0.0; m * n], &[m * n])?;
        for layout in &args.layouts {
            let mut desc = MatmulDesc::new(m, n, k);
            match layout.as_str() {
                "nn" => {}
                "nt" => desc = desc.trans_b(),
                "tn" => desc = desc.trans_a(),
                other => {
                    return Err(Error::invalid(format!(
                        "unknown matmul layout '{other}'; known: nn, nt, tn"
                    )));
                }
            }
            desc.variant = forced;
            let variant = matmul::auto_variant(ctx, &desc);
            let d = matmul::matmul(ctx, &desc, &a, &b, None, &c)?;
            let (ms, min_ms) = time_runs(ctx, &d, args.warmup, args.repeat)?;
            results.push(BenchResult {
                kernel: desc.layout_name().to_string(),
                variant: variant.name().to_string(),
                m,
                n,
                k,
                ms,
                min_ms,
                gflops: desc.flops() / (ms * 1e-3) / 1e9,
                repeat: args.repeat,
                adapter: ctx.info.name.clone(),
            });
        }
    }
    Ok(results)
}

fn print_table(results: &[BenchResult]) {
    println!(
        "{:<12} {:<10} {:>6} {:>6} {:>6} {:>10} {:>10} {:>9}",
        "kernel", "variant", "m", "n", "k", "median ms", "min ms", "GFLOP/s"
    );
    for r in results {
        println!(
            "{:<12} {:<10} {:>6} {:>6} {:>6} {:>10.3} {:>10.3} {:>9.2}",
            r.kernel, r.variant, r.m, r.n, r.k, r.ms, r.min_ms, r.gflops
        );
    }
}
