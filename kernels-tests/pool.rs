//! pool kernels against `wgml::reference::pool`.

use rand::seq::SliceRandom;
use wgml::kernels::pool::{self, Pool2dDesc};
use wgml::{Context, DType, Error, Tensor, reference};

use crate::common::*;

fn desc(
    n: usize,
    c: usize,
    hw: (usize, usize),
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
) -> Pool2dDesc {
    Pool2dDesc {
        n,
        c,
        h: hw.0,
        w: hw.1,
        kh: k.0,
        kw: k.1,
        stride: s,
        padding: p,
    }
}

/// Shapes: 1s, odd and prime sizes, 1/3/32 channels, kernels 1/2/3/5 (some
/// non-square), strides 1 and 2 (overlapping windows when stride < kernel),
/// padding on and off, and Keras' MaxPool2D(2).
fn sweep() -> Vec<Pool2dDesc> {
    vec![
        desc(1, 1, (1, 1), (1, 1), (1, 1), (0, 0)),
        Pool2dDesc::square(3, 3, 27, 31, 2),
        Pool2dDesc::square(2, 32, 28, 28, 2),
        desc(3, 1, (28, 28), (3, 3), (1, 1), (1, 1)),
        desc(2, 32, (13, 17), (3, 3), (2, 2), (1, 1)),
        desc(1, 3, (27, 31), (5, 5), (2, 2), (2, 2)),
        desc(5, 3, (9, 7), (5, 5), (1, 1), (0, 0)),
        desc(2, 2, (8, 8), (2, 2), (1, 1), (0, 0)),
        desc(3, 1, (11, 6), (3, 2), (2, 1), (1, 0)),
        desc(1, 1, (5, 7), (5, 7), (1, 1), (0, 0)),
        // 2x2 windows, column stride 2, even width, overlapping rows: the pair
        // forward with the gather backward.
        desc(2, 2, (9, 8), (2, 2), (1, 2), (0, 0)),
    ]
}

/// `n` distinct values (gaps of 0.01) in random order: max pooling has no near
/// ties, so finite differences with eps < 0.005 never flip an argmax.
fn distinct(seed: u64, n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 0.01).collect();
    v.shuffle(&mut rng(seed));
    v
}

fn u32_garbage(ctx: &Context, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_u32(ctx, &vec![u32::MAX; n], shape).unwrap()
}

fn upload(ctx: &Context, data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_f32(ctx, data, shape).unwrap()
}

#[test]
fn max_pool_forward_and_backward_match_reference() {
    let (_g, ctx) = gpu();
    for (case, d) in sweep().into_iter().enumerate() {
        let ins = d.input_shape();
        let outs = d.output_shape().unwrap();
        let (nin, nout) = (ins.iter().product::<usize>(), outs.iter().product::<usize>());
        let x = uniform(&mut rng(100 + case as u64), nin, -2.0, 2.0);
        let dy = uniform(&mut rng(200 + case as u64), nout, -1.0, 1.0);
        let (xt, dyt) = (upload(ctx, &x, &ins), upload(ctx, &dy, &outs));
        let (yt, it, dxt) = (
            nan_tensor(ctx, &outs),
            u32_garbage(ctx, &outs),
            nan_tensor(ctx, &ins),
        );
        let f = pool::max_pool2d_forward(ctx, &d, &xt, &yt, &it).unwrap();
        let b = pool::max_pool2d_backward(ctx, &d, &dyt, &it, &dxt).unwrap();
        let mut all = vec![&f];
        all.extend(b.iter());
        ctx.run(&all).unwrap();

        let (mut y, mut idx, mut dx) = (vec![0.0; nout], vec![0u32; nout], vec![0.0; nin]);
        reference::pool::max_pool2d_forward(&d, &x, &mut y, &mut idx);
        reference::pool::max_pool2d_backward(&d, &dy, &idx, &mut dx);
        assert_close(&format!("max y {d:?}"), &yt.to_f32(ctx).unwrap(), &y, 0.0, 0.0);
        assert_eq!(it.to_u32(ctx).unwrap(), idx, "max indices {d:?}");
        assert_close(
            &format!("max dx {d:?}"),
            &dxt.to_f32(ctx).unwrap(),
            &dx,
            1e-6,
            1e-5,
        );
    }
}

