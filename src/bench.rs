//! Benchmarks of the kernels and of one training step, shared by `wgml bench` and
//! the criterion benches in `benches/`.
//!
//! Each benchmark ([`Bench`]) turns a problem size ([`Size`], parsed from the text
//! of `--sizes` by [`Bench::parse_size`]) into one or more [`Case`]s: prepared
//! dispatches on random inputs (never zeros) plus the work they do (flops, bytes
//! or images). [`measure`] runs a case's dispatches as one compute pass, first
//! `warmup` times untimed, then `repeat` times with a [`Timer`] (GPU timestamps
//! when the device has them, else submit-and-wait wall time), and reports the
//! median and the fastest run as a [`BenchRow`]. Rows serialise to JSON (one flat
//! object each) and CSV (the union of every row's columns).
//!
//! Throughput is counted per row as one of:
//! - `gflops` for compute-bound kernels (matmul, conv2d): the arithmetic of the
//!   textbook algorithm (2·M·N·K for a matmul), not what the kernel happens to do.
//! - `gbps` for memory-bound kernels (pool, softmax, Adam): the bytes that must
//!   cross memory at least once (each input read once, each output written once);
//!   re-reads the kernel makes through caches are not counted.
//! - `images_per_s` for a training step.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::error::{Error, Result};
use crate::gpu::{Clock, Context, DType, Dispatch, Tensor, Timer};
use crate::kernels::batchnorm::{self, BatchNormDesc};
use crate::kernels::conv::{self, Activation, Conv2dDesc, Padding};
use crate::kernels::conv_pool::{self, ConvPoolDesc};
use crate::kernels::embedding::{self, EmbeddingGradient};
use crate::kernels::matmul::{self, MatmulDesc, MatmulVariant};
use crate::kernels::optim::{self, Optimizer, StepUniform};
use crate::kernels::pool::{self, Pool2dDesc};
use crate::kernels::softmax;
use crate::nn::model::Batch;
use crate::nn::zoo;

/// One benchmark family of `wgml bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bench {
    /// Matrix multiplication (`matmul`).
    Matmul,
    /// 2-D convolution, forward and forward + backward (`conv`).
    Conv,
    /// 2-D max-pool, forward and backward (`pool`).
    Pool,
    /// Row softmax (`softmax`).
    Softmax,
    /// Batch normalization: training forward, evaluation forward and backward (`batchnorm`).
    BatchNorm,
    /// The fused Adam optimizer step (`adam`).
    Adam,
    /// The embedding table's gradient, both ways (`embedding`).
    Embedding,
    /// One whole training step of the seed CNN (`train-step`).
    TrainStep,
}

/// Parameters of the seed CNN (`zoo::cnn`): 320 (conv) + 346,176 + 650 (dense).
pub const SEED_CNN_PARAMS: usize = 347_146;

