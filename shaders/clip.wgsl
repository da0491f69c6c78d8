// Gradient clipping by global norm (PyTorch's clip_grad_norm_, Keras' global_clipnorm):
// every gradient g_k of a training step is multiplied by
//     scale = min(1, max_norm / (‖g‖ + 1e-6)),   ‖g‖ = sqrt(Σ_k Σ_i g_k[i]²),
// PyTorch's formula. Three entry points, recorded in this order inside the step:
//   sum_squares  once per gradient tensor: parts[offset + w] = Σ x[i]² over the
//                elements workgroup w visits (i = w·WG + lid, stepping by the
//                dispatch's WG · num_workgroups.x; a 1-D grid);
//   clip_factor  once, one workgroup: factor[0] = scale, factor[1] = ‖g‖ from the
//                p.n partial sums (a NaN or infinite gradient gives a NaN scale,
//                as in PyTorch: the step's loss check then stops training);
//   scale_by     once per gradient tensor: g[i] *= factor[0] (grid folded in 2-D/3-D
//                past 65,535 workgroups, each index bounds-checked).
// Partial sums stay in f32 (the CPU twin, src/reference/clip.rs, sums in f64).
// Launchers: src/kernels/clip.rs.

struct Params {
    n: u32,        // sum_squares, scale_by: elements; clip_factor: partial sums
    offset: u32,   // sum_squares: the first slot of `parts` this tensor fills
    max_norm: f32, // clip_factor
    _pad: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> parts: array<f32>;
@group(0) @binding(3) var<storage, read_write> factor: array<f32>;
@group(0) @binding(4) var<storage, read_write> g: array<f32>;

var<workgroup> red: array<f32, 256>;

// Sum of `v` over the workgroup, for invocation 0.
fn workgroup_total(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    return red[0];
}

@compute @workgroup_size(WG)
fn sum_squares(@builtin(workgroup_id) wg: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = wg.x * WG + lid; i < p.n; i = i + nwg.x * WG) {
        let v = x[i];
        acc = acc + v * v;
    }
    let total = workgroup_total(lid, acc);
    if (lid == 0u) {
        parts[p.offset + wg.x] = total;
    }
}

@compute @workgroup_size(WG)
fn clip_factor(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.n; i = i + WG) {
        acc = acc + parts[i];
    }
    let total = workgroup_total(lid, acc);
    if (lid == 0u) {
        let norm = sqrt(total);
        let q = p.max_norm / (norm + 1e-6);
        // A NaN norm gives a NaN factor, as PyTorch's clamp does (min() may not
        // propagate it); the bit test is immune to compilers that assume no NaN.
        let nan = (bitcast<u32>(q) & 0x7fffffffu) > 0x7f800000u;
        factor[0] = select(min(1.0, q), q, nan);
        factor[1] = norm;
    }
}

@compute @workgroup_size(WG)
fn scale_by(@builtin(workgroup_id) wg: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
    if (i < p.n) {
        g[i] = g[i] * factor[0];
    }
}
