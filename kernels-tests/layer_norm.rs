//! Layer and RMS normalization kernels against `wgml::reference::layer_norm`:
//! rows of 1 to 5,000 values across every workgroup size, offsets far from zero
//! (the two-pass variance), the twins' gradients against central differences,
//! bad shapes refused.

use wgml::kernels::layer_norm::{
    layer_norm_backward, layer_norm_forward, rms_norm_backward, rms_norm_forward,
};
use wgml::kernels::reduce::sum_axis;
use wgml::{Tensor, reference};

use crate::common::*;

/// (rows, cols): one value per row, workgroup-size edges, long rows, many rows
/// (short rows share workgroups: partly filled last ones).
const SHAPES: [(usize, usize); 9] = [
    (1, 1),
    (3, 7),
    (5, 32),
    (4, 33),
    (6, 257),
    (2, 5000),
    (70_000, 3),
    (9, 64),
    (333, 28),
];

#[test]
fn layer_norm_forward_and_backward_match_their_twins() {
    let (_g, ctx) = gpu();
    // CPU adapters give each row one invocation; GPUs several lanes per row.
    let _restore = PlanAs(ctx);
    for class in cpu_and_gpu_rules(ctx) {
        ctx.set_adapter_class(class);
        for (k, &(rows, cols)) in SHAPES.iter().enumerate() {
            let mut r = rng(k as u64);
            // Rows centred far from 0 with a small spread (a one-pass variance would lose
            // it), except rows too short for their spread to be well conditioned in f32.
            let offset = if cols >= 7 { 100.0 } else { 0.0 };
            let x: Vec<f32> = uniform(&mut r, rows * cols, -1.0, 1.0)
                .iter()
                .map(|v| v + offset)
                .collect();
            let gamma = uniform(&mut r, cols, 0.5, 1.5);
            let beta = uniform(&mut r, cols, -1.0, 1.0);
            let dy = uniform(&mut r, rows * cols, -1.0, 1.0);
            let eps = 1e-3;
            let t = |v: &[f32], s: &[usize]| Tensor::from_f32(ctx, v, s).unwrap();
            let (xt, gt, bt, dyt) = (
                t(&x, &[rows, cols]),
                t(&gamma, &[cols]),
                t(&beta, &[cols]),
                t(&dy, &[rows, cols]),
            );
            let y = nan_tensor(ctx, &[rows, cols]);
            let stats = nan_tensor(ctx, &[rows, 2]);
            let dx = nan_tensor(ctx, &[rows, cols]);
            let dyx = nan_tensor(ctx, &[rows, cols]);
            let (dg, db) = (nan_tensor(ctx, &[cols]), nan_tensor(ctx, &[cols]));
            ctx.run(&[
                &layer_norm_forward(ctx, &xt, &gt, &bt, eps, &y, &stats).unwrap(),
                &layer_norm_backward(ctx, &xt, &gt, &stats, eps, &dyt, &dx, &dyx).unwrap(),
                &sum_axis(ctx, &dyx, 1, rows, cols, &dg).unwrap(),
                &sum_axis(ctx, &dyt, 1, rows, cols, &db).unwrap(),
            ])
            .unwrap();
            let mut want_y = vec![0.0; rows * cols];
            let mut want_stats = vec![0.0; rows * 2];
            reference::layer_norm::layer_norm_forward(&x, &gamma, &beta, eps, &mut want_y, &mut want_stats);
            let mut want_dx = vec![0.0; rows * cols];
            let (mut want_dg, mut want_db) = (vec![0.0; cols], vec![0.0; cols]);
            reference::layer_norm::layer_norm_backward(
                &x,
                &gamma,
                eps,
                &dy,
                &mut want_dx,
                &mut want_dg,
                &mut want_db,
            );
            let what = format!("{class:?} {rows}x{cols}");
            assert_close(&format!("{what} y"), &y.to_f32(ctx).unwrap(), &want_y, 1e-4, 1e-4);
            assert_close(
                &format!("{what} stats"),
                &stats.to_f32(ctx).unwrap(),
                &want_stats,
                1e-4,
                1e-4,
            );
            assert_close(
                &format!("{what} dx"),
                &dx.to_f32(ctx).unwrap(),
                &want_dx,
                1e-4,
                1e-3,
            );
            let sum_tol = 1e-4 * (rows as f32).sqrt();
            assert_close(
                &format!("{what} dgamma"),
                &dg.to_f32(ctx).unwrap(),
                &want_dg,
                sum_tol,
                1e-4,
            );
            assert_close(
                &format!("{what} dbeta"),
                &db.to_f32(ctx).unwrap(),
                &want_db,
                sum_tol,
                1e-4,
            );
        }
    }
}

