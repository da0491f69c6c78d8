//! Embedding launchers (`shaders/embedding.wgsl`): rows of a `[vocab, dim]` table
//! picked by token ids, and the table's gradient summed per row in token order.
//! CPU twins: [`crate::reference::embedding`].

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::elementwise::{count_u32, same_buffer};
use crate::kernels::{Kernel, Shader, groups_for};

/// Invocations per workgroup.
pub const WG: u32 = 64;

const FORWARD: Kernel = Shader::Embedding.kernel("embedding_forward");
const BACKWARD: Kernel = Shader::Embedding.kernel("embedding_backward");
const SORT_COUNT: Kernel = Shader::Embedding.kernel("embedding_sort_count");
const SORT_SCAN: Kernel = Shader::Embedding.kernel("embedding_sort_scan");
const SORT_SCATTER: Kernel = Shader::Embedding.kernel("embedding_sort_scatter");
const BACKWARD_SORTED: Kernel = Shader::Embedding.kernel("embedding_backward_sorted");

/// Tokens per block of the sort, and its radix (`SORT_WG` in the shader).
const SORT_WG: u32 = 256;

/// Vocabularies above this sort the tokens by row for the gradient; smaller
/// ones scan every token per row (one dispatch, `vocab·tokens` id checks), which
/// costs about what the sort's several dispatches do at this size.
pub const SORT_ABOVE_VOCAB: usize = 64;

/// How [`embedding_backward_with`] finds each row's tokens. Both give the same
/// sums in the same (token) order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbeddingGradient {
    /// One workgroup per row checks every token's id (one dispatch;
    /// `vocab·tokens` id checks).
    Scan,
    /// The tokens sorted by row first (a stable radix sort: a count, scan and
    /// scatter dispatch per 8 bits of the row), then each row sums its run.
    Sorted,
}

impl EmbeddingGradient {
    /// The choice for a table of `vocab` rows: [`EmbeddingGradient::Sorted`]
    /// above [`SORT_ABOVE_VOCAB`].
    pub fn for_vocab(vocab: usize) -> EmbeddingGradient {
        if vocab > SORT_ABOVE_VOCAB {
            EmbeddingGradient::Sorted
        } else {
            EmbeddingGradient::Scan
        }
    }

    /// `scan` or `sorted`.
    pub fn name(self) -> &'static str {
        match self {
            EmbeddingGradient::Scan => "scan",
            EmbeddingGradient::Sorted => "sorted",
        }
    }
}

/// Mirrors `Params` in `shaders/embedding.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    tokens: u32,
    vocab: u32,
    dim: u32,
    /// The sort pass's digit: bits `shift..shift + 8` of the row.
    shift: u32,
}

/// Checks `ids` (f32, any shape), the `[vocab, dim]` table (or its gradient) and
/// the `[tokens, dim]` rows; returns the uniform.
fn params(op: &'static str, ids: &Tensor, table: &Tensor, rows: &Tensor) -> Result<Params> {
    for (what, t) in [("ids", ids), ("table", table), ("rows", rows)] {
        t.expect_dtype(op, what, DType::F32)?;
    }
    let [vocab, dim] = *table.shape() else {
        return Err(Error::shape(
            op,
            format!("the table must be [vocab, dim], got {:?}", table.shape()),
        ));
    };
    if vocab == 0 || dim == 0 {
        return Err(Error::shape(
            op,
            format!("the table {:?} is empty", table.shape()),
        ));
    }
    let tokens = ids.numel();
    if rows.numel() != tokens * dim {
        return Err(Error::shape(
            op,
            format!(
                "{tokens} ids of {dim}-value rows need {} values, the rows tensor has {}",
                tokens * dim,
                rows.numel()
            ),
        ));
    }
    if same_buffer(rows, ids) || same_buffer(rows, table) || same_buffer(ids, table) {
        return Err(Error::invalid(format!(
            "{op}: ids, table and rows must be separate tensors"
        )));
    }
    Ok(Params {
        tokens: count_u32(op, "ids", tokens)?,
        vocab: count_u32(op, "vocab", vocab)?,
        dim: count_u32(op, "dim", dim)?,
        shift: 0,
    })
}

