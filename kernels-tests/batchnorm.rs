//! Batch normalization against `wgml::reference::batchnorm`: training forward (with
//! the saved and moving statistics), evaluation forward and backward on conv-shaped
//! and Dense-shaped views, with each activation after it; a hand-computed case; the
//! reference backward against finite differences; bad input.

use wgml::kernels::batchnorm::{self, BatchNormDesc};
use wgml::kernels::matmul::Activation;
use wgml::{Context, Tensor, reference};

use crate::common::*;

fn up(ctx: &Context, v: &[f32]) -> Tensor {
    Tensor::from_f32(ctx, v, &[v.len()]).unwrap()
}

/// Random inputs for `d`: x around `offset`, γ, β, moving statistics.
struct Inputs {
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    moving_mean: Vec<f32>,
    moving_var: Vec<f32>,
}

fn inputs(d: &BatchNormDesc, offset: f32, seed: u64) -> Inputs {
    let mut r = rng(seed);
    Inputs {
        x: uniform(&mut r, d.numel(), offset - 2.0, offset + 2.0),
        gamma: uniform(&mut r, d.c, 0.5, 1.5),
        beta: uniform(&mut r, d.c, -0.5, 0.5),
        moving_mean: uniform(&mut r, d.c, -0.2, 0.2),
        moving_var: uniform(&mut r, d.c, 0.5, 2.0),
    }
}

/// One case: `(n, c, s, offset of x, activation)`.
type Case = (usize, usize, usize, f32, Activation);

/// Conv-shaped views (odd sizes, more elements per channel than a workgroup, one
/// sample), Dense-shaped ones (s = 1: the one-invocation-per-channel kernels, more
/// channels than a workgroup), x far from zero (the two-pass variance), and every
/// activation after the normalization.
const CASES: [Case; 8] = [
    (4, 3, 25, 0.0, Activation::Identity),
    (5, 7, 169, 0.0, Activation::Relu),
    (1, 2, 1000, 0.5, Activation::Tanh),
    (32, 17, 1, 0.0, Activation::Relu),
    (3, 4, 1, -1.0, Activation::Sigmoid),
    (8, 5, 49, 1000.0, Activation::Identity),
    (6, 3, 10, 0.0, Activation::Identity),
    (5, 300, 1, 0.0, Activation::Tanh),
];

fn desc((n, c, s, _, act): Case) -> BatchNormDesc {
    BatchNormDesc::new(n, c, s).activation(act)
}

fn name((n, c, s, offset, act): Case) -> String {
    format!("n={n} c={c} s={s} offset={offset} {act:?}")
}

/// The twin's training forward of `inp`: `(y, [mean | inv_std], moving mean, moving var)`.
fn twin_train(d: &BatchNormDesc, inp: &Inputs) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut y = vec![0.0; d.numel()];
    let mut stats = vec![0.0; 2 * d.c];
    let (mut mm, mut mv) = (inp.moving_mean.clone(), inp.moving_var.clone());
    reference::batchnorm::batchnorm_train(
        d, &inp.x, &inp.gamma, &inp.beta, &mut y, &mut stats, &mut mm, &mut mv,
    )
    .unwrap();
    (y, stats, mm, mv)
}

/// The twin's backward of `inp` with saved `stats` and output gradient `dy`:
/// `(dx, dgamma, dbeta)`.
fn twin_backward(
    d: &BatchNormDesc,
    inp: &Inputs,
    stats: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = vec![0.0; d.numel()];
    let (mut dg, mut db) = (vec![0.0; d.c], vec![0.0; d.c]);
    reference::batchnorm::batchnorm_backward(
        d,
        &inp.x,
        &inp.gamma,
        &inp.beta,
        stats,
        dy,
        Some(&mut dx),
        &mut dg,
        &mut db,
    )
    .unwrap();
    (dx, dg, db)
}

