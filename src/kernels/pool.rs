//! 2-D pooling launchers: max pooling (with argmax indices) and average pooling,
//! forward and backward, over NCHW images. Kernels in `shaders/pool.wgsl`, CPU
//! twins in [`crate::reference::pool`].
//!
//! Semantics (PyTorch's `MaxPool2d` / `AvgPool2d` defaults): windows `kh×kw`,
//! stride `(sh, sw)`, symmetric padding `(ph, pw)` on each side with `ph <= kh/2`
//! and `pw <= kw/2`, floor mode: `oh = (h + 2·ph - kh) / sh + 1`. Max pooling skips
//! padded positions; average pooling divides by `kh·kw` whatever the padding
//! (`count_include_pad=True`). Keras `MaxPool2D(2)` is `kh = kw = 2`, stride 2, no
//! padding.

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::{Kernel, Shader, groups_for};

/// Most invocations per workgroup of the pooling kernels (one workgroup per
/// plane; smaller planes get a smaller power of two, at least 8).
pub const MAX_WG: u32 = 64;

/// Image sides (with padding) must stay below this: the kernels divide such
/// coordinates through f32, exact below 2^20.
const MAX_SIDE: usize = 1 << 20;

const MAX_FORWARD: Kernel = Shader::Pool.kernel("max_pool_forward");
const MAX_BACKWARD: Kernel = Shader::Pool.kernel("max_pool_backward");
const MAX_BACKWARD_SCATTER: Kernel = Shader::Pool.kernel("max_pool_backward_scatter");
const MAX_FORWARD_2X2: Kernel = Shader::Pool.kernel("max_pool_forward_2x2");
const MAX_BACKWARD_2X2: Kernel = Shader::Pool.kernel("max_pool_backward_2x2");
const AVG_FORWARD: Kernel = Shader::Pool.kernel("avg_pool_forward");
const AVG_BACKWARD: Kernel = Shader::Pool.kernel("avg_pool_backward");
const AVG_BACKWARD_SCATTER: Kernel = Shader::Pool.kernel("avg_pool_backward_scatter");

/// Shape of a 2-D pooling: input `[n, c, h, w]`, window `kh×kw`, stride
/// `(sh, sw)`, symmetric padding `(ph, pw)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool2dDesc {
    /// Batch size (images).
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Window height.
    pub kh: usize,
    /// Window width.
    pub kw: usize,
    /// Stride as (vertical, horizontal).
    pub stride: (usize, usize),
    /// Padding on each side as (vertical, horizontal), at most half the window.
    pub padding: (usize, usize),
}

impl Pool2dDesc {
    /// Keras `MaxPool2D(k)` / `AveragePooling2D(k)`: `k×k` windows, stride `k`, no
    /// padding.
    pub fn square(n: usize, c: usize, h: usize, w: usize, k: usize) -> Self {
        Pool2dDesc {
            n,
            c,
            h,
            w,
            kh: k,
            kw: k,
            stride: (k, k),
            padding: (0, 0),
        }
    }

    /// Output height and width, after checking the description.
    pub fn out_hw(&self) -> Result<(usize, usize)> {
        let dims = [
            ("n", self.n),
            ("c", self.c),
            ("h", self.h),
            ("w", self.w),
            ("kh", self.kh),
            ("kw", self.kw),
        ];
        for (name, v) in dims {
            if v == 0 {
                return Err(Error::invalid(format!("pool2d: {name} is 0 in {self:?}")));
            }
        }
        if self.stride.0 == 0 || self.stride.1 == 0 {
            return Err(Error::invalid(format!(
                "pool2d: stride {:?} has a zero component",
                self.stride
            )));
        }
        let (ph, pw) = self.padding;
        if ph > self.kh / 2 || pw > self.kw / 2 {
            return Err(Error::invalid(format!(
                "pool2d: padding {:?} exceeds half the {}x{} window (at most ({}, {}))",
                self.padding,
                self.kh,
                self.kw,
                self.kh / 2,
                self.kw / 2
            )));
        }
        let (hp, wp) = (self.h + 2 * ph, self.w + 2 * pw);
        if hp >= MAX_SIDE || wp >= MAX_SIDE {
            return Err(Error::invalid(format!(
                "pool2d: the padded {hp}x{wp} input exceeds the largest supported side ({MAX_SIDE})"
            )));
        }
        if self.kh > hp || self.kw > wp {
            return Err(Error::shape(
                "pool2d",
                format!(
                    "the {}x{} window is larger than the padded {hp}x{wp} input ({}x{} with padding {:?})",
                    self.kh, self.kw, self.h, self.w, self.padding
                ),
            ));
        }
        Ok((
            (hp - self.kh) / self.stride.0 + 1,
            (wp - self.kw) / self.stride.1 + 1,
        ))
    }

    /// Whether no two windows share an input element (stride >= kernel in both
    /// dimensions, e.g. Keras' `MaxPool2D(k)`): the backward then scatters each
    /// output's gradient over its own cell of `dx`.
    pub fn windows_disjoint(&self) -> bool {
        self.stride.0 >= self.kh && self.stride.1 >= self.kw
    }

