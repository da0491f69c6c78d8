//! `Op::Embedding`: each token id of `ids` (per sample any shape, f32 values)
//! replaced by its row of a `[vocab, dim]` parameter table (Keras' `Embedding`,
//! PyTorch's `nn.Embedding`). Ids carry no gradient; the table's gradient sums the
//! rows' gradients per id (`kernels::embedding`).

use crate::error::{Error, Result};
use crate::gpu::Tensor;
use crate::graph::ops::{BackwardLowering, Lowering, RefBackward, RefForward};
use crate::graph::{Graph, NodeId, Op, shape_err};
use crate::kernels::embedding as kernel;
use crate::reference as r;

impl Graph {
    /// The rows of `table` (`[vocab, dim]`) picked by the ids in `ids`:
    /// `ids`' shape plus `[dim]` per sample. With `mask = Some(pad)` (ids `[T]`),
    /// the sequence is padded past each sample's last id that is not `pad`
    /// ([`Graph::sequence_lengths`]): pools and attention downstream skip the
    /// padding. Without a mask, ids that are a padded sequence (an
    /// [`Op::TokenTypes`] of padded ids) make a sequence of their padding.
    pub fn embedding(
        &mut self,
        ids: NodeId,
        table: NodeId,
        mask: Option<u32>,
        layer: &str,
    ) -> Result<NodeId> {
        let ts = self.shape(table).to_vec();
        if ts.len() != 2 {
            return Err(shape_err(
                layer,
                format!("the embedding table must be [vocab, dim], got {ts:?}"),
            ));
        }
        if let Some(pad) = mask
            && pad as usize >= ts[0]
        {
            return Err(shape_err(
                layer,
                format!("mask_id {pad} is not a row of the {}-row table", ts[0]),
            ));
        }
        if let Op::TokenTypes { types, .. } = self.nodes[ids].op
            && types as usize > ts[0]
        {
            return Err(shape_err(
                layer,
                format!(
                    "its ids are {types} token types but its table has {} rows; give it input_dim {types}",
                    ts[0]
                ),
            ));
        }
        let lengths = match mask {
            Some(pad) => Some(self.lengths_node(ids, pad, layer)?),
            // Ids that are a padded sequence (token types) make one of the same padding.
            None => self.lengths_of(ids),
        };
        let mut shape = self.shape(ids).to_vec();
        shape.push(ts[1]);
        Ok(self.push(Op::Embedding { ids, table, lengths }, shape, layer))
    }
}

/// Ids are indices, not values: nothing upstream of them can learn through them.
fn no_gradient_into_ids(graph: &Graph, id: NodeId, ids: NodeId) -> Error {
    Error::invalid(format!(
        "layer '{}': its token ids come from layers with trainable parameters (through \
         '{}'), but ids carry no gradient; feed the ids from the model's input",
        graph.nodes[id].layer, graph.nodes[ids].layer
    ))
}

pub(crate) fn forward(lw: &mut Lowering<'_>, id: NodeId, ids: NodeId, table: NodeId) -> Result<Tensor> {
    let y = lw.output(id)?;
    lw.dispatches.push(kernel::embedding_forward(
        lw.ctx,
        &lw.value(ids),
        &lw.value(table),
        &y,
    )?);
    Ok(y)
}

pub(crate) fn backward(
    bw: &mut BackwardLowering<'_>,
    id: NodeId,
    dy: &Tensor,
    ids: NodeId,
    table: NodeId,
) -> Result<()> {
    if bw.req[ids] {
        return Err(no_gradient_into_ids(bw.graph, id, ids));
    }
    if bw.req[table] {
        let dt = bw.param_grad(table)?;
        let ids = bw.value(ids);
        bw.dispatches
            .extend(kernel::embedding_backward(bw.ctx, &ids, dy, &dt)?);
    }
    Ok(())
}

pub(crate) fn reference_forward(rf: &mut RefForward<'_>, id: NodeId, ids: NodeId, table: NodeId) -> Vec<f32> {
    let dim = rf.graph.shape(table)[1];
    let mut y = vec![0.0; rf.numel(id)];
    r::embedding::embedding_forward(rf.value(ids), rf.value(table), dim, &mut y);
    y
}

pub(crate) fn reference_backward(
    rb: &mut RefBackward<'_>,
    id: NodeId,
    dy: &[f32],
    ids: NodeId,
    table: NodeId,
) -> Result<()> {
    if rb.req[ids] {
        return Err(no_gradient_into_ids(rb.graph, id, ids));
    }
    if rb.req[table] {
        let dim = rb.graph.shape(table)[1];
        let mut dt = vec![0.0; rb.graph.shape(table).iter().product()];
        r::embedding::embedding_backward(rb.value(ids), dy, dim, &mut dt);
        rb.add_grad(table, dt);
    }
    Ok(())
}
