//! loss kernels against `wgml::reference::loss`, and their gradients against finite
//! differences of the reference losses.

use rand::Rng;
use wgml::kernels::loss;
use wgml::{Context, DType, Error, Tensor, reference};

use crate::common::*;

/// (B, C or D): ones, primes, workgroup-size boundaries (32/64/128/256), a row far
/// longer than a workgroup, a large batch, and more rows than one grid axis holds.
const SHAPES: [(usize, usize); 10] = [
    (1, 1),
    (7, 1),
    (5, 7),
    (13, 31),
    (3, 65),
    (3, 257),
    (64, 10),
    (2, 100_000),
    (256, 1000),
    (70_000, 2),
];

#[derive(Clone, Copy, Debug)]
enum Kind {
    Xent,
    /// Softmax cross-entropy with label smoothing [`SMOOTHING`].
    XentSmoothed,
    Mse,
    Bce,
}

/// The label smoothing of [`Kind::XentSmoothed`].
const SMOOTHING: f32 = 0.15;

fn smoothed() -> loss::LossOptions<'static> {
    loss::LossOptions {
        smoothing: SMOOTHING,
        class_weights: None,
        label_mean: None,
    }
}

/// Inputs for a loss: x (logits / predictions), and either labels or f32 targets.
struct Case {
    rows: usize,
    cols: usize,
    x: Vec<f32>,
    labels: Vec<u32>,
    targets: Vec<f32>,
}

fn case(kind: Kind, seed: u64, rows: usize, cols: usize) -> Case {
    let mut r = rng(seed);
    let x = uniform(&mut r, rows * cols, -4.0, 4.0);
    let labels = (0..rows).map(|_| r.random_range(0..cols as u32)).collect();
    let targets = match kind {
        Kind::Bce => (0..rows * cols)
            .map(|i| {
                if i % 3 == 0 {
                    r.random_range(0.0..1.0)
                } else {
                    r.random_range(0..2) as f32
                }
            })
            .collect(),
        _ => uniform(&mut r, rows * cols, -4.0, 4.0),
    };
    Case {
        rows,
        cols,
        x,
        labels,
        targets,
    }
}

/// Runs the GPU loss (with gradient when `grad`), returns (loss, gradient).
fn gpu_loss(ctx: &Context, kind: Kind, c: &Case, grad: bool, scale: f32) -> (Vec<f32>, Option<Vec<f32>>) {
    let shape = [c.rows, c.cols];
    let x = Tensor::from_f32(ctx, &c.x, &shape).unwrap();
    let loss_t = nan_tensor(ctx, &[c.rows]);
    let g = grad.then(|| nan_tensor(ctx, &shape));
    let d = match kind {
        Kind::Xent => {
            let l = Tensor::from_u32(ctx, &c.labels, &[c.rows]).unwrap();
            loss::softmax_cross_entropy(ctx, &x, &l, &loss_t, g.as_ref(), scale)
        }
        Kind::XentSmoothed => {
            let l = Tensor::from_u32(ctx, &c.labels, &[c.rows]).unwrap();
            loss::softmax_cross_entropy_with(ctx, &x, &l, &loss_t, g.as_ref(), scale, smoothed())
        }
        Kind::Mse => {
            let t = Tensor::from_f32(ctx, &c.targets, &shape).unwrap();
            loss::mse(ctx, &x, &t, &loss_t, g.as_ref(), scale)
        }
        Kind::Bce => {
            let t = Tensor::from_f32(ctx, &c.targets, &shape).unwrap();
            loss::bce_with_logits(ctx, &x, &t, &loss_t, g.as_ref(), scale)
        }
    }
    .unwrap();
    ctx.run(&[&d]).unwrap();
    (loss_t.to_f32(ctx).unwrap(), g.map(|g| g.to_f32(ctx).unwrap()))
}

fn cpu_loss(kind: Kind, c: &Case, scale: f32) -> (Vec<f32>, Vec<f32>) {
    let mut l = vec![0.0; c.rows];
    let mut g = vec![0.0; c.rows * c.cols];
    match kind {
        Kind::Xent => {
            reference::loss::softmax_cross_entropy(&c.x, c.cols, &c.labels, &mut l, Some(&mut g), scale)
        }
        Kind::XentSmoothed => reference::loss::softmax_cross_entropy_with(
            &c.x,
            c.cols,
            &c.labels,
            &mut l,
            Some(&mut g),
            scale,
            SMOOTHING,
            None,
        ),
        Kind::Mse => reference::loss::mse(&c.x, &c.targets, c.cols, &mut l, Some(&mut g), scale),
        Kind::Bce => reference::loss::bce_with_logits(&c.x, &c.targets, c.cols, &mut l, Some(&mut g), scale),
    }
    (l, g)
}

