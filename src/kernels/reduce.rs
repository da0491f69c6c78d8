//! Reduction launchers: per-channel sums (bias gradients), sums over one axis, whole
//! tensor means and sums, row argmax, and the accuracy counters that accumulate on
//! the GPU across training steps.
//!
//! Accumulating kernels (`accumulate_sum`, `count_correct`, `count_correct_binary`,
//! `channel_sum` with `accumulate`) run a workgroup reduction and then one
//! invocation per output updates it, so they are race-free without atomics and can
//! be replayed every step with the accumulator read once per epoch.

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::elementwise::{count_u32, same_buffer};
use crate::kernels::{Kernel, Shader, groups_for};

/// Invocations per workgroup of the reduce kernels (a power of two, at most 256).
pub const WG: u32 = 256;

/// `sum_axis` gives each output a thread (instead of a workgroup) when the summed
/// axis is shorter than this or there are at least `THREAD_OUTPUTS` outputs.
const THREAD_LEN: usize = 128;
const THREAD_OUTPUTS: usize = 8192;
/// On CPU adapters, where each workgroup costs about as much as summing a few
/// thousand values, from this many outputs on (a per-token Dense's bias gradient:
/// 64 columns of batch·tokens rows; measured on lavapipe, BENCHMARKS.md).
const CPU_THREAD_OUTPUTS: usize = 16;

/// `argmax_rows` gives each row a thread (instead of a workgroup) up to this many columns.
const THREAD_COLS: usize = 32;

/// Mirrors `Params` in `shaders/reduce.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    d0: u32,
    d1: u32,
    d2: u32,
    flags: u32,
    scale: f32,
    _pad: [u32; 3],
}

const CHANNEL_SUM: Kernel = Shader::Reduce.kernel("channel_sum");
const SUM_AXIS_THREAD: Kernel = Shader::Reduce.kernel("sum_axis_thread");
const SUM_AXIS_WG: Kernel = Shader::Reduce.kernel("sum_axis_wg");
const SUM_ALL: Kernel = Shader::Reduce.kernel("sum_all");
const ARGMAX_ROWS_THREAD: Kernel = Shader::Reduce.kernel("argmax_rows_thread");
const ARGMAX_ROWS_WG: Kernel = Shader::Reduce.kernel("argmax_rows_wg");
const COUNT_CORRECT: Kernel = Shader::Reduce.kernel("count_correct");
const COUNT_CORRECT_BINARY: Kernel = Shader::Reduce.kernel("count_correct_binary");
const COUNT_CORRECT_SETS: Kernel = Shader::Reduce.kernel("count_correct_sets");
const COUNT_IN_TOP_K: Kernel = Shader::Reduce.kernel("count_in_top_k");

const CONSTANTS: &[(&str, f64)] = &[("WG", WG as f64)];

fn no_alias(op: &'static str, what_a: &str, a: &Tensor, what_b: &str, b: &Tensor) -> Result<()> {
    if same_buffer(a, b) {
        return Err(Error::invalid(format!(
            "{op}: {what_a} and {what_b} share a buffer; the output must be a separate tensor"
        )));
    }
    Ok(())
}

fn expect_numel(op: &'static str, what: &str, t: &Tensor, n: usize, why: &str) -> Result<()> {
    if t.numel() != n {
        return Err(Error::shape(
            op,
            format!(
                "{what} has shape {:?} ({} elements) but {why} needs {n} elements",
                t.shape(),
                t.numel()
            ),
        ));
    }
    Ok(())
}

/// `(rows, cols)` of `x` seen as `[rows, cols]` with `cols` its last dimension;
/// errors when there are no columns.
fn rows_cols(op: &'static str, what: &str, x: &Tensor) -> Result<(usize, usize)> {
    let cols = x.shape().last().copied().unwrap_or(1);
    if cols == 0 {
        return Err(Error::shape(
            op,
            format!(
                "{what} has shape {:?}: rows of zero columns have no argmax",
                x.shape()
            ),
        ));
    }
    Ok((x.numel() / cols, cols))
}

