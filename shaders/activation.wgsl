// Activation functions shared by the matmul epilogues, the fused conv + pool
// kernels and batch normalization. Not a module on its own: the Shader registry
// (src/kernels/mod.rs) prepends this text to matmul.wgsl, matmul_subgroup.wgsl,
// conv_pool.wgsl and batchnorm.wgsl, so
// their line numbers in error messages start after it.
//
// Kinds: 0 identity, 1 relu, 2 sigmoid, 3 tanh (src/kernels/matmul.rs `Activation`).
// CPU twin: src/reference/matmul.rs.

// tanh without overflow (exp of large |x| is inf, and inf/inf is NaN) and with
// full relative precision near 0 (where 1 - exp(-2|x|) cancels).
fn tanh_safe(x: f32) -> f32 {
    let ax = abs(x);
    if (ax < 0.125) {
        let x2 = x * x;
        return x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))));
    }
    let t = exp(-2.0 * ax);
    return sign(x) * ((1.0 - t) / (1.0 + t));
}

fn sigmoid_safe(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

fn apply_activation(kind: u32, x: f32) -> f32 {
    switch kind {
        case 1u: {
            return max(x, 0.0);
        }
        case 2u: {
            return sigmoid_safe(x);
        }
        case 3u: {
            return tanh_safe(x);
        }
        default: {
            return x;
        }
    }
}


// f'(x) written through the output y = f(x) (relu: y > 0, so 0 at x = 0).
fn activation_grad(kind: u32, y: f32) -> f32 {
    switch kind {
        case 1u: {
            return select(0.0, 1.0, y > 0.0);
        }
        case 2u: {
            return y * (1.0 - y);
        }
        case 3u: {
            return 1.0 - y * y;
        }
        default: {
            return 1.0;
        }
    }
}
