// Fragment shape of the tensor-core matmul on adapters whose cooperative matrices
// are 16×16×16 (NVIDIA, AMD). Prepended to matmul_coop.wgsl (enables must come first).
enable f16;
enable wgpu_cooperative_matrix;

alias CoopA = coop_mat16x16<f16, A>;
alias CoopB = coop_mat16x16<f16, B>;
alias CoopC = coop_mat16x16<f32, C>;
const FRAG: u32 = 16u;
