//! Fused attention (`kernels::attention`) against its CPU twin on odd shapes: one
//! token, more keys than queries and the reverse, several row blocks and key tiles,
//! causal masks across blocks, heads of the largest size, folded grids, dropout on
//! the weights, padded keys (a length per sample, 0 included); the twin's
//! gradients against central differences; the twin's
//! dropout is the dropout twin's mask on the weights; bad shapes, aliasing and
//! dropout without a step refused.

use wgml::Tensor;
use wgml::kernels::attention::{self, AttentionDims, AttentionGrads, MAX_HEAD_DIM};
use wgml::kernels::optim::{Optimizer, StepUniform};
use wgml::reference;

use crate::common::*;

fn dims(
    batch: usize,
    heads: usize,
    tq: usize,
    tk: usize,
    dk: usize,
    dv: usize,
    causal: bool,
) -> AttentionDims {
    AttentionDims::new(batch, heads, (tq, tk), (dk, dv), causal)
}

/// The step dropout draws its masks at in these tests.
const T: u32 = 5;

/// A per-step uniform holding step [`T`].
fn step_uniform(ctx: &wgml::Context) -> StepUniform {
    let step = StepUniform::new(ctx).unwrap();
    let opt = Optimizer::sgd(0.1, 0.0);
    step.write(ctx, &opt, T, opt.lr()).unwrap();
    step
}

/// Key lengths of `d`'s samples that pad some keys: half the keys, none, all,
/// one, in turn.
fn padded(d: &AttentionDims) -> Vec<f32> {
    (0..d.batch)
        .map(|b| [d.tk.div_ceil(2), 0, d.tk, 1][b % 4] as f32)
        .collect()
}

/// Inputs `q, k, v, d_o` for `d`.
fn inputs(d: &AttentionDims, seed: u64) -> [Vec<f32>; 4] {
    let mut r = rng(seed);
    let (b, h) = (d.batch, d.heads);
    [
        uniform(&mut r, b * d.tq * h * d.dk, -2.0, 2.0),
        uniform(&mut r, b * d.tk * h * d.dk, -2.0, 2.0),
        uniform(&mut r, b * d.tk * h * d.dv, -1.0, 1.0),
        uniform(&mut r, b * d.tq * h * d.dv, -1.0, 1.0),
    ]
}

