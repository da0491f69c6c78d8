//! Elementwise launchers: fill, activations forward/backward, add, mul, axpy, bias add.

use crate::error::Result;
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::{Kernel, Shader, groups_for};

/// Invocations per workgroup of the elementwise kernels.
pub const WG: u32 = 256;

/// Mirrors `Params` in `shaders/elementwise.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

const FILL: Kernel = Kernel::new(Shader::Elementwise, "fill");

/// `y[i] = value` for every element of `y`.
pub fn fill(ctx: &Context, y: &Tensor, value: f32) -> Result<Dispatch> {
    y.expect_dtype("fill", "y", DType::F32)?;
    let n = y.numel();
    let params = Params {
        n: n as u32,
        alpha: value,
        beta: 0.0,
        _pad: 0,
    };
    ctx.dispatch(
        FILL,
        &[("WG", WG as f64)],
        &params,
        &[(1, &y.buffer)],
        groups_for(ctx, n, WG)?,
    )
}
