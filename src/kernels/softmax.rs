//! Row softmax and log-softmax launchers (`shaders/softmax.wgsl`): one workgroup per
//! row, numerically stable (max-subtracted) for any row length.

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::elementwise::{count_u32, expect_same_shape, same_buffer};
use crate::kernels::{Kernel, Shader, groups_for};

/// Mirrors `Params` in `shaders/softmax.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    log: u32,
    _pad: u32,
}

const SOFTMAX_ROWS: Kernel = Shader::Softmax.kernel("softmax_rows");
const SOFTMAX_ROWS_INPLACE: Kernel = Shader::Softmax.kernel("softmax_rows_inplace");

/// Workgroup size for a kernel that gives each row of `len` elements one workgroup:
/// the smallest power of two from 32 to 256 covering the row, so short rows do not
/// leave most of a 256-wide workgroup idle.
pub(crate) fn row_wg(len: usize) -> u32 {
    (len.max(1).next_power_of_two()).clamp(32, 256) as u32
}

/// `(rows, cols)` of `x` seen as `[rows, cols]`, `cols` its last dimension (≥ 1).
pub(crate) fn rows_cols(op: &'static str, what: &str, x: &Tensor) -> Result<(usize, usize)> {
    match x.shape().last() {
        Some(&cols) if cols > 0 => Ok((x.numel() / cols, cols)),
        _ => Err(Error::shape(
            op,
            format!(
                "{what} has shape {:?}; it needs a last dimension of at least 1 element",
                x.shape()
            ),
        )),
    }
}

fn launch(ctx: &Context, op: &'static str, x: &Tensor, y: &Tensor, log: bool) -> Result<Dispatch> {
    x.expect_dtype(op, "x", DType::F32)?;
    y.expect_dtype(op, "y", DType::F32)?;
    expect_same_shape(op, "x", x, "y", y)?;
    let (rows, cols) = rows_cols(op, "x", x)?;
    let params = Params {
        rows: count_u32(op, "rows", rows)?,
        cols: count_u32(op, "cols", cols)?,
        log: log as u32,
        _pad: 0,
    };
    let constants = [("WG", row_wg(cols) as f64)];
    let groups = groups_for(ctx, rows, 1)?;
    if same_buffer(x, y) {
        ctx.dispatch(
            SOFTMAX_ROWS_INPLACE,
            &constants,
            &params,
            &[(2, &y.buffer)],
            groups,
        )
    } else {
        ctx.dispatch(
            SOFTMAX_ROWS,
            &constants,
            &params,
            &[(1, &x.buffer), (2, &y.buffer)],
            groups,
        )
    }
}

/// `y[r, :] = softmax(x[r, :])` over the last dimension of `x` (`[R, C]`, or any
/// rank with every leading dimension a row; `C ≥ 1`). `y` has `x`'s shape and may be
/// `x` itself.
pub fn softmax(ctx: &Context, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    launch(ctx, "softmax", x, y, false)
}

/// `y[r, :] = log_softmax(x[r, :]) = x - max - log Σ exp(x - max)`, same contract as
/// [`softmax`].
pub fn log_softmax(ctx: &Context, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    launch(ctx, "log_softmax", x, y, true)
}
