//! Gradient clipping by global norm, as PyTorch's `torch.nn.utils.clip_grad_norm_`
//! (and Keras' `global_clipnorm`): after backward, every gradient of the step is
//! multiplied by `min(1, max_norm / (‖g‖ + 1e-6))`, where `‖g‖` is the L2 norm of
//! all of them together. Everything stays on the GPU: per-tensor partial sums of
//! squares, one workgroup that turns them into the factor, then an in-place scale of
//! each gradient (formulas in the header of `shaders/clip.wgsl`; CPU twin:
//! [`crate::reference::clip`]).

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::elementwise::{count_u32, same_buffer};
use crate::kernels::{Kernel, Shader, groups_for};

/// Invocations per workgroup of the clip kernels.
pub const WG: u32 = 256;

/// Elements each `sum_squares` workgroup aims to cover (it visits more when a tensor
/// would need more than [`MAX_PARTS`] workgroups).
const PER_GROUP: usize = 16 * WG as usize;
/// Most workgroups (partial sums) per gradient tensor.
const MAX_PARTS: usize = 1024;

/// Mirrors `Params` in `shaders/clip.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    offset: u32,
    max_norm: f32,
    _pad: u32,
}

const SUM_SQUARES: Kernel = Shader::Clip.kernel("sum_squares");
const CLIP_FACTOR: Kernel = Shader::Clip.kernel("clip_factor");
const SCALE_BY: Kernel = Shader::Clip.kernel("scale_by");

const CONSTANTS: &[(&str, f64)] = &[("WG", WG as f64)];

/// The prepared clipping of a set of gradients: record [`dispatches`](Self::dispatches)
/// in order after the dispatches that write the gradients and before the optimizer's.
#[derive(Debug)]
pub struct GlobalNormClip {
    /// Every dispatch, in order: one `sum_squares` per gradient, `clip_factor`,
    /// one `scale_by` per gradient.
    pub dispatches: Vec<Dispatch>,
    /// `[scale, ‖g‖]` of the last recorded step: the factor every gradient was
    /// multiplied by and the global norm before clipping.
    pub factor: Tensor,
    /// The partial sums of squares, one per `sum_squares` workgroup.
    pub parts: Tensor,
}

/// Workgroups of `sum_squares` for a tensor of `n` elements.
fn parts_for(n: usize) -> usize {
    n.div_ceil(PER_GROUP).clamp(1, MAX_PARTS)
}

/// Clipping of `grads` (each scaled in place) to a global norm of at most `max_norm`
/// (finite, > 0). Each gradient must be its own f32 tensor.
pub fn clip_by_global_norm(ctx: &Context, grads: &[&Tensor], max_norm: f32) -> Result<GlobalNormClip> {
    const OP: &str = "clip_by_global_norm";
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(Error::invalid(format!(
            "{OP}: the largest gradient norm must be a positive number, got {max_norm}"
        )));
    }
    if grads.is_empty() {
        return Err(Error::invalid(format!("{OP}: no gradients to clip")));
    }
    for (i, g) in grads.iter().enumerate() {
        g.expect_dtype(OP, "gradient", DType::F32)?;
        if grads[..i].iter().any(|h| same_buffer(g, h)) {
            return Err(Error::invalid(format!(
                "{OP}: gradient {i} shares a buffer with an earlier one: it would be scaled twice"
            )));
        }
    }
    let total: usize = grads.iter().map(|g| parts_for(g.numel())).sum();
    let parts = Tensor::zeros(ctx, &[total], DType::F32)?;
    let factor = Tensor::zeros(ctx, &[2], DType::F32)?;
    let mut sums = Vec::with_capacity(grads.len());
    let mut scales = Vec::with_capacity(grads.len());
    let mut offset = 0usize;
    for g in grads {
        let n = count_u32(OP, "gradient", g.numel())?;
        let groups = parts_for(g.numel());
        let params = Params {
            n,
            offset: offset as u32,
            ..Params::default()
        };
        sums.push(ctx.dispatch(
            SUM_SQUARES,
            CONSTANTS,
            &params,
            &[(1, &g.buffer), (2, &parts.buffer)],
            [groups as u32, 1, 1],
        )?);
        scales.push(ctx.dispatch(
            SCALE_BY,
            CONSTANTS,
            &params,
            &[(3, &factor.buffer), (4, &g.buffer)],
            groups_for(ctx, g.numel(), WG)?,
        )?);
        offset += groups;
    }
    let params = Params {
        n: count_u32(OP, "partial sums", total)?,
        max_norm,
        ..Params::default()
    };
    let reduce = ctx.dispatch(
        CLIP_FACTOR,
        CONSTANTS,
        &params,
        &[(2, &parts.buffer), (3, &factor.buffer)],
        [1, 1, 1],
    )?;
    let mut dispatches = sums;
    dispatches.push(reduce);
    dispatches.extend(scales);
    Ok(GlobalNormClip {
        dispatches,
        factor,
        parts,
    })
}