impl Bench {
    /// Every benchmark, in the order `all` runs them.
    pub const ALL: [Bench; 8] = [
        Bench::Matmul,
        Bench::Conv,
        Bench::Pool,
        Bench::Softmax,
        Bench::BatchNorm,
        Bench::Adam,
        Bench::Embedding,
        Bench::TrainStep,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Bench::Matmul => "matmul",
            Bench::Conv => "conv",
            Bench::Pool => "pool",
            Bench::Softmax => "softmax",
            Bench::BatchNorm => "batchnorm",
            Bench::Adam => "adam",
            Bench::Embedding => "embedding",
            Bench::TrainStep => "train-step",
        }
    }

    /// The benchmarks a command-line name stands for: one, or every one for `all`.
    pub fn parse(name: &str) -> Result<Vec<Bench>> {
        if name == "all" {
            return Ok(Self::ALL.to_vec());
        }
        Self::ALL
            .into_iter()
            .find(|b| b.name() == name)
            .map(|b| vec![b])
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown benchmark '{name}'; known: {}, all",
                    Self::ALL.map(|b| b.name()).join(", ")
                ))
            })
    }

    /// The sizes run when `--sizes` is not given (in the syntax of [`Bench::size_syntax`]).
    pub fn default_sizes(self) -> &'static [&'static str] {
        match self {
            Bench::Matmul => &["256", "512", "1024"],
            // The seed CNN's first layer at batch 32, then a wider 3x3 layer.
            Bench::Conv => &["32", "32x32x14x14x64x3"],
            // The seed CNN's 2x2 max-pool at batch 32 and 128.
            Bench::Pool => &["32", "128"],
            // The seed CNN's output (10 classes) at batch 128, then a wide softmax.
            Bench::Softmax => &["128x10", "1024x1000"],
            // cnn-bn's two normalizations at batch 32 (after the conv, after the
            // Dense layer), then the conv one at batch 128.
            Bench::BatchNorm => &["32", "32x64x1", "128"],
            Bench::Adam => &["347146", "4194304"],
            // The byte and BPE language models' step (batch 32 of 64 tokens).
            Bench::Embedding => &["2048x256x64", "2048x1024x64"],
            Bench::TrainStep => &["32", "128"],
        }
    }

    /// What one entry of `--sizes` means for this benchmark.
    pub fn size_syntax(self) -> &'static str {
        match self {
            Bench::Matmul => "S (square M = N = K = S) or MxNxK",
            Bench::Conv => {
                "N (the seed CNN's first layer at batch N: 1->32 channels, 3x3, 28x28, stride 1, padding valid) \
                 or NxC_INxHxWxC_OUTxK[xSTRIDE] (KxK kernel, padding valid)"
            }
            Bench::Pool => {
                "N (the seed CNN's 2x2 max-pool at batch N: 32 channels, 26x26) or NxCxHxWxK (KxK window, stride K)"
            }
            Bench::Softmax => "ROWSxCOLS, or ROWS (10 columns, the seed CNN's classes)",
            Bench::BatchNorm => {
                "N (cnn-bn's first normalization at batch N: 32 channels of 26x26) or NxCxS \
                 (C channels of S values per sample; S = 1 for a Dense layer's features)"
            }
            Bench::Adam => "P (parameters in one tensor; the seed CNN has 347146)",
            Bench::Embedding => "TOKENSxVOCABxDIM (ids of a step, table rows, row width)",
            Bench::TrainStep => "B (batch size of one seed-CNN training step)",
        }
    }

    /// Parses one entry of `--sizes` for this benchmark.
    pub fn parse_size(self, text: &str) -> Result<Size> {
        let malformed = || {
            Error::invalid(format!(
                "malformed size '{text}' for '{}': expected {}",
                self.name(),
                self.size_syntax()
            ))
        };
        let t = text.trim();
        let dims: Vec<usize> = t
            .split('x')
            .map(|p| p.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| malformed())?;
        if dims.contains(&0) {
            return Err(Error::invalid(format!(
                "size '{text}' for '{}': every dimension must be at least 1",
                self.name()
            )));
        }
        let size = match (self, dims.as_slice()) {
            (Bench::Matmul, &[s]) => Size::Matmul { m: s, n: s, k: s },
            (Bench::Matmul, &[m, n, k]) => Size::Matmul { m, n, k },
            (Bench::Conv, &[n]) => Size::Conv(seed_conv(n)),
            (Bench::Conv, &[n, c_in, h, w, c_out, k]) => Size::Conv(conv_desc(n, c_in, h, w, c_out, k, 1)),
            (Bench::Conv, &[n, c_in, h, w, c_out, k, s]) => Size::Conv(conv_desc(n, c_in, h, w, c_out, k, s)),
            (Bench::Pool, &[n]) => Size::Pool(Pool2dDesc::square(n, 32, 26, 26, 2)),
            (Bench::Pool, &[n, c, h, w, k]) => Size::Pool(Pool2dDesc::square(n, c, h, w, k)),
            (Bench::Softmax, &[rows]) => Size::Softmax { rows, cols: 10 },
            (Bench::Softmax, &[rows, cols]) => Size::Softmax { rows, cols },
            (Bench::BatchNorm, &[n]) => Size::BatchNorm(BatchNormDesc::new(n, 32, 26 * 26)),
            (Bench::BatchNorm, &[n, c, s]) => Size::BatchNorm(BatchNormDesc::new(n, c, s)),
            (Bench::Adam, &[params]) => Size::Adam { params },
            (Bench::Embedding, &[tokens, vocab, dim]) => Size::Embedding { tokens, vocab, dim },
            (Bench::TrainStep, &[batch]) => Size::TrainStep { batch },
            _ => return Err(malformed()),
        };
        // Shape errors (a kernel larger than its input) surface here, not mid-run.
        match &size {
            Size::Conv(d) => d.validate()?,
            Size::Pool(d) => d.out_hw().map(|_| ())?,
            Size::BatchNorm(d) => d.validate()?,
            _ => {}
        }
        Ok(size)
    }

    /// Parses `--sizes` (or the defaults when `None`).
    pub fn parse_sizes(self, texts: Option<&[String]>) -> Result<Vec<Size>> {
        match texts {
            Some([]) => Err(Error::invalid("--sizes is empty")),
            Some(texts) => texts.iter().map(|t| self.parse_size(t)).collect(),
            None => self.default_sizes().iter().map(|t| self.parse_size(t)).collect(),
        }
    }
}

/// The seed CNN's first layer (`zoo::cnn`) at batch `n`.
pub fn seed_conv(n: usize) -> Conv2dDesc {
    conv_desc(n, 1, 28, 28, 32, 3, 1)
}

fn conv_desc(n: usize, c_in: usize, h: usize, w: usize, c_out: usize, k: usize, s: usize) -> Conv2dDesc {
    Conv2dDesc {
        n,
        c_in,
        h,
        w,
        c_out,
        kh: k,
        kw: k,
        stride: (s, s),
        padding: Padding::Valid,
    }
}

