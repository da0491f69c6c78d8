//! `Op::LossTerm`: a per-sample loss term `[1]` computed inside the graph
//! (`kernels::loss::loss_term`): the KL divergence of a variational autoencoder's
//! latent distribution from N(0, I), or the binary cross-entropy of its
//! reconstruction summed over pixels. Its output's gradient comes from the
//! [`Objective::Terms`](crate::graph::Objective::Terms) it belongs to.

use crate::error::Result;
use crate::gpu::Tensor;
use crate::graph::autodiff::requires_grad;
use crate::graph::ops::{BackwardLowering, Lowering, RefBackward, RefForward, batched};
use crate::graph::{Graph, NodeId, Op, shape_err};
use crate::kernels::loss::{self, Term};
use crate::reference as r;

impl Graph {
    /// The per-sample term `term` of `a` and `b` (equal shapes): for
    /// [`Term::KlNormal`] the mean and log-variance, for [`Term::BceSum`] the logits
    /// and the targets (which must take no gradient: the batch, a constant), for
    /// [`Term::SigmoidMean`] the logits twice (the second is not read).
    pub fn loss_term(&mut self, term: Term, a: NodeId, b: NodeId, layer: &str) -> Result<NodeId> {
        if self.shape(a) != self.shape(b) {
            return Err(shape_err(
                layer,
                format!(
                    "the loss term {term:?} needs inputs of one shape, got {:?} and {:?}",
                    self.shape(a),
                    self.shape(b)
                ),
            ));
        }
        if term == Term::BceSum && requires_grad(self)[b] {
            return Err(shape_err(
                layer,
                "the targets of a binary cross-entropy term take no gradient; give the batch or a constant"
                    .into(),
            ));
        }
        Ok(self.push(Op::LossTerm { term, a, b }, vec![1], layer))
    }
}

/// Rows (the batch) and columns (values per sample) of the term's inputs.
fn view(graph: &Graph, batch: usize, a: NodeId) -> [usize; 2] {
    [batch, graph.shape(a).iter().product()]
}

pub(crate) fn forward(lw: &mut Lowering<'_>, id: NodeId, term: Term, a: NodeId, b: NodeId) -> Result<Tensor> {
    let y = lw.output(id)?;
    let rc = view(lw.graph, lw.batch, a);
    let (a, b) = (lw.value(a).reshape(&rc)?, lw.value(b).reshape(&rc)?);
    lw.dispatches
        .push(loss::loss_term(lw.ctx, term, &a, &b, &y.reshape(&[rc[0]])?)?);
    Ok(y)
}

pub(crate) fn backward(
    bw: &mut BackwardLowering<'_>,
    dy: &Tensor,
    term: Term,
    a: NodeId,
    b: NodeId,
) -> Result<()> {
    let rc = view(bw.graph, bw.batch, a);
    let Some(da) = bw.dx_for(a)? else {
        // Only the KL's log-variance needs one (the BCE's targets never do).
        if let Some(db) = bw.dx_for(b)? {
            let scratch = bw.temporary(&batched(bw.batch, bw.shape(a)))?;
            return term_grad(bw, dy, term, (a, b), &scratch, Some(&db), rc);
        }
        return Ok(());
    };
    let db = match term {
        Term::KlNormal => Some(match bw.dx_for(b)? {
            Some(db) => db,
            None => bw.temporary(&batched(bw.batch, bw.shape(b)))?,
        }),
        Term::BceSum | Term::SigmoidMean => None,
    };
    term_grad(bw, dy, term, (a, b), &da, db.as_ref(), rc)
}

fn term_grad(
    bw: &mut BackwardLowering<'_>,
    dy: &Tensor,
    term: Term,
    (a, b): (NodeId, NodeId),
    da: &Tensor,
    db: Option<&Tensor>,
    rc: [usize; 2],
) -> Result<()> {
    let db = db.map(|t| t.reshape(&rc)).transpose()?;
    let dispatch = loss::loss_term_grad(
        bw.ctx,
        term,
        &bw.value(a).reshape(&rc)?,
        &bw.value(b).reshape(&rc)?,
        &dy.reshape(&[rc[0]])?,
        &da.reshape(&rc)?,
        db.as_ref(),
    )?;
    bw.dispatches.push(dispatch);
    Ok(())
}

pub(crate) fn reference_forward(
    rf: &mut RefForward<'_>,
    id: NodeId,
    term: Term,
    a: NodeId,
    b: NodeId,
) -> Vec<f32> {
    let mut y = vec![0.0; rf.numel(id)];
    let cols = rf.graph.shape(a).iter().product();
    r::loss::loss_term(term, rf.value(a), rf.value(b), cols, &mut y);
    y
}

pub(crate) fn reference_backward(rb: &mut RefBackward<'_>, dy: &[f32], term: Term, a: NodeId, b: NodeId) {
    let n = rb.numel(a);
    let (mut da, mut db) = (vec![0.0; n], vec![0.0; n]);
    let db_arg = (term == Term::KlNormal).then_some(&mut db[..]);
    r::loss::loss_term_grad(term, rb.value(a), rb.value(b), dy, &mut da, db_arg);
    if rb.req[a] {
        rb.add_grad(a, da);
    }
    if term == Term::KlNormal && rb.req[b] {
        rb.add_grad(b, db);
    }
}
