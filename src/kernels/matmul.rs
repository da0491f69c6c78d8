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
//! - [`MatmulVariant::Tiled64`] / [`MatmulVariant::Tiled128x64`] /
//!   [`MatmulVariant::Tiled128`] (`shaders/matmul.wgsl`): workgroup-memory tiles of
//!   64×64 / 128×64 / 128×128 outputs, 256 invocations each holding a 4×4 / 8×4 /
//!   8×8 register block, double-buffered K tiles of 16, vec4 global loads where the
//!   operands are aligned: the variants for real GPUs, and the fallback everywhere.
//! - [`MatmulVariant::Coop64`] / [`MatmulVariant::Coop128`]
//!   (`shaders/matmul_coop.wgsl`): tensor cores through cooperative matrices, A
//!   and B rounded to f16 after a per-operand power-of-two range scale (found by
//!   a `matmul_amax` pass before the product), sums in f32. Reduced precision:
//!   only where the caller allows it ([`MatmulVariant::REDUCED`]).
//!
//! [`MatmulDesc::variant`] forces one (the tests prove every variant on the adapter
//! they run on); `None` chooses by adapter and shape ([`choose`]).
//!
//! **Split-K.** A product whose output tiles are too few to occupy a GPU (a Dense
//! layer's forward at batch 32: M = 32, N = 64, K = 5408 is one 64×64 tile, one
//! workgroup walking all of K while the other multiprocessors idle) runs in two
//! dispatches: every variant can split K into [`MatmulChoice::splits`] ranges,
//! each workgroup storing the raw partial sum of its range into a scratch buffer,
//! then `matmul_split_reduce` adds the partials of each output in a fixed order
//! and applies the epilogue. No atomics, so a run is reproducible bit for bit.
//! The same reduction sums a batch-reduce product ([`MatmulDesc::reduce_batch`])
//! for the tiled variants. [`MatmulDesc::split_k`] forces a split factor.

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::matmul_coop::tensor_cores_allowed;
use crate::kernels::{Kernel, Shader};

/// Elementwise function applied to each output in the matmul epilogue (after the bias).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Activation {
    /// `x` unchanged.
    #[default]
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// Logistic sigmoid, `1 / (1 + e^-x)`.
    Sigmoid,
    /// Hyperbolic tangent.
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
    /// Workgroup-memory tiles of 128×64 outputs, 8×4 per invocation: twice the
    /// workgroups of `Tiled128` for shapes between the two.
    Tiled128x64,
    /// Tensor cores (cooperative matrices), 64×64 outputs per workgroup, 2×2
    /// fragments per subgroup. **Reduced precision**: A and B rounded to f16
    /// (see [`MatmulVariant::REDUCED`]).
    Coop64,
    /// Tensor cores, 128×128 outputs per workgroup, 4×2 fragments per subgroup.
    /// Reduced precision, as `Coop64`.
    Coop128,
}

impl MatmulVariant {
    /// Every variant, for tests and benchmarks.
    pub const ALL: [MatmulVariant; 7] = [
        MatmulVariant::RegisterLarge,
        MatmulVariant::RegisterSmall,
        MatmulVariant::RegisterMid,
        MatmulVariant::RegisterWide,
        MatmulVariant::Tiled64,
        MatmulVariant::Tiled128,
        MatmulVariant::Tiled128x64,
    ];

    /// The tensor-core variants: `shaders/matmul_coop.wgsl` on the adapter's
    /// cooperative matrices ([`Context::coop_matrix`]), every element of op(A)
    /// and op(B) rounded to f16 (11 significant bits, magnitudes up to 65504)
    /// and the products summed in f32: PyTorch's
    /// `torch.set_float32_matmul_precision("medium")`. Never in
    /// [`MatmulVariant::ALL`], whose variants all equal the f32 twin; they run
    /// only where a caller asks for reduced precision. Their twin is
    /// [`crate::reference::matmul::matmul_f16_inputs`].
    pub const REDUCED: [MatmulVariant; 2] = [MatmulVariant::Coop64, MatmulVariant::Coop128];

