//! Block copy launcher (`shaders/copy.wgsl`): one block of every row of a
//! `[rows, stride]` tensor into another's, the forward and backward of
//! concatenation and slicing. CPU twin: [`crate::reference::copy`].

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::elementwise::{count_u32, same_buffer};
use crate::kernels::{Kernel, Shader, groups_for};

/// Invocations per workgroup.
pub const WG: u32 = 256;

const COPY_BLOCKS: Kernel = Shader::Copy.kernel("copy_blocks");

/// Mirrors `Params` in `shaders/copy.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    len: u32,
    src_stride: u32,
    src_offset: u32,
    dst_stride: u32,
    dst_offset: u32,
    _pad0: u32,
    _pad1: u32,
}

/// Which block of which rows a copy moves: `len` values at `offset` of each row of
/// `stride` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// Values per row of the tensor.
    pub stride: usize,
    /// Where the block starts in each row.
    pub offset: usize,
}

/// `y[r, dst.offset + j] = x[r, src.offset + j]` for every row `r < rows` and
/// `j < len`. Errors unless both blocks lie inside their rows, both tensors hold
/// `rows` rows of their stride, and `x` and `y` are distinct f32 buffers.
pub fn copy_blocks(
    ctx: &Context,
    x: &Tensor,
    src: Block,
    y: &Tensor,
    dst: Block,
    rows: usize,
    len: usize,
) -> Result<Dispatch> {
    const OP: &str = "copy_blocks";
    x.expect_dtype(OP, "x", DType::F32)?;
    y.expect_dtype(OP, "y", DType::F32)?;
    for (what, t, b) in [("x", x, src), ("y", y, dst)] {
        if b.offset + len > b.stride || t.numel() != rows * b.stride {
            return Err(Error::shape(
                OP,
                format!(
                    "{what} has {} values; a block of {len} at {} of rows of {} needs {rows} rows of {}",
                    t.numel(),
                    b.offset,
                    b.stride,
                    b.stride
                ),
            ));
        }
    }
    if same_buffer(x, y) {
        return Err(Error::invalid("copy_blocks: x and y must be distinct buffers"));
    }
    let params = Params {
        n: count_u32(OP, "rows · len", rows * len)?,
        len: count_u32(OP, "len", len.max(1))?,
        src_stride: count_u32(OP, "src stride", src.stride)?,
        src_offset: count_u32(OP, "src offset", src.offset)?,
        dst_stride: count_u32(OP, "dst stride", dst.stride)?,
        dst_offset: count_u32(OP, "dst offset", dst.offset)?,
        ..Params::default()
    };
    ctx.dispatch(
        COPY_BLOCKS,
        &[("WG", WG as f64)],
        &params,
        &[(1, &y.buffer), (2, &x.buffer)],
        groups_for(ctx, params.n as usize, WG)?,
    )
}
