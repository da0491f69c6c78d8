//! CPU twins of the matmul kernels (f64 accumulation), same contract as
//! [`crate::kernels::matmul::matmul`] on slices.

use crate::error::Result;
use crate::kernels::matmul::{Activation, MatmulDesc};

/// The activation of the matmul epilogue, in f64.
pub fn activation(act: Activation, x: f64) -> f64 {
    match act {
        Activation::Identity => x,
        Activation::Relu => x.max(0.0),
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Activation::Tanh => x.tanh(),
    }
}

/// The twin of the tensor-core variants ([`crate::kernels::matmul::MatmulVariant::REDUCED`]):
/// [`matmul`] with every element of A and B first multiplied by its operand's
/// range scale `2^shift` ([`range_shift`] of the operand's largest magnitude
/// among the elements the product reads) and rounded to the nearest f16 (ties to
/// even), as the kernel stages them, and each sum multiplied by
/// `2^-(shift_a + shift_b)` before the epilogue, as the kernel scales it back.
pub fn matmul_f16_inputs(
    desc: &MatmulDesc,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    c: &mut [f32],
) -> Result<()> {
    desc.validate(a.len(), b.len(), bias.map(|s| s.len()), c.len())?;
    let batches = |stride: usize| if stride == 0 { 1 } else { desc.batch };
    let shift_a = range_shift(amax_bits(
        a,
        desc.a_offset,
        desc.a_batch_stride,
        batches(desc.a_batch_stride),
        desc.m * desc.k,
    ));
    let shift_b = range_shift(amax_bits(
        b,
        desc.b_offset,
        desc.b_batch_stride,
        batches(desc.b_batch_stride),
        desc.k * desc.n,
    ));
    let round = |x: &[f32], shift: i32| -> Vec<f32> {
        let scale = 2f32.powi(shift);
        x.iter()
            .map(|&v| half::f16::from_f32(v * scale).to_f32())
            .collect()
    };
    let back = 2f64.powi(-shift_a) * 2f64.powi(-shift_b);
    matmul_scaled(desc, &round(a, shift_a), &round(b, shift_b), bias, c, back)
}

/// The bits of the largest finite `|x|` among `batches` runs of `per` elements
/// of `x`, the t-th starting at `offset + t·stride`: as f32 bits, which order
/// as the values for `x >= 0` (`matmul_amax` in `shaders/matmul_coop.wgsl`;
/// infinities and NaN are left out: they pass through the product as in f32).
pub fn amax_bits(x: &[f32], offset: usize, stride: usize, batches: usize, per: usize) -> u32 {
    (0..batches)
        .flat_map(|t| &x[offset + t * stride..offset + t * stride + per])
        .filter(|v| v.is_finite())
        .map(|v| v.abs().to_bits())
        .max()
        .unwrap_or(0)
}

/// The exponent of a tensor-core operand's range scale, from the bits of its
/// largest magnitude: `14 - floor(log2(amax))` within `[-126, 126]`, which brings
/// amax into `[2^14, 2^15)` (inside f16's range, with the most room below); 0 for
/// an operand that is all zeros (or bits that are no finite magnitude).
pub fn range_shift(amax_bits: u32) -> i32 {
    if amax_bits == 0 || amax_bits >= 0x7f80_0000 {
        return 0;
    }
    let e = (amax_bits >> 23) as i32 - 127;
    (14 - e).clamp(-126, 126)
}

/// `C = op(A)·op(B) [+ bias] [activation]`, or `C += op(A)·op(B)` when
/// `desc.accumulate`, over `desc.batch` matrices at the described offsets and
/// strides. Elements of `c` outside the described outputs are left untouched.
/// Rejects exactly what the GPU launcher rejects.
pub fn matmul(desc: &MatmulDesc, a: &[f32], b: &[f32], bias: Option<&[f32]>, c: &mut [f32]) -> Result<()> {
    matmul_scaled(desc, a, b, bias, c, 1.0)
}

/// [`matmul`] with every sum multiplied by `sum_scale` before the epilogue.
fn matmul_scaled(
    desc: &MatmulDesc,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    c: &mut [f32],
    sum_scale: f64,
) -> Result<()> {
    desc.validate(a.len(), b.len(), bias.map(|s| s.len()), c.len())?;
    let (m, n, k) = (desc.m, desc.n, desc.k);
    // With reduce_batch one output sums every batch entry; otherwise each entry
    // has its own.
    let (outputs, per_output) = if desc.reduce_batch {
        (1, desc.batch)
    } else {
        (desc.batch, 1)
    };
    for out_t in 0..outputs {
        let c0 = desc.c_offset + out_t * desc.c_batch_stride;
        for i in 0..m {
            for j in 0..n {
                let mut sum = 0.0f64;
                for t in out_t * per_output..(out_t + 1) * per_output {
                    let a0 = desc.a_offset + t * desc.a_batch_stride;
                    let b0 = desc.b_offset + t * desc.b_batch_stride;
                    for kk in 0..k {
                        let av = if desc.trans_a {
                            a[a0 + kk * m + i]
                        } else {
                            a[a0 + i * k + kk]
                        };
                        let bv = if desc.trans_b {
                            b[b0 + j * k + kk]
                        } else {
                            b[b0 + kk * n + j]
                        };
                        sum += av as f64 * bv as f64;
                    }
                }
                let sum = sum * sum_scale;
                let out = &mut c[c0 + i * n + j];
                *out = if desc.accumulate {
                    (*out as f64 + sum) as f32
                } else {
                    let with_bias = sum + bias.map_or(0.0, |bs| bs[j] as f64);
                    activation(desc.activation, with_bias) as f32
                };
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_shift_brings_the_largest_magnitude_into_two_to_the_14_to_15() {
        for amax in [1.0f32, 0.75, 65504.0, 1e6, 3.5e-9, 1e-30, 3e38] {
            let scaled = amax * 2f32.powi(range_shift(amax.to_bits()));
            assert!((16384.0..32768.0).contains(&scaled), "{amax}: {scaled}");
        }
        // Nothing to scale, or nothing a scale can help.
        for amax in [0.0f32, f32::INFINITY, f32::NAN] {
            assert_eq!(range_shift(amax.abs().to_bits()), 0, "{amax}");
        }
        // Subnormal amax: the shift stops at 126, where 2^126 is still a normal f32.
        assert_eq!(range_shift(1e-45f32.to_bits()), 126);
    }

    #[test]
    fn amax_reads_only_the_described_runs() {
        let x = [9.0, 1.0, -2.0, 9.0, 3.0, -0.5, f32::NAN];
        assert_eq!(amax_bits(&x, 1, 3, 2, 2), 3.0f32.to_bits());
        assert_eq!(amax_bits(&x, 1, 0, 1, 2), 2.0f32.to_bits());
        // NaN and infinities are left out.
        assert_eq!(amax_bits(&x, 5, 0, 1, 2), 0.5f32.to_bits());
        assert_eq!(amax_bits(&[f32::INFINITY, -2.0], 0, 0, 1, 2), 2.0f32.to_bits());
    }
}
