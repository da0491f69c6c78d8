//! `Op::BatchNorm`: batch normalization over the first per-sample axis with a
//! fused activation (`kernels::batchnorm`): batch statistics while training (the
//! moving statistics move toward them), the moving statistics when evaluating and
//! when the layer is frozen (Keras' inference mode), whose backward then reaches
//! only the input.

use crate::error::{Error, Result};
use crate::gpu::{DType, Tensor};
use crate::graph::autodiff;
use crate::graph::ops::{BackwardLowering, Lowering, RefBackward, RefForward};
use crate::graph::{Graph, NodeId, Op, shape_err};
use crate::kernels::batchnorm::{
    BatchNormDesc, batchnorm_backward, batchnorm_eval, batchnorm_eval_backward, batchnorm_train,
};
use crate::kernels::matmul::Activation;
use crate::reference as r;

impl Graph {
    /// Batch normalization of `x` over its first per-sample axis, then `act` (see
    /// [`Op::BatchNorm`]); `gamma`, `beta`, `moving_mean` and `moving_var` must be
    /// `[C]` parameters, the statistics non-trainable, γ and β both trainable or both
    /// frozen (then the layer is frozen: inference mode while training too).
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &mut self,
        x: NodeId,
        gamma: NodeId,
        beta: NodeId,
        moving_mean: NodeId,
        moving_var: NodeId,
        momentum: f32,
        epsilon: f32,
        act: Activation,
        layer: &str,
    ) -> Result<NodeId> {
        let xs = self.shape(x).to_vec();
        let desc = batch_norm_desc(1, &xs, momentum, epsilon, act);
        desc.validate()
            .map_err(|e| Error::invalid(format!("layer '{layer}': {e}")))?;
        let c = desc.c;
        let used = autodiff::consumers(self);
        let frozen = matches!(self.nodes[gamma].op, Op::Param { trainable: false, .. });
        for (what, id, trainable) in [
            ("gamma", gamma, !frozen),
            ("beta", beta, !frozen),
            ("moving mean", moving_mean, false),
            ("moving variance", moving_var, false),
        ] {
            // A batch normalization owns its parameters: shared moving statistics
            // would be moved twice a step.
            if used[id] > 0 {
                return Err(shape_err(
                    layer,
                    format!(
                        "the {what} is already used by another op; each batch normalization needs its own"
                    ),
                ));
            }
            let fits = matches!(self.nodes[id].op, Op::Param { trainable: t, .. } if t == trainable);
            if !fits || self.shape(id) != [c] {
                return Err(shape_err(
                    layer,
                    format!(
                        "the {what} must be a {}parameter of [{c}] for an input of {xs:?}, got {:?}",
                        if trainable {
                            ""
                        } else {
                            "non-trainable (or frozen) "
                        },
                        self.shape(id)
                    ),
                ));
            }
        }
        Ok(self.push(
            Op::BatchNorm {
                x,
                gamma,
                beta,
                moving_mean,
                moving_var,
                momentum,
                epsilon,
                act,
                frozen,
            },
            xs,
            layer,
        ))
    }
}

/// A batch normalization's view of a per-sample shape: `(channels, values per
/// channel per sample)`, the first axis against the product of the rest.
pub fn batch_norm_view(shape: &[usize]) -> (usize, usize) {
    match shape.split_first() {
        Some((&c, rest)) => (c, rest.iter().product()),
        None => (0, 0),
    }
}

/// The kernel view of a batch normalization of per-sample shape `xs` over a
/// batch of `batch`, followed by `act`.
pub fn batch_norm_desc(
    batch: usize,
    xs: &[usize],
    momentum: f32,
    epsilon: f32,
    act: Activation,
) -> BatchNormDesc {
    let (c, s) = batch_norm_view(xs);
    BatchNormDesc {
        n: batch,
        c,
        s,
        momentum,
        epsilon,
        activation: act,
    }
}

/// The fields of an `Op::BatchNorm`.
struct Fields {
    x: NodeId,
    gamma: NodeId,
    beta: NodeId,
    moving_mean: NodeId,
    moving_var: NodeId,
    frozen: bool,
}

/// The fields of `op` and its kernel view for a batch of `batch`.
fn fields(graph: &Graph, batch: usize, op: &Op) -> (Fields, BatchNormDesc) {
    match op {
        Op::BatchNorm {
            x,
            gamma,
            beta,
            moving_mean,
            moving_var,
            momentum,
            epsilon,
            act,
            frozen,
        } => (
            Fields {
                x: *x,
                gamma: *gamma,
                beta: *beta,
                moving_mean: *moving_mean,
                moving_var: *moving_var,
                frozen: *frozen,
            },
            batch_norm_desc(batch, graph.shape(*x), *momentum, *epsilon, *act),
        ),
        other => unreachable!("not a batch normalization: {other:?}"),
    }
}

