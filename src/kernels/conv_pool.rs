//! Fused `Conv2D(activation)` + `MaxPool2D(2)` launchers: forward (pooled output
//! and packed arg-max windows) and the weight/bias gradient, without ever
//! writing the convolution's output. Kernels in `shaders/conv_pool.wgsl` (its
//! header states the contract and the index layout), CPU twins in
//! [`crate::reference::conv_pool`].
//!
//! These kernels exist for CPU adapters (lavapipe), where every storage access
//! is expensive and the unfused path spends most of a small CNN's conv layer on
//! writing and re-reading the convolution output. They need subgroups of at
//! least 8 lanes ([`supported`]); the graph planner uses them only on CPU
//! adapters, for a convolution whose only consumer is a 2×2/2 max-pool and whose
//! input needs no gradient (the first layer of a CNN): they give no input
//! gradient.

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::conv::{
    Conv2dDesc, W_DIMS, X_DIMS, check_bias, check_common, check_tensor, reduce_weight_parts, u32_of,
};
use crate::kernels::matmul::Activation;
use crate::kernels::{Kernel, Shader, groups_for};

const FORWARD: Kernel = Shader::ConvPool.kernel("conv_pool_forward");
const BACKWARD: Kernel = Shader::ConvPool.kernel("conv_pool_backward");

/// Output channels per workgroup (8 lanes × a quad each).
pub const CHANNEL_BLOCK: usize = 32;
/// Most taps (`c_in·kh·kw`) one backward workgroup handles; more taps take more
/// workgroups.
pub const TAP_BLOCK: usize = 16;
/// Backward workgroups aimed for along the positions: enough to keep every core
/// of a CPU adapter busy, few enough that the final reduction stays small.
const TARGET_CHUNKS: usize = 64;

const POOLED_DIMS: [&str; 4] = [
    "the batch size",
    "the channel count (c_out)",
    "the pooled height",
    "the pooled width",
];

/// A convolution followed by its activation and a 2×2 max-pool of stride 2
/// (floor mode, no padding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvPoolDesc {
    /// The convolution (sizes, stride and padding).
    pub conv: Conv2dDesc,
    /// The convolution's activation (the kernel applies it to each pooled maximum, the
    /// same for these monotonic functions).
    pub activation: Activation,
}

impl ConvPoolDesc {
    /// `[n, c_out, oh / 2, ow / 2]`, after checking the description; an error when
    /// the convolution's output is smaller than one 2×2 window.
    pub fn pooled_shape(&self) -> Result<[usize; 4]> {
        let (oh, ow) = self.conv.out_hw()?;
        if oh < 2 || ow < 2 {
            return Err(Error::shape(
                "conv_pool",
                format!("the convolution's {oh}x{ow} output is smaller than the 2x2 pooling window"),
            ));
        }
        Ok([self.conv.n, self.conv.c_out, oh / 2, ow / 2])
    }

    /// The packed 4-bit codes (arg-max window, gradient-passes bit): u32
    /// `[n, 4·ceil(c_out / 32), oh / 2, ow / 2]`.
    pub fn index_shape(&self) -> Result<[usize; 4]> {
        let [n, c, ph, pw] = self.pooled_shape()?;
        Ok([n, 4 * c.div_ceil(CHANNEL_BLOCK), ph, pw])
    }
}

/// Whether `ctx` can run these kernels: subgroups of at least 8 lanes.
pub fn supported(ctx: &Context) -> bool {
    crate::kernels::matmul::has_subgroups(ctx) && ctx.info.subgroup_min_size >= 8
}

/// Mirrors `Params` in `shaders/conv_pool.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    pt: u32,
    pl: u32,
    ph: u32,
    pw: u32,
    taps: u32,
    positions: u32,
    chan_blocks: u32,
    tap_blocks: u32,
    per_lane: u32,
    chunks: u32,
    _pad0: u32,
    _pad1: u32,
}

fn params(desc: &ConvPoolDesc, per_lane: usize, chunks: usize) -> Result<Params> {
    let c = &desc.conv;
    let pads = c.pads()?;
    let [n, _, ph, pw] = desc.pooled_shape()?;
    // Every flat index the kernels form must fit u32.
    let (oh, ow) = c.out_hw()?;
    let largest = (n * c.c_in * c.h * c.w).max(n * c.c_out * oh * ow);
    u32_of("tensor size", largest)?;
    Ok(Params {
        c_in: u32_of("c_in", c.c_in)?,
        h: u32_of("h", c.h)?,
        w: u32_of("w", c.w)?,
        c_out: u32_of("c_out", c.c_out)?,
        kh: u32_of("kh", c.kh)?,
        kw: u32_of("kw", c.kw)?,
        sh: u32_of("stride", c.stride.0)?,
        sw: u32_of("stride", c.stride.1)?,
        pt: u32_of("padding", pads.top)?,
        pl: u32_of("padding", pads.left)?,
        ph: u32_of("pooled height", ph)?,
        pw: u32_of("pooled width", pw)?,
        taps: u32_of("c_in*kh*kw", c.ckk())?,
        positions: u32_of("pooled positions", n * ph * pw)?,
        chan_blocks: u32_of("channel blocks", c.c_out.div_ceil(CHANNEL_BLOCK))?,
        tap_blocks: u32_of("tap blocks", c.ckk().div_ceil(TAP_BLOCK))?,
        per_lane: u32_of("positions per lane", per_lane)?,
        chunks: u32_of("chunks", chunks)?,
        _pad0: 0,
        _pad1: 0,
    })
}

