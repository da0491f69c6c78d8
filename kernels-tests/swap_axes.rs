//! The axis swap against `wgml::reference::swap_axes`: only the view is written (the
//! rest stays NaN), at offsets, with axes of 1 and more than 65,535 workgroups; a
//! swap and its inverse give the input back; views that do not fit are errors.

use wgml::kernels::swap_axes::{SwapView, swap_axes};
use wgml::{Tensor, reference};

use crate::common::*;

#[test]
fn swap_axes_matches_its_twin_and_undoes_itself() {
    let (_g, ctx) = gpu();
    // (outer, a, b, inner, x offset, y offset)
    for (k, &(outer, a, b, inner, xo, yo)) in [
        (1usize, 1usize, 1usize, 1usize, 0usize, 0usize),
        (2, 3, 4, 5, 0, 0),
        (3, 7, 2, 1, 5, 11),
        (1, 28, 4, 16, 3, 0),
        (4, 1, 6, 3, 0, 2),
        (64, 128, 8, 32, 0, 0),
    ]
    .iter()
    .enumerate()
    {
        let view = SwapView { outer, a, b, inner };
        let n = view.len();
        let x = uniform(&mut rng(k as u64), n + xo + 3, -1.0, 1.0);
        let xt = Tensor::from_f32(ctx, &x, &[x.len()]).unwrap();
        let y = nan_tensor(ctx, &[n + yo + 2]);
        let back = nan_tensor(ctx, &[n]);
        let inverse = SwapView {
            outer,
            a: b,
            b: a,
            inner,
        };
        ctx.run(&[
            &swap_axes(ctx, &xt, xo, &y, yo, view).unwrap(),
            &swap_axes(ctx, &y, yo, &back, 0, inverse).unwrap(),
        ])
        .unwrap();
        let got = y.to_f32(ctx).unwrap();
        let mut want = vec![f32::NAN; n + yo + 2];
        reference::swap_axes::swap_axes(&x, xo, &mut want, yo, view);
        let same = got
            .iter()
            .zip(&want)
            .all(|(g, w)| g == w || g.is_nan() && w.is_nan());
        assert!(
            same,
            "{view:?}: the swap differs from its twin (or wrote outside the view)"
        );
        assert_eq!(
            back.to_f32(ctx).unwrap(),
            &x[xo..xo + n],
            "{view:?}: swapping back"
        );
    }
}

#[test]
fn swap_views_that_do_not_fit_are_errors() {
    let (_g, ctx) = gpu();
    let x = nan_tensor(ctx, &[24]);
    let y = nan_tensor(ctx, &[24]);
    let v = |outer, a, b, inner| SwapView { outer, a, b, inner };
    let e = swap_axes(ctx, &x, 1, &y, 0, v(1, 2, 3, 4))
        .unwrap_err()
        .to_string();
    assert!(e.contains("x has 24 values; 24 from offset 1"), "{e}");
    let e = swap_axes(ctx, &x, 0, &y, 0, v(1, 0, 3, 4))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least 1"), "{e}");
    let e = swap_axes(ctx, &x, 0, &x, 0, v(1, 2, 3, 4))
        .unwrap_err()
        .to_string();
    assert!(e.contains("distinct"), "{e}");
}
