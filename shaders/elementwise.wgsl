// Elementwise kernels over flat f32 arrays of length p.n.
//
// Launchers: src/kernels/elementwise.rs. CPU twins: src/reference/elementwise.rs.
// Every entry point handles any n: the launcher folds the workgroup count into a
// 2-D/3-D grid when it exceeds 65,535 and each invocation bounds-checks its index.
//
// Bindings: @binding(1) y is the output (read_write); @binding(2) a and @binding(3) b
// are read-only inputs. An entry point named *_inplace reads its first operand from y
// itself, so the launcher can use it when the output shares a buffer with an input
// (a buffer cannot be bound both read-only and writable in one dispatch).
//
// Activations (p.act): 0 identity, 1 relu, 2 sigmoid, 3 tanh.
//   relu(x) = x if x > 0 else 0 (NaN -> 0)
//   sigmoid(x) = 1 / (1 + e^-x), evaluated without overflow for any |x|
//   tanh(x) is evaluated on x clamped to [-15, 15] (tanh(15) rounds to 1 in f32), so
//   it never overflows inside the driver's exp.
// Backward is expressed through the forward OUTPUT y:
//   identity 1, relu (y > 0), sigmoid y(1 - y), tanh 1 - y^2.

struct Params {
    n: u32,       // elements
    alpha: f32,   // fill value / scale factor
    beta: f32,    // unused, reserved
    act: u32,     // activation code
    c: u32,       // channels (bias length)
    s: u32,       // elements per channel in bias_channels (1 for bias_rows)
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

// Linear invocation index over a (possibly folded) grid.
fn linear_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * WG + lid;
}

fn sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));        // in (0, 1]: never overflows
    let r = 1.0 / (1.0 + e);
    return select(e * r, r, x >= 0.0);
}

fn activate(kind: u32, x: f32) -> f32 {
    switch kind {
        case 1u: { return select(0.0, x, x > 0.0); }
        case 2u: { return sigmoid(x); }
        case 3u: { return tanh(clamp(x, -15.0, 15.0)); }
        default: { return x; }
    }
}

// f'(x) written through the forward output yv = f(x).
fn activate_grad(kind: u32, yv: f32) -> f32 {
    switch kind {
        case 1u: { return select(0.0, 1.0, yv > 0.0); }
        case 2u: { return yv * (1.0 - yv); }
        case 3u: { return 1.0 - yv * yv; }
        default: { return 1.0; }
    }
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

// act_fwd: y[i] = f(a[i]).
@compute @workgroup_size(WG)
fn act_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = activate(p.act, a[i]);
    }
}

// act_fwd_inplace: y[i] = f(y[i]).
@compute @workgroup_size(WG)
fn act_fwd_inplace(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = activate(p.act, y[i]);
    }
}

// act_bwd: y[i] = b[i] * f'(.) where a = forward output, b = upstream gradient dy,
// y = dx.
@compute @workgroup_size(WG)
fn act_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = b[i] * activate_grad(p.act, a[i]);
    }
}

// act_bwd_inplace: dx overwrites dy: y[i] = y[i] * f'(.) with a = forward output.
@compute @workgroup_size(WG)
fn act_bwd_inplace(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = y[i] * activate_grad(p.act, a[i]);
    }
}

// act_bwd_over_output: dx overwrites the forward output: y[i] = b[i] * f'(y[i]) with
// y = forward output on entry, b = dy.
@compute @workgroup_size(WG)
fn act_bwd_over_output(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = b[i] * activate_grad(p.act, y[i]);
    }
}

// add: y = a + b.
@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = a[i] + b[i];
    }
}

// add_inplace: y += b.
@compute @workgroup_size(WG)
fn add_inplace(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = y[i] + b[i];
    }
}

// mul: y = a * b.
@compute @workgroup_size(WG)
fn mul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = a[i] * b[i];
    }
}

// mul_inplace: y *= b.
@compute @workgroup_size(WG)
fn mul_inplace(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = y[i] * b[i];
    }
}

// square_inplace: y = y * y (mul with out, a and b all one buffer).
@compute @workgroup_size(WG)
fn square_inplace(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        let v = y[i];
        y[i] = v * v;
    }
}

// scale: y = alpha * a.
@compute @workgroup_size(WG)
fn scale(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = p.alpha * a[i];
    }
}

// scale_inplace: y = alpha * y.
@compute @workgroup_size(WG)
fn scale_inplace(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = p.alpha * y[i];
    }
}

// axpy: y += alpha * a.
@compute @workgroup_size(WG)
fn axpy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = y[i] + p.alpha * a[i];
    }
}

// bias_act: y[i] = f(a[i] + b[(i / s) % c]). With s = 1 this is a bias per column of
// a row-major [R, c] matrix; with s = H*W a bias per channel of an [N, c, H, W] tensor.
@compute @workgroup_size(WG)
fn bias_act(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = activate(p.act, a[i] + b[(i / p.s) % p.c]);
    }
}

// bias_act_inplace: y[i] = f(y[i] + b[(i / s) % c]).
@compute @workgroup_size(WG)
fn bias_act_inplace(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = activate(p.act, y[i] + b[(i / p.s) % p.c]);
    }
}

// exp_scale: y = exp(alpha * a) (the standard deviation exp(log_var / 2) of a
// variational autoencoder's sample).
@compute @workgroup_size(WG)
fn exp_scale(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = exp(p.alpha * a[i]);
    }
}

// mul_scale: y = alpha * a * b (exp_scale's backward: a its output, b the gradient).
@compute @workgroup_size(WG)
fn mul_scale(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = p.alpha * a[i] * b[i];
    }
}