/// `scale · Σ_rows loss_row(x)` in f64, the function whose gradient the kernels write.
fn total_loss(kind: Kind, c: &Case, x: &[f32], scale: f32) -> f64 {
    let rows = x.chunks(c.cols).enumerate();
    let s: f64 = match kind {
        Kind::Xent => rows
            .map(|(r, row)| reference::loss::xent_row(row, c.labels[r]))
            .sum(),
        // −Σ_j q_j log softmax_j in f64, written out here rather than through the twin.
        Kind::XentSmoothed => rows
            .map(|(r, row)| {
                let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
                let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
                let e = SMOOTHING as f64;
                row.iter()
                    .enumerate()
                    .map(|(j, &v)| {
                        let q = (1.0 - e) * (j == c.labels[r] as usize) as u8 as f64 + e / c.cols as f64;
                        -q * (v as f64 - lse)
                    })
                    .sum::<f64>()
            })
            .sum(),
        Kind::Mse => rows
            .map(|(r, row)| reference::loss::mse_row(row, &c.targets[r * c.cols..(r + 1) * c.cols]))
            .sum(),
        Kind::Bce => rows
            .map(|(r, row)| reference::loss::bce_row(row, &c.targets[r * c.cols..(r + 1) * c.cols]))
            .sum(),
    };
    s * scale as f64
}

fn check_against_reference(kind: Kind) {
    let (_g, ctx) = gpu();
    for (k, &(rows, cols)) in SHAPES.iter().enumerate() {
        let c = case(kind, 100 + k as u64, rows, cols);
        let scale = 1.0 / rows as f32;
        let (want_l, want_g) = cpu_loss(kind, &c, scale);
        let what = format!("{kind:?} [{rows}, {cols}]");

        let (l, g) = gpu_loss(ctx, kind, &c, true, scale);
        assert_close(&format!("{what} loss (with grad)"), &l, &want_l, 1e-5, 2e-5);
        // Gradients are O(scale); compare relative to that.
        assert_close(&format!("{what} grad"), &g.unwrap(), &want_g, 1e-6 * scale, 1e-4);

        let (l, g) = gpu_loss(ctx, kind, &c, false, scale);
        assert!(g.is_none());
        assert_close(&format!("{what} loss (forward only)"), &l, &want_l, 1e-5, 2e-5);
    }
}

#[test]
fn softmax_cross_entropy_matches_reference() {
    check_against_reference(Kind::Xent);
}

#[test]
fn smoothed_softmax_cross_entropy_matches_reference() {
    check_against_reference(Kind::XentSmoothed);
}

/// Label smoothing as PyTorch defines it, by hand: logits [1, 0], label 0, ε = 0.2:
/// the target is [0.9, 0.1], the loss −(0.9·log p0 + 0.1·log p1) = 0.41326…, the
/// gradient p − q; a label past the classes still marks a row with no target; a
/// smoothing outside [0, 1) is refused.
#[test]
fn label_smoothing_follows_pytorchs_definition() {
    let (_g, ctx) = gpu();
    let x = Tensor::from_f32(ctx, &[1.0, 0.0, 2.0, -1.0], &[2, 2]).unwrap();
    let labels = Tensor::from_u32(ctx, &[0, 7], &[2]).unwrap();
    let l = nan_tensor(ctx, &[2]);
    let g = nan_tensor(ctx, &[2, 2]);
    let options = loss::LossOptions {
        smoothing: 0.2,
        class_weights: None,
        label_mean: None,
    };
    let d = loss::softmax_cross_entropy_with(ctx, &x, &labels, &l, Some(&g), 1.0, options).unwrap();
    ctx.run(&[&d]).unwrap();
    let lse = (1f64.exp() + 1.0).ln();
    let want = 0.9 * (lse - 1.0) + 0.1 * lse;
    let p0 = 1f64.exp() / (1f64.exp() + 1.0);
    assert_close(
        "smoothed loss by hand",
        &l.to_f32(ctx).unwrap(),
        &[want as f32, 0.0],
        1e-6,
        1e-6,
    );
    assert_close(
        "smoothed gradient by hand",
        &g.to_f32(ctx).unwrap(),
        &[(p0 - 0.9) as f32, (0.9 - p0) as f32, 0.0, 0.0],
        1e-6,
        1e-6,
    );
    for bad in [-0.1f32, 1.0, f32::NAN] {
        let options = loss::LossOptions {
            smoothing: bad,
            class_weights: None,
            label_mean: None,
        };
        let e = loss::softmax_cross_entropy_with(ctx, &x, &labels, &l, None, 1.0, options).unwrap_err();
        assert!(e.to_string().contains("label smoothing"), "{e}");
    }
}

