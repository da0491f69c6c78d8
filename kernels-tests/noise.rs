//! The noise op against `wgml::reference::noise`: the same draws for any size, seed
//! and step (uniform bit for bit, normal within f32 rounding of log/cos); the draws'
//! statistics; a new step, a new draw; bad parameters.

use wgml::kernels::noise::{self, Distribution};
use wgml::kernels::optim::{Optimizer, StepUniform};
use wgml::{Context, reference};

use crate::common::*;

fn gpu_noise(ctx: &Context, n: usize, dist: Distribution, seed: u32, t: u32) -> Vec<f32> {
    let y = nan_tensor(ctx, &[n]);
    let step = StepUniform::new(ctx).unwrap();
    step.write(ctx, &Optimizer::sgd(0.1, 0.0), t, 0.1).unwrap();
    let d = noise::noise(ctx, &y, dist, seed, &step).unwrap();
    ctx.run(&[&d]).unwrap();
    y.to_f32(ctx).unwrap()
}

#[test]
fn noise_equals_its_twin() {
    let (_g, ctx) = gpu();
    let uniform_dist = Distribution::Uniform { low: -2.0, high: 3.0 };
    let normal = Distribution::Normal { mean: 0.5, std: 2.0 };
    // 1, primes, non-multiples of the workgroup, and more than 65,535 workgroups.
    for (n, seed, t) in [
        (1usize, 1u32, 1u32),
        (7, 2, 5),
        (257, 3, 17),
        (65_535 * 256 + 3, 5, 123_456),
    ] {
        for dist in [uniform_dist, normal, Distribution::STANDARD_NORMAL] {
            let got = gpu_noise(ctx, n, dist, seed, t);
            let mut want = vec![0.0; n];
            reference::noise::noise(&mut want, dist, seed, t);
            // The uniforms are exact up to the final f32 rounding. The normal goes
            // through the driver's log and cos (Vulkan allows cos 2^-11 absolute
            // error; lavapipe's reached 4e-5 in 3 of 16.8M draws) times a radius up
            // to 5.9 and the std: 1e-4 per unit of std, a different last digit in a
            // random draw, never a different draw.
            let (atol, rtol) = match dist {
                Distribution::Uniform { .. } => (1e-6, 1e-6),
                Distribution::Normal { std, .. } => (1e-4 * std, 1e-5),
            };
            assert_close(&format!("noise n={n} {dist:?} t={t}"), &got, &want, atol, rtol);
        }
    }
}

#[test]
fn draws_have_the_distribution_and_change_with_step_and_seed() {
    let (_g, ctx) = gpu();
    let n = 200_000;
    let stats = |v: &[f32]| {
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        (mean, var.sqrt())
    };
    let z = gpu_noise(ctx, n, Distribution::Normal { mean: 1.0, std: 3.0 }, 7, 3);
    let (mean, sd) = stats(&z);
    // Standard errors: 3/√n ≈ 0.0067 for the mean, 3/√(2n) ≈ 0.0047 for the sd.
    assert!(
        (mean - 1.0).abs() < 0.04 && (sd - 3.0).abs() < 0.03,
        "normal: mean {mean}, sd {sd}"
    );
    let within = z.iter().filter(|&&x| (x - 1.0).abs() < 3.0).count() as f64 / n as f64;
    assert!((within - 0.6827).abs() < 0.005, "normal: {within} within one sd");
    let u = gpu_noise(ctx, n, Distribution::Uniform { low: 2.0, high: 4.0 }, 7, 3);
    assert!(
        u.iter().all(|&x| (2.0..4.0).contains(&x)),
        "uniform out of [2, 4)"
    );
    let (mean, sd) = stats(&u);
    assert!(
        (mean - 3.0).abs() < 0.01 && (sd - 2.0 / 12f64.sqrt()).abs() < 0.01,
        "uniform: {mean} {sd}"
    );
    let a = gpu_noise(ctx, 1000, Distribution::STANDARD_NORMAL, 7, 3);
    assert_eq!(a, gpu_noise(ctx, 1000, Distribution::STANDARD_NORMAL, 7, 3));
    assert_ne!(a, gpu_noise(ctx, 1000, Distribution::STANDARD_NORMAL, 7, 4));
    assert_ne!(a, gpu_noise(ctx, 1000, Distribution::STANDARD_NORMAL, 8, 3));
}

#[test]
fn bad_distributions_are_errors() {
    let (_g, ctx) = gpu();
    let y = nan_tensor(ctx, &[4]);
    let step = StepUniform::new(ctx).unwrap();
    for dist in [
        Distribution::Normal { mean: 0.0, std: -1.0 },
        Distribution::Normal {
            mean: f32::NAN,
            std: 1.0,
        },
        Distribution::Uniform { low: 1.0, high: 1.0 },
    ] {
        let e = noise::noise(ctx, &y, dist, 1, &step).unwrap_err().to_string();
        assert!(e.contains("noise"), "{dist:?}: {e}");
    }
}
