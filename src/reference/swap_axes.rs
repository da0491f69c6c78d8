//! CPU twin of the axis-swap kernel (`shaders/swap_axes.wgsl`).

use crate::kernels::swap_axes::SwapView;

/// `y[y_off..][o, j, i, d] = x[x_off..][o, i, j, d]` over `view`.
pub fn swap_axes(x: &[f32], x_off: usize, y: &mut [f32], y_off: usize, view: SwapView) {
    let SwapView { outer, a, b, inner } = view;
    for o in 0..outer {
        for i in 0..a {
            for j in 0..b {
                let src = x_off + ((o * a + i) * b + j) * inner;
                let dst = y_off + ((o * b + j) * a + i) * inner;
                y[dst..dst + inner].copy_from_slice(&x[src..src + inner]);
            }
        }
    }
}