/// Disjoint windows (stride >= kernel), where the backward has a scatter form:
/// odd and prime sizes with and without padding, strides past the kernel (gaps no
/// window covers), floor mode's uncovered last rows/columns, planes larger than a
/// workgroup, and the seed CNN's whole pooling layer as the large case.
fn disjoint_sweep() -> Vec<Pool2dDesc> {
    vec![
        desc(1, 1, (1, 1), (1, 1), (1, 1), (0, 0)),
        // k = 1, stride 2: every other row is a gap.
        desc(2, 1, (3, 1), (1, 1), (2, 1), (0, 0)),
        // 27x31, 2x2/2: the last row and column are uncovered.
        Pool2dDesc::square(3, 3, 27, 31, 2),
        // ... with padding 1: everything covered, the first and last windows clipped.
        desc(2, 3, (27, 31), (2, 2), (2, 2), (1, 1)),
        // 3x3/3 with padding: the last row is uncovered, the columns all covered.
        desc(2, 3, (27, 31), (3, 3), (3, 3), (1, 1)),
        // Stride past the kernel, non-square, padding: gaps inside and at the end.
        desc(1, 2, (27, 31), (2, 3), (3, 4), (1, 1)),
        desc(3, 1, (11, 6), (3, 2), (3, 2), (1, 0)),
        // 2x2 windows on even widths (the pair kernels): row stride 3 (gaps, and
        // the last 2 rows left over), an odd height, a single output row.
        desc(2, 3, (27, 30), (2, 2), (3, 2), (0, 0)),
        Pool2dDesc::square(1, 2, 5, 4, 2),
        desc(3, 1, (3, 8), (2, 2), (2, 2), (0, 0)),
        // One window row: rows 3 and 4 and column 6 uncovered.
        desc(2, 1, (5, 7), (3, 3), (3, 3), (0, 0)),
        // A 17x13 output plane: more outputs than a workgroup's invocations.
        desc(1, 5, (35, 27), (2, 2), (2, 2), (0, 0)),
        // The seed CNN's MaxPool2D(2) after its 26x26 conv, batch 32 (692k inputs).
        Pool2dDesc::square(32, 32, 26, 26, 2),
    ]
}

#[test]
fn pool_backward_scatter_and_gather_match_reference_on_disjoint_windows() {
    let (_g, ctx) = gpu();
    for (case, d) in disjoint_sweep().into_iter().enumerate() {
        assert!(d.windows_disjoint(), "{d:?}");
        let ins = d.input_shape();
        let outs = d.output_shape().unwrap();
        let (nin, nout) = (ins.iter().product::<usize>(), outs.iter().product::<usize>());
        let x = uniform(&mut rng(900 + case as u64), nin, -2.0, 2.0);
        let dy = uniform(&mut rng(1000 + case as u64), nout, -1.0, 1.0);
        let (xt, dyt) = (upload(ctx, &x, &ins), upload(ctx, &dy, &outs));
        let (yt, it) = (nan_tensor(ctx, &outs), u32_garbage(ctx, &outs));
        ctx.run(&[&pool::max_pool2d_forward(ctx, &d, &xt, &yt, &it).unwrap()])
            .unwrap();

        let (mut y, mut idx) = (vec![0.0; nout], vec![0u32; nout]);
        reference::pool::max_pool2d_forward(&d, &x, &mut y, &mut idx);
        assert_close(&format!("max y {d:?}"), &yt.to_f32(ctx).unwrap(), &y, 0.0, 0.0);
        assert_eq!(it.to_u32(ctx).unwrap(), idx, "max indices {d:?}");
        let (mut max_dx, mut avg_dx) = (vec![0.0; nin], vec![0.0; nin]);
        reference::pool::max_pool2d_backward(&d, &dy, &idx, &mut max_dx);
        reference::pool::avg_pool2d_backward(&d, &dy, &mut avg_dx);

        for form in [
            pool::PoolBackward::Auto,
            pool::PoolBackward::Scatter,
            pool::PoolBackward::Gather,
        ] {
            let (mdxt, adxt) = (nan_tensor(ctx, &ins), nan_tensor(ctx, &ins));
            let mb = pool::max_pool2d_backward_with(ctx, &d, &dyt, &it, &mdxt, form).unwrap();
            let ab = pool::avg_pool2d_backward_with(ctx, &d, &dyt, &adxt, form).unwrap();
            ctx.run(&[&mb[0], &ab]).unwrap();
            let got = mdxt.to_f32(ctx).unwrap();
            // One window per element: every dx is a copy of one dy or 0, exactly.
            assert_close(&format!("max dx {form:?} {d:?}"), &got, &max_dx, 0.0, 0.0);
            assert_close(
                &format!("avg dx {form:?} {d:?}"),
                &adxt.to_f32(ctx).unwrap(),
                &avg_dx,
                1e-6,
                1e-5,
            );
        }
    }
}

