// 2-D convolution helpers: im2col, col2im, weight packing and the per-image
// weight-gradient reduction. The matrix products run on the tiled matmul
// (shaders/matmul.wgsl).
//
// Launchers: src/kernels/conv.rs. CPU twins: src/reference/conv.rs.
//
// Dimension names: images NCHW x[N, C, H, W]; weights w[O, C, KH, KW] (O = c_out);
// output y[N, O, OH, OW]; P = OH·OW output pixels per image; CKK = C·KH·KW.
// Stride (SH, SW); padding PT (top) and PL (left) — the bottom/right padding is
// implied by OH/OW. The launcher processes the batch in chunks of `images`
// images starting at image n0; `x_offset` is the element offset of image n0 in
// x (im2col) or dx (col2im).
//
// im2col layout (one decision used by every entry point): per image a row-major
//   col[img][r][p],  r = (c·KH + i)·KW + j < CKK,  p = oy·OW + ox,
//   col = x[n0 + img, c, oy·SH - PT + i, ox·SW - PL + j]   (0 outside the image),
// with LD = CKK or CKK + 1 rows per image; the optional extra row r = CKK is all
// ones, so a bias becomes one more column of the weights (see pack_weights).
// Then, per image (batched matmuls, the long P dimension along N):
//   forward  y_img[O, P]       = W'[O, LD] · col_img[LD, P]            (NN, W' broadcast)
//   weights  part_img[LD, O]   = col_img[LD, P] · dy_img[O, P]^T       (NT)
//            dW[o, r] (+)= Σ_img part_img[r, o]; with the ones row, row CKK
//            of the sum is the bias gradient Σ_img,p dy[img, o, p]       (reduce_dw)
//   input    dcol_img[CKK, P]  = W[O, CKK]^T · dy_img[O, P]             (TN), then col2im
// so bias, activation and the bias gradient need no pass of their own.
//
// On CPU adapters (lavapipe) integer division (done lane by lane) and every
// storage access are expensive, so im2col and col2im run one workgroup per row
// or plane (uniform index arithmetic), step their invocations through it without
// dividing, and divide the few small coordinates by the stride through f32
// (div_small). The launcher sizes WG from the row length (8 to 64).
//
// Entry points:
//   im2col         workgroup g = img·LD + r writes row r of image img (P values);
//                  col overwritten. Row r = CKK (when LD > CKK) is all ones.
//                  Gather form: one load per col entry.
//   im2col_scatter the same col, one workgroup per input plane (+ one per ones
//                  row): each pixel loaded once, stored to every entry reading it.
//   col2im         workgroup g = img·C + c gathers plane c of image img:
//                  dx[x_offset + g·H·W + iy·W + ix] = Σ of dcol entries reading
//                  that pixel (col layout with LD = CKK); overwritten. Gather form:
//                  loops over the windows covering the pixel, no atomics.
//   pack_weights   wp[o, r] = w[o, r] for r < CKK, bias[o] for r = CKK (LD = CKK + 1).
//   reduce_dw      dw[o, r] (+)= Σ_img part[img, r, o] for r < CKK (LD = CKK).
//   reduce_dw_db   the same with LD = CKK + 1; row CKK goes to db[o].
//   (reduce_*: "+=" when p.accumulate == 1, else "=".)
// Elementwise entry points use one invocation per element with grids over 65,535
// workgroups folded; every entry point bounds-checks its linear index.

struct Params {
    c: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    pt: u32,
    pl: u32,
    c_out: u32,
    images: u32,
    x_offset: u32,
    ld: u32,
    accumulate: u32,
}

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> col: array<f32>;
@group(0) @binding(3) var<storage, read> col_in: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read> w: array<f32>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;
@group(0) @binding(7) var<storage, read_write> wp: array<f32>;
@group(0) @binding(8) var<storage, read> part: array<f32>;
@group(0) @binding(9) var<storage, read_write> dw: array<f32>;
@group(0) @binding(10) var<storage, read_write> db: array<f32>;

