//! CPU twins of the elementwise kernels.

/// `y[i] = value`.
pub fn fill(y: &mut [f32], value: f32) {
    y.iter_mut().for_each(|v| *v = value);
}