#[test]
fn mse_matches_reference() {
    check_against_reference(Kind::Mse);
}

#[test]
fn bce_with_logits_matches_reference() {
    check_against_reference(Kind::Bce);
}

#[test]
fn loss_gradients_match_finite_differences() {
    let (_g, ctx) = gpu();
    for kind in [Kind::Xent, Kind::XentSmoothed, Kind::Mse, Kind::Bce] {
        for (k, &(rows, cols)) in [(1usize, 1usize), (3, 5), (4, 37)].iter().enumerate() {
            let c = case(kind, 200 + k as u64, rows, cols);
            let scale = 1.0 / rows as f32;
            let (_, g) = gpu_loss(ctx, kind, &c, true, scale);
            let fd = finite_diff(&c.x, 1e-3, |x| total_loss(kind, &c, x, scale));
            assert_close(
                &format!("{kind:?} [{rows}, {cols}] gradient vs finite differences"),
                &g.unwrap(),
                &fd,
                // The twin's loss sums in f64 from f32 logits; with eps 1e-3 the
                // central differences' truncation and rounding stay near 1e-7
                // (worst measured 4.5e-7 relative).
                1e-8,
                1e-5,
            );
        }
    }
}

#[test]
fn softmax_cross_entropy_ignores_out_of_range_labels() {
    let (_g, ctx) = gpu();
    let (rows, cols) = (6, 300);
    let mut c = case(Kind::Xent, 7, rows, cols);
    c.labels = vec![0, 300, 299, u32::MAX, 5, 301];
    let (l, g) = gpu_loss(ctx, Kind::Xent, &c, true, 0.5);
    let (want_l, want_g) = cpu_loss(Kind::Xent, &c, 0.5);
    let g = g.unwrap();
    for r in [1, 3, 5] {
        assert_eq!(l[r], 0.0, "row {r} has no target: loss must be 0");
        assert!(
            g[r * cols..(r + 1) * cols].iter().all(|&v| v == 0.0),
            "row {r}: gradient must be 0"
        );
    }
    assert!(l[0] > 0.0 && l[2] > 0.0 && l[4] > 0.0);
    assert_close("xent with ignored rows: loss", &l, &want_l, 1e-5, 2e-5);
    assert_close("xent with ignored rows: grad", &g, &want_g, 1e-7, 1e-4);
}

#[test]
fn softmax_cross_entropy_is_stable_at_extremes() {
    let (_g, ctx) = gpu();
    let c = Case {
        rows: 4,
        cols: 3,
        x: vec![1e4, -1e4, 0.0, 1e4, -1e4, 0.0, 1e4, -1e4, 0.0, -1e4, -1e4, -1e4],
        labels: vec![1, 0, 2, 2],
        targets: vec![],
    };
    let (l, g) = gpu_loss(ctx, Kind::Xent, &c, true, 1.0);
    assert_close("xent extremes loss", &l, &[2e4, 0.0, 1e4, 3f32.ln()], 0.0, 1e-6);
    let third = 1.0 / 3.0;
    #[rustfmt::skip]
    let want_g = [
        1.0, -1.0, 0.0,
        0.0, 0.0, 0.0,
        1.0, 0.0, -1.0,
        third, third, third - 1.0,
    ];
    assert_close("xent extremes grad", &g.unwrap(), &want_g, 1e-7, 1e-6);
}

