//! CPU twin of `shaders/copy.wgsl`.

use crate::kernels::copy::Block;

/// `y[r, dst.offset + j] = x[r, src.offset + j]` for `r < rows`, `j < len`.
pub fn copy_blocks(x: &[f32], src: Block, y: &mut [f32], dst: Block, rows: usize, len: usize) {
    for r in 0..rows {
        let from = r * src.stride + src.offset;
        let to = r * dst.stride + dst.offset;
        y[to..to + len].copy_from_slice(&x[from..from + len]);
    }
}
