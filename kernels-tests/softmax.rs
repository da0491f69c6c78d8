//! softmax kernels against `wgml::reference::softmax`.

use wgml::kernels::softmax;
use wgml::{DType, Error, Tensor, reference};

use crate::common::*;

/// (rows, cols): C = 1, primes, each workgroup-size boundary (32/64/128/256),
/// C far longer than a workgroup, and more rows than one grid dimension holds.
const SHAPES: [(usize, usize); 13] = [
    (1, 1),
    (3, 1),
    (1, 7),
    (13, 31),
    (5, 32),
    (5, 33),
    (6, 64),
    (6, 65),
    (7, 257),
    (4, 1000),
    (3, 4099),
    (2, 100_000),
    (70_000, 3),
];

fn run(ctx: &wgml::Context, log: bool, x: &Tensor, y: &Tensor) {
    let d = if log {
        softmax::log_softmax(ctx, x, y)
    } else {
        softmax::softmax(ctx, x, y)
    };
    ctx.run(&[&d.unwrap()]).unwrap();
}

fn reference(log: bool, x: &[f32], cols: usize) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    if log {
        reference::softmax::log_softmax(x, cols, &mut y);
    } else {
        reference::softmax::softmax(x, cols, &mut y);
    }
    y
}

/// Asserts every row of `y` sums to 1 within `tol`.
#[track_caller]
fn assert_rows_sum_to_one(what: &str, y: &[f32], cols: usize, tol: f64) {
    for (r, row) in y.chunks(cols).enumerate() {
        let s: f64 = row.iter().map(|&v| v as f64).sum();
        assert!((s - 1.0).abs() <= tol, "{what}: row {r} sums to {s}");
    }
}

#[test]
fn softmax_and_log_softmax_match_reference() {
    let (_g, ctx) = gpu();
    for log in [false, true] {
        for (k, &(rows, cols)) in SHAPES.iter().enumerate() {
            let x = uniform(&mut rng(k as u64 + 10 * log as u64), rows * cols, -8.0, 8.0);
            let xt = Tensor::from_f32(ctx, &x, &[rows, cols]).unwrap();
            let y = nan_tensor(ctx, &[rows, cols]);
            run(ctx, log, &xt, &y);
            let got = y.to_f32(ctx).unwrap();
            let want = reference(log, &x, cols);
            let what = format!("{} [{rows}, {cols}]", if log { "log_softmax" } else { "softmax" });
            if log {
                assert_close(&what, &got, &want, 2e-5, 2e-5);
            } else {
                assert_close(&what, &got, &want, 1e-7, 2e-5);
                assert_rows_sum_to_one(&what, &got, cols, 1e-5);
            }
        }
    }
}

#[test]
fn softmax_in_place() {
    let (_g, ctx) = gpu();
    for log in [false, true] {
        for &(rows, cols) in &[(3usize, 1usize), (9, 300), (2, 5000)] {
            let x = uniform(&mut rng(5), rows * cols, -4.0, 4.0);
            let t = Tensor::from_f32(ctx, &x, &[rows, cols]).unwrap();
            run(ctx, log, &t, &t);
            let want = reference(log, &x, cols);
            assert_close(
                &format!("in place log={log} [{rows}, {cols}]"),
                &t.to_f32(ctx).unwrap(),
                &want,
                2e-5,
                2e-5,
            );
        }
    }
}

#[test]
fn softmax_is_stable_at_extremes() {
    let (_g, ctx) = gpu();
    let cols = 6;
    #[rustfmt::skip]
    let x = vec![
        1e4, -1e4, 0.0, 1e4, 5.0, -5.0,      // two tied maxima at 1e4
        -1e4, -1e4, -1e4, -1e4, -1e4, -1e4,  // all equal and very negative
        1e4, 1e4 - 1.0, 1e4 - 2.0, 1e4 - 30.0, 1e4 - 100.0, -1e4,
        88.0, 89.0, 90.0, -88.0, -89.0, -90.0, // exp would overflow without the max
    ];
    let rows = x.len() / cols;
    let xt = Tensor::from_f32(ctx, &x, &[rows, cols]).unwrap();
    for log in [false, true] {
        let y = nan_tensor(ctx, &[rows, cols]);
        run(ctx, log, &xt, &y);
        let got = y.to_f32(ctx).unwrap();
        assert!(
            got.iter().all(|v| v.is_finite()),
            "log={log}: non-finite output {got:?}"
        );
        let want = reference(log, &x, cols);
        assert_close(&format!("extremes log={log}"), &got, &want, 1e-6, 1e-5);
        if !log {
            assert_rows_sum_to_one("extremes", &got, cols, 1e-6);
            assert_eq!(&got[..2], &[0.5, 0.0]);
            assert!(
                got[6..12].iter().all(|&v| (v - 1.0 / 6.0).abs() < 1e-7),
                "{:?}",
                &got[6..12]
            );
        }
    }
    // Large C with one dominant logit and the rest at -1e4.
    let cols = 100_000;
    let mut x = vec![-1e4f32; cols];
    x[77_777] = 1e4;
    let xt = Tensor::from_f32(ctx, &x, &[1, cols]).unwrap();
    let y = nan_tensor(ctx, &[1, cols]);
    run(ctx, false, &xt, &y);
    let got = y.to_f32(ctx).unwrap();
    assert_eq!(got[77_777], 1.0);
    assert_eq!(got.iter().filter(|&&v| v != 0.0).count(), 1);
    run(ctx, true, &xt, &y);
    let got = y.to_f32(ctx).unwrap();
    assert_eq!(got[77_777], 0.0);
    assert_eq!(got[0], -2e4);
}

