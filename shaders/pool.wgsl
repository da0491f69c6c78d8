// 2-D max and average pooling over NCHW images, forward and backward.
//
// Launchers: src/kernels/pool.rs. CPU twins: src/reference/pool.rs.
//
// Layout: x and dx are [planes, h, w] with planes = N·C (each image channel is an
// independent plane); y, dy and indices are [planes, oh, ow]. Windows are kh×kw,
// stride (sh, sw), zero-width symmetric padding (ph, pw) on each side, floor mode:
// oh = (h + 2·ph - kh) / sh + 1. The launcher guarantees ph <= kh/2 and pw <= kw/2,
// so every window holds at least one real input element.
//
// max_pool_forward: y = max over the real (unpadded) elements of the window;
//   indices = iy·w + ix of that element inside its plane (the first one on ties,
//   scanning rows then columns). NaN inputs give unspecified results.
// max_pool_backward: dx[iy, ix] = sum of dy[oy, ox] over the windows covering
//   (iy, ix) whose index points at (iy, ix). Gather form: one invocation per dx
//   element loops over the covering windows, so overlapping windows (stride <
//   kernel) need no atomics. dx is overwritten.
// avg_pool_forward: y = (sum of the real elements of the window) / (kh·kw), i.e.
//   padded positions count as zeros in the divisor (PyTorch's default
//   count_include_pad=True; in floor mode no window reaches past the padding).
// avg_pool_backward: dx[iy, ix] = sum over covering windows of dy / (kh·kw);
//   gather form, dx overwritten.
//
// Work split: one workgroup per plane (the grid folded past 65,535 groups); its
// WG invocations step through the plane's output elements (forward) or input
// elements (backward), tracking their (row, column) incrementally. CPU adapters
// (lavapipe) divide integers lane by lane, slowly, so no per-element integer
// division remains: the few divisions by the stride use `div_small`, exact for
// the small coordinates involved (the launcher keeps them under 2^20).

struct Params {
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    // Number of planes (N·C).
    planes: u32,
    _pad: u32,
}

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> indices: array<u32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read> indices_in: array<u32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

fn group_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y;
}

// floor(a / s) for a < 2^20 and s >= 1 through one f32 division: (a + 0.5) / s
// sits at least 0.5 / s away from an integer, far beyond f32's rounding error.
fn div_small(a: u32, s: u32) -> u32 {
    return u32((f32(a) + 0.5) / f32(s));
}

// First output row/column whose window covers input coordinate `i` (padded
// coordinate i + pad), for kernel size k and stride s.
fn first_window(i: u32, pad: u32, k: u32, s: u32) -> u32 {
    let a = i + pad + 1u;
    if (a <= k) {
        return 0u;
    }
    return div_small(a - k + s - 1u, s);
}

// One past the last output row/column covering input coordinate `i`, clipped.
fn end_window(i: u32, pad: u32, s: u32, n_out: u32) -> u32 {
    return min(div_small(i + pad, s) + 1u, n_out);
}

@compute @workgroup_size(WG)
fn max_pool_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let plane = group_index(wg, nwg);
    if (plane >= p.planes) {
        return;
    }
    let n_out = p.oh * p.ow;
    let in_base = plane * p.h * p.w;
    let out_base = plane * n_out;
    var oy = lid / p.ow;
    var ox = lid % p.ow;
    let step_y = WG / p.ow;
    let step_x = WG % p.ow;
    for (var q = lid; q < n_out; q += WG) {
        let y0 = i32(oy * p.sh) - i32(p.ph);
        let x0 = i32(ox * p.sw) - i32(p.pw);
        var best: f32 = 0.0;
        var best_idx: u32 = 0xffffffffu;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = y0 + i32(ky);
            if (iy < 0 || iy >= i32(p.h)) {
                continue;
            }
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = x0 + i32(kx);
                if (ix < 0 || ix >= i32(p.w)) {
                    continue;
                }
                let flat = u32(iy) * p.w + u32(ix);
                let v = x[in_base + flat];
                if (best_idx == 0xffffffffu || v > best) {
                    best = v;
                    best_idx = flat;
                }
            }
        }
        y[out_base + q] = best;
        indices[out_base + q] = best_idx;
        ox += step_x;
        oy += step_y;
        if (ox >= p.ow) {
            ox -= p.ow;
            oy += 1u;
        }
    }
}

