//! Matmul launchers: `C = op(A)·op(B) [+ bias] [activation]` or `C += op(A)·op(B)`,
//! batched, with the NN, NT (B stored transposed) and TN (A stored transposed)
//! layouts, so backward passes never materialise a transpose.
//!
//! Kernel variants (all serve every shape and layout):
//! - [`MatmulVariant::RegisterLarge`] / [`MatmulVariant::RegisterSmall`]
//!   (`shaders/matmul_subgroup.wgsl`): no workgroup memory and no barriers; each
//!   invocation accumulates a 64×16 (or 16×4) block of C in registers, sharing A
//!   values across the subgroup with shuffles. The default on CPU adapters
//!   (lavapipe), where every memory load is expensive and barriers more so. Needs
//!   the adapter's subgroup feature. The epilogue (activation, bias, accumulate) is
//!   fixed per pipeline by override constants, since lavapipe would otherwise run
//!   every branch of a run-time switch for each output.
//! - [`MatmulVariant::Tiled64`] / [`MatmulVariant::Tiled128`] (`shaders/matmul.wgsl`):
//!   workgroup-memory tiles of 64×64 / 128×128 outputs, double-buffered K tiles and a
//!   4×4 / 8×8 register block per invocation: the variant for real GPUs, and the
//!   fallback everywhere.
//!
//! [`MatmulDesc::variant`] forces one (the tests prove every variant on the adapter
//! they run on); `None` chooses by adapter and shape ([`auto_variant`]).

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::{Kernel, Shader};

/// Elementwise function applied to each output in the matmul epilogue (after the bias).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Activation {
    #[default]
    Identity,
    Relu,
    Sigmoid,
    Tanh,
}

impl Activation {
    /// Every activation, for tests and sweeps.
    pub const ALL: [Activation; 4] = [
        Activation::Identity,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Tanh,
    ];

    /// The code the shaders switch on.
    pub fn code(self) -> u32 {
        match self {
            Activation::Identity => 0,
            Activation::Relu => 1,
            Activation::Sigmoid => 2,
            Activation::Tanh => 3,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
        }
    }
}

/// Which matmul kernel runs. `None` in [`MatmulDesc::variant`] chooses automatically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulVariant {
    /// Register-blocked, no workgroup memory, no barriers, 64×16 outputs per
    /// invocation and 64×128 per workgroup (CPU adapters, large shapes). Needs subgroups.
    RegisterLarge,
    /// As `RegisterLarge` with 16×4 per invocation, 16×32 per workgroup (CPU
    /// adapters, small shapes). Needs subgroups.
    RegisterSmall,
    /// As `RegisterSmall` with 32×4 per invocation, 32×32 per workgroup: half the
    /// B loads per multiply-add, for shapes with few output tiles (the seed CNN's
    /// Dense layers at batch 32). Needs subgroups.
    RegisterMid,
    /// As `RegisterLarge` with 32×16 per invocation, 32×128 per workgroup: no
    /// multiply-adds spent on rows past M when M is 32 (a Dense layer's input
    /// gradient at batch 32). Needs subgroups.
    RegisterWide,
    /// Workgroup-memory tiles of 64×64 outputs, 4×4 per invocation (GPUs, small shapes).
    Tiled64,
    /// Workgroup-memory tiles of 128×128 outputs, 8×8 per invocation (GPUs, large shapes).
    Tiled128,
}