#[test]
fn training_forward_matches_its_twin_with_saved_and_moving_statistics() {
    let (_g, ctx) = gpu();
    for (i, &case) in CASES.iter().enumerate() {
        let (d, what, offset) = (desc(case), name(case), case.3);
        let inp = inputs(&d, offset, 10 + i as u64);
        let (y, stats) = (nan_tensor(ctx, &[d.numel()]), nan_tensor(ctx, &[2 * d.c]));
        let (mm, mv) = (up(ctx, &inp.moving_mean), up(ctx, &inp.moving_var));
        let disp = batchnorm::batchnorm_train(
            ctx,
            &d,
            &up(ctx, &inp.x),
            &up(ctx, &inp.gamma),
            &up(ctx, &inp.beta),
            &y,
            &stats,
            &mm,
            &mv,
        )
        .unwrap();
        ctx.run(&[&disp]).unwrap();
        let (want_y, want_stats, want_mm, want_mv) = twin_train(&d, &inp);
        // x − mean for f32 values near 1000 carries ulp(1000) ≈ 6e-5 of absolute
        // error, ≈ 1.4e-4 in y once divided by the std (measured); elsewhere ≈ 2e-7.
        let y_atol = if offset.abs() > 100.0 { 5e-4 } else { 1e-5 };
        let c = d.c;
        assert_close(
            &format!("{what} y"),
            &y.to_f32(ctx).unwrap(),
            &want_y,
            y_atol,
            1e-5,
        );
        let got = stats.to_f32(ctx).unwrap();
        assert_close(&format!("{what} mean"), &got[..c], &want_stats[..c], 1e-6, 1e-5);
        assert_close(
            &format!("{what} inv_std"),
            &got[c..],
            &want_stats[c..],
            1e-5,
            1e-5,
        );
        let (got_mm, got_mv) = (mm.to_f32(ctx).unwrap(), mv.to_f32(ctx).unwrap());
        assert_close(&format!("{what} moving mean"), &got_mm, &want_mm, 1e-6, 1e-5);
        assert_close(&format!("{what} moving var"), &got_mv, &want_mv, 1e-6, 1e-4);
    }
}

#[test]
fn hand_computed_channel() {
    // One channel [1, 2, 3, 4]: mean 2.5, biased variance 1.25; γ = 2, β = 1, ε = 0.75
    // so √(var + ε) = √2. Moving statistics from (0, 1) with momentum 0.5.
    let (_g, ctx) = gpu();
    let d = BatchNormDesc {
        momentum: 0.5,
        epsilon: 0.75,
        ..BatchNormDesc::new(2, 1, 2)
    };
    let (y, stats) = (nan_tensor(ctx, &[4]), nan_tensor(ctx, &[2]));
    let (mm, mv) = (up(ctx, &[0.0]), up(ctx, &[1.0]));
    let (x, gamma, beta) = (up(ctx, &[1.0, 2.0, 3.0, 4.0]), up(ctx, &[2.0]), up(ctx, &[1.0]));
    let disp = batchnorm::batchnorm_train(ctx, &d, &x, &gamma, &beta, &y, &stats, &mm, &mv).unwrap();
    ctx.run(&[&disp]).unwrap();
    let r = std::f32::consts::SQRT_2;
    let want: Vec<f32> = [-1.5f32, -0.5, 0.5, 1.5]
        .iter()
        .map(|v| 2.0 * v / r + 1.0)
        .collect();
    assert_close("y", &y.to_f32(ctx).unwrap(), &want, 1e-6, 1e-6);
    assert_close(
        "[mean, inv_std]",
        &stats.to_f32(ctx).unwrap(),
        &[2.5, 1.0 / r],
        0.0,
        1e-6,
    );
    assert_close("moving mean", &mm.to_f32(ctx).unwrap(), &[1.25], 0.0, 1e-7);
    assert_close("moving var", &mv.to_f32(ctx).unwrap(), &[1.125], 0.0, 1e-7);
    // With ReLU after it, the two negative outputs become 0.
    let relu = d.activation(Activation::Relu);
    let disp = batchnorm::batchnorm_train(ctx, &relu, &x, &gamma, &beta, &y, &stats, &mm, &mv).unwrap();
    ctx.run(&[&disp]).unwrap();
    let want: Vec<f32> = want.iter().map(|v| v.max(0.0)).collect();
    assert_eq!(want.iter().filter(|&&v| v == 0.0).count(), 1);
    assert_close("relu y", &y.to_f32(ctx).unwrap(), &want, 1e-6, 1e-6);
}