/// `y[t, :] = table[ids[t], :]` for every id (ids as f32 values; one that is not a
/// whole number in `[0, vocab)` gives a row of zeros). `y` has `ids.numel()·dim`
/// values.
pub fn embedding_forward(ctx: &Context, ids: &Tensor, table: &Tensor, y: &Tensor) -> Result<Dispatch> {
    const OP: &str = "embedding_forward";
    let params = params(OP, ids, table, y)?;
    ctx.dispatch(
        FORWARD,
        &[("WG", WG as f64)],
        &params,
        &[(1, &ids.buffer), (2, &table.buffer), (3, &y.buffer)],
        groups_for(ctx, ids.numel() * table.shape()[1], WG)?,
    )
}

/// The table's gradient from the rows' gradient `dy`: `dtable[v, :] = Σ dy[t, :]`
/// over the tokens whose id is `v`, in token order (overwritten; rows no id picks
/// are zeros). `dtable` is `[vocab, dim]`. Vocabularies above
/// [`SORT_ABOVE_VOCAB`] sort the tokens by row first (see
/// [`EmbeddingGradient`]), the same sums in the same order.
pub fn embedding_backward(
    ctx: &Context,
    ids: &Tensor,
    dy: &Tensor,
    dtable: &Tensor,
) -> Result<Vec<Dispatch>> {
    let how = EmbeddingGradient::for_vocab(dtable.shape().first().copied().unwrap_or(0));
    embedding_backward_with(ctx, ids, dy, dtable, how)
}

/// [`embedding_backward`] the way `how` says (benchmarks and tests compare the two).
pub fn embedding_backward_with(
    ctx: &Context,
    ids: &Tensor,
    dy: &Tensor,
    dtable: &Tensor,
    how: EmbeddingGradient,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "embedding_backward";
    // (params also refuses dy sharing dtable's buffer: they are its rows and table.)
    let params = params(OP, ids, dtable, dy)?;
    let rows_grid = groups_for(ctx, dtable.shape()[0], 1)?;
    if how == EmbeddingGradient::Scan {
        return Ok(vec![ctx.dispatch(
            BACKWARD,
            &[("WG", WG as f64)],
            &params,
            &[(1, &ids.buffer), (2, &dy.buffer), (3, &dtable.buffer)],
            rows_grid,
        )?]);
    }
    let tokens = ids.numel().max(1) as u64;
    let blocks = tokens.div_ceil(SORT_WG as u64);
    let scratch = |what: &str, len: u64| {
        ctx.create_buffer(
            &format!("embedding_backward {what}"),
            len * 4,
            wgpu::BufferUsages::STORAGE,
        )
    };
    // Two (rows, tokens) pairs the passes write in turn, and the histogram.
    let pairs = [
        [scratch("rows", tokens)?, scratch("tokens", tokens)?],
        [scratch("rows", tokens)?, scratch("tokens", tokens)?],
    ];
    let hist = scratch("digit counts", SORT_WG as u64 * blocks)?;
    let block_grid = groups_for(ctx, blocks as usize, 1)?;
    // Rows run to vocab (ids that select none); enough 8-bit digits for it.
    let bits = 32 - params.vocab.leading_zeros();
    let passes = bits.div_ceil(8).max(1);
    let mut dispatches = Vec::with_capacity(3 * passes as usize + 1);
    for pass in 0..passes {
        let p = Params {
            shift: 8 * pass,
            ..params
        };
        let [rows_in, tokens_in] = &pairs[(pass as usize + 1) % 2];
        let [rows_out, tokens_out] = &pairs[pass as usize % 2];
        let bindings = [
            (1, &ids.buffer),
            (4, rows_in),
            (5, tokens_in),
            (6, rows_out),
            (7, tokens_out),
            (8, &hist),
        ];
        dispatches.push(ctx.dispatch(
            SORT_COUNT,
            &[],
            &p,
            &[(1, &ids.buffer), (4, rows_in), (8, &hist)],
            block_grid,
        )?);
        dispatches.push(ctx.dispatch(SORT_SCAN, &[], &p, &[(8, &hist)], [1, 1, 1])?);
        dispatches.push(ctx.dispatch(SORT_SCATTER, &[], &p, &bindings, block_grid)?);
    }
    let [rows, sorted] = &pairs[(passes as usize - 1) % 2];
    dispatches.push(ctx.dispatch(
        BACKWARD_SORTED,
        &[("WG", WG as f64)],
        &params,
        &[(2, &dy.buffer), (3, &dtable.buffer), (6, rows), (7, sorted)],
        rows_grid,
    )?);
    Ok(dispatches)
}
