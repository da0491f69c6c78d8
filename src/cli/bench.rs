//! `wgml bench`: kernel and training-step timings on random inputs.
//!
//! The benchmarks themselves live in [`wgml::bench`] (shared with `benches/`);
//! this file parses the arguments, prints the table and writes JSON/CSV. Each case
//! is warmed up (`--warmup` untimed runs), then timed `--repeat` times with GPU
//! timestamps when the device has them (else submit + wait wall time); the median
//! is reported. `--plot FILE.png` draws the rows (throughput against size).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use wgml::bench::{self, Bench, BenchOptions, BenchRow};
use wgml::{Error, Result};

use super::GpuArgs;

/// `--help`'s text on sizes, built from the benchmarks' own descriptions.
fn after_help() -> String {
    let mut out = String::from("What --sizes means (comma-separated entries; dimensions joined by 'x'):\n");
    for b in Bench::ALL {
        out += &format!(
            "  {:<11} {}\n  {:<11} default: {}\n",
            b.name(),
            b.size_syntax(),
            "",
            b.default_sizes().join(",")
        );
    }
    out += "With 'all' every benchmark runs its default sizes (--sizes is then an error).\n\n\
            Throughput: matmul and conv report GFLOP/s (conv forward 2*N*C_out*H_out*W_out*C_in*KH*KW,\n\
            forward+backward 3x that; on CPU adapters also the fused conv+ReLU+2x2 max-pool pair that\n\
            training uses there: forward, and forward + weight gradient at 2x); pool, softmax, batchnorm\n\
            and adam report GB/s counting each input read once and each output written once;\n\
            train-step reports images/s.";
    out
}

#[derive(Args, Debug)]
#[command(after_help = after_help())]
pub struct BenchArgs {
    /// What to time: matmul, conv, pool, softmax, batchnorm, adam, train-step or all.
    #[arg(default_value = "matmul")]
    pub what: String,
    /// Problem sizes, comma-separated; their meaning per benchmark is below.
    #[arg(long, value_delimiter = ',')]
    pub sizes: Option<Vec<String>>,
    /// Timed runs per case; the median is reported.
    #[arg(long, default_value_t = 10)]
    pub repeat: usize,
    /// Untimed runs per case before timing.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Write the rows as a JSON array to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the rows as CSV to this file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Draw GFLOP/s (compute-bound) and GB/s (memory-bound) against problem size,
    /// one line per kernel, into this PNG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Peak GFLOP/s of the device: adds fraction_of_peak to compute-bound rows.
    #[arg(long, allow_negative_numbers = true)]
    pub peak_gflops: Option<f64>,
    /// Peak memory bandwidth in GB/s: adds fraction_of_peak to memory-bound rows.
    #[arg(long, allow_negative_numbers = true)]
    pub peak_gbps: Option<f64>,
    /// Clock: auto (GPU timestamps when available), gpu-timestamps or wall-clock.
    #[arg(long, default_value = "auto")]
    pub clock: String,
    /// matmul: layouts to time, comma-separated: nn, nt, tn.
    #[arg(long, value_delimiter = ',', default_values_t = [String::from("nn")])]
    pub layouts: Vec<String>,
    /// matmul: force a kernel variant (register_large, register_small, register_mid,
    /// register_wide, tiled64, tiled128, tiled128x64; the first and fourth on CPU
    /// adapters only); default: the one chosen (or measured) for this adapter and shape.
    #[arg(long)]
    pub variant: Option<String>,
    /// matmul: force a split-K factor (K split into this many ranges whose partial
    /// products are summed in a fixed order; 1: no split); default: the one chosen
    /// for this adapter and shape.
    #[arg(long)]
    pub split_k: Option<usize>,
}

/// Each benchmark to run with its parsed sizes.
pub type BenchPlan = Vec<(Bench, Vec<bench::Size>)>;

impl BenchArgs {
    /// The benchmarks with their parsed sizes, and the options; every argument is
    /// checked here, before a GPU is touched.
    pub fn plan(&self) -> Result<(BenchPlan, BenchOptions)> {
        let benches = Bench::parse(&self.what)?;
        if benches.len() > 1 && self.sizes.is_some() {
            return Err(Error::invalid(
                "--sizes applies to one benchmark; with 'all' each runs its default sizes",
            ));
        }
        let opts = BenchOptions {
            repeat: self.repeat,
            warmup: self.warmup,
            clock: bench::parse_clock(&self.clock)?,
            peak_gflops: self.peak_gflops,
            peak_gbps: self.peak_gbps,
            layouts: self.layouts.clone(),
            variant: self.variant.as_deref().map(bench::parse_variant).transpose()?,
            split_k: self.split_k,
            seed: 42,
        };
        opts.validate()?;
        let plan = benches
            .into_iter()
            .map(|b| Ok((b, b.parse_sizes(self.sizes.as_deref())?)))
            .collect::<Result<_>>()?;
        Ok((plan, opts))
    }
}

pub fn run(gpu: &GpuArgs, args: &BenchArgs) -> Result<ExitCode> {
    let (plan, opts) = args.plan()?;
    if args.plot.is_some() {
        // A missing font fails now, not after minutes of benchmarks.
        wgml::report::check_font()?;
    }
    let ctx = gpu.context()?;
    let timer = bench::timer(&ctx, &opts)?;
    println!(
        "adapter: {} ({:?} on {:?})",
        ctx.info.name, ctx.info.device_type, ctx.info.backend
    );
    println!("clock: {}", timer.clock().describe());
    println!(
        "median of {} runs after {} warm-up run(s)\n",
        opts.repeat, opts.warmup
    );
    drop(timer);
    let mut rows: Vec<BenchRow> = Vec::new();
    for (b, sizes) in &plan {
        println!("== {} ==", b.name());
        let got = bench::run(&ctx, sizes, &opts)?;
        print!("{}", bench::table(&got));
        println!();
        rows.extend(got);
    }
    if let Some(path) = &args.json {
        bench::write_json(path, &rows)?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.csv {
        bench::write_csv(path, &rows)?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &args.plot {
        wgml::report::write_bench_plot(path, &rows)?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
