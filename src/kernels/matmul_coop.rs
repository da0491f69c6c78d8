//! The tensor-core matmul (`shaders/matmul_coop.wgsl`, launched by
//! [`crate::kernels::matmul`]) checked on the user's device before automatic
//! choice may use it.
//!
//! Cooperative matrices are an experimental wgpu feature, and each driver
//! compiles them its own way; the kernel tests prove the kernel on the adapters
//! they run on, not on every user's GPU. So the first time a product could go
//! to tensor cores automatically (matmul precision `medium` on a device that has
//! them), wgml runs every tensor-core variant on two small products, one of them
//! split-K, with inputs that are f16 values, and compares each with the f32
//! `tiled64` kernel on the same inputs, where only the order of the f32 sums
//! may differ. A variant that does not compile, does not run or disagrees keeps
//! automatic choice on the f32 kernels for the life of the context;
//! [`Context::coop_check`] keeps the reason (`wgml info` prints it). Forcing a
//! tensor-core variant in a [`MatmulDesc`] still runs it. The check does not
//! run while an earlier GPU error waits to be reported (it would take it for
//! its own), and a device loss or lack of memory during it is no verdict: the
//! products stay f32 and a later one tries again.

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Tensor};
use crate::kernels::matmul::{self, MatmulDesc, MatmulVariant};

/// Largest difference the check accepts between a tensor-core result and the
/// f32 kernel's: sums of up to 300 products of values in [-0.5, 0.5] differ by
/// about 1e-6 in the order of f32 additions; a broken kernel is off by far more.
const CHECK_TOLERANCE: f32 = 1e-3;

/// True when automatic choice may put products on tensor cores on `ctx`: the
/// matmul precision is medium, the device has cooperative matrices, and the
/// check (run now if it has not run in this context) passed.
pub fn tensor_cores_allowed(ctx: &Context) -> bool {
    if !ctx.reduced_matmuls() {
        return false;
    }
    if let Some(verdict) = ctx.coop_check() {
        return verdict.is_ok();
    }
    if ctx.has_pending_error() {
        return false;
    }
    match check(ctx) {
        Ok(verdict) => ctx.record_coop_check(verdict).is_ok(),
        Err(_) => false,
    }
}

/// Runs every tensor-core variant `ctx` can run on a 70×66×130 NT product and a
/// 33×40×300 NN product split in 3, against `tiled64`. The verdict: `Err` names
/// the first variant that failed and how. An `Err` of the outer result is no
/// verdict: the device was lost or out of memory meanwhile.
pub fn check(ctx: &Context) -> Result<std::result::Result<(), String>> {
    let variants = matmul::available_reduced_variants(ctx);
    if variants.is_empty() {
        return Ok(Err(format!(
            "'{}' offers no cooperative matrices to wgpu that fit its limits",
            ctx.info.name
        )));
    }
    // A device loss or lack of memory says nothing about the kernels.
    let transient = |e: Error| -> Result<String> {
        match e {
            Error::DeviceLost { .. } | Error::OutOfMemory { .. } => Err(e),
            other => Ok(other.to_string()),
        }
    };
    for desc in [
        MatmulDesc::new(70, 66, 130).trans_b(),
        MatmulDesc::new(33, 40, 300).split_k(3),
    ] {
        let a = f16_values(desc.m * desc.k, 1);
        let b = f16_values(desc.k * desc.n, 2);
        let shape = format!("{} {}×{}×{}", desc.layout_name(), desc.m, desc.n, desc.k);
        let reference = MatmulDesc {
            split_k: Some(1),
            ..desc.clone()
        };
        let want = match run(ctx, &reference.variant(MatmulVariant::Tiled64), &a, &b) {
            Ok(c) => c,
            Err(e) => {
                return Ok(Err(format!(
                    "the f32 kernel failed on {shape}: {}",
                    transient(e)?
                )));
            }
        };
        for &variant in &variants {
            let forced = MatmulDesc {
                split_k: Some(desc.split_k.unwrap_or(1)),
                ..desc.clone()
            };
            let got = match run(ctx, &forced.variant(variant), &a, &b) {
                Ok(c) => c,
                Err(e) => {
                    return Ok(Err(format!(
                        "{} did not run {shape}: {}",
                        variant.name(),
                        transient(e)?
                    )));
                }
            };
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs())
                .fold(0.0f32, |x, d| if d.is_nan() { f32::INFINITY } else { x.max(d) });
            if worst > CHECK_TOLERANCE {
                return Ok(Err(format!(
                    "{} is off by {worst:e} from the f32 kernel on {shape} (at most \
                     {CHECK_TOLERANCE:e} expected)",
                    variant.name()
                )));
            }
        }
    }
    Ok(Ok(()))
}

/// Runs `desc` on `a` and `b` and reads C back.
fn run(ctx: &Context, desc: &MatmulDesc, a: &[f32], b: &[f32]) -> Result<Vec<f32>> {
    let upload = |v: &[f32]| Tensor::from_f32(ctx, v, &[v.len()]);
    let (a, b) = (upload(a)?, upload(b)?);
    let c = Tensor::zeros(ctx, &[desc.m * desc.n], DType::F32)?;
    ctx.run_all(&matmul::matmul(ctx, desc, &a, &b, None, &c)?)?;
    c.to_f32(ctx)
}

/// `len` multiples of 1/256 in [-0.5, 0.5], exact in f16, not all alike.
fn f16_values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 37 + seed * 101) % 257) as f32 / 256.0 - 0.5)
        .collect()
}
