// Random values as a graph op (the ε of a variational autoencoder's sample, a GAN
// generator's input): element i of draw t (st.draw) is a pure function of (p.seed, t, i),
// hashed as dropout's masks are (hash.wgsl), so every step draws anew and the CPU
// twin (src/reference/noise.rs) draws the same numbers.
//
//   u(k)   = (f32(pcg_hash(k ^ stream) >> 8) + 0.5) / 2^24     in (0, 1), never 0 or 1
//   normal:  y[i] = mean + std · √(−2 ln u(2i)) · cos(2π (u(2i + 1) − 1/2))   (Box-Muller)
//   uniform: y[i] = low + (high − low) · u(2i)
//
// (p.a, p.b) are (mean, std) or (low, high). The index 2i wraps past 2^31 elements,
// which no tensor here reaches. Launcher: src/kernels/noise.rs.
//
// Bindings: @binding(0) p; @binding(1) st, the per-step uniform (step.wgsl); @binding(2)
// y written.

struct Params {
    n: u32,
    seed: u32,
    // 0: normal, 1: uniform.
    kind: u32,
    _pad: u32,
    a: f32,
    b: f32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> st: Step;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn unit_open(k: u32, stream: u32) -> f32 {
    return (f32(pcg_hash(k ^ stream) >> 8u) + 0.5) * (1.0 / 16777216.0);
}

@compute @workgroup_size(WG)
fn noise(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let stream = hash_stream(p.seed, st.draw);
    let u1 = unit_open(2u * i, stream);
    if (p.kind == 1u) {
        y[i] = p.a + (p.b - p.a) * u1;
        return;
    }
    let u2 = unit_open(2u * i + 1u, stream);
    // ln u1 < 0 always; max() keeps a driver's approximate log near 1 from a NaN.
    let r = sqrt(max(-2.0 * log(u1), 0.0));
    // cos over (−π, π), where Vulkan bounds its error (2^-11 absolute).
    y[i] = p.a + p.b * r * cos(6.283185307179586 * (u2 - 0.5));
}
