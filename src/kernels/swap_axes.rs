//! Axis-swap launcher (`shaders/swap_axes.wgsl`): `[outer, a, b, inner]` to
//! `[outer, b, a, inner]`, at element offsets, how attention splits projections into
//! heads and merges them back. CPU twin: [`crate::reference::swap_axes`].

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::elementwise::{count_u32, same_buffer};
use crate::kernels::{Kernel, Shader, groups_for};

/// Invocations per workgroup.
pub const WG: u32 = 256;

const SWAP_AXES: Kernel = Shader::SwapAxes.kernel("swap_axes");

/// Mirrors `Params` in `shaders/swap_axes.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    a: u32,
    b: u32,
    inner: u32,
    x_off: u32,
    y_off: u32,
    _pad0: u32,
    _pad1: u32,
}

/// The view `[outer, a, b, inner]` of a swap (every dimension ≥ 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwapView {
    /// Leading dimension, kept.
    pub outer: usize,
    /// The first swapped axis of `x` (the second of `y`).
    pub a: usize,
    /// The second swapped axis of `x` (the first of `y`).
    pub b: usize,
    /// Trailing dimension, kept contiguous.
    pub inner: usize,
}

impl SwapView {
    /// Elements the view covers.
    pub fn len(&self) -> usize {
        self.outer * self.a * self.b * self.inner
    }

    /// Whether the view covers no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `y[y_off..][o, j, i, d] = x[x_off..][o, i, j, d]` over `view` of `x` (see
/// [`SwapView`]). Errors unless both ranges lie inside their f32 buffers, every
/// dimension is at least 1, and `x` and `y` are distinct.
pub fn swap_axes(
    ctx: &Context,
    x: &Tensor,
    x_off: usize,
    y: &Tensor,
    y_off: usize,
    view: SwapView,
) -> Result<Dispatch> {
    const OP: &str = "swap_axes";
    x.expect_dtype(OP, "x", DType::F32)?;
    y.expect_dtype(OP, "y", DType::F32)?;
    let n = view.len();
    if view.outer == 0 || view.a == 0 || view.b == 0 || view.inner == 0 {
        return Err(Error::shape(
            OP,
            format!("every dimension of {view:?} must be at least 1"),
        ));
    }
    for (what, t, off) in [("x", x, x_off), ("y", y, y_off)] {
        if off.checked_add(n).is_none_or(|end| end > t.numel()) {
            return Err(Error::shape(
                OP,
                format!(
                    "{what} has {} values; {n} from offset {off} do not fit",
                    t.numel()
                ),
            ));
        }
    }
    if same_buffer(x, y) {
        return Err(Error::invalid("swap_axes: x and y must be distinct buffers"));
    }
    let params = Params {
        n: count_u32(OP, "the view", n)?,
        a: view.a as u32,
        b: view.b as u32,
        inner: view.inner as u32,
        x_off: count_u32(OP, "x offset", x_off)?,
        y_off: count_u32(OP, "y offset", y_off)?,
        ..Params::default()
    };
    ctx.dispatch(
        SWAP_AXES,
        &[("WG", WG as f64)],
        &params,
        &[(1, &y.buffer), (2, &x.buffer)],
        groups_for(ctx, n, WG)?,
    )
}
