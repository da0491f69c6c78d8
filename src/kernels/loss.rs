//! Loss launchers (`shaders/loss.wgsl`): each computes the per-sample loss and,
//! when a gradient tensor is given, the gradient in the same kernel (one workgroup
//! per sample).
//!
//! The gradient written is that of `grad_scale · Σ_rows loss[row]`: pass
//! `grad_scale = 1/B` for the gradient of the batch mean. The per-sample losses are
//! meant to be summed on the GPU by [`crate::kernels::reduce::accumulate_sum`].

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::elementwise::{count_u32, expect_same_shape, same_buffer};
use crate::kernels::softmax::{row_wg, rows_cols};
use crate::kernels::{Kernel, Shader, groups_for};

/// Mirrors `Params` in `shaders/loss.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    grad_scale: f32,
    /// Softmax cross-entropy's label smoothing; 0 for the other losses.
    smoothing: f32,
}

const XENT: Kernel = Shader::Loss.kernel("xent");
const XENT_GRAD: Kernel = Shader::Loss.kernel("xent_grad");
const XENT_GRAD_WEIGHTED: Kernel = Shader::Loss.kernel("xent_grad_weighted");
const XENT_GRAD_LABELLED: Kernel = Shader::Loss.kernel("xent_grad_labelled");
const XENT_GRAD_WEIGHTED_LABELLED: Kernel = Shader::Loss.kernel("xent_grad_weighted_labelled");
const LABEL_SCALE: Kernel = Shader::Loss.kernel("label_scale");
const MSE: Kernel = Shader::Loss.kernel("mse");
const MSE_GRAD: Kernel = Shader::Loss.kernel("mse_grad");
const BCE: Kernel = Shader::Loss.kernel("bce");
const BCE_GRAD: Kernel = Shader::Loss.kernel("bce_grad");
const BCE_GRAD_WEIGHTED: Kernel = Shader::Loss.kernel("bce_grad_weighted");
const KL_NORMAL: Kernel = Shader::Loss.kernel("kl_normal");
const KL_NORMAL_GRAD: Kernel = Shader::Loss.kernel("kl_normal_grad");
const BCE_SUM: Kernel = Shader::Loss.kernel("bce_sum");
const BCE_SUM_GRAD: Kernel = Shader::Loss.kernel("bce_sum_grad");
const SIGMOID_MEAN: Kernel = Shader::Loss.kernel("sigmoid_mean");
const SIGMOID_MEAN_GRAD: Kernel = Shader::Loss.kernel("sigmoid_mean_grad");

/// Invocations per workgroup of the per-element gradients of the loss terms.
const TERM_WG: u32 = 256;

/// Binding indices in `shaders/loss.wgsl`.
const B_X: u32 = 1;
const B_LABELS: u32 = 2;
const B_LOSS: u32 = 3;
const B_GRAD: u32 = 4;
const B_TARGETS: u32 = 5;
const B_DY: u32 = 6;
const B_GRAD2: u32 = 7;
const B_CLASS_W: u32 = 8;

/// What a training loss may add to its plain form.
#[derive(Clone, Copy, Debug, Default)]
pub struct LossOptions<'a> {
    /// Label smoothing ε in [0, 1) (softmax cross-entropy only): the target becomes
    /// `(1 − ε)·onehot(label) + ε/C`, as PyTorch's `CrossEntropyLoss(label_smoothing=ε)`.
    pub smoothing: f32,
    /// Per-class weights (f32; `[C]` for softmax cross-entropy, `[2]` for binary
    /// cross-entropy of one output, the weights of targets up to and above 0.5): each
    /// sample's loss and gradient are multiplied by its class's, as Keras'
    /// `fit(class_weight=...)` does; the mean still divides by B. Training only: a
    /// gradient must be asked for.
    pub class_weights: Option<&'a Tensor>,
    /// The gradient's scale read from this f32 `[1]` tensor when the dispatch
    /// runs, in place of `grad_scale` (softmax cross-entropy only):
    /// [`label_scale`] writes `1/n` there, n the batch's rows with a target, so
    /// the gradient is that of the mean over them (PyTorch's
    /// `CrossEntropyLoss(ignore_index=...)`, Hugging Face's token classifiers);
    /// with class weights, each row's term is weighted and the sum still divided
    /// by n (Keras' weighting, over the labelled rows). Training only: a
    /// gradient must be asked for.
    pub label_mean: Option<&'a Tensor>,
}

