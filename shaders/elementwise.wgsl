// Elementwise kernels over flat f32 arrays of length p.n.
//
// Launchers: src/kernels/elementwise.rs. CPU twins: src/reference/elementwise.rs.
// Every entry point handles any n: the launcher folds the workgroup count into a
// 2-D/3-D grid when it exceeds 65,535 and each invocation bounds-checks its index.

struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

// Linear invocation index over a (possibly folded) grid.
fn linear_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
}

// fill: y[i] = alpha for i < n.
@compute @workgroup_size(WG)
fn fill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = p.alpha;
    }
}
