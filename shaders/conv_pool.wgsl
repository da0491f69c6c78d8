// Fused 2-D convolution + activation + 2x2/2 max-pool, forward and weight
// gradient, for CPU adapters with subgroups of at least 8 lanes (lavapipe).
//
// Launcher: src/kernels/conv_pool.rs. CPU twin: src/reference/conv_pool.rs.
// Layouts are PyTorch's: x [N, C_in, H, W], w [C_out, C_in, KH, KW], bias [C_out].
// With z = conv(x, w) + bias (stride (sh, sw), padding pt on top and pl on the
// left, zeros outside the image) of size [N, C_out, OH, OW], PH = OH / 2 and
// PW = OW / 2 (floor: an odd last row or column of z is not pooled):
//
//   conv_pool_forward
//     y[n, o, i, j] = act(max over (a, b) in {0,1}^2 of z[n, o, 2i + a, 2j + b])
//     and a 4-bit code per channel: bits 0-1 the window 2a + b of the first maximum
//     in the order (0,0) (0,1) (1,0) (1,1); bit 2 set when the gradient passes
//     the activation without reading y (identity always; relu when y > 0; never
//     for sigmoid and tanh, whose derivative comes from y). Channel o of the block
//     of 32 that starts at 32 cb goes to word idx[n, 4 cb + (o % 32) / 8, i, j] at
//     bit 4 (o % 8); idx is u32 [N, 4 ceil(C_out / 32), PH, PW].
//   conv_pool_backward (with gy the gradient of y and dz = gy * act'(y): gy where
//     bit 2 is set, 0 elsewhere for identity and relu, gy * activation_grad(y) for
//     sigmoid and tanh, as shaders/activation.wgsl writes it)
//     part[c, t, o] = sum over the positions of chunk c of dz * x-value of tap t
//     at the window's arg-max, for t < TAPS = C_in KH KW (tap t = (ci, ky, kx) in
//     row-major order, the OIHW weight order), and part[c, TAPS, o] = sum of dz
//     (the bias gradient). reduce_dw_db of shaders/conv.wgsl then sums the chunks.
//
// act is ACT (0 identity, 1 relu, 2 sigmoid, 3 tanh). act is non-decreasing, so
// act(max z) = max act(z): this equals Conv2D(activation) followed by
// MaxPool2D(2) without ever writing z, and max-pool's gradient reaches z only at
// each window's arg-max, where act'(z) = act'(y).
//
// Why (measured on lavapipe, see BENCHMARKS.md): there each storage access costs a
// loop over the SIMD lanes (~20 cycles per lane) and arithmetic is nearly free.
// The unfused path writes z (im2col, matmul, max-pool: ~2.2 M accesses for the seed
// CNN at batch 32) and reads it back in backward (relu mask, pool scatter, im2col
// again, dW matmul: ~2.9 M); these kernels touch x, y, idx and gy only (~0.5 M each).
//
// Shape of the work: a workgroup is 8 invocations in one subgroup and a block of
// 32 output channels, held as 8 vec4 "quads". Forward: two pooled positions
// (n, i, j) per invocation (so each weight load serves two); backward: a chunk
// of positions per invocation. Weights and bias are loaded once per workgroup
// and tap, 4 per lane, and handed to every lane with subgroupShuffle.
// Accumulators live in private arrays indexed by constants only (helpers called
// with literal arguments), so the compiler keeps them in registers.
// Assumes (checked by the launcher): sizes >= 1, PH, PW >= 1, every index fits
// u32, the device has subgroups of at least 8 lanes.

struct Params {
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    pt: u32,
    pl: u32,
    ph: u32,
    pw: u32,
    taps: u32,
    positions: u32,     // N * PH * PW
    chan_blocks: u32,   // ceil(C_out / 32)
    tap_blocks: u32,    // ceil(TAPS / TB) (backward)
    per_lane: u32,      // positions per invocation (backward)
    chunks: u32,        // workgroups along the positions (backward)
    _pad0: u32,
    _pad1: u32,
}