#[test]
fn fused_attention_matches_its_twin() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let step = step_uniform(ctx);
    let cases = [
        dims(1, 1, 1, 1, 1, 1, false),
        dims(2, 3, 5, 7, 4, 3, false),
        dims(2, 2, 9, 9, 8, 8, true),
        // Query blocks of 64 and key tiles of 32, a causal mask across both.
        dims(1, 2, 130, 130, 16, 16, true),
        dims(3, 1, 33, 100, MAX_HEAD_DIM, MAX_HEAD_DIM, false),
        dims(1, 4, 70, 3, 5, 7, false),
        // One query over 500 keys of 64 values (a decoder's step without
        // attention_decode): on Mesa's llvmpipe (lavapipe, and its GL) these
        // kernels leave their outputs unwritten past a few hundred keys of 64
        // values (see BENCHMARKS.md, 2026-12-08), so this runs on GPUs only,
        // where the fused path is the one taken.
        dims(1, 1, 1, 500, 64, 64, false),
        // Dropout on the weights.
        dims(2, 3, 5, 7, 4, 3, false).with_dropout(0.5, 3),
        dims(2, 2, 9, 9, 8, 8, true).with_dropout(0.3, 4),
        dims(1, 2, 130, 130, 16, 16, true).with_dropout(0.1, 5),
    ];
    for (n, d) in cases.iter().enumerate() {
        if ctx.is_cpu_device() && d.tk * d.dk > 300 * 64 {
            continue;
        }
        let [q, k, v, g] = inputs(d, 70 + n as u64);
        let keys = padded(d);
        // Every key, then padding (unfolded only: the folds check the grid).
        for (lengths, fold) in [(None, 0), (None, 2), (Some(&keys[..]), 0)] {
            let mut want_o = vec![0.0; g.len()];
            let mut want_stats = vec![0.0; d.stats_len()];
            reference::attention::attention_forward(
                d,
                (&q, &k, &v),
                lengths,
                &mut want_o,
                &mut want_stats,
                T,
            )
            .unwrap();
            let (mut wq, mut wk, mut wv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
            reference::attention::attention_backward(
                d,
                (&q, &k, &v),
                lengths,
                &g,
                &mut wq,
                &mut wk,
                &mut wv,
                T,
            )
            .unwrap();
            {
                ctx.set_max_groups_per_dim(fold);
                let t = |x: &[f32]| Tensor::from_f32(ctx, x, &[x.len()]).unwrap();
                let (qt, kt, vt, gt) = (t(&q), t(&k), t(&v), t(&g));
                let lt = lengths.map(t);
                let o = nan_tensor(ctx, &[g.len()]);
                let stats = nan_tensor(ctx, &[d.stats_len()]);
                let (dq, dk, dv) = (
                    nan_tensor(ctx, &[q.len()]),
                    nan_tensor(ctx, &[k.len()]),
                    nan_tensor(ctx, &[v.len()]),
                );
                let step = Some(&step);
                let qkv = (&qt, &kt, &vt);
                let mut run =
                    vec![attention::attention_forward(ctx, d, qkv, lt.as_ref(), &o, &stats, step).unwrap()];
                let grads = AttentionGrads {
                    dq: Some(&dq),
                    dkv: Some((&dk, &dv)),
                };
                run.extend(
                    attention::attention_backward(ctx, d, qkv, lt.as_ref(), &o, &stats, &gt, grads, step)
                        .unwrap(),
                );
                ctx.run_all(&run).unwrap();
                let what = |s: &str| format!("{d:?} lengths {lengths:?} fold {fold}: {s}");
                assert_close(&what("o"), &o.to_f32(ctx).unwrap(), &want_o, 1e-5, 1e-5);
                let lse: Vec<f32> = stats.to_f32(ctx).unwrap().iter().step_by(2).copied().collect();
                let want_lse: Vec<f32> = want_stats.iter().step_by(2).copied().collect();
                assert_close(&what("log-sum-exp"), &lse, &want_lse, 1e-5, 1e-5);
                assert_close(&what("dq"), &dq.to_f32(ctx).unwrap(), &wq, 1e-5, 1e-4);
                assert_close(&what("dk"), &dk.to_f32(ctx).unwrap(), &wk, 1e-5, 1e-4);
                assert_close(&what("dv"), &dv.to_f32(ctx).unwrap(), &wv, 1e-5, 1e-4);
                if let Some(l) = lengths {
                    // A sample of no key attends to nothing; a padding key gets no gradient.
                    let o = o.to_f32(ctx).unwrap();
                    let per = o.len() / d.batch;
                    for (b, &len) in l.iter().enumerate() {
                        if len == 0.0 {
                            assert!(
                                o[b * per..(b + 1) * per].iter().all(|&x| x == 0.0),
                                "{}",
                                what("o of 0 keys")
                            );
                        }
                    }
                    let dk = dk.to_f32(ctx).unwrap();
                    let row = d.heads * d.dk;
                    for (b, &len) in l.iter().enumerate() {
                        let pad = &dk[(b * d.tk + len as usize) * row..(b + 1) * d.tk * row];
                        assert!(pad.iter().all(|&x| x == 0.0), "{}", what("dk of padding"));
                    }
                }
            }
        }
    }
}