    /// Whether max pooling runs the pair kernels (`max_pool_forward_2x2`,
    /// `max_pool_backward_2x2`): 2x2 windows, column stride 2, no padding and an
    /// even width, so every window row is one aligned pair (Keras' `MaxPool2D(2)`
    /// on even sizes). The backward also needs disjoint windows (row stride >= 2).
    pub fn pairs(&self) -> bool {
        self.kh == 2
            && self.kw == 2
            && self.stride.1 == 2
            && self.padding == (0, 0)
            && self.w.is_multiple_of(2)
    }

    /// Input shape `[n, c, h, w]`.
    pub fn input_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }

    /// Output shape `[n, c, oh, ow]`.
    pub fn output_shape(&self) -> Result<[usize; 4]> {
        let (oh, ow) = self.out_hw()?;
        Ok([self.n, self.c, oh, ow])
    }
}

/// Mirrors `Params` in `shaders/pool.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    planes: u32,
    _pad: u32,
}

/// Checks `t` has element type `dtype` and the element count of `shape` (and, if
/// it is 4-D, exactly `shape`).
fn check_tensor(
    op: &'static str,
    what: &'static str,
    t: &Tensor,
    shape: [usize; 4],
    dtype: DType,
) -> Result<()> {
    t.expect_dtype(op, what, dtype)?;
    let n: usize = shape.iter().product();
    let fits = if t.shape().len() == 4 {
        t.shape() == shape
    } else {
        t.numel() == n
    };
    if !fits {
        return Err(Error::shape(
            op,
            format!(
                "{what} has shape {:?} ({} elements), expected {shape:?} ({n} elements)",
                t.shape(),
                t.numel()
            ),
        ));
    }
    Ok(())
}

fn to_u32(op: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::TooLarge {
        what: format!("{op}: {v} elements (indices are 32-bit)"),
        bytes: v as u64 * 4,
        limit: u32::MAX as u64,
    })
}

fn params(op: &'static str, desc: &Pool2dDesc) -> Result<Params> {
    let (oh, ow) = desc.out_hw()?;
    Ok(Params {
        h: to_u32(op, desc.h)?,
        w: to_u32(op, desc.w)?,
        oh: to_u32(op, oh)?,
        ow: to_u32(op, ow)?,
        kh: to_u32(op, desc.kh)?,
        kw: to_u32(op, desc.kw)?,
        sh: to_u32(op, desc.stride.0)?,
        sw: to_u32(op, desc.stride.1)?,
        ph: to_u32(op, desc.padding.0)?,
        pw: to_u32(op, desc.padding.1)?,
        planes: to_u32(op, desc.n * desc.c)?,
        _pad: 0,
    })
}

/// Prepares one of the pool kernels: one workgroup per plane of `plane_len`
/// elements (the elements its invocations step through).
fn launch(
    ctx: &Context,
    op: &'static str,
    kernel: Kernel,
    desc: &Pool2dDesc,
    plane_len: usize,
    buffers: &[(u32, &wgpu::Buffer)],
) -> Result<Dispatch> {
    let wg = plane_len.next_power_of_two().clamp(8, MAX_WG as usize) as u32;
    // Every element index must fit in u32.
    to_u32(op, desc.n * desc.c * desc.h.max(1) * desc.w.max(1))?;
    ctx.dispatch(
        kernel,
        &[("WG", wg as f64)],
        &params(op, desc)?,
        buffers,
        groups_for(ctx, desc.n * desc.c, 1)?,
    )
}

/// Max pooling: `y[n, c, oy, ox]` = the largest real element of the window and
/// `indices[n, c, oy, ox]` (u32) = its flat position `iy·w + ix` inside its
/// `h×w` plane (the first on ties). `x` is `[n, c, h, w]`; `y` and `indices` are
/// `[n, c, oh, ow]`; both are overwritten.
pub fn max_pool2d_forward(
    ctx: &Context,
    desc: &Pool2dDesc,
    x: &Tensor,
    y: &Tensor,
    indices: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "max_pool2d_forward";
    let out = desc.output_shape()?;
    check_tensor(OP, "x", x, desc.input_shape(), DType::F32)?;
    check_tensor(OP, "y", y, out, DType::F32)?;
    check_tensor(OP, "indices", indices, out, DType::U32)?;
    let kernel = if desc.pairs() {
        MAX_FORWARD_2X2
    } else {
        MAX_FORWARD
    };
    launch(
        ctx,
        OP,
        kernel,
        desc,
        out[2] * out[3],
        &[(1, &x.buffer), (2, &y.buffer), (3, &indices.buffer)],
    )
}

/// Max pooling backward: `dx[n, c, iy, ix]` = the sum of `dy` over the windows
/// whose recorded index (from [`max_pool2d_forward`]) is `(iy, ix)`; overwritten.
/// Disjoint windows ([`Pool2dDesc::windows_disjoint`]): each output element writes
/// its own cell of dx (scatter). Overlapping windows: each dx element gathers over
/// the windows covering it, exact without atomics. Returns one dispatch.
pub fn max_pool2d_backward(
    ctx: &Context,
    desc: &Pool2dDesc,
    dy: &Tensor,
    indices: &Tensor,
    dx: &Tensor,
) -> Result<Vec<Dispatch>> {
    max_pool2d_backward_with(ctx, desc, dy, indices, dx, PoolBackward::Auto)
}

