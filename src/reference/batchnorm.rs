//! CPU twin of `shaders/batchnorm.wgsl` (sums in f64).

use crate::error::{Error, Result};
use crate::kernels::batchnorm::BatchNormDesc;
use crate::kernels::matmul::Activation;
use crate::reference::elementwise::activate_grad;
use crate::reference::matmul::activation;

/// `act'(z)` for a pre-activation `z`, written through the output as the GPU does.
fn activation_grad(act: Activation, z: f64) -> f64 {
    activate_grad(act, activation(act, z) as f32) as f64
}

/// Indices of channel `j`'s elements in x viewed as `[n, c, s]`.
fn channel(d: &BatchNormDesc, j: usize) -> impl Iterator<Item = usize> + '_ {
    (0..d.n).flat_map(move |i| (0..d.s).map(move |k| (i * d.c + j) * d.s + k))
}

/// Errors unless `d` is valid, every `full` length is `n·c·s`, every `per_channel`
/// one is `c` and `saved` (the `[mean | inv_std]` buffer), when given, is `2·c`.
fn check_lens(d: &BatchNormDesc, full: &[usize], per_channel: &[usize], saved: Option<usize>) -> Result<()> {
    d.validate()?;
    let fits = full.iter().all(|&l| l == d.numel())
        && per_channel.iter().all(|&l| l == d.c)
        && saved.is_none_or(|l| l == 2 * d.c);
    if !fits {
        return Err(Error::shape(
            "batchnorm",
            format!("slices do not fit the view [n={}, c={}, s={}]", d.n, d.c, d.s),
        ));
    }
    Ok(())
}

/// Training forward: fills `y` and `saved` (`[2, c]`: means, then `1/√(var + ε)`)
/// and moves `moving_mean`/`moving_var` (see
/// [`crate::kernels::batchnorm::batchnorm_train`]).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_train(
    d: &BatchNormDesc,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    saved: &mut [f32],
    moving_mean: &mut [f32],
    moving_var: &mut [f32],
) -> Result<()> {
    check_lens(
        d,
        &[x.len(), y.len()],
        &[gamma.len(), beta.len(), moving_mean.len(), moving_var.len()],
        Some(saved.len()),
    )?;
    let m = (d.n * d.s) as f64;
    let mu = d.momentum;
    for j in 0..d.c {
        let mean = channel(d, j).map(|k| x[k] as f64).sum::<f64>() / m;
        let var = channel(d, j).map(|k| (x[k] as f64 - mean).powi(2)).sum::<f64>() / m;
        let inv_std = 1.0 / (var + d.epsilon as f64).sqrt();
        for k in channel(d, j) {
            let z = gamma[j] as f64 * (x[k] as f64 - mean) * inv_std + beta[j] as f64;
            y[k] = activation(d.activation, z) as f32;
        }
        saved[j] = mean as f32;
        saved[d.c + j] = inv_std as f32;
        moving_mean[j] = moving_mean[j] * mu + mean as f32 * (1.0 - mu);
        moving_var[j] = moving_var[j] * mu + var as f32 * (1.0 - mu);
    }
    Ok(())
}

/// Evaluation forward with the moving statistics, then the activation.
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
        None,
    )?;
    for j in 0..d.c {
        let inv_std = 1.0 / (moving_var[j] as f64 + d.epsilon as f64).sqrt();
        for k in channel(d, j) {
            let z = (x[k] as f64 - moving_mean[j] as f64) * inv_std * gamma[j] as f64 + beta[j] as f64;
            y[k] = activation(d.activation, z) as f32;
        }
    }
    Ok(())
}

/// Backward of [`batchnorm_eval`] for `dx` only (the other inputs are constants).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_eval_backward(
    d: &BatchNormDesc,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    moving_mean: &[f32],
    moving_var: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) -> Result<()> {
    check_lens(
        d,
        &[x.len(), dy.len(), dx.len()],
        &[gamma.len(), beta.len(), moving_mean.len(), moving_var.len()],
        None,
    )?;
    for j in 0..d.c {
        let scale = gamma[j] as f64 / (moving_var[j] as f64 + d.epsilon as f64).sqrt();
        for k in channel(d, j) {
            let z = (x[k] as f64 - moving_mean[j] as f64) * scale + beta[j] as f64;
            dx[k] = (scale * dy[k] as f64 * activation_grad(d.activation, z)) as f32;
        }
    }
    Ok(())
}

/// Backward from the saved statistics, `dy` being the gradient of the activated
/// output: `dgamma`, `dbeta`, and `dx` when given.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward(
    d: &BatchNormDesc,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    saved: &[f32],
    dy: &[f32],
    mut dx: Option<&mut [f32]>,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) -> Result<()> {
    let dx_len = dx.as_ref().map_or(d.numel(), |v| v.len());
    check_lens(
        d,
        &[x.len(), dy.len(), dx_len],
        &[gamma.len(), beta.len(), dgamma.len(), dbeta.len()],
        Some(saved.len()),
    )?;
    let m = (d.n * d.s) as f64;
    for j in 0..d.c {
        let (mean, inv_std) = (saved[j] as f64, saved[d.c + j] as f64);
        let scale = gamma[j] as f64 * inv_std;
        let xhat = |k: usize| (x[k] as f64 - mean) * inv_std;
        // The gradient before the activation.
        let g = |k: usize| {
            dy[k] as f64 * activation_grad(d.activation, scale * (x[k] as f64 - mean) + beta[j] as f64)
        };
        let sum_g: f64 = channel(d, j).map(g).sum();
        let sum_g_xhat: f64 = channel(d, j).map(|k| g(k) * xhat(k)).sum();
        dbeta[j] = sum_g as f32;
        dgamma[j] = sum_g_xhat as f32;
        if let Some(dx) = dx.as_deref_mut() {
            for k in channel(d, j) {
                dx[k] = (scale * (g(k) - sum_g / m - xhat(k) * sum_g_xhat / m)) as f32;
            }
        }
    }
    Ok(())
}