#[test]
fn bce_is_finite_and_exact_at_large_logits() {
    let (_g, ctx) = gpu();
    let c = Case {
        rows: 10,
        cols: 1,
        x: vec![1e4, 1e4, -1e4, -1e4, 1e4, 0.0, 20.0, -20.0, 50.0, -50.0],
        labels: vec![],
        targets: vec![1.0, 0.0, 0.0, 1.0, 0.3, 0.5, 1.0, 0.0, 0.0, 1.0],
    };
    let (l, g) = gpu_loss(ctx, Kind::Bce, &c, true, 1.0);
    let g = g.unwrap();
    assert!(l.iter().chain(&g).all(|v| v.is_finite()), "{l:?} {g:?}");
    let (want_l, want_g) = cpu_loss(Kind::Bce, &c, 1.0);
    assert_eq!(&want_l[..5], &[0.0, 1e4, 0.0, 1e4, 7000.0]);
    // Exact-ish: tiny losses (softplus(-20) ≈ 2e-9) keep their relative precision.
    assert_close("bce extremes loss", &l, &want_l, 1e-12, 1e-5);
    assert_close("bce extremes grad", &g, &want_g, 1e-8, 1e-6);
    assert_eq!(&g[..5], &[0.0, 1.0, 0.0, -1.0, 0.7]);
}