/// One problem size of one benchmark.
#[derive(Clone, Debug, PartialEq)]
pub enum Size {
    /// An `m x k` by `k x n` matrix product.
    Matmul {
        /// Rows of the product.
        m: usize,
        /// Columns of the product.
        n: usize,
        /// The inner (summed-over) dimension.
        k: usize,
    },
    /// A 2-D convolution layer.
    Conv(Conv2dDesc),
    /// A 2-D max-pool.
    Pool(Pool2dDesc),
    /// A softmax over each row of a `rows x cols` matrix.
    Softmax {
        /// Number of rows.
        rows: usize,
        /// Number of columns (classes).
        cols: usize,
    },
    /// A batch normalization.
    BatchNorm(BatchNormDesc),
    /// An Adam step on one parameter tensor.
    Adam {
        /// Parameters in the tensor.
        params: usize,
    },
    /// The gradient of a `[vocab, dim]` embedding table from `tokens` rows.
    Embedding {
        /// Token ids in the step.
        tokens: usize,
        /// Rows of the table.
        vocab: usize,
        /// Width of a row.
        dim: usize,
    },
    /// One training step of the seed CNN.
    TrainStep {
        /// Batch size of the step.
        batch: usize,
    },
}

/// How a benchmark runs: repeats, clock, peaks and matmul's own choices.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Timed runs per case; the median is reported.
    pub repeat: usize,
    /// Untimed runs per case before timing.
    pub warmup: usize,
    /// Force a clock; `None` uses the best the device has.
    pub clock: Option<Clock>,
    /// Adds `fraction_of_peak = gflops / peak` to compute-bound rows.
    pub peak_gflops: Option<f64>,
    /// Adds `fraction_of_peak = gbps / peak` to memory-bound rows.
    pub peak_gbps: Option<f64>,
    /// matmul: layouts to time (`nn`, `nt`, `tn`).
    pub layouts: Vec<String>,
    /// matmul: force a kernel variant.
    pub variant: Option<MatmulVariant>,
    /// matmul: force a split-K factor (1: no split).
    pub split_k: Option<usize>,
    /// Seed of the random inputs.
    pub seed: u64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            repeat: 10,
            warmup: 2,
            clock: None,
            peak_gflops: None,
            peak_gbps: None,
            layouts: vec!["nn".to_string()],
            variant: None,
            split_k: None,
            seed: 42,
        }
    }
}

impl BenchOptions {
    /// Checks repeat, peaks and layouts.
    pub fn validate(&self) -> Result<()> {
        if self.repeat == 0 {
            return Err(Error::invalid("--repeat must be at least 1"));
        }
        for (flag, peak) in [
            ("--peak-gflops", self.peak_gflops),
            ("--peak-gbps", self.peak_gbps),
        ] {
            if let Some(p) = peak
                && !(p.is_finite() && p > 0.0)
            {
                return Err(Error::invalid(format!(
                    "{flag} must be a positive number, got {p}"
                )));
            }
        }
        if self.split_k == Some(0) {
            return Err(Error::invalid("--split-k must be at least 1 (1: no split)"));
        }
        if self.layouts.is_empty() {
            return Err(Error::invalid("--layouts is empty; known: nn, nt, tn"));
        }
        for l in &self.layouts {
            if !["nn", "nt", "tn"].contains(&l.as_str()) {
                return Err(Error::invalid(format!(
                    "unknown matmul layout '{l}'; known: nn, nt, tn"
                )));
            }
        }
        Ok(())
    }
}

/// Parses a matmul variant name (`register_large`, `tiled64`, ...).
pub fn parse_variant(name: &str) -> Result<MatmulVariant> {
    MatmulVariant::from_name(name).ok_or_else(|| {
        Error::invalid(format!(
            "unknown matmul variant '{name}'; known: {} (full precision), {} (tensor cores, \
             f16 inputs)",
            MatmulVariant::ALL.map(|v| v.name()).join(", "),
            MatmulVariant::REDUCED.map(|v| v.name()).join(", ")
        ))
    })
}

/// Parses a clock name: `auto` (None), `gpu`/`gpu-timestamps` or `wall`/`wall-clock`.
pub fn parse_clock(name: &str) -> Result<Option<Clock>> {
    match name {
        "auto" => Ok(None),
        "gpu" | "gpu-timestamps" => Ok(Some(Clock::GpuTimestamps)),
        "wall" | "wall-clock" => Ok(Some(Clock::WallClock)),
        other => Err(Error::invalid(format!(
            "unknown clock '{other}'; known: auto, gpu-timestamps, wall-clock"
        ))),
    }
}

/// The work one run of a case does, which turns a time into a throughput.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Work {
    /// Floating-point operations (compute-bound: reported as `gflops`).
    Flops(f64),
    /// Bytes read + written (memory-bound: reported as `gbps`).
    Bytes(f64),
    /// Training images processed (reported as `images_per_s`).
    Images(usize),
}