/// RMS normalization (uncentred: rows far from zero keep their offset) on the
/// same shapes, both adapter classes.
#[test]
fn rms_norm_forward_and_backward_match_their_twins() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    for class in cpu_and_gpu_rules(ctx) {
        ctx.set_adapter_class(class);
        for (k, &(rows, cols)) in SHAPES.iter().enumerate() {
            let mut r = rng(100 + k as u64);
            let offset = if k % 2 == 0 { 3.0 } else { 0.0 };
            let x: Vec<f32> = uniform(&mut r, rows * cols, -1.0, 1.0)
                .iter()
                .map(|v| v + offset)
                .collect();
            let gamma = uniform(&mut r, cols, 0.5, 1.5);
            let dy = uniform(&mut r, rows * cols, -1.0, 1.0);
            let eps = 1e-6;
            let t = |v: &[f32], s: &[usize]| Tensor::from_f32(ctx, v, s).unwrap();
            let (xt, gt, dyt) = (t(&x, &[rows, cols]), t(&gamma, &[cols]), t(&dy, &[rows, cols]));
            let (y, dx, dyx) = (
                nan_tensor(ctx, &[rows, cols]),
                nan_tensor(ctx, &[rows, cols]),
                nan_tensor(ctx, &[rows, cols]),
            );
            let (stats, dg) = (nan_tensor(ctx, &[rows, 2]), nan_tensor(ctx, &[cols]));
            ctx.run(&[
                &rms_norm_forward(ctx, &xt, &gt, eps, &y, &stats).unwrap(),
                &rms_norm_backward(ctx, &xt, &gt, &stats, eps, &dyt, &dx, &dyx).unwrap(),
                &sum_axis(ctx, &dyx, 1, rows, cols, &dg).unwrap(),
            ])
            .unwrap();
            let (mut want_y, mut want_stats) = (vec![0.0; rows * cols], vec![0.0; rows * 2]);
            reference::layer_norm::rms_norm_forward(&x, &gamma, eps, &mut want_y, &mut want_stats);
            let (mut want_dx, mut want_dg) = (vec![0.0; rows * cols], vec![0.0; cols]);
            reference::layer_norm::rms_norm_backward(&x, &gamma, eps, &dy, &mut want_dx, &mut want_dg);
            let what = format!("{class:?} {rows}x{cols} rms");
            assert_close(&format!("{what} y"), &y.to_f32(ctx).unwrap(), &want_y, 1e-5, 1e-5);
            assert_close(
                &format!("{what} stats"),
                &stats.to_f32(ctx).unwrap(),
                &want_stats,
                1e-5,
                1e-5,
            );
            assert_close(
                &format!("{what} dx"),
                &dx.to_f32(ctx).unwrap(),
                &want_dx,
                1e-5,
                1e-4,
            );
            let sum_tol = 1e-4 * (rows as f32).sqrt();
            assert_close(
                &format!("{what} dgamma"),
                &dg.to_f32(ctx).unwrap(),
                &want_dg,
                sum_tol,
                1e-4,
            );
        }
    }
}

#[test]
fn the_rms_norm_twin_gradient_equals_central_differences() {
    let (rows, cols) = (3, 6);
    let mut r = rng(8);
    let x = uniform(&mut r, rows * cols, -2.0, 2.0);
    let gamma = uniform(&mut r, cols, 0.5, 1.5);
    let w = uniform(&mut r, rows * cols, -1.0, 1.0);
    let eps = 1e-3;
    let loss = |x: &[f32], gamma: &[f32]| {
        let (mut y, mut st) = (vec![0.0; rows * cols], vec![0.0; rows * 2]);
        reference::layer_norm::rms_norm_forward(x, gamma, eps, &mut y, &mut st);
        y.iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
    };
    let (mut dx, mut dg) = (vec![0.0; rows * cols], vec![0.0; cols]);
    reference::layer_norm::rms_norm_backward(&x, &gamma, eps, &w, &mut dx, &mut dg);
    assert_close("dx", &dx, &finite_diff(&x, 1e-3, |v| loss(v, &gamma)), 2e-3, 2e-3);
    assert_close(
        "dgamma",
        &dg,
        &finite_diff(&gamma, 1e-3, |v| loss(&x, v)),
        2e-3,
        2e-3,
    );
    // x/rms(x) by hand: the row [3, 4] has rms √12.5.
    let (mut y, mut st) = (vec![0.0; 2], vec![0.0; 2]);
    reference::layer_norm::rms_norm_forward(&[3.0, 4.0], &[1.0, 2.0], 1e-12, &mut y, &mut st);
    let rms = 12.5f32.sqrt();
    assert_close("by hand", &y, &[3.0 / rms, 8.0 / rms], 1e-6, 1e-6);
}

