//! Dropout against `wgml::reference::dropout`: the same mask bit for bit, for any
//! size, rate, seed and step; the mask's statistics; bad input.

use wgml::kernels::dropout::{self, DropoutRate, layer_seed};
use wgml::kernels::optim::{Optimizer, StepUniform};
use wgml::{Context, Error, Tensor, reference};

use crate::common::*;

fn step_uniform(ctx: &Context, t: u32) -> StepUniform {
    let s = StepUniform::new(ctx).unwrap();
    s.write(ctx, &Optimizer::sgd(0.1, 0.0), t, 0.1).unwrap();
    s
}

fn gpu_dropout(ctx: &Context, x: &[f32], rate: f32, seed: u32, t: u32) -> Vec<f32> {
    let xt = Tensor::from_f32(ctx, x, &[x.len()]).unwrap();
    let y = nan_tensor(ctx, &[x.len()]);
    let step = step_uniform(ctx, t);
    let d = dropout::dropout(ctx, &xt, &y, rate, seed, &step).unwrap();
    ctx.run(&[&d]).unwrap();
    y.to_f32(ctx).unwrap()
}

#[test]
fn dropout_equals_its_twin_bit_for_bit() {
    let (_g, ctx) = gpu();
    // 1, primes, non-multiples of the workgroup, and more than 65,535 workgroups.
    for (n, rate, seed, t) in [
        (1usize, 0.5f32, 1u32, 1u32),
        (7, 0.3, 2, 5),
        (257, 0.5, 3, 17),
        (4099, 0.1, layer_seed(42, 9), 1000),
        (4099, 0.9, 4, 2),
        (65_535 * 256 + 3, 0.25, 5, 123_456),
    ] {
        let x = uniform(&mut rng(n as u64), n, -3.0, 3.0);
        let got = gpu_dropout(ctx, &x, rate, seed, t);
        let mut want = vec![0.0; n];
        reference::dropout::dropout(&x, &mut want, rate, seed, t).unwrap();
        assert_close(&format!("dropout n={n} rate={rate} t={t}"), &got, &want, 0.0, 0.0);
    }
}

#[test]
fn the_mask_keeps_one_minus_rate_and_changes_with_step_and_seed() {
    let (_g, ctx) = gpu();
    let n = 200_000;
    let x = vec![1.0f32; n];
    for rate in [0.0f32, 0.2, 0.5, 0.8] {
        let y = gpu_dropout(ctx, &x, rate, 7, 3);
        let kept = y.iter().filter(|&&v| v != 0.0).count() as f64;
        let p = 1.0 - rate as f64;
        // Binomial(n, p): 5 standard deviations.
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (kept - n as f64 * p).abs() <= 5.0 * sd + 1e-9,
            "rate {rate}: kept {kept} of {n}"
        );
        // Kept units are scaled by 1 / (1 - rate): the expectation is unchanged.
        let scale = 1.0 / (1.0 - rate);
        assert!(y.iter().all(|&v| v == 0.0 || v == scale), "rate {rate}");
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.02, "rate {rate}: mean {mean}");
    }
    // Rate 0 is the identity.
    assert_eq!(gpu_dropout(ctx, &x[..1000], 0.0, 7, 3), x[..1000].to_vec());
    // Another step or another seed: another mask (of 1000 units at rate 0.5, the
    // chance of an identical mask is 2^-1000).
    let base = gpu_dropout(ctx, &x[..1000], 0.5, 7, 3);
    assert_ne!(base, gpu_dropout(ctx, &x[..1000], 0.5, 7, 4));
    assert_ne!(base, gpu_dropout(ctx, &x[..1000], 0.5, 8, 3));
    assert_eq!(base, gpu_dropout(ctx, &x[..1000], 0.5, 7, 3));
}

#[test]
fn bad_rates_and_tensors_are_errors() {
    let (_g, ctx) = gpu();
    let x = Tensor::from_f32(ctx, &[1.0; 4], &[4]).unwrap();
    let y = nan_tensor(ctx, &[4]);
    let z = nan_tensor(ctx, &[5]);
    let step = step_uniform(ctx, 1);
    for rate in [1.0f32, 1.5, -0.1, f32::NAN] {
        let e = dropout::dropout(ctx, &x, &y, rate, 0, &step).unwrap_err();
        assert!(e.to_string().contains("dropout rate"), "{e}");
        assert!(DropoutRate::new(rate).is_err());
    }
    let e = dropout::dropout(ctx, &x, &z, 0.5, 0, &step).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e:?}");
    let e = dropout::dropout(ctx, &x, &x, 0.5, 0, &step).unwrap_err();
    assert!(e.to_string().contains("distinct"), "{e}");
    let mut out = [0.0f32; 4];
    assert!(reference::dropout::dropout(&[1.0; 4], &mut out, 1.0, 0, 1).is_err());
}

#[test]
fn layer_seeds_differ_between_layers_and_models() {
    let seeds: Vec<u32> = (0..16).map(|node| layer_seed(42, node)).collect();
    let mut unique = seeds.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seeds.len());
    assert_ne!(layer_seed(42, 3), layer_seed(43, 3));
}
