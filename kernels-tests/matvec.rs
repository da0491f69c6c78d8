//! matvec kernels (both variants) against `wgml::reference::matvec`.

use wgml::kernels::matmul::Activation;
use wgml::kernels::matvec::{MatvecVariant, matvec};
use wgml::{Tensor, reference};

use crate::common::*;

/// (m, n, k): one row and a few, n and k of 1, primes, each side of 4 (the row
/// variant's unrolling) and of 8 and 32 (the lane variant's columns and lanes),
/// and GPT-2's projections; n over a grid dimension's 65,535 workgroups of 8.
const SHAPES: [(usize, usize, usize); 12] = [
    (1, 1, 1),
    (1, 7, 3),
    (2, 13, 31),
    (1, 8, 32),
    (1, 9, 33),
    (3, 65, 5),
    (1, 64, 4),
    (4, 31, 129),
    (1, 2304, 768),
    (1, 768, 3072),
    (1, 600_000, 2),
    (1, 3, 5000),
];

#[test]
fn matvec_matches_its_twin_in_both_variants() {
    let (_g, ctx) = gpu();
    for (s, &(m, n, k)) in SHAPES.iter().enumerate() {
        let seed = 900 + 4 * s as u64;
        let x = uniform(&mut rng(seed), m * k, -1.0, 1.0);
        let w = uniform(&mut rng(seed + 1), n * k, -1.0, 1.0);
        let b = uniform(&mut rng(seed + 2), n, -1.0, 1.0);
        let (xt, wt, bt) = (
            Tensor::from_f32(ctx, &x, &[m, k]).unwrap(),
            Tensor::from_f32(ctx, &w, &[n, k]).unwrap(),
            Tensor::from_f32(ctx, &b, &[n]).unwrap(),
        );
        let act = Activation::ALL[s % 4];
        let bias = (s % 3 != 0).then_some(&bt);
        let want = reference::matvec::matvec(&x, &w, bias.map(|_| b.as_slice()), act, n, k);
        for variant in MatvecVariant::ALL {
            let y = nan_tensor(ctx, &[m, n]);
            ctx.run(&[&matvec(ctx, variant, &xt, &wt, bias, act, &y).unwrap()])
                .unwrap();
            let what = format!("{variant:?} {m}x{n}x{k} {act:?} bias {}", bias.is_some());
            assert_close(&what, &y.to_f32(ctx).unwrap(), &want, 1e-5, 1e-5);
        }
    }
}

#[test]
fn matvec_refuses_shapes_that_do_not_fit() {
    let (_g, ctx) = gpu();
    let x = Tensor::from_f32(ctx, &[1.0; 6], &[2, 3]).unwrap();
    let w = Tensor::from_f32(ctx, &[1.0; 8], &[2, 4]).unwrap();
    let y = nan_tensor(ctx, &[2, 2]);
    let e = matvec(ctx, MatvecVariant::Rows, &x, &w, None, Activation::Identity, &y)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not rows of w's K = 4"), "{e}");
    let w = Tensor::from_f32(ctx, &[1.0; 6], &[2, 3]).unwrap();
    let b = Tensor::from_f32(ctx, &[1.0; 3], &[3]).unwrap();
    let e = matvec(
        ctx,
        MatvecVariant::Lanes,
        &x,
        &w,
        Some(&b),
        Activation::Identity,
        &y,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("bias has 3 values"), "{e}");
    let e = matvec(ctx, MatvecVariant::Lanes, &x, &w, None, Activation::Identity, &x)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("y has 6 values") || e.contains("separate"), "{e}");
}
