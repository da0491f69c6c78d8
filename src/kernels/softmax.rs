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
    causal: u32,
    scale: f32,
    key_rows: u32,
    _pad1: u32,
    _pad2: u32,
}

const SOFTMAX_ROWS: Kernel = Shader::Softmax.kernel("softmax_rows");
const SOFTMAX_ROWS_INPLACE: Kernel = Shader::Softmax.kernel("softmax_rows_inplace");
const SOFTMAX_ATTENTION: Kernel = Shader::Softmax.kernel("softmax_attention");
const SOFTMAX_ATTENTION_PADDED: Kernel = Shader::Softmax.kernel("softmax_attention_padded");
const SOFTMAX_BACKWARD_ROWS: Kernel = Shader::Softmax.kernel("softmax_backward_rows");

/// Workgroup size for a kernel that gives each row of `len` elements one workgroup:
/// the smallest power of two from 32 to 256 covering the row, so short rows do not
/// leave most of a 256-wide workgroup idle.
pub(crate) fn row_wg(len: usize) -> u32 {
    (len.max(1).next_power_of_two()).clamp(32, 256) as u32
}

/// Invocations per workgroup of the kernels that share workgroups among rows.
pub(crate) const ROWS_WG: u32 = 256;

/// Invocations that share one row of `len` elements in the kernels that pack
/// several rows into a workgroup. GPUs: about four elements each, a power of two
/// from 1 to [`ROWS_WG`]; short rows (attention over a few dozen tokens, a layer
/// normalization over 64 features) then fill a workgroup with many rows instead of
/// leaving most of it idle, and pay one workgroup's barriers for all of them. CPU
/// adapters: about 32 elements each, so rows of up to 32 take one invocation and
/// wait at no barrier (the ViT example's lavapipe step was 147–154 ms with the GPU
/// rule, 125–136 ms with one lane, 130–139 ms with four, 161–173 ms with sixteen;
/// BENCHMARKS.md), while a long row's sums still combine by a tree, keeping the
/// f32 error of a mean over thousands of values small.
pub(crate) fn row_lanes(ctx: &Context, len: usize) -> u32 {
    let per_lane = if ctx.is_cpu() { 32 } else { 4 };
    len.div_ceil(per_lane)
        .max(1)
        .next_power_of_two()
        .min(ROWS_WG as usize) as u32
}

/// Override constants `WG` and `LANES` of a row-packing kernel.
pub(crate) type RowConstants = [(&'static str, f64); 2];

/// The override constants and workgroup grid of a row-packing kernel for `rows`
/// rows of `cols` elements.
pub(crate) fn packed_rows(ctx: &Context, rows: usize, cols: usize) -> Result<(RowConstants, [u32; 3])> {
    let lanes = row_lanes(ctx, cols);
    let per_group = (ROWS_WG / lanes) as usize;
    Ok((
        [("WG", ROWS_WG as f64), ("LANES", lanes as f64)],
        groups_for(ctx, rows.div_ceil(per_group), 1)?,
    ))
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
        ..Params::default()
    };
    let wg = row_wg(cols) as f64;
    let constants = [("WG", wg), ("LANES", wg)];
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

/// The scores' contract of attention: `scale` finite, a causal mask's matrices
/// whole rows of `x`, and `(rows, cols)` of `x`.
fn attention_params(
    op: &'static str,
    x: &Tensor,
    scale: f32,
    causal: Option<usize>,
) -> Result<(usize, Params)> {
    x.expect_dtype(op, "scores", DType::F32)?;
    let (rows, cols) = rows_cols(op, "scores", x)?;
    if !scale.is_finite() {
        return Err(Error::invalid(format!("{op}: scale must be finite, got {scale}")));
    }
    if let Some(t) = causal
        && (t == 0 || !rows.is_multiple_of(t))
    {
        return Err(Error::shape(
            op,
            format!("a causal mask over matrices of {t} rows does not divide the scores' {rows} rows"),
        ));
    }
    let params = Params {
        rows: count_u32(op, "rows", rows)?,
        cols: count_u32(op, "cols", cols)?,
        causal: count_u32(op, "causal rows", causal.unwrap_or(0))?,
        scale,
        ..Params::default()
    };
    Ok((rows, params))
}

/// Attention's weights in place: `s[r, :] = softmax(scale·s[r, :])` over the last
/// dimension of the scores `s`. With `causal = Some(T)` the rows form matrices of
/// `T` query rows and row `i` of each attends to columns `j ≤ i` only (top-left
/// aligned, as Keras' `use_causal_mask` and PyTorch's `is_causal`): the others are
/// excluded from the softmax and set to 0. With `lengths = Some((l, R))` the rows
/// form samples of `R` rows (`heads·T` for attention's `[B·H·T, Tk]` scores) and
/// `l` holds each sample's unpadded key count (whole numbers as f32): columns `j ≥
/// l[b]` are excluded too, and a row excluding every column becomes all 0.
pub fn softmax_attention(
    ctx: &Context,
    s: &Tensor,
    scale: f32,
    causal: Option<usize>,
    lengths: Option<(&Tensor, usize)>,
) -> Result<Dispatch> {
    const OP: &str = "softmax_attention";
    let (rows, mut params) = attention_params(OP, s, scale, causal)?;
    let (constants, groups) = packed_rows(ctx, rows, params.cols as usize)?;
    let Some((l, per_sample)) = lengths else {
        return ctx.dispatch(SOFTMAX_ATTENTION, &constants, &params, &[(2, &s.buffer)], groups);
    };
    l.expect_dtype(OP, "key lengths", DType::F32)?;
    if per_sample == 0 || !rows.is_multiple_of(per_sample) || l.numel() != rows / per_sample {
        return Err(Error::shape(
            OP,
            format!(
                "{} key lengths do not match {rows} rows in samples of {per_sample}; give one per sample",
                l.numel()
            ),
        ));
    }
    if same_buffer(l, s) {
        return Err(Error::invalid(format!(
            "{OP}: the key lengths and scores must be distinct buffers"
        )));
    }
    params.key_rows = count_u32(OP, "rows per sample", per_sample)?;
    ctx.dispatch(
        SOFTMAX_ATTENTION_PADDED,
        &constants,
        &params,
        &[(1, &l.buffer), (2, &s.buffer)],
        groups,
    )
}

/// The gradient of the scores before [`softmax_attention`]'s scale, in place:
/// `d[r, j] = scale·p[r, j]·(d[r, j] − Σ_k d[r, k]·p[r, k])`, with `p` the weights
/// it wrote and `d` the weights' gradient on entry. Masked weights are 0, so their
/// gradient is too. `p` and `d` have one shape and distinct buffers.
pub fn softmax_backward_rows(ctx: &Context, p: &Tensor, d: &Tensor, scale: f32) -> Result<Dispatch> {
    const OP: &str = "softmax_backward_rows";
    expect_same_shape(OP, "p", p, "d", d)?;
    d.expect_dtype(OP, "d", DType::F32)?;
    if same_buffer(p, d) {
        return Err(Error::invalid(format!("{OP}: p and d must be distinct buffers")));
    }
    let (rows, params) = attention_params(OP, p, scale, None)?;
    let (constants, groups) = packed_rows(ctx, rows, params.cols as usize)?;
    ctx.dispatch(
        SOFTMAX_BACKWARD_ROWS,
        &constants,
        &params,
        &[(1, &p.buffer), (2, &d.buffer)],
        groups,
    )
}