/// Whether `form` means the scatter kernel for `desc` (an error for `Scatter` on
/// overlapping windows).
fn scatter(op: &'static str, desc: &Pool2dDesc, form: PoolBackward) -> Result<bool> {
    match form {
        PoolBackward::Auto => Ok(desc.windows_disjoint()),
        PoolBackward::Gather => Ok(false),
        PoolBackward::Scatter if desc.windows_disjoint() => Ok(true),
        PoolBackward::Scatter => Err(Error::invalid(format!(
            "{op}: the scatter form needs disjoint windows (stride >= kernel), got a {}x{} window with stride {:?}",
            desc.kh, desc.kw, desc.stride
        ))),
    }
}

/// How the pooling backwards ([`max_pool2d_backward_with`],
/// [`avg_pool2d_backward_with`]) compute dx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolBackward {
    /// Scatter when the windows are disjoint, gather otherwise.
    Auto,
    /// One invocation per dx element, gathering over the windows covering it
    /// (any windows).
    Gather,
    /// One invocation per output element, writing its cell of dx (disjoint windows
    /// only; with pairs of dx when [`Pool2dDesc::pairs`], max pooling).
    Scatter,
}

/// [`max_pool2d_backward`] with the form chosen by the caller (tests and
/// benchmarks compare them). `Scatter` on overlapping windows is an
/// [`Error::InvalidArgument`].
pub fn max_pool2d_backward_with(
    ctx: &Context,
    desc: &Pool2dDesc,
    dy: &Tensor,
    indices: &Tensor,
    dx: &Tensor,
    form: PoolBackward,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "max_pool2d_backward";
    let out = desc.output_shape()?;
    check_tensor(OP, "dy", dy, out, DType::F32)?;
    check_tensor(OP, "indices", indices, out, DType::U32)?;
    check_tensor(OP, "dx", dx, desc.input_shape(), DType::F32)?;
    let (kernel, plane_len) = if scatter(OP, desc, form)? {
        let kernel = if desc.pairs() {
            MAX_BACKWARD_2X2
        } else {
            MAX_BACKWARD_SCATTER
        };
        (kernel, out[2] * out[3])
    } else {
        (MAX_BACKWARD, desc.h * desc.w)
    };
    Ok(vec![launch(
        ctx,
        OP,
        kernel,
        desc,
        plane_len,
        &[(4, &dy.buffer), (5, &indices.buffer), (6, &dx.buffer)],
    )?])
}

/// Average pooling: `y[n, c, oy, ox]` = (sum of the window's real elements) /
/// `(kh·kw)` — padded positions count in the divisor, PyTorch's default
/// `count_include_pad=True`. `y` is overwritten.
pub fn avg_pool2d_forward(ctx: &Context, desc: &Pool2dDesc, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    const OP: &str = "avg_pool2d_forward";
    let out = desc.output_shape()?;
    check_tensor(OP, "x", x, desc.input_shape(), DType::F32)?;
    check_tensor(OP, "y", y, out, DType::F32)?;
    launch(
        ctx,
        OP,
        AVG_FORWARD,
        desc,
        out[2] * out[3],
        &[(1, &x.buffer), (2, &y.buffer)],
    )
}

/// Average pooling backward: `dx[n, c, iy, ix]` = sum over the windows covering
/// `(iy, ix)` of `dy / (kh·kw)`; overwritten. Scatter form for disjoint windows,
/// gather form otherwise (as [`max_pool2d_backward`]).
pub fn avg_pool2d_backward(ctx: &Context, desc: &Pool2dDesc, dy: &Tensor, dx: &Tensor) -> Result<Dispatch> {
    avg_pool2d_backward_with(ctx, desc, dy, dx, PoolBackward::Auto)
}

/// [`avg_pool2d_backward`] with the form chosen by the caller (the same choices
/// and errors as [`max_pool2d_backward_with`]).
pub fn avg_pool2d_backward_with(
    ctx: &Context,
    desc: &Pool2dDesc,
    dy: &Tensor,
    dx: &Tensor,
    form: PoolBackward,
) -> Result<Dispatch> {
    const OP: &str = "avg_pool2d_backward";
    let out = desc.output_shape()?;
    check_tensor(OP, "dy", dy, out, DType::F32)?;
    check_tensor(OP, "dx", dx, desc.input_shape(), DType::F32)?;
    let (kernel, plane_len) = if scatter(OP, desc, form)? {
        (AVG_BACKWARD_SCATTER, out[2] * out[3])
    } else {
        (AVG_BACKWARD, desc.h * desc.w)
    };
    launch(
        ctx,
        OP,
        kernel,
        desc,
        plane_len,
        &[(4, &dy.buffer), (6, &dx.buffer)],
    )
}
