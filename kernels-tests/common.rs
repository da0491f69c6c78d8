//! Shared test harness: one GPU context for the whole test binary, seeded random
//! data, NaN-filled outputs, and the closeness check that prints the worst element.

#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard, OnceLock};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wgml::{Context, ContextOptions, Tensor};

static CONTEXT: OnceLock<Context> = OnceLock::new();
static GPU_LOCK: Mutex<()> = Mutex::new(());

/// The shared GPU context plus a guard serialising GPU tests (the device is polled
/// from one thread at a time; lavapipe already uses every core per dispatch).
/// Fails, never skips, when there is no adapter.
pub fn gpu() -> (MutexGuard<'static, ()>, &'static Context) {
    let guard = GPU_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let ctx = CONTEXT.get_or_init(|| match Context::new(&ContextOptions::default()) {
        Ok(c) => c,
        Err(e) => panic!(
            "GPU tests need a wgpu adapter: {e}\n\
             On Linux without a GPU: apt-get install mesa-vulkan-drivers (lavapipe)"
        ),
    });
    (guard, ctx)
}

/// Seeded generator; every test names its seed.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `n` uniform values in [lo, hi).
pub fn uniform(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// A GPU f32 tensor of `shape` filled with NaN, so unwritten elements fail checks.
pub fn nan_tensor(ctx: &Context, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_f32(ctx, &vec![f32::NAN; n], shape).expect("allocating a NaN-filled tensor")
}

/// Asserts `|got - want| <= atol + rtol * |want|` element by element; on failure
/// prints the worst element, its index, and how many failed.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} != expected {}",
        got.len(),
        want.len()
    );
    let mut worst: Option<(usize, f32)> = None;
    let mut failures = 0usize;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        let allowed = atol + rtol * w.abs();
        // NaN fails: `!(err <= allowed)` is true for NaN.
        if err.is_nan() || err > allowed {
            failures += 1;
            let excess = if err.is_nan() {
                f32::INFINITY
            } else {
                err - allowed
            };
            if worst.is_none_or(|(_, e)| excess > e) {
                worst = Some((i, excess));
            }
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what}: {failures} of {} elements out of tolerance (atol {atol}, rtol {rtol}); \
             worst at index {i}: got {}, expected {}",
            got.len(),
            got[i],
            want[i]
        );
    }
}

/// Largest relative error max(|g-w| / max(|w|, floor)).
pub fn max_rel_err(got: &[f32], want: &[f32], floor: f32) -> f32 {
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g - w).abs() / w.abs().max(floor))
        .fold(0.0, f32::max)
}

/// Central finite difference of a scalar function `f` at `x` for every element.
pub fn finite_diff(x: &[f32], eps: f64, f: impl Fn(&[f32]) -> f64) -> Vec<f32> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            x[i] = (orig as f64 + eps) as f32;
            let up = f(&x);
            x[i] = (orig as f64 - eps) as f32;
            let down = f(&x);
            x[i] = orig;
            let h = (orig as f64 + eps) as f32 as f64 - (orig as f64 - eps) as f32 as f64;
            ((up - down) / h) as f32
        })
        .collect()
}