#[test]
fn evaluation_forward_matches_its_twin() {
    let (_g, ctx) = gpu();
    for (i, &case) in CASES.iter().enumerate() {
        let d = desc(case);
        let inp = inputs(&d, case.3.clamp(-1.0, 1.0), 20 + i as u64);
        let y = nan_tensor(ctx, &[d.numel()]);
        let disp = batchnorm::batchnorm_eval(
            ctx,
            &d,
            &up(ctx, &inp.x),
            &up(ctx, &inp.gamma),
            &up(ctx, &inp.beta),
            &up(ctx, &inp.moving_mean),
            &up(ctx, &inp.moving_var),
            &y,
        )
        .unwrap();
        ctx.run(&[&disp]).unwrap();
        let mut want = vec![0.0; d.numel()];
        reference::batchnorm::batchnorm_eval(
            &d,
            &inp.x,
            &inp.gamma,
            &inp.beta,
            &inp.moving_mean,
            &inp.moving_var,
            &mut want,
        )
        .unwrap();
        let what = format!("eval {}", name(case));
        assert_close(&what, &y.to_f32(ctx).unwrap(), &want, 1e-5, 1e-5);
    }
}

/// The gradient of the evaluation forward (a frozen layer trained through).
#[test]
fn evaluation_backward_matches_its_twin() {
    let (_g, ctx) = gpu();
    for (i, &case) in CASES.iter().enumerate() {
        let d = desc(case);
        let inp = inputs(&d, case.3.clamp(-1.0, 1.0), 60 + i as u64);
        let dy = uniform(&mut rng(70 + i as u64), d.numel(), -1.0, 1.0);
        let dx = nan_tensor(ctx, &[d.numel()]);
        let disp = batchnorm::batchnorm_eval_backward(
            ctx,
            &d,
            &up(ctx, &inp.x),
            &up(ctx, &inp.gamma),
            &up(ctx, &inp.beta),
            &up(ctx, &inp.moving_mean),
            &up(ctx, &inp.moving_var),
            &up(ctx, &dy),
            &dx,
        )
        .unwrap();
        ctx.run(&[&disp]).unwrap();
        let mut want = vec![0.0; d.numel()];
        reference::batchnorm::batchnorm_eval_backward(
            &d,
            &inp.x,
            &inp.gamma,
            &inp.beta,
            &inp.moving_mean,
            &inp.moving_var,
            &dy,
            &mut want,
        )
        .unwrap();
        let what = format!("eval backward {}", name(case));
        assert_close(&what, &dx.to_f32(ctx).unwrap(), &want, 1e-6, 1e-5);
    }
}