#[test]
fn losses_reject_bad_inputs() {
    let (_g, ctx) = gpu();
    let logits = Tensor::zeros(ctx, &[4, 6], DType::F32).unwrap();
    let labels = Tensor::zeros(ctx, &[4], DType::U32).unwrap();
    let loss4 = Tensor::zeros(ctx, &[4], DType::F32).unwrap();
    let grad = Tensor::zeros(ctx, &[4, 6], DType::F32).unwrap();

    let f_labels = Tensor::zeros(ctx, &[4], DType::F32).unwrap();
    let e = loss::softmax_cross_entropy(ctx, &logits, &f_labels, &loss4, None, 1.0).unwrap_err();
    assert!(
        matches!(
            e,
            Error::DType {
                what: "labels",
                expected: "u32",
                ..
            }
        ),
        "{e}"
    );

    let labels5 = Tensor::zeros(ctx, &[5], DType::U32).unwrap();
    let e = loss::softmax_cross_entropy(ctx, &logits, &labels5, &loss4, None, 1.0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("labels") && e.contains("[5]") && e.contains("[4, 6]"),
        "{e}"
    );

    let loss3 = Tensor::zeros(ctx, &[3], DType::F32).unwrap();
    let e = loss::softmax_cross_entropy(ctx, &logits, &labels, &loss3, None, 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("loss") && e.contains("[3]"), "{e}");

    let grad_t = Tensor::zeros(ctx, &[6, 4], DType::F32).unwrap();
    let e = loss::softmax_cross_entropy(ctx, &logits, &labels, &loss4, Some(&grad_t), 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dlogits") && e.contains("[6, 4]"), "{e}");

    let e = loss::softmax_cross_entropy(ctx, &logits, &labels, &loss4, Some(&logits), 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dlogits shares a buffer with logits"), "{e}");

    let empty = Tensor::zeros(ctx, &[4, 0], DType::F32).unwrap();
    let e = loss::softmax_cross_entropy(ctx, &empty, &labels, &loss4, None, 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[4, 0]"), "{e}");
    let e = loss::mse(ctx, &empty, &empty, &loss4, None, 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("mse") && e.contains("[4, 0]"), "{e}");

    let target_t = Tensor::zeros(ctx, &[6, 4], DType::F32).unwrap();
    let e = loss::mse(ctx, &logits, &target_t, &loss4, Some(&grad), 1.0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mse") && e.contains("target") && e.contains("[6, 4]"),
        "{e}"
    );

    let u_targets = Tensor::zeros(ctx, &[4, 6], DType::U32).unwrap();
    let e = loss::bce_with_logits(ctx, &logits, &u_targets, &loss4, None, 1.0).unwrap_err();
    assert!(matches!(e, Error::DType { what: "targets", .. }), "{e}");

    let e = loss::bce_with_logits(ctx, &logits, &grad, &loss4, Some(&grad), 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dlogits shares a buffer with targets"), "{e}");
}

#[test]
fn empty_batch_is_a_no_op() {
    let (_g, ctx) = gpu();
    let x = Tensor::zeros(ctx, &[0, 5], DType::F32).unwrap();
    let g = Tensor::zeros(ctx, &[0, 5], DType::F32).unwrap();
    let t = Tensor::zeros(ctx, &[0, 5], DType::F32).unwrap();
    let labels = Tensor::zeros(ctx, &[0], DType::U32).unwrap();
    let l = Tensor::zeros(ctx, &[0], DType::F32).unwrap();
    let ds = [
        loss::softmax_cross_entropy(ctx, &x, &labels, &l, Some(&g), 1.0).unwrap(),
        loss::mse(ctx, &x, &t, &l, Some(&g), 1.0).unwrap(),
        loss::bce_with_logits(ctx, &x, &t, &l, None, 1.0).unwrap(),
    ];
    ctx.run(&ds.iter().collect::<Vec<_>>()).unwrap();
}

/// The loss terms computed inside a graph (a variational autoencoder's KL and
/// summed reconstruction BCE) against their twins on every shape, with a per-sample
/// upstream gradient, and the twins' gradients against f64 central differences.
#[test]
fn loss_terms_match_their_twins_and_finite_differences() {
    use wgml::kernels::loss::Term;
    let (_g, ctx) = gpu();
    for term in [Term::KlNormal, Term::BceSum, Term::SigmoidMean] {
        for (k, &(rows, cols)) in SHAPES.iter().enumerate() {
            let c = case(Kind::Bce, 900 + k as u64, rows, cols);
            // KL: a mean and a log-variance in [-4, 4]; BCE: logits and targets.
            let b_values = match term {
                Term::KlNormal => uniform(&mut rng(950 + k as u64), rows * cols, -4.0, 4.0),
                Term::BceSum | Term::SigmoidMean => c.targets.clone(),
            };
            let dy = uniform(&mut rng(990 + k as u64), rows, -1.0, 1.0);
            let shape = [rows, cols];
            let a = Tensor::from_f32(ctx, &c.x, &shape).unwrap();
            let b = Tensor::from_f32(ctx, &b_values, &shape).unwrap();
            let dyt = Tensor::from_f32(ctx, &dy, &[rows]).unwrap();
            let loss_t = nan_tensor(ctx, &[rows]);
            let da = nan_tensor(ctx, &shape);
            let db = nan_tensor(ctx, &shape);
            let db_arg = (term == Term::KlNormal).then_some(&db);
            ctx.run(&[
                &loss::loss_term(ctx, term, &a, &b, &loss_t).unwrap(),
                &loss::loss_term_grad(ctx, term, &a, &b, &dyt, &da, db_arg).unwrap(),
            ])
            .unwrap();
            let mut want = vec![0.0; rows];
            reference::loss::loss_term(term, &c.x, &b_values, cols, &mut want);
            let what = format!("{term:?} [{rows}, {cols}]");
            // Sums of up to 100,000 f32 terms of size ≤ 60 (e^4) in workgroup order
            // against f64: 1e-5 relative of the row sum, plus its magnitude's rounding.
            assert_close(
                &format!("{what} loss"),
                &loss_t.to_f32(ctx).unwrap(),
                &want,
                1e-4,
                1e-5,
            );
            let mut want_da = vec![0.0; rows * cols];
            let mut want_db = vec![0.0; rows * cols];
            let want_db_arg = (term == Term::KlNormal).then_some(&mut want_db[..]);
            reference::loss::loss_term_grad(term, &c.x, &b_values, &dy, &mut want_da, want_db_arg);
            assert_close(
                &format!("{what} da"),
                &da.to_f32(ctx).unwrap(),
                &want_da,
                1e-7,
                1e-5,
            );
            if term == Term::KlNormal {
                assert_close(
                    &format!("{what} db"),
                    &db.to_f32(ctx).unwrap(),
                    &want_db,
                    1e-7,
                    1e-5,
                );
            }
        }
        // The twin's gradient is the derivative of Σ dy · loss (f64 differences of
        // the f64 forward written out here).
        let (rows, cols) = (3, 4);
        let a = uniform(&mut rng(1), rows * cols, -2.0, 2.0);
        let b = match term {
            Term::KlNormal => uniform(&mut rng(2), rows * cols, -2.0, 2.0),
            Term::BceSum | Term::SigmoidMean => uniform(&mut rng(2), rows * cols, 0.0, 1.0),
        };
        let dy = uniform(&mut rng(3), rows, -1.0, 1.0);
        let total = |a: &[f64], b: &[f64]| -> f64 {
            (0..rows * cols)
                .map(|i| {
                    let (x, y) = (a[i], b[i]);
                    let l = match term {
                        Term::KlNormal => -0.5 * (1.0 + y - x * x - y.exp()),
                        Term::BceSum => x.max(0.0) - x * y + (-x.abs()).exp().ln_1p(),
                        Term::SigmoidMean => 1.0 / (1.0 + (-x).exp()) / cols as f64,
                    };
                    dy[i / cols] as f64 * l
                })
                .sum()
        };
        let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        let fd = |which: usize| -> Vec<f32> {
            (0..rows * cols)
                .map(|i| {
                    let at = |delta: f64| {
                        let (mut a, mut b) = (wide(&a), wide(&b));
                        let v = if which == 0 { &mut a } else { &mut b };
                        v[i] += delta;
                        total(&a, &b)
                    };
                    ((at(1e-6) - at(-1e-6)) / 2e-6) as f32
                })
                .collect()
        };
        let (mut da, mut db) = (vec![0.0; rows * cols], vec![0.0; rows * cols]);
        let db_arg = (term == Term::KlNormal).then_some(&mut db[..]);
        reference::loss::loss_term_grad(term, &a, &b, &dy, &mut da, db_arg);
        assert_close(
            &format!("{term:?} da vs finite differences"),
            &da,
            &fd(0),
            1e-6,
            1e-5,
        );
        if term == Term::KlNormal {
            assert_close(
                &format!("{term:?} db vs finite differences"),
                &db,
                &fd(1),
                1e-6,
                1e-5,
            );
        }
    }
}

/// Class weights (Keras' `class_weight`): the weighted softmax cross-entropy (with
/// and without smoothing) and the weighted binary cross-entropy of one output equal
/// their twins on every shape; their gradients equal finite differences of the
/// weighted loss; a zero weight silences its class; weights need a gradient, the
/// right count and one binary output.
#[test]
fn class_weighted_losses_match_their_twins_and_finite_differences() {
    let (_g, ctx) = gpu();
    for (k, &(rows, cols)) in SHAPES.iter().enumerate() {
        let c = case(Kind::Xent, 300 + k as u64, rows, cols);
        let weights: Vec<f32> = (0..cols).map(|j| [0.5, 2.0, 0.0, 1.25][j % 4]).collect();
        let scale = 1.0 / rows as f32;
        for smoothing in [0.0, SMOOTHING] {
            let x = Tensor::from_f32(ctx, &c.x, &[rows, cols]).unwrap();
            let l = Tensor::from_u32(ctx, &c.labels, &[rows]).unwrap();
            let w = Tensor::from_f32(ctx, &weights, &[cols]).unwrap();
            let (loss_t, g) = (nan_tensor(ctx, &[rows]), nan_tensor(ctx, &[rows, cols]));
            let options = loss::LossOptions {
                smoothing,
                class_weights: Some(&w),
                label_mean: None,
            };
            let d = loss::softmax_cross_entropy_with(ctx, &x, &l, &loss_t, Some(&g), scale, options).unwrap();
            ctx.run(&[&d]).unwrap();
            let (mut want_l, mut want_g) = (vec![0.0; rows], vec![0.0; rows * cols]);
            reference::loss::softmax_cross_entropy_with(
                &c.x,
                cols,
                &c.labels,
                &mut want_l,
                Some(&mut want_g),
                scale,
                smoothing,
                Some(&weights),
            );
            let what = format!("weighted xent [{rows}, {cols}] smoothing {smoothing}");
            let (got_l, got_g) = (loss_t.to_f32(ctx).unwrap(), g.to_f32(ctx).unwrap());
            assert_close(&format!("{what} loss"), &got_l, &want_l, 1e-5, 2e-5);
            assert_close(&format!("{what} grad"), &got_g, &want_g, 1e-6 * scale, 1e-4);
            // A class of weight 0 contributes nothing, on the GPU exactly.
            for (r, &label) in c.labels.iter().enumerate().take(50) {
                if weights[label as usize] == 0.0 {
                    assert_eq!(got_l[r], 0.0, "{what}: row {r}");
                    assert!(
                        got_g[r * cols..(r + 1) * cols].iter().all(|&v| v == 0.0),
                        "{what}: row {r}"
                    );
                }
            }
        }
    }
    // Binary: one output, weights of targets up to 0.5 and above (Keras rounds 0.5 down).
    for (k, rows) in [1usize, 7, 64, 70_000].into_iter().enumerate() {
        let c = case(Kind::Bce, 400 + k as u64, rows, 1);
        let weights = [0.3f32, 4.0];
        let scale = 1.0 / rows as f32;
        let x = Tensor::from_f32(ctx, &c.x, &[rows, 1]).unwrap();
        let t = Tensor::from_f32(ctx, &c.targets, &[rows, 1]).unwrap();
        let w = Tensor::from_f32(ctx, &weights, &[2]).unwrap();
        let (loss_t, g) = (nan_tensor(ctx, &[rows]), nan_tensor(ctx, &[rows, 1]));
        let d = loss::bce_with_logits_weighted(ctx, &x, &t, &loss_t, Some(&g), scale, Some(&w)).unwrap();
        ctx.run(&[&d]).unwrap();
        let (mut want_l, mut want_g) = (vec![0.0; rows], vec![0.0; rows]);
        reference::loss::bce_with_logits_weighted(
            &c.x,
            &c.targets,
            1,
            &mut want_l,
            Some(&mut want_g),
            scale,
            Some(&weights),
        );
        let what = format!("weighted bce [{rows}, 1]");
        assert_close(
            &format!("{what} loss"),
            &loss_t.to_f32(ctx).unwrap(),
            &want_l,
            1e-5,
            2e-5,
        );
        assert_close(
            &format!("{what} grad"),
            &g.to_f32(ctx).unwrap(),
            &want_g,
            1e-6 * scale,
            1e-4,
        );
    }
    // Gradients against finite differences of the weighted losses (the twins'
    // losses, checked against the GPU's above, summed in f64).
    let weights = [0.5f32, 2.0, 0.0, 1.25, 3.0];
    let c = case(Kind::Xent, 500, 4, 5);
    let x = Tensor::from_f32(ctx, &c.x, &[4, 5]).unwrap();
    let l = Tensor::from_u32(ctx, &c.labels, &[4]).unwrap();
    let w = Tensor::from_f32(ctx, &weights, &[5]).unwrap();
    let (loss_t, g) = (nan_tensor(ctx, &[4]), nan_tensor(ctx, &[4, 5]));
    let options = loss::LossOptions {
        smoothing: SMOOTHING,
        class_weights: Some(&w),
        label_mean: None,
    };
    let d = loss::softmax_cross_entropy_with(ctx, &x, &l, &loss_t, Some(&g), 0.25, options).unwrap();
    ctx.run(&[&d]).unwrap();
    // Σ_rows w[label]·(−Σ_j q_j log softmax_j) in f64, written out here.
    let total = |x: &[f32]| {
        let e = SMOOTHING as f64;
        let per_row = x.chunks(5).zip(&c.labels).map(|(row, &label)| {
            let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
            let xent: f64 = row
                .iter()
                .enumerate()
                .map(|(j, &v)| -((1.0 - e) * (j == label as usize) as u8 as f64 + e / 5.0) * (v as f64 - lse))
                .sum();
            weights[label as usize] as f64 * xent
        });
        0.25 * per_row.sum::<f64>()
    };
    let fd = finite_diff(&c.x, 1e-3, total);
    assert_close(
        "weighted xent vs finite differences",
        &g.to_f32(ctx).unwrap(),
        &fd,
        1e-8,
        1e-5,
    );

    // Refusals.
    let w4 = Tensor::from_f32(ctx, &[1.0; 4], &[4]).unwrap();
    let with = |w| loss::LossOptions {
        smoothing: 0.0,
        class_weights: Some(w),
        label_mean: None,
    };
    let e = loss::softmax_cross_entropy_with(ctx, &x, &l, &loss_t, Some(&g), 1.0, with(&w4)).unwrap_err();
    assert!(e.to_string().contains("5 class weights"), "{e}");
    let e = loss::softmax_cross_entropy_with(ctx, &x, &l, &loss_t, None, 1.0, with(&w)).unwrap_err();
    assert!(e.to_string().contains("gradient"), "{e}");
    let t = Tensor::from_f32(ctx, &c.x, &[4, 5]).unwrap();
    let w2 = Tensor::from_f32(ctx, &[1.0, 2.0], &[2]).unwrap();
    let e = loss::bce_with_logits_weighted(ctx, &x, &t, &loss_t, Some(&g), 1.0, Some(&w2)).unwrap_err();
    assert!(e.to_string().contains("one output"), "{e}");
}

/// `label_scale` counts the labels below C (the rows with a target) and
/// `xent_grad_labelled` scales the gradient by what it wrote: the mean over
/// those rows, PyTorch's `CrossEntropyLoss(ignore_index=-100)` (here
/// `u32::MAX`), on shapes across the counting workgroup's 256 invocations.
#[test]
fn softmax_cross_entropy_means_over_the_labelled_rows() {
    let (_g, ctx) = gpu();
    for (seed, (rows, cols)) in [(1, 1), (5, 7), (300, 9), (1000, 3), (4, 5)]
        .into_iter()
        .enumerate()
    {
        let mut c = case(Kind::Xent, 40 + seed as u64, rows, cols);
        let mut r = rng(90 + seed as u64);
        for l in &mut c.labels {
            // About half without a target; the last case none at all.
            if rows == 4 || r.random_range(0..2) == 0 {
                *l = if r.random_range(0..2) == 0 {
                    u32::MAX
                } else {
                    cols as u32
                };
            }
        }
        let want_scale = reference::loss::label_scale(&c.labels, cols);
        let x = Tensor::from_f32(ctx, &c.x, &[rows, cols]).unwrap();
        let labels = Tensor::from_u32(ctx, &c.labels, &[rows]).unwrap();
        let scale = nan_tensor(ctx, &[1]);
        let (loss_t, g) = (nan_tensor(ctx, &[rows]), nan_tensor(ctx, &[rows, cols]));
        let count = loss::label_scale(ctx, &labels, cols, &scale).unwrap();
        let n = c.labels.iter().filter(|&&l| (l as usize) < cols).count();
        assert_eq!(want_scale, 1.0 / n.max(1) as f32);
        // Without and with class weights: each labelled row's term weighted,
        // the sum over n either way.
        let weights = uniform(&mut r, cols, 0.2, 3.0);
        let w = Tensor::from_f32(ctx, &weights, &[cols]).unwrap();
        for class_weights in [None, Some(&weights)] {
            let options = loss::LossOptions {
                class_weights: class_weights.map(|_| &w),
                label_mean: Some(&scale),
                ..Default::default()
            };
            // grad_scale is not read: the scale comes from the tensor.
            let xent =
                loss::softmax_cross_entropy_with(ctx, &x, &labels, &loss_t, Some(&g), 9.0, options).unwrap();
            ctx.run(&[&count, &xent]).unwrap();
            assert_eq!(
                scale.to_f32(ctx).unwrap()[0],
                want_scale,
                "[{rows}, {cols}]: the scale"
            );
            let (mut want_l, mut want_g) = (vec![0.0; rows], vec![0.0; rows * cols]);
            reference::loss::softmax_cross_entropy_with(
                &c.x,
                cols,
                &c.labels,
                &mut want_l,
                Some(&mut want_g),
                want_scale,
                0.0,
                class_weights.map(Vec::as_slice),
            );
            let what = format!(
                "labelled mean [{rows}, {cols}], weighted {}",
                class_weights.is_some()
            );
            let loss = loss_t.to_f32(ctx).unwrap();
            assert_close(&format!("{what}: loss"), &loss, &want_l, 1e-5, 2e-5);
            assert_close(
                &format!("{what}: grad"),
                &g.to_f32(ctx).unwrap(),
                &want_g,
                1e-7,
                1e-4,
            );
        }
    }
    // Refused: without a gradient, or a scale of 2 values.
    let (x, labels, scale, l) = (
        Tensor::zeros(ctx, &[2, 3], DType::F32).unwrap(),
        Tensor::zeros(ctx, &[2], DType::U32).unwrap(),
        Tensor::zeros(ctx, &[1], DType::F32).unwrap(),
        Tensor::zeros(ctx, &[2], DType::F32).unwrap(),
    );
    let options = loss::LossOptions {
        label_mean: Some(&scale),
        ..Default::default()
    };
    assert!(loss::softmax_cross_entropy_with(ctx, &x, &labels, &l, None, 1.0, options).is_err());
    assert!(
        loss::label_scale(ctx, &labels, 3, &l).is_err(),
        "a scale of 2 values"
    );
}