    /// Lower-case name, e.g. `tiled64` (as [`MatmulVariant::from_name`] parses it).
    pub fn name(self) -> &'static str {
        match self {
            MatmulVariant::RegisterLarge => "register_large",
            MatmulVariant::RegisterSmall => "register_small",
            MatmulVariant::RegisterMid => "register_mid",
            MatmulVariant::RegisterWide => "register_wide",
            MatmulVariant::Tiled64 => "tiled64",
            MatmulVariant::Tiled128 => "tiled128",
            MatmulVariant::Tiled128x64 => "tiled128x64",
            MatmulVariant::Coop64 => "coop64",
            MatmulVariant::Coop128 => "coop128",
        }
    }

    /// True for the tensor-core variants ([`MatmulVariant::REDUCED`]).
    pub fn is_coop(self) -> bool {
        matches!(self, MatmulVariant::Coop64 | MatmulVariant::Coop128)
    }

    /// True for the register-blocked variants (`shaders/matmul_subgroup.wgsl`).
    pub fn is_register(self) -> bool {
        matches!(
            self,
            MatmulVariant::RegisterLarge
                | MatmulVariant::RegisterSmall
                | MatmulVariant::RegisterMid
                | MatmulVariant::RegisterWide
        )
    }

    /// Parses a name as [`MatmulVariant::name`] writes it.
    pub fn from_name(name: &str) -> Option<MatmulVariant> {
        MatmulVariant::ALL
            .into_iter()
            .chain(MatmulVariant::REDUCED)
            .find(|v| v.name() == name)
    }

    /// True for the variants written for CPU adapters only: their fully unrolled
    /// 64×16 and 32×16 blocks per invocation take GPU compilers minutes (or
    /// never finish) and run at a few percent of the others there (H200:
    /// `register_wide` 90 GFLOP/s at 1024³, `register_large` did not finish in
    /// 20 s; `../shared/gpu-runs/2026-12-04-h200/`). Never offered on GPUs.
    pub fn cpu_only(self) -> bool {
        matches!(self, MatmulVariant::RegisterLarge | MatmulVariant::RegisterWide)
    }

    /// True for the variants that need the adapter's subgroup feature.
    pub fn needs_subgroups(self) -> bool {
        self.is_register() || self.is_coop()
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
            MatmulVariant::Tiled128x64 => (128, 64),
            MatmulVariant::Coop64 => (64, 64),
            MatmulVariant::Coop128 => (128, 128),
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
    /// Rows of `op(A)` and of C (M).
    pub m: usize,
    /// Columns of `op(B)` and of C (N).
    pub n: usize,
    /// Columns of `op(A)` and rows of `op(B)`: the summed dimension (K).
    pub k: usize,
    /// Number of matrices (default 1).
    pub batch: usize,
    /// A stored as `[K, M]` row-major (the "TN" layout) instead of `[M, K]`.
    pub trans_a: bool,
    /// B stored as `[N, K]` row-major (the "NT" layout) instead of `[K, N]`.
    pub trans_b: bool,
    /// Element offsets into the buffers (default 0).
    pub a_offset: usize,
    /// Element offset of B in its buffer (default 0).
    pub b_offset: usize,
    /// Element offset of C in its buffer (default 0).
    pub c_offset: usize,
    /// Elements between consecutive batches; 0 broadcasts one matrix to every batch
    /// (A and B only). Defaults are dense: `m·k`, `k·n`, `m·n`.
    pub a_batch_stride: usize,
    /// Elements between consecutive batches of B; 0 broadcasts one B (default `k·n`).
    pub b_batch_stride: usize,
    /// Elements between consecutive batches of C (default `m·n`).
    pub c_batch_stride: usize,
    /// `C += op(A)·op(B)` (then `bias` must be `None` and `activation` Identity).
    pub accumulate: bool,
    /// Sum the batch's products into one C: `C = act(Σ_t op(A_t)·op(B_t) + bias)`
    /// (or `C += Σ_t …`); C holds one `M×N` matrix and `c_batch_stride` is unused.
    /// A batch-reduce product, e.g. a convolution's weight gradient summed over
    /// images without per-image partials. Every variant runs it: the register
    /// ones sum the batch in registers, the tiled ones through the split-K
    /// reduction.
    pub reduce_batch: bool,
    /// Applied to every output after the bias (default Identity).
    pub activation: Activation,
    /// Force a kernel variant; `None` (default) chooses by adapter and shape.
    pub variant: Option<MatmulVariant>,
    /// Force the number of K ranges of a split-K product (1: no split; see the
    /// module docs); `None` (default) chooses by adapter and shape. Rounded so
    /// that every range is a whole number of 16-element K steps.
    pub split_k: Option<usize>,
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
            split_k: None,
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

    /// Applies `activation` to every output, after the bias.
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

    /// Forces a split-K factor (1: no split).
    pub fn split_k(mut self, splits: usize) -> Self {
        self.split_k = Some(splits);
        self
    }

    /// Workgroups of one output tile grid: `tiles_m · tiles_n · batch` for `variant`
    /// (a batch-reduce product counts its batch too: split-K spreads it).
    fn tile_count(&self, variant: MatmulVariant) -> usize {
        let (bm, bn) = variant.block();
        self.m.div_ceil(bm) * self.n.div_ceil(bn) * self.batch
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
    k_split: u32,
    k_chunk: u32,
}

/// `Params::flags` bits.
const FLAG_ACCUMULATE: u32 = 1;
const FLAG_BIAS: u32 = 2;
const FLAG_REDUCE_BATCH: u32 = 4;

const REGISTER_LARGE: Kernel = Shader::MatmulSubgroup.kernel("matmul_register_large");
const REGISTER_SMALL: Kernel = Shader::MatmulSubgroup.kernel("matmul_register_small");
const TILED: Kernel = Shader::Matmul.kernel("matmul_tiled");
const SPLIT_REDUCE: Kernel = Shader::Matmul.kernel("matmul_split_reduce");
/// Invocations per workgroup of `matmul_split_reduce`.
const SPLIT_REDUCE_WG: u32 = 256;
/// Every split-K range is a multiple of this many K elements (the tiled kernels'
/// largest K tile; the register kernels step K by 8).
const SPLIT_ALIGN: usize = 16;
/// Fewest K elements per split range the automatic choice makes: below this the
/// partials' traffic outweighs the parallelism gained.
pub const MIN_SPLIT_RANGE: usize = 128;
/// Most split ranges the automatic choice makes.
pub const MAX_AUTO_SPLITS: usize = 64;
/// Workgroups the automatic split aims for on a GPU: two per multiprocessor of
/// the largest GPUs wgml has met (132 on an H100/H200), which also fills smaller
/// ones. wgpu does not report the multiprocessor count, so where this guess is
/// wrong the tuner ([`crate::kernels::tune`]) measures the alternatives.
pub const TARGET_WORKGROUPS: usize = 264;

/// Most workgroups per operand of `matmul_amax`, the range-scale pass that runs
/// before every tensor-core product (`shaders/matmul_coop.wgsl`): enough to
/// stream a large operand at memory speed, few enough that each product
/// workgroup re-reduces their parts cheaply.
const AMAX_GROUPS: u32 = 128;
/// Invocations per workgroup of `matmul_amax` (fixed in the shader).
const AMAX_WG: usize = 256;

/// Workgroups per operand of `desc`'s range-scale pass: about 16 elements per
/// invocation of the larger operand, at most [`AMAX_GROUPS`].
fn amax_groups(desc: &MatmulDesc) -> u32 {
    let entries = |stride: usize| if stride == 0 { 1 } else { desc.batch };
    let largest =
        (entries(desc.a_batch_stride) * desc.m * desc.k).max(entries(desc.b_batch_stride) * desc.k * desc.n);
    largest.div_ceil(AMAX_WG * 16).clamp(1, AMAX_GROUPS as usize) as u32
}

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
    let (bm, bn) = variant.block();
    let mut cfg = TileConfig {
        bm: bm as u32,
        bn: bn as u32,
        bk: 16,
        tm: if bm == 128 { 8 } else { 4 },
        tn: if bn == 128 { 8 } else { 4 },
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

/// How a tensor-core variant runs on one device.
struct CoopConfig {
    /// `matmul_coop` in the shader for the adapter's fragment size.
    kernel: Kernel,
    /// Its staging shape, `[BM, BN, BK, invocations]`.
    staging: [u32; 4],
    /// Its override constants: the workgroup tile, K step, fragments per
    /// subgroup, workgroup size and epilogue slots (see `shaders/matmul_coop.wgsl`).
    constants: Vec<(&'static str, f64)>,
}

/// The configuration of a tensor-core variant on `ctx`, checked against the
/// device's limits.
fn coop_config(ctx: &Context, variant: MatmulVariant) -> Result<CoopConfig> {
    let frag = ctx.coop_matrix().map_or(16, |m| m.frag);
    let shader = if frag == 8 {
        Shader::MatmulCoop8
    } else {
        Shader::MatmulCoop16
    };
    let (bm, bn) = variant.block();
    let (bm, bn) = (bm as u32, bn as u32);
    let (fm, fn_) = if variant == MatmulVariant::Coop128 {
        (4, 2)
    } else {
        (2, 2)
    };
    let blocks = (bm / (frag * fm)) * (bn / (frag * fn_));
    let (sub_min, sub_max) = (
        ctx.info.subgroup_min_size.max(1),
        ctx.info.subgroup_max_size.max(ctx.info.subgroup_min_size).max(1),
    );
    let wg = blocks * sub_max;
    let subgroups = wg.div_ceil(sub_min);
    // Two K steps of f16 tiles, and the epilogue slots: K steps of 32, or of 16
    // where the device's workgroup memory is too small for them (lavapipe's
    // 32 KiB with 128×128 tiles; NVIDIA's 48 KiB holds 32).
    // (+16: the two range-scale words, as WebGPU rounds a workgroup variable.)
    let shared_for = |bk: u32| 2 * (bm * bk + bk * bn) * 2 + subgroups * frag * frag * 4 + 16;
    let bk = if shared_for(32) > ctx.limits.max_compute_workgroup_storage_size && frag <= 16 {
        16
    } else {
        32
    };
    let shared = shared_for(bk);
    // matmul_tiled's staging: a whole number of elements per invocation, at
    // most 16 (its register arrays).
    let stages = |elements: u32| elements.is_multiple_of(wg) && elements / wg <= 16;
    if !stages(bm * bk) || !stages(bk * bn) {
        return Err(Error::invalid(format!(
            "matmul variant {} cannot stage its {bm}×{bk} and {bk}×{bn} tiles over {wg} \
             invocations on '{}' (subgroups of {sub_min}-{sub_max})",
            variant.name(),
            ctx.info.name
        )));
    }
    let limits = &ctx.limits;
    if wg > limits.max_compute_invocations_per_workgroup
        || wg > limits.max_compute_workgroup_size_x
        || shared > limits.max_compute_workgroup_storage_size
    {
        return Err(Error::invalid(format!(
            "matmul variant {} needs {wg} invocations and {shared} bytes of workgroup memory \
             on '{}' (subgroups of {sub_min}-{sub_max}); this device allows {} and {}",
            variant.name(),
            ctx.info.name,
            limits.max_compute_invocations_per_workgroup,
            limits.max_compute_workgroup_storage_size
        )));
    }
    Ok(CoopConfig {
        kernel: shader.kernel("matmul_coop"),
        staging: [bm, bn, bk, wg],
        constants: vec![
            ("BM", bm as f64),
            ("BN", bn as f64),
            ("BK", bk as f64),
            ("NT", wg as f64),
            ("CO_FM", fm as f64),
            ("CO_FN", fn_ as f64),
            ("CO_SUBGROUPS", subgroups as f64),
        ],
    })
}

/// True when `ctx` can run the subgroup (register) variants.
pub fn has_subgroups(ctx: &Context) -> bool {
    ctx.subgroups()
}

/// True when `ctx` may run `variant`: the subgroup variants need the adapter's
/// subgroups, the CPU-only ones ([`MatmulVariant::cpu_only`]) a CPU adapter, the
/// tensor-core ones cooperative matrices ([`Context::coop_matrix`]) and a
/// configuration within the device's limits.
pub fn variant_available(ctx: &Context, variant: MatmulVariant) -> bool {
    (!variant.needs_subgroups() || has_subgroups(ctx))
        && (!variant.cpu_only() || ctx.is_cpu())
        && (!variant.is_coop() || (ctx.coop_matrix().is_some() && coop_config(ctx, variant).is_ok()))
}

/// True when automatic choice (the built-in rule or the tuner) may pick
/// `variant` on `ctx`: it is available, and a tensor-core one only where the
/// context allows reduced precision and the tensor cores passed their check
/// ([`tensor_cores_allowed`]).
pub fn variant_allowed(ctx: &Context, variant: MatmulVariant) -> bool {
    variant_available(ctx, variant) && (!variant.is_coop() || tensor_cores_allowed(ctx))
}

/// The tensor-core variants `ctx` can run (empty without cooperative matrices).
pub fn available_reduced_variants(ctx: &Context) -> Vec<MatmulVariant> {
    MatmulVariant::REDUCED
        .into_iter()
        .filter(|&v| variant_available(ctx, v))
        .collect()
}

/// The full-precision variants `ctx` can run (see [`variant_available`]).
pub fn available_variants(ctx: &Context) -> Vec<MatmulVariant> {
    MatmulVariant::ALL
        .into_iter()
        .filter(|&v| variant_available(ctx, v))
        .collect()
}

/// How one product runs: the kernel variant and the number of K ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulChoice {
    /// The kernel variant that runs.
    pub variant: MatmulVariant,
    /// K ranges of a split-K product; 1 runs the product in one dispatch.
    pub splits: usize,
}

impl MatmulChoice {
    /// `variant` or `variant/splitN`, for reports.
    pub fn name(&self) -> String {
        if self.splits > 1 {
            format!("{}/split{}", self.variant.name(), self.splits)
        } else {
            self.variant.name().to_string()
        }
    }
}

/// The choice `matmul` makes for `desc` on `ctx`: what `desc` forces, else what the
/// tuner measured on this adapter ([`crate::kernels::tune`]), else the
/// built-in rule ([`auto_variant`], [`auto_splits`]).
pub fn choose(ctx: &Context, desc: &MatmulDesc) -> Result<MatmulChoice> {
    let tuned = if desc.variant.is_none() || desc.split_k.is_none() {
        crate::kernels::tune::matmul_choice(ctx, desc)?
    } else {
        None
    };
    let variant = match (desc.variant, tuned) {
        (Some(v), _) => v,
        (None, Some(t)) => t.variant,
        (None, None) => auto_variant(ctx, desc),
    };
    let splits = match (desc.split_k, tuned) {
        (Some(s), _) => s,
        (None, Some(t)) if t.variant == variant => t.splits,
        _ => auto_splits(ctx, desc, variant),
    };
    Ok(MatmulChoice {
        variant,
        splits: fit_splits(ctx, desc, splits),
    })
}

/// The split factor the built-in rule picks for `desc` with `variant`: 1 on CPU
/// adapters (their few cores are filled by the output tiles already) and where
/// the tiles reach [`TARGET_WORKGROUPS`] / 2; otherwise enough ranges to reach
/// [`TARGET_WORKGROUPS`] workgroups, each at least [`MIN_SPLIT_RANGE`] long, at
/// most [`MAX_AUTO_SPLITS`].
pub fn auto_splits(ctx: &Context, desc: &MatmulDesc, variant: MatmulVariant) -> usize {
    if ctx.is_cpu() {
        1
    } else {
        gpu_splits(desc, variant)
    }
}

/// The split factor of the built-in rule on a GPU (see [`auto_splits`]).
pub fn gpu_splits(desc: &MatmulDesc, variant: MatmulVariant) -> usize {
    let tiles = desc.tile_count(variant);
    if tiles * 2 >= TARGET_WORKGROUPS {
        return 1;
    }
    TARGET_WORKGROUPS
        .div_ceil(tiles)
        .min(desc.k / MIN_SPLIT_RANGE)
        .clamp(1, MAX_AUTO_SPLITS)
}

/// Most split ranges `desc` can have (one per 16-element K step).
pub fn max_splits(desc: &MatmulDesc) -> usize {
    desc.k.div_ceil(SPLIT_ALIGN)
}

/// `splits` made valid for `desc`: at least 1, no more ranges than 16-element K
/// steps, and few enough that the partials fit one storage binding and u32
/// indices (a batch-reduce product on a tiled variant keeps at least one partial
/// per batch entry).
fn fit_splits(ctx: &Context, desc: &MatmulDesc, splits: usize) -> usize {
    let per_split = (desc.batch as u64) * (desc.m as u64) * (desc.n as u64);
    let room = (ctx.max_binding_bytes() / 4).min(u32::MAX as u64) / per_split.max(1);
    let splits = splits.clamp(1, max_splits(desc));
    split_ranges(desc.k, splits.min(room.max(1) as usize)).0
}

/// `(ranges, range length)` of K split into about `splits` ranges whose length is
/// a multiple of [`SPLIT_ALIGN`]; every range is non-empty.
fn split_ranges(k: usize, splits: usize) -> (usize, usize) {
    let chunk = k.div_ceil(splits.max(1)).next_multiple_of(SPLIT_ALIGN);
    (k.div_ceil(chunk), chunk)
}

/// The variant the built-in rule picks for `desc` on `ctx` (what `matmul` runs
/// when nothing is forced and the tuner has no measurement): on CPU adapters
/// with subgroups, the register block a cost model measured on lavapipe rates
/// cheapest; on GPUs with subgroups `register_small`, the fastest variant
/// measured on an H200 (6.1–6.8 TFLOP/s at 1024³–4096³ against 1.8 for the
/// tiled ones, `../shared/gpu-runs/2026-12-04-h200/`); elsewhere the tiled
/// variant whose tiles fill the device.
pub fn auto_variant(ctx: &Context, desc: &MatmulDesc) -> MatmulVariant {
    if let Some(v) = desc.variant {
        return v;
    }
    // Reduced precision allowed and tensor cores at hand (and checked): they
    // serve every product on a GPU (CPU adapters emulate them, slower than
    // their register kernels).
    if !ctx.is_cpu() && tensor_cores_allowed(ctx) {
        let wanted = if fills_with_128_tiles(desc) {
            [MatmulVariant::Coop128, MatmulVariant::Coop64]
        } else {
            [MatmulVariant::Coop64, MatmulVariant::Coop128]
        };
        if let Some(v) = wanted.into_iter().find(|&v| variant_available(ctx, v)) {
            return v;
        }
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
    if has_subgroups(ctx) {
        return MatmulVariant::RegisterSmall;
    }
    if fills_with_128_tiles(desc) {
        MatmulVariant::Tiled128
    } else {
        MatmulVariant::Tiled64
    }
}

/// Whether `desc` has enough 128×128 output tiles to fill a large GPU (~100+
/// multiprocessors, two workgroups each); otherwise 64×64 tiles keep it busy.
fn fills_with_128_tiles(desc: &MatmulDesc) -> bool {
    desc.m.div_ceil(128) * desc.n.div_ceil(128) * desc.batch >= 256
}

/// Launches `C = op(A)·op(B) [+ bias] [activation]` (or `C += op(A)·op(B)`) as
/// described by `desc`. All tensors are f32; their shapes are ignored except for
/// their element counts, which must hold the described matrices. Returns the
/// dispatches to record in order: one, or two for a split-K product (the
/// partials' scratch buffer lives as long as they do); a tensor-core product
/// starts with its range-scale pass (`matmul_amax`).
pub fn matmul(
    ctx: &Context,
    desc: &MatmulDesc,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    c: &Tensor,
) -> Result<Vec<Dispatch>> {
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
    if !auto_variant(ctx, desc).is_register() {
        return Err(Error::invalid(format!(
            "{OP}: the fused Adam epilogue exists for the register kernels only (CPU \
             adapters with subgroups); on '{}' use matmul into a gradient and optimizer_step",
            ctx.info.name
        )));
    }
    // The epilogue exists in the register kernels only: pin the variant so the
    // tuner never picks another.
    let desc = &MatmulDesc {
        variant: Some(auto_variant(ctx, desc)),
        split_k: Some(1),
        ..desc.clone()
    };
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
    let mut list = launch(ctx, desc, a, b, None, param, Some(adam))?;
    match (list.pop(), list.is_empty()) {
        (Some(d), true) => Ok(d),
        _ => Err(Error::invalid(
            "internal: the Adam epilogue ran as more than one dispatch",
        )),
    }
}

fn launch(
    ctx: &Context,
    desc: &MatmulDesc,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    c: &Tensor,
    adam: Option<AdamEpilogue<'_>>,
) -> Result<Vec<Dispatch>> {
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

    let choice = choose(ctx, desc)?;
    let variant = choice.variant;
    if variant.needs_subgroups() && !has_subgroups(ctx) {
        return Err(Error::invalid(format!(
            "matmul variant {} needs subgroup operations, which adapter '{}' does not offer; \
             use a tiled variant or let wgml choose",
            variant.name(),
            ctx.info.name
        )));
    }
    if variant.is_coop() && ctx.coop_matrix().is_none() {
        return Err(Error::invalid(format!(
            "matmul variant {} runs on tensor cores (cooperative matrices with f16 inputs \
             and f32 sums), which adapter '{}' does not offer to wgpu; use a full-precision \
             variant or let wgml choose",
            variant.name(),
            ctx.info.name
        )));
    }
    if variant.cpu_only() && !ctx.is_cpu() {
        return Err(Error::invalid(format!(
            "matmul variant {} is built for CPU adapters (a fully unrolled block per \
             invocation that GPU compilers take minutes over) and is not offered on '{}'; \
             use register_small, register_mid, tiled64 or tiled128, or let wgml choose",
            variant.name(),
            ctx.info.name
        )));
    }
    // Split-K (or a tiled batch-reduce product): partials, then the reduction.
    let split = choice.splits > 1 || (desc.reduce_batch && !variant.is_register());
    let (splits, chunk) = if split {
        split_ranges(desc.k, choice.splits)
    } else {
        (1, desc.k)
    };
    let layout = [
        ("TRANS_A", desc.trans_a as u32 as f64),
        ("TRANS_B", desc.trans_b as u32 as f64),
    ];
    // The first dispatch's own epilogue: none when it stores partials.
    let (act, accumulate, has_bias) = if split {
        (Activation::Identity, false, false)
    } else {
        (desc.activation, desc.accumulate, bias.is_some())
    };
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
            let kernel = match (adam.is_some(), entry == REGISTER_LARGE.entry) {
                (false, _) => shader.kernel(entry),
                (true, true) => shader.kernel(entry).labelled("matmul_register_large+adam"),
                (true, false) => shader.kernel(entry).labelled("matmul_register_small+adam"),
            };
            let mut c = layout.to_vec();
            if variant == MatmulVariant::RegisterMid {
                c.push(("SMALL_ROWS", REG_MID.0 as f64));
            }
            if variant == MatmulVariant::RegisterWide {
                c.push(("LARGE_ROWS", REG_WIDE.0 as f64));
            }
            c.extend([
                ("REG_WG", REG_WG as f64),
                ("ACT", act.code() as f64),
                ("ACCUMULATE", accumulate as u32 as f64),
                ("HAS_BIAS", has_bias as u32 as f64),
            ]);
            if split {
                c.push(("SPLIT_K", 1.0));
            } else if desc.reduce_batch {
                c.push(("REDUCE_BATCH", 1.0));
            }
            (kernel, c)
        }
        MatmulVariant::Tiled64 | MatmulVariant::Tiled128 | MatmulVariant::Tiled128x64 => {
            let cfg = tile_config(ctx, variant)?;
            let mut c = layout.to_vec();
            c.extend([
                ("BM", cfg.bm as f64),
                ("BN", cfg.bn as f64),
                ("BK", cfg.bk as f64),
                ("TM", cfg.tm as f64),
                ("TN", cfg.tn as f64),
            ]);
            if split {
                c.push(("SPLIT_K", 1.0));
            }
            if vec4_loads(desc, [cfg.bm, cfg.bn, cfg.bk, cfg.threads()]) {
                c.push(("VEC4", 1.0));
            }
            (TILED, c)
        }
        MatmulVariant::Coop64 | MatmulVariant::Coop128 => {
            let coop = coop_config(ctx, variant)?;
            let mut c = layout.to_vec();
            c.extend(coop.constants);
            if vec4_loads(desc, coop.staging) {
                c.push(("VEC4", 1.0));
            }
            c.push(("AMAX_GROUPS", AMAX_GROUPS as f64));
            if split {
                c.push(("SPLIT_K", 1.0));
            }
            (coop.kernel, c)
        }
    };
    let (bm, bn) = variant.block();
    let tiles_m = desc.m.div_ceil(bm);
    let tiles_n = desc.n.div_ceil(bn);
    let grid_batches = if split {
        desc.batch * splits
    } else if desc.reduce_batch {
        1
    } else {
        desc.batch
    };
    let groups = grid(
        ctx,
        (tiles_m as u128) * (tiles_n as u128) * (grid_batches as u128),
        "a matmul grid",
    )?;
    let mut flags = 0;
    if desc.accumulate {
        flags |= FLAG_ACCUMULATE;
    }
    if bias.is_some() {
        flags |= FLAG_BIAS;
    }
    if desc.reduce_batch {
        flags |= FLAG_REDUCE_BATCH;
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
        k_split: splits as u32,
        k_chunk: chunk as u32,
    };
    // Without a bias, A stands in at the bias binding (both read-only); the shader
    // never reads it because FLAG_BIAS is clear.
    let bias_buffer = bias.map_or(&a.buffer, |t| &t.buffer);
    // The tiled and tensor-core kernels also bind A and B as arrays of vec4 (read
    // only with VEC4); an operand smaller than one vec4 gets a 16-byte stand-in.
    let binds_vec4 = kernel == TILED || variant.is_coop();
    let stand_in = if binds_vec4 && (a.buffer.size() < 16 || b.buffer.size() < 16) {
        Some(ctx.create_buffer("matmul vec4 stand-in", 16, wgpu::BufferUsages::STORAGE)?)
    } else {
        None
    };
    let [a4, b4] = [a, b].map(|t| match &stand_in {
        Some(s) if t.buffer.size() < 16 => s,
        _ => &t.buffer,
    });
    // The tensor-core kernel reads its operands' range scales from the parts
    // that matmul_amax stores first (shaders/matmul_coop.wgsl).
    let amax_parts = if variant.is_coop() {
        Some(ctx.create_buffer(
            "matmul range-scale parts",
            2 * AMAX_GROUPS as u64 * 4,
            wgpu::BufferUsages::STORAGE,
        )?)
    } else {
        None
    };
    let mut dispatches = Vec::new();
    if let Some(parts) = &amax_parts {
        dispatches.push(ctx.dispatch(
            Kernel::new(kernel.shader, "matmul_amax"),
            &[("AMAX_GROUPS", AMAX_GROUPS as f64)],
            &params,
            &[(1, &a.buffer), (2, &b.buffer), (7, parts)],
            [2 * amax_groups(desc), 1, 1],
        )?);
    }
    let mut extra_bindings: Vec<(u32, &wgpu::Buffer)> = if binds_vec4 {
        vec![(5, a4), (6, b4)]
    } else {
        Vec::new()
    };
    if let Some(parts) = &amax_parts {
        extra_bindings.push((7, parts));
    }
    if split {
        // One partial per (batch entry, K range); fit_splits kept it bindable.
        let partials = (desc.batch * splits * desc.m * desc.n) as u64;
        let scratch = ctx.create_buffer(
            "matmul split-K partials",
            partials * 4,
            wgpu::BufferUsages::STORAGE,
        )?;
        let mut bindings = vec![(1, &a.buffer), (2, &b.buffer), (3, bias_buffer), (4, &scratch)];
        bindings.extend(&extra_bindings);
        dispatches.push(ctx.dispatch(kernel, &constants, &params, &bindings, groups)?);
        let outputs = if desc.reduce_batch { 1 } else { desc.batch } * desc.m * desc.n;
        dispatches.push(ctx.dispatch(
            SPLIT_REDUCE,
            &[("SR_WG", SPLIT_REDUCE_WG as f64)],
            &params,
            &[(1, &scratch), (3, bias_buffer), (4, &c.buffer)],
            grid(
                ctx,
                outputs.div_ceil(SPLIT_REDUCE_WG as usize) as u128,
                "a split-K reduction",
            )?,
        )?);
        return Ok(dispatches);
    }
    let bindings = match &adam {
        None => {
            let mut list = vec![(1, &a.buffer), (2, &b.buffer), (3, bias_buffer), (4, &c.buffer)];
            list.extend(&extra_bindings);
            list
        }
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
    dispatches.push(ctx.dispatch(kernel, &constants, &params, &bindings, groups)?);
    Ok(dispatches)
}

/// Whether `matmul_tiled`'s staging (also the tensor-core kernel's), with tiles
/// `[BM, BN, BK, invocations]`, may load both operands of `desc` as vec4s: each
/// operand's contiguous dimension (K for A, N for B; M and K when stored
/// transposed), element offset and batch stride are multiples of 4, and the
/// tiles split into whole vec4s per invocation (at most 4 each).
fn vec4_loads(desc: &MatmulDesc, [bm, bn, bk, threads]: [u32; 4]) -> bool {
    let a_row = if desc.trans_a { desc.m } else { desc.k };
    let b_row = if desc.trans_b { desc.k } else { desc.n };
    let aligned = [
        a_row,
        b_row,
        desc.a_offset,
        desc.b_offset,
        desc.a_batch_stride,
        desc.b_batch_stride,
    ]
    .iter()
    .all(|x| x.is_multiple_of(4));
    let per_thread = |rows: u32| {
        let vecs = rows * bk / 4;
        vecs.is_multiple_of(threads) && (1..=4).contains(&(vecs / threads))
    };
    aligned && per_thread(bm) && per_thread(bn)
}

/// A grid of `total` workgroups folded to the device's per-dimension limit.
fn grid(ctx: &Context, total: u128, what: &str) -> Result<[u32; 3]> {
    if total > u32::MAX as u128 {
        return Err(Error::TooLarge {
            what: format!("{what} of {total} workgroups"),
            bytes: total.min(u64::MAX as u128) as u64,
            limit: u32::MAX as u64,
        });
    }
    crate::gpu::fold_groups(total as u64, ctx.max_groups_per_dim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_ranges_are_aligned_non_empty_and_cover_k() {
        for k in [1, 15, 16, 17, 100, 257, 676, 5408, 100_000] {
            for asked in [1, 2, 3, 7, 16, 42, 64, 1000] {
                let (ranges, chunk) = split_ranges(k, asked);
                assert!(chunk.is_multiple_of(SPLIT_ALIGN), "k {k}, {asked}: chunk {chunk}");
                assert!(
                    ranges >= 1 && ranges <= asked.max(1),
                    "k {k}, {asked}: {ranges} ranges"
                );
                assert!(
                    (ranges - 1) * chunk < k && ranges * chunk >= k,
                    "k {k}, {asked}: {ranges} x {chunk}"
                );
            }
        }
        assert_eq!(split_ranges(5408, 42), (38, 144));
    }

    #[test]
    fn gpu_splits_fill_the_device_only_where_tiles_cannot() {
        // The seed CNN's Dense forward at batch 32: one 64×64 tile.
        let dense = MatmulDesc::new(32, 64, 5408);
        assert_eq!(gpu_splits(&dense, MatmulVariant::Tiled64), 5408 / MIN_SPLIT_RANGE);
        // Short K: no range under MIN_SPLIT_RANGE.
        assert_eq!(
            gpu_splits(&MatmulDesc::new(32, 64, 200), MatmulVariant::Tiled64),
            1
        );
        // Enough tiles already.
        assert_eq!(
            gpu_splits(&MatmulDesc::new(1024, 1024, 4096), MatmulVariant::Tiled64),
            1
        );
        // Capped.
        assert_eq!(
            gpu_splits(&MatmulDesc::new(1, 1, 1 << 20), MatmulVariant::Tiled64),
            MAX_AUTO_SPLITS
        );
    }
}
