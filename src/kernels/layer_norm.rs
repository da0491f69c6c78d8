//! Layer normalization launchers (`shaders/layer_norm.wgsl`): normalise each row of
//! the last axis, several short rows to a workgroup; layer normalization and its
//! uncentred form, RMS normalization. CPU twins: [`crate::reference::layer_norm`].

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
    centered: u32,
}

const FORWARD: Kernel = Shader::LayerNorm.kernel("layer_norm_forward");
const BACKWARD: Kernel = Shader::LayerNorm.kernel("layer_norm_backward");

/// Checks the shared contract and returns `(rows, cols)` with the uniform.
fn params(
    op: &'static str,
    x: &Tensor,
    gamma: &Tensor,
    stats: &Tensor,
    (eps, centered): (f32, bool),
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
            centered: u32::from(centered),
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
    expect_same_shape(OP, "gamma", gamma, "beta", beta)?;
    beta.expect_dtype(OP, "beta", DType::F32)?;
    normalize(OP, ctx, (x, gamma, Some(beta)), eps, y, stats)
}

/// RMS normalization, the uncentred [`layer_norm_forward`]: `y =
/// x/sqrt(mean(x²) + eps)·gamma` over the last axis of `x` (PyTorch's
/// `nn.RMSNorm`, Keras' `RMSNormalization`, Llama's `LlamaRMSNorm`), and
/// `stats[r] = (0, 1/sqrt(mean(x²) + eps))` of each row for
/// [`rms_norm_backward`]. Shapes as [`layer_norm_forward`]'s.
pub fn rms_norm_forward(
    ctx: &Context,
    x: &Tensor,
    gamma: &Tensor,
    eps: f32,
    y: &Tensor,
    stats: &Tensor,
) -> Result<Dispatch> {
    normalize("rms_norm_forward", ctx, (x, gamma, None), eps, y, stats)
}

/// [`layer_norm_forward`], or with no `beta` [`rms_norm_forward`].
fn normalize(
    op: &'static str,
    ctx: &Context,
    (x, gamma, beta): (&Tensor, &Tensor, Option<&Tensor>),
    eps: f32,
    y: &Tensor,
    stats: &Tensor,
) -> Result<Dispatch> {
    expect_same_shape(op, "x", x, "y", y)?;
    let (rows, params) = params(op, x, gamma, stats, (eps, beta.is_some()), &[("y", y)])?;
    // Uncentred, the shader reads no shift: gamma stands in for the binding.
    let shift = beta.unwrap_or(gamma);
    expect_separate(op, &[("y", y), ("stats", stats)], &[x, gamma, shift])?;
    let (constants, groups) = packed_rows(ctx, rows, params.cols as usize)?;
    ctx.dispatch(
        FORWARD,
        &constants,
        &params,
        &[
            (1, &x.buffer),
            (2, &gamma.buffer),
            (3, &shift.buffer),
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
    normalize_backward(
        "layer_norm_backward",
        ctx,
        (x, gamma, stats),
        (eps, true),
        dy,
        dx,
        dyx,
    )
}

/// The gradient of [`rms_norm_forward`], as [`layer_norm_backward`]'s (the
/// column sums of `dyx = dy·x̂` are gamma's gradient; there is no shift).
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_backward(
    ctx: &Context,
    x: &Tensor,
    gamma: &Tensor,
    stats: &Tensor,
    eps: f32,
    dy: &Tensor,
    dx: &Tensor,
    dyx: &Tensor,
) -> Result<Dispatch> {
    normalize_backward(
        "rms_norm_backward",
        ctx,
        (x, gamma, stats),
        (eps, false),
        dy,
        dx,
        dyx,
    )
}

/// [`layer_norm_backward`], or uncentred [`rms_norm_backward`].
fn normalize_backward(
    op: &'static str,
    ctx: &Context,
    (x, gamma, stats): (&Tensor, &Tensor, &Tensor),
    (eps, centered): (f32, bool),
    dy: &Tensor,
    dx: &Tensor,
    dyx: &Tensor,
) -> Result<Dispatch> {
    for (what, t) in [("dy", dy), ("dx", dx), ("dyx", dyx)] {
        expect_same_shape(op, "x", x, what, t)?;
    }
    dy.expect_dtype(op, "dy", DType::F32)?;
    let (rows, params) = params(op, x, gamma, stats, (eps, centered), &[("dx", dx), ("dyx", dyx)])?;
    // stats too: backward reads it as the forward wrote it, apart from the rest.
    expect_separate(op, &[("dx", dx), ("dyx", dyx), ("stats", stats)], &[x, gamma, dy])?;
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
