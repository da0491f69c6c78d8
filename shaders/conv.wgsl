// 2-D convolution helpers: im2col, col2im, dy transpose, bias + activation, and
// the bias gradient. The matrix products themselves run on the tiled matmul
// (shaders/matmul.wgsl).
//
// Launchers: src/kernels/conv.rs. CPU twins: src/reference/conv.rs.
//
// Dimension names: images NCHW x[N, C, H, W]; weights w[O, C, KH, KW] (O = c_out);
// output y[N, O, OH, OW]; P = OH·OW output pixels per image; CKK = C·KH·KW.
// Stride (SH, SW); padding PT (top) and PL (left) — the bottom/right padding is
// implied by OH/OW. The launcher processes the batch in chunks of `images`
// images starting at image n0; `x_offset` is the element offset of image n0 in
// the tensor the entry point indexes per image (x, dx or dy).
//
// im2col layout (one decision used by every entry point): per image a row-major
//   col[img][p][r],  p = oy·OW + ox,  r = (c·KH + i)·KW + j,
//   col = x[n0 + img, c, oy·SH - PT + i, ox·SW - PL + j]   (0 outside the image),
// i.e. col_img is the [P, CKK] matrix whose row p is the receptive field of
// output pixel p. Then, with dyT[O, images·P] the chunk's dy transposed so that
// the images sit side by side:
//   forward   y_img[O, P]     = W[O, CKK] · col_img^T        (matmul NT, W broadcast)
//   weights   dW[O, CKK]     += dyT[O, images·P] · col[images·P, CKK]   (one NN matmul)
//   input     dcol[images·P, CKK] = dyT^T · W[O, CKK]        (matmul TN), then col2im
// Stacking the chunk's col_img blocks gives the dense [images·P, CKK] matrix the
// weight gradient needs, so the chunk's dW is one matmul with K = images·P.
//
// Entry points (one invocation per element; grids over 65,535 workgroups are
// folded and every invocation bounds-checks its linear index against p.total):
//   im2col        x -> col               total = images·P·CKK; col overwritten.
//   col2im        col -> dx (gather)     total = images·C·H·W; dx[x_offset ..]
//                 overwritten with the sum of the col entries that read each
//                 pixel (loops over the output pixels whose window covers it; no
//                 atomics).
//   transpose_dy  dy -> dyT              total = O·images·P;
//                 dyT[o, img·P + p] = dy[x_offset + (img·O + o)·P + p].
//   bias_act      y = act(y + bias[o])   total = N·O·P, in place.
//   bias_grad     db[o] = sum over n, p of dy[n, o, p]; one workgroup of RWG
//                 invocations per channel (tree reduction), db overwritten.
// Activation codes (p.act): 0 identity, 1 relu, 2 sigmoid, 3 tanh.

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
    total: u32,
    act: u32,
}

override WG: u32 = 256;
const RWG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> col: array<f32>;
@group(0) @binding(3) var<storage, read> col_in: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dyt: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;
@group(0) @binding(8) var<storage, read> bias: array<f32>;
@group(0) @binding(9) var<storage, read_write> db: array<f32>;

var<workgroup> partial: array<f32, RWG>;

fn linear_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, size: u32) -> u32 {
    return (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * size + lid;
}

@compute @workgroup_size(WG)
fn im2col(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let idx = linear_index(wg, nwg, lid, WG);
    if (idx >= p.total) {
        return;
    }
    let kk = p.kh * p.kw;
    let ckk = p.c * kk;
    let np = p.oh * p.ow;
    let r = idx % ckk;
    let t = idx / ckk;
    let pix = t % np;
    let img = t / np;
    let c = r / kk;
    let rk = r % kk;
    let i = rk / p.kw;
    let j = rk % p.kw;
    let oy = pix / p.ow;
    let ox = pix % p.ow;
    let iy = i32(oy * p.sh + i) - i32(p.pt);
    let ix = i32(ox * p.sw + j) - i32(p.pl);
    var v: f32 = 0.0;
    if (iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w)) {
        v = x[p.x_offset + ((img * p.c + c) * p.h + u32(iy)) * p.w + u32(ix)];
    }
    col[idx] = v;
}

// First output row/column whose window covers input coordinate `i` (padded
// coordinate i + pad), for kernel size k and stride s.
fn first_window(i: u32, pad: u32, k: u32, s: u32) -> u32 {
    let a = i + pad + 1u;
    if (a <= k) {
        return 0u;
    }
    return (a - k + s - 1u) / s;
}

// One past the last output row/column covering input coordinate `i`, clipped.
fn end_window(i: u32, pad: u32, s: u32, n_out: u32) -> u32 {
    return min((i + pad) / s + 1u, n_out);
}

@compute @workgroup_size(WG)
fn col2im(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let idx = linear_index(wg, nwg, lid, WG);
    if (idx >= p.total) {
        return;
    }
    let ix = idx % p.w;
    let t = idx / p.w;
    let iy = t % p.h;
    let t2 = t / p.h;
    let c = t2 % p.c;
    let img = t2 / p.c;
    let ckk = p.c * p.kh * p.kw;
    let img_base = img * p.oh * p.ow;
    let oy_end = end_window(iy, p.pt, p.sh, p.oh);
    let ox_begin = first_window(ix, p.pl, p.kw, p.sw);
    let ox_end = end_window(ix, p.pl, p.sw, p.ow);
    var acc: f32 = 0.0;
    for (var oy = first_window(iy, p.pt, p.kh, p.sh); oy < oy_end; oy++) {
        let i = iy + p.pt - oy * p.sh;
        let row_base = (c * p.kh + i) * p.kw;
        for (var ox = ox_begin; ox < ox_end; ox++) {
            let j = ix + p.pl - ox * p.sw;
            acc += col_in[(img_base + oy * p.ow + ox) * ckk + row_base + j];
        }
    }
    dx[p.x_offset + idx] = acc;
}

@compute @workgroup_size(WG)
fn transpose_dy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let idx = linear_index(wg, nwg, lid, WG);
    if (idx >= p.total) {
        return;
    }
    let np = p.oh * p.ow;
    let pix = idx % np;
    let t = idx / np;
    let img = t % p.images;
    let o = t / p.images;
    dyt[idx] = dy[p.x_offset + (img * p.c_out + o) * np + pix];
}

fn activate(v: f32) -> f32 {
    switch p.act {
        case 1u: {
            return max(v, 0.0);
        }
        case 2u: {
            // Stable both ways: exp never overflows.
            let e = exp(-abs(v));
            return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
        }
        case 3u: {
            let e = exp(-2.0 * abs(v));
            return sign(v) * (1.0 - e) / (1.0 + e);
        }
        default: {
            return v;
        }
    }
}

@compute @workgroup_size(WG)
fn bias_act(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let idx = linear_index(wg, nwg, lid, WG);
    if (idx >= p.total) {
        return;
    }
    let o = (idx / (p.oh * p.ow)) % p.c_out;
    y[idx] = activate(y[idx] + bias[o]);
}

@compute @workgroup_size(RWG)
fn bias_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    // One workgroup per output channel o (the grid may be folded: recover o).
    let o = wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y;
    let np = p.oh * p.ow;
    var acc: f32 = 0.0;
    if (o < p.c_out) {
        for (var n = 0u; n < p.images; n++) {
            let base = (n * p.c_out + o) * np;
            for (var k = lid; k < np; k += RWG) {
                acc += dy[base + k];
            }
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var stride = RWG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u && o < p.c_out) {
        db[o] = partial[0];
    }
}