#[test]
fn only_the_gradients_asked_for_are_written() {
    let (_g, ctx) = gpu();
    let d = dims(2, 2, 6, 4, 3, 5, false);
    let [q, k, v, g] = inputs(&d, 90);
    let t = |x: &[f32]| Tensor::from_f32(ctx, x, &[x.len()]).unwrap();
    let (qt, kt, vt, gt) = (t(&q), t(&k), t(&v), t(&g));
    let o = nan_tensor(ctx, &[g.len()]);
    let stats = nan_tensor(ctx, &[d.stats_len()]);
    let dq = nan_tensor(ctx, &[q.len()]);
    let qkv = (&qt, &kt, &vt);
    let mut run = vec![attention::attention_forward(ctx, &d, qkv, None, &o, &stats, None).unwrap()];
    let grads = AttentionGrads {
        dq: Some(&dq),
        dkv: None,
    };
    let backward = attention::attention_backward(ctx, &d, qkv, None, &o, &stats, &gt, grads, None).unwrap();
    assert_eq!(backward.len(), 2, "D and dq only");
    run.extend(backward);
    ctx.run_all(&run).unwrap();
    let (mut wq, mut wk, mut wv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    reference::attention::attention_backward(&d, (&q, &k, &v), None, &g, &mut wq, &mut wk, &mut wv, T)
        .unwrap();
    assert_close("dq alone", &dq.to_f32(ctx).unwrap(), &wq, 1e-5, 1e-4);
}

/// The twin's dropout is inverted dropout of the weights with the dropout twin's
/// mask of a `[B·H·Tq, Tk]` tensor: its output equals softmax, that dropout, then
/// the product with the values; about `rate` of the weights drop.
#[test]
fn the_twins_dropout_masks_the_weights_as_the_dropout_twin_does() {
    let (rate, seed) = (0.4, 9);
    let d = dims(2, 3, 6, 6, 4, 5, true).with_dropout(rate, seed);
    let [q, k, v, _] = inputs(&d, 97);
    let mut o = vec![0.0; d.batch * d.tq * d.heads * d.dv];
    let mut stats = vec![0.0; d.stats_len()];
    reference::attention::attention_forward(&d, (&q, &k, &v), None, &mut o, &mut stats, T).unwrap();
    // The same from the weights: per (b, h) P = softmax(scale·QKᵀ) masked.
    let (b, h, tq, tk, dk, dv) = (d.batch, d.heads, d.tq, d.tk, d.dk, d.dv);
    let mut p = vec![0.0f32; b * h * tq * tk];
    for s in 0..b * h {
        let (bi, hi) = (s / h, s % h);
        for i in 0..tq {
            for j in 0..tk {
                let dot: f32 = (0..dk)
                    .map(|x| q[((bi * tq + i) * h + hi) * dk + x] * k[((bi * tk + j) * h + hi) * dk + x])
                    .sum();
                p[(s * tq + i) * tk + j] = dot;
            }
        }
    }
    reference::softmax::softmax_attention(&mut p, tk, d.scale, Some(tq), None);
    let mut dropped = vec![0.0; p.len()];
    reference::dropout::dropout(&p, &mut dropped, rate, seed, T).unwrap();
    let mut want = vec![0.0; o.len()];
    for s in 0..b * h {
        let (bi, hi) = (s / h, s % h);
        for i in 0..tq {
            for x in 0..dv {
                want[((bi * tq + i) * h + hi) * dv + x] = (0..tk)
                    .map(|j| dropped[(s * tq + i) * tk + j] * v[((bi * tk + j) * h + hi) * dv + x])
                    .sum();
            }
        }
    }
    assert_close("masked weights times values", &o, &want, 1e-5, 1e-4);
    // Of the weights the causal mask leaves, about `rate` drop.
    let seen = b * h * tq * (tq + 1) / 2;
    let zeros = p
        .iter()
        .zip(&dropped)
        .filter(|(p, d)| **p > 0.0 && **d == 0.0)
        .count();
    let fraction = zeros as f64 / seen as f64;
    assert!((fraction - rate as f64).abs() < 0.12, "{zeros} of {seen} dropped");
}

#[test]
fn the_attention_twin_gradient_equals_central_differences() {
    for (causal, rate, pad) in [
        (false, 0.0, false),
        (true, 0.0, false),
        (true, 0.3, false),
        (false, 0.0, true),
        (false, 0.3, true),
    ] {
        let d = dims(2, 2, 4, 4, 3, 2, causal).with_dropout(rate, 8);
        let [q, k, v, w] = inputs(&d, 95);
        let keys = [3.0, 1.0];
        let lengths = pad.then_some(&keys[..]);
        // loss = Σ w·o
        let loss = |q: &[f32], k: &[f32], v: &[f32]| {
            let mut o = vec![0.0; w.len()];
            let mut stats = vec![0.0; d.stats_len()];
            reference::attention::attention_forward(&d, (q, k, v), lengths, &mut o, &mut stats, T).unwrap();
            o.iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
        };
        let (mut gq, mut gk, mut gv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
        reference::attention::attention_backward(&d, (&q, &k, &v), lengths, &w, &mut gq, &mut gk, &mut gv, T)
            .unwrap();
        let eps = 1e-2;
        let what = |s: &str| format!("causal {causal}, dropout {rate}, lengths {lengths:?}: {s}");
        assert_close(
            &what("dq"),
            &gq,
            &finite_diff(&q, eps, |x| loss(x, &k, &v)),
            2e-3,
            1e-2,
        );
        assert_close(
            &what("dk"),
            &gk,
            &finite_diff(&k, eps, |x| loss(&q, x, &v)),
            2e-3,
            1e-2,
        );
        assert_close(
            &what("dv"),
            &gv,
            &finite_diff(&v, eps, |x| loss(&q, &k, x)),
            2e-3,
            1e-2,
        );
    }
}

#[test]
fn fused_attention_refuses_what_it_cannot_do() {
    let (_g, ctx) = gpu();
    let err = |d: &AttentionDims, o_len: Option<usize>| {
        let [q, k, v, _] = inputs(d, 99);
        let t = |x: &[f32]| {
            let x = if x.is_empty() { &[0.0][..] } else { x };
            Tensor::from_f32(ctx, x, &[x.len()]).unwrap()
        };
        let (qt, kt, vt) = (t(&q), t(&k), t(&v));
        let o = nan_tensor(ctx, &[o_len.unwrap_or(d.batch * d.tq * d.heads * d.dv).max(1)]);
        let stats = nan_tensor(ctx, &[d.stats_len().max(1)]);
        attention::attention_forward(ctx, d, (&qt, &kt, &vt), None, &o, &stats, None)
            .unwrap_err()
            .to_string()
    };
    let e = err(&dims(1, 1, 2, 2, MAX_HEAD_DIM + 1, 4, false), None);
    assert!(e.contains("exceed") && e.contains("unfused"), "{e}");
    let e = err(&dims(1, 1, 3, 4, 2, 2, true), None);
    assert!(e.contains("as many queries as keys"), "{e}");
    let e = err(&dims(1, 2, 3, 4, 2, 2, false), Some(5));
    assert!(e.contains("o has 5 elements"), "{e}");
    let e = err(&dims(1, 0, 3, 4, 2, 2, false), None);
    assert!(e.contains("at least 1"), "{e}");
    // Dropout masks change every step: no step uniform, no dropout.
    let e = err(&dims(1, 2, 3, 4, 2, 2, false).with_dropout(0.1, 1), None);
    assert!(e.contains("per-step uniform"), "{e}");
    for rate in [1.0, -0.1, f32::NAN] {
        let d = dims(1, 2, 3, 4, 2, 2, false).with_dropout(rate, 1);
        let e = err(&d, None);
        assert!(e.contains("outside [0, 1)"), "{rate}: {e}");
        // The twin refuses it too, rather than panicking.
        let [q, k, v, _] = inputs(&d, 98);
        let (mut o, mut stats) = (vec![0.0; 16], vec![0.0; d.stats_len()]);
        let e = reference::attention::attention_forward(&d, (&q, &k, &v), None, &mut o, &mut stats, T)
            .unwrap_err();
        assert!(e.to_string().contains("outside [0, 1)"), "{rate}: {e}");
    }
    // An output aliasing an input.
    let d = dims(1, 1, 2, 2, 2, 2, false);
    let x = Tensor::from_f32(ctx, &[0.5; 4], &[4]).unwrap();
    let stats = nan_tensor(ctx, &[d.stats_len()]);
    let e = attention::attention_forward(ctx, &d, (&x, &x, &x), None, &x, &stats, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("o shares a buffer"), "{e}");
    // Key lengths: one per sample.
    let (q, o) = (nan_tensor(ctx, &[4]), nan_tensor(ctx, &[4]));
    let two = nan_tensor(ctx, &[2]);
    let e = attention::attention_forward(ctx, &d, (&q, &q, &q), Some(&two), &o, &stats, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 key lengths for 1 samples"), "{e}");
    // The backward pass binds o writable: it may not be the output's gradient.
    let (q, k, v) = (
        nan_tensor(ctx, &[4]),
        nan_tensor(ctx, &[4]),
        nan_tensor(ctx, &[4]),
    );
    let o = nan_tensor(ctx, &[4]);
    let grads = AttentionGrads::default();
    let e = attention::attention_backward(ctx, &d, (&q, &k, &v), None, &o, &stats, &o, grads, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("o shares a buffer"), "{e}");
}
