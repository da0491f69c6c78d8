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

/// Mirrors `Params` in `shaders/embedding.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    tokens: u32,
    vocab: u32,
    dim: u32,
    _pad: u32,
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
        _pad: 0,
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
/// are zeros). `dtable` is `[vocab, dim]`.
pub fn embedding_backward(ctx: &Context, ids: &Tensor, dy: &Tensor, dtable: &Tensor) -> Result<Dispatch> {
    const OP: &str = "embedding_backward";
    // (params also refuses dy sharing dtable's buffer: they are its rows and table.)
    let params = params(OP, ids, dtable, dy)?;
    ctx.dispatch(
        BACKWARD,
        &[("WG", WG as f64)],
        &params,
        &[(1, &ids.buffer), (2, &dy.buffer), (3, &dtable.buffer)],
        groups_for(ctx, dtable.shape()[0], 1)?,
    )
}