#[test]
fn the_layer_norm_twin_gradient_equals_central_differences() {
    let (rows, cols) = (3, 6);
    let mut r = rng(7);
    let x = uniform(&mut r, rows * cols, -2.0, 2.0);
    let gamma = uniform(&mut r, cols, 0.5, 1.5);
    let beta = uniform(&mut r, cols, -1.0, 1.0);
    let w = uniform(&mut r, rows * cols, -1.0, 1.0);
    let eps = 1e-3;
    // loss = Σ w·y, so dy = w.
    let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| {
        let mut y = vec![0.0; rows * cols];
        let mut st = vec![0.0; rows * 2];
        reference::layer_norm::layer_norm_forward(x, gamma, beta, eps, &mut y, &mut st);
        y.iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
    };
    let mut dx = vec![0.0; rows * cols];
    let (mut dg, mut db) = (vec![0.0; cols], vec![0.0; cols]);
    reference::layer_norm::layer_norm_backward(&x, &gamma, eps, &w, &mut dx, &mut dg, &mut db);
    assert_close(
        "dx",
        &dx,
        &finite_diff(&x, 1e-3, |v| loss(v, &gamma, &beta)),
        2e-3,
        2e-3,
    );
    assert_close(
        "dgamma",
        &dg,
        &finite_diff(&gamma, 1e-3, |v| loss(&x, v, &beta)),
        2e-3,
        2e-3,
    );
    assert_close(
        "dbeta",
        &db,
        &finite_diff(&beta, 1e-3, |v| loss(&x, &gamma, v)),
        2e-3,
        2e-3,
    );
}

#[test]
fn layer_norm_shapes_and_aliasing_are_checked() {
    let (_g, ctx) = gpu();
    let x = nan_tensor(ctx, &[4, 5]);
    let y = nan_tensor(ctx, &[4, 5]);
    let g5 = nan_tensor(ctx, &[5]);
    let g4 = nan_tensor(ctx, &[4]);
    let st = nan_tensor(ctx, &[8]);
    let e = layer_norm_forward(ctx, &x, &g4, &g4, 1e-3, &y, &st)
        .unwrap_err()
        .to_string();
    assert!(e.contains("gamma has 4"), "{e}");
    let e = layer_norm_forward(ctx, &x, &g5, &g5, 1e-3, &y, &g5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("stats has 5 values"), "{e}");
    let e = layer_norm_forward(ctx, &x, &g5, &g5, 0.0, &y, &st)
        .unwrap_err()
        .to_string();
    assert!(e.contains("epsilon"), "{e}");
    let e = layer_norm_forward(ctx, &x, &g5, &g5, 1e-3, &x, &st)
        .unwrap_err()
        .to_string();
    assert!(e.contains("separate"), "{e}");
    // Statistics over an input, and backward's over dy.
    let x4 = nan_tensor(ctx, &[4, 2]);
    let y4 = nan_tensor(ctx, &[4, 2]);
    let e = layer_norm_forward(
        ctx,
        &x4,
        &nan_tensor(ctx, &[2]),
        &nan_tensor(ctx, &[2]),
        1e-3,
        &y4,
        &x4,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("stats shares a buffer"), "{e}");
    let (dx, dyx) = (nan_tensor(ctx, &[4, 2]), nan_tensor(ctx, &[4, 2]));
    let dy = nan_tensor(ctx, &[4, 2]);
    let g2 = nan_tensor(ctx, &[2]);
    let dy_as_stats = dy.clone();
    let e = layer_norm_backward(ctx, &x4, &g2, &dy_as_stats, 1e-3, &dy, &dx, &dyx)
        .unwrap_err()
        .to_string();
    assert!(e.contains("separate"), "{e}");
}
