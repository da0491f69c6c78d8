//! `Op::Dense`: `act(x · wᵀ + b)`, PyTorch's Linear layout. GPU: the tiled matmul
//! with bias and activation in its epilogue; backward: the weight gradient (with
//! Adam in its epilogue on CPU adapters), the bias gradient as a column sum, the
//! input gradient as a second product.

use crate::error::Result;
use crate::graph::ops::{BackwardLowering, Lowering, RefBackward, RefForward};
use crate::graph::{Graph, NodeId, Op, shape_err};
use crate::kernels::matmul::{self, Activation, MatmulDesc};
use crate::kernels::optim::{Optimizer, StepUniform};
use crate::kernels::reduce;
use crate::reference as r;

impl Graph {
    /// Dense layer on `x`: per-sample shape `[in]`, or a sequence `[tokens, in]`
    /// whose every token it maps (Keras' Dense on the last axis) to `[tokens, out]`.
    pub fn dense(
        &mut self,
        x: NodeId,
        w: NodeId,
        b: Option<NodeId>,
        act: Activation,
        layer: &str,
    ) -> Result<NodeId> {
        let xs = self.shape(x).to_vec();
        let ws = self.shape(w).to_vec();
        if xs.len() > 2 {
            return Err(shape_err(
                layer,
                format!(
                    "Dense expects features [in] or a sequence [tokens, in], got per-sample shape {xs:?}; \
                     add Flatten first"
                ),
            ));
        }
        let features = xs[xs.len() - 1];
        let bias_fits = b.is_none_or(|b| ws.len() == 2 && self.shape(b) == [ws[0]]);
        if ws.len() != 2 || ws[1] != features || !bias_fits {
            return Err(shape_err(
                layer,
                format!(
                    "input has {features} features but the weight is {ws:?} and the bias {:?}",
                    b.map(|b| self.shape(b))
                ),
            ));
        }
        let mut shape = xs;
        *shape.last_mut().expect("checked above") = ws[0];
        Ok(self.push(Op::Dense { x, w, b, act }, shape, layer))
    }
}

pub(crate) fn forward(
    lw: &mut Lowering<'_>,
    id: NodeId,
    x: NodeId,
    w: NodeId,
    bias: Option<NodeId>,
    act: Activation,
) -> Result<crate::gpu::Tensor> {
    let y = lw.output(id)?;
    let ws = lw.shape(w);
    let mut d = MatmulDesc::new(super::rows_features(lw.graph, lw.batch, x).0, ws[0], ws[1]);
    d.trans_b = true;
    d.activation = act;
    let bias = bias.map(|b| lw.value(b));
    let dispatches = matmul::matmul(lw.ctx, &d, &lw.value(x), &lw.value(w), bias.as_ref(), &y)?;
    lw.dispatches.extend(dispatches);
    Ok(y)
}

/// Whether the Dense weight gradient `d` runs with the fused Adam epilogue: on CPU
/// adapters whose register kernels take the shape, with Adam, when the planner may
/// fuse (`fuse_adam` is given).
fn adam_in_epilogue(
    ctx: &crate::gpu::Context,
    d: &MatmulDesc,
    fuse_adam: Option<(&Optimizer, &StepUniform)>,
) -> bool {
    matches!(fuse_adam, Some((Optimizer::Adam { .. }, _)))
        && d.n.is_multiple_of(4)
        && ctx.is_cpu()
        && matmul::auto_variant(ctx, d).is_register()
}