/// One prepared thing to time: dispatches on random inputs and what they compute.
#[derive(Debug)]
pub struct Case {
    /// Kernel name, e.g. `matmul_nn` or `conv2d_forward_backward`.
    pub kernel: String,
    /// Variant or configuration, e.g. `register_large` or `im2col`.
    pub variant: String,
    /// Shape keys and values, e.g. `[("m", 256), ("n", 256), ("k", 256)]`.
    pub shape: Vec<(&'static str, usize)>,
    /// The work one run does.
    pub work: Work,
    /// Recorded in order into one compute pass per run.
    pub dispatches: Vec<Dispatch>,
}

/// One timed case.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchRow {
    /// Kernel name, from the case.
    pub kernel: String,
    /// Variant or configuration, from the case.
    pub variant: String,
    /// Shape keys and values, from the case.
    pub shape: Vec<(&'static str, usize)>,
    /// Median time of one run, milliseconds.
    pub ms: f64,
    /// Fastest run, milliseconds.
    pub min_ms: f64,
    /// Compute throughput at the median time (compute-bound rows).
    pub gflops: Option<f64>,
    /// Memory throughput at the median time (memory-bound rows).
    pub gbps: Option<f64>,
    /// Training throughput at the median time (train-step rows).
    pub images_per_s: Option<f64>,
    /// `gflops / --peak-gflops` or `gbps / --peak-gbps`, when a peak was given.
    pub fraction_of_peak: Option<f64>,
    /// Timed runs behind the median.
    pub repeat: usize,
    /// The clock the runs were timed with.
    pub clock: Clock,
    /// Name of the adapter the case ran on.
    pub adapter: String,
}

/// A value of a row as written to JSON and CSV.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A string (kernel, variant, clock, adapter).
    Text(String),
    /// An integer (shape values, repeat).
    Int(usize),
    /// A number (times and throughputs).
    Float(f64),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Text(s) => f.write_str(s),
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
        }
    }
}

/// Keys every row has after its shape keys, in order (optional ones only when set).
const METRIC_KEYS: [&str; 9] = [
    "ms",
    "min_ms",
    "gflops",
    "gbps",
    "images_per_s",
    "fraction_of_peak",
    "repeat",
    "clock",
    "adapter",
];

impl BenchRow {
    /// The row's keys and values in output order: `kernel`, `variant`, the shape
    /// keys, then `ms`, `min_ms`, whichever of `gflops`, `gbps`, `images_per_s`
    /// and `fraction_of_peak` apply, `repeat`, `clock`, `adapter`.
    pub fn fields(&self) -> Vec<(&'static str, Value)> {
        let mut f = vec![
            ("kernel", Value::Text(self.kernel.clone())),
            ("variant", Value::Text(self.variant.clone())),
        ];
        f.extend(self.shape.iter().map(|&(k, v)| (k, Value::Int(v))));
        f.push(("ms", Value::Float(self.ms)));
        f.push(("min_ms", Value::Float(self.min_ms)));
        for (key, v) in [
            ("gflops", self.gflops),
            ("gbps", self.gbps),
            ("images_per_s", self.images_per_s),
            ("fraction_of_peak", self.fraction_of_peak),
        ] {
            if let Some(v) = v {
                f.push((key, Value::Float(v)));
            }
        }
        f.push(("repeat", Value::Int(self.repeat)));
        f.push(("clock", Value::Text(self.clock.name().to_string())));
        f.push(("adapter", Value::Text(self.adapter.clone())));
        f
    }

    /// A shape value by key.
    pub fn dim(&self, key: &str) -> Option<usize> {
        self.shape.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
    }
}

impl Serialize for BenchRow {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let fields = self.fields();
        let mut map = serializer.serialize_map(Some(fields.len()))?;
        for (k, v) in &fields {
            match v {
                Value::Text(s) => map.serialize_entry(k, s)?,
                Value::Int(i) => map.serialize_entry(k, i)?,
                Value::Float(x) => map.serialize_entry(k, x)?,
            }
        }
        map.end()
    }
}

/// Random values in [-1, 1) that are never exactly zero.
pub fn random_nonzero(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v: f32 = rng.random_range(-1.0..1.0);
            if v == 0.0 { 0.5 } else { v }
        })
        .collect()
}

fn random_tensor(ctx: &Context, rng: &mut StdRng, shape: &[usize]) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    Tensor::from_f32(ctx, &random_nonzero(rng, n), shape)
}

/// Builds the cases of one size: inputs, outputs and dispatches.
pub fn prepare(ctx: &Context, size: &Size, opts: &BenchOptions) -> Result<Vec<Case>> {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    match size {
        &Size::Matmul { m, n, k } => prepare_matmul(ctx, &mut rng, m, n, k, opts),
        Size::Conv(desc) => prepare_conv(ctx, &mut rng, desc),
        Size::Pool(desc) => prepare_pool(ctx, &mut rng, desc),
        &Size::Softmax { rows, cols } => prepare_softmax(ctx, &mut rng, rows, cols),
        Size::BatchNorm(desc) => prepare_batchnorm(ctx, &mut rng, desc),
        &Size::Adam { params } => prepare_adam(ctx, &mut rng, params),
        &Size::Embedding { tokens, vocab, dim } => prepare_embedding(ctx, &mut rng, tokens, vocab, dim),
        &Size::TrainStep { batch } => prepare_train_step(ctx, &mut rng, batch),
    }
}

