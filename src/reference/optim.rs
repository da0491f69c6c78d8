//! CPU twins of the optim kernels (f64 arithmetic, f32 storage).
//!
//! The update rules are those of the header of `shaders/optim.wgsl`; bias
//! corrections are computed here in f64 directly from the hyper-parameters.

use crate::kernels::optim::{EpsilonPlacement, Optimizer};

/// One update of `param` from `grad` at step `t` (1-based) with learning rate `lr`,
/// using and updating `state` (`opt.state_count()` vectors of `param.len()`, in the
/// order of [`Optimizer::state_names`], zero before step 1). Same contract as
/// [`crate::kernels::optim::optimizer_step`]; panics on mismatched lengths.
pub fn optimizer_step(
    opt: &Optimizer,
    t: u32,
    lr: f32,
    param: &mut [f32],
    grad: &[f32],
    state: &mut [Vec<f32>],
) {
    let n = param.len();
    assert!(t >= 1, "optimizer step t is 1-based");
    assert_eq!(grad.len(), n, "grad length differs from param length");
    assert_eq!(state.len(), opt.state_count(), "wrong number of state vectors");
    assert!(
        state.iter().all(|s| s.len() == n),
        "a state vector's length differs from param length"
    );
    let lr = lr as f64;
    match *opt {
        Optimizer::Adam {
            beta1,
            beta2,
            epsilon,
            weight_decay,
            epsilon_placement,
            ..
        } => {
            let (b1, b2, eps, wd) = (beta1 as f64, beta2 as f64, epsilon as f64, weight_decay as f64);
            let bc1 = 1.0 - b1.powf(t as f64);
            let bc2 = 1.0 - b2.powf(t as f64);
            let (ms, vs) = state.split_at_mut(1);
            let (ms, vs) = (&mut ms[0], &mut vs[0]);
            for i in 0..n {
                let g = grad[i] as f64;
                let mut x = param[i] as f64;
                if wd > 0.0 {
                    x -= lr * wd * x;
                }
                let m = b1 * ms[i] as f64 + (1.0 - b1) * g;
                let v = b2 * vs[i] as f64 + (1.0 - b2) * g * g;
                ms[i] = m as f32;
                vs[i] = v as f32;
                x -= match epsilon_placement {
                    EpsilonPlacement::PyTorch => lr * (m / bc1) / ((v / bc2).sqrt() + eps),
                    EpsilonPlacement::Keras => lr * bc2.sqrt() / bc1 * m / (v.sqrt() + eps),
                };
                param[i] = x as f32;
            }
        }
        Optimizer::Sgd {
            momentum,
            nesterov,
            weight_decay,
            ..
        } => {
            let (mu, wd) = (momentum as f64, weight_decay as f64);
            for i in 0..n {
                let x = param[i] as f64;
                let g = grad[i] as f64 + wd * x;
                let d = if momentum > 0.0 {
                    let buf = mu * state[0][i] as f64 + g;
                    state[0][i] = buf as f32;
                    if nesterov { g + mu * buf } else { buf }
                } else {
                    g
                };
                param[i] = (x - lr * d) as f32;
            }
        }
        Optimizer::RmsProp {
            rho,
            epsilon,
            momentum,
            centered,
            ..
        } => {
            let (rho, eps, mu) = (rho as f64, epsilon as f64, momentum as f64);
            let has_momentum = momentum > 0.0;
            let avg_slot = if has_momentum { 2 } else { 1 };
            for i in 0..n {
                let g = grad[i] as f64;
                let s = rho * state[0][i] as f64 + (1.0 - rho) * g * g;
                state[0][i] = s as f32;
                let d = if centered {
                    let a = rho * state[avg_slot][i] as f64 + (1.0 - rho) * g;
                    state[avg_slot][i] = a as f32;
                    (s - a * a).max(0.0).sqrt() + eps
                } else {
                    s.sqrt() + eps
                };
                let u = if has_momentum {
                    let buf = mu * state[1][i] as f64 + g / d;
                    state[1][i] = buf as f32;
                    buf
                } else {
                    g / d
                };
                param[i] = (param[i] as f64 - lr * u) as f32;
            }
        }
    }
}

/// The first pass of an accumulated gradient: `w · g` (the `accumulate_first`
/// kernel; f32 arithmetic, as on the GPU).
pub fn accumulate_first(g: &[f32], w: f32) -> Vec<f32> {
    g.iter().map(|&g| w * g).collect()
}

/// A middle pass: `acc += w · g` (the `accumulate_add` kernel). Panics on
/// mismatched lengths.
pub fn accumulate_add(acc: &mut [f32], g: &[f32], w: f32) {
    assert_eq!(acc.len(), g.len(), "accumulate_add: lengths differ");
    for (a, &g) in acc.iter_mut().zip(g) {
        *a += w * g;
    }
}

/// The last pass: the whole gradient `acc + w · g` (the `accumulate_finish`
/// kernel, which writes it over `g`). Panics on mismatched lengths.
pub fn accumulate_finish(acc: &[f32], g: &[f32], w: f32) -> Vec<f32> {
    assert_eq!(acc.len(), g.len(), "accumulate_finish: lengths differ");
    acc.iter().zip(g).map(|(&a, &g)| a + w * g).collect()
}

/// Twin of the `ema` kernel: `average = momentum·average + (1 − momentum)·param`,
/// or `average = param` on the `first` step of the average (f32 arithmetic, as on
/// the GPU). Panics on mismatched lengths.
pub fn ema_update(average: &mut [f32], param: &[f32], momentum: f32, first: bool) {
    assert_eq!(average.len(), param.len(), "ema_update: lengths differ");
    for (a, &x) in average.iter_mut().zip(param) {
        *a = if first {
            x
        } else {
            momentum * *a + (1.0 - momentum) * x
        };
    }
}

/// Rounding noise of an f32 sum of `k` products of values in [-1, 1]: the
/// classic bound for recursive summation, about `k²·2⁻²⁴`. Meant for the short
/// sums of the tests (k of a few dozen: 6e-5 at 32); at k in the thousands the
/// bound nears the gradients themselves and would excuse most elements.
pub fn sum_noise(k: usize) -> f32 {
    (k * k) as f32 * 2f32.powi(-24)
}

/// Marks where an adaptive step (Adam, RMSprop) is ill-conditioned:
/// `near_zero[i]` becomes true when `grad[i]` is within `noise` of zero. There
/// the update's sign and size follow from how the gradient's sum was rounded
/// (the step divides by the gradient's own magnitude), so a kernel that sums
/// in another f32 order may move that parameter by up to the step size however
/// exact it is.
pub fn mark_ill_conditioned(near_zero: &mut [bool], grad: &[f32], noise: f32) {
    for (z, g) in near_zero.iter_mut().zip(grad) {
        *z |= g.abs() <= noise;
    }
}

/// `want` with its ill-conditioned elements (see [`mark_ill_conditioned`])
/// replaced by `got`'s where the two differ by at most `bound` (the steps'
/// total size): what a strict comparison should then hold the rest to. An
/// ill-conditioned element off by more keeps its expected value and fails.
pub fn accept_ill_conditioned(got: &[f32], want: &[f32], near_zero: &[bool], bound: f32) -> Vec<f32> {
    want.iter()
        .zip(got)
        .zip(near_zero)
        .map(|((&w, &g), &z)| if z && (g - w).abs() <= bound { g } else { w })
        .collect()
}