impl MatmulVariant {
    /// Every variant, for tests and benchmarks.
    pub const ALL: [MatmulVariant; 6] = [
        MatmulVariant::RegisterLarge,
        MatmulVariant::RegisterSmall,
        MatmulVariant::RegisterMid,
        MatmulVariant::RegisterWide,
        MatmulVariant::Tiled64,
        MatmulVariant::Tiled128,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MatmulVariant::RegisterLarge => "register_large",
            MatmulVariant::RegisterSmall => "register_small",
            MatmulVariant::RegisterMid => "register_mid",
            MatmulVariant::RegisterWide => "register_wide",
            MatmulVariant::Tiled64 => "tiled64",
            MatmulVariant::Tiled128 => "tiled128",
        }
    }

    /// True for the variants that need the adapter's subgroup feature.
    pub fn needs_subgroups(self) -> bool {
        matches!(
            self,
            MatmulVariant::RegisterLarge
                | MatmulVariant::RegisterSmall
                | MatmulVariant::RegisterMid
                | MatmulVariant::RegisterWide
        )
    }

    /// Outputs one workgroup computes, as (rows, columns) of C.
    pub fn block(self) -> (usize, usize) {
        match self {
            MatmulVariant::RegisterLarge => (REG_LARGE.0 as usize, (REG_WG * REG_LARGE.1) as usize),
            MatmulVariant::RegisterSmall => (REG_SMALL.0 as usize, (REG_WG * REG_SMALL.1) as usize),
            MatmulVariant::RegisterMid => (REG_MID.0 as usize, (REG_WG * REG_MID.1) as usize),
            MatmulVariant::RegisterWide => (REG_WIDE.0 as usize, (REG_WG * REG_WIDE.1) as usize),
            MatmulVariant::Tiled64 => (64, 64),
            MatmulVariant::Tiled128 => (128, 128),
        }
    }
}

/// C = op(A)·op(B) \[+ bias per column\] \[activation\], or C += op(A)·op(B) when accumulate.
///
/// Per batch `t` (0-based), with `A_t = A[a_offset + t·a_batch_stride ..]` and likewise
/// for B and C, all dense row-major:
/// - `op(A_t)` is `[M, K]`; stored as `[M, K]`, or as `[K, M]` when `trans_a` (TN).
/// - `op(B_t)` is `[K, N]`; stored as `[K, N]`, or as `[N, K]` when `trans_b` (NT).
/// - `C_t` is `[M, N]`. `bias` (length N) is added to every row before `activation`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MatmulDesc {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Number of matrices (default 1).
    pub batch: usize,
    /// A stored as `[K, M]` row-major (the "TN" layout) instead of `[M, K]`.
    pub trans_a: bool,
    /// B stored as `[N, K]` row-major (the "NT" layout) instead of `[K, N]`.
    pub trans_b: bool,
    /// Element offsets into the buffers (default 0).
    pub a_offset: usize,
    pub b_offset: usize,
    pub c_offset: usize,
    /// Elements between consecutive batches; 0 broadcasts one matrix to every batch
    /// (A and B only). Defaults are dense: `m·k`, `k·n`, `m·n`.
    pub a_batch_stride: usize,
    pub b_batch_stride: usize,
    pub c_batch_stride: usize,
    /// `C += op(A)·op(B)` (then `bias` must be `None` and `activation` Identity).
    pub accumulate: bool,
    /// Sum the batch's products into one C: `C = act(Σ_t op(A_t)·op(B_t) + bias)`
    /// (or `C += Σ_t …`); C holds one `M×N` matrix and `c_batch_stride` is unused.
    /// A batch-reduce product, e.g. a convolution's weight gradient summed over
    /// images without per-image partials. Register variants only (CPU adapters
    /// with subgroups; see [`supports_reduce_batch`]).
    pub reduce_batch: bool,
    pub activation: Activation,
    /// Force a kernel variant; `None` (default) chooses by adapter and shape.
    pub variant: Option<MatmulVariant>,
}