fn prepare_matmul(
    ctx: &Context,
    rng: &mut StdRng,
    m: usize,
    n: usize,
    k: usize,
    opts: &BenchOptions,
) -> Result<Vec<Case>> {
    let a = random_tensor(ctx, rng, &[m * k])?;
    let b = random_tensor(ctx, rng, &[k * n])?;
    let c = Tensor::zeros(ctx, &[m * n], DType::F32)?;
    let mut cases = Vec::new();
    for layout in &opts.layouts {
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
        desc.variant = opts.variant;
        desc.split_k = opts.split_k;
        let choice = matmul::choose(ctx, &desc)?;
        cases.push(Case {
            kernel: desc.layout_name().to_string(),
            variant: choice.name(),
            shape: vec![("m", m), ("n", n), ("k", k)],
            work: Work::Flops(desc.flops()),
            dispatches: matmul::matmul(ctx, &desc, &a, &b, None, &c)?,
        });
    }
    Ok(cases)
}

fn prepare_conv(ctx: &Context, rng: &mut StdRng, desc: &Conv2dDesc) -> Result<Vec<Case>> {
    let out = desc.output_shape()?;
    let x = random_tensor(ctx, rng, &desc.input_shape())?;
    let w = random_tensor(ctx, rng, &desc.weight_shape())?;
    let bias = random_tensor(ctx, rng, &[desc.c_out])?;
    let y = Tensor::zeros(ctx, &out, DType::F32)?;
    let dy = random_tensor(ctx, rng, &out)?;
    let dx = Tensor::zeros(ctx, &desc.input_shape(), DType::F32)?;
    let dw = Tensor::zeros(ctx, &desc.weight_shape(), DType::F32)?;
    let db = Tensor::zeros(ctx, &[desc.c_out], DType::F32)?;
    // As the seed CNN's layer: bias and ReLU in the forward pass; the backward
    // computes dW, db and dX.
    let forward = conv::conv2d_forward(ctx, desc, &x, &w, Some(&bias), Activation::Relu, &y)?;
    let backward = conv::conv2d_backward(ctx, desc, &x, &w, &dy, Some(&dx), &dw, Some(&db))?;
    // Forward: 2·N·C_out·H_out·W_out·C_in·KH·KW; the backward's dW and dX products
    // are each the same size again, so forward + backward counts 3x that.
    let flops = 2.0 * (out[0] * out[1] * out[2] * out[3]) as f64 * desc.ckk() as f64;
    let shape = vec![
        ("n", desc.n),
        ("c_in", desc.c_in),
        ("h", desc.h),
        ("w", desc.w),
        ("c_out", desc.c_out),
        ("kh", desc.kh),
        ("kw", desc.kw),
        ("stride", desc.stride.0),
    ];
    let mut both = forward.clone();
    both.extend(backward);
    let mut cases = vec![
        Case {
            kernel: "conv2d_forward".into(),
            variant: "im2col".into(),
            shape: shape.clone(),
            work: Work::Flops(flops),
            dispatches: forward,
        },
        Case {
            kernel: "conv2d_forward_backward".into(),
            variant: "im2col".into(),
            shape: shape.clone(),
            work: Work::Flops(3.0 * flops),
            dispatches: both,
        },
    ];
    // Where training fuses the layer with its ReLU and a 2x2 max-pool (CPU adapters
    // with subgroups, see kernels::conv_pool), time that pair too: forward, and
    // forward + weight gradient (no dX: 2x the forward's flops).
    let fused = ConvPoolDesc {
        conv: desc.clone(),
        activation: Activation::Relu,
    };
    if let (true, Ok(pooled)) = (ctx.is_cpu() && conv_pool::supported(ctx), fused.pooled_shape()) {
        let yp = Tensor::zeros(ctx, &pooled, DType::F32)?;
        let idx = Tensor::zeros(ctx, &fused.index_shape()?, DType::U32)?;
        let dyp = random_tensor(ctx, rng, &pooled)?;
        let forward = conv_pool::conv_pool_forward(ctx, &fused, &x, &w, &bias, &yp, &idx)?;
        // The backward reads what the forward wrote: fill it once.
        ctx.run(&[&forward])?;
        let mut both = vec![forward.clone()];
        both.extend(conv_pool::conv_pool_backward(
            ctx, &fused, &x, &dyp, &yp, &idx, &dw, &db,
        )?);
        cases.push(Case {
            kernel: "conv_relu_maxpool_forward".into(),
            variant: "fused".into(),
            shape: shape.clone(),
            work: Work::Flops(flops),
            dispatches: vec![forward],
        });
        cases.push(Case {
            kernel: "conv_relu_maxpool_forward_dw".into(),
            variant: "fused".into(),
            shape,
            work: Work::Flops(2.0 * flops),
            dispatches: both,
        });
    }
    Ok(cases)
}