/// The twin's evaluation backward against central differences in f64 of
/// `L = Σ w · act(γ (x − moving_mean) / √(moving_var + ε) + β)`, written out here.
#[test]
fn reference_evaluation_backward_is_the_derivative_of_the_forward() {
    for act in [Activation::Identity, Activation::Tanh, Activation::Sigmoid] {
        let d = BatchNormDesc::new(3, 2, 4).activation(act);
        let inp = inputs(&d, 0.3, 80);
        let w = uniform(&mut rng(81), d.numel(), -1.0, 1.0);
        let mut dx = vec![0.0; d.numel()];
        reference::batchnorm::batchnorm_eval_backward(
            &d,
            &inp.x,
            &inp.gamma,
            &inp.beta,
            &inp.moving_mean,
            &inp.moving_var,
            &w,
            &mut dx,
        )
        .unwrap();
        let loss = |x: &[f64]| -> f64 {
            let mut total = 0.0;
            for (k, &xk) in x.iter().enumerate() {
                let c = (k / d.s) % d.c;
                let inv = 1.0 / (inp.moving_var[c] as f64 + d.epsilon as f64).sqrt();
                let z = inp.gamma[c] as f64 * (xk - inp.moving_mean[c] as f64) * inv + inp.beta[c] as f64;
                let y = match act {
                    Activation::Identity => z,
                    Activation::Relu => z.max(0.0),
                    Activation::Tanh => z.tanh(),
                    Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
                };
                total += w[k] as f64 * y;
            }
            total
        };
        let num = finite_diff_f64(&inp.x, loss);
        assert_close(
            &format!("{act:?} eval dx vs finite differences"),
            &dx,
            &num,
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn backward_matches_its_twin_with_and_without_dx() {
    let (_g, ctx) = gpu();
    for (i, &case) in CASES.iter().enumerate() {
        let d = desc(case);
        let inp = inputs(&d, case.3, 30 + i as u64);
        let dy = uniform(&mut rng(40 + i as u64), d.numel(), -1.0, 1.0);
        let stats = twin_train(&d, &inp).1;
        let (want_dx, want_dg, want_db) = twin_backward(&d, &inp, &stats, &dy);
        for with_dx in [true, false] {
            let dx = nan_tensor(ctx, &[d.numel()]);
            let (dg, db) = (nan_tensor(ctx, &[d.c]), nan_tensor(ctx, &[d.c]));
            let disp = batchnorm::batchnorm_backward(
                ctx,
                &d,
                &up(ctx, &inp.x),
                &up(ctx, &inp.gamma),
                &up(ctx, &inp.beta),
                &up(ctx, &stats),
                &up(ctx, &dy),
                with_dx.then_some(&dx),
                &dg,
                &db,
            )
            .unwrap();
            ctx.run(&[&disp]).unwrap();
            let what = format!("{} dx={with_dx}", name(case));
            let atol = 1e-6 * ((d.n * d.s) as f32).sqrt();
            assert_close(
                &format!("{what} dgamma"),
                &dg.to_f32(ctx).unwrap(),
                &want_dg,
                atol,
                1e-5,
            );
            assert_close(
                &format!("{what} dbeta"),
                &db.to_f32(ctx).unwrap(),
                &want_db,
                atol,
                1e-5,
            );
            let got_dx = dx.to_f32(ctx).unwrap();
            if with_dx {
                assert_close(&format!("{what} dx"), &got_dx, &want_dx, 1e-5, 1e-4);
            } else {
                assert!(got_dx.iter().all(|v| v.is_nan()), "{what}: dx was written");
            }
        }
    }
}

/// Batch normalization's training forward, written out here in f64 (not the twin):
/// `L = Σ w · act(γ (x − μ) / √(σ² + ε) + β)` with each channel's mean μ and biased
/// variance σ² over the batch and the spatial positions.
fn loss_f64(d: &BatchNormDesc, x: &[f64], gamma: &[f64], beta: &[f64], w: &[f32]) -> f64 {
    let count = (d.n * d.s) as f64;
    let mut total = 0.0;
    for c in 0..d.c {
        let at = |n: usize, s: usize| (n * d.c + c) * d.s + s;
        let all = || (0..d.n).flat_map(|n| (0..d.s).map(move |s| at(n, s)));
        let mean = all().map(|i| x[i]).sum::<f64>() / count;
        let var = all().map(|i| (x[i] - mean).powi(2)).sum::<f64>() / count;
        let inv = 1.0 / (var + d.epsilon as f64).sqrt();
        for i in all() {
            let z = gamma[c] * (x[i] - mean) * inv + beta[c];
            let y = match d.activation {
                Activation::Identity => z,
                Activation::Relu => z.max(0.0),
                Activation::Tanh => z.tanh(),
                Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
            };
            total += w[i] as f64 * y;
        }
    }
    total
}

/// Central differences of `f` at `x`, all in f64 (step 1e-5: truncation and
/// rounding both near 1e-11).
fn finite_diff_f64(x: &[f32], f: impl Fn(&[f64]) -> f64) -> Vec<f32> {
    let mut x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            x[i] = orig + 1e-5;
            let up = f(&x);
            x[i] = orig - 1e-5;
            let down = f(&x);
            x[i] = orig;
            ((up - down) / 2e-5) as f32
        })
        .collect()
}

/// The twin's backward is the derivative of the forward: L = Σ w·y against central
/// differences in f64 of the forward written out above (x, γ, β), without and with
/// a (smooth) activation after it. The twin's f32 outputs are the only rounding left
/// (worst measured 3.4e-7 relative), so 1e-5 relative (1e-6 absolute) holds.
#[test]
fn reference_backward_is_the_derivative_of_the_forward() {
    for act in [Activation::Identity, Activation::Tanh, Activation::Sigmoid] {
        let d = BatchNormDesc::new(3, 2, 4).activation(act);
        let inp = inputs(&d, 0.3, 50);
        let w = uniform(&mut rng(51), d.numel(), -1.0, 1.0);
        let stats = twin_train(&d, &inp).1;
        let (dx, dg, db) = twin_backward(&d, &inp, &stats, &w);
        let wide = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
        let (x, gamma, beta) = (wide(&inp.x), wide(&inp.gamma), wide(&inp.beta));
        let num_dx = finite_diff_f64(&inp.x, |x| loss_f64(&d, x, &gamma, &beta, &w));
        let num_dg = finite_diff_f64(&inp.gamma, |g| loss_f64(&d, &x, g, &beta, &w));
        let num_db = finite_diff_f64(&inp.beta, |b| loss_f64(&d, &x, &gamma, b, &w));
        for (what, got, want) in [
            ("dx", &dx, &num_dx),
            ("dgamma", &dg, &num_dg),
            ("dbeta", &db, &num_db),
        ] {
            assert_close(
                &format!("{act:?} {what} vs finite differences"),
                got,
                want,
                1e-6,
                1e-5,
            );
        }
    }
}

#[test]
fn bad_input_is_an_error() {
    let (_g, ctx) = gpu();
    let d = BatchNormDesc::new(2, 3, 4);
    let (x, y) = (nan_tensor(ctx, &[24]), nan_tensor(ctx, &[24]));
    let c = || nan_tensor(ctx, &[3]);
    let (g, b, mm, mv) = (c(), c(), c(), c());
    let stats = nan_tensor(ctx, &[6]);
    let msg = |r: wgml::Result<wgml::gpu::Dispatch>| match r {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted"),
    };
    let train = |d: &BatchNormDesc, x: &Tensor, y: &Tensor, stats: &Tensor| {
        msg(batchnorm::batchnorm_train(ctx, d, x, &g, &b, y, stats, &mm, &mv))
    };
    // Wrong sizes.
    let e = train(&d, &nan_tensor(ctx, &[23]), &y, &stats);
    assert!(e.contains("x has shape [23]") && e.contains("needs 24"), "{e}");
    let e = train(&d, &x, &y, &c());
    assert!(e.contains("saved has shape [3]") && e.contains("needs 6"), "{e}");
    let e = msg(batchnorm::batchnorm_eval(
        ctx,
        &d,
        &x,
        &g,
        &b,
        &mm,
        &nan_tensor(ctx, &[4]),
        &y,
    ));
    assert!(e.contains("moving_var"), "{e}");
    // Aliasing an output with an input.
    let e = train(&d, &x, &x, &stats);
    assert!(e.contains("y and x must be distinct"), "{e}");
    let e = msg(batchnorm::batchnorm_backward(
        ctx, &d, &x, &g, &b, &stats, &y, None, &g, &mm,
    ));
    assert!(e.contains("dgamma and gamma must be distinct"), "{e}");
    // Bad hyper-parameters and empty views.
    for (desc, needle) in [
        (BatchNormDesc { momentum: 1.5, ..d }, "momentum 1.5"),
        (BatchNormDesc { epsilon: 0.0, ..d }, "epsilon 0"),
        (
            BatchNormDesc {
                epsilon: f32::NAN,
                ..d
            },
            "epsilon NaN",
        ),
        (BatchNormDesc { n: 0, ..d }, "empty"),
    ] {
        let e = train(&desc, &x, &y, &stats);
        assert!(e.contains(needle), "{needle}: {e}");
    }
}
