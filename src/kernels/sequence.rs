//! Padded-sequence launchers (`shaders/sequence.wgsl`): each sample's unpadded
//! length from its token ids, each token's type (BERT's segment) from the
//! separators before it, and the pools that read a sequence `[B, T, F]` down
//! to `[B, F]` (the mean of its tokens, its last one or its first) over the real
//! tokens only.
//! CPU twins: [`crate::reference::sequence`].

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::elementwise::{count_u32, expect_f32_sizes, expect_separate};
use crate::kernels::{Kernel, Shader, groups_for};

/// Invocations per workgroup.
const WG: u32 = 256;

const LENGTHS: Kernel = Shader::Sequence.kernel("sequence_lengths");
const TOKEN_TYPES: Kernel = Shader::Sequence.kernel("token_types");
const POOL: Kernel = Shader::Sequence.kernel("sequence_pool");
const POOL_MASKED: Kernel = Shader::Sequence.kernel("sequence_pool_masked");
const POOL_BACKWARD: Kernel = Shader::Sequence.kernel("sequence_pool_backward");
const POOL_BACKWARD_MASKED: Kernel = Shader::Sequence.kernel("sequence_pool_backward_masked");
const MASK_POSITIONS: Kernel = Shader::Sequence.kernel("mask_positions");

/// What [`mask_positions`] scores a padded position in the forward pass: low
/// enough that a softmax over the positions gives it exactly 0.
pub const MASKED_SCORE: f32 = -1.0e30;

/// Mirrors `Params` in `shaders/sequence.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    tokens: u32,
    features: u32,
    mode: u32,
    pad: f32,
    types: u32,
    _pad1: u32,
    _pad2: u32,
}

/// How a sequence pool reads a sample's tokens down to one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequencePool {
    /// The mean of the real tokens (0 when there are none).
    Mean,
    /// The last real token (token 0 when there are none).
    Last,
    /// The first token (BERT's `[CLS]`), real or not.
    First,
}

/// The shape of a pool: `batch` samples of `tokens × features`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SequenceDims {
    /// Samples.
    pub batch: usize,
    /// Tokens per sample.
    pub tokens: usize,
    /// Features per token.
    pub features: usize,
}

impl SequenceDims {
    fn params(&self, op: &'static str, pool: SequencePool) -> Result<Params> {
        if self.batch == 0 || self.tokens == 0 || self.features == 0 {
            return Err(Error::shape(
                op,
                format!("every dimension must be at least 1, got {self:?}"),
            ));
        }
        count_u32(op, "values", self.batch * self.tokens * self.features)?;
        Ok(Params {
            batch: self.batch as u32,
            tokens: self.tokens as u32,
            features: self.features as u32,
            mode: match pool {
                SequencePool::Mean => 0,
                SequencePool::Last => 1,
                SequencePool::First => 2,
            },
            ..Params::default()
        })
    }
}

/// `lengths[b]` = 1 + the last token of sample `b` whose id is not `pad` (0 when
/// all are): padding is the run of `pad` ids ending a sample; a `pad` id before a
/// real token is an ordinary token. `ids` is `[batch, tokens]` (f32 ids),
/// `lengths` `[batch]`.
pub fn sequence_lengths(
    ctx: &Context,
    ids: &Tensor,
    tokens: usize,
    pad: u32,
    lengths: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "sequence_lengths";
    let batch = lengths.numel();
    let dims = SequenceDims {
        batch,
        tokens,
        features: 1,
    };
    let params = Params {
        pad: pad as f32,
        ..dims.params(OP, SequencePool::Mean)?
    };
    if pad as f32 as u32 != pad {
        return Err(Error::invalid(format!(
            "{OP}: padding id {pad} is not exact as f32 (ids above 2^24 are not)"
        )));
    }
    expect_f32_sizes(
        OP,
        &dims,
        &[("ids", ids, batch * tokens), ("lengths", lengths, batch)],
    )?;
    expect_separate(OP, &[("lengths", lengths)], &[ids])?;
    ctx.dispatch(
        LENGTHS,
        &[("WG", WG as f64)],
        &params,
        &[(1, &ids.buffer), (3, &lengths.buffer)],
        groups_for(ctx, batch, WG)?,
    )
}

