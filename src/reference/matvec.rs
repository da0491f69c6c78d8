//! CPU twin of `shaders/matvec.wgsl`, in f64.

use crate::kernels::matmul::Activation;
use crate::reference::matmul::activation;

/// Twin of `kernels::matvec::matvec`: `y[m, j] = act(Σ_k x[m, k]·w[j, k] + bias[j])`
/// with `w` `[n, k]` row-major and `x` `m = x.len() / k` rows.
pub fn matvec(x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Activation, n: usize, k: usize) -> Vec<f32> {
    let m = x.len() / k;
    let mut y = vec![0.0; m * n];
    for r in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k).map(|i| x[r * k + i] as f64 * w[j * k + i] as f64).sum();
            let v = dot + bias.map_or(0.0, |b| b[j] as f64);
            y[r * n + j] = activation(act, v) as f32;
        }
    }
    y
}
