//! reduce kernels against `wgml::reference::reduce`.

use rand::Rng;
use wgml::kernels::reduce;
use wgml::{DType, Error, Tensor, reference};

use crate::common::*;

/// Small integers: every partial sum is exact in f32, so GPU and CPU must agree to
/// the bit whatever the summation order.
fn integers(seed: u64, n: usize) -> Vec<f32> {
    let mut r = rng(seed);
    (0..n).map(|_| r.random_range(-8i32..=8) as f32).collect()
}

#[test]
fn channel_sum_is_exact_on_integers() {
    let (_g, ctx) = gpu();
    // (a, c, b): ones, primes, non-multiples of 256, dense bias grads (b = 1),
    // a conv bias grad (128 x 26 x 26 per channel), and > 65,535 channels.
    let shapes = [
        (1, 1, 1),
        (1, 7, 1),
        (13, 1, 1),
        (128, 10, 1),
        (3, 5, 7),
        (2, 3, 257),
        (257, 3, 1),
        (128, 8, 26 * 26),
        (2, 70_001, 1),
    ];
    for (k, &(a, c, b)) in shapes.iter().enumerate() {
        let x = integers(10 + k as u64, a * c * b);
        let xt = Tensor::from_f32(ctx, &x, &[a, c, b]).unwrap();
        let mut want = vec![0.0; c];
        reference::reduce::channel_sum(&x, a, c, b, &mut want, false);

        let out = nan_tensor(ctx, &[c]);
        ctx.run(&[&reduce::channel_sum(ctx, &xt, a, c, b, &out, false).unwrap()])
            .unwrap();
        let what = format!("channel_sum a={a} c={c} b={b}");
        assert_close(&what, &out.to_f32(ctx).unwrap(), &want, 0.0, 0.0);

        // Accumulate twice onto a non-zero start.
        let start = integers(99, c);
        let acc = Tensor::from_f32(ctx, &start, &[c]).unwrap();
        let d = reduce::channel_sum(ctx, &xt, a, c, b, &acc, true).unwrap();
        ctx.run(&[&d, &d]).unwrap();
        let mut want2 = start.clone();
        reference::reduce::channel_sum(&x, a, c, b, &mut want2, true);
        reference::reduce::channel_sum(&x, a, c, b, &mut want2, true);
        assert_close(
            &format!("{what} accumulate x2"),
            &acc.to_f32(ctx).unwrap(),
            &want2,
            0.0,
            0.0,
        );
    }
}

