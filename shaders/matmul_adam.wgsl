// The Adam epilogue hook of matmul_subgroup.wgsl: appended (after adam.wgsl and
// matmul_subgroup.wgsl) by the Shader registry (src/kernels/mod.rs) to build the
// MatmulSubgroupAdam module. Launcher: src/kernels/matmul.rs `matmul_adam`.
//
// Contract: the product is the gradient of a parameter P of C's shape [M, N].
// Instead of storing it, each output applies one Adam step (adam_update in
// adam.wgsl, the arithmetic of optim.wgsl's adam) to P and its moments m and v
// (bindings 7-9, same layout). batch = 1, C offset 0, N a multiple of 4, no
// bias, no activation, no accumulate (the launcher checks). This removes the gradient's store and the optimizer's reload
// of it; on lavapipe every storage access costs a loop over the SIMD lanes.

const FUSED_ADAM: bool = true;

// The parameter and its moments, seen 4 columns at a time (N is a multiple of 4,
// so every group of 4 columns the epilogue hands over is whole or absent). C's
// own binding holds a stand-in and is never touched.
@group(0) @binding(5) var<uniform> st: Step;
@group(0) @binding(6) var<uniform> hp: OptimParams;
@group(0) @binding(7) var<storage, read_write> adam_p: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> adam_m: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> adam_v: array<vec4<f32>>;

// Applies Adam to the 4 parameters at flat index at (a multiple of 4) whose
// gradients are g, when count is 4 (count 0: columns past N, nothing to do).
fn adam_store4(at: u32, g: vec4<f32>, count: u32) {
    if (count == 4u) {
        let q = at / 4u;
        let r = adam_update(adam_p[q], g, adam_m[q], adam_v[q], hp, st);
        adam_p[q] = r.x;
        adam_m[q] = r.m;
        adam_v[q] = r.v;
    }
}
