// Fused optimizer steps: one dispatch updates one parameter tensor and its state
// tensors elementwise, for any length p.n.
//
// Launchers: src/kernels/optim.rs. CPU twins: src/reference/optim.rs.
//
// Bindings (the same for every optimizer entry point; each uses a subset; gradient
// accumulation's are below):
//   @binding(0) p:     OptimParams, hyper-parameters fixed for the whole run (one per dispatch).
//   @binding(1) st:    Step, the per-step values, one buffer shared by every optimizer
//                      dispatch of a model and rewritten before each submitted pass with
//                      queue.write_buffer, so no bind group is rebuilt during training.
//   @binding(2) param: the parameter, f32[n], updated in place.
//   @binding(3) grad:  its gradient, f32[n], read only.
//   @binding(4..6) s0, s1, s2: optimizer state tensors, f32[n] each, updated in place;
//                      zero-initialised by the caller before step 1.
// Grids: the launcher folds more than 65,535 workgroups into a 2-D/3-D grid; every
// invocation recovers its linear index and bounds-checks it against p.n (adam_vec4:
// p.n / 4, one invocation per 4 elements).
//
// Notation: g = grad[i], lr = st.lr (this step's learning rate), t = step number
// (1-based); the bias corrections bc1 = 1 - beta1^t and bc2 = 1 - beta2^t are computed
// on the CPU in f64 and arrive as f32 in `st`.
//
// adam (s0 = m, s1 = v):
//   if weight_decay > 0 (AdamW, decoupled as torch.optim.AdamW / keras AdamW):
//       param = param - lr * weight_decay * param          (before the moment update)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   PyTorch placement (flags & 1 == 0), as torch.optim.Adam:
//       param -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + epsilon)
//     i.e. param -= lr * m_hat / (sqrt(v_hat) + epsilon), m_hat = m / bc1, v_hat = v / bc2.
//   Keras placement (flags & 1 == 1), exactly keras.optimizers.Adam (Keras 3):
//       alpha_t = lr * sqrt(bc2) / bc1
//       param -= alpha_t * m / (sqrt(v) + epsilon)
//   st.adam_step holds lr / bc1 (PyTorch) or alpha_t (Keras); st.bc2_sqrt holds sqrt(bc2).
//
// sgd (no state; momentum == 0), PyTorch's torch.optim.SGD without dampening:
//   g' = g + weight_decay * param                 (L2 added to the gradient)
//   param -= lr * g'
// sgd_momentum (s0 = buf; momentum > 0):
//   g' = g + weight_decay * param
//   buf = momentum * buf + g'                      (PyTorch sets buf = g' at t = 1; with buf
//                                                   zero-initialised this is the same)
//   param -= lr * buf                              (flags & 2 == 0)
//   param -= lr * (g' + momentum * buf)            (flags & 2 == 2, Nesterov)
//   Keras writes v = momentum * v - lr * g; param += v (Nesterov: param += momentum * v - lr * g);
//   that is v = -lr * buf, the same iterates while lr is constant. wgml uses PyTorch's form.
//
// rmsprop family, PyTorch's torch.optim.RMSprop (epsilon outside the square root; Keras
// puts it inside, sqrt(s + epsilon), and folds lr into its momentum buffer):
//   s = rho * s + (1 - rho) * g^2                                  (s0)
//   centered (s2 = average gradient a):
//       a = rho * a + (1 - rho) * g;  d = sqrt(max(s - a^2, 0)) + epsilon
//   otherwise d = sqrt(s) + epsilon
//   momentum > 0 (s1 = buf):  buf = momentum * buf + g / d;  param -= lr * buf
//   otherwise:                param -= lr * g / d
//   Entry points: rmsprop (s0), rmsprop_momentum (s0, s1), rmsprop_centered (s0, s2),
//   rmsprop_centered_momentum (s0, s1, s2).
//
// Gradient accumulation over the passes of one optimizer step (PyTorch's several
// backward() calls before step(), Keras' gradient_accumulation_steps): each pass
// weighs its gradient by w = st.grad_scale (its share of the step's samples, so the
// sum is the mean gradient over all of them) into the accumulator `acc` (binding 2):
//   accumulate_first:  acc = w * g                   (first pass; acc not read)
//   accumulate_add:    acc = acc + w * g             (middle passes)
//   accumulate_finish: g   = acc + w * g             (last pass, written over the
//                      gradient at binding 3, which clipping and the update then read)
// The CPU twins are accumulate_* in src/reference/optim.rs.
//
// Exponential moving average of the trained weights (Keras' use_ema, PyTorch's
// AveragedModel with an EMA function), after the step's update, average in s0:
//   ema: s0 = p.momentum * s0 + (1 - p.momentum) * param, except at the step
//        t == p.flags where the average starts, which takes the parameter itself
//        (Keras' first step). Twin: ema_update in src/reference/optim.rs.

