//! CPU twins of the loss kernels (`shaders/loss.wgsl`), f64 arithmetic. The
//! per-row functions return f64 so gradient checks can difference them precisely.

use crate::reference::softmax::row_max_logsumexp;

/// Cross-entropy of one row: `logsumexp(row) − row[label]`; 0 when `label ≥ C`
/// (no target).
pub fn xent_row(row: &[f32], label: u32) -> f64 {
    let label = label as usize;
    if label >= row.len() {
        return 0.0;
    }
    let (m, lse) = row_max_logsumexp(row);
    (m - row[label] as f64) + lse
}

/// `1/max(n, 1)`, n the labels below `classes`: the gradient scale of the mean
/// over the rows with a target (twin of `kernels::loss::label_scale`; f32, as
/// the GPU divides).
pub fn label_scale(labels: &[u32], classes: usize) -> f32 {
    let n = labels.iter().filter(|&&l| (l as usize) < classes).count();
    1.0 / n.max(1) as f32
}

/// Mean squared error of one row.
pub fn mse_row(pred: &[f32], target: &[f32]) -> f64 {
    let s: f64 = pred
        .iter()
        .zip(target)
        .map(|(&p, &t)| (p as f64 - t as f64).powi(2))
        .sum();
    s / pred.len() as f64
}

/// Binary cross-entropy with logits of one row: mean of
/// `max(x, 0) − x·t + ln(1 + e^{−|x|})`.
pub fn bce_row(logits: &[f32], targets: &[f32]) -> f64 {
    let s: f64 = logits
        .iter()
        .zip(targets)
        .map(|(&x, &t)| {
            let (x, t) = (x as f64, t as f64);
            x.max(0.0) - x * t + (-x.abs()).exp().ln_1p()
        })
        .sum();
    s / logits.len() as f64
}

fn sigmoid(x: f64) -> f64 {
    let e = (-x.abs()).exp();
    if x >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) }
}

/// Softmax cross-entropy of `logits` (`[B, cols]`) with `labels` (`[B]`): per-row
/// loss, and `dlogits = (softmax − onehot)·grad_scale` (a zero row for labels `≥ cols`).
pub fn softmax_cross_entropy(
    logits: &[f32],
    cols: usize,
    labels: &[u32],
    loss: &mut [f32],
    dlogits: Option<&mut [f32]>,
    grad_scale: f32,
) {
    softmax_cross_entropy_with(logits, cols, labels, loss, dlogits, grad_scale, 0.0, None);
}

/// [`softmax_cross_entropy`] towards labels smoothed by `smoothing` = ε: the target
/// is `(1 − ε)·onehot + ε/cols`, the loss `−Σ target·log softmax` and the gradient
/// `(softmax − target)·grad_scale`; with `class_weights` (`[cols]`), both times the
/// weight of the row's label (twin of `kernels::loss::softmax_cross_entropy_with`).
#[allow(clippy::too_many_arguments)]
pub fn softmax_cross_entropy_with(
    logits: &[f32],
    cols: usize,
    labels: &[u32],
    loss: &mut [f32],
    dlogits: Option<&mut [f32]>,
    grad_scale: f32,
    smoothing: f32,
    class_weights: Option<&[f32]>,
) {
    // A row's weight: its label's class weight (1 without weights, 0 without a target).
    let weight = |label: u32| match class_weights {
        Some(w) => w.get(label as usize).map_or(0.0, |&w| w as f64),
        None => 1.0,
    };
    assert_eq!(logits.len(), labels.len() * cols);
    assert_eq!(loss.len(), labels.len());
    let e = smoothing as f64;
    let spread = e / cols as f64;
    for (r, row) in logits.chunks(cols).enumerate() {
        let label = labels[r] as usize;
        let l = if label < cols && e > 0.0 {
            // −Σ_j q_j (x_j − lse) = lse − Σ_j q_j x_j, Σ q = 1.
            let (m, lse) = row_max_logsumexp(row);
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
            m + lse - (1.0 - e) * row[label] as f64 - e * mean
        } else {
            xent_row(row, labels[r])
        };
        loss[r] = (l * weight(labels[r])) as f32;
    }
    if let Some(g) = dlogits {
        assert_eq!(g.len(), logits.len());
        for ((row, grow), &label) in logits.chunks(cols).zip(g.chunks_mut(cols)).zip(labels) {
            let k = grad_scale as f64 * weight(label);
            let label = label as usize;
            let (m, lse) = row_max_logsumexp(row);
            for (j, (o, &v)) in grow.iter_mut().zip(row).enumerate() {
                *o = if label < cols {
                    let p = (v as f64 - m - lse).exp();
                    let q = (1.0 - e) * (j == label) as u8 as f64 + spread;
                    ((p - q) * k) as f32
                } else {
                    0.0
                };
            }
        }
    }
}