fn prepare_pool(ctx: &Context, rng: &mut StdRng, desc: &Pool2dDesc) -> Result<Vec<Case>> {
    let out = desc.output_shape()?;
    let x = random_tensor(ctx, rng, &desc.input_shape())?;
    let y = Tensor::zeros(ctx, &out, DType::F32)?;
    let indices = Tensor::zeros(ctx, &out, DType::U32)?;
    let dy = random_tensor(ctx, rng, &out)?;
    let dx = Tensor::zeros(ctx, &desc.input_shape(), DType::F32)?;
    let forward = pool::max_pool2d_forward(ctx, desc, &x, &y, &indices)?;
    // The backward reads the indices the forward wrote: fill them once.
    ctx.run(&[&forward])?;
    let backward = pool::max_pool2d_backward(ctx, desc, &dy, &indices, &dx)?;
    let (input, output) = (
        desc.input_shape().iter().product::<usize>() as f64,
        out.iter().product::<usize>() as f64,
    );
    let shape = vec![
        ("n", desc.n),
        ("c", desc.c),
        ("h", desc.h),
        ("w", desc.w),
        ("k", desc.kh),
    ];
    Ok(vec![
        Case {
            kernel: "max_pool2d_forward".into(),
            variant: "direct".into(),
            shape: shape.clone(),
            // Reads x once (4 B/elem); writes y and the u32 indices (8 B per output).
            work: Work::Bytes(4.0 * input + 8.0 * output),
            dispatches: vec![forward],
        },
        Case {
            kernel: "max_pool2d_backward".into(),
            // The form the launcher picks by default: scatter for disjoint windows.
            variant: if desc.windows_disjoint() {
                "scatter"
            } else {
                "gather"
            }
            .into(),
            shape,
            // Reads dy and the indices once (8 B per output); writes dx (4 B/elem).
            work: Work::Bytes(8.0 * output + 4.0 * input),
            dispatches: backward,
        },
    ])
}

fn prepare_softmax(ctx: &Context, rng: &mut StdRng, rows: usize, cols: usize) -> Result<Vec<Case>> {
    let x = random_tensor(ctx, rng, &[rows, cols])?;
    let y = Tensor::zeros(ctx, &[rows, cols], DType::F32)?;
    Ok(vec![Case {
        kernel: "softmax".into(),
        variant: "row".into(),
        shape: vec![("rows", rows), ("cols", cols)],
        // Reads x once and writes y once (4 B each per element); the kernel's
        // second pass over a row is served by caches and not counted.
        work: Work::Bytes(8.0 * (rows * cols) as f64),
        dispatches: vec![softmax::softmax(ctx, &x, &y)?],
    }])
}

/// The table's gradient by scanning and by sorting, on ids drawn as text draws
/// them (Zipf-like: id k about as often as 1 / (k + 1)), so some rows hold long
/// runs and most rows none.
fn prepare_embedding(
    ctx: &Context,
    rng: &mut StdRng,
    tokens: usize,
    vocab: usize,
    dim: usize,
) -> Result<Vec<Case>> {
    // Inverse-CDF draw of a Zipf(1) law over the vocabulary.
    let cdf: Vec<f64> = (1..=vocab)
        .scan(0.0, |acc, k| {
            *acc += 1.0 / k as f64;
            Some(*acc)
        })
        .collect();
    let total = cdf[vocab - 1];
    let ids: Vec<f32> = (0..tokens)
        .map(|_| {
            let u: f64 = rng.random_range(0.0..total);
            cdf.partition_point(|&c| c <= u).min(vocab - 1) as f32
        })
        .collect();
    let ids = Tensor::from_f32(ctx, &ids, &[tokens])?;
    let dy = random_tensor(ctx, rng, &[tokens, dim])?;
    let dtable = Tensor::zeros(ctx, &[vocab, dim], DType::F32)?;
    // Reads every row of dy and writes the table once (the ids and the sort's
    // own traffic are not counted).
    let bytes = 4.0 * ((tokens + vocab) * dim) as f64;
    [EmbeddingGradient::Scan, EmbeddingGradient::Sorted]
        .into_iter()
        .map(|how| {
            Ok(Case {
                kernel: "embedding_backward".into(),
                variant: how.name().into(),
                shape: vec![("tokens", tokens), ("vocab", vocab), ("dim", dim)],
                work: Work::Bytes(bytes),
                dispatches: embedding::embedding_backward_with(ctx, &ids, &dy, &dtable, how)?,
            })
        })
        .collect()
}

