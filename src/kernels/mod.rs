//! Typed launchers, one module per shader family in `shaders/`.
//!
//! Each launcher validates shapes, returns an [`Error`](crate::Error) for anything
//! that does not fit, and builds a [`Dispatch`](crate::gpu::Dispatch) (pipeline,
//! bind group and uniform parameters) once. The CPU twin of every kernel lives in
//! [`crate::reference`] under the same module name.

pub mod attention;
pub mod attention_decode;
pub mod batchnorm;
pub mod clip;
pub mod conv;
pub mod conv_pool;
pub mod copy;
pub mod dropout;
pub mod elementwise;
pub mod embedding;
pub mod layer_norm;
pub mod loss;
pub mod matmul;
pub mod matmul_coop;
pub mod matvec;
pub mod noise;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod rotary;
pub mod sequence;
pub mod softmax;
pub mod swap_axes;
pub mod tune;

/// A WGSL source file of `shaders/`, embedded at compile time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shader {
    /// Fused scaled dot-product attention over heads (`shaders/attention.wgsl`).
    Attention,
    /// One key/value-cache decoding step's attention (`shaders/attention_decode.wgsl`).
    AttentionDecode,
    /// Batch normalization with its activation (`shaders/batchnorm.wgsl`).
    Batchnorm,
    /// Gradient clipping by global norm (`shaders/clip.wgsl`).
    Clip,
    /// Convolution helpers: im2col, col2im, weight packing, weight-gradient reduction
    /// (`shaders/conv.wgsl`).
    Conv,
    /// Fused convolution, activation and 2×2 max-pool (`shaders/conv_pool.wgsl`).
    ConvPool,
    /// Block copies: concatenation and slicing (`shaders/copy.wgsl`).
    Copy,
    /// Inverted dropout (`shaders/dropout.wgsl`).
    Dropout,
    /// Embedding lookup and its gradient (`shaders/embedding.wgsl`).
    Embedding,
    /// Elementwise kernels over flat arrays (`shaders/elementwise.wgsl`).
    Elementwise,
    /// Layer normalization over the last axis (`shaders/layer_norm.wgsl`).
    LayerNorm,
    /// Per-sample losses and their gradients (`shaders/loss.wgsl`).
    Loss,
    /// The tiled workgroup-memory matmul and the split-K reduction (`shaders/matmul.wgsl`).
    Matmul,
    /// The tensor-core matmul on 16×16×16 cooperative matrices
    /// (`shaders/matmul_coop16.wgsl` + `shaders/matmul_coop.wgsl`).
    MatmulCoop16,
    /// The tensor-core matmul on 8×8×8 cooperative matrices
    /// (`shaders/matmul_coop8.wgsl` + `shaders/matmul_coop.wgsl`).
    MatmulCoop8,
    /// The register-blocked subgroup matmul (`shaders/matmul_subgroup.wgsl`).
    MatmulSubgroup,
    /// `MatmulSubgroup` with the Adam epilogue (`shaders/matmul_adam.wgsl`).
    MatmulSubgroupAdam,
    /// A few rows times a Dense weight (`shaders/matvec.wgsl`).
    Matvec,
    /// Seeded random values per step (`shaders/noise.wgsl`).
    Noise,
    /// Fused optimizer steps (`shaders/optim.wgsl`).
    Optim,
    /// Max and average pooling (`shaders/pool.wgsl`).
    Pool,
    /// Reductions: sums, means, row argmax and accuracy counts (`shaders/reduce.wgsl`).
    Reduce,
    /// Rotary position embedding (`shaders/rotary.wgsl`).
    Rotary,
    /// Padded sequences: lengths and pools (`shaders/sequence.wgsl`).
    Sequence,
    /// Row softmax and log-softmax (`shaders/softmax.wgsl`).
    Softmax,
    /// Swapping the two middle axes of a 4-D view (`shaders/swap_axes.wgsl`).
    SwapAxes,
}

impl Shader {
    /// Every shader, for validation and `selftest`.
    pub const ALL: [Shader; 26] = [
        Shader::Attention,
        Shader::AttentionDecode,
        Shader::Batchnorm,
        Shader::Clip,
        Shader::Conv,
        Shader::ConvPool,
        Shader::Copy,
        Shader::Dropout,
        Shader::Embedding,
        Shader::Elementwise,
        Shader::LayerNorm,
        Shader::Loss,
        Shader::Matmul,
        Shader::MatmulCoop16,
        Shader::MatmulCoop8,
        Shader::MatmulSubgroup,
        Shader::MatmulSubgroupAdam,
        Shader::Matvec,
        Shader::Noise,
        Shader::Optim,
        Shader::Pool,
        Shader::Reduce,
        Shader::Rotary,
        Shader::Sequence,
        Shader::Softmax,
        Shader::SwapAxes,
    ];

    /// The module as the GPU layer compiles it.
    pub const fn module(self) -> crate::gpu::ShaderSource {
        crate::gpu::ShaderSource {
            name: self.name(),
            wgsl: self.source(),
        }
    }

    /// A kernel of this shader: its entry point `entry`.
    pub const fn kernel(self, entry: &'static str) -> Kernel {
        Kernel::new(self.module(), entry)
    }

