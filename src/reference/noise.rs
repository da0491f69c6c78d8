//! CPU twin of `shaders/noise.wgsl`: the same hash and the same uniforms bit for
//! bit; the normal's logarithm and cosine in f64.

use crate::kernels::noise::Distribution;
use crate::reference::dropout::pcg_hash;

/// The uniform in (0, 1) of counter `k` in `stream`, as `unit_open` in the shader.
fn unit_open(k: u32, stream: u32) -> f64 {
    ((pcg_hash(k ^ stream) >> 8) as f32 + 0.5) as f64 / 16_777_216.0
}

/// Fills `y` with values of `dist` for `seed` at draw (pass) number `t`.
pub fn noise(y: &mut [f32], dist: Distribution, seed: u32, t: u32) {
    let stream = pcg_hash(seed ^ pcg_hash(t));
    for (i, yi) in y.iter_mut().enumerate() {
        let k = (i as u32).wrapping_mul(2);
        let u1 = unit_open(k, stream);
        *yi = match dist {
            Distribution::Uniform { low, high } => (low as f64 + (high as f64 - low as f64) * u1) as f32,
            Distribution::Normal { mean, std } => {
                let u2 = unit_open(k.wrapping_add(1), stream);
                let r = (-2.0 * u1.ln()).sqrt();
                (mean as f64 + std as f64 * r * (std::f64::consts::TAU * (u2 - 0.5)).cos()) as f32
            }
        };
    }
}