/// Training forward (with ReLU, as cnn-bn runs it), evaluation forward and backward.
fn prepare_batchnorm(ctx: &Context, rng: &mut StdRng, desc: &BatchNormDesc) -> Result<Vec<Case>> {
    let d = desc.activation(Activation::Relu);
    let (n, c) = (d.numel(), d.c);
    let x = random_tensor(ctx, rng, &[n])?;
    let dy = random_tensor(ctx, rng, &[n])?;
    let gamma = Tensor::from_f32(ctx, &vec![1.0; c], &[c])?;
    let beta = random_tensor(ctx, rng, &[c])?;
    let moving_mean = Tensor::zeros(ctx, &[c], DType::F32)?;
    let moving_var = Tensor::from_f32(ctx, &vec![1.0; c], &[c])?;
    let stats = Tensor::zeros(ctx, &[2, c], DType::F32)?;
    let (y, dx) = (
        Tensor::zeros(ctx, &[n], DType::F32)?,
        Tensor::zeros(ctx, &[n], DType::F32)?,
    );
    let (dgamma, dbeta) = (
        Tensor::zeros(ctx, &[c], DType::F32)?,
        Tensor::zeros(ctx, &[c], DType::F32)?,
    );
    let shape = vec![("n", d.n), ("c", c), ("s", d.s)];
    let train =
        batchnorm::batchnorm_train(ctx, &d, &x, &gamma, &beta, &y, &stats, &moving_mean, &moving_var)?;
    let backward = batchnorm::batchnorm_backward(
        ctx,
        &d,
        &x,
        &gamma,
        &beta,
        &stats,
        &dy,
        Some(&dx),
        &dgamma,
        &dbeta,
    )?;
    let eval = batchnorm::batchnorm_eval(ctx, &d, &x, &gamma, &beta, &moving_mean, &moving_var, &y)?;
    // The launcher picks the form; the row names it (`*_rows`: one invocation per
    // channel, otherwise one workgroup per channel or per element).
    let case = |kernel: &str, bytes: f64, dispatch: Dispatch| Case {
        kernel: kernel.into(),
        variant: if dispatch.kernel.entry.ends_with("_rows") {
            "rows"
        } else {
            "channel"
        }
        .into(),
        shape: shape.clone(),
        work: Work::Bytes(bytes),
        dispatches: vec![dispatch],
    };
    // Each tensor counted once: x read and y written (8 B per element); backward
    // reads x and dy and writes dx (12 B). The kernels read x more than once (two
    // statistics passes), which caches may or may not serve.
    Ok(vec![
        case("batchnorm_train", 8.0 * n as f64, train),
        case("batchnorm_eval", 8.0 * n as f64, eval),
        case("batchnorm_backward", 12.0 * n as f64, backward),
    ])
}

fn prepare_adam(ctx: &Context, rng: &mut StdRng, params: usize) -> Result<Vec<Case>> {
    let opt = Optimizer::adam(1e-3);
    let step = StepUniform::new(ctx)?;
    step.write(ctx, &opt, 1, opt.lr())?;
    let param = random_tensor(ctx, rng, &[params])?;
    let grad = random_tensor(ctx, rng, &[params])?;
    let m = random_tensor(ctx, rng, &[params])?;
    // The second moment is non-negative.
    let v_data: Vec<f32> = random_nonzero(rng, params).iter().map(|x| x.abs()).collect();
    let v = Tensor::from_f32(ctx, &v_data, &[params])?;
    let d = optim::optimizer_step(ctx, &opt, &step, &param, &grad, &[m, v])?;
    Ok(vec![Case {
        kernel: "adam".into(),
        variant: "fused".into(),
        shape: vec![("params", params)],
        // Reads param, grad, m, v and writes param, m, v: 7 x 4 B per parameter.
        work: Work::Bytes(28.0 * params as f64),
        dispatches: vec![d],
    }])
}

fn prepare_train_step(ctx: &Context, rng: &mut StdRng, batch: usize) -> Result<Vec<Case>> {
    let recipe = zoo::cnn();
    let mut model = recipe
        .model
        .compile(ctx, recipe.loss, recipe.optimizer.clone(), 42)?;
    let sample: usize = recipe.model.input_shape.iter().product();
    let x: Vec<f32> = (0..batch * sample)
        .map(|_| rng.random_range(0.0f32..1.0).max(1e-3))
        .collect();
    let labels: Vec<u32> = (0..batch).map(|_| rng.random_range(0..10u32)).collect();
    // One real step uploads the batch and the optimizer's step values; the timed
    // runs replay the same dispatches (forward, loss, backward, update) as
    // `Model::train_step` records them, in one compute pass.
    model.train_step(
        ctx,
        &Batch {
            x: &x,
            labels: &labels,
            values: &[],
            len: batch,
        },
        recipe.optimizer.lr(),
        |_, _| {},
    )?;
    let dispatches = model.train_dispatches(ctx, batch)?;
    Ok(vec![Case {
        kernel: "train_step".into(),
        variant: recipe.name.into(),
        shape: vec![("batch", batch)],
        work: Work::Images(batch),
        dispatches,
    }])
}

/// Median of a non-empty list.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Times `case`: `opts.warmup` untimed runs, then `opts.repeat` timed ones.
pub fn measure(timer: &mut Timer<'_>, ctx: &Context, case: &Case, opts: &BenchOptions) -> Result<BenchRow> {
    opts.validate()?;
    let refs: Vec<&Dispatch> = case.dispatches.iter().collect();
    if opts.warmup > 0 {
        timer.time_repeats(&refs, opts.warmup)?;
    }
    let times = timer.time_repeats(&refs, opts.repeat)?;
    let ms = median(&times);
    let min_ms = times.iter().copied().fold(f64::INFINITY, f64::min);
    let secs = ms * 1e-3;
    let (mut gflops, mut gbps, mut images_per_s, mut fraction_of_peak) = (None, None, None, None);
    match case.work {
        Work::Flops(f) => {
            let g = f / secs / 1e9;
            gflops = Some(g);
            fraction_of_peak = opts.peak_gflops.map(|p| g / p);
        }
        Work::Bytes(b) => {
            let g = b / secs / 1e9;
            gbps = Some(g);
            fraction_of_peak = opts.peak_gbps.map(|p| g / p);
        }
        Work::Images(n) => images_per_s = Some(n as f64 / secs),
    }
    Ok(BenchRow {
        kernel: case.kernel.clone(),
        variant: case.variant.clone(),
        shape: case.shape.clone(),
        ms,
        min_ms,
        gflops,
        gbps,
        images_per_s,
        fraction_of_peak,
        repeat: opts.repeat,
        clock: timer.clock(),
        adapter: ctx.info.name.clone(),
    })
}