// group_index, div_small, first_window, end_window and the walk_start/walk_next
// plane walk come from shaders/plane.wgsl, prepended to this file.

@compute @workgroup_size(WG)
fn im2col(@builtin(workgroup_id) wgid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let g = group_index(wgid, nwg);
    if (g >= p.images * p.ld) {
        return;
    }
    let np = p.oh * p.ow;
    let out_base = g * np;
    let img = g / p.ld;
    let r = g % p.ld;
    let kk = p.kh * p.kw;
    if (r >= p.c * kk) {
        for (var q = lid; q < np; q += WG) {
            col[out_base + q] = 1.0;
        }
        return;
    }
    let c = r / kk;
    let i = (r % kk) / p.kw;
    let j = r % p.kw;
    let x_base = p.x_offset + (img * p.c + c) * p.h * p.w;
    // This invocation's pixel (oy, ox), advanced by WG pixels per step.
    let step = walk_step(p.ow);
    var at = walk_start(lid, p.ow);
    for (var q = lid; q < np; q += WG) {
        let ox = at.x;
        let oy = at.y;
        let iy = i32(oy * p.sh + i) - i32(p.pt);
        let ix = i32(ox * p.sw + j) - i32(p.pl);
        var v: f32 = 0.0;
        if (iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w)) {
            v = x[x_base + u32(iy) * p.w + u32(ix)];
        }
        col[out_base + q] = v;
        at = walk_next(at, step, p.ow);
    }
}

// im2col, scatter form: workgroup g < images·C reads plane g = img·C + c of x once
// and writes every col entry that reads each pixel; workgroups g >= images·C (only
// when LD > CKK) write the ones row of image g - images·C. The invocations step
// through the padded window domain Hd × Wd (Hd = (OH - 1)·SH + KH, the padded rows
// some window reaches; Wd likewise), so padding pixels write their zeros too and
// every col entry is written exactly once: entry (c, i, j; oy, ox) by padded pixel
// (oy·SH + i, ox·SW + j). A pixel at padded row py feeds the kernel rows
// i ≡ py (mod SH), i.e. i = py % SH + t·SH, at output row oy = py / SH - t.
// Loads Hd·Wd per plane instead of KH·KW·OH·OW: 7.8x fewer for a 3x3 valid
// convolution (on lavapipe a load costs ~3 stores). The launcher picks it when it
// loads less than the gather form.
@compute @workgroup_size(WG)
fn im2col_scatter(@builtin(workgroup_id) wgid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let g = group_index(wgid, nwg);
    let planes = p.images * p.c;
    let np = p.oh * p.ow;
    let kk = p.kh * p.kw;
    if (g >= planes) {
        // (Folded grids have spare workgroups past the last one.)
        if (g < planes + p.images && p.ld > p.c * kk) {
            let base = ((g - planes) * p.ld + p.c * kk) * np;
            for (var q = lid; q < np; q += WG) {
                col[base + q] = 1.0;
            }
        }
        return;
    }
    let img = g / p.c;
    let c = g % p.c;
    let x_base = p.x_offset + g * p.h * p.w;
    // Row r = c·KK + i·KW + j of image img.
    let out_base = (img * p.ld + c * kk) * np;
    let hd = (p.oh - 1u) * p.sh + p.kh;
    let wd = (p.ow - 1u) * p.sw + p.kw;
    // This invocation's padded pixel (py, px), advanced by WG pixels per step.
    let step = walk_step(wd);
    var at = walk_start(lid, wd);
    for (var q = lid; q < hd * wd; q += WG) {
        let px = at.x;
        let py = at.y;
        let iy = i32(py) - i32(p.pt);
        let ix = i32(px) - i32(p.pl);
        var v: f32 = 0.0;
        if (iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w)) {
            v = x[x_base + u32(iy) * p.w + u32(ix)];
        }
        let qy = div_small(py, p.sh);
        let qx = div_small(px, p.sw);
        // Output rows/columns run down from qy / qx; past 0 they wrap to huge
        // values and fail the < OH / < OW tests.
        var oy = qy;
        for (var i = py - qy * p.sh; i < p.kh; i += p.sh) {
            if (oy < p.oh) {
                let row = out_base + i * p.kw * np + oy * p.ow;
                var ox = qx;
                for (var j = px - qx * p.sw; j < p.kw; j += p.sw) {
                    if (ox < p.ow) {
                        col[row + j * np + ox] = v;
                    }
                    ox -= 1u;
                }
            }
            oy -= 1u;
        }
        at = walk_next(at, step, wd);
    }
}

