// The per-step uniform, written once per training step before its submission
// (src/kernels/optim.rs `StepValues`, `StepUniform`). Read by the optimizers
// (optim.wgsl, matmul_adam.wgsl through adam.wgsl) and by dropout.wgsl, whose
// mask depends on the step number t. Not a module on its own: the Shader registry
// (src/kernels/mod.rs) prepends this text to the modules that bind it.
struct Step {
    lr: f32,
    t: u32,        // optimizer step, 1-based
    bc1: f32,
    bc2: f32,
    adam_step: f32,
    bc2_sqrt: f32,
    _pad0: u32,
    _pad1: u32,
}
