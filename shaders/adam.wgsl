// The optimizer's uniforms and the Adam / AdamW update, shared by optim.wgsl
// (adam, adam_vec4) and matmul_adam.wgsl (the weight-gradient matmul whose
// epilogue applies Adam instead of storing the gradient). Not a module on its own:
// the Shader registry (src/kernels/mod.rs) prepends this text to those modules.
// The formulas, both epsilon placements and the Step values are documented at the
// top of optim.wgsl; `Step` itself is in step.wgsl, prepended before this text.
// CPU twin: src/reference/optim.rs.

// Hyper-parameters fixed for the run (src/kernels/optim.rs `Params`).
struct OptimParams {
    n: u32,
    flags: u32,
    beta1: f32,
    beta2: f32,
    epsilon: f32,
    weight_decay: f32,
    momentum: f32,
    rho: f32,
}

const KERAS_PLACEMENT: u32 = 1u;

struct AdamUpdate {
    x: vec4<f32>,
    m: vec4<f32>,
    v: vec4<f32>,
}

// One Adam step for 4 parameters x with gradients g and moments m, v.
fn adam_update(x0: vec4<f32>, g: vec4<f32>, m0: vec4<f32>, v0: vec4<f32>, hp: OptimParams,
               st: Step) -> AdamUpdate {
    var x = x0;
    if (hp.weight_decay > 0.0) {
        x = x - st.lr * hp.weight_decay * x;
    }
    let m = hp.beta1 * m0 + (1.0 - hp.beta1) * g;
    let v = hp.beta2 * v0 + (1.0 - hp.beta2) * g * g;
    if ((hp.flags & KERAS_PLACEMENT) != 0u) {
        x = x - st.adam_step * m / (sqrt(v) + hp.epsilon);
    } else {
        x = x - st.adam_step * (m / (sqrt(v) / st.bc2_sqrt + hp.epsilon));
    }
    return AdamUpdate(x, m, v);
}
