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
/// [`matmul`] with every element of A and B first rounded to the nearest f16
/// (ties to even), as the kernel stages them.
pub fn matmul_f16_inputs(
    desc: &MatmulDesc,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    c: &mut [f32],
) -> Result<()> {
    let round = |x: &[f32]| -> Vec<f32> { x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect() };
    matmul(desc, &round(a), &round(b), bias, c)
}

/// `C = op(A)·op(B) [+ bias] [activation]`, or `C += op(A)·op(B)` when
/// `desc.accumulate`, over `desc.batch` matrices at the described offsets and
/// strides. Elements of `c` outside the described outputs are left untouched.
/// Rejects exactly what the GPU launcher rejects.
pub fn matmul(desc: &MatmulDesc, a: &[f32], b: &[f32], bias: Option<&[f32]>, c: &mut [f32]) -> Result<()> {
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