/// Checks what every loss shares: `x` is f32 `[B, C]` (C ≥ 1), `loss` f32 with B
/// elements, the gradient (if any) f32 of `x`'s shape, and no written tensor shares a
/// buffer with another tensor of the call.
fn common(
    op: &'static str,
    (x_name, x): (&'static str, &Tensor),
    loss: &Tensor,
    grad: Option<(&'static str, &Tensor)>,
    others: &[(&'static str, &Tensor)],
) -> Result<(usize, usize)> {
    x.expect_dtype(op, x_name, DType::F32)?;
    loss.expect_dtype(op, "loss", DType::F32)?;
    let (rows, cols) = rows_cols(op, x_name, x)?;
    if loss.numel() != rows {
        return Err(Error::shape(
            op,
            format!(
                "loss has shape {:?} but {x_name} has shape {:?}; loss needs one element per row ({rows})",
                loss.shape(),
                x.shape()
            ),
        ));
    }
    let mut inputs: Vec<(&str, &Tensor)> = vec![(x_name, x)];
    inputs.extend_from_slice(others);
    let mut outputs = vec![("loss", loss)];
    if let Some((g_name, g)) = grad {
        g.expect_dtype(op, g_name, DType::F32)?;
        expect_same_shape(op, x_name, x, g_name, g)?;
        outputs.push((g_name, g));
    }
    for (i, &(out_name, out)) in outputs.iter().enumerate() {
        for &(in_name, t) in inputs.iter().chain(&outputs[..i]) {
            if same_buffer(out, t) {
                return Err(Error::invalid(format!(
                    "{op}: {out_name} shares a buffer with {in_name}; outputs must be separate tensors"
                )));
            }
        }
    }
    Ok((rows, cols))
}

#[allow(clippy::too_many_arguments)]
fn launch(
    ctx: &Context,
    op: &'static str,
    (fwd, bwd, weighted): (Kernel, Kernel, Kernel),
    (rows, cols): (usize, usize),
    (grad_scale, options): (f32, LossOptions<'_>),
    x: &Tensor,
    (side_binding, side): (u32, &Tensor),
    loss: &Tensor,
    grad: Option<&Tensor>,
) -> Result<Dispatch> {
    let params = Params {
        rows: count_u32(op, "rows", rows)?,
        cols: count_u32(op, "cols", cols)?,
        grad_scale,
        smoothing: options.smoothing,
    };
    let constants = [("WG", row_wg(cols) as f64)];
    let groups = groups_for(ctx, rows, 1)?;
    let mut bindings = vec![
        (B_X, &x.buffer),
        (side_binding, &side.buffer),
        (B_LOSS, &loss.buffer),
    ];
    let kernel = match (grad, options.class_weights) {
        (Some(g), None) => {
            bindings.push((B_GRAD, &g.buffer));
            match options.label_mean {
                Some(scale) => {
                    bindings.push((B_DY, &scale.buffer));
                    XENT_GRAD_LABELLED
                }
                None => bwd,
            }
        }
        (Some(g), Some(w)) => {
            bindings.push((B_GRAD, &g.buffer));
            bindings.push((B_CLASS_W, &w.buffer));
            match options.label_mean {
                Some(scale) => {
                    bindings.push((B_DY, &scale.buffer));
                    XENT_GRAD_WEIGHTED_LABELLED
                }
                None => weighted,
            }
        }
        (None, None) => fwd,
        (None, Some(_)) => {
            return Err(Error::invalid(format!(
                "{op}: class weights apply to training; ask for the gradient too"
            )));
        }
    };
    if let Some(scale) = options.label_mean {
        if ![XENT_GRAD_LABELLED, XENT_GRAD_WEIGHTED_LABELLED].contains(&kernel) {
            return Err(Error::invalid(format!(
                "{op}: the mean over labelled rows scales softmax cross-entropy's gradient; ask for \
                 the gradient"
            )));
        }
        scale.expect_dtype(op, "the labelled rows' scale", DType::F32)?;
        if scale.numel() != 1 || grad.is_some_and(|g| same_buffer(g, scale)) || same_buffer(loss, scale) {
            return Err(Error::invalid(format!(
                "{op}: the labelled rows' scale is one f32 value in a buffer of its own, not {:?}",
                scale.shape()
            )));
        }
    }
    ctx.dispatch(kernel, &constants, &params, &bindings, groups)
}

/// Writes `1/max(n, 1)` into `scale` (f32 `[1]`), n the labels of `labels`
/// (u32 `[rows]`) below `classes`: the gradient scale of the mean over the rows
/// with a target, which [`LossOptions::label_mean`] reads. Up to 2^24 rows (the
/// count is exact in f32). CPU twin: `reference::loss::label_scale`.
pub fn label_scale(ctx: &Context, labels: &Tensor, classes: usize, scale: &Tensor) -> Result<Dispatch> {
    const OP: &str = "label_scale";
    labels.expect_dtype(OP, "labels", DType::U32)?;
    scale.expect_dtype(OP, "scale", DType::F32)?;
    if scale.numel() != 1 {
        return Err(Error::shape(
            OP,
            format!("scale has shape {:?}; it holds one value", scale.shape()),
        ));
    }
    let rows = labels.numel();
    if rows > 1 << 24 {
        return Err(Error::invalid(format!(
            "{OP}: {rows} labels; up to 2^24 are counted exactly"
        )));
    }
    if same_buffer(labels, scale) {
        return Err(Error::invalid(format!("{OP}: scale shares a buffer with labels")));
    }
    let params = Params {
        rows: count_u32(OP, "rows", rows)?,
        cols: count_u32(OP, "classes", classes)?,
        ..Params::default()
    };
    ctx.dispatch(
        LABEL_SCALE,
        &[("WG", 256.0)],
        &params,
        &[(B_LABELS, &labels.buffer), (B_GRAD2, &scale.buffer)],
        [1, 1, 1],
    )
}

/// Checks class weights: f32, `n` of them.
fn check_class_weights(op: &'static str, weights: Option<&Tensor>, n: usize, what: &str) -> Result<()> {
    if let Some(w) = weights {
        w.expect_dtype(op, "class weights", DType::F32)?;
        if w.numel() != n {
            return Err(Error::shape(
                op,
                format!("{n} class weights are needed ({what}), got {}", w.numel()),
            ));
        }
    }
    Ok(())
}

/// Softmax cross-entropy over the classes of `logits` `[B, C]` with integer
/// `labels` (u32 `[B]`): `loss[i] = logsumexp(logits_i) − logits_i[label_i]`
/// (max-subtracted); with `dlogits` (`[B, C]`), also
/// `dlogits = (softmax(logits) − onehot(label)) · grad_scale`.
///
/// A label `≥ C` marks a sample with no target: its loss and its gradient row are 0
/// and nothing is read out of bounds (the CPU twin does the same).
pub fn softmax_cross_entropy(
    ctx: &Context,
    logits: &Tensor,
    labels: &Tensor,
    loss: &Tensor,
    dlogits: Option<&Tensor>,
    grad_scale: f32,
) -> Result<Dispatch> {
    softmax_cross_entropy_with(
        ctx,
        logits,
        labels,
        loss,
        dlogits,
        grad_scale,
        LossOptions::default(),
    )
}

/// [`softmax_cross_entropy`] with `options`: towards labels smoothed by ε =
/// `options.smoothing` in [0, 1) (PyTorch's `CrossEntropyLoss(label_smoothing=ε)`,
/// Keras' `label_smoothing`), the target is `(1 − ε)·onehot(label) + ε/C`, so
/// `loss[i] = logsumexp(logits_i) − (1 − ε)·logits_i[label_i] − ε·mean(logits_i)`
/// and `dlogits = (softmax − target) · grad_scale`; with class weights `w` (`[C]`),
/// both times `w[label_i]`. CPU twin: `reference::loss::softmax_cross_entropy_with`.
pub fn softmax_cross_entropy_with(
    ctx: &Context,
    logits: &Tensor,
    labels: &Tensor,
    loss: &Tensor,
    dlogits: Option<&Tensor>,
    grad_scale: f32,
    options: LossOptions<'_>,
) -> Result<Dispatch> {
    const OP: &str = "softmax_cross_entropy";
    let smoothing = options.smoothing;
    if !(0.0..1.0).contains(&smoothing) {
        return Err(Error::invalid(format!(
            "label smoothing {smoothing} is outside [0, 1): it is the share of the target spread \
             over every class"
        )));
    }
    labels.expect_dtype(OP, "labels", DType::U32)?;
    let (rows, cols) = common(
        OP,
        ("logits", logits),
        loss,
        dlogits.map(|g| ("dlogits", g)),
        &[("labels", labels)],
    )?;
    if labels.numel() != rows {
        return Err(Error::shape(
            OP,
            format!(
                "labels has shape {:?} but logits has shape {:?}; one label per row ({rows}) is needed",
                labels.shape(),
                logits.shape()
            ),
        ));
    }
    check_class_weights(OP, options.class_weights, cols, "one per class")?;
    launch(
        ctx,
        OP,
        (XENT, XENT_GRAD, XENT_GRAD_WEIGHTED),
        (rows, cols),
        (grad_scale, options),
        logits,
        (B_LABELS, labels),
        loss,
        dlogits,
    )
}

fn paired(
    op: &'static str,
    (x_name, x): (&'static str, &Tensor),
    (t_name, target): (&'static str, &Tensor),
    loss: &Tensor,
    grad: Option<(&'static str, &Tensor)>,
) -> Result<(usize, usize)> {
    target.expect_dtype(op, t_name, DType::F32)?;
    let rc = common(op, (x_name, x), loss, grad, &[(t_name, target)])?;
    expect_same_shape(op, x_name, x, t_name, target)?;
    Ok(rc)
}

/// Mean squared error per sample of `pred` and `target` (`[B, D]`, D the last
/// dimension): `loss[i] = mean_d (p − t)²`; with `dpred` (`[B, D]`), also
/// `dpred = 2(p − t)/D · grad_scale`.
pub fn mse(
    ctx: &Context,
    pred: &Tensor,
    target: &Tensor,
    loss: &Tensor,
    dpred: Option<&Tensor>,
    grad_scale: f32,
) -> Result<Dispatch> {
    const OP: &str = "mse";
    let rc = paired(
        OP,
        ("pred", pred),
        ("target", target),
        loss,
        dpred.map(|g| ("dpred", g)),
    )?;
    launch(
        ctx,
        OP,
        (MSE, MSE_GRAD, MSE_GRAD),
        rc,
        (grad_scale, LossOptions::default()),
        pred,
        (B_TARGETS, target),
        loss,
        dpred,
    )
}

/// Binary cross-entropy on logits per sample (`[B, D]`, targets in [0, 1]):
/// `loss[i] = mean_d [max(x, 0) − x·t + log(1 + e^{−|x|})]`, stable for any finite
/// `|x|` (tested at 1e4); with `dlogits`, also `dlogits = (σ(x) − t)/D · grad_scale`.
pub fn bce_with_logits(
    ctx: &Context,
    logits: &Tensor,
    targets: &Tensor,
    loss: &Tensor,
    dlogits: Option<&Tensor>,
    grad_scale: f32,
) -> Result<Dispatch> {
    bce_with_logits_weighted(ctx, logits, targets, loss, dlogits, grad_scale, None)
}

/// [`bce_with_logits`] with class weights `[w0, w1]` (of one output, `D = 1`): each
/// sample's loss and gradient times `w1` when its target is above 0.5, else `w0`
/// (Keras' `class_weight` of a binary classifier, which rounds 0.5 down). CPU twin:
/// `reference::loss::bce_with_logits_weighted`.
pub fn bce_with_logits_weighted(
    ctx: &Context,
    logits: &Tensor,
    targets: &Tensor,
    loss: &Tensor,
    dlogits: Option<&Tensor>,
    grad_scale: f32,
    class_weights: Option<&Tensor>,
) -> Result<Dispatch> {
    const OP: &str = "bce_with_logits";
    let rc = paired(
        OP,
        ("logits", logits),
        ("targets", targets),
        loss,
        dlogits.map(|g| ("dlogits", g)),
    )?;
    if class_weights.is_some() && rc.1 != 1 {
        return Err(Error::shape(
            OP,
            format!(
                "class weights apply to one output (a binary classifier); these logits have {} per sample",
                rc.1
            ),
        ));
    }
    check_class_weights(OP, class_weights, 2, "of targets up to 0.5 and above")?;
    let options = LossOptions {
        smoothing: 0.0,
        class_weights,
        label_mean: None,
    };
    launch(
        ctx,
        OP,
        (BCE, BCE_GRAD, BCE_GRAD_WEIGHTED),
        rc,
        (grad_scale, options),
        logits,
        (B_TARGETS, targets),
        loss,
        dlogits,
    )
}

/// What a loss term computed inside a graph computes (shaders `kl_normal`, `bce_sum`,
/// `sigmoid_mean` in `loss.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Term {
    /// KL divergence of N(mean, exp(log_var)) from N(0, I), summed over features.
    KlNormal,
    /// Binary cross-entropy of logits against targets, summed over features.
    BceSum,
    /// The mean of the sigmoid of logits over features (a discriminator's mean
    /// probability, reported as D(real) and D(fake)); the second input is not read.
    SigmoidMean,
}

/// The per-sample term `loss[i]` (`[B]`) of `a` and `b` (`[B, D]`): the mean and
/// log-variance for [`Term::KlNormal`], the logits and targets for [`Term::BceSum`].
pub fn loss_term(ctx: &Context, term: Term, a: &Tensor, b: &Tensor, loss: &Tensor) -> Result<Dispatch> {
    let op = term_name(term);
    expect_same_shape(op, "a", a, "b", b)?;
    b.expect_dtype(op, "b", DType::F32)?;
    let (rows, cols) = common(op, ("a", a), loss, None, &[("b", b)])?;
    let kernel = match term {
        Term::KlNormal => KL_NORMAL,
        Term::BceSum => BCE_SUM,
        Term::SigmoidMean => SIGMOID_MEAN,
    };
    let params = Params {
        rows: count_u32(op, "rows", rows)?,
        cols: count_u32(op, "cols", cols)?,
        grad_scale: 0.0,
        smoothing: 0.0,
    };
    let mut bindings = vec![(B_X, &a.buffer), (B_LOSS, &loss.buffer)];
    if term != Term::SigmoidMean {
        bindings.push((B_TARGETS, &b.buffer));
    }
    ctx.dispatch(
        kernel,
        &[("WG", row_wg(cols) as f64)],
        &params,
        &bindings,
        groups_for(ctx, rows, 1)?,
    )
}

fn term_name(term: Term) -> &'static str {
    match term {
        Term::KlNormal => "kl_normal",
        Term::BceSum => "bce_sum",
        Term::SigmoidMean => "sigmoid_mean",
    }
}

/// The gradient of `Σ_i dy[i] · loss[i]` for [`loss_term`]'s term: into `da`
/// (`[B, D]`), and for [`Term::KlNormal`] into `db` too (the log-variance's; the
/// targets of [`Term::BceSum`] take none, so `db` must be `None` there).
pub fn loss_term_grad(
    ctx: &Context,
    term: Term,
    a: &Tensor,
    b: &Tensor,
    dy: &Tensor,
    da: &Tensor,
    db: Option<&Tensor>,
) -> Result<Dispatch> {
    let op = term_name(term);
    expect_same_shape(op, "a", a, "b", b)?;
    b.expect_dtype(op, "b", DType::F32)?;
    dy.expect_dtype(op, "dy", DType::F32)?;
    let (rows, cols) = common(op, ("a", a), dy, Some(("da", da)), &[("b", b)])?;
    let mut bindings = vec![
        (B_X, &a.buffer),
        (B_TARGETS, &b.buffer),
        (B_DY, &dy.buffer),
        (B_GRAD, &da.buffer),
    ];
    if term == Term::SigmoidMean {
        // Its gradient reads only the logits.
        bindings.retain(|(binding, _)| *binding != B_TARGETS);
    }
    let kernel = match (term, db) {
        (Term::KlNormal, Some(db)) => {
            expect_same_shape(op, "a", a, "db", db)?;
            for (name, t) in [("a", a), ("b", b), ("dy", dy), ("da", da)] {
                if same_buffer(db, t) {
                    return Err(Error::invalid(format!("{op}: db shares a buffer with {name}")));
                }
            }
            bindings.push((B_GRAD2, &db.buffer));
            KL_NORMAL_GRAD
        }
        (Term::BceSum, None) => BCE_SUM_GRAD,
        (Term::SigmoidMean, None) => SIGMOID_MEAN_GRAD,
        (Term::KlNormal, None) => {
            return Err(Error::invalid(
                "kl_normal: the log-variance's gradient db is required",
            ));
        }
        (Term::BceSum | Term::SigmoidMean, Some(_)) => {
            return Err(Error::invalid(format!(
                "{op}: the second input takes no gradient; pass no db"
            )));
        }
    };
    let params = Params {
        rows: count_u32(op, "rows", rows)?,
        cols: count_u32(op, "cols", cols)?,
        grad_scale: 0.0,
        smoothing: 0.0,
    };
    ctx.dispatch(
        kernel,
        &[("WG", TERM_WG as f64)],
        &params,
        &bindings,
        groups_for(ctx, rows * cols, TERM_WG)?,
    )
}