const NESTEROV: u32 = 2u;

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: OptimParams;  // OptimParams: shaders/adam.wgsl; Step: shaders/step.wgsl
@group(0) @binding(1) var<uniform> st: Step;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> s0: array<f32>;
@group(0) @binding(5) var<storage, read_write> s1: array<f32>;
@group(0) @binding(6) var<storage, read_write> s2: array<f32>;
// The same buffers seen 4 elements at a time, for adam_vec4 only (an entry point
// binds either these or the scalar views above, never both).
@group(0) @binding(2) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> m4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> v4: array<vec4<f32>>;
// The views of gradient accumulation (accumulate_* entry points only): the
// accumulator, and the gradient where the last pass writes the whole sum.
@group(0) @binding(2) var<storage, read_write> acc: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad_rw: array<f32>;

// Linear invocation index over a (possibly folded) grid.
fn linear_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
}

@compute @workgroup_size(WG)
fn adam(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let r = adam_update(vec4<f32>(param[i]), vec4<f32>(grad[i]), vec4<f32>(s0[i]),
                        vec4<f32>(s1[i]), p, st);
    s0[i] = r.m.x;
    s1[i] = r.v.x;
    param[i] = r.x.x;
}

// adam on 4 consecutive elements per invocation, for p.n a multiple of 4 (the
// launcher's choice): the same arithmetic as adam, componentwise. On lavapipe each
// storage access is a loop over the SIMD lanes, and a vec4 access makes one such
// loop for its 4 components: ~15% faster than adam on the seed CNN's 346k weights.
@compute @workgroup_size(WG)
fn adam_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.n / 4u) {
        return;
    }
    let r = adam_update(param4[i], grad4[i], m4[i], v4[i], p, st);
    m4[i] = r.m;
    v4[i] = r.v;
    param4[i] = r.x;
}

@compute @workgroup_size(WG)
fn sgd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let x = param[i];
    let g = grad[i] + p.weight_decay * x;
    param[i] = x - st.lr * g;
}

@compute @workgroup_size(WG)
fn sgd_momentum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let x = param[i];
    let g = grad[i] + p.weight_decay * x;
    let buf = p.momentum * s0[i] + g;
    s0[i] = buf;
    var d = buf;
    if ((p.flags & NESTEROV) != 0u) {
        d = g + p.momentum * buf;
    }
    param[i] = x - st.lr * d;
}

// s = rho * s + (1 - rho) * g^2, stored to s0; returns the new s.
fn rms_square(i: u32, g: f32) -> f32 {
    let s = p.rho * s0[i] + (1.0 - p.rho) * g * g;
    s0[i] = s;
    return s;
}

// a = rho * a + (1 - rho) * g, stored to s2; returns the centered denominator.
fn rms_centered_denom(i: u32, g: f32, s: f32) -> f32 {
    let a = p.rho * s2[i] + (1.0 - p.rho) * g;
    s2[i] = a;
    return sqrt(max(s - a * a, 0.0)) + p.epsilon;
}

// buf = momentum * buf + u, stored to s1; returns the new buf.
fn rms_momentum(i: u32, u: f32) -> f32 {
    let buf = p.momentum * s1[i] + u;
    s1[i] = buf;
    return buf;
}

@compute @workgroup_size(WG)
fn rmsprop(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let g = grad[i];
    let d = sqrt(rms_square(i, g)) + p.epsilon;
    param[i] = param[i] - st.lr * (g / d);
}

@compute @workgroup_size(WG)
fn rmsprop_momentum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let g = grad[i];
    let d = sqrt(rms_square(i, g)) + p.epsilon;
    param[i] = param[i] - st.lr * rms_momentum(i, g / d);
}

@compute @workgroup_size(WG)
fn rmsprop_centered(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let g = grad[i];
    let d = rms_centered_denom(i, g, rms_square(i, g));
    param[i] = param[i] - st.lr * (g / d);
}

@compute @workgroup_size(WG)
fn rmsprop_centered_momentum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let g = grad[i];
    let d = rms_centered_denom(i, g, rms_square(i, g));
    param[i] = param[i] - st.lr * rms_momentum(i, g / d);
}

@compute @workgroup_size(WG)
fn accumulate_first(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.n) {
        return;
    }
    acc[i] = st.grad_scale * grad[i];
}

@compute @workgroup_size(WG)
fn accumulate_add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.n) {
        return;
    }
    acc[i] = acc[i] + st.grad_scale * grad[i];
}

@compute @workgroup_size(WG)
fn accumulate_finish(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.n) {
        return;
    }
    grad_rw[i] = acc[i] + st.grad_scale * grad_rw[i];
}

@compute @workgroup_size(WG)
fn ema(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let x = param[i];
    s0[i] = select(p.momentum * s0[i] + (1.0 - p.momentum) * x, x, st.t == p.flags);
}
