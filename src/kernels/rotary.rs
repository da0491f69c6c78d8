//! Rotary position embedding launcher (`shaders/rotary.wgsl`): each head's
//! halves of a query or key projection rotated by its token's angles, as Llama
//! and Hugging Face's `apply_rotary_pos_emb` do. CPU twin:
//! [`crate::reference::rotary`].

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::elementwise::{count_u32, expect_same_shape, same_buffer};
use crate::kernels::{Kernel, Shader, groups_for};

/// Invocations per workgroup.
pub const WG: u32 = 256;

const ROTARY: Kernel = Shader::Rotary.kernel("rotary");

/// Mirrors `Params` in `shaders/rotary.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    tokens: u32,
    heads: u32,
    half: u32,
    sign: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

/// Which way [`rotary`] turns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// By the angles: the forward pass.
    Forward,
    /// Back, by minus the angles (the rotation's transpose): the backward pass,
    /// `dx` from `dy`.
    Back,
}

/// `y` = `x` `[rows, heads·2·half]` (rows = samples·`tokens`, each token's heads
/// side by side) with each head's halves rotated by its token's angles
/// (see the shader). `table` holds `2·tokens·half` values: the angles' cosines
/// `[tokens, half]`, then their sines ([`crate::reference::rotary::angle_table`]).
/// `y` has `x`'s shape, in a distinct buffer.
pub fn rotary(
    ctx: &Context,
    x: &Tensor,
    table: &Tensor,
    (tokens, heads): (usize, usize),
    turn: Turn,
    y: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "rotary";
    x.expect_dtype(OP, "x", DType::F32)?;
    table.expect_dtype(OP, "table", DType::F32)?;
    expect_same_shape(OP, "x", x, "y", y)?;
    let width = x.shape().last().copied().unwrap_or(0);
    let rows = x.numel() / width.max(1);
    if tokens == 0 || heads == 0 || !width.is_multiple_of(2 * heads) || !rows.is_multiple_of(tokens) {
        return Err(Error::shape(
            OP,
            format!(
                "x {:?} is not rows of {tokens} tokens by {heads} heads of an even size",
                x.shape()
            ),
        ));
    }
    let half = width / (2 * heads);
    if table.numel() != 2 * tokens * half {
        return Err(Error::shape(
            OP,
            format!(
                "the table has {} values; {tokens} tokens of {half} angles need {} (cosines, then sines)",
                table.numel(),
                2 * tokens * half
            ),
        ));
    }
    if same_buffer(x, y) || same_buffer(table, y) {
        return Err(Error::invalid(
            "rotary: y must be a buffer apart from x and the table",
        ));
    }
    let n = rows * heads * half;
    let params = Params {
        n: count_u32(OP, "pairs", n)?,
        tokens: count_u32(OP, "tokens", tokens)?,
        heads: count_u32(OP, "heads", heads)?,
        half: count_u32(OP, "half", half)?,
        sign: match turn {
            Turn::Forward => 1.0,
            Turn::Back => -1.0,
        },
        ..Params::default()
    };
    ctx.dispatch(
        ROTARY,
        &[("WG", WG as f64)],
        &params,
        &[(1, &y.buffer), (2, &x.buffer), (3, &table.buffer)],
        groups_for(ctx, n, WG)?,
    )
}
