// Batch normalization over the channel axis of x viewed as [n, c, s] (NCHW with
// s = H·W; a Dense layer's [batch, features] with s = 1), as Keras'
// BatchNormalization on that axis and PyTorch's BatchNorm1d/2d, followed by an
// optional activation act (identity, relu, sigmoid, tanh: activation.wgsl), so
// the usual BatchNormalization → Activation pair is one pass:
//
//   training:    mean[j] = Σ x / m,  var[j] = Σ (x - mean)² / m   (m = n·s, biased)
//                y = act(z),  z = γ (x - mean) / √(var + ε) + β
//                moving_mean = μ·moving_mean + (1 - μ)·mean     (μ = Keras' momentum)
//                moving_var  = μ·moving_var  + (1 - μ)·var      (Keras: the biased var)
//   evaluating:  y = act(γ (x - moving_mean) / √(moving_var + ε) + β)
//   eval backward (a frozen layer trained through, Keras' inference mode; γ, β and
//                the statistics are constants): dx = dy · act'(z) · γ / √(moving_var + ε)
//   backward:    g = dy · act'(z) (z recomputed from x: nothing more is read),
//                x̂ = (x - mean)·inv_std,  dγ = Σ g·x̂,  dβ = Σ g,
//                dx = γ·inv_std·(g - dβ/m - x̂·dγ/m)
//
// The training forward keeps [mean | inv_std] per channel (one [2, c] buffer) for
// backward. Two passes over the channel (mean, then squared deviations) rather
// than Σx² - mean²: no cancellation when |mean| ≫ std. One workgroup per channel,
// strided loops and a tree reduction; the backward for s = 1 (`*_rows`) takes one
// invocation per channel looping over the batch (see BENCHMARKS.md for why the
// training forward does not: on lavapipe that form of it ran 9× slower). CPU twin: src/reference/batchnorm.rs;
// launcher: src/kernels/batchnorm.rs.
//
// Bindings (every entry point): @binding(0) p; then per entry point as declared
// (at most 8 storage buffers each, WebGPU's default limit). Output buffers are
// distinct from input buffers.

struct Params {
    n: u32,
    c: u32,
    s: u32,
    momentum: f32,
    epsilon: f32,
    // Activation kind after the normalization (activation.wgsl).
    act: u32,
    // batchnorm_backward: 1 to write dx, 0 when x needs no gradient.
    write_dx: u32,
    _pad: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
// Training forward: this batch's per-channel mean (saved[j]) and 1/√(var + ε)
// (saved[c + j]), written; backward reads them.
@group(0) @binding(5) var<storage, read_write> saved: array<f32>;
// Training forward: updated. Evaluating: read.
@group(0) @binding(7) var<storage, read_write> moving_mean: array<f32>;
@group(0) @binding(8) var<storage, read_write> moving_var: array<f32>;
// Backward: dy (the gradient of y) read; dγ, dβ written, and dx when p.write_dx is 1.
@group(0) @binding(9) var<storage, read> dy: array<f32>;
@group(0) @binding(10) var<storage, read_write> dx: array<f32>;
@group(0) @binding(11) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(12) var<storage, read_write> dbeta: array<f32>;

var<workgroup> red_a: array<f32, WG>;
var<workgroup> red_b: array<f32, WG>;

fn group_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y;
}

// Element t (< n·s) of channel j.
fn at(j: u32, t: u32) -> u32 {
    let i = t / p.s;
    return (i * p.c + j) * p.s + (t - i * p.s);
}

// Sums of `a` and of `b` over the workgroup; every invocation gets both.
fn workgroup_sum2(lid: u32, a: f32, b: f32) -> vec2<f32> {
    red_a[lid] = a;
    red_b[lid] = b;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k = k >> 1u) {
        if (lid < k) {
            red_a[lid] = red_a[lid] + red_a[lid + k];
            red_b[lid] = red_b[lid] + red_b[lid + k];
        }
        workgroupBarrier();
    }
    let r = vec2<f32>(red_a[0], red_b[0]);
    workgroupBarrier();
    return r;
}

// Keeps channel j's batch statistics for backward and moves its moving ones.
fn save_statistics(j: u32, mean: f32, variance: f32, inv_std: f32) {
    saved[j] = mean;
    saved[p.c + j] = inv_std;
    moving_mean[j] = moving_mean[j] * p.momentum + mean * (1.0 - p.momentum);
    moving_var[j] = moving_var[j] * p.momentum + variance * (1.0 - p.momentum);
}

// The gradient before the activation at element k of a channel whose
// normalization is z = x·scale + shift.
fn pre_activation_grad(k: u32, scale: f32, shift: f32) -> f32 {
    return dy[k] * activation_grad(p.act, apply_activation(p.act, x[k] * scale + shift));
}

