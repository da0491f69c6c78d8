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
// max_pool_forward_2x2 / max_pool_backward_2x2: the same for 2x2 windows, column
//   stride 2, no padding, even w, with pairs of x / dx as vec2 (see below).
// max_pool_backward_scatter: the same result when windows do not overlap (stride
//   >= kernel in both dimensions): one invocation per output element writes its
//   whole stride cell of dx (dy at the recorded index, 0 elsewhere), the last
//   cells of a row/column stretched over the input no window covers. ~2 loads and
//   sh·sw stores per output instead of ~3 accesses per input plus loop overhead.
// avg_pool_forward: y = (sum of the real elements of the window) / (kh·kw), i.e.
//   padded positions count as zeros in the divisor (PyTorch's default
//   count_include_pad=True; in floor mode no window reaches past the padding).
// avg_pool_backward: dx[iy, ix] = sum over covering windows of dy / (kh·kw);
//   gather form, dx overwritten.
// avg_pool_backward_scatter: the same for disjoint windows, one invocation per
//   output element writing its cell (dy / (kh·kw) inside the window, 0 outside).
//
// Work split: one workgroup per plane (the grid folded past 65,535 groups); its
// WG invocations step through the plane's output elements (forward, scatter
// backward) or input elements (gather backward), tracking their (row, column)
// incrementally. CPU adapters
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
// x and dx seen as pairs, for the 2x2 entry points only (an entry point binds
// either these or the scalar views, never both).
@group(0) @binding(1) var<storage, read> x_pairs: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> dx_pairs: array<vec2<f32>>;

// group_index, div_small, first_window, end_window and the walk_start/walk_next
// plane walk come from shaders/plane.wgsl, prepended to this file.

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
    // -inf: every real element (but NaN) beats it or ties, and on a window of
    // -infs the first element is kept, as the CPU twin does.
    let neg_inf = bitcast<f32>(0xff800000u);
    let step = walk_step(p.ow);
    var at = walk_start(lid, p.ow);
    for (var q = lid; q < n_out; q += WG) {
        let ox = at.x;
        let oy = at.y;
        // The window clipped to the image once, so the element loop has no bounds
        // checks (the launcher guarantees a non-empty intersection).
        let y0 = i32(oy * p.sh) - i32(p.ph);
        let x0 = i32(ox * p.sw) - i32(p.pw);
        let iy0 = u32(max(y0, 0));
        let iy1 = u32(min(y0 + i32(p.kh), i32(p.h)));
        let ix0 = u32(max(x0, 0));
        let ix1 = u32(min(x0 + i32(p.kw), i32(p.w)));
        var best = neg_inf;
        var best_idx = iy0 * p.w + ix0;
        for (var row = iy0 * p.w; row < iy1 * p.w; row += p.w) {
            for (var flat = row + ix0; flat < row + ix1; flat++) {
                let v = x[in_base + flat];
                let better = v > best;
                best = select(best, v, better);
                best_idx = select(best_idx, flat, better);
            }
        }
        y[out_base + q] = best;
        indices[out_base + q] = best_idx;
        at = walk_next(at, step, p.ow);
    }
}

// Gather form (any windows, overlapping included): one invocation per dx element.
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
    let step = walk_step(p.w);
    var at = walk_start(lid, p.w);
    for (var q = lid; q < n_in; q += WG) {
        let ix = at.x;
        let iy = at.y;
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
        at = walk_next(at, step, p.w);
    }
}

// Input rows [lo, hi) of output row `o`'s cell when windows do not overlap
// (stride >= kernel): the stride-wide band [o·s - pad, (o+1)·s - pad) clipped to
// the image, the last band stretched to the end of the image so that rows no
// window covers (floor mode's leftovers, gaps past the window) are written too.
fn cell(o: u32, s: u32, pad: u32, n_out: u32, size: u32) -> vec2<u32> {
    let lo = u32(max(i32(o * s) - i32(pad), 0));
    let hi = select(min(o * s + s - pad, size), size, o + 1u == n_out);
    return vec2<u32>(lo, hi);
}

