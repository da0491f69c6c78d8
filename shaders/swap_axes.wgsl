// Swaps the two middle axes of a row-major tensor viewed as [outer, a, b, inner]:
//
//   y[y_off + ((o·b + j)·a + i)·inner + d] = x[x_off + ((o·a + i)·b + j)·inner + d]
//
// for o < outer, i < a, j < b, d < inner; one invocation per element (p.n of them),
// reading x in order (coalesced) and writing rows of `inner` contiguous values.
// Attention uses it to split a [batch, tokens, heads, head_dim] projection into
// per-head matrices [batch, heads, tokens, head_dim] and to merge them back.
// Values of y outside the n written are left as they were.
// Launcher: src/kernels/swap_axes.rs; CPU twin: src/reference/swap_axes.rs.
//
// Bindings: @binding(0) p; @binding(1) y written; @binding(2) x read (distinct buffers).

struct Params {
    n: u32,
    a: u32,
    b: u32,
    inner: u32,
    x_off: u32,
    y_off: u32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

@compute @workgroup_size(WG)
fn swap_axes(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let e = (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
    if (e >= p.n) {
        return;
    }
    let d = e % p.inner;
    let r = e / p.inner;
    let j = r % p.b;
    let r2 = r / p.b;
    let i = r2 % p.a;
    let o = r2 / p.a;
    y[p.y_off + ((o * p.b + j) * p.a + i) * p.inner + d] = x[p.x_off + e];
}