fn check_supported(ctx: &Context, op: &'static str) -> Result<()> {
    if supported(ctx) {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{op} needs subgroups of at least 8 lanes, which {} does not offer (subgroups: {}, \
         smallest subgroup: {}); use conv2d_forward/conv2d_backward and the max-pool kernels instead",
        ctx.info.name,
        crate::kernels::matmul::has_subgroups(ctx),
        ctx.info.subgroup_min_size
    )))
}

fn check_index(op: &'static str, desc: &ConvPoolDesc, idx: &Tensor) -> Result<()> {
    idx.expect_dtype(op, "idx", DType::U32)?;
    let want = desc.index_shape()?;
    if idx.numel() != want.iter().product::<usize>() {
        return Err(Error::shape(
            op,
            format!(
                "idx has shape {:?} ({} elements), expected {want:?} (four words per 32 channels)",
                idx.shape(),
                idx.numel()
            ),
        ));
    }
    Ok(())
}

fn act_constant(a: Activation) -> f64 {
    a.code() as f64
}

/// Forward: `y = maxpool2x2(act(conv(x, w) + bias))` and, in `idx`, each
/// output's arg-max window and whether its gradient passes the activation
/// (layout in `shaders/conv_pool.wgsl`).
pub fn conv_pool_forward(
    ctx: &Context,
    desc: &ConvPoolDesc,
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    y: &Tensor,
    idx: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "conv_pool_forward";
    check_supported(ctx, OP)?;
    check_common(OP, &desc.conv, x, w)?;
    check_bias(OP, "bias", &desc.conv, bias)?;
    check_tensor(OP, "y", y, &desc.pooled_shape()?, &POOLED_DIMS)?;
    check_index(OP, desc, idx)?;
    let p = params(desc, 0, 0)?;
    // 16 positions (two per invocation) per workgroup.
    let groups = groups_for(
        ctx,
        (p.positions as usize).div_ceil(16) * p.chan_blocks as usize,
        1,
    )?;
    ctx.dispatch(
        FORWARD,
        &[("ACT", act_constant(desc.activation))],
        &p,
        &[
            (1, &x.buffer),
            (2, &w.buffer),
            (3, &bias.buffer),
            (4, &y.buffer),
            (5, &idx.buffer),
        ],
        groups,
    )
}

/// Backward: overwrites `dw` (`[c_out, c_in, kh, kw]`) and `db` (`[c_out]`) with
/// the gradient of the loss given `dy`, the gradient of the pooled output `y`,
/// and the `idx` that [`conv_pool_forward`] wrote. Allocates its partial-sum
/// scratch once; the returned dispatches can be replayed.
#[allow(clippy::too_many_arguments)]
pub fn conv_pool_backward(
    ctx: &Context,
    desc: &ConvPoolDesc,
    x: &Tensor,
    dy: &Tensor,
    y: &Tensor,
    idx: &Tensor,
    dw: &Tensor,
    db: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "conv_pool_backward";
    check_supported(ctx, OP)?;
    let c = &desc.conv;
    c.validate()?;
    check_tensor(OP, "x", x, &c.input_shape(), &X_DIMS)?;
    let pooled = desc.pooled_shape()?;
    check_tensor(OP, "dy", dy, &pooled, &POOLED_DIMS)?;
    check_tensor(OP, "y", y, &pooled, &POOLED_DIMS)?;
    check_index(OP, desc, idx)?;
    check_tensor(OP, "dw", dw, &c.weight_shape(), &W_DIMS)?;
    check_bias(OP, "db", c, db)?;

    let positions = pooled[0] * pooled[2] * pooled[3];
    let per_lane = positions.div_ceil(8 * TARGET_CHUNKS).max(1);
    let chunks = positions.div_ceil(8 * per_lane);
    let p = params(desc, per_lane, chunks)?;
    let ld = c.ckk() + 1;
    let parts = Tensor::zeros(ctx, &[chunks, ld, c.c_out], DType::F32)?;
    let tb = c.ckk().min(TAP_BLOCK);
    let groups = groups_for(ctx, chunks * p.tap_blocks as usize * p.chan_blocks as usize, 1)?;
    let partial = ctx.dispatch(
        BACKWARD,
        &[("ACT", act_constant(desc.activation)), ("TB", tb as f64)],
        &p,
        &[
            (1, &x.buffer),
            (6, &dy.buffer),
            (7, &y.buffer),
            (8, &idx.buffer),
            (9, &parts.buffer),
        ],
        groups,
    )?;
    let reduce = reduce_weight_parts(ctx, c, &parts, chunks, dw, db, false)?;
    Ok(vec![partial, reduce])
}
