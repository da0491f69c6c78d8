//! Block copies against `wgml::reference::copy`: only the blocks are written (the
//! rest of the output stays NaN), for rows of one value, odd strides and offsets, and
//! more than 65,535 workgroups; bad blocks and aliasing are errors.

use wgml::kernels::copy::{Block, copy_blocks};
use wgml::{Tensor, reference};

use crate::common::*;

#[test]
fn copy_blocks_matches_its_twin() {
    let (_g, ctx) = gpu();
    // (rows, src stride, src offset, dst stride, dst offset, len)
    for (k, &(rows, ss, so, ds, dof, len)) in [
        (1usize, 1usize, 0usize, 1usize, 0usize, 1usize),
        (7, 5, 2, 9, 4, 3),
        (13, 10, 0, 17, 7, 10),
        (300_000, 57, 1, 60, 3, 56),
    ]
    .iter()
    .enumerate()
    {
        let x = uniform(&mut rng(k as u64), rows * ss, -1.0, 1.0);
        let xt = Tensor::from_f32(ctx, &x, &[rows * ss]).unwrap();
        let y = nan_tensor(ctx, &[rows * ds]);
        let (src, dst) = (
            Block {
                stride: ss,
                offset: so,
            },
            Block {
                stride: ds,
                offset: dof,
            },
        );
        ctx.run(&[&copy_blocks(ctx, &xt, src, &y, dst, rows, len).unwrap()])
            .unwrap();
        let got = y.to_f32(ctx).unwrap();
        let mut want = vec![f32::NAN; rows * ds];
        reference::copy::copy_blocks(&x, src, &mut want, dst, rows, len);
        let same = got
            .iter()
            .zip(&want)
            .all(|(a, b)| a == b || a.is_nan() && b.is_nan());
        assert!(
            same,
            "rows {rows}: copy differs from its twin (or wrote outside the blocks)"
        );
    }
}

#[test]
fn bad_blocks_and_aliasing_are_errors() {
    let (_g, ctx) = gpu();
    let x = nan_tensor(ctx, &[12]);
    let y = nan_tensor(ctx, &[12]);
    let b = |stride, offset| Block { stride, offset };
    let e = copy_blocks(ctx, &x, b(4, 2), &y, b(4, 0), 3, 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("a block of 3 at 2 of rows of 4"), "{e}");
    let e = copy_blocks(ctx, &x, b(4, 0), &y, b(5, 0), 3, 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("y has 12 values"), "{e}");
    let e = copy_blocks(ctx, &x, b(4, 0), &x, b(4, 2), 3, 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("distinct"), "{e}");
}