/// A timer with `opts.clock`, or the best the device has.
pub fn timer<'a>(ctx: &'a Context, opts: &BenchOptions) -> Result<Timer<'a>> {
    match opts.clock {
        Some(c) => Timer::with_clock(ctx, c),
        None => Ok(Timer::new(ctx)),
    }
}

/// Runs every size (each knows its benchmark) and returns one row per case.
pub fn run(ctx: &Context, sizes: &[Size], opts: &BenchOptions) -> Result<Vec<BenchRow>> {
    opts.validate()?;
    let mut timer = timer(ctx, opts)?;
    let mut rows = Vec::new();
    for size in sizes {
        for case in prepare(ctx, size, opts)? {
            rows.push(measure(&mut timer, ctx, &case, opts)?);
        }
    }
    Ok(rows)
}

/// The rows as a pretty JSON array of flat objects.
pub fn to_json(rows: &[BenchRow]) -> Result<String> {
    serde_json::to_string_pretty(rows).map_err(|e| Error::invalid(format!("writing JSON: {e}")))
}

/// The CSV columns for `rows`: `kernel`, `variant`, every shape key in order of
/// first appearance, then the metric columns that any row has.
pub fn csv_columns(rows: &[BenchRow]) -> Vec<&'static str> {
    let mut cols = vec!["kernel", "variant"];
    for r in rows {
        for &(k, _) in &r.shape {
            if !cols.contains(&k) {
                cols.push(k);
            }
        }
    }
    let present: Vec<&'static str> = rows.iter().flat_map(|r| r.fields()).map(|(k, _)| k).collect();
    cols.extend(METRIC_KEYS.iter().filter(|k| present.contains(k)));
    cols
}

/// The rows as CSV with a header; a row lacking a column leaves its cell empty.
pub fn to_csv(rows: &[BenchRow]) -> Result<String> {
    let cols = csv_columns(rows);
    let err = |e: &dyn std::fmt::Display| Error::invalid(format!("writing CSV: {e}"));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&cols).map_err(|e| err(&e))?;
    for r in rows {
        let fields = r.fields();
        let record: Vec<String> = cols
            .iter()
            .map(|c| {
                fields
                    .iter()
                    .find(|(k, _)| k == c)
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default()
            })
            .collect();
        w.write_record(&record).map_err(|e| err(&e))?;
    }
    let bytes = w.into_inner().map_err(|e| err(&e))?;
    String::from_utf8(bytes).map_err(|e| err(&e))
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Writes [`to_json`] to `path`.
pub fn write_json(path: &Path, rows: &[BenchRow]) -> Result<()> {
    write_text(path, &(to_json(rows)? + "\n"))
}

/// Writes [`to_csv`] to `path`.
pub fn write_csv(path: &Path, rows: &[BenchRow]) -> Result<()> {
    write_text(path, &to_csv(rows)?)
}

/// A readable table of `rows`: one line each, shape as `key=value` pairs.
pub fn table(rows: &[BenchRow]) -> String {
    let shapes: Vec<String> = rows
        .iter()
        .map(|r| {
            r.shape
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let kw = rows.iter().map(|r| r.kernel.len()).chain([6]).max().unwrap_or(6);
    let vw = rows.iter().map(|r| r.variant.len()).chain([7]).max().unwrap_or(7);
    let sw = shapes.iter().map(|s| s.len()).chain([5]).max().unwrap_or(5);
    let peak = rows.iter().any(|r| r.fraction_of_peak.is_some());
    let mut out = format!(
        "{:<kw$}  {:<vw$}  {:<sw$}  {:>10}  {:>10}  {:>15}",
        "kernel", "variant", "shape", "median ms", "min ms", "throughput"
    );
    if peak {
        out += &format!("  {:>7}", "of peak");
    }
    out.push('\n');
    for (r, shape) in rows.iter().zip(&shapes) {
        let throughput = match (r.gflops, r.gbps, r.images_per_s) {
            (Some(g), _, _) => format!("{g:.2} GFLOP/s"),
            (_, Some(g), _) => format!("{g:.2} GB/s"),
            (_, _, Some(i)) => format!("{i:.1} img/s"),
            _ => String::new(),
        };
        out += &format!(
            "{:<kw$}  {:<vw$}  {:<sw$}  {:>10.3}  {:>10.3}  {:>15}",
            r.kernel, r.variant, shape, r.ms, r.min_ms, throughput
        );
        if peak {
            match r.fraction_of_peak {
                Some(f) => out += &format!("  {:>6.1}%", 100.0 * f),
                None => out += &format!("  {:>7}", "-"),
            }
        }
        out.push('\n');
    }
    out
}