impl MatmulDesc {
    /// One dense `[M, K]·[K, N]` product, no bias, no activation.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        MatmulDesc {
            m,
            n,
            k,
            batch: 1,
            trans_a: false,
            trans_b: false,
            a_offset: 0,
            b_offset: 0,
            c_offset: 0,
            a_batch_stride: m * k,
            b_batch_stride: k * n,
            c_batch_stride: m * n,
            accumulate: false,
            reduce_batch: false,
            activation: Activation::Identity,
            variant: None,
        }
    }

    /// `batch` dense products (strides stay dense unless set).
    pub fn batched(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// A is stored as `[K, M]`.
    pub fn trans_a(mut self) -> Self {
        self.trans_a = true;
        self
    }

    /// B is stored as `[N, K]`.
    pub fn trans_b(mut self) -> Self {
        self.trans_b = true;
        self
    }

    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// `C += op(A)·op(B)`.
    pub fn accumulate(mut self) -> Self {
        self.accumulate = true;
        self
    }

    /// Sum the batch's products into one C (see [`MatmulDesc::reduce_batch`]).
    pub fn reduce_batch(mut self) -> Self {
        self.reduce_batch = true;
        self
    }

    /// Element offsets of A, B and C in their buffers.
    pub fn offsets(mut self, a: usize, b: usize, c: usize) -> Self {
        self.a_offset = a;
        self.b_offset = b;
        self.c_offset = c;
        self
    }

    /// Elements between batches of A, B and C (0 broadcasts A or B).
    pub fn batch_strides(mut self, a: usize, b: usize, c: usize) -> Self {
        self.a_batch_stride = a;
        self.b_batch_stride = b;
        self.c_batch_stride = c;
        self
    }

    /// Forces a kernel variant.
    pub fn variant(mut self, variant: MatmulVariant) -> Self {
        self.variant = Some(variant);
        self
    }

    /// Kernel name for reports: `matmul_nn`, `matmul_nt`, `matmul_tn` or `matmul_tt`.
    pub fn layout_name(&self) -> &'static str {
        match (self.trans_a, self.trans_b) {
            (false, false) => "matmul_nn",
            (false, true) => "matmul_nt",
            (true, false) => "matmul_tn",
            (true, true) => "matmul_tt",
        }
    }

    /// Floating-point operations of one call (2·M·N·K per batch).
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64 * self.batch as f64
    }

    /// Checks the description against the element counts of the operands; shared by
    /// the launcher and the CPU twin so both reject exactly the same inputs.
    pub fn validate(&self, a_len: usize, b_len: usize, bias_len: Option<usize>, c_len: usize) -> Result<()> {
        const OP: &str = "matmul";
        let (m, n, k, batch) = (self.m, self.n, self.k, self.batch);
        if m == 0 || n == 0 || k == 0 || batch == 0 {
            return Err(Error::shape(
                OP,
                format!("every size must be at least 1, got M={m}, N={n}, K={k}, batch={batch}"),
            ));
        }
        if self.accumulate && (bias_len.is_some() || self.activation != Activation::Identity) {
            return Err(Error::invalid(format!(
                "matmul: accumulate (C += A·B) cannot be combined with a bias or an activation \
                 (got bias: {}, activation: {})",
                bias_len.is_some(),
                self.activation.name()
            )));
        }
        if batch > 1 && !self.reduce_batch && self.c_batch_stride < m * n {
            return Err(Error::shape(
                OP,
                format!(
                    "C batch stride {} is smaller than one M×N = {m}×{n} output, so batches would overlap",
                    self.c_batch_stride
                ),
            ));
        }
        let (a_rows, a_cols) = if self.trans_a { (k, m) } else { (m, k) };
        let (b_rows, b_cols) = if self.trans_b { (n, k) } else { (k, n) };
        // A batch-reduced C is one matrix.
        let (c_batches, c_stride) = if self.reduce_batch {
            (1, 0)
        } else {
            (batch, self.c_batch_stride)
        };
        let operands = [
            (
                "A",
                a_len,
                self.a_offset,
                batch,
                self.a_batch_stride,
                a_rows,
                a_cols,
            ),
            (
                "B",
                b_len,
                self.b_offset,
                batch,
                self.b_batch_stride,
                b_rows,
                b_cols,
            ),
            ("C", c_len, self.c_offset, c_batches, c_stride, m, n),
        ];
        for (name, have, offset, batch, stride, rows, cols) in operands {
            let need =
                (offset as u128) + (batch as u128 - 1) * (stride as u128) + (rows as u128) * (cols as u128);
            if need > have as u128 {
                return Err(Error::shape(
                    OP,
                    format!(
                        "{name} holds {have} elements but needs {need}: offset {offset} + (batch {batch} - 1) × stride {stride} + {rows}×{cols} ({}M={m}, N={n}, K={k})",
                        match (name, self.trans_a, self.trans_b) {
                            ("A", true, _) => "A stored [K, M] (trans_a); ",
                            ("A", false, _) => "A stored [M, K]; ",
                            ("B", _, true) => "B stored [N, K] (trans_b); ",
                            ("B", _, false) => "B stored [K, N]; ",
                            _ => "C stored [M, N]; ",
                        }
                    ),
                ));
            }
            if need > u32::MAX as u128 {
                return Err(Error::TooLarge {
                    what: format!("matmul operand {name} ({need} elements)"),
                    bytes: (need * 4).min(u64::MAX as u128) as u64,
                    limit: u32::MAX as u64 * 4,
                });
            }
        }
        if let Some(len) = bias_len
            && len != n
        {
            return Err(Error::shape(
                OP,
                format!("bias has {len} elements but C has N={n} columns"),
            ));
        }
        Ok(())
    }
}