override ACT: u32 = 0u;
// Taps per backward workgroup (1..16): the literal tap helpers past TB compile away.
override TB: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> idx: array<u32>;
@group(0) @binding(6) var<storage, read> gy: array<f32>;
@group(0) @binding(7) var<storage, read> y_in: array<f32>;
@group(0) @binding(8) var<storage, read> idx_in: array<u32>;
@group(0) @binding(9) var<storage, read_write> part: array<f32>;

// Per-invocation state shared by the helpers.
var<private> lane: u32;
var<private> ch0: u32;                     // first channel of this workgroup's block
var<private> xv: vec4<f32>;                // x at the current tap, one per window position
var<private> acc: array<vec4<f32>, 64>;    // forward: acc[32 h + 8 win + q] = z of quad q at
                                           // window win of the lane's position h
var<private> dz: array<vec4<f32>, 8>;      // backward: gradient at the arg-max, per quad
var<private> wn: array<vec4<u32>, 8>;      // backward: arg-max window, per quad
var<private> gacc: array<vec4<f32>, 136>;  // backward: gacc[8 tt + q], tt = 16 is the bias

fn group_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y;
}

// x[n, ci, r, c] for a signed position, 0 outside the image.
fn x_at(base: u32, r: i32, c: i32) -> f32 {
    var v = 0.0;
    if (r >= 0 && c >= 0 && u32(r) < p.h && u32(c) < p.w) {
        v = x[base + u32(r) * p.w + u32(c)];
    }
    return v;
}

// Loads xv for tap t of the position (n, i, j): the 4 window positions of z.
fn load_tap(n: u32, i: u32, j: u32, t: u32) {
    let kk = p.kh * p.kw;
    let ci = t / kk;
    let ky = (t % kk) / p.kw;
    let kx = t % p.kw;
    let base = (n * p.c_in + ci) * p.h * p.w;
    let r0 = i32(2u * i * p.sh + ky) - i32(p.pt);
    let c0 = i32(2u * j * p.sw + kx) - i32(p.pl);
    let r1 = r0 + i32(p.sh);
    let c1 = c0 + i32(p.sw);
    xv = vec4<f32>(x_at(base, r0, c0), x_at(base, r0, c1), x_at(base, r1, c0), x_at(base, r1, c1));
}

// w[o, t], 0 past C_out.
fn w_at(o: u32, t: u32) -> f32 {
    var v = 0.0;
    if (o < p.c_out) {
        v = w[o * p.taps + t];
    }
    return v;
}

// bias[o], 0 past C_out.
fn bias_at(o: u32) -> f32 {
    var v = 0.0;
    if (o < p.c_out) {
        v = bias[o];
    }
    return v;
}

// Forward: quad q of every window of both positions += weights of quad q (from
// lane q) * x (xa: position 0, xb: position 1).
fn fmac(q: u32, wl: vec4<f32>, xa: vec4<f32>, xb: vec4<f32>) {
    let wq = subgroupShuffle(wl, q);
    acc[q] = fma(wq, vec4<f32>(xa.x), acc[q]);
    acc[8u + q] = fma(wq, vec4<f32>(xa.y), acc[8u + q]);
    acc[16u + q] = fma(wq, vec4<f32>(xa.z), acc[16u + q]);
    acc[24u + q] = fma(wq, vec4<f32>(xa.w), acc[24u + q]);
    acc[32u + q] = fma(wq, vec4<f32>(xb.x), acc[32u + q]);
    acc[40u + q] = fma(wq, vec4<f32>(xb.y), acc[40u + q]);
    acc[48u + q] = fma(wq, vec4<f32>(xb.z), acc[48u + q]);
    acc[56u + q] = fma(wq, vec4<f32>(xb.w), acc[56u + q]);
}

fn act4(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(apply_activation(ACT, v.x), apply_activation(ACT, v.y),
                     apply_activation(ACT, v.z), apply_activation(ACT, v.w));
}

fn store_y(o: u32, at: u32, v: f32, live: bool) {
    if (live && o < p.c_out) {
        y[at] = v;
    }
}