#[test]
fn pool_backward_gather_covers_overlap_and_floor_leftovers() {
    let (_g, ctx) = gpu();
    // Overlapping windows (gather only), odd sizes, with and without padding;
    // 28x30 with 3x3/2 and no padding leaves the last row uncovered.
    let cases = [
        desc(2, 3, (27, 31), (3, 3), (2, 2), (0, 0)),
        desc(2, 3, (27, 31), (3, 3), (2, 2), (1, 1)),
        desc(1, 4, (28, 30), (3, 3), (2, 2), (0, 0)),
        desc(2, 2, (27, 31), (3, 2), (2, 1), (1, 1)),
    ];
    for (case, d) in cases.into_iter().enumerate() {
        assert!(!d.windows_disjoint(), "{d:?}");
        let ins = d.input_shape();
        let outs = d.output_shape().unwrap();
        let (nin, nout) = (ins.iter().product::<usize>(), outs.iter().product::<usize>());
        let x = uniform(&mut rng(1100 + case as u64), nin, -2.0, 2.0);
        let dy = uniform(&mut rng(1200 + case as u64), nout, -1.0, 1.0);
        let (xt, dyt) = (upload(ctx, &x, &ins), upload(ctx, &dy, &outs));
        let (yt, it) = (nan_tensor(ctx, &outs), u32_garbage(ctx, &outs));
        let (mdxt, adxt) = (nan_tensor(ctx, &ins), nan_tensor(ctx, &ins));
        let f = pool::max_pool2d_forward(ctx, &d, &xt, &yt, &it).unwrap();
        ctx.run(&[&f]).unwrap();
        let mb = pool::max_pool2d_backward(ctx, &d, &dyt, &it, &mdxt).unwrap();
        let ab = pool::avg_pool2d_backward(ctx, &d, &dyt, &adxt).unwrap();
        ctx.run(&[&mb[0], &ab]).unwrap();

        let (mut y, mut idx) = (vec![0.0; nout], vec![0u32; nout]);
        let (mut max_dx, mut avg_dx) = (vec![0.0; nin], vec![0.0; nin]);
        reference::pool::max_pool2d_forward(&d, &x, &mut y, &mut idx);
        reference::pool::max_pool2d_backward(&d, &dy, &idx, &mut max_dx);
        reference::pool::avg_pool2d_backward(&d, &dy, &mut avg_dx);
        assert_eq!(it.to_u32(ctx).unwrap(), idx, "max indices {d:?}");
        let got = mdxt.to_f32(ctx).unwrap();
        assert_close(&format!("max dx {d:?}"), &got, &max_dx, 1e-6, 1e-5);
        assert_close(
            &format!("avg dx {d:?}"),
            &adxt.to_f32(ctx).unwrap(),
            &avg_dx,
            1e-6,
            1e-5,
        );
        if d.padding == (0, 0) && d.h == 28 {
            // The last row is in no window: zero in both gradients.
            let row = &got[27 * 30..28 * 30];
            assert!(row.iter().all(|&v| v == 0.0), "uncovered row not zeroed: {row:?}");
        }
    }
}

