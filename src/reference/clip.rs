//! CPU twin of [`crate::kernels::clip`]: gradient clipping by global norm, as
//! PyTorch's `clip_grad_norm_`.

/// Scales every gradient in `grads` by `min(1, max_norm / (‖g‖ + 1e-6))`, where
/// `‖g‖` is the L2 norm of all of them together (summed in f64); returns
/// `(scale, ‖g‖)`. A NaN or infinite gradient gives a NaN scale, as in PyTorch.
pub fn clip_by_global_norm(grads: &mut [&mut [f32]], max_norm: f32) -> (f32, f32) {
    let sum: f64 = grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|&v| v as f64 * v as f64)
        .sum();
    let norm = sum.sqrt() as f32;
    let q = max_norm / (norm + 1e-6);
    // NaN stays NaN, as PyTorch's clamp (f32::min would give 1).
    let scale = if q.is_nan() { q } else { q.min(1.0) };
    for g in grads.iter_mut() {
        for v in g.iter_mut() {
            *v *= scale;
        }
    }
    (scale, norm)
}