#[test]
fn softmax_of_one_column_is_one() {
    let (_g, ctx) = gpu();
    let x = [3.0f32, -1e4, 1e4, 0.0, 7.5];
    let xt = Tensor::from_f32(ctx, &x, &[5, 1]).unwrap();
    let y = nan_tensor(ctx, &[5, 1]);
    run(ctx, false, &xt, &y);
    assert_eq!(y.to_f32(ctx).unwrap(), vec![1.0; 5]);
    run(ctx, true, &xt, &y);
    assert_eq!(y.to_f32(ctx).unwrap(), vec![0.0; 5]);
}

#[test]
fn softmax_rejects_bad_inputs() {
    let (_g, ctx) = gpu();
    let x = Tensor::zeros(ctx, &[4, 6], DType::F32).unwrap();
    let y = Tensor::zeros(ctx, &[6, 4], DType::F32).unwrap();
    let e = softmax::softmax(ctx, &x, &y).unwrap_err().to_string();
    assert!(
        e.contains("softmax") && e.contains("[4, 6]") && e.contains("[6, 4]"),
        "{e}"
    );
    let e = softmax::log_softmax(ctx, &x, &y).unwrap_err().to_string();
    assert!(e.contains("log_softmax"), "{e}");
    let z = Tensor::zeros(ctx, &[4, 0], DType::F32).unwrap();
    let e = softmax::softmax(ctx, &z, &z).unwrap_err().to_string();
    assert!(e.contains("[4, 0]") && e.contains("at least 1"), "{e}");
    let u = Tensor::zeros(ctx, &[4, 6], DType::U32).unwrap();
    let e = softmax::softmax(ctx, &u, &x).unwrap_err();
    assert!(matches!(e, Error::DType { what: "x", .. }), "{e}");
}

#[test]
fn zero_rows_are_a_no_op() {
    let (_g, ctx) = gpu();
    let x = Tensor::zeros(ctx, &[0, 5], DType::F32).unwrap();
    let y = Tensor::zeros(ctx, &[0, 5], DType::F32).unwrap();
    ctx.run(&[
        &softmax::softmax(ctx, &x, &y).unwrap(),
        &softmax::log_softmax(ctx, &x, &y).unwrap(),
    ])
    .unwrap();
}