// Scatter form, only for non-overlapping windows (stride >= kernel in both
// dimensions; the launcher picks it): one invocation per OUTPUT element reads its
// index and dy once and writes its whole cell of dx (dy at the argmax, 0 elsewhere).
// The cells tile the plane, so every dx element is written exactly once.
@compute @workgroup_size(WG)
fn max_pool_backward_scatter(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let plane = group_index(wg, nwg);
    if (plane >= p.planes) {
        return;
    }
    let n_out = p.oh * p.ow;
    let in_base = plane * p.h * p.w;
    let out_base = plane * n_out;
    let step = walk_step(p.ow);
    var at = walk_start(lid, p.ow);
    for (var q = lid; q < n_out; q += WG) {
        let ox = at.x;
        let oy = at.y;
        let g = dy[out_base + q];
        let hit = in_base + indices_in[out_base + q];
        let rows = cell(oy, p.sh, p.ph, p.oh, p.h);
        let cols = cell(ox, p.sw, p.pw, p.ow, p.w);
        for (var row = in_base + rows.x * p.w; row < in_base + rows.y * p.w; row += p.w) {
            for (var i = row + cols.x; i < row + cols.y; i++) {
                dx[i] = select(0.0, g, i == hit);
            }
        }
        at = walk_next(at, step, p.ow);
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
    let step = walk_step(p.ow);
    var at = walk_start(lid, p.ow);
    for (var q = lid; q < n_out; q += WG) {
        let ox = at.x;
        let oy = at.y;
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
        at = walk_next(at, step, p.ow);
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
    let step = walk_step(p.w);
    var at = walk_start(lid, p.w);
    for (var q = lid; q < n_in; q += WG) {
        let ix = at.x;
        let iy = at.y;
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
        at = walk_next(at, step, p.w);
    }
}
// Scatter form of avg_pool_backward for disjoint windows (see
// max_pool_backward_scatter): each output writes its cell, dy / (kh·kw) on the
// window's real elements and 0 on the rest of the cell.
@compute @workgroup_size(WG)
fn avg_pool_backward_scatter(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let plane = group_index(wg, nwg);
    if (plane >= p.planes) {
        return;
    }
    let n_out = p.oh * p.ow;
    let in_base = plane * p.h * p.w;
    let out_base = plane * n_out;
    let scale = 1.0 / f32(p.kh * p.kw);
    let step = walk_step(p.ow);
    var at = walk_start(lid, p.ow);
    for (var q = lid; q < n_out; q += WG) {
        let ox = at.x;
        let oy = at.y;
        let g = dy[out_base + q] * scale;
        let rows = cell(oy, p.sh, p.ph, p.oh, p.h);
        let cols = cell(ox, p.sw, p.pw, p.ow, p.w);
        // Window ends (exclusive, unclipped: past the image they never match).
        let wy_end = oy * p.sh + p.kh - p.ph;
        let wx_end = ox * p.sw + p.kw - p.pw;
        for (var iy = rows.x; iy < rows.y; iy++) {
            let row = in_base + iy * p.w;
            let gy = select(0.0, g, iy < wy_end);
            for (var ix = cols.x; ix < cols.y; ix++) {
                dx[row + ix] = select(0.0, gy, ix < wx_end);
            }
        }
        at = walk_next(at, step, p.ow);
    }
}

// 2x2 windows with column stride 2, no padding and an even width w (the launcher's
// choice; Keras' MaxPool2D(2) on even sizes, as in the seed CNN): every window row
// is one aligned pair of x, so the forward makes 2 vec2 loads per output and the
// backward (disjoint windows: row stride >= 2) 1 vec2 store per cell row, instead
// of 4 scalar accesses. On lavapipe a vec2 access costs one loop over the SIMD
// lanes for both components: ~25% faster than max_pool_forward here. Same
// results as max_pool_forward / max_pool_backward_scatter (ties: the first in
// row-major order). With w even, w = 2·ow exactly, so no column is left over.
@compute @workgroup_size(WG)
fn max_pool_forward_2x2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let plane = group_index(wg, nwg);
    if (plane >= p.planes) {
        return;
    }
    let n_out = p.oh * p.ow;
    // Pairs: a plane row holds w / 2 of them.
    let half_w = p.w / 2u;
    let in_base = plane * p.h * half_w;
    let out_base = plane * n_out;
    let step = walk_step(p.ow);
    var at = walk_start(lid, p.ow);
    for (var q = lid; q < n_out; q += WG) {
        let ox = at.x;
        let oy = at.y;
        let top = oy * p.sh * half_w + ox;
        let a = x_pairs[in_base + top];
        let b = x_pairs[in_base + top + half_w];
        // Flat index of the window's first element inside its plane.
        let f = 2u * top;
        var best = a.x;
        var best_idx = f;
        if (a.y > best) {
            best = a.y;
            best_idx = f + 1u;
        }
        if (b.x > best) {
            best = b.x;
            best_idx = f + p.w;
        }
        if (b.y > best) {
            best = b.y;
            best_idx = f + p.w + 1u;
        }
        y[out_base + q] = best;
        indices[out_base + q] = best_idx;
        at = walk_next(at, step, p.ow);
    }
}

@compute @workgroup_size(WG)
fn max_pool_backward_2x2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let plane = group_index(wg, nwg);
    if (plane >= p.planes) {
        return;
    }
    let n_out = p.oh * p.ow;
    let half_w = p.w / 2u;
    let in_base = plane * p.h * half_w;
    let out_base = plane * n_out;
    let step = walk_step(p.ow);
    var at = walk_start(lid, p.ow);
    for (var q = lid; q < n_out; q += WG) {
        let ox = at.x;
        let oy = at.y;
        let g = dy[out_base + q];
        let hit = indices_in[out_base + q];
        // Cell rows [oy·sh, (oy+1)·sh), the last stretched to h; the window covers
        // its first 2 rows.
        let rows = cell(oy, p.sh, 0u, p.oh, p.h);
        for (var iy = rows.x; iy < rows.y; iy++) {
            let pair = iy * half_w + ox;
            let f = 2u * pair;
            dx_pairs[in_base + pair] = vec2<f32>(select(0.0, g, f == hit), select(0.0, g, f + 1u == hit));
        }
        at = walk_next(at, step, p.ow);
    }
}
