//! CPU twins of the elementwise kernels (`shaders/elementwise.wgsl`). Activations are
//! evaluated in f64 and rounded once to f32.

use crate::kernels::elementwise::GatedUnit;
use crate::kernels::matmul::Activation;

/// `y[i] = value`.
pub fn fill(y: &mut [f32], value: f32) {
    y.iter_mut().for_each(|v| *v = value);
}

/// `act(x)` for one value (relu of NaN is 0, as on the GPU).
pub fn activate(act: Activation, x: f32) -> f32 {
    let x = x as f64;
    let v = match act {
        Activation::Identity => x,
        Activation::Relu => {
            if x > 0.0 {
                x
            } else {
                0.0
            }
        }
        Activation::Sigmoid => {
            let e = (-x.abs()).exp();
            if x >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) }
        }
        Activation::Tanh => x.tanh(),
    };
    v as f32
}

/// `act'(x)` written through the forward output `y = act(x)`.
pub fn activate_grad(act: Activation, y: f32) -> f32 {
    let y = y as f64;
    let g = match act {
        Activation::Identity => 1.0,
        Activation::Relu => {
            if y > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::Sigmoid => y * (1.0 - y),
        Activation::Tanh => 1.0 - y * y,
    };
    g as f32
}

/// `y = act(x)`.
pub fn activation_forward(act: Activation, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    for (o, &v) in y.iter_mut().zip(x) {
        *o = activate(act, v);
    }
}

/// `dx = dy * act'(x)` through the forward output `y`.
pub fn activation_backward(act: Activation, y: &[f32], dy: &[f32], dx: &mut [f32]) {
    assert!(y.len() == dy.len() && y.len() == dx.len());
    for i in 0..y.len() {
        dx[i] = (dy[i] as f64 * activate_grad(act, y[i]) as f64) as f32;
    }
}

/// `out = a + b`.
pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    assert!(a.len() == b.len() && a.len() == out.len());
    for i in 0..a.len() {
        out[i] = a[i] + b[i];
    }
}

/// `out = a * b`.
pub fn mul(a: &[f32], b: &[f32], out: &mut [f32]) {
    assert!(a.len() == b.len() && a.len() == out.len());
    for i in 0..a.len() {
        out[i] = a[i] * b[i];
    }
}

/// `y = alpha * x`.
pub fn scale(x: &[f32], alpha: f32, y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    for (o, &v) in y.iter_mut().zip(x) {
        *o = alpha * v;
    }
}

/// `y += alpha * x`.
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    for (o, &v) in y.iter_mut().zip(x) {
        *o = (*o as f64 + alpha as f64 * v as f64) as f32;
    }
}

/// `y[r, c] = act(x[r, c] + bias[c])`, `C = bias.len()`.
pub fn bias_add_rows(x: &[f32], bias: &[f32], act: Activation, y: &mut [f32]) {
    bias_add_channels(x, bias, 1, act, y);
}

/// `y[n, c, s] = act(x[n, c, s] + bias[c])` for `x` viewed as `[N, C, S]`,
/// `C = bias.len()`, `S = spatial`.
pub fn bias_add_channels(x: &[f32], bias: &[f32], spatial: usize, act: Activation, y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    let c = bias.len();
    for (i, (o, &v)) in y.iter_mut().zip(x).enumerate() {
        *o = activate(act, v + bias[(i / spatial) % c]);
    }
}

/// `y = exp(alpha · x)` (computed in f64).
pub fn exp_scale(x: &[f32], alpha: f32, y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    for (o, &v) in y.iter_mut().zip(x) {
        *o = (alpha as f64 * v as f64).exp() as f32;
    }
}

/// `out = alpha · a · b`.
pub fn mul_scale(alpha: f32, a: &[f32], b: &[f32], out: &mut [f32]) {
    assert_eq!(a.len(), b.len());
    assert_eq!(a.len(), out.len());
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = (alpha as f64 * x as f64 * y as f64) as f32;
    }
}

/// `y = ln(x)` (computed in f64).
pub fn log(x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    for (o, &v) in y.iter_mut().zip(x) {
        *o = (v as f64).ln() as f32;
    }
}

/// `out = a / b`.
pub fn div(a: &[f32], b: &[f32], out: &mut [f32]) {
    assert_eq!(a.len(), b.len());
    assert_eq!(a.len(), out.len());
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = (x as f64 / y as f64) as f32;
    }
}

/// `y[i] = alpha · x[i / times]`.
pub fn repeat_scale(x: &[f32], times: usize, alpha: f32, y: &mut [f32]) {
    assert_eq!(x.len() * times, y.len());
    for (i, o) in y.iter_mut().enumerate() {
        *o = (alpha as f64 * x[i / times] as f64) as f32;
    }
}

/// The standard normal CDF `Φ(x) = erfc(−x/√2)/2`, in f64.
fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2)
}

/// Twin of `gated_unit`: `y = x·g(x)` with the gate `g` Φ(x) (exact GELU),
/// `σ(2u)`, `u = √(2/π)·(x + 0.044715·x³)` (tanh GELU: `(1 + tanh u)/2 =
/// σ(2u)`), or σ(x) (SiLU).
pub fn gated_unit(x: &[f32], y: &mut [f32], form: GatedUnit) {
    for (o, &v) in y.iter_mut().zip(x) {
        let v = v as f64;
        *o = (v * gate(v, form).0) as f32;
    }
}

/// Twin of `gated_unit_backward`: `dx = dy·(g(x) + x·g'(x))`.
pub fn gated_unit_backward(dy: &[f32], x: &[f32], dx: &mut [f32], form: GatedUnit) {
    for ((o, &g), &v) in dx.iter_mut().zip(dy).zip(x) {
        let v = v as f64;
        let (gate, slope) = gate(v, form);
        *o = (g as f64 * (gate + v * slope)) as f32;
    }
}

/// The gate `g(x)` of activation `form` (`x·g(x)`) and its derivative, in f64.
fn gate(x: f64, form: GatedUnit) -> (f64, f64) {
    match form {
        GatedUnit::Silu => {
            let s = 1.0 / (1.0 + (-x).exp());
            (s, s * (1.0 - s))
        }
        GatedUnit::Gelu => {
            let inv_sqrt_2pi = 1.0 / (2.0 * std::f64::consts::PI).sqrt();
            (normal_cdf(x), (-0.5 * x * x).exp() * inv_sqrt_2pi)
        }
        GatedUnit::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let two_u = 2.0 * c * (x + 0.044715 * x * x * x);
            let s = 1.0 / (1.0 + (-two_u).exp());
            (s, s * (1.0 - s) * 2.0 * c * (1.0 + 3.0 * 0.044715 * x * x))
        }
    }
}

/// Twin of `repeat_blocks`: each block of `block` values of `x` repeated
/// `times` times in a row.
pub fn repeat_blocks(x: &[f32], block: usize, times: usize) -> Vec<f32> {
    x.chunks(block)
        .flat_map(|b| std::iter::repeat_n(b, times).flatten().copied())
        .collect()
}

/// Twin of `sum_blocks`: each block's `times` copies in `dy` summed (f64).
pub fn sum_blocks(dy: &[f32], block: usize, times: usize) -> Vec<f32> {
    dy.chunks(block * times)
        .flat_map(|copies| {
            (0..block).map(move |j| (0..times).map(|k| copies[k * block + j] as f64).sum::<f64>() as f32)
        })
        .collect()
}
