// Block copies between row-major tensors viewed as [rows, stride]: for every row r
// and every j < p.len,
//
//   y[r · p.dst_stride + p.dst_offset + j] = x[r · p.src_stride + p.src_offset + j]
//
// (p.n = rows · p.len invocations, one per copied value). Concatenation writes
// each input's block into its place in every row; a slice reads its block; their
// backward passes are the same copy the other way. Values of y outside the blocks
// are not written. Launcher: src/kernels/copy.rs; CPU twin: src/reference/copy.rs.
//
// Bindings: @binding(0) p; @binding(1) y written; @binding(2) x read (distinct buffers).

struct Params {
    n: u32,
    len: u32,
    src_stride: u32,
    src_offset: u32,
    dst_stride: u32,
    dst_offset: u32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

@compute @workgroup_size(WG)
fn copy_blocks(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let r = i / p.len;
    let j = i - r * p.len;
    y[r * p.dst_stride + p.dst_offset + j] = x[r * p.src_stride + p.src_offset + j];
}
