//! CPU twins of the pool kernels (f64 accumulation), same contracts as
//! [`crate::kernels::pool`]. Shapes are taken from the [`Pool2dDesc`]; the caller
//! validates it with `desc.out_hw()` and sizes the slices.

use crate::kernels::pool::Pool2dDesc;

/// Output size of `desc`. Panics on an invalid description (reference code: the
/// caller passes valid shapes).
fn out_hw(desc: &Pool2dDesc) -> (usize, usize) {
    desc.out_hw().expect("reference::pool: invalid Pool2dDesc")
}

/// Input rows covered by output row `o`: padded-coordinate window start and the
/// real rows it reaches, clipped to `[0, size)`.
fn window(o: usize, stride: usize, pad: usize, k: usize, size: usize) -> std::ops::Range<usize> {
    let start = (o * stride) as isize - pad as isize;
    let lo = start.max(0) as usize;
    let hi = ((start + k as isize).max(0) as usize).min(size);
    lo..hi
}

/// Max pooling: `y` = largest real element of each window, `indices` = its flat
/// position `iy·w + ix` in its plane (first on ties, rows then columns).
pub fn max_pool2d_forward(desc: &Pool2dDesc, x: &[f32], y: &mut [f32], indices: &mut [u32]) {
    let (oh, ow) = out_hw(desc);
    let (h, w) = (desc.h, desc.w);
    for plane in 0..desc.n * desc.c {
        let xp = &x[plane * h * w..(plane + 1) * h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best: Option<(f32, usize)> = None;
                for iy in window(oy, desc.stride.0, desc.padding.0, desc.kh, h) {
                    for ix in window(ox, desc.stride.1, desc.padding.1, desc.kw, w) {
                        let v = xp[iy * w + ix];
                        if best.is_none_or(|(b, _)| v > b) {
                            best = Some((v, iy * w + ix));
                        }
                    }
                }
                let (v, i) = best.expect("every window holds a real element");
                let o = (plane * oh + oy) * ow + ox;
                y[o] = v;
                indices[o] = i as u32;
            }
        }
    }
}

/// Max pooling backward: `dx` (overwritten) gets each `dy` element added at the
/// position its index records.
pub fn max_pool2d_backward(desc: &Pool2dDesc, dy: &[f32], indices: &[u32], dx: &mut [f32]) {
    let (oh, ow) = out_hw(desc);
    let hw = desc.h * desc.w;
    let mut acc = vec![0.0f64; dx.len()];
    for plane in 0..desc.n * desc.c {
        for o in 0..oh * ow {
            let k = plane * oh * ow + o;
            acc[plane * hw + indices[k] as usize] += dy[k] as f64;
        }
    }
    dx.iter_mut().zip(acc).for_each(|(d, a)| *d = a as f32);
}

/// Average pooling: `y` = sum of the window's real elements / `(kh·kw)`
/// (count_include_pad=True).
pub fn avg_pool2d_forward(desc: &Pool2dDesc, x: &[f32], y: &mut [f32]) {
    let (oh, ow) = out_hw(desc);
    let (h, w) = (desc.h, desc.w);
    let div = (desc.kh * desc.kw) as f64;
    for plane in 0..desc.n * desc.c {
        let xp = &x[plane * h * w..(plane + 1) * h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut s = 0.0f64;
                for iy in window(oy, desc.stride.0, desc.padding.0, desc.kh, h) {
                    for ix in window(ox, desc.stride.1, desc.padding.1, desc.kw, w) {
                        s += xp[iy * w + ix] as f64;
                    }
                }
                y[(plane * oh + oy) * ow + ox] = (s / div) as f32;
            }
        }
    }
}

/// Average pooling backward: `dx` (overwritten) = sum over covering windows of
/// `dy / (kh·kw)`.
pub fn avg_pool2d_backward(desc: &Pool2dDesc, dy: &[f32], dx: &mut [f32]) {
    let (oh, ow) = out_hw(desc);
    let (h, w) = (desc.h, desc.w);
    let div = (desc.kh * desc.kw) as f64;
    let mut acc = vec![0.0f64; dx.len()];
    for plane in 0..desc.n * desc.c {
        for oy in 0..oh {
            for ox in 0..ow {
                let g = dy[(plane * oh + oy) * ow + ox] as f64 / div;
                for iy in window(oy, desc.stride.0, desc.padding.0, desc.kh, h) {
                    for ix in window(ox, desc.stride.1, desc.padding.1, desc.kw, w) {
                        acc[plane * h * w + iy * w + ix] += g;
                    }
                }
            }
        }
    }
    dx.iter_mut().zip(acc).for_each(|(d, a)| *d = a as f32);
}
