// Fragment shape of the tensor-core matmul on adapters whose cooperative matrices
// are 8×8×8 (Apple's simdgroup matrices, Mesa's lavapipe). Prepended to
// matmul_coop.wgsl (enables must come first).
enable f16;
enable wgpu_cooperative_matrix;

alias CoopA = coop_mat8x8<f16, A>;
alias CoopB = coop_mat8x8<f16, B>;
alias CoopC = coop_mat8x8<f32, C>;
const FRAG: u32 = 8u;
