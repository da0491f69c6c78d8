//! Rotary position embedding launcher (`shaders/rotary.wgsl`): each head's
//! halves of a query or key projection rotated by its token's angles, as Llama
//! and Hugging Face's `apply_rotary_pos_emb` do, at the tokens' own positions
//! ([`rotary`]) or at a key/value-cache decoder's position ([`rotary_at`]). CPU
//! twin: [`crate::reference::rotary`].

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::attention_decode::DecodePosition;
use crate::kernels::elementwise::{count_u32, expect_same_shape, same_buffer};
use crate::kernels::{Kernel, Shader, groups_for};

/// Invocations per workgroup.
pub const WG: u32 = 256;

const ROTARY: Kernel = Shader::Rotary.kernel("rotary");
const ROTARY_AT: Kernel = Shader::Rotary.kernel("rotary_at");

/// Mirrors `Params` in `shaders/rotary.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    tokens: u32,
    heads: u32,
    half: u32,
    sign: f32,
    positions: u32,
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
    let params = params("rotary", x, table, (tokens, heads), tokens, turn, y)?;
    ctx.dispatch(
        ROTARY,
        &[("WG", WG as f64)],
        &params,
        &[(1, &y.buffer), (2, &x.buffer), (3, &table.buffer)],
        groups_for(ctx, params.n as usize, WG)?,
    )
}

/// `y` = `x` `[rows, heads·2·half]` with every row turned by the angles of the
/// position `position` holds when the dispatch runs (each row a token at the
/// decoder's position, e.g. one per sample). `table` holds the angles of every
/// position the decoder can reach ([`DecodePosition::capacity`]), cosines then
/// sines, as [`rotary`]'s table of that many tokens.
pub fn rotary_at(
    ctx: &Context,
    x: &Tensor,
    table: &Tensor,
    heads: usize,
    turn: Turn,
    position: &DecodePosition,
    y: &Tensor,
) -> Result<Dispatch> {
    let params = params("rotary_at", x, table, (1, heads), position.capacity(), turn, y)?;
    ctx.dispatch(
        ROTARY_AT,
        &[("WG", WG as f64)],
        &params,
        &[
            (1, &y.buffer),
            (2, &x.buffer),
            (3, &table.buffer),
            (4, &position.buffer),
        ],
        groups_for(ctx, params.n as usize, WG)?,
    )
}

/// Checks a turn of `x` into `y` by a table of `positions` positions' angles
/// and gives its parameters.
fn params(
    op: &'static str,
    x: &Tensor,
    table: &Tensor,
    (tokens, heads): (usize, usize),
    positions: usize,
    turn: Turn,
    y: &Tensor,
) -> Result<Params> {
    x.expect_dtype(op, "x", DType::F32)?;
    table.expect_dtype(op, "table", DType::F32)?;
    expect_same_shape(op, "x", x, "y", y)?;
    let width = x.shape().last().copied().unwrap_or(0);
    let rows = x.numel() / width.max(1);
    if tokens == 0 || heads == 0 || !width.is_multiple_of(2 * heads) || !rows.is_multiple_of(tokens) {
        return Err(Error::shape(
            op,
            format!(
                "x {:?} is not rows of {tokens} tokens by {heads} heads of an even size",
                x.shape()
            ),
        ));
    }
    let half = width / (2 * heads);
    if Some(table.numel()) != positions.checked_mul(2 * half) {
        return Err(Error::shape(
            op,
            format!(
                "the table has {} values; {positions} positions of {half} angles need {} (cosines, then sines)",
                table.numel(),
                positions.saturating_mul(2 * half)
            ),
        ));
    }
    if same_buffer(x, y) || same_buffer(table, y) {
        return Err(Error::invalid(format!(
            "{op}: y must be a buffer apart from x and the table"
        )));
    }
    let n = rows * heads * half;
    Ok(Params {
        n: count_u32(op, "pairs", n)?,
        tokens: count_u32(op, "tokens", tokens)?,
        heads: count_u32(op, "heads", heads)?,
        half: count_u32(op, "half", half)?,
        sign: match turn {
            Turn::Forward => 1.0,
            Turn::Back => -1.0,
        },
        positions: count_u32(op, "table positions", positions)?,
        ..Params::default()
    })
}