#[test]
fn channel_sum_matches_reference_on_floats() {
    let (_g, ctx) = gpu();
    for (k, &(a, c, b)) in [(7, 3, 11), (128, 16, 26 * 26), (1000, 37, 1)].iter().enumerate() {
        let x = uniform(&mut rng(20 + k as u64), a * c * b, 0.0, 1.0);
        let xt = Tensor::from_f32(ctx, &x, &[a * c * b]).unwrap();
        let out = nan_tensor(ctx, &[c]);
        ctx.run(&[&reduce::channel_sum(ctx, &xt, a, c, b, &out, false).unwrap()])
            .unwrap();
        let mut want = vec![0.0; c];
        reference::reduce::channel_sum(&x, a, c, b, &mut want, false);
        assert_close(
            &format!("channel_sum floats a={a} c={c} b={b}"),
            &out.to_f32(ctx).unwrap(),
            &want,
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn sum_axis_is_exact_on_integers() {
    let (_g, ctx) = gpu();
    // (outer, len, inner): both code paths (thread per output for short axes or many
    // outputs, workgroup per output otherwise), ones, primes, len 0, large cases.
    let shapes = [
        (1, 1, 1),
        (3, 7, 5),
        (17, 1, 13),
        (1, 1000, 1),
        (2, 300, 3),
        (1, 129, 1),
        (5, 127, 2),
        (4, 0, 3),
        (8, 2000, 64),
        (100, 50, 200),
    ];
    // CPU adapters sum many long axes with a thread each; GPUs with workgroups.
    let _restore = PlanAs(ctx);
    for (k, &(outer, len, inner)) in shapes.iter().enumerate() {
        let x = integers(30 + k as u64, outer * len * inner);
        let xt = Tensor::from_f32(ctx, &x, &[outer, len, inner]).unwrap();
        let mut want = vec![0.0; outer * inner];
        reference::reduce::sum_axis(&x, outer, len, inner, &mut want);
        for class in cpu_and_gpu_rules(ctx) {
            ctx.set_adapter_class(class);
            let out = nan_tensor(ctx, &[outer, inner]);
            ctx.run(&[&reduce::sum_axis(ctx, &xt, outer, len, inner, &out).unwrap()])
                .unwrap();
            assert_close(
                &format!("{class:?} sum_axis outer={outer} len={len} inner={inner}"),
                &out.to_f32(ctx).unwrap(),
                &want,
                0.0,
                0.0,
            );
        }
    }
}

#[test]
fn mean_matches_reference() {
    let (_g, ctx) = gpu();
    for (k, &n) in [1usize, 7, 256, 257, 1000, (1 << 20) + 7].iter().enumerate() {
        let x = uniform(&mut rng(40 + k as u64), n, 0.0, 1.0);
        let xt = Tensor::from_f32(ctx, &x, &[n]).unwrap();
        let out = nan_tensor(ctx, &[1]);
        ctx.run(&[&reduce::mean(ctx, &xt, &out).unwrap()]).unwrap();
        let want = reference::reduce::mean(&x);
        assert_close(
            &format!("mean n={n}"),
            &out.to_f32(ctx).unwrap(),
            &[want],
            1e-7,
            2e-6,
        );
    }
}

#[test]
fn accumulate_sum_accumulates_across_replays() {
    let (_g, ctx) = gpu();
    let acc = Tensor::from_f32(ctx, &[5.0], &[1]).unwrap();
    let mut want = 5.0f32;
    for (k, &n) in [1usize, 0, 7, 257, 1000, 300_007].iter().enumerate() {
        let x = integers(50 + k as u64, n);
        let xt = Tensor::from_f32(ctx, &x, &[n]).unwrap();
        let d = reduce::accumulate_sum(ctx, &xt, &acc).unwrap();
        ctx.run(&[&d, &d]).unwrap();
        reference::reduce::accumulate_sum(&x, &mut want);
        reference::reduce::accumulate_sum(&x, &mut want);
        assert_close(
            &format!("accumulate_sum n={n}"),
            &acc.to_f32(ctx).unwrap(),
            &[want],
            0.0,
            0.0,
        );
    }
    // Floats: per-sample losses of a batch.
    let x = uniform(&mut rng(59), 4099, 0.0, 3.0);
    let xt = Tensor::from_f32(ctx, &x, &[4099]).unwrap();
    ctx.run(&[&reduce::accumulate_sum(ctx, &xt, &acc).unwrap()])
        .unwrap();
    reference::reduce::accumulate_sum(&x, &mut want);
    assert_close(
        "accumulate_sum floats",
        &acc.to_f32(ctx).unwrap(),
        &[want],
        1e-3,
        1e-6,
    );
}

/// Random rows with ties (small integers) and NaNs, including an all-NaN row and a
/// row whose first entry is NaN.
fn argmax_inputs(seed: u64, rows: usize, cols: usize) -> Vec<f32> {
    let mut r = rng(seed);
    let mut x: Vec<f32> = (0..rows * cols)
        .map(|_| {
            if r.random_range(0..20) == 0 {
                f32::NAN
            } else {
                r.random_range(-4i32..=4) as f32
            }
        })
        .collect();
    if rows >= 3 {
        x[..cols].iter_mut().for_each(|v| *v = f32::NAN);
        x[cols] = f32::NAN;
        x[2 * cols..3 * cols]
            .iter_mut()
            .for_each(|v| *v = f32::NEG_INFINITY);
    }
    x
}

#[test]
fn argmax_rows_matches_reference() {
    let (_g, ctx) = gpu();
    // Thread-per-row (cols <= 32) and workgroup-per-row paths; > 65,535 rows.
    let shapes = [
        (1, 1),
        (7, 1),
        (5, 7),
        (13, 31),
        (13, 32),
        (3, 33),
        (11, 1000),
        (2, 100_000),
        (70_000, 10),
        (3, 257),
    ];
    for (k, &(rows, cols)) in shapes.iter().enumerate() {
        let x = argmax_inputs(60 + k as u64, rows, cols);
        let xt = Tensor::from_f32(ctx, &x, &[rows, cols]).unwrap();
        let out = Tensor::from_u32(ctx, &vec![0xdead_beef; rows], &[rows]).unwrap();
        ctx.run(&[&reduce::argmax_rows(ctx, &xt, &out).unwrap()]).unwrap();
        let mut want = vec![0u32; rows];
        reference::reduce::argmax_rows(&x, cols, &mut want);
        let got = out.to_u32(ctx).unwrap();
        if let Some(r) = (0..rows).find(|&r| got[r] != want[r]) {
            panic!(
                "argmax_rows [{rows}, {cols}]: row {r}: got {}, expected {} (row {:?})",
                got[r],
                want[r],
                &x[r * cols..(r * cols + cols).min(r * cols + 40)]
            );
        }
    }
}

#[test]
fn argmax_picks_first_of_ties_and_skips_nan() {
    let (_g, ctx) = gpu();
    let cols = 300; // workgroup path
    let mut x = vec![0.0f32; 2 * cols];
    x[5] = 3.0;
    x[290] = 3.0;
    x[cols] = f32::NAN;
    x[cols + 299] = 1.0;
    let xt = Tensor::from_f32(ctx, &x, &[2, cols]).unwrap();
    let out = Tensor::from_u32(ctx, &[7, 7], &[2]).unwrap();
    ctx.run(&[&reduce::argmax_rows(ctx, &xt, &out).unwrap()]).unwrap();
    assert_eq!(out.to_u32(ctx).unwrap(), vec![5, 299]);
}

#[test]
fn count_correct_matches_reference() {
    let (_g, ctx) = gpu();
    for (k, &(rows, cols)) in [(1, 1), (7, 10), (257, 3), (1000, 37), (3000, 10), (5, 1)]
        .iter()
        .enumerate()
    {
        let x = argmax_inputs(70 + k as u64, rows, cols);
        let mut r = rng(80 + k as u64);
        // Labels include out-of-range values (never correct) and, often, the argmax.
        let mut arg = vec![0u32; rows];
        reference::reduce::argmax_rows(&x, cols, &mut arg);
        let labels: Vec<u32> = arg
            .iter()
            .map(|&a| match r.random_range(0..3) {
                0 => a,
                1 => r.random_range(0..cols as u32),
                _ => cols as u32 + r.random_range(0..3),
            })
            .collect();
        let xt = Tensor::from_f32(ctx, &x, &[rows, cols]).unwrap();
        let lt = Tensor::from_u32(ctx, &labels, &[rows]).unwrap();
        let acc = Tensor::from_f32(ctx, &[2.0], &[1]).unwrap();
        let d = reduce::count_correct(ctx, &xt, &lt, &acc).unwrap();
        ctx.run(&[&d, &d]).unwrap();
        let mut want = 2.0;
        reference::reduce::count_correct(&x, cols, &labels, &mut want);
        reference::reduce::count_correct(&x, cols, &labels, &mut want);
        assert!(want > 2.0 || rows < 5, "test data gives no hits");
        assert_close(
            &format!("count_correct [{rows}, {cols}]"),
            &acc.to_f32(ctx).unwrap(),
            &[want],
            0.0,
            0.0,
        );
    }
}

/// Subset accuracy of multi-label rows, against its twin (targets drawn near
/// the logits' signs, so some rows match whole) and by hand.
#[test]
fn count_correct_sets_matches_reference() {
    let (_g, ctx) = gpu();
    for (k, &(rows, cols)) in [(1usize, 1usize), (7, 3), (257, 2), (1000, 5)].iter().enumerate() {
        let x = uniform(&mut rng(60 + k as u64), rows * cols, -2.0, 2.0);
        let mut r = rng(65 + k as u64);
        // Each target agrees with its logit's sign 90% of the time.
        let t: Vec<f32> = x
            .iter()
            .map(|&v| f32::from((v > 0.0) != (r.random_range(0..10) == 0)))
            .collect();
        let xt = Tensor::from_f32(ctx, &x, &[rows, cols]).unwrap();
        let tt = Tensor::from_f32(ctx, &t, &[rows * cols]).unwrap();
        let acc = Tensor::from_f32(ctx, &[1.0], &[1]).unwrap();
        let d = reduce::count_correct_sets(ctx, &xt, &tt, &acc).unwrap();
        ctx.run(&[&d, &d]).unwrap();
        let mut want = 1.0;
        for _ in 0..2 {
            reference::reduce::count_correct_sets(&x, &t, cols, &mut want);
        }
        assert_eq!(acc.to_f32(ctx).unwrap(), [want], "[{rows}, {cols}]");
        assert!(
            rows < 7 || (want > 1.0 && want < 1.0 + 2.0 * rows as f32),
            "{want}"
        );
    }
    let mut acc = 0.0;
    reference::reduce::count_correct_sets(&[1.0, -1.0, 1.0, 1.0], &[1.0, 0.0, 1.0, 0.0], 2, &mut acc);
    assert_eq!(acc, 1.0, "the second row misses one class");
}

#[test]
fn count_correct_binary_matches_reference() {
    let (_g, ctx) = gpu();
    for (k, &rows) in [1usize, 7, 257, 1000, 5003].iter().enumerate() {
        let x = uniform(&mut rng(90 + k as u64), rows, -2.0, 2.0);
        let mut r = rng(95 + k as u64);
        let t: Vec<f32> = (0..rows).map(|_| r.random_range(0..2) as f32).collect();
        let xt = Tensor::from_f32(ctx, &x, &[rows, 1]).unwrap();
        let tt = Tensor::from_f32(ctx, &t, &[rows]).unwrap();
        let acc = Tensor::from_f32(ctx, &[1.0], &[1]).unwrap();
        let d = reduce::count_correct_binary(ctx, &xt, &tt, &acc).unwrap();
        ctx.run(&[&d, &d, &d]).unwrap();
        let mut want = 1.0;
        for _ in 0..3 {
            reference::reduce::count_correct_binary(&x, &t, &mut want);
        }
        assert_close(
            &format!("count_correct_binary R={rows}"),
            &acc.to_f32(ctx).unwrap(),
            &[want],
            0.0,
            0.0,
        );
    }
}

#[test]
fn reduce_rejects_bad_shapes() {
    let (_g, ctx) = gpu();
    let x = Tensor::zeros(ctx, &[4, 6], DType::F32).unwrap();
    let out3 = Tensor::zeros(ctx, &[3], DType::F32).unwrap();
    let out6 = Tensor::zeros(ctx, &[6], DType::F32).unwrap();
    let e = reduce::channel_sum(ctx, &x, 4, 6, 2, &out6, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("channel_sum") && e.contains("[4, 6]") && e.contains("b=2"),
        "{e}"
    );
    let e = reduce::channel_sum(ctx, &x, 4, 6, 1, &out3, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("out") && e.contains("[3]"), "{e}");
    let e = reduce::sum_axis(ctx, &x, 2, 2, 2, &out3).unwrap_err().to_string();
    assert!(e.contains("sum_axis") && e.contains("outer=2"), "{e}");
    let e = reduce::sum_axis(ctx, &x, 4, 6, 1, &out6).unwrap_err().to_string();
    assert!(e.contains("sum_axis") && e.contains("out"), "{e}");
    let e = reduce::mean(ctx, &x, &out3).unwrap_err().to_string();
    assert!(e.contains("mean") && e.contains("[3]"), "{e}");
    let empty = Tensor::zeros(ctx, &[0], DType::F32).unwrap();
    let one = Tensor::zeros(ctx, &[1], DType::F32).unwrap();
    let e = reduce::mean(ctx, &empty, &one).unwrap_err().to_string();
    assert!(e.contains("no elements"), "{e}");
    let idx = Tensor::zeros(ctx, &[5], DType::U32).unwrap();
    let e = reduce::argmax_rows(ctx, &x, &idx).unwrap_err().to_string();
    assert!(e.contains("argmax_rows") && e.contains("[5]"), "{e}");
    let zero_cols = Tensor::zeros(ctx, &[4, 0], DType::F32).unwrap();
    let idx4 = Tensor::zeros(ctx, &[4], DType::U32).unwrap();
    let e = reduce::argmax_rows(ctx, &zero_cols, &idx4)
        .unwrap_err()
        .to_string();
    assert!(e.contains("zero columns"), "{e}");
    let e = reduce::count_correct(ctx, &x, &idx, &one)
        .unwrap_err()
        .to_string();
    assert!(e.contains("labels") && e.contains("[5]"), "{e}");
    let e = reduce::count_correct_binary(ctx, &x, &out6, &one)
        .unwrap_err()
        .to_string();
    assert!(e.contains("one logit per row"), "{e}");
}

#[test]
fn reduce_rejects_wrong_dtypes_and_aliasing() {
    let (_g, ctx) = gpu();
    let x = Tensor::zeros(ctx, &[4, 6], DType::F32).unwrap();
    let acc = Tensor::zeros(ctx, &[1], DType::F32).unwrap();
    let f_labels = Tensor::zeros(ctx, &[4], DType::F32).unwrap();
    let e = reduce::count_correct(ctx, &x, &f_labels, &acc).unwrap_err();
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
    let e = reduce::argmax_rows(ctx, &x, &f_labels).unwrap_err();
    assert!(matches!(e, Error::DType { what: "out", .. }), "{e}");
    let u = Tensor::zeros(ctx, &[4], DType::U32).unwrap();
    let e = reduce::accumulate_sum(ctx, &u, &acc).unwrap_err();
    assert!(matches!(e, Error::DType { what: "x", .. }), "{e}");
    let e = reduce::accumulate_sum(ctx, &acc, &acc).unwrap_err().to_string();
    assert!(e.contains("share a buffer"), "{e}");
    let v = x.reshape(&[24]).unwrap();
    let e = reduce::channel_sum(ctx, &x, 1, 24, 1, &v, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("share a buffer"), "{e}");
}

/// Top-k accuracy counts equal the twin's, ties at the boundary counting (small
/// integer logits make many), labels past the classes and NaN logits never, and a
/// k of at least the classes counting every labelled row; k = 0 is refused.
#[test]
fn count_in_top_k_matches_reference() {
    let (_g, ctx) = gpu();
    for (s, &(rows, cols, k)) in [
        (1, 1, 1),
        (7, 10, 1),
        (257, 3, 2),
        (1000, 37, 5),
        (3000, 10, 3),
        (40, 6, 9),
    ]
    .iter()
    .enumerate()
    {
        let mut r = rng(90 + s as u64);
        let mut x: Vec<f32> = (0..rows * cols).map(|_| r.random_range(0..4) as f32).collect();
        if rows > 7 {
            x[3 * cols] = f32::NAN;
        }
        let labels: Vec<u32> = (0..rows)
            .map(|_| match r.random_range(0..5) {
                0 => cols as u32 + r.random_range(0..3),
                _ => r.random_range(0..cols as u32),
            })
            .collect();
        let xt = Tensor::from_f32(ctx, &x, &[rows, cols]).unwrap();
        let lt = Tensor::from_u32(ctx, &labels, &[rows]).unwrap();
        let acc = Tensor::from_f32(ctx, &[1.0], &[1]).unwrap();
        let d = reduce::count_in_top_k(ctx, &xt, &lt, k, &acc).unwrap();
        ctx.run(&[&d]).unwrap();
        let mut want = 1.0;
        reference::reduce::count_in_top_k(&x, cols, &labels, k, &mut want);
        let what = format!("count_in_top_k [{rows}, {cols}] k={k}");
        assert_close(&what, &acc.to_f32(ctx).unwrap(), &[want], 0.0, 0.0);
        if k >= cols {
            let labelled = labels.iter().filter(|&&l| (l as usize) < cols).count();
            let nan_row = (rows > 7 && (labels[3] as usize) == 0) as usize;
            assert_eq!(want as usize, 1 + labelled - nan_row, "{what}");
        }
    }
    // By hand: [3, 1, 3, 2] with label 2 is in the top 1 (a tie with index 0), label 3
    // in the top 3 but not the top 2.
    let xt = Tensor::from_f32(ctx, &[3.0, 1.0, 3.0, 2.0, 3.0, 1.0, 3.0, 2.0], &[2, 4]).unwrap();
    let lt = Tensor::from_u32(ctx, &[2, 3], &[2]).unwrap();
    for (k, want) in [(1usize, 1.0f32), (2, 1.0), (3, 2.0)] {
        let acc = Tensor::from_f32(ctx, &[0.0], &[1]).unwrap();
        ctx.run(&[&reduce::count_in_top_k(ctx, &xt, &lt, k, &acc).unwrap()])
            .unwrap();
        assert_eq!(acc.to_f32(ctx).unwrap(), [want], "k={k}");
    }
    let acc = Tensor::from_f32(ctx, &[0.0], &[1]).unwrap();
    assert!(reduce::count_in_top_k(ctx, &xt, &lt, 0, &acc).is_err());
}
