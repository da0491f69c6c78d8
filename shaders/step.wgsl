// The per-step uniform, written before each submitted training pass (once per step
// unless gradients are accumulated over several passes)
// (src/kernels/optim.rs `StepValues`, `StepUniform`). Read by the optimizers
// (optim.wgsl, matmul_adam.wgsl through adam.wgsl), by the random draws of
// dropout.wgsl, noise.wgsl and attention.wgsl, whose masks and values depend on the
// draw number, and by optim.wgsl's gradient accumulation (grad_scale). Not a module
// on its own: the Shader registry (src/kernels/mod.rs) prepends this text to the
// modules that bind it.
struct Step {
    lr: f32,
    t: u32,          // optimizer step, 1-based
    bc1: f32,
    bc2: f32,
    adam_step: f32,
    bc2_sqrt: f32,
    draw: u32,       // forward/backward pass number, 1-based: the random streams' counter
                     // (equal to t unless gradients are accumulated over several passes)
    grad_scale: f32, // this pass' weight in an accumulated gradient (1 otherwise)
}