/// Mirrors `Params` in `shaders/matmul.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    flags: u32,
    a_bs: u32,
    b_bs: u32,
    c_bs: u32,
    act: u32,
    tiles_m: u32,
    tiles_n: u32,
    _pad0: u32,
    _pad1: u32,
}

/// `Params::flags` bits.
const FLAG_ACCUMULATE: u32 = 1;
const FLAG_BIAS: u32 = 2;

const REGISTER_LARGE: Kernel = Kernel::new(Shader::MatmulSubgroup, "matmul_register_large");
const REGISTER_SMALL: Kernel = Kernel::new(Shader::MatmulSubgroup, "matmul_register_small");
const TILED: Kernel = Kernel::new(Shader::Matmul, "matmul_tiled");

/// Invocations per workgroup of the register kernels (one 8-lane subgroup on lavapipe).
const REG_WG: u32 = 8;
/// Rows × columns per invocation of the register kernels (fixed in the shader).
const REG_LARGE: (u32, u32) = (64, 16);
const REG_SMALL: (u32, u32) = (16, 4);
const REG_MID: (u32, u32) = (32, 4);
const REG_WIDE: (u32, u32) = (32, 16);

/// A tiled configuration: block tile BM×BN, K tile BK, per-invocation TM×TN.
#[derive(Clone, Copy, Debug)]
struct TileConfig {
    bm: u32,
    bn: u32,
    bk: u32,
    tm: u32,
    tn: u32,
}

impl TileConfig {
    fn threads(self) -> u32 {
        (self.bm / self.tm) * (self.bn / self.tn)
    }

    /// Bytes of workgroup memory: two buffers of A and B tiles, rows padded by 4.
    fn shared_bytes(self) -> u32 {
        2 * self.bk * ((self.bm + 4) + (self.bn + 4)) * 4
    }
}

fn tile_config(ctx: &Context, variant: MatmulVariant) -> Result<TileConfig> {
    let (bm, tm) = match variant {
        MatmulVariant::Tiled128 => (128, 8),
        _ => (64, 4),
    };
    let mut cfg = TileConfig {
        bm,
        bn: bm,
        bk: 16,
        tm,
        tn: tm,
    };
    let limits = &ctx.limits;
    if cfg.shared_bytes() > limits.max_compute_workgroup_storage_size {
        cfg.bk = 8;
    }
    if cfg.shared_bytes() > limits.max_compute_workgroup_storage_size
        || cfg.threads() > limits.max_compute_invocations_per_workgroup
        || cfg.threads() > limits.max_compute_workgroup_size_x
    {
        return Err(Error::invalid(format!(
            "matmul variant {} needs {} invocations and {} bytes of workgroup memory; this device allows {} and {}",
            variant.name(),
            cfg.threads(),
            cfg.shared_bytes(),
            limits.max_compute_invocations_per_workgroup,
            limits.max_compute_workgroup_storage_size
        )));
    }
    Ok(cfg)
}

/// True when `ctx` runs [`MatmulDesc::reduce_batch`] products: when the variant
/// chosen for them is a register one (CPU adapters with subgroups).
pub fn supports_reduce_batch(ctx: &Context, desc: &MatmulDesc) -> bool {
    auto_variant(ctx, desc).needs_subgroups() && has_subgroups(ctx)
}

/// True when `ctx` can run the subgroup (register) variants.
pub fn has_subgroups(ctx: &Context) -> bool {
    ctx.features.contains(wgpu::Features::SUBGROUP)
}

/// The variants `ctx` can run: all of them, less the subgroup ones where the
/// adapter has no subgroups.
pub fn available_variants(ctx: &Context) -> Vec<MatmulVariant> {
    MatmulVariant::ALL
        .into_iter()
        .filter(|v| !v.needs_subgroups() || has_subgroups(ctx))
        .collect()
}