pub(crate) fn backward(
    bw: &mut BackwardLowering<'_>,
    id: NodeId,
    dy: &crate::gpu::Tensor,
    x: NodeId,
    w: NodeId,
    bias: Option<NodeId>,
    act: Activation,
) -> Result<()> {
    let ctx = bw.ctx;
    let b = super::rows_features(bw.graph, bw.batch, x).0;
    let dz = bw.pre_activation(id, act, dy)?;
    let ws = bw.shape(w);
    let (units, fan_in) = (ws[0], ws[1]);
    // dW[out, in] = dzᵀ · x
    let mut dw_desc = MatmulDesc::new(units, fan_in, b);
    dw_desc.trans_a = true;
    // A frozen layer (its weights take no gradient) runs here only for the
    // gradient of its input.
    // A weight shared by several ops sums their gradients first: no epilogue step.
    let adam_here = bw.req[w] && bw.uses[w] == 1 && adam_in_epilogue(ctx, &dw_desc, bw.fuse_adam);
    if bw.req[w] && !adam_here {
        let dw = bw.param_grad(w)?;
        let dispatches = matmul::matmul(ctx, &dw_desc, &dz, &bw.value(x), None, &dw)?;
        bw.dispatches.extend(dispatches);
    }
    // db[out] = Σ over the batch's rows (one invocation per column for short
    // batches: no workgroup reduction and its barriers).
    if let Some(bias) = bias.filter(|b| bw.req[*b]) {
        let db = bw.param_grad(bias)?;
        bw.dispatches.push(reduce::sum_axis(ctx, &dz, 1, b, units, &db)?);
    }
    if let Some(dx) = bw.dx_for(x)? {
        // dx[B, in] = dz · W (before W's update below).
        let d = MatmulDesc::new(b, fan_in, units);
        let dispatches = matmul::matmul(ctx, &d, &dz, &bw.value(w), None, &dx)?;
        bw.dispatches.extend(dispatches);
    }
    if let (true, Some((optimizer, step))) = (adam_here, bw.fuse_adam) {
        let p = bw.store.by_node(w).expect("every Param node is in the store");
        let optimizer = &p.optimizer(optimizer);
        bw.dispatches.push(matmul::matmul_adam(
            ctx,
            &dw_desc,
            &dz,
            &bw.value(x),
            &p.value,
            &p.state[0],
            &p.state[1],
            optimizer,
            step,
        )?);
        bw.updated.push(w);
    }
    Ok(())
}

pub(crate) fn reference_forward(
    rf: &mut RefForward<'_>,
    id: NodeId,
    x: NodeId,
    w: NodeId,
    bias: Option<NodeId>,
    act: Activation,
) -> Result<Vec<f32>> {
    let ws = rf.graph.shape(w);
    let mut d = MatmulDesc::new(super::rows_features(rf.graph, rf.batch, x).0, ws[0], ws[1]);
    d.trans_b = true;
    d.activation = act;
    let mut y = vec![0.0; rf.numel(id)];
    let bias = bias.map(|b| rf.value(b));
    r::matmul::matmul(&d, rf.value(x), rf.value(w), bias, &mut y)?;
    Ok(y)
}

pub(crate) fn reference_backward(
    rb: &mut RefBackward<'_>,
    id: NodeId,
    dy: &[f32],
    x: NodeId,
    w: NodeId,
    bias: Option<NodeId>,
    act: Activation,
) -> Result<()> {
    let b = super::rows_features(rb.graph, rb.batch, x).0;
    let dz = rb.pre_activation(id, act, dy);
    let ws = rb.graph.shape(w);
    let mut d = MatmulDesc::new(ws[0], ws[1], b);
    d.trans_a = true;
    let mut dw = vec![0.0; ws[0] * ws[1]];
    r::matmul::matmul(&d, &dz, rb.value(x), None, &mut dw)?;
    if let Some(bias) = bias {
        let mut db = vec![0.0; ws[0]];
        r::reduce::channel_sum(&dz, b, ws[0], 1, &mut db, false);
        rb.add_grad(bias, db);
    }
    if rb.req[x] {
        let d = MatmulDesc::new(b, ws[1], ws[0]);
        let mut dx = vec![0.0; rb.numel(x)];
        r::matmul::matmul(&d, &dz, rb.value(w), None, &mut dx)?;
        rb.add_grad(x, dx);
    }
    rb.add_grad(w, dw);
    Ok(())
}
