//! Elementwise kernels against `wgml::reference::elementwise`.

use wgml::kernels::elementwise::{self, GatedUnit};
use wgml::kernels::matmul::Activation;
use wgml::{DType, Error, Tensor, reference};

use crate::common::*;

const ACTS: [Activation; 4] = [
    Activation::Identity,
    Activation::Relu,
    Activation::Sigmoid,
    Activation::Tanh,
];

/// 1, primes, non-multiples of the workgroup (256), and one large case.
const SIZES: [usize; 6] = [1, 7, 257, 1000, 4099, (1 << 20) + 3];

#[test]
fn fill_writes_every_element_including_folded_grids() {
    let (_g, ctx) = gpu();
    // 1, a prime, a non-multiple of the workgroup, and more than 65,535 workgroups.
    for n in [1usize, 7, 257, 1000, 65_535 * 256 + 3] {
        let y = nan_tensor(ctx, &[n]);
        let d = elementwise::fill(ctx, &y, 2.5).unwrap();
        ctx.run(&[&d]).unwrap();
        let mut want = vec![0.0; n];
        reference::elementwise::fill(&mut want, 2.5);
        assert_close(&format!("fill n={n}"), &y.to_f32(ctx).unwrap(), &want, 0.0, 0.0);
    }
}

/// Inputs in [-6, 6] plus a few extremes at the front.
fn act_inputs(seed: u64, n: usize) -> Vec<f32> {
    let mut x = uniform(&mut rng(seed), n, -6.0, 6.0);
    let extremes = [1e4f32, -1e4, 0.0, 20.0, -20.0, 1e-3, -1e-3];
    for (v, e) in x.iter_mut().zip(extremes) {
        *v = e;
    }
    x
}

#[test]
fn activation_forward_matches_reference() {
    let (_g, ctx) = gpu();
    for act in ACTS {
        for (k, &n) in SIZES.iter().enumerate() {
            let x = act_inputs(100 + k as u64, n);
            let xt = Tensor::from_f32(ctx, &x, &[n]).unwrap();
            let y = nan_tensor(ctx, &[n]);
            ctx.run(&[&elementwise::activation_forward(ctx, act, &xt, &y).unwrap()])
                .unwrap();
            let mut want = vec![0.0; n];
            reference::elementwise::activation_forward(act, &x, &mut want);
            let got = y.to_f32(ctx).unwrap();
            assert!(
                got.iter().all(|v| v.is_finite()),
                "{act:?} n={n}: non-finite output"
            );
            assert_close(&format!("{act:?} forward n={n}"), &got, &want, 1e-6, 1e-5);
        }
    }
}