// Forward epilogue of quad q of position h: max over the windows (first wins ties), bias,
// activation; stores y and returns the quad's 4-bit codes at bits 16 (q % 2) + 4e.
fn finish(h: u32, q: u32, bl: vec4<f32>, out_base: u32, plane: u32, live: bool) -> u32 {
    let a0 = 32u * h + q;
    var best = acc[a0];
    var k = vec4<u32>(0u);
    let z1 = acc[a0 + 8u];
    k = select(k, vec4<u32>(1u), z1 > best);
    best = max(best, z1);
    let z2 = acc[a0 + 16u];
    k = select(k, vec4<u32>(2u), z2 > best);
    best = max(best, z2);
    let z3 = acc[a0 + 24u];
    k = select(k, vec4<u32>(3u), z3 > best);
    best = max(best, z3);
    let pre = best + subgroupShuffle(bl, q);
    let yq = act4(pre);
    if (ACT == 0u) {
        k |= vec4<u32>(4u);
    } else if (ACT == 1u) {
        k |= select(vec4<u32>(0u), vec4<u32>(4u), pre > vec4<f32>(0.0));
    }
    let o = ch0 + 4u * q;
    let at = out_base + o * plane;
    store_y(o, at, yq.x, live);
    store_y(o + 1u, at + plane, yq.y, live);
    store_y(o + 2u, at + 2u * plane, yq.z, live);
    store_y(o + 3u, at + 3u * plane, yq.w, live);
    let s = 16u * (q % 2u);
    return (k.x << s) | (k.y << (s + 4u)) | (k.z << (s + 8u)) | (k.w << (s + 12u));
}

fn store_word(word: u32, at: u32, first_channel: u32, live: bool) {
    if (live && first_channel < p.c_out) {
        idx[at] = word;
    }
}

// Pooled position h (0 or 1) of this lane: (n, ij = i PW + j), and whether it
// exists. Lanes past the last position compute the last one again (every lane
// must take part in the shuffles) and store nothing.
struct Position {
    n: u32,
    ij: u32,
    i: u32,
    j: u32,
    live: bool,
}

fn position(raw: u32) -> Position {
    let pos = min(raw, p.positions - 1u);
    let plane = p.ph * p.pw;
    let ij = pos % plane;
    return Position(pos / plane, ij, ij / p.pw, ij % p.pw, raw < p.positions);
}

// Forward epilogue of position h: y of the 32 channels and their 4 code words.
fn emit(h: u32, at: Position, bl: vec4<f32>, cb: u32) {
    let plane = p.ph * p.pw;
    let out_base = at.n * p.c_out * plane + at.ij;
    let w0 = finish(h, 0u, bl, out_base, plane, at.live) | finish(h, 1u, bl, out_base, plane, at.live);
    let w1 = finish(h, 2u, bl, out_base, plane, at.live) | finish(h, 3u, bl, out_base, plane, at.live);
    let w2 = finish(h, 4u, bl, out_base, plane, at.live) | finish(h, 5u, bl, out_base, plane, at.live);
    let w3 = finish(h, 6u, bl, out_base, plane, at.live) | finish(h, 7u, bl, out_base, plane, at.live);
    let ib = (at.n * 4u * p.chan_blocks + 4u * cb) * plane + at.ij;
    store_word(w0, ib, ch0, at.live);
    store_word(w1, ib + plane, ch0 + 8u, at.live);
    store_word(w2, ib + 2u * plane, ch0 + 16u, at.live);
    store_word(w3, ib + 3u * plane, ch0 + 24u, at.live);
}

@compute @workgroup_size(8)
fn conv_pool_forward(@builtin(workgroup_id) wgid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(subgroup_invocation_id) sl: u32) {
    let g = group_index(wgid, nwg);
    if (g >= p.chan_blocks * ((p.positions + 15u) / 16u)) {
        return;  // whole workgroup: uniform
    }
    lane = sl;
    let cb = g % p.chan_blocks;
    ch0 = 32u * cb;
    let first = (g / p.chan_blocks) * 16u + lane;
    let pa = position(first);
    let pb = position(first + 8u);

    let o = ch0 + 4u * lane;
    for (var t = 0u; t < p.taps; t++) {
        load_tap(pb.n, pb.i, pb.j, t);
        let xb = xv;
        load_tap(pa.n, pa.i, pa.j, t);
        let wl = vec4<f32>(w_at(o, t), w_at(o + 1u, t), w_at(o + 2u, t), w_at(o + 3u, t));
        fmac(0u, wl, xv, xb); fmac(1u, wl, xv, xb); fmac(2u, wl, xv, xb); fmac(3u, wl, xv, xb);
        fmac(4u, wl, xv, xb); fmac(5u, wl, xv, xb); fmac(6u, wl, xv, xb); fmac(7u, wl, xv, xb);
    }

    let bl = vec4<f32>(bias_at(o), bias_at(o + 1u), bias_at(o + 2u), bias_at(o + 3u));
    emit(0u, pa, bl, cb);
    emit(1u, pb, bl, cb);
}