/// Mean squared error per row of `[B, cols]`, and `dpred = 2(p − t)/cols·grad_scale`.
pub fn mse(
    pred: &[f32],
    target: &[f32],
    cols: usize,
    loss: &mut [f32],
    dpred: Option<&mut [f32]>,
    grad_scale: f32,
) {
    assert_eq!(pred.len(), target.len());
    assert_eq!(pred.len(), loss.len() * cols);
    for (r, (p, t)) in pred.chunks(cols).zip(target.chunks(cols)).enumerate() {
        loss[r] = mse_row(p, t) as f32;
    }
    if let Some(g) = dpred {
        assert_eq!(g.len(), pred.len());
        let k = 2.0 / cols as f64 * grad_scale as f64;
        for ((o, &p), &t) in g.iter_mut().zip(pred).zip(target) {
            *o = ((p as f64 - t as f64) * k) as f32;
        }
    }
}

/// Binary cross-entropy with logits per row of `[B, cols]`, and
/// `dlogits = (σ(x) − t)/cols·grad_scale`.
pub fn bce_with_logits(
    logits: &[f32],
    targets: &[f32],
    cols: usize,
    loss: &mut [f32],
    dlogits: Option<&mut [f32]>,
    grad_scale: f32,
) {
    bce_with_logits_weighted(logits, targets, cols, loss, dlogits, grad_scale, None);
}

/// [`bce_with_logits`] with class weights `[w0, w1]` of one output (`cols == 1`):
/// each row's loss and gradient times `w1` when its target is above 0.5, else
/// `w0` (twin of `kernels::loss::bce_with_logits_weighted`).
pub fn bce_with_logits_weighted(
    logits: &[f32],
    targets: &[f32],
    cols: usize,
    loss: &mut [f32],
    dlogits: Option<&mut [f32]>,
    grad_scale: f32,
    class_weights: Option<&[f32; 2]>,
) {
    assert_eq!(logits.len(), targets.len());
    assert_eq!(logits.len(), loss.len() * cols);
    assert!(
        class_weights.is_none() || cols == 1,
        "class weights need one output"
    );
    let weight = |t: &[f32]| match class_weights {
        Some(w) => w[(t[0] > 0.5) as usize] as f64,
        None => 1.0,
    };
    for (r, (x, t)) in logits.chunks(cols).zip(targets.chunks(cols)).enumerate() {
        loss[r] = (bce_row(x, t) * weight(t)) as f32;
    }
    if let Some(g) = dlogits {
        assert_eq!(g.len(), logits.len());
        let k = grad_scale as f64 / cols as f64;
        for ((grow, xs), ts) in g
            .chunks_mut(cols)
            .zip(logits.chunks(cols))
            .zip(targets.chunks(cols))
        {
            let kw = k * weight(ts);
            for ((o, &x), &t) in grow.iter_mut().zip(xs).zip(ts) {
                *o = ((sigmoid(x as f64) - t as f64) * kw) as f32;
            }
        }
    }
}

/// CPU twin of [`crate::kernels::loss::loss_term`]: the per-sample term of `a` and
/// `b` (`[rows, cols]`).
pub fn loss_term(term: crate::kernels::loss::Term, a: &[f32], b: &[f32], cols: usize, loss: &mut [f32]) {
    use crate::kernels::loss::Term;
    assert_eq!(a.len(), b.len());
    assert_eq!(a.len(), loss.len() * cols);
    for (r, (a, b)) in a.chunks(cols).zip(b.chunks(cols)).enumerate() {
        loss[r] = match term {
            Term::KlNormal => {
                let s: f64 = a
                    .iter()
                    .zip(b)
                    .map(|(&m, &lv)| {
                        let (m, lv) = (m as f64, lv as f64);
                        1.0 + lv - m * m - lv.exp()
                    })
                    .sum();
                (-0.5 * s) as f32
            }
            Term::BceSum => (bce_row(a, b) * cols as f64) as f32,
            Term::SigmoidMean => (a.iter().map(|&x| sigmoid(x as f64)).sum::<f64>() / cols as f64) as f32,
        };
    }
}

/// CPU twin of [`crate::kernels::loss::loss_term_grad`]: the gradient of
/// `Σ_r dy[r] · loss[r]` into `da`, and into `db` for the KL term.
pub fn loss_term_grad(
    term: crate::kernels::loss::Term,
    a: &[f32],
    b: &[f32],
    dy: &[f32],
    da: &mut [f32],
    db: Option<&mut [f32]>,
) {
    use crate::kernels::loss::Term;
    let cols = a.len() / dy.len();
    for (i, d) in da.iter_mut().enumerate() {
        let g = dy[i / cols] as f64;
        *d = match term {
            Term::KlNormal => g * a[i] as f64,
            Term::BceSum => g * (sigmoid(a[i] as f64) - b[i] as f64),
            Term::SigmoidMean => {
                let s = sigmoid(a[i] as f64);
                g * s * (1.0 - s) / cols as f64
            }
        } as f32;
    }
    if let (Term::KlNormal, Some(db)) = (term, db) {
        for (i, d) in db.iter_mut().enumerate() {
            *d = (dy[i / cols] as f64 * 0.5 * ((b[i] as f64).exp() - 1.0)) as f32;
        }
    }
}
