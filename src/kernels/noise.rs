//! Noise launcher (`shaders/noise.wgsl`): seeded normal or uniform values, drawn anew
//! every step from the per-step uniform's draw number, the same on the CPU twin
//! [`crate::reference::noise`].

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::elementwise::count_u32;
use crate::kernels::optim::StepUniform;
use crate::kernels::{Kernel, Shader, groups_for};

/// Invocations per workgroup.
pub const WG: u32 = 256;

const NOISE: Kernel = Shader::Noise.kernel("noise");

/// Mirrors `Params` in `shaders/noise.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    seed: u32,
    kind: u32,
    _pad: u32,
    a: f32,
    b: f32,
    _pad1: u32,
    _pad2: u32,
}

/// The distribution of the values.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Distribution {
    /// Gaussian with this mean and standard deviation (Box-Muller).
    Normal {
        /// Mean.
        mean: f32,
        /// Standard deviation, ≥ 0.
        std: f32,
    },
    /// Uniform on `[low, high)`.
    Uniform {
        /// Lower bound.
        low: f32,
        /// Upper bound, > `low`.
        high: f32,
    },
}

impl Distribution {
    /// The standard normal N(0, 1).
    pub const STANDARD_NORMAL: Distribution = Distribution::Normal { mean: 0.0, std: 1.0 };

    /// Errors unless the parameters are finite, the deviation non-negative and the
    /// range non-empty.
    pub fn validate(&self) -> Result<()> {
        let ok = match *self {
            Distribution::Normal { mean, std } => mean.is_finite() && std.is_finite() && std >= 0.0,
            Distribution::Uniform { low, high } => low.is_finite() && high.is_finite() && low < high,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "noise {self:?}: a normal needs a finite mean and std ≥ 0, a uniform finite low < high"
            )))
        }
    }

    /// `(kind, a, b)` as the shader takes them.
    pub(crate) fn code(&self) -> (u32, f32, f32) {
        match *self {
            Distribution::Normal { mean, std } => (0, mean, std),
            Distribution::Uniform { low, high } => (1, low, high),
        }
    }
}

/// Fills `y` with values of `dist` for `seed` at the step the per-step uniform
/// holds when the dispatch runs.
pub fn noise(
    ctx: &Context,
    y: &Tensor,
    dist: Distribution,
    seed: u32,
    step: &StepUniform,
) -> Result<Dispatch> {
    y.expect_dtype("noise", "y", DType::F32)?;
    dist.validate()?;
    let (kind, a, b) = dist.code();
    let params = Params {
        n: count_u32("noise", "y", y.numel())?,
        seed,
        kind,
        a,
        b,
        ..Params::default()
    };
    ctx.dispatch(
        NOISE,
        &[("WG", WG as f64)],
        &params,
        &[(1, &step.buffer), (2, &y.buffer)],
        groups_for(ctx, params.n as usize, WG)?,
    )
}