// Backward: gy of channel o at (n, ij), times act'(y) for sigmoid and tanh; 0 when
// dead or past C_out.
fn grad_at(o: u32, n: u32, ij: u32, live: bool) -> f32 {
    var d = 0.0;
    if (live && o < p.c_out) {
        let k = (n * p.c_out + o) * p.ph * p.pw + ij;
        d = gy[k];
        if (ACT >= 2u) {
            d *= activation_grad(ACT, y_in[k]);
        }
    }
    return d;
}

// dz and wn of quad q at (n, ij) from the index word holding the quad.
fn load_grad(q: u32, n: u32, ij: u32, live: bool, word: u32) {
    let o = ch0 + 4u * q;
    let g = vec4<f32>(grad_at(o, n, ij, live), grad_at(o + 1u, n, ij, live),
                      grad_at(o + 2u, n, ij, live), grad_at(o + 3u, n, ij, live));
    let s = 16u * (q % 2u);
    let code = (vec4<u32>(word) >> vec4<u32>(s, s + 4u, s + 8u, s + 12u)) & vec4<u32>(7u);
    wn[q] = code & vec4<u32>(3u);
    if (ACT >= 2u) {
        dz[q] = g;
    } else {
        dz[q] = select(vec4<f32>(0.0), g, code >= vec4<u32>(4u));
    }
}

fn load_word(at: u32, first_channel: u32, live: bool) -> u32 {
    var w = 0u;
    if (live && first_channel < p.c_out) {
        w = idx_in[at];
    }
    return w;
}

// x-value of tap xv at each channel's arg-max window, per quad.
fn pick(q: u32) -> vec4<f32> {
    let k = wn[q];
    let lo = select(vec4<f32>(xv.x), vec4<f32>(xv.y), k == vec4<u32>(1u));
    let hi = select(vec4<f32>(xv.z), vec4<f32>(xv.w), k == vec4<u32>(3u));
    return select(lo, hi, k >= vec4<u32>(2u));
}

// gacc of literal tap tt (of this block) += dz * x at the arg-max.
fn gtap(tt: u32, t0: u32, n: u32, i: u32, j: u32) {
    if (tt < TB && t0 + tt < p.taps) {
        load_tap(n, i, j, t0 + tt);
        let b = 8u * tt;
        gacc[b] += dz[0] * pick(0u); gacc[b + 1u] += dz[1] * pick(1u);
        gacc[b + 2u] += dz[2] * pick(2u); gacc[b + 3u] += dz[3] * pick(3u);
        gacc[b + 4u] += dz[4] * pick(4u); gacc[b + 5u] += dz[5] * pick(5u);
        gacc[b + 6u] += dz[6] * pick(6u); gacc[b + 7u] += dz[7] * pick(7u);
    }
}

fn store_part(o: u32, at: u32, v: f32) {
    if (o < p.c_out) {
        part[at] = v;
    }
}

// Sums row r (8 quads at gacc[8 slot]) over the subgroup; lane q stores quad q to
// part[chunk, r, ch0 + 4q ..].
fn store_row(slot: u32, r: u32, chunk: u32) {
    let b = 8u * slot;
    var mine = subgroupAdd(gacc[b]);
    mine = select(mine, subgroupAdd(gacc[b + 1u]), lane == 1u);
    mine = select(mine, subgroupAdd(gacc[b + 2u]), lane == 2u);
    mine = select(mine, subgroupAdd(gacc[b + 3u]), lane == 3u);
    mine = select(mine, subgroupAdd(gacc[b + 4u]), lane == 4u);
    mine = select(mine, subgroupAdd(gacc[b + 5u]), lane == 5u);
    mine = select(mine, subgroupAdd(gacc[b + 6u]), lane == 6u);
    mine = select(mine, subgroupAdd(gacc[b + 7u]), lane == 7u);
    let o = ch0 + 4u * lane;
    let at = (chunk * (p.taps + 1u) + r) * p.c_out + o;
    store_part(o, at, mine.x);
    store_part(o + 1u, at + 1u, mine.y);
    store_part(o + 2u, at + 2u, mine.z);
    store_part(o + 3u, at + 3u, mine.w);
}

