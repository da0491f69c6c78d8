// The plain epilogue hook of matmul_subgroup.wgsl: results are stored into C as the
// matmul contract says. Appended by the Shader registry (src/kernels/mod.rs) to
// build the MatmulSubgroup module; matmul_adam.wgsl is the other choice.

const FUSED_ADAM: bool = false;

fn adam_store4(at: u32, g: vec4<f32>, count: u32) {}