@compute @workgroup_size(WG)
fn max_pool_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let plane = group_index(wg, nwg);
    if (plane >= p.planes) {
        return;
    }
    let n_in = p.h * p.w;
    let in_base = plane * n_in;
    let out_base = plane * p.oh * p.ow;
    var iy = lid / p.w;
    var ix = lid % p.w;
    let step_y = WG / p.w;
    let step_x = WG % p.w;
    for (var q = lid; q < n_in; q += WG) {
        let oy_end = end_window(iy, p.ph, p.sh, p.oh);
        let ox_begin = first_window(ix, p.pw, p.kw, p.sw);
        let ox_end = end_window(ix, p.pw, p.sw, p.ow);
        var acc: f32 = 0.0;
        for (var oy = first_window(iy, p.ph, p.kh, p.sh); oy < oy_end; oy++) {
            for (var ox = ox_begin; ox < ox_end; ox++) {
                let o = out_base + oy * p.ow + ox;
                if (indices_in[o] == q) {
                    acc += dy[o];
                }
            }
        }
        dx[in_base + q] = acc;
        ix += step_x;
        iy += step_y;
        if (ix >= p.w) {
            ix -= p.w;
            iy += 1u;
        }
    }
}

@compute @workgroup_size(WG)
fn avg_pool_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let plane = group_index(wg, nwg);
    if (plane >= p.planes) {
        return;
    }
    let n_out = p.oh * p.ow;
    let in_base = plane * p.h * p.w;
    let out_base = plane * n_out;
    let scale = 1.0 / f32(p.kh * p.kw);
    var oy = lid / p.ow;
    var ox = lid % p.ow;
    let step_y = WG / p.ow;
    let step_x = WG % p.ow;
    for (var q = lid; q < n_out; q += WG) {
        let y0 = i32(oy * p.sh) - i32(p.ph);
        let x0 = i32(ox * p.sw) - i32(p.pw);
        var acc: f32 = 0.0;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = y0 + i32(ky);
            if (iy < 0 || iy >= i32(p.h)) {
                continue;
            }
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = x0 + i32(kx);
                if (ix < 0 || ix >= i32(p.w)) {
                    continue;
                }
                acc += x[in_base + u32(iy) * p.w + u32(ix)];
            }
        }
        y[out_base + q] = acc * scale;
        ox += step_x;
        oy += step_y;
        if (ox >= p.ow) {
            ox -= p.ow;
            oy += 1u;
        }
    }
}

@compute @workgroup_size(WG)
fn avg_pool_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let plane = group_index(wg, nwg);
    if (plane >= p.planes) {
        return;
    }
    let n_in = p.h * p.w;
    let in_base = plane * n_in;
    let out_base = plane * p.oh * p.ow;
    let scale = 1.0 / f32(p.kh * p.kw);
    var iy = lid / p.w;
    var ix = lid % p.w;
    let step_y = WG / p.w;
    let step_x = WG % p.w;
    for (var q = lid; q < n_in; q += WG) {
        let oy_end = end_window(iy, p.ph, p.sh, p.oh);
        let ox_begin = first_window(ix, p.pw, p.kw, p.sw);
        let ox_end = end_window(ix, p.pw, p.sw, p.ow);
        var acc: f32 = 0.0;
        for (var oy = first_window(iy, p.ph, p.kh, p.sh); oy < oy_end; oy++) {
            for (var ox = ox_begin; ox < ox_end; ox++) {
                acc += dy[out_base + oy * p.ow + ox];
            }
        }
        dx[in_base + q] = acc * scale;
        ix += step_x;
        iy += step_y;
        if (ix >= p.w) {
            ix -= p.w;
            iy += 1u;
        }
    }
}