#[test]
fn pool_backward_scatter_rejects_overlapping_windows() {
    let (_g, ctx) = gpu();
    let d = desc(1, 1, (6, 6), (3, 3), (2, 2), (0, 0));
    let outs = d.output_shape().unwrap();
    let (dy, i, dx) = (
        nan_tensor(ctx, &outs),
        u32_garbage(ctx, &outs),
        nan_tensor(ctx, &d.input_shape()),
    );
    let e = expect_err(
        pool::max_pool2d_backward_with(ctx, &d, &dy, &i, &dx, pool::PoolBackward::Scatter),
        "disjoint windows",
    );
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    let e = expect_err(
        pool::avg_pool2d_backward_with(ctx, &d, &dy, &dx, pool::PoolBackward::Scatter),
        "stride",
    );
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
}

/// Inputs with many ties (values from {-1, 0, 1}): every max-pool kernel must keep
/// the first maximum in row-major order, as the twin does.
#[test]
fn max_pool_ties_keep_the_first_element() {
    let (_g, ctx) = gpu();
    let cases = [
        Pool2dDesc::square(2, 3, 26, 26, 2),
        Pool2dDesc::square(2, 3, 27, 31, 2),
        desc(2, 2, (9, 8), (2, 2), (1, 2), (0, 0)),
        desc(1, 3, (13, 17), (3, 3), (2, 2), (1, 1)),
    ];
    for (case, d) in cases.into_iter().enumerate() {
        let ins = d.input_shape();
        let outs = d.output_shape().unwrap();
        let (nin, nout) = (ins.iter().product::<usize>(), outs.iter().product::<usize>());
        let x: Vec<f32> = uniform(&mut rng(1300 + case as u64), nin, -1.5, 1.5)
            .iter()
            .map(|v| v.round())
            .collect();
        let dy = uniform(&mut rng(1400 + case as u64), nout, -1.0, 1.0);
        let (xt, dyt) = (upload(ctx, &x, &ins), upload(ctx, &dy, &outs));
        let (yt, it, dxt) = (
            nan_tensor(ctx, &outs),
            u32_garbage(ctx, &outs),
            nan_tensor(ctx, &ins),
        );
        let f = pool::max_pool2d_forward(ctx, &d, &xt, &yt, &it).unwrap();
        ctx.run(&[&f]).unwrap();
        let b = pool::max_pool2d_backward(ctx, &d, &dyt, &it, &dxt).unwrap();
        ctx.run(&[&b[0]]).unwrap();
        let (mut y, mut idx, mut dx) = (vec![0.0; nout], vec![0u32; nout], vec![0.0; nin]);
        reference::pool::max_pool2d_forward(&d, &x, &mut y, &mut idx);
        reference::pool::max_pool2d_backward(&d, &dy, &idx, &mut dx);
        assert_close(&format!("ties y {d:?}"), &yt.to_f32(ctx).unwrap(), &y, 0.0, 0.0);
        assert_eq!(it.to_u32(ctx).unwrap(), idx, "ties indices {d:?}");
        assert_close(
            &format!("ties dx {d:?}"),
            &dxt.to_f32(ctx).unwrap(),
            &dx,
            0.0,
            0.0,
        );
    }
}

