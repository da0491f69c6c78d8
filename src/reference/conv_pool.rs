//! CPU twin of the fused conv + activation + 2×2 max-pool kernels, same contract
//! as [`crate::kernels::conv_pool`] (layouts in `shaders/conv_pool.wgsl`). The
//! convolution comes from [`crate::reference::conv::conv2d_forward`]; pooling,
//! index packing and the weight gradient are plain loops here. The caller passes
//! a valid description and slices of the right sizes (these functions panic
//! otherwise).

use crate::kernels::conv_pool::{CHANNEL_BLOCK, ConvPoolDesc};
use crate::kernels::matmul::Activation;
use crate::reference::conv::{activate, conv2d_forward};

fn shapes(desc: &ConvPoolDesc) -> ([usize; 4], [usize; 4], (usize, usize)) {
    let pooled = desc
        .pooled_shape()
        .expect("reference::conv_pool: invalid description");
    let index = desc
        .index_shape()
        .expect("reference::conv_pool: invalid description");
    let conv = desc
        .conv
        .out_hw()
        .expect("reference::conv_pool: invalid description");
    (pooled, index, conv)
}

/// Where each channel's 4-bit code lives in `idx`, computed once per description.
#[derive(Clone, Copy, Debug)]
pub struct IndexLayout {
    words: usize,
    ph: usize,
    pw: usize,
}

impl IndexLayout {
    /// The layout for `desc`; panics if the description is invalid.
    pub fn new(desc: &ConvPoolDesc) -> IndexLayout {
        let (pooled, index, _) = shapes(desc);
        IndexLayout {
            words: index[1],
            ph: pooled[2],
            pw: pooled[3],
        }
    }

    /// Flat position in `idx` of the word holding channel `o` at `(n, i, j)`, and
    /// the bit where its code starts.
    pub fn slot(&self, n: usize, o: usize, i: usize, j: usize) -> (usize, u32) {
        let word = 4 * (o / CHANNEL_BLOCK) + (o % CHANNEL_BLOCK) / 8;
        let at = ((n * self.words + word) * self.ph + i) * self.pw + j;
        (at, 4 * (o % 8) as u32)
    }

    /// The window (`2a + b`) recorded for channel `o` at `(n, i, j)`.
    pub fn window(&self, idx: &[u32], n: usize, o: usize, i: usize, j: usize) -> u32 {
        let (at, shift) = self.slot(n, o, i, j);
        (idx[at] >> shift) & 3
    }

    /// Whether the code of channel `o` at `(n, i, j)` says the gradient passes the
    /// activation (identity; relu with y > 0; never set for sigmoid and tanh).
    pub fn passes(&self, idx: &[u32], n: usize, o: usize, i: usize, j: usize) -> bool {
        let (at, shift) = self.slot(n, o, i, j);
        (idx[at] >> shift) & 4 != 0
    }
}

/// The convolution's output before the activation, `[n, c_out, oh, ow]`.
pub fn pre_activation(desc: &ConvPoolDesc, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
    let (_, _, (oh, ow)) = shapes(desc);
    let mut z = vec![0.0f32; desc.conv.n * desc.conv.c_out * oh * ow];
    conv2d_forward(&desc.conv, x, w, Some(bias), Activation::Identity, &mut z);
    z
}

/// `y = maxpool2x2(act(conv(x, w) + bias))`; `idx` gets each window's first
/// maximum of the pre-activation and the gradient-passes bit (words of channels
/// that do not exist are 0).
pub fn conv_pool_forward(
    desc: &ConvPoolDesc,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    y: &mut [f32],
    idx: &mut [u32],
) {
    let (pooled, _, (oh, ow)) = shapes(desc);
    let z = pre_activation(desc, x, w, bias);
    let layout = IndexLayout::new(desc);
    idx.fill(0);
    let [n_img, c_out, ph, pw] = pooled;
    for n in 0..n_img {
        for o in 0..c_out {
            let plane = &z[(n * c_out + o) * oh * ow..][..oh * ow];
            for i in 0..ph {
                for j in 0..pw {
                    let mut best = (plane[2 * i * ow + 2 * j], 0u32);
                    for win in 1..4u32 {
                        let (a, b) = ((win / 2) as usize, (win % 2) as usize);
                        let v = plane[(2 * i + a) * ow + 2 * j + b];
                        if v > best.0 {
                            best = (v, win);
                        }
                    }
                    y[((n * c_out + o) * ph + i) * pw + j] = activate(desc.activation, best.0 as f64) as f32;
                    let pass = match desc.activation {
                        Activation::Identity => true,
                        Activation::Relu => best.0 > 0.0,
                        Activation::Sigmoid | Activation::Tanh => false,
                    };
                    let (at, shift) = layout.slot(n, o, i, j);
                    idx[at] |= (best.1 | (pass as u32) << 2) << shift;
                }
            }
        }
    }
}

/// `f'(x)` through `y = f(x)` (relu: 0 at 0).
fn derivative(act: Activation, y: f64) -> f64 {
    match act {
        Activation::Identity => 1.0,
        Activation::Relu => (y > 0.0) as u8 as f64,
        Activation::Sigmoid => y * (1.0 - y),
        Activation::Tanh => 1.0 - y * y,
    }
}

/// Overwrites `dw` and `db` with the gradient given `dy` (the gradient of the
/// pooled `y`) and the `idx` of the forward pass.
#[allow(clippy::too_many_arguments)]
pub fn conv_pool_backward(
    desc: &ConvPoolDesc,
    x: &[f32],
    dy: &[f32],
    y: &[f32],
    idx: &[u32],
    dw: &mut [f32],
    db: &mut [f32],
) {
    let (pooled, _, _) = shapes(desc);
    let c = &desc.conv;
    let pads = c.pads().expect("reference::conv_pool: invalid description");
    let [n_img, c_out, ph, pw] = pooled;
    let layout = IndexLayout::new(desc);
    let mut gw = vec![0.0f64; dw.len()];
    let mut gb = vec![0.0f64; c_out];
    for n in 0..n_img {
        for o in 0..c_out {
            for i in 0..ph {
                for j in 0..pw {
                    let k = ((n * c_out + o) * ph + i) * pw + j;
                    let d = dy[k] as f64 * derivative(desc.activation, y[k] as f64);
                    gb[o] += d;
                    let win = layout.window(idx, n, o, i, j) as usize;
                    let (zy, zx) = (2 * i + win / 2, 2 * j + win % 2);
                    for ci in 0..c.c_in {
                        for ky in 0..c.kh {
                            for kx in 0..c.kw {
                                let iy = (zy * c.stride.0 + ky).checked_sub(pads.top);
                                let ix = (zx * c.stride.1 + kx).checked_sub(pads.left);
                                let (Some(iy), Some(ix)) = (iy, ix) else { continue };
                                if iy >= c.h || ix >= c.w {
                                    continue;
                                }
                                let xv = x[((n * c.c_in + ci) * c.h + iy) * c.w + ix] as f64;
                                gw[((o * c.c_in + ci) * c.kh + ky) * c.kw + kx] += d * xv;
                            }
                        }
                    }
                }
            }
        }
    }
    for (d, g) in dw.iter_mut().zip(gw) {
        *d = g as f32;
    }
    for (d, g) in db.iter_mut().zip(gb) {
        *d = g as f32;
    }
}