/// `x` viewed as `[a, c, b]`: `out[j] = Σ_{i<a, k<b} x[i, j, k]` (or `+=` when
/// `accumulate`). One workgroup per channel with a strided loop and a tree
/// reduction. Dense bias gradient: `a = batch, c = features, b = 1`; conv bias
/// gradient: `a = N, c = C, b = H·W`. `out` has `c` elements.
pub fn channel_sum(
    ctx: &Context,
    x: &Tensor,
    a: usize,
    c: usize,
    b: usize,
    out: &Tensor,
    accumulate: bool,
) -> Result<Dispatch> {
    const OP: &str = "channel_sum";
    x.expect_dtype(OP, "x", DType::F32)?;
    out.expect_dtype(OP, "out", DType::F32)?;
    no_alias(OP, "x", x, "out", out)?;
    let view = a.checked_mul(c).and_then(|v| v.checked_mul(b));
    if view != Some(x.numel()) {
        return Err(Error::shape(
            OP,
            format!(
                "x has shape {:?} ({} elements) but the view [a={a}, c={c}, b={b}] has a different size",
                x.shape(),
                x.numel()
            ),
        ));
    }
    expect_numel(OP, "out", out, c, &format!("[a={a}, c={c}, b={b}] summed to [c]"))?;
    let params = Params {
        d0: count_u32(OP, "a", a)?,
        d1: count_u32(OP, "c", c)?,
        d2: count_u32(OP, "b", b)?,
        flags: accumulate as u32,
        ..Params::default()
    };
    ctx.dispatch(
        CHANNEL_SUM,
        CONSTANTS,
        &params,
        &[(1, &x.buffer), (2, &out.buffer)],
        groups_for(ctx, c, 1)?,
    )
}

/// `x` viewed as `[outer, len, inner]`: `out[o, i] = Σ_l x[o, l, i]`; `out` has
/// `outer·inner` elements (`len = 0` writes zeros).
pub fn sum_axis(
    ctx: &Context,
    x: &Tensor,
    outer: usize,
    len: usize,
    inner: usize,
    out: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "sum_axis";
    x.expect_dtype(OP, "x", DType::F32)?;
    out.expect_dtype(OP, "out", DType::F32)?;
    no_alias(OP, "x", x, "out", out)?;
    let view = outer.checked_mul(len).and_then(|v| v.checked_mul(inner));
    if view != Some(x.numel()) {
        return Err(Error::shape(
            OP,
            format!(
                "x has shape {:?} ({} elements) but the view [outer={outer}, len={len}, inner={inner}] has a different size",
                x.shape(),
                x.numel()
            ),
        ));
    }
    let outputs = outer * inner;
    expect_numel(
        OP,
        "out",
        out,
        outputs,
        &format!("[outer={outer}, len={len}, inner={inner}] summed to [outer, inner]"),
    )?;
    let params = Params {
        d0: count_u32(OP, "outer", outer)?,
        d1: count_u32(OP, "len", len)?,
        d2: count_u32(OP, "inner", inner)?,
        ..Params::default()
    };
    let threads =
        len < THREAD_LEN || outputs >= THREAD_OUTPUTS || (ctx.is_cpu() && outputs >= CPU_THREAD_OUTPUTS);
    let (kernel, groups) = if threads {
        (SUM_AXIS_THREAD, groups_for(ctx, outputs, WG)?)
    } else {
        (SUM_AXIS_WG, groups_for(ctx, outputs, 1)?)
    };
    ctx.dispatch(
        kernel,
        CONSTANTS,
        &params,
        &[(1, &x.buffer), (2, &out.buffer)],
        groups,
    )
}

fn sum_all(
    ctx: &Context,
    op: &'static str,
    x: &Tensor,
    out: &Tensor,
    scale: f32,
    accumulate: bool,
) -> Result<Dispatch> {
    let params = Params {
        d0: count_u32(op, "x", x.numel())?,
        flags: accumulate as u32,
        scale,
        ..Params::default()
    };
    ctx.dispatch(
        SUM_ALL,
        CONSTANTS,
        &params,
        &[(1, &x.buffer), (2, &out.buffer)],
        [1, 1, 1],
    )
}

/// `out[0] = mean(x)` over every element of `x` (at least one). One workgroup with
/// a strided loop and a tree reduction.
pub fn mean(ctx: &Context, x: &Tensor, out: &Tensor) -> Result<Dispatch> {
    const OP: &str = "mean";
    x.expect_dtype(OP, "x", DType::F32)?;
    out.expect_dtype(OP, "out", DType::F32)?;
    no_alias(OP, "x", x, "out", out)?;
    expect_numel(OP, "out", out, 1, "the mean")?;
    if x.numel() == 0 {
        return Err(Error::shape(
            OP,
            format!(
                "x has shape {:?}: the mean of no elements is undefined",
                x.shape()
            ),
        ));
    }
    sum_all(ctx, OP, x, out, (1.0f64 / x.numel() as f64) as f32, false)
}

