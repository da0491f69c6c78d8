//! Layer normalization launchers (`shaders/layer_norm.wgsl`): normalise each row of
//! the last axis, several short rows to a workgroup. CPU twins: [`crate::reference::layer_norm`].

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::elementwise::{count_u32, expect_same_shape, expect_separate};
use crate::kernels::softmax::{packed_rows, rows_cols};
use crate::kernels::{Kernel, Shader};

/// Mirrors `Params` in `shaders/layer_norm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

const FORWARD: Kernel = Shader::LayerNorm.kernel("layer_norm_forward");
const BACKWARD: Kernel = Shader::LayerNorm.kernel("layer_norm_backward");

/// Checks the shared contract and returns `(rows, cols)` with the uniform.
fn params(
    op: &'static str,
    x: &Tensor,
    gamma: &Tensor,
    stats: &Tensor,
    eps: f32,
    outputs: &[(&'static str, &Tensor)],
) -> Result<(usize, Params)> {
    x.expect_dtype(op, "x", DType::F32)?;
    gamma.expect_dtype(op, "gamma", DType::F32)?;
    stats.expect_dtype(op, "stats", DType::F32)?;
    let (rows, cols) = rows_cols(op, "x", x)?;
    if gamma.numel() != cols {
        return Err(Error::shape(
            op,
            format!(
                "x has rows of {cols} values but gamma has {} (one per value of a row)",
                gamma.numel()
            ),
        ));
    }
    if stats.numel() != 2 * rows {
        return Err(Error::shape(
            op,
            format!(
                "stats has {} values; x's {rows} rows need {} (mean and 1/std each)",
                stats.numel(),
                2 * rows
            ),
        ));
    }
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(Error::invalid(format!(
            "{op}: epsilon must be positive and finite, got {eps}"
        )));
    }
    for (what, t) in outputs {
        t.expect_dtype(op, what, DType::F32)?;
    }
    Ok((
        rows,
        Params {
            rows: count_u32(op, "rows", rows)?,
            cols: count_u32(op, "cols", cols)?,
            eps,
            _pad: 0,
        },
    ))
}

/// `y = (x − mean)/sqrt(var + eps)·gamma + beta` over the last axis of `x` (every
/// leading dimension is a row; the biased variance, as Keras and PyTorch), and
/// `stats[r] = (mean, 1/sqrt(var + eps))` of each row for [`layer_norm_backward`].
/// `gamma` and `beta` have one value per element of a row; `y` has `x`'s shape and
/// `stats` `2·rows` values, both separate from the inputs.
pub fn layer_norm_forward(
    ctx: &Context,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    y: &Tensor,
    stats: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "layer_norm_forward";
    expect_same_shape(OP, "x", x, "y", y)?;
    expect_same_shape(OP, "gamma", gamma, "beta", beta)?;
    beta.expect_dtype(OP, "beta", DType::F32)?;
    let (rows, params) = params(OP, x, gamma, stats, eps, &[("y", y)])?;
    expect_separate(OP, &[("y", y), ("stats", stats)], &[x, gamma, beta])?;
    let (constants, groups) = packed_rows(ctx, rows, params.cols as usize)?;
    ctx.dispatch(
        FORWARD,
        &constants,
        &params,
        &[
            (1, &x.buffer),
            (2, &gamma.buffer),
            (3, &beta.buffer),
            (4, &y.buffer),
            (5, &stats.buffer),
        ],
        groups,
    )
}

/// The gradient of [`layer_norm_forward`] from `dy` (shape of `x`), with the
/// `stats` it kept: `dx` (the input's gradient) and `dyx = dy·x̂` (whose column sums
/// are gamma's gradient; `dy`'s are beta's). `dx` and `dyx` have `x`'s shape and are
/// separate from every input and each other.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward(
    ctx: &Context,
    x: &Tensor,
    gamma: &Tensor,
    stats: &Tensor,
    eps: f32,
    dy: &Tensor,
    dx: &Tensor,
    dyx: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "layer_norm_backward";
    for (what, t) in [("dy", dy), ("dx", dx), ("dyx", dyx)] {
        expect_same_shape(OP, "x", x, what, t)?;
    }
    dy.expect_dtype(OP, "dy", DType::F32)?;
    let (rows, params) = params(OP, x, gamma, stats, eps, &[("dx", dx), ("dyx", dyx)])?;
    // stats too: backward reads it as the forward wrote it, apart from the rest.
    expect_separate(OP, &[("dx", dx), ("dyx", dyx), ("stats", stats)], &[x, gamma, dy])?;
    let (constants, groups) = packed_rows(ctx, rows, params.cols as usize)?;
    ctx.dispatch(
        BACKWARD,
        &constants,
        &params,
        &[
            (1, &x.buffer),
            (2, &gamma.buffer),
            (3, &dy.buffer),
            (4, &dx.buffer),
            (5, &stats.buffer),
            (6, &dyx.buffer),
        ],
        groups,
    )
}
