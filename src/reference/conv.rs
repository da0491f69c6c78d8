//! CPU twins of the conv kernels (f64 accumulation), same contracts as
//! [`crate::kernels::conv`]. The convolution itself is computed directly (seven
//! nested loops), independently of the im2col route the GPU takes; `im2col` and
//! `col2im` have twins of their own. The caller passes a valid [`Conv2dDesc`]
//! and slices of the right sizes (these functions panic otherwise).

use crate::kernels::conv::{Activation, Conv2dDesc, Pads};

fn geometry(desc: &Conv2dDesc) -> (Pads, usize, usize) {
    let pads = desc.pads().expect("reference::conv: invalid Conv2dDesc");
    let (oh, ow) = desc.out_hw().expect("reference::conv: invalid Conv2dDesc");
    (pads, oh, ow)
}

/// Input coordinate read by output coordinate `o` at kernel offset `k`, if it is
/// inside the image (not padding).
fn source(o: usize, k: usize, stride: usize, pad: usize, size: usize) -> Option<usize> {
    (o * stride + k).checked_sub(pad).filter(|&i| i < size)
}

/// The activation applied after the bias.
pub fn activate(act: Activation, v: f64) -> f64 {
    match act {
        Activation::Identity => v,
        Activation::Relu => v.max(0.0),
        Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        Activation::Tanh => v.tanh(),
    }
}

/// `y[n, o, oy, ox] = act(bias[o] + Σ_{c,i,j} w[o, c, i, j] · x[n, c, oy·sh - pt + i, ox·sw - pl + j])`.
pub fn conv2d_forward(
    desc: &Conv2dDesc,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    y: &mut [f32],
) {
    let (pads, oh, ow) = geometry(desc);
    let (c_in, h, wd, kh, kw) = (desc.c_in, desc.h, desc.w, desc.kh, desc.kw);
    for n in 0..desc.n {
        for o in 0..desc.c_out {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = bias.map_or(0.0, |b| b[o] as f64);
                    for c in 0..c_in {
                        for i in 0..kh {
                            let Some(iy) = source(oy, i, desc.stride.0, pads.top, h) else {
                                continue;
                            };
                            for j in 0..kw {
                                let Some(ix) = source(ox, j, desc.stride.1, pads.left, wd) else {
                                    continue;
                                };
                                s += w[((o * c_in + c) * kh + i) * kw + j] as f64
                                    * x[((n * c_in + c) * h + iy) * wd + ix] as f64;
                            }
                        }
                    }
                    y[((n * desc.c_out + o) * oh + oy) * ow + ox] = activate(act, s) as f32;
                }
            }
        }
    }
}

/// Gradients of `L` given `dy = ∂L/∂y` (before the activation, i.e. of the
/// convolution plus bias): `dw` and, if given, `dx` and `db`, all overwritten.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    desc: &Conv2dDesc,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    let (pads, oh, ow) = geometry(desc);
    let (c_in, h, wd, kh, kw) = (desc.c_in, desc.h, desc.w, desc.kh, desc.kw);
    let mut gx = vec![0.0f64; x.len()];
    let mut gw = vec![0.0f64; w.len()];
    let mut gb = vec![0.0f64; desc.c_out];
    for n in 0..desc.n {
        for o in 0..desc.c_out {
            for oy in 0..oh {
                for ox in 0..ow {
                    let g = dy[((n * desc.c_out + o) * oh + oy) * ow + ox] as f64;
                    gb[o] += g;
                    for c in 0..c_in {
                        for i in 0..kh {
                            let Some(iy) = source(oy, i, desc.stride.0, pads.top, h) else {
                                continue;
                            };
                            for j in 0..kw {
                                let Some(ix) = source(ox, j, desc.stride.1, pads.left, wd) else {
                                    continue;
                                };
                                let wi = ((o * c_in + c) * kh + i) * kw + j;
                                let xi = ((n * c_in + c) * h + iy) * wd + ix;
                                gw[wi] += g * x[xi] as f64;
                                gx[xi] += g * w[wi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    dw.iter_mut().zip(gw).for_each(|(d, g)| *d = g as f32);
    if let Some(dx) = dx {
        dx.iter_mut().zip(gx).for_each(|(d, g)| *d = g as f32);
    }
    if let Some(db) = db {
        db.iter_mut().zip(gb).for_each(|(d, g)| *d = g as f32);
    }
}

/// `dx` alone (overwritten) from `dy`: the transposed convolution of `dy` by `w`.
/// CPU twin of `kernels::conv::conv2d_backward_input`.
pub fn conv2d_backward_input(desc: &Conv2dDesc, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let x = vec![0.0; dx.len()];
    let mut dw = vec![0.0; w.len()];
    conv2d_backward(desc, &x, w, dy, Some(dx), &mut dw, None);
}

/// `col[img][r][p]` (layout in `shaders/conv.wgsl`) for images
/// `first .. first + images` of `x`, `CKK` rows per image plus a row of ones when
/// `ones_row`; `col` holds at least `images·rows·P` values.
pub fn im2col(desc: &Conv2dDesc, x: &[f32], first: usize, images: usize, ones_row: bool, col: &mut [f32]) {
    let (pads, oh, ow) = geometry(desc);
    let (c_in, h, wd, kh, kw) = (desc.c_in, desc.h, desc.w, desc.kh, desc.kw);
    let (ckk, np) = (desc.ckk(), oh * ow);
    let ld = ckk + ones_row as usize;
    for img in 0..images {
        let n = first + img;
        for c in 0..c_in {
            for i in 0..kh {
                for j in 0..kw {
                    let row = (img * ld + (c * kh + i) * kw + j) * np;
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let v = match (
                                source(oy, i, desc.stride.0, pads.top, h),
                                source(ox, j, desc.stride.1, pads.left, wd),
                            ) {
                                (Some(iy), Some(ix)) => x[((n * c_in + c) * h + iy) * wd + ix],
                                _ => 0.0,
                            };
                            col[row + oy * ow + ox] = v;
                        }
                    }
                }
            }
        }
        if ones_row {
            col[(img * ld + ckk) * np..(img * ld + ld) * np].fill(1.0);
        }
    }
}

/// Overwrites images `first .. first + images` of `dx` with the sum of the `col`
/// entries (layout of [`im2col`], `CKK` rows per image) that read each pixel;
/// other images are untouched.
pub fn col2im(desc: &Conv2dDesc, col: &[f32], first: usize, images: usize, dx: &mut [f32]) {
    let (pads, oh, ow) = geometry(desc);
    let (c_in, h, wd, kh, kw) = (desc.c_in, desc.h, desc.w, desc.kh, desc.kw);
    let (ckk, np) = (desc.ckk(), oh * ow);
    let image = c_in * h * wd;
    let mut acc = vec![0.0f64; images * image];
    for img in 0..images {
        for c in 0..c_in {
            for i in 0..kh {
                for j in 0..kw {
                    let row = (img * ckk + (c * kh + i) * kw + j) * np;
                    for oy in 0..oh {
                        let Some(iy) = source(oy, i, desc.stride.0, pads.top, h) else {
                            continue;
                        };
                        for ox in 0..ow {
                            let Some(ix) = source(ox, j, desc.stride.1, pads.left, wd) else {
                                continue;
                            };
                            acc[img * image + (c * h + iy) * wd + ix] += col[row + oy * ow + ox] as f64;
                        }
                    }
                }
            }
        }
    }
    let out = &mut dx[first * image..(first + images) * image];
    out.iter_mut().zip(acc).for_each(|(d, a)| *d = a as f32);
}
