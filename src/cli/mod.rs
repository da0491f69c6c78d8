//! Command-line parsing and dispatch to the subcommands.

mod answers;
mod bench;
mod eval;
mod export;
mod functional;
mod gan;
mod generate;
mod import;
mod info;
mod selftest;
mod tags;
mod train;
mod vae;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use wgml::{Context, ContextOptions, Result};

#[derive(Parser, Debug)]
#[command(
    name = "wgml",
    version,
    about = "GPU compute-shader deep learning on any GPU wgpu reaches"
)]
pub struct Cli {
    #[command(flatten)]
    pub gpu: GpuArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Adapter selection, shared by every subcommand.
#[derive(Args, Debug, Clone)]
pub struct GpuArgs {
    /// Backend to use: vulkan, metal, dx12 or gl (default: all, best adapter wins).
    #[arg(long, global = true, env = "WGML_BACKEND")]
    pub backend: Option<String>,
    /// Use the first adapter whose name contains this text (case-insensitive).
    #[arg(long, global = true, env = "WGML_ADAPTER")]
    pub adapter: Option<String>,
    /// Matmul precision, as PyTorch's `set_float32_matmul_precision`: highest
    /// (f32, the default) or medium (on GPUs with tensor cores, i.e. cooperative
    /// matrices, products round their inputs to f16 and sum in f32: several
    /// times the speed, about 3 decimal digits per input)
    #[arg(
        long,
        global = true,
        env = "WGML_MATMUL_PRECISION",
        value_name = "highest|medium"
    )]
    pub matmul_precision: Option<String>,
}

impl GpuArgs {
    pub fn context(&self) -> Result<Context> {
        let ctx = Context::new(&ContextOptions {
            backend: self.backend.clone(),
            adapter: self.adapter.clone(),
        })?;
        if let Some(name) = &self.matmul_precision {
            let precision = wgml::gpu::MatmulPrecision::parse(name)?;
            ctx.set_matmul_precision(precision);
            if precision == wgml::gpu::MatmulPrecision::Medium && ctx.coop_matrix().is_none() {
                eprintln!(
                    "note: matmul precision medium asks for tensor cores, but '{}' offers no \
                     cooperative matrices to wgpu: matmuls stay f32",
                    ctx.info.name
                );
            } else if precision == wgml::gpu::MatmulPrecision::Medium
                && !wgml::kernels::matmul_coop::tensor_cores_allowed(&ctx)
                && let Some(Err(why)) = ctx.coop_check()
            {
                eprintln!(
                    "note: the tensor-core matmul failed wgml's check on '{}' ({why}): matmuls \
                     stay f32",
                    ctx.info.name
                );
            }
        }
        if self.backend.is_none() && ctx.info.backend == wgpu::Backend::Gl {
            // Chosen only because nothing else was found: say what is lost.
            eprintln!(
                "note: no Vulkan, Metal or DX12 adapter was found, so wgml runs on OpenGL \
                 ('{}'), without subgroups and several times slower; on Linux without a GPU, \
                 `apt-get install mesa-vulkan-drivers` gives the lavapipe Vulkan driver",
                ctx.info.name
            );
        }
        Ok(ctx)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the adapters found, the one chosen and why, its features and limits.
    Info,
    /// Time kernels on random inputs.
    Bench(bench::BenchArgs),
    /// Train a model (default: the CNN on the embedded MNIST subset).
    Train(Box<train::TrainArgs>),
    /// Evaluate saved weights on a dataset's test split.
    Eval(eval::EvalArgs),
    /// Classify images with saved weights.
    Predict(eval::PredictArgs),
    /// Continue a text with a language model (trained with `--data text:FILE`,
    /// e.g. examples/models/byte_lm.json or bpe_lm.json).
    Generate(generate::GenerateArgs),
    /// Talk with an instruct model (imported with its chat template): each line
    /// of standard input is a message; each reply is printed as it comes.
    Chat(generate::ChatArgs),
    /// Turn a pretrained model from another program's files (a Hugging Face GPT-2
    /// folder) into a wgml checkpoint, for generate, eval and fine-tuning.
    Import(import::ImportArgs),
    /// Write a wgml checkpoint as another program's files (a GPT-2 as a Hugging Face
    /// folder that transformers loads): the way back of import.
    Export(export::ExportArgs),
    /// Check every kernel against its CPU twin on this GPU.
    Selftest,
    /// Measure the kernel choices (matmul variant and split-K factor) of a model's
    /// training and evaluation steps on this GPU (and, for a causal language model,
    /// the matvec variants and attention splits of its key/value-cached generation) and keep them in the
    /// tuning cache, so later runs start with them. Takes `wgml train`'s options.
    Tune(Box<train::TrainArgs>),
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Info => info::run(&cli.gpu),
        Command::Bench(args) => bench::run(&cli.gpu, &args),
        Command::Train(args) => train::run(&cli.gpu, &args),
        Command::Eval(args) => eval::run_eval(&cli.gpu, &args),
        Command::Predict(args) => eval::run_predict(&cli.gpu, &args),
        Command::Generate(args) => generate::run_generate(&cli.gpu, &args),
        Command::Chat(args) => generate::run_chat(&cli.gpu, &args),
        Command::Import(args) => import::run(&args),
        Command::Export(args) => export::run(&args),
        Command::Selftest => selftest::run(&cli.gpu),
        Command::Tune(mut args) => {
            args.tune_only = true;
            train::run(&cli.gpu, &args)
        }
    }
}