pub(crate) fn forward(lw: &mut Lowering<'_>, id: NodeId, op: &Op) -> Result<Tensor> {
    let (f, d) = fields(lw.graph, lw.batch, op);
    let y = lw.output(id)?;
    let (x, g, bt) = (lw.value(f.x), lw.value(f.gamma), lw.value(f.beta));
    let (mm, mv) = (lw.value(f.moving_mean), lw.value(f.moving_var));
    if lw.train && !f.frozen {
        let stats = Tensor::zeros(lw.ctx, &[2, d.c], DType::F32)?;
        lw.dispatches
            .push(batchnorm_train(lw.ctx, &d, &x, &g, &bt, &y, &stats, &mm, &mv)?);
        lw.aux.insert(id, vec![stats]);
    } else {
        lw.dispatches
            .push(batchnorm_eval(lw.ctx, &d, &x, &g, &bt, &mm, &mv, &y)?);
    }
    Ok(y)
}

pub(crate) fn backward(bw: &mut BackwardLowering<'_>, id: NodeId, dy: &Tensor, op: &Op) -> Result<()> {
    let (f, d) = fields(bw.graph, bw.batch, op);
    let dx = bw.dx_for(f.x)?;
    if f.frozen {
        // Inference mode: only the input's gradient.
        if let Some(dx) = dx {
            bw.dispatches.push(batchnorm_eval_backward(
                bw.ctx,
                &d,
                &bw.value(f.x),
                &bw.value(f.gamma),
                &bw.value(f.beta),
                &bw.value(f.moving_mean),
                &bw.value(f.moving_var),
                dy,
                &dx,
            )?);
        }
        return Ok(());
    }
    let (dgamma, dbeta) = (bw.param_grad(f.gamma)?, bw.param_grad(f.beta)?);
    let dispatch = batchnorm_backward(
        bw.ctx,
        &d,
        &bw.value(f.x),
        &bw.value(f.gamma),
        &bw.value(f.beta),
        &bw.aux[&id][0],
        dy,
        dx.as_ref(),
        &dgamma,
        &dbeta,
    )?;
    bw.dispatches.push(dispatch);
    Ok(())
}

pub(crate) fn reference_forward(rf: &mut RefForward<'_>, id: NodeId, op: &Op) -> Result<Vec<f32>> {
    let (f, d) = fields(rf.graph, rf.batch, op);
    let mut y = vec![0.0; rf.numel(id)];
    if rf.train.is_some() && !f.frozen {
        let mut stats = vec![0.0; 2 * d.c];
        let (mut mm, mut mv) = (rf.params[f.moving_mean].clone(), rf.params[f.moving_var].clone());
        r::batchnorm::batchnorm_train(
            &d,
            &rf.values[f.x],
            &rf.params[f.gamma],
            &rf.params[f.beta],
            &mut y,
            &mut stats,
            &mut mm,
            &mut mv,
        )?;
        (rf.params[f.moving_mean], rf.params[f.moving_var]) = (mm, mv);
        rf.saved[id] = stats;
    } else {
        r::batchnorm::batchnorm_eval(
            &d,
            &rf.values[f.x],
            &rf.params[f.gamma],
            &rf.params[f.beta],
            &rf.params[f.moving_mean],
            &rf.params[f.moving_var],
            &mut y,
        )?;
    }
    Ok(y)
}

pub(crate) fn reference_backward(rb: &mut RefBackward<'_>, id: NodeId, dy: &[f32], op: &Op) -> Result<()> {
    let (f, d) = fields(rb.graph, rb.batch, op);
    if f.frozen {
        if rb.req[f.x] {
            let mut dx = vec![0.0; rb.numel(f.x)];
            r::batchnorm::batchnorm_eval_backward(
                &d,
                rb.value(f.x),
                rb.value(f.gamma),
                rb.value(f.beta),
                rb.value(f.moving_mean),
                rb.value(f.moving_var),
                dy,
                &mut dx,
            )?;
            rb.add_grad(f.x, dx);
        }
        return Ok(());
    }
    let (mut dg, mut db) = (vec![0.0; d.c], vec![0.0; d.c]);
    let mut dx = rb.req[f.x].then(|| vec![0.0; rb.numel(f.x)]);
    r::batchnorm::batchnorm_backward(
        &d,
        rb.value(f.x),
        rb.value(f.gamma),
        rb.value(f.beta),
        &rb.saved[id],
        dy,
        dx.as_deref_mut(),
        &mut dg,
        &mut db,
    )?;
    if let Some(dx) = dx {
        rb.add_grad(f.x, dx);
    }
    rb.add_grad(f.gamma, dg);
    rb.add_grad(f.beta, db);
    Ok(())
}