@compute @workgroup_size(WG)
fn col2im(@builtin(workgroup_id) wgid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let g = group_index(wgid, nwg);
    if (g >= p.images * p.c) {
        return;
    }
    let img = g / p.c;
    let c = g % p.c;
    let hw = p.h * p.w;
    let np = p.oh * p.ow;
    let col_base = (img * p.ld + c * p.kh * p.kw) * np;
    let dx_base = p.x_offset + g * hw;
    let step = walk_step(p.w);
    var at = walk_start(lid, p.w);
    for (var q = lid; q < hw; q += WG) {
        let ix = at.x;
        let iy = at.y;
        let oy_end = end_window(iy, p.pt, p.sh, p.oh);
        let ox_begin = first_window(ix, p.pl, p.kw, p.sw);
        let ox_end = end_window(ix, p.pl, p.sw, p.ow);
        var acc: f32 = 0.0;
        for (var oy = first_window(iy, p.pt, p.kh, p.sh); oy < oy_end; oy++) {
            let i = iy + p.pt - oy * p.sh;
            let row = col_base + i * p.kw * np + oy * p.ow;
            for (var ox = ox_begin; ox < ox_end; ox++) {
                let j = ix + p.pl - ox * p.sw;
                acc += col_in[row + j * np + ox];
            }
        }
        dx[dx_base + q] = acc;
        at = walk_next(at, step, p.w);
    }
}

@compute @workgroup_size(WG)
fn pack_weights(@builtin(workgroup_id) wgid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let e = group_index(wgid, nwg) * WG + lid;
    if (e >= p.c_out * p.ld) {
        return;
    }
    let o = e / p.ld;
    let r = e % p.ld;
    let ckk = p.ld - 1u;
    if (r < ckk) {
        wp[e] = w[o * ckk + r];
    } else {
        wp[e] = bias[o];
    }
}

// Σ over the chunk's images of part[img, r, o].
fn sum_parts(r: u32, o: u32) -> f32 {
    var s: f32 = 0.0;
    let step = p.ld * p.c_out;
    var k = r * p.c_out + o;
    for (var img = 0u; img < p.images; img++) {
        s += part[k];
        k += step;
    }
    return s;
}

@compute @workgroup_size(WG)
fn reduce_dw(@builtin(workgroup_id) wgid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let e = group_index(wgid, nwg) * WG + lid;
    if (e >= p.c_out * p.ld) {
        return;
    }
    let s = sum_parts(e % p.ld, e / p.ld);
    if (p.accumulate == 1u) {
        dw[e] += s;
    } else {
        dw[e] = s;
    }
}

@compute @workgroup_size(WG)
fn reduce_dw_db(@builtin(workgroup_id) wgid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let e = group_index(wgid, nwg) * WG + lid;
    if (e >= p.c_out * p.ld) {
        return;
    }
    let o = e / p.ld;
    let r = e % p.ld;
    let s = sum_parts(r, o);
    let ckk = p.ld - 1u;
    if (r < ckk) {
        let k = o * ckk + r;
        if (p.accumulate == 1u) {
            dw[k] += s;
        } else {
            dw[k] = s;
        }
    } else {
        if (p.accumulate == 1u) {
            db[o] += s;
        } else {
            db[o] = s;
        }
    }
}