#[test]
fn avg_pool_forward_and_backward_match_reference() {
    let (_g, ctx) = gpu();
    for (case, d) in sweep().into_iter().enumerate() {
        let ins = d.input_shape();
        let outs = d.output_shape().unwrap();
        let (nin, nout) = (ins.iter().product::<usize>(), outs.iter().product::<usize>());
        let x = uniform(&mut rng(300 + case as u64), nin, -2.0, 2.0);
        let dy = uniform(&mut rng(400 + case as u64), nout, -1.0, 1.0);
        let (xt, dyt) = (upload(ctx, &x, &ins), upload(ctx, &dy, &outs));
        let (yt, dxt) = (nan_tensor(ctx, &outs), nan_tensor(ctx, &ins));
        let f = pool::avg_pool2d_forward(ctx, &d, &xt, &yt).unwrap();
        let b = pool::avg_pool2d_backward(ctx, &d, &dyt, &dxt).unwrap();
        ctx.run(&[&f, &b]).unwrap();

        let (mut y, mut dx) = (vec![0.0; nout], vec![0.0; nin]);
        reference::pool::avg_pool2d_forward(&d, &x, &mut y);
        reference::pool::avg_pool2d_backward(&d, &dy, &mut dx);
        assert_close(&format!("avg y {d:?}"), &yt.to_f32(ctx).unwrap(), &y, 1e-6, 1e-5);
        assert_close(
            &format!("avg dx {d:?}"),
            &dxt.to_f32(ctx).unwrap(),
            &dx,
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn pool_large_case_matches_reference() {
    let (_g, ctx) = gpu();
    // 3.2M inputs: a whole batch of a CNN's second pooling layer with overlap.
    let d = desc(32, 32, (56, 56), (3, 3), (2, 2), (1, 1));
    let ins = d.input_shape();
    let outs = d.output_shape().unwrap();
    let (nin, nout) = (ins.iter().product::<usize>(), outs.iter().product::<usize>());
    let x = uniform(&mut rng(7), nin, -1.0, 1.0);
    let dy = uniform(&mut rng(8), nout, -1.0, 1.0);
    let (xt, dyt) = (upload(ctx, &x, &ins), upload(ctx, &dy, &outs));
    let (yt, it, dxt) = (
        nan_tensor(ctx, &outs),
        u32_garbage(ctx, &outs),
        nan_tensor(ctx, &ins),
    );
    let (ayt, adxt) = (nan_tensor(ctx, &outs), nan_tensor(ctx, &ins));
    let f = pool::max_pool2d_forward(ctx, &d, &xt, &yt, &it).unwrap();
    let b = pool::max_pool2d_backward(ctx, &d, &dyt, &it, &dxt).unwrap();
    let af = pool::avg_pool2d_forward(ctx, &d, &xt, &ayt).unwrap();
    let ab = pool::avg_pool2d_backward(ctx, &d, &dyt, &adxt).unwrap();
    ctx.run(&[&f, &b[0], &af, &ab]).unwrap();

    let (mut y, mut idx, mut dx) = (vec![0.0; nout], vec![0u32; nout], vec![0.0; nin]);
    reference::pool::max_pool2d_forward(&d, &x, &mut y, &mut idx);
    reference::pool::max_pool2d_backward(&d, &dy, &idx, &mut dx);
    assert_close("large max y", &yt.to_f32(ctx).unwrap(), &y, 0.0, 0.0);
    assert_eq!(it.to_u32(ctx).unwrap(), idx, "large max indices");
    assert_close("large max dx", &dxt.to_f32(ctx).unwrap(), &dx, 1e-6, 1e-5);
    reference::pool::avg_pool2d_forward(&d, &x, &mut y);
    reference::pool::avg_pool2d_backward(&d, &dy, &mut dx);
    assert_close("large avg y", &ayt.to_f32(ctx).unwrap(), &y, 1e-6, 1e-5);
    assert_close("large avg dx", &adxt.to_f32(ctx).unwrap(), &dx, 1e-6, 1e-5);
}

/// Small shapes for finite differences: overlapping windows, padding, odd sizes.
fn fd_cases() -> Vec<Pool2dDesc> {
    vec![
        desc(2, 3, (7, 5), (3, 3), (1, 1), (1, 1)),
        desc(1, 2, (9, 8), (3, 2), (2, 1), (1, 1)),
        Pool2dDesc::square(2, 1, 5, 7, 2),
        // Disjoint windows (scatter backward) with gaps, padding and leftovers.
        desc(1, 2, (8, 9), (2, 3), (3, 4), (1, 1)),
    ]
}

#[test]
fn max_pool_backward_matches_finite_differences() {
    let (_g, ctx) = gpu();
    for (case, d) in fd_cases().into_iter().enumerate() {
        let ins = d.input_shape();
        let outs = d.output_shape().unwrap();
        let (nin, nout) = (ins.iter().product::<usize>(), outs.iter().product::<usize>());
        let x = distinct(500 + case as u64, nin);
        let r = uniform(&mut rng(600 + case as u64), nout, -1.0, 1.0);
        // GPU gradient of L = sum(r · maxpool(x)).
        let (xt, rt) = (upload(ctx, &x, &ins), upload(ctx, &r, &outs));
        let (yt, it, dxt) = (
            nan_tensor(ctx, &outs),
            u32_garbage(ctx, &outs),
            nan_tensor(ctx, &ins),
        );
        let f = pool::max_pool2d_forward(ctx, &d, &xt, &yt, &it).unwrap();
        let b = pool::max_pool2d_backward(ctx, &d, &rt, &it, &dxt).unwrap();
        ctx.run(&[&f, &b[0]]).unwrap();
        let fd = finite_diff(&x, 1e-3, |xv| {
            let (mut y, mut i) = (vec![0.0; nout], vec![0u32; nout]);
            reference::pool::max_pool2d_forward(&d, xv, &mut y, &mut i);
            y.iter().zip(&r).map(|(&a, &b)| a as f64 * b as f64).sum()
        });
        let got = dxt.to_f32(ctx).unwrap();
        assert_close(
            &format!("max dx vs finite differences {d:?}"),
            &got,
            &fd,
            // Max pooling copies an input: with inputs further apart than eps, the
            // central difference sees one output move by exactly the f32 step of
            // its input, so it is exact but for the f64 sum's rounding.
            1e-5,
            1e-5,
        );
        // Overlapping windows must actually route some element to two windows.
        if d.stride.0 < d.kh {
            let idx = it.to_u32(ctx).unwrap();
            let repeats: usize = idx
                .chunks(outs[2] * outs[3])
                .map(|plane| {
                    let unique: std::collections::HashSet<_> = plane.iter().collect();
                    plane.len() - unique.len()
                })
                .sum();
            assert!(repeats > 0, "case {d:?} never exercises overlapping windows");
        }
    }
}

#[test]
fn avg_pool_backward_matches_finite_differences() {
    let (_g, ctx) = gpu();
    for (case, d) in fd_cases().into_iter().enumerate() {
        let ins = d.input_shape();
        let outs = d.output_shape().unwrap();
        let (nin, nout) = (ins.iter().product::<usize>(), outs.iter().product::<usize>());
        let x = uniform(&mut rng(700 + case as u64), nin, -1.0, 1.0);
        let r = uniform(&mut rng(800 + case as u64), nout, -1.0, 1.0);
        let (rt, dxt) = (upload(ctx, &r, &outs), nan_tensor(ctx, &ins));
        let b = pool::avg_pool2d_backward(ctx, &d, &rt, &dxt).unwrap();
        ctx.run(&[&b]).unwrap();
        let fd = finite_diff(&x, 1e-2, |xv| {
            let mut y = vec![0.0; nout];
            reference::pool::avg_pool2d_forward(&d, xv, &mut y);
            y.iter().zip(&r).map(|(&a, &b)| a as f64 * b as f64).sum()
        });
        assert_close(
            &format!("avg dx vs finite differences {d:?}"),
            &dxt.to_f32(ctx).unwrap(),
            &fd,
            // Average pooling is linear: central differences are exact but for
            // the twin's f32 outputs (worst measured 1.4e-6 on 0.32).
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn keras_maxpool_2x2_floor_mode() {
    // 5x5 input, MaxPool2D(2): 2x2 output, the last row and column are dropped.
    let d = Pool2dDesc::square(1, 1, 5, 5, 2);
    assert_eq!(d.out_hw().unwrap(), (2, 2));
    let x: Vec<f32> = (0..25).map(|i| i as f32).collect();
    let (mut y, mut i) = (vec![0.0; 4], vec![0u32; 4]);
    reference::pool::max_pool2d_forward(&d, &x, &mut y, &mut i);
    assert_eq!(y, vec![6.0, 8.0, 16.0, 18.0]);
    assert_eq!(i, vec![6, 8, 16, 18]);
    // Average with padding counts the padded zeros: corner window of a 3x3/s1/p1
    // pooling over ones sees 4 real elements of 9.
    let d = desc(1, 1, (3, 3), (3, 3), (1, 1), (1, 1));
    let mut y = vec![0.0; 9];
    reference::pool::avg_pool2d_forward(&d, &[1.0; 9], &mut y);
    assert!(
        (y[0] - 4.0 / 9.0).abs() < 1e-7 && (y[4] - 1.0).abs() < 1e-7,
        "{y:?}"
    );
}

fn expect_err<T: std::fmt::Debug>(r: wgml::Result<T>, needle: &str) -> Error {
    let e = r.expect_err("expected an error");
    assert!(
        e.to_string().contains(needle),
        "error '{e}' does not mention '{needle}'"
    );
    e
}

#[test]
fn pool_rejects_zero_stride() {
    let (_g, ctx) = gpu();
    let d = desc(1, 1, (4, 4), (2, 2), (0, 2), (0, 0));
    let (x, y) = (nan_tensor(ctx, &[1, 1, 4, 4]), nan_tensor(ctx, &[1, 1, 2, 2]));
    let e = expect_err(pool::avg_pool2d_forward(ctx, &d, &x, &y), "stride");
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
}

#[test]
fn pool_rejects_window_larger_than_padded_input() {
    let (_g, ctx) = gpu();
    let d = desc(1, 1, (4, 6), (5, 5), (1, 1), (2, 2));
    // 4 + 2·2 = 8 >= 5 fits; 5x5 window on a 2x6 input with no padding does not.
    assert!(d.out_hw().is_ok());
    let d = desc(1, 1, (2, 6), (5, 5), (1, 1), (0, 0));
    let (x, y, i) = (
        nan_tensor(ctx, &[1, 1, 2, 6]),
        nan_tensor(ctx, &[1, 1, 1, 1]),
        u32_garbage(ctx, &[1]),
    );
    let e = expect_err(
        pool::max_pool2d_forward(ctx, &d, &x, &y, &i),
        "larger than the padded",
    );
    assert!(matches!(e, Error::Shape { .. }), "{e:?}");
}

#[test]
fn pool_rejects_padding_over_half_the_window() {
    let d = desc(1, 1, (4, 4), (2, 2), (1, 1), (2, 0));
    let e = expect_err(d.out_hw(), "padding");
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    // Sides are limited to 2^20 (the kernels divide coordinates through f32).
    let d = desc(1, 1, (1 << 20, 4), (2, 2), (2, 2), (0, 0));
    expect_err(d.out_hw(), "largest supported side");
}

#[test]
fn pool_rejects_wrong_tensor_sizes_and_types() {
    let (_g, ctx) = gpu();
    let d = Pool2dDesc::square(2, 3, 6, 6, 2);
    let x = nan_tensor(ctx, &[2, 3, 6, 6]);
    let y = nan_tensor(ctx, &[2, 3, 3, 3]);
    let i = u32_garbage(ctx, &[2, 3, 3, 3]);
    let bad_x = nan_tensor(ctx, &[2, 3, 6, 5]);
    let e = expect_err(pool::max_pool2d_forward(ctx, &d, &bad_x, &y, &i), "[2, 3, 6, 6]");
    assert!(matches!(e, Error::Shape { .. }), "{e:?}");
    let bad_y = nan_tensor(ctx, &[2 * 3 * 3 * 3 + 1]);
    expect_err(pool::avg_pool2d_forward(ctx, &d, &x, &bad_y), "y has shape");
    let bad_dx = nan_tensor(ctx, &[2, 3, 3, 3]);
    expect_err(pool::avg_pool2d_backward(ctx, &d, &y, &bad_dx), "dx has shape");
    // Indices must be u32, and the same shape as y.
    let f_idx = nan_tensor(ctx, &[2, 3, 3, 3]);
    let e = expect_err(pool::max_pool2d_forward(ctx, &d, &x, &y, &f_idx), "indices");
    assert!(matches!(e, Error::DType { .. }), "{e:?}");
    let short_idx = Tensor::zeros(ctx, &[2, 3, 3, 2], DType::U32).unwrap();
    expect_err(
        pool::max_pool2d_backward(ctx, &d, &y, &short_idx, &x),
        "indices has shape",
    );
}

/// Times max and avg pooling forward + backward for the seed CNN's pooling layer
/// (batch 32, 32 channels, 26x26, MaxPool2D(2)), plus the overlapping-window
/// (gather) max backward on a 3x3/2 pooling of the same input, and fills of y
/// and dx as yardsticks of the machine's load. The kernels are timed in
/// interleaved rounds (the shared machine's load drifts); median of 20 runs each.
/// `cargo test --release --test kernels pool::bench -- --ignored --nocapture`
#[test]
#[ignore = "a timing harness: run by .ci/run with --ignored, and by hand with --nocapture"]
fn bench() {
    let (_g, ctx) = gpu();
    let d = Pool2dDesc::square(32, 32, 26, 26, 2);
    let (ins, outs) = (d.input_shape(), d.output_shape().unwrap());
    let x = upload(ctx, &uniform(&mut rng(1), ins.iter().product(), -1.0, 1.0), &ins);
    let dy = upload(
        ctx,
        &uniform(&mut rng(2), outs.iter().product(), -1.0, 1.0),
        &outs,
    );
    let (y, i, dx) = (
        nan_tensor(ctx, &outs),
        u32_garbage(ctx, &outs),
        nan_tensor(ctx, &ins),
    );
    let mf = pool::max_pool2d_forward(ctx, &d, &x, &y, &i).unwrap();
    let mb = pool::max_pool2d_backward(ctx, &d, &dy, &i, &dx).unwrap();
    let af = pool::avg_pool2d_forward(ctx, &d, &x, &y).unwrap();
    let ab = pool::avg_pool2d_backward(ctx, &d, &dy, &dx).unwrap();
    let od = desc(32, 32, (26, 26), (3, 3), (2, 2), (0, 0));
    let oouts = od.output_shape().unwrap();
    let (oy, oi, ody) = (
        nan_tensor(ctx, &oouts),
        u32_garbage(ctx, &oouts),
        upload(
            ctx,
            &uniform(&mut rng(3), oouts.iter().product(), -1.0, 1.0),
            &oouts,
        ),
    );
    let of = pool::max_pool2d_forward(ctx, &od, &x, &oy, &oi).unwrap();
    ctx.run(&[&of]).unwrap();
    let ob = pool::max_pool2d_backward(ctx, &od, &ody, &oi, &dx).unwrap();
    let fill_y = wgml::kernels::elementwise::fill(ctx, &y, 1.0).unwrap();
    let fill_dx = wgml::kernels::elementwise::fill(ctx, &dx, 1.0).unwrap();
    let mbg = pool::max_pool2d_backward_with(ctx, &d, &dy, &i, &dx, pool::PoolBackward::Gather).unwrap();
    let abg = pool::avg_pool2d_backward_with(ctx, &d, &dy, &dx, pool::PoolBackward::Gather).unwrap();
    let items = [
        ("avg backward (gather)", &abg),
        ("max backward (2x2/2: gather)", &mbg[0]),
        ("fill y (173k)", &fill_y),
        ("fill dx (692k)", &fill_dx),
        ("max forward", &mf),
        ("max backward (2x2/2: auto)", &mb[0]),
        ("max backward (3x3/2: gather)", &ob[0]),
        ("avg forward", &af),
        ("avg backward", &ab),
    ];
    for (_, d) in &items {
        ctx.run(&[*d]).unwrap();
    }
    let mut ms = vec![Vec::new(); items.len()];
    for _ in 0..5 {
        for (k, (_, d)) in items.iter().enumerate() {
            for _ in 0..4 {
                let t = std::time::Instant::now();
                ctx.run(&[*d]).unwrap();
                ms[k].push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    for ((name, _), mut v) in items.iter().zip(ms) {
        v.sort_by(f64::total_cmp);
        println!(
            "{name}: median {:.3} ms (min {:.3}, max {:.3})",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        );
    }
}
