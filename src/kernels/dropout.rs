//! Dropout launcher (`shaders/dropout.wgsl`): inverted dropout whose mask is a pure
//! function of (seed, step, index), so the backward pass recomputes it. CPU twin:
//! [`crate::reference::dropout`].

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::elementwise::{count_u32, expect_same_shape, same_buffer};
use crate::kernels::optim::StepUniform;
use crate::kernels::{Kernel, Shader, groups_for};

/// Invocations per workgroup.
pub const WG: u32 = 256;

const DROPOUT: Kernel = Shader::Dropout.kernel("dropout");

/// Mirrors `Params` in `shaders/dropout.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    threshold: u32,
    scale: f32,
    seed: u32,
}

/// How a rate becomes the kernel's integers: a unit is dropped when the top 24
/// bits of its hash are below `threshold = round(rate · 2^24)`; kept ones are
/// multiplied by `scale = 1 / (1 − rate)`. Errors unless `0 ≤ rate < 1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutRate {
    /// A unit is dropped when the top 24 bits of its hash are below this: `round(rate · 2^24)`.
    pub threshold: u32,
    /// Multiplier of the kept units: `1 / (1 − rate)`.
    pub scale: f32,
}

impl DropoutRate {
    /// The threshold and scale of `rate`, the fraction of units dropped; errors unless
    /// `0 ≤ rate < 1`.
    pub fn new(rate: f32) -> Result<DropoutRate> {
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::invalid(format!(
                "dropout rate {rate} is outside [0, 1): it is the fraction of units dropped"
            )));
        }
        Ok(DropoutRate {
            threshold: (rate as f64 * (1u32 << 24) as f64).round() as u32,
            scale: (1.0 / (1.0 - rate as f64)) as f32,
        })
    }
}

/// The mask seed of the dropout at graph node `node` of a model initialised from
/// `seed`: distinct layers draw distinct masks (SplitMix64's finaliser of the pair).
pub fn layer_seed(seed: u64, node: usize) -> u32 {
    let mut z = seed ^ (node as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u32
}

/// `y = mask · x / (1 − rate)` with the mask of draw `t` read from `step` (the
/// model's per-step uniform) when the dispatch runs. The same call on a gradient
/// (`x` = dy, `y` = dx) is the backward pass. `x` and `y` must be distinct buffers
/// of one shape.
pub fn dropout(
    ctx: &Context,
    x: &Tensor,
    y: &Tensor,
    rate: f32,
    seed: u32,
    step: &StepUniform,
) -> Result<Dispatch> {
    const OP: &str = "dropout";
    x.expect_dtype(OP, "x", DType::F32)?;
    y.expect_dtype(OP, "y", DType::F32)?;
    expect_same_shape(OP, "x", x, "y", y)?;
    if same_buffer(x, y) {
        return Err(Error::invalid("dropout: x and y must be distinct buffers"));
    }
    let r = DropoutRate::new(rate)?;
    let params = Params {
        n: count_u32(OP, "x", x.numel())?,
        threshold: r.threshold,
        scale: r.scale,
        seed,
    };
    ctx.dispatch(
        DROPOUT,
        &[("WG", WG as f64)],
        &params,
        &[(1, &step.buffer), (2, &y.buffer), (3, &x.buffer)],
        groups_for(ctx, params.n as usize, WG)?,
    )
}