fn store_tap(tt: u32, t0: u32, chunk: u32) {
    if (tt < TB && t0 + tt < p.taps) {
        store_row(tt, t0 + tt, chunk);
    }
}

@compute @workgroup_size(8)
fn conv_pool_backward(@builtin(workgroup_id) wgid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(subgroup_invocation_id) sl: u32) {
    let g = group_index(wgid, nwg);
    if (g >= p.chunks * p.tap_blocks * p.chan_blocks) {
        return;  // whole workgroup: uniform
    }
    lane = sl;
    let cb = g % p.chan_blocks;
    let tb = (g / p.chan_blocks) % p.tap_blocks;
    let chunk = g / (p.chan_blocks * p.tap_blocks);
    ch0 = 32u * cb;
    let t0 = tb * TB;
    let plane = p.ph * p.pw;

    for (var s = 0u; s < p.per_lane; s++) {
        let pos_raw = (chunk * p.per_lane + s) * 8u + lane;
        let live = pos_raw < p.positions;
        let pos = min(pos_raw, p.positions - 1u);
        let n = pos / plane;
        let ij = pos % plane;
        let i = ij / p.pw;
        let j = ij % p.pw;
        let ib = (n * 4u * p.chan_blocks + 4u * cb) * plane + ij;
        let w0 = load_word(ib, ch0, live);
        let w1 = load_word(ib + plane, ch0 + 8u, live);
        let w2 = load_word(ib + 2u * plane, ch0 + 16u, live);
        let w3 = load_word(ib + 3u * plane, ch0 + 24u, live);
        load_grad(0u, n, ij, live, w0); load_grad(1u, n, ij, live, w0);
        load_grad(2u, n, ij, live, w1); load_grad(3u, n, ij, live, w1);
        load_grad(4u, n, ij, live, w2); load_grad(5u, n, ij, live, w2);
        load_grad(6u, n, ij, live, w3); load_grad(7u, n, ij, live, w3);
        if (tb == 0u) {
            gacc[128u] += dz[0]; gacc[129u] += dz[1]; gacc[130u] += dz[2]; gacc[131u] += dz[3];
            gacc[132u] += dz[4]; gacc[133u] += dz[5]; gacc[134u] += dz[6]; gacc[135u] += dz[7];
        }
        gtap(0u, t0, n, i, j); gtap(1u, t0, n, i, j); gtap(2u, t0, n, i, j); gtap(3u, t0, n, i, j);
        gtap(4u, t0, n, i, j); gtap(5u, t0, n, i, j); gtap(6u, t0, n, i, j); gtap(7u, t0, n, i, j);
        gtap(8u, t0, n, i, j); gtap(9u, t0, n, i, j); gtap(10u, t0, n, i, j); gtap(11u, t0, n, i, j);
        gtap(12u, t0, n, i, j); gtap(13u, t0, n, i, j); gtap(14u, t0, n, i, j); gtap(15u, t0, n, i, j);
    }

    store_tap(0u, t0, chunk); store_tap(1u, t0, chunk); store_tap(2u, t0, chunk); store_tap(3u, t0, chunk);
    store_tap(4u, t0, chunk); store_tap(5u, t0, chunk); store_tap(6u, t0, chunk); store_tap(7u, t0, chunk);
    store_tap(8u, t0, chunk); store_tap(9u, t0, chunk); store_tap(10u, t0, chunk); store_tap(11u, t0, chunk);
    store_tap(12u, t0, chunk); store_tap(13u, t0, chunk); store_tap(14u, t0, chunk); store_tap(15u, t0, chunk);
    if (tb == 0u) {
        store_row(16u, p.taps, chunk);
    }
}