/// The variant `matmul` uses for `desc` on `ctx` when none is forced.
pub fn auto_variant(ctx: &Context, desc: &MatmulDesc) -> MatmulVariant {
    if let Some(v) = desc.variant {
        return v;
    }
    if ctx.is_cpu() && has_subgroups(ctx) {
        // Cost model from measurements on lavapipe (BENCHMARKS.md): per workgroup
        // and k, the large block costs ~45 load-units for 64×128 outputs, the wide
        // one ~34 for 32×128, the mid one ~13 for 32×32, the small one ~7.3 for
        // 16×32; workgroups run in
        // waves over the CPU's cores. Pick the cheapest for this shape, padding
        // included.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cost = |v: MatmulVariant, unit: f64| {
            let (bm, bn) = v.block();
            let tiles = desc.m.div_ceil(bm) * desc.n.div_ceil(bn);
            tiles.div_ceil(cores) as f64 * unit
        };
        let candidates = [
            (
                MatmulVariant::RegisterLarge,
                cost(MatmulVariant::RegisterLarge, 45.0),
            ),
            (
                MatmulVariant::RegisterWide,
                cost(MatmulVariant::RegisterWide, 34.0),
            ),
            (MatmulVariant::RegisterMid, cost(MatmulVariant::RegisterMid, 13.0)),
            (
                MatmulVariant::RegisterSmall,
                cost(MatmulVariant::RegisterSmall, 7.3),
            ),
        ];
        return candidates
            .into_iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(MatmulVariant::RegisterLarge, |c| c.0);
    }
    // 128×128 tiles only when there are enough of them to fill a large GPU
    // (~100+ multiprocessors, two workgroups each); otherwise 64×64 keeps it busy.
    let tiles128 = desc.m.div_ceil(128) * desc.n.div_ceil(128) * desc.batch;
    if tiles128 >= 256 {
        MatmulVariant::Tiled128
    } else {
        MatmulVariant::Tiled64
    }
}

/// Launches `C = op(A)·op(B) [+ bias] [activation]` (or `C += op(A)·op(B)`) as
/// described by `desc`. All tensors are f32; their shapes are ignored except for
/// their element counts, which must hold the described matrices.
pub fn matmul(
    ctx: &Context,
    desc: &MatmulDesc,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    c: &Tensor,
) -> Result<Dispatch> {
    launch(ctx, desc, a, b, bias, c, None)
}

/// The Adam epilogue's extra bindings (`shaders/matmul_adam.wgsl`).
struct AdamEpilogue<'a> {
    step: &'a wgpu::Buffer,
    hyper: &'a wgpu::Buffer,
    /// Bound at C's binding in place of the parameter, which goes to binding 7.
    c_stand_in: &'a wgpu::Buffer,
    m: &'a wgpu::Buffer,
    v: &'a wgpu::Buffer,
}

