//! CPU twins of the layer and RMS normalization kernels
//! (`shaders/layer_norm.wgsl`), f64 arithmetic.

/// `y = (x − mean)/sqrt(var + eps)·gamma + beta` for rows of `gamma.len()` values;
/// `stats` receives `(mean, 1/sqrt(var + eps))` per row.
pub fn layer_norm_forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    y: &mut [f32],
    stats: &mut [f32],
) {
    let cols = gamma.len();
    for ((xr, yr), st) in x.chunks(cols).zip(y.chunks_mut(cols)).zip(stats.chunks_mut(2)) {
        let n = cols as f64;
        let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let rstd = 1.0 / (var + eps as f64).sqrt();
        for (j, (o, &v)) in yr.iter_mut().zip(xr).enumerate() {
            *o = ((v as f64 - mean) * rstd * gamma[j] as f64 + beta[j] as f64) as f32;
        }
        st[0] = mean as f32;
        st[1] = rstd as f32;
    }
}

/// The gradients of [`layer_norm_forward`] from `dy`, recomputing each row's
/// statistics from `x`: `dx` is the input's, `dgamma` and `dbeta` are summed over
/// the rows (written, not added to).
pub fn layer_norm_backward(
    x: &[f32],
    gamma: &[f32],
    eps: f32,
    dy: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let cols = gamma.len();
    let n = cols as f64;
    let mut dg = vec![0f64; cols];
    let mut db = vec![0f64; cols];
    for ((xr, dyr), dxr) in x.chunks(cols).zip(dy.chunks(cols)).zip(dx.chunks_mut(cols)) {
        let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let rstd = 1.0 / (var + eps as f64).sqrt();
        let xh: Vec<f64> = xr.iter().map(|&v| (v as f64 - mean) * rstd).collect();
        let g: Vec<f64> = dyr
            .iter()
            .zip(gamma)
            .map(|(&d, &w)| d as f64 * w as f64)
            .collect();
        let sg = g.iter().sum::<f64>() / n;
        let sgx = g.iter().zip(&xh).map(|(a, b)| a * b).sum::<f64>() / n;
        for j in 0..cols {
            dxr[j] = (rstd * (g[j] - sg - xh[j] * sgx)) as f32;
            dg[j] += dyr[j] as f64 * xh[j];
            db[j] += dyr[j] as f64;
        }
    }
    for j in 0..cols {
        dgamma[j] = dg[j] as f32;
        dbeta[j] = db[j] as f32;
    }
}

/// `y = x/sqrt(mean(x²) + eps)·gamma` for rows of `gamma.len()` values; `stats`
/// receives `(0, 1/sqrt(mean(x²) + eps))` per row.
pub fn rms_norm_forward(x: &[f32], gamma: &[f32], eps: f32, y: &mut [f32], stats: &mut [f32]) {
    let cols = gamma.len();
    for ((xr, yr), st) in x.chunks(cols).zip(y.chunks_mut(cols)).zip(stats.chunks_mut(2)) {
        let rstd = rms_rstd(xr, eps);
        for (j, (o, &v)) in yr.iter_mut().zip(xr).enumerate() {
            *o = (v as f64 * rstd * gamma[j] as f64) as f32;
        }
        st[0] = 0.0;
        st[1] = rstd as f32;
    }
}

/// `1/sqrt(mean(x²) + eps)` of a row.
fn rms_rstd(row: &[f32], eps: f32) -> f64 {
    let mean_square = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / row.len() as f64;
    1.0 / (mean_square + eps as f64).sqrt()
}

/// The gradients of [`rms_norm_forward`] from `dy`, recomputing each row's
/// statistic from `x`: with `x̂ = x·rstd` and `g = dy·gamma`, `dx = rstd·(g −
/// x̂·mean(g·x̂))`; `dgamma` is summed over the rows (written, not added to).
pub fn rms_norm_backward(x: &[f32], gamma: &[f32], eps: f32, dy: &[f32], dx: &mut [f32], dgamma: &mut [f32]) {
    let cols = gamma.len();
    let mut dg = vec![0f64; cols];
    for ((xr, dyr), dxr) in x.chunks(cols).zip(dy.chunks(cols)).zip(dx.chunks_mut(cols)) {
        let rstd = rms_rstd(xr, eps);
        let xh: Vec<f64> = xr.iter().map(|&v| v as f64 * rstd).collect();
        let g: Vec<f64> = dyr
            .iter()
            .zip(gamma)
            .map(|(&d, &w)| d as f64 * w as f64)
            .collect();
        let sgx = g.iter().zip(&xh).map(|(a, b)| a * b).sum::<f64>() / cols as f64;
        for j in 0..cols {
            dxr[j] = (rstd * (g[j] - xh[j] * sgx)) as f32;
            dg[j] += dyr[j] as f64 * xh[j];
        }
    }
    for (d, g) in dgamma.iter_mut().zip(dg) {
        *d = g as f32;
    }
}
