//! Gradient clipping by global norm against its CPU twin: shapes with 1, primes,
//! non-multiples of the workgroup and of a workgroup's share, a tensor large enough
//! to need many partial sums; norms above (clipped) and below (untouched) the limit.

use wgml::Tensor;
use wgml::kernels::clip::clip_by_global_norm;
use wgml::reference;

use crate::common::*;

#[test]
fn clipping_matches_the_reference() {
    let (_g, ctx) = gpu();
    let cases: &[&[usize]] = &[
        &[1],
        &[7, 13, 256, 4097],
        &[346_112, 64, 1, 650, 10],
        &[5_000_000],
    ];
    let mut r = rng(11);
    for (c, sizes) in cases.iter().enumerate() {
        let values: Vec<Vec<f32>> = sizes.iter().map(|&n| uniform(&mut r, n, -1.0, 1.0)).collect();
        let norm: f64 = values
            .iter()
            .flatten()
            .map(|&v| v as f64 * v as f64)
            .sum::<f64>()
            .sqrt();
        // Clipped to a tenth of the norm; then a limit above it leaves every value as is.
        for max_norm in [(norm / 10.0) as f32, (norm * 2.0) as f32] {
            let tensors: Vec<Tensor> = values
                .iter()
                .zip(sizes.iter())
                .map(|(v, &n)| Tensor::from_f32(ctx, v, &[n]).unwrap())
                .collect();
            let grads: Vec<&Tensor> = tensors.iter().collect();
            let clip = clip_by_global_norm(ctx, &grads, max_norm).unwrap();
            // Every partial sum must be written: NaN left in one would show.
            clip.parts
                .write(ctx, &vec![f32::NAN; clip.parts.numel()])
                .unwrap();
            let all: Vec<&wgml::gpu::Dispatch> = clip.dispatches.iter().collect();
            ctx.run(&all).unwrap();
            let mut want = values.clone();
            let mut views: Vec<&mut [f32]> = want.iter_mut().map(|v| v.as_mut_slice()).collect();
            let (scale, want_norm) = reference::clip::clip_by_global_norm(&mut views, max_norm);
            let factor = clip.factor.to_f32(ctx).unwrap();
            let what = format!("case {c} {sizes:?}, max_norm {max_norm}");
            assert_close(
                &format!("{what}: [scale, norm]"),
                &factor,
                &[scale, want_norm],
                0.0,
                1e-5,
            );
            if max_norm as f64 > norm {
                assert_eq!(factor[0], 1.0, "{what}: a norm under the limit is not scaled");
            }
            for (k, t) in tensors.iter().enumerate() {
                assert_close(
                    &format!("{what}: gradient {k}"),
                    &t.to_f32(ctx).unwrap(),
                    &want[k],
                    1e-7,
                    1e-5,
                );
            }
        }
    }
}

/// PyTorch's formula, checked by hand on gradients (3, 4) and (12): ‖g‖ = 13.
#[test]
fn the_factor_is_pytorchs() {
    let mut a = [3.0f32, 4.0];
    let mut b = [12.0f32];
    let (scale, norm) = reference::clip::clip_by_global_norm(&mut [&mut a, &mut b], 6.5);
    assert_eq!(norm, 13.0);
    assert!((scale - 6.5 / (13.0 + 1e-6)).abs() < 1e-7);
    assert!((a[0] - 1.5).abs() < 1e-6 && (a[1] - 2.0).abs() < 1e-6 && (b[0] - 6.0).abs() < 1e-6);
}

#[test]
fn bad_input_is_refused() {
    let (_g, ctx) = gpu();
    let g = Tensor::from_f32(ctx, &[1.0, 2.0], &[2]).unwrap();
    for max_norm in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let e = clip_by_global_norm(ctx, &[&g], max_norm).unwrap_err().to_string();
        assert!(e.contains("positive number"), "{e}");
    }
    let e = clip_by_global_norm(ctx, &[], 1.0).unwrap_err().to_string();
    assert!(e.contains("no gradients"), "{e}");
    let e = clip_by_global_norm(ctx, &[&g, &g], 1.0).unwrap_err().to_string();
    assert!(e.contains("scaled twice"), "{e}");
}