/// Weight gradient and Adam step in one dispatch: `G = op(A)·op(B)` is the
/// gradient of the parameter `param` (`[M, N]`), and instead of storing `G` each
/// output applies one step of `optimizer` (Adam or AdamW, with the per-step values
/// of `step`) to `param` and its moments `m`, `v`. Exactly what [`matmul`] into a
/// gradient followed by [`optimizer_step`](crate::kernels::optim::optimizer_step)
/// computes, without the gradient's round trip through memory.
///
/// Needs a register variant (CPU adapters with subgroups: see [`auto_variant`]);
/// `desc` must be a single product (batch 1, no C offset) with N a multiple of 4
/// and no bias, activation or accumulate.
#[allow(clippy::too_many_arguments)]
pub fn matmul_adam(
    ctx: &Context,
    desc: &MatmulDesc,
    a: &Tensor,
    b: &Tensor,
    param: &Tensor,
    m: &Tensor,
    v: &Tensor,
    optimizer: &crate::kernels::optim::Optimizer,
    step: &crate::kernels::optim::StepUniform,
) -> Result<Dispatch> {
    const OP: &str = "matmul_adam";
    if desc.batch != 1
        || desc.accumulate
        || desc.activation != Activation::Identity
        || desc.c_offset != 0
        || !desc.n.is_multiple_of(4)
    {
        return Err(Error::invalid(format!(
            "{OP}: the gradient must be one plain product (batch 1, no activation, no \
             accumulate, no C offset, N a multiple of 4), got batch {}, activation {}, \
             accumulate {}, C offset {}, N {}",
            desc.batch,
            desc.activation.name(),
            desc.accumulate,
            desc.c_offset,
            desc.n
        )));
    }
    if !auto_variant(ctx, desc).needs_subgroups() {
        return Err(Error::invalid(format!(
            "{OP}: the fused Adam epilogue exists for the register kernels only (CPU \
             adapters with subgroups); on '{}' use matmul into a gradient and optimizer_step",
            ctx.info.name
        )));
    }
    let hyper = crate::kernels::optim::adam_hyper(optimizer, param.numel())?;
    for (name, t) in [("m", m), ("v", v)] {
        t.expect_dtype(OP, name, DType::F32)?;
        if t.numel() != param.numel() {
            return Err(Error::shape(
                OP,
                format!(
                    "{name} has {} elements but the parameter has {}",
                    t.numel(),
                    param.numel()
                ),
            ));
        }
    }
    let distinct = [&param.buffer, &m.buffer, &v.buffer, &a.buffer, &b.buffer];
    for (i, x) in distinct.iter().enumerate() {
        if distinct[i + 1..].contains(x) {
            return Err(Error::invalid(format!(
                "{OP}: the parameter, its moments and the two factors must be five separate buffers"
            )));
        }
    }
    let hyper_buffer = ctx.create_buffer(
        "matmul_adam hyper-parameters",
        std::mem::size_of_val(&hyper) as u64,
        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    )?;
    ctx.queue
        .write_buffer(&hyper_buffer, 0, bytemuck::bytes_of(&hyper));
    // The parameter is C for the launcher's checks; C's own binding, which this
    // epilogue never touches, gets a one-element stand-in (the parameter itself is
    // bound writable at 7, and a buffer may not be bound writable twice).
    let stand_in = Tensor::zeros(ctx, &[1], DType::F32)?;
    let adam = AdamEpilogue {
        step: &step.buffer,
        hyper: &hyper_buffer,
        c_stand_in: &stand_in.buffer,
        m: &m.buffer,
        v: &v.buffer,
    };
    launch(ctx, desc, a, b, None, param, Some(adam))
}

