//! CPU twin of `shaders/batchnorm.wgsl` (sums in f64).

use crate::error::{Error, Result};
use crate::kernels::batchnorm::BatchNormDesc;

/// Indices of channel `j`'s elements in x viewed as `[n, c, s]`.
fn channel(d: &BatchNormDesc, j: usize) -> impl Iterator<Item = usize> + '_ {
    (0..d.n).flat_map(move |i| (0..d.s).map(move |k| (i * d.c + j) * d.s + k))
}

fn check_lens(d: &BatchNormDesc, full: &[usize], per_channel: &[usize]) -> Result<()> {
    d.validate()?;
    if full.iter().any(|&l| l != d.numel()) || per_channel.iter().any(|&l| l != d.c) {
        return Err(Error::shape(
            "batchnorm",
            format!("slices do not fit the view [n={}, c={}, s={}]", d.n, d.c, d.s),
        ));
    }
    Ok(())
}

/// Training forward; returns nothing but fills `y`, `saved_mean`, `saved_inv_std`
/// and moves `moving_mean`/`moving_var` (see [`crate::kernels::batchnorm::batchnorm_train`]).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_train(
    d: &BatchNormDesc,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    saved_mean: &mut [f32],
    saved_inv_std: &mut [f32],
    moving_mean: &mut [f32],
    moving_var: &mut [f32],
) -> Result<()> {
    check_lens(
        d,
        &[x.len(), y.len()],
        &[
            gamma.len(),
            beta.len(),
            saved_mean.len(),
            saved_inv_std.len(),
            moving_mean.len(),
            moving_var.len(),
        ],
    )?;
    let m = (d.n * d.s) as f64;
    let mu = d.momentum;
    for j in 0..d.c {
        let mean = channel(d, j).map(|k| x[k] as f64).sum::<f64>() / m;
        let var = channel(d, j).map(|k| (x[k] as f64 - mean).powi(2)).sum::<f64>() / m;
        let inv_std = 1.0 / (var + d.epsilon as f64).sqrt();
        for k in channel(d, j) {
            y[k] = (gamma[j] as f64 * (x[k] as f64 - mean) * inv_std + beta[j] as f64) as f32;
        }
        saved_mean[j] = mean as f32;
        saved_inv_std[j] = inv_std as f32;
        moving_mean[j] = moving_mean[j] * mu + mean as f32 * (1.0 - mu);
        moving_var[j] = moving_var[j] * mu + var as f32 * (1.0 - mu);
    }
    Ok(())
}

/// Evaluation forward with the moving statistics.
pub fn batchnorm_eval(
    d: &BatchNormDesc,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    moving_mean: &[f32],
    moving_var: &[f32],
    y: &mut [f32],
) -> Result<()> {
    check_lens(
        d,
        &[x.len(), y.len()],
        &[gamma.len(), beta.len(), moving_mean.len(), moving_var.len()],
    )?;
    for j in 0..d.c {
        let inv_std = 1.0 / (moving_var[j] as f64 + d.epsilon as f64).sqrt();
        for k in channel(d, j) {
            y[k] =
                ((x[k] as f64 - moving_mean[j] as f64) * inv_std * gamma[j] as f64 + beta[j] as f64) as f32;
        }
    }
    Ok(())
}

/// Backward from the saved statistics: `dgamma`, `dbeta`, and `dx` when given.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward(
    d: &BatchNormDesc,
    x: &[f32],
    gamma: &[f32],
    saved_mean: &[f32],
    saved_inv_std: &[f32],
    dy: &[f32],
    mut dx: Option<&mut [f32]>,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) -> Result<()> {
    let dx_len = dx.as_ref().map_or(d.numel(), |v| v.len());
    check_lens(
        d,
        &[x.len(), dy.len(), dx_len],
        &[
            gamma.len(),
            saved_mean.len(),
            saved_inv_std.len(),
            dgamma.len(),
            dbeta.len(),
        ],
    )?;
    let m = (d.n * d.s) as f64;
    for j in 0..d.c {
        let (mean, inv_std) = (saved_mean[j] as f64, saved_inv_std[j] as f64);
        let xhat = |k: usize| (x[k] as f64 - mean) * inv_std;
        let sum_dy: f64 = channel(d, j).map(|k| dy[k] as f64).sum();
        let sum_dy_xhat: f64 = channel(d, j).map(|k| dy[k] as f64 * xhat(k)).sum();
        dbeta[j] = sum_dy as f32;
        dgamma[j] = sum_dy_xhat as f32;
        if let Some(dx) = dx.as_deref_mut() {
            let scale = gamma[j] as f64 * inv_std;
            for k in channel(d, j) {
                dx[k] = (scale * (dy[k] as f64 - sum_dy / m - xhat(k) * sum_dy_xhat / m)) as f32;
            }
        }
    }
    Ok(())
}