/// `acc[0] += Σ x` over every element of `x` (any length; empty adds 0).
pub fn accumulate_sum(ctx: &Context, x: &Tensor, acc: &Tensor) -> Result<Dispatch> {
    const OP: &str = "accumulate_sum";
    x.expect_dtype(OP, "x", DType::F32)?;
    acc.expect_dtype(OP, "acc", DType::F32)?;
    no_alias(OP, "x", x, "acc", acc)?;
    expect_numel(OP, "acc", acc, 1, "the accumulator")?;
    sum_all(ctx, OP, x, acc, 1.0, true)
}

/// `out[r] = argmax_j x[r, j]` for `x` seen as `[R, C]` (`C` its last dimension, at
/// least 1) and `out` u32 `[R]`: the first index of the largest value, NaN entries
/// ignored (an all-NaN row gives 0).
pub fn argmax_rows(ctx: &Context, x: &Tensor, out: &Tensor) -> Result<Dispatch> {
    const OP: &str = "argmax_rows";
    x.expect_dtype(OP, "x", DType::F32)?;
    out.expect_dtype(OP, "out", DType::U32)?;
    let (rows, cols) = rows_cols(OP, "x", x)?;
    expect_numel(OP, "out", out, rows, &format!("x of shape {:?}", x.shape()))?;
    let params = Params {
        d0: count_u32(OP, "rows", rows)?,
        d1: count_u32(OP, "cols", cols)?,
        ..Params::default()
    };
    let (kernel, groups) = if cols <= THREAD_COLS {
        (ARGMAX_ROWS_THREAD, groups_for(ctx, rows, WG)?)
    } else {
        (ARGMAX_ROWS_WG, groups_for(ctx, rows, 1)?)
    };
    ctx.dispatch(
        kernel,
        CONSTANTS,
        &params,
        &[(1, &x.buffer), (4, &out.buffer)],
        groups,
    )
}

/// Checks the operands of a count over labelled rows for `op`: f32 `logits`
/// `[R, C]`, u32 `labels` of `R`, an f32 accumulator `acc` of one element apart
/// from the logits; returns `(R, C)`.
fn labelled_rows(op: &'static str, logits: &Tensor, labels: &Tensor, acc: &Tensor) -> Result<(usize, usize)> {
    logits.expect_dtype(op, "logits", DType::F32)?;
    labels.expect_dtype(op, "labels", DType::U32)?;
    acc.expect_dtype(op, "acc", DType::F32)?;
    no_alias(op, "logits", logits, "acc", acc)?;
    let (rows, cols) = rows_cols(op, "logits", logits)?;
    expect_numel(
        op,
        "labels",
        labels,
        rows,
        &format!("logits of shape {:?}", logits.shape()),
    )?;
    expect_numel(op, "acc", acc, 1, "the accumulator")?;
    Ok((rows, cols))
}

/// `acc[0] += #rows r with argmax(logits[r]) == labels[r]` for `logits` `[R, C]`
/// (`C ≥ 1`), `labels` u32 `[R]` and `acc` f32 `[1]`. Argmax as in [`argmax_rows`];
/// a label `≥ C` never counts. One workgroup, a thread per row.
pub fn count_correct(ctx: &Context, logits: &Tensor, labels: &Tensor, acc: &Tensor) -> Result<Dispatch> {
    const OP: &str = "count_correct";
    let (rows, cols) = labelled_rows(OP, logits, labels, acc)?;
    let params = Params {
        d0: count_u32(OP, "rows", rows)?,
        d1: count_u32(OP, "cols", cols)?,
        ..Params::default()
    };
    ctx.dispatch(
        COUNT_CORRECT,
        CONSTANTS,
        &params,
        &[(1, &logits.buffer), (2, &acc.buffer), (3, &labels.buffer)],
        [1, 1, 1],
    )
}