#[test]
fn activation_forward_in_place() {
    let (_g, ctx) = gpu();
    for act in ACTS {
        let n = 1031;
        let x = act_inputs(7, n);
        let t = Tensor::from_f32(ctx, &x, &[n]).unwrap();
        ctx.run(&[&elementwise::activation_forward(ctx, act, &t, &t).unwrap()])
            .unwrap();
        let mut want = vec![0.0; n];
        reference::elementwise::activation_forward(act, &x, &mut want);
        assert_close(
            &format!("{act:?} in place"),
            &t.to_f32(ctx).unwrap(),
            &want,
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn activation_extremes_are_exact() {
    let (_g, ctx) = gpu();
    let x = [1e4f32, -1e4, 100.0, -100.0, 0.0];
    let xt = Tensor::from_f32(ctx, &x, &[5]).unwrap();
    let y = nan_tensor(ctx, &[5]);
    let check = |act, want: [f32; 5]| {
        ctx.run(&[&elementwise::activation_forward(ctx, act, &xt, &y).unwrap()])
            .unwrap();
        assert_close(
            &format!("{act:?} extremes"),
            &y.to_f32(ctx).unwrap(),
            &want,
            0.0,
            0.0,
        );
    };
    check(Activation::Sigmoid, [1.0, 0.0, 1.0, 0.0, 0.5]);
    check(Activation::Tanh, [1.0, -1.0, 1.0, -1.0, 0.0]);
    check(Activation::Relu, [1e4, 0.0, 100.0, 0.0, 0.0]);
}

#[test]
fn activation_backward_matches_reference_in_every_aliasing() {
    let (_g, ctx) = gpu();
    for act in ACTS {
        for (k, &n) in SIZES.iter().enumerate() {
            let x = act_inputs(200 + k as u64, n);
            let mut yv = vec![0.0; n];
            reference::elementwise::activation_forward(act, &x, &mut yv);
            let dy = uniform(&mut rng(300 + k as u64), n, -2.0, 2.0);
            let mut want = vec![0.0; n];
            reference::elementwise::activation_backward(act, &yv, &dy, &mut want);

            let yt = Tensor::from_f32(ctx, &yv, &[n]).unwrap();
            let dyt = Tensor::from_f32(ctx, &dy, &[n]).unwrap();
            let dx = nan_tensor(ctx, &[n]);
            ctx.run(&[&elementwise::activation_backward(ctx, act, &yt, &dyt, &dx).unwrap()])
                .unwrap();
            let what = format!("{act:?} backward n={n}");
            assert_close(&what, &dx.to_f32(ctx).unwrap(), &want, 1e-6, 1e-5);

            // dx overwrites dy.
            ctx.run(&[&elementwise::activation_backward(ctx, act, &yt, &dyt, &dyt).unwrap()])
                .unwrap();
            assert_close(
                &format!("{what} (dx = dy)"),
                &dyt.to_f32(ctx).unwrap(),
                &want,
                1e-6,
                1e-5,
            );

            // dx overwrites the forward output.
            let dyt = Tensor::from_f32(ctx, &dy, &[n]).unwrap();
            ctx.run(&[&elementwise::activation_backward(ctx, act, &yt, &dyt, &yt).unwrap()])
                .unwrap();
            assert_close(
                &format!("{what} (dx = y)"),
                &yt.to_f32(ctx).unwrap(),
                &want,
                1e-6,
                1e-5,
            );
        }
    }
}

#[test]
fn activation_backward_matches_finite_differences() {
    let (_g, ctx) = gpu();
    let n = 97;
    for act in ACTS {
        // Keep clear of relu's kink at 0 so the central difference is exact.
        let x: Vec<f32> = uniform(&mut rng(11), n, -3.0, 3.0)
            .into_iter()
            .map(|v| if v.abs() < 0.05 { v + 0.1 } else { v })
            .collect();
        let w = uniform(&mut rng(12), n, -1.0, 1.0);
        let mut yv = vec![0.0; n];
        reference::elementwise::activation_forward(act, &x, &mut yv);
        let yt = Tensor::from_f32(ctx, &yv, &[n]).unwrap();
        let dyt = Tensor::from_f32(ctx, &w, &[n]).unwrap();
        let dx = nan_tensor(ctx, &[n]);
        ctx.run(&[&elementwise::activation_backward(ctx, act, &yt, &dyt, &dx).unwrap()])
            .unwrap();
        // L(x) = sum_i w_i act(x_i)
        let fd = finite_diff(&x, 1e-3, |x| {
            x.iter()
                .zip(&w)
                .map(|(&v, &wi)| wi as f64 * reference::elementwise::activate(act, v) as f64)
                .sum()
        });
        assert_close(
            &format!("{act:?} backward vs finite differences"),
            &dx.to_f32(ctx).unwrap(),
            &fd,
            // Central differences of f32 activations: their rounding (~6e-8)
            // divided by 2·eps = 2e-3 dominates (worst measured 2e-5 on 0.15).
            1e-4,
            5e-4,
        );
    }
}

#[test]
fn add_mul_scale_axpy_match_reference() {
    let (_g, ctx) = gpu();
    for (k, &n) in SIZES.iter().enumerate() {
        let a = uniform(&mut rng(400 + k as u64), n, -3.0, 3.0);
        let b = uniform(&mut rng(500 + k as u64), n, -3.0, 3.0);
        let at = Tensor::from_f32(ctx, &a, &[n]).unwrap();
        let bt = Tensor::from_f32(ctx, &b, &[n]).unwrap();
        let mut want = vec![0.0; n];

        let out = nan_tensor(ctx, &[n]);
        ctx.run(&[&elementwise::add(ctx, &at, &bt, &out).unwrap()])
            .unwrap();
        reference::elementwise::add(&a, &b, &mut want);
        assert_close(&format!("add n={n}"), &out.to_f32(ctx).unwrap(), &want, 0.0, 0.0);

        let out = nan_tensor(ctx, &[n]);
        ctx.run(&[&elementwise::mul(ctx, &at, &bt, &out).unwrap()])
            .unwrap();
        reference::elementwise::mul(&a, &b, &mut want);
        assert_close(&format!("mul n={n}"), &out.to_f32(ctx).unwrap(), &want, 0.0, 0.0);

        let out = nan_tensor(ctx, &[n]);
        ctx.run(&[&elementwise::scale(ctx, &at, -0.75, &out).unwrap()])
            .unwrap();
        reference::elementwise::scale(&a, -0.75, &mut want);
        assert_close(
            &format!("scale n={n}"),
            &out.to_f32(ctx).unwrap(),
            &want,
            0.0,
            0.0,
        );

        let yt = Tensor::from_f32(ctx, &b, &[n]).unwrap();
        ctx.run(&[&elementwise::axpy(ctx, 0.3, &at, &yt).unwrap()])
            .unwrap();
        want.copy_from_slice(&b);
        reference::elementwise::axpy(0.3, &a, &mut want);
        assert_close(
            &format!("axpy n={n}"),
            &yt.to_f32(ctx).unwrap(),
            &want,
            1e-6,
            1e-6,
        );
    }
}

#[test]
fn binary_ops_with_aliased_output() {
    let (_g, ctx) = gpu();
    let n = 523;
    let a = uniform(&mut rng(1), n, -3.0, 3.0);
    let b = uniform(&mut rng(2), n, -3.0, 3.0);
    let fresh = |v: &[f32]| Tensor::from_f32(ctx, v, &[n]).unwrap();
    let mut want = vec![0.0; n];

    // out = a
    let (at, bt) = (fresh(&a), fresh(&b));
    ctx.run(&[&elementwise::add(ctx, &at, &bt, &at).unwrap()])
        .unwrap();
    reference::elementwise::add(&a, &b, &mut want);
    assert_close("add out=a", &at.to_f32(ctx).unwrap(), &want, 0.0, 0.0);
    // out = b
    let (at, bt) = (fresh(&a), fresh(&b));
    ctx.run(&[&elementwise::add(ctx, &at, &bt, &bt).unwrap()])
        .unwrap();
    assert_close("add out=b", &bt.to_f32(ctx).unwrap(), &want, 0.0, 0.0);
    // out = a = b
    let at = fresh(&a);
    ctx.run(&[&elementwise::add(ctx, &at, &at, &at).unwrap()])
        .unwrap();
    reference::elementwise::add(&a, &a, &mut want);
    assert_close("add out=a=b", &at.to_f32(ctx).unwrap(), &want, 0.0, 0.0);

    let (at, bt) = (fresh(&a), fresh(&b));
    ctx.run(&[&elementwise::mul(ctx, &at, &bt, &at).unwrap()])
        .unwrap();
    reference::elementwise::mul(&a, &b, &mut want);
    assert_close("mul out=a", &at.to_f32(ctx).unwrap(), &want, 0.0, 0.0);
    ctx.run(&[&elementwise::mul(ctx, &bt, &bt, &bt).unwrap()])
        .unwrap();
    reference::elementwise::mul(&b, &b, &mut want);
    assert_close("mul out=a=b", &bt.to_f32(ctx).unwrap(), &want, 0.0, 0.0);

    let at = fresh(&a);
    ctx.run(&[&elementwise::scale(ctx, &at, 3.0, &at).unwrap()])
        .unwrap();
    reference::elementwise::scale(&a, 3.0, &mut want);
    assert_close("scale in place", &at.to_f32(ctx).unwrap(), &want, 0.0, 0.0);

    let at = fresh(&a);
    ctx.run(&[&elementwise::axpy(ctx, 0.5, &at, &at).unwrap()])
        .unwrap();
    want.copy_from_slice(&a);
    reference::elementwise::axpy(0.5, &a, &mut want);
    assert_close("axpy x=y", &at.to_f32(ctx).unwrap(), &want, 1e-6, 1e-6);
}

#[test]
fn bias_add_rows_matches_reference() {
    let (_g, ctx) = gpu();
    let shapes: [&[usize]; 6] = [&[1, 1], &[1, 7], &[13, 1], &[31, 17], &[3, 5, 257], &[509, 1031]];
    for act in ACTS {
        for (k, &shape) in shapes.iter().enumerate() {
            let c = *shape.last().unwrap();
            let n: usize = shape.iter().product();
            let x = uniform(&mut rng(600 + k as u64), n, -3.0, 3.0);
            let bias = uniform(&mut rng(700 + k as u64), c, -1.0, 1.0);
            let xt = Tensor::from_f32(ctx, &x, shape).unwrap();
            let bt = Tensor::from_f32(ctx, &bias, &[c]).unwrap();
            let y = nan_tensor(ctx, shape);
            ctx.run(&[&elementwise::bias_add_rows(ctx, &xt, &bt, act, &y).unwrap()])
                .unwrap();
            let mut want = vec![0.0; n];
            reference::elementwise::bias_add_rows(&x, &bias, act, &mut want);
            let what = format!("bias_add_rows {act:?} {shape:?}");
            assert_close(&what, &y.to_f32(ctx).unwrap(), &want, 1e-6, 1e-5);
            // In place.
            ctx.run(&[&elementwise::bias_add_rows(ctx, &xt, &bt, act, &xt).unwrap()])
                .unwrap();
            assert_close(
                &format!("{what} in place"),
                &xt.to_f32(ctx).unwrap(),
                &want,
                1e-6,
                1e-5,
            );
        }
    }
}

#[test]
fn bias_add_channels_matches_reference() {
    let (_g, ctx) = gpu();
    let shapes: [&[usize]; 6] = [
        &[1, 1],
        &[5, 3],
        &[1, 1, 1, 1],
        &[2, 3, 7, 11],
        &[3, 17, 13],
        &[64, 16, 28, 28],
    ];
    for act in ACTS {
        for (k, &shape) in shapes.iter().enumerate() {
            let c = shape[1];
            let s: usize = shape[2..].iter().product();
            let n: usize = shape.iter().product();
            let x = uniform(&mut rng(800 + k as u64), n, -3.0, 3.0);
            let bias = uniform(&mut rng(900 + k as u64), c, -1.0, 1.0);
            let xt = Tensor::from_f32(ctx, &x, shape).unwrap();
            let bt = Tensor::from_f32(ctx, &bias, &[c]).unwrap();
            let y = nan_tensor(ctx, shape);
            ctx.run(&[&elementwise::bias_add_channels(ctx, &xt, &bt, act, &y).unwrap()])
                .unwrap();
            let mut want = vec![0.0; n];
            reference::elementwise::bias_add_channels(&x, &bias, s, act, &mut want);
            let what = format!("bias_add_channels {act:?} {shape:?}");
            assert_close(&what, &y.to_f32(ctx).unwrap(), &want, 1e-6, 1e-5);
            ctx.run(&[&elementwise::bias_add_channels(ctx, &xt, &bt, act, &xt).unwrap()])
                .unwrap();
            assert_close(
                &format!("{what} in place"),
                &xt.to_f32(ctx).unwrap(),
                &want,
                1e-6,
                1e-5,
            );
        }
    }
}

#[test]
fn zero_sized_elementwise_ops_are_no_ops() {
    let (_g, ctx) = gpu();
    let a = Tensor::zeros(ctx, &[0, 4], DType::F32).unwrap();
    let b = Tensor::zeros(ctx, &[0, 4], DType::F32).unwrap();
    let out = Tensor::zeros(ctx, &[0, 4], DType::F32).unwrap();
    let bias = Tensor::zeros(ctx, &[4], DType::F32).unwrap();
    let ds = [
        elementwise::add(ctx, &a, &b, &out).unwrap(),
        elementwise::activation_forward(ctx, Activation::Relu, &a, &out).unwrap(),
        elementwise::bias_add_rows(ctx, &a, &bias, Activation::Tanh, &out).unwrap(),
    ];
    ctx.run(&ds.iter().collect::<Vec<_>>()).unwrap();
}

fn message(e: Error) -> String {
    e.to_string()
}

#[test]
fn elementwise_rejects_shape_mismatch() {
    let (_g, ctx) = gpu();
    let a = Tensor::zeros(ctx, &[3, 4], DType::F32).unwrap();
    let b = Tensor::zeros(ctx, &[4, 3], DType::F32).unwrap();
    let out = Tensor::zeros(ctx, &[3, 4], DType::F32).unwrap();
    let e = message(elementwise::add(ctx, &a, &b, &out).unwrap_err());
    assert!(
        e.contains("add") && e.contains("[3, 4]") && e.contains("[4, 3]"),
        "{e}"
    );
    let e = message(elementwise::mul(ctx, &a, &a, &b).unwrap_err());
    assert!(e.contains("mul") && e.contains("[4, 3]"), "{e}");
    let e = message(elementwise::axpy(ctx, 1.0, &a, &b).unwrap_err());
    assert!(e.contains("axpy"), "{e}");
    let e = message(elementwise::activation_backward(ctx, Activation::Relu, &a, &b, &out).unwrap_err());
    assert!(e.contains("activation_backward") && e.contains("dy"), "{e}");
}

#[test]
fn bias_add_rejects_wrong_bias_length_and_rank() {
    let (_g, ctx) = gpu();
    let x = Tensor::zeros(ctx, &[2, 3, 5], DType::F32).unwrap();
    let y = Tensor::zeros(ctx, &[2, 3, 5], DType::F32).unwrap();
    let bias3 = Tensor::zeros(ctx, &[3], DType::F32).unwrap();
    let bias5 = Tensor::zeros(ctx, &[5], DType::F32).unwrap();
    let e = message(elementwise::bias_add_rows(ctx, &x, &bias3, Activation::Identity, &y).unwrap_err());
    assert!(
        e.contains("bias_add_rows") && e.contains("[2, 3, 5]") && e.contains("[3]"),
        "{e}"
    );
    let e = message(elementwise::bias_add_channels(ctx, &x, &bias5, Activation::Identity, &y).unwrap_err());
    assert!(e.contains("bias_add_channels") && e.contains("[5]"), "{e}");
    let flat = Tensor::zeros(ctx, &[3], DType::F32).unwrap();
    let e =
        message(elementwise::bias_add_channels(ctx, &flat, &bias3, Activation::Identity, &flat).unwrap_err());
    assert!(e.contains("[N, C, ...]"), "{e}");
    let bias2d = Tensor::zeros(ctx, &[1, 5], DType::F32).unwrap();
    let e = message(elementwise::bias_add_rows(ctx, &x, &bias2d, Activation::Identity, &y).unwrap_err());
    assert!(e.contains("1-D"), "{e}");
}

#[test]
fn elementwise_rejects_wrong_dtype_and_bad_aliasing() {
    let (_g, ctx) = gpu();
    let x = Tensor::zeros(ctx, &[8], DType::U32).unwrap();
    let y = Tensor::zeros(ctx, &[8], DType::F32).unwrap();
    let e = elementwise::activation_forward(ctx, Activation::Relu, &x, &y).unwrap_err();
    assert!(matches!(e, Error::DType { what: "x", .. }), "{e}");
    let e = elementwise::fill(ctx, &x, 1.0).unwrap_err();
    assert!(matches!(e, Error::DType { .. }), "{e}");
    let e = message(elementwise::activation_backward(ctx, Activation::Tanh, &y, &y, &y).unwrap_err());
    assert!(e.contains("not both"), "{e}");
    let b = Tensor::zeros(ctx, &[1, 8], DType::F32).unwrap();
    let bias = b.reshape(&[8]).unwrap();
    let e = message(elementwise::bias_add_rows(ctx, &b, &bias, Activation::Identity, &b).unwrap_err());
    assert!(e.contains("shares a buffer with the bias"), "{e}");
}

/// `exp_scale` and its backward `mul_scale` against their twins, and the backward
/// against central differences of the twin's forward (in f64).
#[test]
fn exp_scale_and_its_backward_match_reference() {
    let (_g, ctx) = gpu();
    for (k, &n) in SIZES.iter().enumerate() {
        let x = uniform(&mut rng(600 + k as u64), n, -6.0, 6.0);
        let dy = uniform(&mut rng(700 + k as u64), n, -1.0, 1.0);
        let xt = Tensor::from_f32(ctx, &x, &[n]).unwrap();
        let y = nan_tensor(ctx, &[n]);
        ctx.run(&[&elementwise::exp_scale(ctx, &xt, 0.5, &y).unwrap()])
            .unwrap();
        let mut want = vec![0.0; n];
        reference::elementwise::exp_scale(&x, 0.5, &mut want);
        let got = y.to_f32(ctx).unwrap();
        assert_close(&format!("exp_scale n={n}"), &got, &want, 0.0, 2e-6);
        let dyt = Tensor::from_f32(ctx, &dy, &[n]).unwrap();
        let dx = nan_tensor(ctx, &[n]);
        ctx.run(&[&elementwise::mul_scale(ctx, 0.5, &y, &dyt, &dx).unwrap()])
            .unwrap();
        let mut want_dx = vec![0.0; n];
        reference::elementwise::mul_scale(0.5, &got, &dy, &mut want_dx);
        assert_close(
            &format!("mul_scale n={n}"),
            &dx.to_f32(ctx).unwrap(),
            &want_dx,
            0.0,
            1e-6,
        );
    }
    // d/dx Σ dy · exp(x/2) = dy · exp(x/2) / 2, against f64 central differences.
    let x = uniform(&mut rng(800), 9, -3.0, 3.0);
    let dy = uniform(&mut rng(801), 9, -1.0, 1.0);
    let mut y = vec![0.0; 9];
    reference::elementwise::exp_scale(&x, 0.5, &mut y);
    let mut dx = vec![0.0; 9];
    reference::elementwise::mul_scale(0.5, &y, &dy, &mut dx);
    let fd: Vec<f32> = (0..9)
        .map(|i| {
            let f = |v: f64| {
                (0..9)
                    .map(|j| dy[j] as f64 * (0.5 * if j == i { v } else { x[j] as f64 }).exp())
                    .sum::<f64>()
            };
            ((f(x[i] as f64 + 1e-6) - f(x[i] as f64 - 1e-6)) / 2e-6) as f32
        })
        .collect();
    assert_close("exp_scale backward vs finite differences", &dx, &fd, 1e-6, 1e-5);
    // Aliased buffers are refused.
    let t = Tensor::from_f32(ctx, &x, &[9]).unwrap();
    assert!(elementwise::exp_scale(ctx, &t, 0.5, &t).is_err());
    assert!(elementwise::mul_scale(ctx, 0.5, &t, &dx_tensor(ctx, &dy), &t).is_err());
}

fn dx_tensor(ctx: &wgml::Context, v: &[f32]) -> Tensor {
    Tensor::from_f32(ctx, v, &[v.len()]).unwrap()
}

/// `log`, `div` and `repeat_scale` against their twins on every size, and log's
/// backward (`div` of the gradient by the input) against f64 central differences.
#[test]
fn log_div_and_repeat_scale_match_reference() {
    let (_g, ctx) = gpu();
    for (k, &n) in SIZES.iter().enumerate() {
        let x = uniform(&mut rng(900 + k as u64), n, 0.05, 5.0);
        let dy = uniform(&mut rng(950 + k as u64), n, -1.0, 1.0);
        let xt = Tensor::from_f32(ctx, &x, &[n]).unwrap();
        let dyt = Tensor::from_f32(ctx, &dy, &[n]).unwrap();
        let y = nan_tensor(ctx, &[n]);
        ctx.run(&[&elementwise::log(ctx, &xt, &y).unwrap()]).unwrap();
        let mut want = vec![0.0; n];
        reference::elementwise::log(&x, &mut want);
        assert_close(&format!("log n={n}"), &y.to_f32(ctx).unwrap(), &want, 2e-6, 2e-6);
        let q = nan_tensor(ctx, &[n]);
        ctx.run(&[&elementwise::div(ctx, &dyt, &xt, &q).unwrap()])
            .unwrap();
        let mut want = vec![0.0; n];
        reference::elementwise::div(&dy, &x, &mut want);
        assert_close(&format!("div n={n}"), &q.to_f32(ctx).unwrap(), &want, 0.0, 1e-6);
        // Within a binding's size on every adapter (the largest n repeats once).
        for times in [1, 3, 784].into_iter().filter(|t| n * t <= 1 << 21) {
            let r = nan_tensor(ctx, &[n * times]);
            ctx.run(&[&elementwise::repeat_scale(ctx, &dyt, times, -0.25, &r).unwrap()])
                .unwrap();
            let mut want = vec![0.0; n * times];
            reference::elementwise::repeat_scale(&dy, times, -0.25, &mut want);
            assert_eq!(r.to_f32(ctx).unwrap(), want, "repeat_scale n={n} times={times}");
        }
    }
    // d/dx Σ dy · ln(x) = dy / x.
    let x = uniform(&mut rng(990), 9, 0.2, 3.0);
    let dy = uniform(&mut rng(991), 9, -1.0, 1.0);
    let mut dx = vec![0.0; 9];
    reference::elementwise::div(&dy, &x, &mut dx);
    for i in 0..9 {
        let h = 1e-3f64;
        let f = |v: f64| dy[i] as f64 * v.ln();
        let fd = (f(x[i] as f64 + h) - f(x[i] as f64 - h)) / (2.0 * h);
        assert!((fd - dx[i] as f64).abs() < 1e-5, "{i}: {fd} vs {}", dx[i]);
    }
    let bad = Tensor::from_f32(ctx, &[1.0; 4], &[4]).unwrap();
    let out = nan_tensor(ctx, &[5]);
    let e = elementwise::repeat_scale(ctx, &bad, 2, 1.0, &out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not 4 × 2"), "{e}");
}

/// GELU in both forms and SiLU, and their gradients, equal their twins (f64
/// `erfc`, f64 `exp`) over ±12, large negative inputs included (where `x·Φ(x)`
/// is tiny and only the erfc form, and for tanh the sigmoid form, keep
/// relative precision); the twins' gradients equal central differences; the
/// tanh form gives PyTorch's `gelu(x, approximate='tanh')` and SiLU `x /
/// (1 + e^-x)` at known points.
#[test]
fn gated_units_and_their_gradients_match_their_twins() {
    let (_g, ctx) = gpu();
    let mut x = uniform(&mut rng(61), 10_007, -12.0, 12.0);
    x.extend([
        0.0, -0.0, 1e-6, -1e-6, 0.5, -0.5, 3.0, -3.0, -8.0, -12.0, 12.0, 1.0, 2.5,
    ]);
    let dy = uniform(&mut rng(62), x.len(), -1.0, 1.0);
    let (xt, dyt) = (
        Tensor::from_f32(ctx, &x, &[x.len()]).unwrap(),
        Tensor::from_f32(ctx, &dy, &[x.len()]).unwrap(),
    );
    let at = |v: f32| x.iter().position(|&u| u == v).unwrap();
    for form in [GatedUnit::Gelu, GatedUnit::GeluTanh, GatedUnit::Silu] {
        let (y, dx) = (nan_tensor(ctx, &[x.len()]), nan_tensor(ctx, &[x.len()]));
        ctx.run_all(&[
            elementwise::gated_unit(ctx, &xt, &y, form).unwrap(),
            elementwise::gated_unit_backward(ctx, &dyt, &xt, &dx, form).unwrap(),
        ])
        .unwrap();
        let (mut want_y, mut want_dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        reference::elementwise::gated_unit(&x, &mut want_y, form);
        reference::elementwise::gated_unit_backward(&dy, &x, &mut want_dx, form);
        let got_y = y.to_f32(ctx).unwrap();
        assert_close(&format!("gelu {form:?}"), &got_y, &want_y, 1e-7, 1e-5);
        assert_close(
            &format!("gelu {form:?} backward"),
            &dx.to_f32(ctx).unwrap(),
            &want_dx,
            1e-7,
            1e-5,
        );
        // Relative precision where the values are tiny: x = -8 gives -5.0e-15
        // (exact) and -3.1e-21 (tanh); SiLU's -2.7e-3 is not tiny.
        let i = at(-8.0);
        assert!(
            ((got_y[i] - want_y[i]) / want_y[i]).abs() < 1e-4,
            "{form:?}: {} vs {}",
            got_y[i],
            want_y[i]
        );
        let tiny = match form {
            GatedUnit::Gelu => -5.0e-15,
            GatedUnit::GeluTanh => -3.1e-21,
            GatedUnit::Silu => -2.682_801e-3,
        };
        assert!((want_y[i] / tiny - 1.0).abs() < 0.05, "{form:?}: {}", want_y[i]);

        let xs: Vec<f32> = uniform(&mut rng(63), 40, -4.0, 4.0);
        let w = uniform(&mut rng(64), 40, -1.0, 1.0);
        let mut grad = vec![0.0; 40];
        reference::elementwise::gated_unit_backward(&w, &xs, &mut grad, form);
        let numeric = finite_diff(&xs, 1e-3, |xs| {
            let mut y = vec![0.0; xs.len()];
            reference::elementwise::gated_unit(xs, &mut y, form);
            y.iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum()
        });
        assert_close(
            &format!("gelu {form:?} twin vs differences"),
            &grad,
            &numeric,
            1e-3,
            1e-3,
        );
        // tanh GELU: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) in f64; SiLU:
        // x / (1 + e^-x).
        let known = match form {
            GatedUnit::Gelu => None,
            GatedUnit::GeluTanh => Some([
                (1.0, 0.8411919906082768),
                (-3.0, -0.0036373920817729943),
                (2.5, 2.484915733910001),
            ]),
            GatedUnit::Silu => Some([
                (1.0, 0.7310585786300049),
                (-3.0, -0.14227761953270035),
                (2.5, 2.3103545499468914),
            ]),
        };
        if let Some(known) = known {
            for (v, want) in known {
                assert!(
                    (got_y[at(v)] as f64 - want).abs() < 1e-6 * want.abs().max(1e-3),
                    "{v}: {}",
                    got_y[at(v)]
                );
            }
        }
    }
}