@compute @workgroup_size(WG)
fn batchnorm_train(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let j = group_index(wg, nwg);
    let valid = j < p.c;
    let m = select(0u, p.n * p.s, valid);
    let inv_m = 1.0 / f32(max(m, 1u));
    var acc = 0.0;
    for (var t = lid; t < m; t = t + WG) {
        acc = acc + x[at(j, t)];
    }
    let mean = workgroup_sum2(lid, acc, 0.0).x * inv_m;
    acc = 0.0;
    for (var t = lid; t < m; t = t + WG) {
        let d = x[at(j, t)] - mean;
        acc = acc + d * d;
    }
    let variance = workgroup_sum2(lid, acc, 0.0).x * inv_m;
    if (!valid) {
        return;
    }
    let inv_std = 1.0 / sqrt(variance + p.epsilon);
    let scale = gamma[j] * inv_std;
    let shift = beta[j] - mean * scale;
    for (var t = lid; t < m; t = t + WG) {
        let k = at(j, t);
        y[k] = apply_activation(p.act, x[k] * scale + shift);
    }
    if (lid == 0u) {
        save_statistics(j, mean, variance, inv_std);
    }
}

// One invocation per element.
@compute @workgroup_size(WG)
fn batchnorm_eval(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let k = group_index(wg, nwg) * WG + lid;
    if (k >= p.n * p.c * p.s) {
        return;
    }
    let j = (k / p.s) % p.c;
    let scale = gamma[j] / sqrt(moving_var[j] + p.epsilon);
    y[k] = apply_activation(p.act, (x[k] - moving_mean[j]) * scale + beta[j]);
}

// The gradient of batchnorm_eval's input (γ, β and the moving statistics are
// constants): one invocation per element.
@compute @workgroup_size(WG)
fn batchnorm_eval_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let k = group_index(wg, nwg) * WG + lid;
    if (k >= p.n * p.c * p.s) {
        return;
    }
    let j = (k / p.s) % p.c;
    let scale = gamma[j] / sqrt(moving_var[j] + p.epsilon);
    dx[k] = scale * pre_activation_grad(k, scale, beta[j] - moving_mean[j] * scale);
}

@compute @workgroup_size(WG)
fn batchnorm_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let j = group_index(wg, nwg);
    let valid = j < p.c;
    let m = select(0u, p.n * p.s, valid);
    var mean = 0.0;
    var inv_std = 0.0;
    var scale = 0.0;
    var shift = 0.0;
    if (valid) {
        mean = saved[j];
        inv_std = saved[p.c + j];
        scale = gamma[j] * inv_std;
        shift = beta[j] - mean * scale;
    }
    var sum_g = 0.0;
    var sum_g_xhat = 0.0;
    for (var t = lid; t < m; t = t + WG) {
        let k = at(j, t);
        let g = pre_activation_grad(k, scale, shift);
        sum_g = sum_g + g;
        sum_g_xhat = sum_g_xhat + g * (x[k] - mean) * inv_std;
    }
    let sums = workgroup_sum2(lid, sum_g, sum_g_xhat);
    if (!valid) {
        return;
    }
    if (lid == 0u) {
        dbeta[j] = sums.x;
        dgamma[j] = sums.y;
    }
    if (p.write_dx == 0u) {
        return;
    }
    let inv_m = 1.0 / f32(m);
    let mean_g = sums.x * inv_m;
    let mean_g_xhat = sums.y * inv_m;
    for (var t = lid; t < m; t = t + WG) {
        let k = at(j, t);
        let xhat = (x[k] - mean) * inv_std;
        dx[k] = scale * (pre_activation_grad(k, scale, shift) - mean_g - xhat * mean_g_xhat);
    }
}

// batchnorm_backward for s = 1 (a Dense layer's [batch, features]): one invocation
// per channel looping over the batch, so neighbouring invocations read neighbouring
// features and no workgroup waits at barriers for a handful of rows.
@compute @workgroup_size(WG)
fn batchnorm_backward_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let j = group_index(wg, nwg) * WG + lid;
    if (j >= p.c) {
        return;
    }
    let mean = saved[j];
    let inv_std = saved[p.c + j];
    let scale = gamma[j] * inv_std;
    let shift = beta[j] - mean * scale;
    var sum_g = 0.0;
    var sum_g_xhat = 0.0;
    for (var i = 0u; i < p.n; i = i + 1u) {
        let k = i * p.c + j;
        let g = pre_activation_grad(k, scale, shift);
        sum_g = sum_g + g;
        sum_g_xhat = sum_g_xhat + g * (x[k] - mean) * inv_std;
    }
    dbeta[j] = sum_g;
    dgamma[j] = sum_g_xhat;
    if (p.write_dx == 0u) {
        return;
    }
    let inv_n = 1.0 / f32(p.n);
    let mean_g = sum_g * inv_n;
    let mean_g_xhat = sum_g_xhat * inv_n;
    for (var i = 0u; i < p.n; i = i + 1u) {
        let k = i * p.c + j;
        let xhat = (x[k] - mean) * inv_std;
        dx[k] = scale * (pre_activation_grad(k, scale, shift) - mean_g - xhat * mean_g_xhat);
    }
}