/// Adds to `acc[0]` the number of rows r whose label's logit is among the `k`
/// largest of `logits[r]` (fewer than `k` are strictly greater: ties at the boundary count, as
/// `tf.math.in_top_k` and Keras' `SparseTopKCategoricalAccuracy`) for `logits`
/// `[R, C]`, `labels` u32 `[R]` and `acc` f32 `[1]`; a label `≥ C` or a NaN logit
/// never counts; `k ≥ 1`. One workgroup, a thread per row. CPU twin:
/// [`crate::reference::reduce::count_in_top_k`].
pub fn count_in_top_k(
    ctx: &Context,
    logits: &Tensor,
    labels: &Tensor,
    k: usize,
    acc: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "count_in_top_k";
    if k == 0 {
        return Err(Error::invalid("top-k accuracy needs k of at least 1"));
    }
    let (rows, cols) = labelled_rows(OP, logits, labels, acc)?;
    let params = Params {
        d0: count_u32(OP, "rows", rows)?,
        d1: count_u32(OP, "cols", cols)?,
        d2: count_u32(OP, "k", k.min(cols))?,
        ..Params::default()
    };
    ctx.dispatch(
        COUNT_IN_TOP_K,
        CONSTANTS,
        &params,
        &[(1, &logits.buffer), (2, &acc.buffer), (3, &labels.buffer)],
        [1, 1, 1],
    )
}

/// `acc[0] += #rows` whose every class has a positive logit exactly where its
/// target is above 0.5, for `logits` `[R, C]` (a multi-label classifier's), `targets` f32 of
/// `R·C` 0/1 values and `acc` f32 `[1]`: subset accuracy (scikit-learn's
/// `accuracy_score` on multi-label data). One workgroup. CPU twin:
/// [`crate::reference::reduce::count_correct_sets`].
pub fn count_correct_sets(
    ctx: &Context,
    logits: &Tensor,
    targets: &Tensor,
    acc: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "count_correct_sets";
    logits.expect_dtype(OP, "logits", DType::F32)?;
    targets.expect_dtype(OP, "targets", DType::F32)?;
    acc.expect_dtype(OP, "acc", DType::F32)?;
    no_alias(OP, "logits", logits, "acc", acc)?;
    no_alias(OP, "targets", targets, "acc", acc)?;
    let &[rows, cols] = logits.shape() else {
        return Err(Error::shape(
            OP,
            format!(
                "logits has shape {:?}; it must be [rows, classes]",
                logits.shape()
            ),
        ));
    };
    if cols == 0 {
        return Err(Error::shape(OP, "logits has no classes"));
    }
    expect_numel(OP, "targets", targets, rows * cols, "logits' rows × classes")?;
    expect_numel(OP, "acc", acc, 1, "the accumulator")?;
    let params = Params {
        d0: count_u32(OP, "rows", rows)?,
        d1: count_u32(OP, "cols", cols)?,
        ..Params::default()
    };
    ctx.dispatch(
        COUNT_CORRECT_SETS,
        CONSTANTS,
        &params,
        &[(1, &logits.buffer), (2, &acc.buffer), (5, &targets.buffer)],
        [1, 1, 1],
    )
}

/// `acc[0] += #rows r with (logits[r] > 0) == (targets[r] > 0.5)` for `logits`
/// `[R, 1]` (or `[R]`), `targets` f32 with `R` elements and `acc` f32 `[1]`.
pub fn count_correct_binary(
    ctx: &Context,
    logits: &Tensor,
    targets: &Tensor,
    acc: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "count_correct_binary";
    logits.expect_dtype(OP, "logits", DType::F32)?;
    targets.expect_dtype(OP, "targets", DType::F32)?;
    acc.expect_dtype(OP, "acc", DType::F32)?;
    no_alias(OP, "logits", logits, "acc", acc)?;
    no_alias(OP, "targets", targets, "acc", acc)?;
    if logits.shape().len() >= 2 && logits.shape().last() != Some(&1) {
        return Err(Error::shape(
            OP,
            format!(
                "logits has shape {:?}; binary accuracy needs one logit per row ([R, 1] or [R])",
                logits.shape()
            ),
        ));
    }
    let rows = logits.numel();
    expect_numel(
        OP,
        "targets",
        targets,
        rows,
        &format!("logits of shape {:?}", logits.shape()),
    )?;
    expect_numel(OP, "acc", acc, 1, "the accumulator")?;
    let params = Params {
        d0: count_u32(OP, "rows", rows)?,
        ..Params::default()
    };
    ctx.dispatch(
        COUNT_CORRECT_BINARY,
        CONSTANTS,
        &params,
        &[(1, &logits.buffer), (2, &acc.buffer), (5, &targets.buffer)],
        [1, 1, 1],
    )
}