fn launch(
    ctx: &Context,
    desc: &MatmulDesc,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    c: &Tensor,
    adam: Option<AdamEpilogue<'_>>,
) -> Result<Dispatch> {
    a.expect_dtype("matmul", "A", DType::F32)?;
    b.expect_dtype("matmul", "B", DType::F32)?;
    c.expect_dtype("matmul", "C", DType::F32)?;
    if let Some(bias) = bias {
        bias.expect_dtype("matmul", "bias", DType::F32)?;
    }
    desc.validate(a.numel(), b.numel(), bias.map(|t| t.numel()), c.numel())?;
    for (name, t) in [("A", Some(a)), ("B", Some(b)), ("bias", bias)] {
        if let Some(t) = t
            && t.buffer == c.buffer
        {
            return Err(Error::invalid(format!(
                "matmul: C shares its buffer with {name}; write the product to a separate tensor"
            )));
        }
    }

    let variant = auto_variant(ctx, desc);
    if desc.reduce_batch && !variant.needs_subgroups() {
        return Err(Error::invalid(format!(
            "matmul: reduce_batch (one C summed over the batch) needs a register variant; \
             variant {} cannot: use batched products and sum them, or a register variant on an \
             adapter with subgroups",
            variant.name()
        )));
    }
    if variant.needs_subgroups() && !has_subgroups(ctx) {
        return Err(Error::invalid(format!(
            "matmul variant {} needs subgroup operations, which adapter '{}' does not offer; \
             use a tiled variant or let wgml choose",
            variant.name(),
            ctx.info.name
        )));
    }
    let layout = [
        ("TRANS_A", desc.trans_a as u32 as f64),
        ("TRANS_B", desc.trans_b as u32 as f64),
    ];
    let (kernel, constants): (Kernel, Vec<(&'static str, f64)>) = match variant {
        MatmulVariant::RegisterLarge
        | MatmulVariant::RegisterSmall
        | MatmulVariant::RegisterMid
        | MatmulVariant::RegisterWide => {
            let entry = match variant {
                MatmulVariant::RegisterLarge | MatmulVariant::RegisterWide => REGISTER_LARGE.entry,
                _ => REGISTER_SMALL.entry,
            };
            let shader = if adam.is_some() {
                Shader::MatmulSubgroupAdam
            } else {
                Shader::MatmulSubgroup
            };
            let kernel = Kernel::new(shader, entry);
            let mut c = layout.to_vec();
            if variant == MatmulVariant::RegisterMid {
                c.push(("SMALL_ROWS", REG_MID.0 as f64));
            }
            if variant == MatmulVariant::RegisterWide {
                c.push(("LARGE_ROWS", REG_WIDE.0 as f64));
            }
            c.extend([
                ("REG_WG", REG_WG as f64),
                ("ACT", desc.activation.code() as f64),
                ("ACCUMULATE", desc.accumulate as u32 as f64),
                ("HAS_BIAS", bias.is_some() as u32 as f64),
            ]);
            if desc.reduce_batch {
                c.push(("REDUCE_BATCH", 1.0));
            }
            (kernel, c)
        }
        MatmulVariant::Tiled64 | MatmulVariant::Tiled128 => {
            let cfg = tile_config(ctx, variant)?;
            let mut c = layout.to_vec();
            c.extend([
                ("BM", cfg.bm as f64),
                ("BN", cfg.bn as f64),
                ("BK", cfg.bk as f64),
                ("TM", cfg.tm as f64),
                ("TN", cfg.tn as f64),
            ]);
            (TILED, c)
        }
    };
    let (bm, bn) = variant.block();
    let tiles_m = desc.m.div_ceil(bm);
    let tiles_n = desc.n.div_ceil(bn);
    let grid_batches = if desc.reduce_batch { 1 } else { desc.batch };
    let total = (tiles_m as u128) * (tiles_n as u128) * (grid_batches as u128);
    if total > u32::MAX as u128 {
        return Err(Error::TooLarge {
            what: format!("a matmul grid of {total} workgroups"),
            bytes: total.min(u64::MAX as u128) as u64,
            limit: u32::MAX as u64,
        });
    }
    let groups = crate::gpu::fold_groups(
        total as u64,
        ctx.limits
            .max_compute_workgroups_per_dimension
            .min(crate::gpu::MAX_GROUPS_PER_DIM),
    )?;
    let mut flags = 0;
    if desc.accumulate {
        flags |= FLAG_ACCUMULATE;
    }
    if bias.is_some() {
        flags |= FLAG_BIAS;
    }
    let params = Params {
        m: desc.m as u32,
        n: desc.n as u32,
        k: desc.k as u32,
        batch: desc.batch as u32,
        a_off: desc.a_offset as u32,
        b_off: desc.b_offset as u32,
        c_off: desc.c_offset as u32,
        flags,
        a_bs: desc.a_batch_stride as u32,
        b_bs: desc.b_batch_stride as u32,
        c_bs: desc.c_batch_stride as u32,
        act: desc.activation.code(),
        tiles_m: tiles_m as u32,
        tiles_n: tiles_n as u32,
        _pad0: 0,
        _pad1: 0,
    };
    // Without a bias, A stands in at the bias binding (both read-only); the shader
    // never reads it because FLAG_BIAS is clear.
    let bias_buffer = bias.map_or(&a.buffer, |t| &t.buffer);
    let bindings = match &adam {
        None => vec![(1, &a.buffer), (2, &b.buffer), (3, bias_buffer), (4, &c.buffer)],
        Some(e) => vec![
            (1, &a.buffer),
            (2, &b.buffer),
            (3, bias_buffer),
            (4, e.c_stand_in),
            (5, e.step),
            (6, e.hyper),
            (7, &c.buffer),
            (8, e.m),
            (9, e.v),
        ],
    };
    ctx.dispatch(kernel, &constants, &params, &bindings, groups)
}