/// `types[b, t]` = the number of `separator` ids among `ids[b, 0..t]`, at most
/// `types − 1`: the segment of each token of samples framed as BERT frames a pair
/// of texts (`[CLS] A [SEP] B [SEP]`: 0 through the first `[SEP]`, 1 after it;
/// a single text is all 0). `ids` and `types` are `[batch, tokens]` (f32 ids);
/// `count` (the number of types) is at least 1.
pub fn token_types(
    ctx: &Context,
    ids: &Tensor,
    tokens: usize,
    separator: u32,
    count: usize,
    types: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "token_types";
    let batch = ids.numel() / tokens.max(1);
    let dims = SequenceDims {
        batch,
        tokens,
        features: 1,
    };
    if count == 0 || u32::try_from(count).is_err() {
        return Err(Error::invalid(format!(
            "{OP}: {count} token types; give at least 1"
        )));
    }
    if separator as f32 as u32 != separator {
        return Err(Error::invalid(format!(
            "{OP}: separator id {separator} is not exact as f32 (ids above 2^24 are not)"
        )));
    }
    let params = Params {
        pad: separator as f32,
        types: count as u32,
        ..dims.params(OP, SequencePool::Mean)?
    };
    expect_f32_sizes(
        OP,
        &dims,
        &[("ids", ids, batch * tokens), ("types", types, batch * tokens)],
    )?;
    expect_separate(OP, &[("types", types)], &[ids])?;
    ctx.dispatch(
        TOKEN_TYPES,
        &[("WG", WG as f64)],
        &params,
        &[(1, &ids.buffer), (3, &types.buffer)],
        groups_for(ctx, batch * tokens, WG)?,
    )
}

/// `y[b, :]` = the `pool` of sample `b`'s tokens in `x` (`[batch, tokens,
/// features]`): all of them, or with `lengths` (`[batch]`, from
/// [`sequence_lengths`]) its first `lengths[b]`. `y` is `[batch, features]`.
pub fn sequence_pool(
    ctx: &Context,
    dims: &SequenceDims,
    pool: SequencePool,
    x: &Tensor,
    lengths: Option<&Tensor>,
    y: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "sequence_pool";
    let params = dims.params(OP, pool)?;
    let (b, t, f) = (dims.batch, dims.tokens, dims.features);
    expect_f32_sizes(OP, dims, &[("x", x, b * t * f), ("y", y, b * f)])?;
    launch(ctx, OP, (POOL, POOL_MASKED), &params, (x, lengths, y), b * f)
}

/// The gradient of [`sequence_pool`]: `dx` (`[batch, tokens, features]`,
/// overwritten) from `dy` (`[batch, features]`): `dy/n` on each of the `n` pooled
/// tokens (the mean) or `dy` on the picked one (the last or the first), 0 elsewhere.
pub fn sequence_pool_backward(
    ctx: &Context,
    dims: &SequenceDims,
    pool: SequencePool,
    dy: &Tensor,
    lengths: Option<&Tensor>,
    dx: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "sequence_pool_backward";
    let params = dims.params(OP, pool)?;
    let (b, t, f) = (dims.batch, dims.tokens, dims.features);
    expect_f32_sizes(OP, dims, &[("dy", dy, b * f), ("dx", dx, b * t * f)])?;
    launch(
        ctx,
        OP,
        (POOL_BACKWARD, POOL_BACKWARD_MASKED),
        &params,
        (dy, lengths, dx),
        b * t * f,
    )
}

/// `y = x` but at padded positions, which get `fill`: `x` and `y` are `[batch,
/// rows, positions]` with `dims.features` rows of `dims.tokens` positions (a
/// padded sequence's positions as the classes of each row, a question
/// answerer's start and end scores), `lengths` (`[batch]`) each sample's real
/// positions. Forward with [`MASKED_SCORE`]; the gradient, with 0.
pub fn mask_positions(
    ctx: &Context,
    dims: &SequenceDims,
    x: &Tensor,
    lengths: &Tensor,
    fill: f32,
    y: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "mask_positions";
    let params = Params {
        pad: fill,
        ..dims.params(OP, SequencePool::Mean)?
    };
    let n = dims.batch * dims.tokens * dims.features;
    expect_f32_sizes(OP, dims, &[("x", x, n), ("y", y, n)])?;
    launch(
        ctx,
        OP,
        (MASK_POSITIONS, MASK_POSITIONS),
        &params,
        (x, Some(lengths), y),
        n,
    )
}

/// One invocation per output value of `dst`, the masked entry point with lengths.
fn launch(
    ctx: &Context,
    op: &'static str,
    (plain, masked): (Kernel, Kernel),
    params: &Params,
    (src, lengths, dst): (&Tensor, Option<&Tensor>, &Tensor),
    outputs: usize,
) -> Result<Dispatch> {
    let groups = groups_for(ctx, outputs, WG)?;
    let constants = [("WG", WG as f64)];
    match lengths {
        None => {
            expect_separate(op, &[("output", dst)], &[src])?;
            ctx.dispatch(
                plain,
                &constants,
                params,
                &[(1, &src.buffer), (3, &dst.buffer)],
                groups,
            )
        }
        Some(l) => {
            l.expect_dtype(op, "lengths", DType::F32)?;
            if l.numel() != params.batch as usize {
                return Err(Error::shape(
                    op,
                    format!(
                        "{} lengths for {} samples; give one per sample",
                        l.numel(),
                        params.batch
                    ),
                ));
            }
            expect_separate(op, &[("output", dst)], &[src, l])?;
            ctx.dispatch(
                masked,
                &constants,
                params,
                &[(1, &src.buffer), (2, &l.buffer), (3, &dst.buffer)],
                groups,
            )
        }
    }
}
