//! CPU twin of `shaders/dropout.wgsl`: the same hash, the same mask, bit for bit.

use crate::error::Result;
use crate::kernels::dropout::DropoutRate;

/// PCG's output permutation of a 32-bit state, as `pcg_hash` in the shader.
pub fn pcg_hash(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// Whether element `i` is kept at draw (pass) number `t`.
pub fn keep(seed: u32, t: u32, i: u32, threshold: u32) -> bool {
    let stream = pcg_hash(seed ^ pcg_hash(t));
    (pcg_hash(i ^ stream) >> 8) >= threshold
}

/// `y = x · mask / (1 − rate)` for draw number `t` (also the backward pass, on
/// gradients); a dropped NaN or infinity gives NaN, as on the GPU.
pub fn dropout(x: &[f32], y: &mut [f32], rate: f32, seed: u32, t: u32) -> Result<()> {
    let r = DropoutRate::new(rate)?;
    for (i, (yi, &xi)) in y.iter_mut().zip(x).enumerate() {
        let factor = if keep(seed, t, i as u32, r.threshold) {
            r.scale
        } else {
            0.0
        };
        *yi = xi * factor;
    }
    Ok(())
}