    /// File name without extension.
    pub const fn name(self) -> &'static str {
        match self {
            Shader::Attention => "attention",
            Shader::AttentionDecode => "attention_decode",
            Shader::Batchnorm => "batchnorm",
            Shader::Clip => "clip",
            Shader::Conv => "conv",
            Shader::ConvPool => "conv_pool",
            Shader::Copy => "copy",
            Shader::Dropout => "dropout",
            Shader::Embedding => "embedding",
            Shader::Elementwise => "elementwise",
            Shader::LayerNorm => "layer_norm",
            Shader::Loss => "loss",
            Shader::Noise => "noise",
            Shader::Matmul => "matmul",
            Shader::MatmulCoop16 => "matmul_coop16",
            Shader::MatmulCoop8 => "matmul_coop8",
            Shader::MatmulSubgroup => "matmul_subgroup",
            Shader::MatmulSubgroupAdam => "matmul_adam",
            Shader::Matvec => "matvec",
            Shader::Optim => "optim",
            Shader::Pool => "pool",
            Shader::Reduce => "reduce",
            Shader::Rotary => "rotary",
            Shader::Sequence => "sequence",
            Shader::Softmax => "softmax",
            Shader::SwapAxes => "swap_axes",
        }
    }

    /// The WGSL text.
    pub const fn source(self) -> &'static str {
        match self {
            Shader::Attention => concat!(
                include_str!("../../shaders/step.wgsl"),
                include_str!("../../shaders/hash.wgsl"),
                include_str!("../../shaders/attention.wgsl")
            ),
            Shader::Batchnorm => concat!(
                include_str!("../../shaders/activation.wgsl"),
                include_str!("../../shaders/batchnorm.wgsl")
            ),
            Shader::Clip => include_str!("../../shaders/clip.wgsl"),
            Shader::Conv => concat!(
                include_str!("../../shaders/plane.wgsl"),
                include_str!("../../shaders/conv.wgsl")
            ),
            Shader::ConvPool => concat!(
                include_str!("../../shaders/activation.wgsl"),
                include_str!("../../shaders/conv_pool.wgsl")
            ),
            Shader::Copy => include_str!("../../shaders/copy.wgsl"),
            Shader::Dropout => concat!(
                include_str!("../../shaders/step.wgsl"),
                include_str!("../../shaders/hash.wgsl"),
                include_str!("../../shaders/dropout.wgsl")
            ),
            Shader::Matvec => concat!(
                include_str!("../../shaders/activation.wgsl"),
                include_str!("../../shaders/matvec.wgsl")
            ),
            Shader::Noise => concat!(
                include_str!("../../shaders/step.wgsl"),
                include_str!("../../shaders/hash.wgsl"),
                include_str!("../../shaders/noise.wgsl")
            ),
            Shader::Elementwise => include_str!("../../shaders/elementwise.wgsl"),
            Shader::Embedding => include_str!("../../shaders/embedding.wgsl"),
            Shader::LayerNorm => include_str!("../../shaders/layer_norm.wgsl"),
            Shader::Loss => include_str!("../../shaders/loss.wgsl"),
            Shader::Matmul => concat!(
                include_str!("../../shaders/activation.wgsl"),
                include_str!("../../shaders/matmul.wgsl")
            ),
            Shader::MatmulCoop16 => concat!(
                include_str!("../../shaders/matmul_coop16.wgsl"),
                include_str!("../../shaders/activation.wgsl"),
                include_str!("../../shaders/matmul.wgsl"),
                include_str!("../../shaders/matmul_coop.wgsl")
            ),
            Shader::MatmulCoop8 => concat!(
                include_str!("../../shaders/matmul_coop8.wgsl"),
                include_str!("../../shaders/activation.wgsl"),
                include_str!("../../shaders/matmul.wgsl"),
                include_str!("../../shaders/matmul_coop.wgsl")
            ),
            Shader::MatmulSubgroup => concat!(
                include_str!("../../shaders/activation.wgsl"),
                include_str!("../../shaders/matmul_subgroup.wgsl"),
                include_str!("../../shaders/matmul_store.wgsl")
            ),
            Shader::MatmulSubgroupAdam => concat!(
                include_str!("../../shaders/activation.wgsl"),
                include_str!("../../shaders/step.wgsl"),
                include_str!("../../shaders/adam.wgsl"),
                include_str!("../../shaders/matmul_subgroup.wgsl"),
                include_str!("../../shaders/matmul_adam.wgsl")
            ),
            Shader::Optim => concat!(
                include_str!("../../shaders/step.wgsl"),
                include_str!("../../shaders/adam.wgsl"),
                include_str!("../../shaders/optim.wgsl")
            ),
            Shader::Pool => concat!(
                include_str!("../../shaders/plane.wgsl"),
                include_str!("../../shaders/pool.wgsl")
            ),
            Shader::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Shader::Rotary => concat!(
                include_str!("../../shaders/position.wgsl"),
                include_str!("../../shaders/rotary.wgsl")
            ),
            Shader::AttentionDecode => concat!(
                include_str!("../../shaders/position.wgsl"),
                include_str!("../../shaders/attention_decode.wgsl")
            ),
            Shader::Sequence => include_str!("../../shaders/sequence.wgsl"),
            Shader::Softmax => include_str!("../../shaders/softmax.wgsl"),
            Shader::SwapAxes => include_str!("../../shaders/swap_axes.wgsl"),
        }
    }
}

pub use crate::gpu::Kernel;

/// Parses and validates a WGSL source with naga (no GPU needed).
pub fn validate_wgsl(shader: Shader) -> crate::Result<()> {
    parse_wgsl(shader).map(|_| ())
}

/// The naga module of a shader and its validation info.
pub fn parse_wgsl(shader: Shader) -> crate::Result<(naga::Module, naga::valid::ModuleInfo)> {
    crate::gpu::parse_wgsl(shader.module())
}

/// Workgroup-count helper: groups of `size` invocations covering `n` items, folded
/// into a grid the device accepts.
pub fn groups_for(ctx: &crate::gpu::Context, n: usize, size: u32) -> crate::Result<[u32; 3]> {
    crate::gpu::fold_groups((n as u64).div_ceil(size as u64), ctx.max_groups_per_dim())
}
