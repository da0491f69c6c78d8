// Inverted dropout, as Keras' Dropout and PyTorch's nn.Dropout in training:
//
//   y[i] = x[i] * (keep(i) ? p.scale : 0)      p.scale = 1 / (1 - rate)
//
// (a dropped NaN or infinity stays NaN, as PyTorch's and Keras' x * mask does)
//
// keep(i) is a pure function of (p.seed, the draw number t = st.draw, i), drawn from a
// counter-based hash instead of a stored random state:
//
//   h = pcg_hash(i ^ pcg_hash(p.seed ^ pcg_hash(t)))   (the PCG output permutation)
//   keep(i) = (h >> 8) >= p.threshold          p.threshold = round(rate * 2^24)
//
// so a unit is kept with probability 1 - threshold / 2^24 (the rate rounded to 24
// bits). The backward pass is the same map applied to the gradient (dx = keep ·
// scale · dy) and recomputes the mask rather than storing it; the CPU twin
// (src/reference/dropout.rs) draws the same mask bit for bit (and the same values,
// where the device does not flush subnormal products to zero). Launcher:
// src/kernels/dropout.rs. At evaluation the layer is the identity and runs no kernel.
//
// pcg_hash is in hash.wgsl (shared with noise.wgsl).
//
// Bindings: @binding(0) p; @binding(1) st, the per-step uniform (step.wgsl, read
// for its draw number); @binding(2) y written; @binding(3) x read. y and x are distinct buffers.

struct Params {
    n: u32,
    threshold: u32,
    scale: f32,
    seed: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> st: Step;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;

@compute @workgroup_size(WG)
fn dropout(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let stream = hash_stream(p.seed, st.draw);
    let keep = (pcg_hash(i ^ stream) >> 8u) >= p.threshold;
    y[i] = x[i] * select(0.0, p.scale, keep);
}