#[test]
fn attention_softmax_and_its_backward_match_their_twins() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    // (rows, cols, scale, causal rows): plain, scaled, causal square matrices (rows
    // = batch·T), a workgroup-size edge, a long row, many short rows.
    // The last field: rows per sample of key lengths (padding), if any.
    for (k, &(rows, cols, scale, causal, padded)) in [
        (1usize, 1usize, 1.0f32, None, None),
        (6, 5, 0.5, None, None),
        (12, 4, 0.25, Some(4usize), None),
        (12, 4, 0.25, Some(4usize), Some(4usize)),
        (2 * 33, 33, 0.17, Some(33), None),
        (2 * 33, 33, 0.17, None, Some(33)),
        (3, 3000, 0.1, None, None),
        (3, 3000, 0.1, None, Some(1)),
        // Many short rows packed into workgroups (a partly filled last one).
        (7 * 28, 28, 0.25, Some(28), None),
        (301, 100, 0.1, None, None),
        (301, 100, 0.1, None, Some(7)),
    ]
    .iter()
    .enumerate()
    {
        let mut r = rng(40 + k as u64);
        let s = uniform(&mut r, rows * cols, -8.0, 8.0);
        let d = uniform(&mut r, rows * cols, -1.0, 1.0);
        // Lengths from 0 to every column, in turn.
        let lengths: Vec<f32> = (0..padded.map_or(0, |per| rows / per))
            .map(|b| ((b * 7 + 3) % (cols + 1)) as f32)
            .collect();
        let keys = padded.map(|per| (&lengths[..], per));
        let mut want_p = s.clone();
        reference::softmax::softmax_attention(&mut want_p, cols, scale, causal, keys);
        let mut want_d = d.clone();
        reference::softmax::softmax_backward_rows(&want_p, &mut want_d, cols, scale);
        // CPU adapters give each row one invocation; GPUs several lanes per row.
        for class in cpu_and_gpu_rules(ctx) {
            ctx.set_adapter_class(class);
            let st = Tensor::from_f32(ctx, &s, &[rows, cols]).unwrap();
            let dt = Tensor::from_f32(ctx, &d, &[rows, cols]).unwrap();
            let lt =
                (!lengths.is_empty()).then(|| Tensor::from_f32(ctx, &lengths, &[lengths.len()]).unwrap());
            let keys = lt.as_ref().zip(padded);
            ctx.run(&[
                &softmax::softmax_attention(ctx, &st, scale, causal, keys).unwrap(),
                &softmax::softmax_backward_rows(ctx, &st, &dt, scale).unwrap(),
            ])
            .unwrap();
            let what = |x: &str| format!("{class:?} {rows}x{cols} padded {padded:?}: {x}");
            let got_p = st.to_f32(ctx).unwrap();
            assert_close(&what("weights"), &got_p, &want_p, 1e-6, 1e-5);
            match padded {
                None => assert_rows_sum_to_one(&what("weights"), &got_p, cols, 1e-5),
                Some(per) => {
                    for (i, row) in got_p.chunks(cols).enumerate() {
                        let keys = lengths[i / per] as usize;
                        assert!(
                            row[keys..].iter().all(|&v| v == 0.0),
                            "{}",
                            what("padding weighed")
                        );
                        let sum: f32 = row.iter().sum();
                        let seen = causal.map_or(keys, |t| keys.min(i % t + 1));
                        let want = if seen == 0 { 0.0 } else { 1.0 };
                        assert!(
                            (sum - want).abs() < 1e-5,
                            "{}: row {i} sums to {sum}",
                            what("weights")
                        );
                    }
                }
            }
            assert_close(
                &what("score gradient"),
                &dt.to_f32(ctx).unwrap(),
                &want_d,
                1e-6,
                1e-4,
            );
            if let Some(t) = causal {
                for (i, row) in got_p.chunks(cols).enumerate() {
                    assert!(
                        row[i % t + 1..].iter().all(|&v| v == 0.0),
                        "row {i} attends to later columns"
                    );
                }
            }
        }
    }
}

#[test]
fn the_attention_softmax_twin_gradient_equals_central_differences() {
    let (rows, cols, scale) = (4, 4, 0.7);
    let mut r = rng(3);
    let s = uniform(&mut r, rows * cols, -2.0, 2.0);
    let w = uniform(&mut r, rows * cols, -1.0, 1.0);
    let lengths = [2.0, 4.0];
    for (causal, keys) in [(None, None), (Some(4), None), (None, Some((&lengths[..], 2)))] {
        let loss = |s: &[f32]| {
            let mut p = s.to_vec();
            reference::softmax::softmax_attention(&mut p, cols, scale, causal, keys);
            p.iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
        };
        let mut p = s.clone();
        reference::softmax::softmax_attention(&mut p, cols, scale, causal, keys);
        let mut d = w.clone();
        reference::softmax::softmax_backward_rows(&p, &mut d, cols, scale);
        assert_close("score gradient", &d, &finite_diff(&s, 1e-3, loss), 1e-3, 1e-3);
    }
}

#[test]
fn attention_softmax_checks_its_mask_and_buffers() {
    let (_g, ctx) = gpu();
    let s = nan_tensor(ctx, &[6, 4]);
    let e = softmax::softmax_attention(ctx, &s, 1.0, Some(4), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not divide the scores' 6 rows"), "{e}");
    let l = nan_tensor(ctx, &[4]);
    let e = softmax::softmax_attention(ctx, &s, 1.0, None, Some((&l, 2)))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("4 key lengths do not match 6 rows in samples of 2"),
        "{e}"
    );
    let e = softmax::softmax_attention(ctx, &s, f32::NAN, None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("finite"), "{e}");
    let e = softmax::softmax_backward_rows(ctx, &s, &s, 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("distinct"), "{e}");
}