// log_fwd: y = ln(a) (the caller keeps a positive: 0 gives -inf, below NaN).
@compute @workgroup_size(WG)
fn log_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = log(a[i]);
    }
}

// div: y = a / b (log's backward: a the gradient, b its input).
@compute @workgroup_size(WG)
fn div(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = a[i] / b[i];
    }
}

// repeat_scale: y[i] = alpha * a[i / p.s] for i < p.n: each of a's values repeated
// p.s times (a per-sample sum's backward: a the gradient of the sums).
@compute @workgroup_size(WG)
fn repeat_scale(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = p.alpha * a[i / p.s];
    }
}

// repeat_blocks: y[i] = a[(i / (c·s))·c + i % c] for i < p.n: each block of p.c
// consecutive values of a repeated p.s times in a row (grouped-query attention's
// key and value heads, each shared by p.s query heads).
@compute @workgroup_size(WG)
fn repeat_blocks(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        y[i] = a[(i / (p.c * p.s)) * p.c + i % p.c];
    }
}

// sum_blocks: y[j] = Σ_{k < s} a[(j / c)·c·s + k·c + j % c] for j < p.n: the
// backward of repeat_blocks, each block's p.s copies summed in order.
@compute @workgroup_size(WG)
fn sum_blocks(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let j = linear_index(wg, nwg, lid);
    if (j < p.n) {
        let first = (j / p.c) * p.c * p.s + j % p.c;
        var total = 0.0;
        for (var k = 0u; k < p.s; k = k + 1u) {
            total = total + a[first + k * p.c];
        }
        y[j] = total;
    }
}

// GELU, exact (Keras' gelu(approximate=False), PyTorch's nn.GELU()):
//   gelu(x) = x·Φ(x) with Φ(x) = erfc(−x/√2)/2, the standard normal CDF;
//   gelu'(x) = Φ(x) + x·φ(x) with φ(x) = exp(−x²/2)/√(2π).
// WGSL has no erf: erfc is a Chebyshev fit of t·exp(−z² + P(t)), t = 1/(1 + z/2)
// (Numerical Recipes' erfcc, fractional error below 1.2e-7 for every z ≥ 0), and
// erfc(−z) = 2 − erfc(z). Written through erfc, gelu keeps full relative precision
// for large negative x, where x·Φ(x) is tiny.
fn erfc_pos(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
        t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
        t * (-0.82215223 + t * 0.17087277))))))));
    return t * exp(-z * z + poly);
}

fn normal_cdf(x: f32) -> f32 {
    let z = x * 0.70710678118654752;
    if (z <= 0.0) {
        return 0.5 * erfc_pos(-z);
    }
    return 1.0 - 0.5 * erfc_pos(z);
}

// gelu_fwd: y = gelu(a).
@compute @workgroup_size(WG)
fn gelu_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        let x = a[i];
        y[i] = x * normal_cdf(x);
    }
}

// gelu_bwd: y = a·gelu'(b) (a the output's gradient, b the input).
@compute @workgroup_size(WG)
fn gelu_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        let x = b[i];
        let density = exp(-0.5 * x * x) * 0.39894228040143268;
        y[i] = a[i] * (normal_cdf(x) + x * density);
    }
}

// SiLU (swish; PyTorch's nn.SiLU, Keras' silu, Llama's MLP gate):
//   silu(x) = x·σ(x),  silu'(x) = σ(x)·(1 + x·(1 − σ(x))).
// sigmoid() never overflows, and x·σ(x) keeps its relative precision for large
// negative x.

// silu_fwd: y = silu(a).
@compute @workgroup_size(WG)
fn silu_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        let x = a[i];
        y[i] = x * sigmoid(x);
    }
}

// silu_bwd: y = a·silu'(b) (a the output's gradient, b the input).
@compute @workgroup_size(WG)
fn silu_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        let x = b[i];
        let s = sigmoid(x);
        y[i] = a[i] * s * (1.0 + x * (1.0 - s));
    }
}

// GELU, tanh approximation (PyTorch's nn.GELU(approximate='tanh'), Keras'
// gelu(approximate=True), GPT-2's "gelu_new"):
//   gelu(x) = x·(1 + tanh(u))/2 with u = √(2/π)·(x + 0.044715·x³).
// (1 + tanh(u))/2 is σ(2u), the logistic sigmoid, evaluated here without the
// cancellation of 1 + tanh(u) for large negative x (so tiny outputs keep their
// relative precision) and without overflow for any x:
//   gelu'(x) = σ(2u) + x·2σ(2u)(1 − σ(2u))·u',  u' = √(2/π)·(1 + 3·0.044715·x²).
fn gelu_tanh_arg(x: f32) -> f32 {
    return 1.5957691216057308 * (x + 0.044715 * x * x * x);   // 2u
}

// gelu_tanh_fwd: y = gelu_tanh(a).
@compute @workgroup_size(WG)
fn gelu_tanh_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        let x = a[i];
        y[i] = x * sigmoid(gelu_tanh_arg(x));
    }
}

// gelu_tanh_bwd: y = a·gelu_tanh'(b) (a the output's gradient, b the input).
@compute @workgroup_size(WG)
fn gelu_tanh_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i < p.n) {
        let x = b[i];
        let s = sigmoid(gelu_tanh_arg(x));
        let du = 1.5957691216057308 * (1.0 + 0.134145 * x * x);     // d(2u)/dx
        y[i] = a[i] * (s + x * s * (1.0 - s) * du);
    }
}
