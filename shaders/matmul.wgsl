// Matmul: C = op(A)·op(B) [+ bias] [activation], or C += op(A)·op(B), batched.
//
// Launchers: src/kernels/matmul.rs. CPU twin: src/reference/matmul.rs.
//
// Contract (all f32, dense row-major, element offsets/strides in Params):
//   for batch t < p.batch, with A_t = a[a_off + t*a_bs ..], B_t, C_t likewise:
//   op(A_t) is [M, K]: stored [M, K], or [K, M] when TRANS_A (the TN layout).
//   op(B_t) is [K, N]: stored [K, N], or [N, K] when TRANS_B (the NT layout).
//   C_t[i, j] = act(sum_k op(A_t)[i, k] * op(B_t)[k, j] + bias[j])   (FLAG_BIAS optional)
//   or, with FLAG_ACCUMULATE, C_t[i, j] += sum_k ...   (no bias, no activation).
//   C is only read with FLAG_ACCUMULATE. Without FLAG_BIAS the bias binding is a
//   stand-in and never read.
// Assumes (checked by the launcher): M, N, K, batch >= 1, every index fits the
// bound buffers and in u32, C batches do not overlap, C aliases no input.
//
// Grid: one workgroup per (column tile, row tile, batch), linearised column tile
// fastest and folded into a 2-D/3-D grid when over 65,535; a workgroup past the
// last batch returns at once.
//
// Split-K (products whose output tiles are too few to fill the device, e.g. a
// Dense layer's forward at batch 32 with K = 5408): with SPLIT_K the grid has
// p.k_split workgroups per (tile, batch), the s-th summing only
// k in [s * k_chunk, min(K, (s + 1) * k_chunk)), and each stores its raw partial
// sum (no bias, activation or accumulate) at
//   c[((t * k_split + s) * M + i) * N + j]
// of a scratch buffer bound as C. matmul_split_reduce then adds the k_split
// partials of each output in order s = 0, 1, ... (and, with FLAG_REDUCE_BATCH,
// those of every batch entry t = 0, 1, ...: a batch-reduce product) and applies the
// epilogue into the real C. The order is fixed and no atomics are used, so the
// result is the same bit for bit on every run.
//
// The register-blocked kernels for CPU adapters (lavapipe) are in
// matmul_subgroup.wgsl: they need subgroup operations, which would make this module
// invalid on devices without them.
//
// Kernel:
//   matmul_tiled     for GPUs. A BM×BN block of C per workgroup of
//                    (BM/TM)·(BN/TN) invocations; K in tiles of BK staged through
//                    workgroup memory, double-buffered (one barrier per K tile;
//                    the next tile's global loads are in flight while this one
//                    is computed). Each invocation holds a TM×TN register block
//                    (TM, TN in {4, 8}) made of 4×4 quadrants spaced BM/2 (BN/2)
//                    apart, read from workgroup memory as vec4. Global loads are
//                    coalesced along whichever dimension is contiguous in memory;
//                    elements outside A or B load as 0. With VEC4 (the launcher
//                    sets it when both operands' contiguous dimensions, offsets
//                    and batch strides are multiples of 4) every global load is a
//                    vec4 (a4 and b4 are the same buffers as a and b), a quarter
//                    of the load instructions; a vec4 is then either wholly inside
//                    the operand or wholly outside.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    flags: u32,
    a_bs: u32,
    b_bs: u32,
    c_bs: u32,
    act: u32,
    tiles_m: u32,
    tiles_n: u32,
    // Split-K (see below): the number of K ranges and the length of each (a
    // multiple of BK); 1 and K when not split.
    k_split: u32,
    k_chunk: u32,
}

const FLAG_ACCUMULATE: u32 = 1u;
const FLAG_BIAS: u32 = 2u;
// matmul_split_reduce: sum the partials of every batch entry into one C.
const FLAG_REDUCE_BATCH: u32 = 4u;

override TRANS_A: bool = false;
override TRANS_B: bool = false;
// Store raw partial sums for matmul_split_reduce (see Split-K above).
override SPLIT_K: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
// A and B again, read four floats at a time (matmul_tiled with VEC4; the launcher
// binds a 16-byte stand-in when an operand is smaller than one vec4 and VEC4 is off).
@group(0) @binding(5) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> b4: array<vec4<f32>>;

fn activate(x: f32) -> f32 {
    return apply_activation(p.act, x);  // shaders/activation.wgsl
}

// Writes one output element: C[i, j] of the batch starting at c_base.
fn write_c(c_base: u32, i: u32, j: u32, sum: f32) {
    let idx = c_base + i * p.n + j;
    if ((p.flags & FLAG_ACCUMULATE) != 0u) {
        c[idx] = c[idx] + sum;
        return;
    }
    var v = sum;
    if ((p.flags & FLAG_BIAS) != 0u) {
        v = v + bias[j];
    }
    c[idx] = activate(v);
}

// (column tile, row tile, batch) of a workgroup in the folded grid.
fn tile_of(wg: vec3<u32>, nwg: vec3<u32>) -> vec3<u32> {
    let id = wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y;
    let tn = id % p.tiles_n;
    let rest = id / p.tiles_n;
    return vec3<u32>(tn, rest % p.tiles_m, rest / p.tiles_m);
}

// A workgroup's share of the product (matmul_tiled, matmul_coop): batch entry t
// (p.batch or more for a workgroup past the last), its K range
// [k_begin, k_end), and where its A, B and C start (C: its raw partials' slot
// with SPLIT_K).
struct Work {
    t: u32,
    k_begin: u32,
    k_end: u32,
    a_base: u32,
    b_base: u32,
    c_base: u32,
}

fn work_of(tile_z: u32) -> Work {
    var t = tile_z;
    var split = 0u;
    if (SPLIT_K) {
        split = tile_z % p.k_split;
        t = tile_z / p.k_split;
    }
    let k_begin = split * p.k_chunk;
    var c_base = p.c_off + t * p.c_bs;
    if (SPLIT_K) {
        c_base = (t * p.k_split + split) * p.m * p.n;
    }
    return Work(t, k_begin, min(p.k, k_begin + p.k_chunk), p.a_off + t * p.a_bs, p.b_off + t * p.b_bs, c_base);
}

// ---------------------------------------------------------------------------
// matmul_tiled
// ---------------------------------------------------------------------------

override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
// Register block per invocation: 4 or 8 each.
override TM: u32 = 4u;
override TN: u32 = 4u;

// Invocations along N and M, and in all.
override TX: u32 = BN / TN;
override TY: u32 = BM / TM;
override NT: u32 = TX * TY;
// Global elements each invocation stages per K tile, for A and for B (at most 16).
override LA: u32 = BM * BK / NT;
override LB: u32 = BN * BK / NT;
// Row length in floats of the staged tiles ([BK][BM + 4] and [BK][BN + 4]); the
// padding spreads the transposing stores of A over the memory banks.
override SA_ROW: u32 = BM + 4u;
override SB_ROW: u32 = BN + 4u;

// vec4 global loads (see the kernel's header) and the vec4s each invocation
// stages per K tile, for A and for B (at most 4; the launcher keeps them whole).
override VEC4: bool = false;
override LA4: u32 = BM * BK / 4u / NT;
override LB4: u32 = BN * BK / 4u / NT;

// Two buffers each (double buffering).
var<workgroup> sa: array<vec4<f32>, 2u * BK * SA_ROW / 4u>;
var<workgroup> sb: array<vec4<f32>, 2u * BK * SB_ROW / 4u>;

// Loads this invocation's share of the A tile starting at column k0 into ra.
// Elements at k >= k_end load as 0 (the end of K, or of this split's range).
fn load_a_tile(ra: ptr<function, array<f32, 16>>, a_base: u32, row0: u32, k0: u32, k_end: u32, lid: u32) {
    for (var l = 0u; l < LA; l++) {
        let e = lid + l * NT;
        var i: u32;
        var kk: u32;
        if (TRANS_A) {
            i = e % BM;
            kk = e / BM;
        } else {
            kk = e % BK;
            i = e / BK;
        }
        let gi = row0 + i;
        let gk = k0 + kk;
        var v = 0.0;
        if (gi < p.m && gk < k_end) {
            if (TRANS_A) {
                v = a[a_base + gk * p.m + gi];
            } else {
                v = a[a_base + gi * p.k + gk];
            }
        }
        (*ra)[l] = v;
    }
}

fn store_a_tile(ra: ptr<function, array<f32, 16>>, buf: u32, lid: u32) {
    for (var l = 0u; l < LA; l++) {
        let e = lid + l * NT;
        var i: u32;
        var kk: u32;
        if (TRANS_A) {
            i = e % BM;
            kk = e / BM;
        } else {
            kk = e % BK;
            i = e / BK;
        }
        let f = (buf * BK + kk) * SA_ROW + i;
        sa[f / 4u][f % 4u] = (*ra)[l];
    }
}

fn load_b_tile(rb: ptr<function, array<f32, 16>>, b_base: u32, col0: u32, k0: u32, k_end: u32, lid: u32) {
    for (var l = 0u; l < LB; l++) {
        let e = lid + l * NT;
        var j: u32;
        var kk: u32;
        if (TRANS_B) {
            kk = e % BK;
            j = e / BK;
        } else {
            j = e % BN;
            kk = e / BN;
        }
        let gj = col0 + j;
        let gk = k0 + kk;
        var v = 0.0;
        if (gj < p.n && gk < k_end) {
            if (TRANS_B) {
                v = b[b_base + gj * p.k + gk];
            } else {
                v = b[b_base + gk * p.n + gj];
            }
        }
        (*rb)[l] = v;
    }
}

fn store_b_tile(rb: ptr<function, array<f32, 16>>, buf: u32, lid: u32) {
    for (var l = 0u; l < LB; l++) {
        let e = lid + l * NT;
        var j: u32;
        var kk: u32;
        if (TRANS_B) {
            kk = e % BK;
            j = e / BK;
        } else {
            j = e % BN;
            kk = e / BN;
        }
        let f = (buf * BK + kk) * SB_ROW + j;
        sb[f / 4u][f % 4u] = (*rb)[l];
    }
}

// The VEC4 forms of the four helpers above: the same tiles, loaded as vec4s.
fn load_a_tile4(ra: ptr<function, array<vec4<f32>, 4>>, a_base: u32, row0: u32, k0: u32, k_end: u32, lid: u32) {
    for (var l = 0u; l < LA4; l++) {
        let e = lid + l * NT;
        var v = vec4<f32>(0.0);
        if (TRANS_A) {
            // [K, M]: four consecutive rows of one k.
            let gi = row0 + (e % (BM / 4u)) * 4u;
            let gk = k0 + e / (BM / 4u);
            if (gi < p.m && gk < k_end) {
                v = a4[(a_base + gk * p.m + gi) / 4u];
            }
        } else {
            // [M, K]: four consecutive k of one row.
            let gk = k0 + (e % (BK / 4u)) * 4u;
            let gi = row0 + e / (BK / 4u);
            if (gi < p.m && gk < k_end) {
                v = a4[(a_base + gi * p.k + gk) / 4u];
            }
        }
        (*ra)[l] = v;
    }
}

fn store_a_tile4(ra: ptr<function, array<vec4<f32>, 4>>, buf: u32, lid: u32) {
    for (var l = 0u; l < LA4; l++) {
        let e = lid + l * NT;
        let v = (*ra)[l];
        if (TRANS_A) {
            let i = (e % (BM / 4u)) * 4u;
            let kk = e / (BM / 4u);
            sa[((buf * BK + kk) * SA_ROW + i) / 4u] = v;
        } else {
            let kk = (e % (BK / 4u)) * 4u;
            let i = e / (BK / 4u);
            for (var q = 0u; q < 4u; q++) {
                let f = (buf * BK + kk + q) * SA_ROW + i;
                sa[f / 4u][f % 4u] = v[q];
            }
        }
    }
}

fn load_b_tile4(rb: ptr<function, array<vec4<f32>, 4>>, b_base: u32, col0: u32, k0: u32, k_end: u32, lid: u32) {
    for (var l = 0u; l < LB4; l++) {
        let e = lid + l * NT;
        var v = vec4<f32>(0.0);
        if (TRANS_B) {
            // [N, K]: four consecutive k of one column.
            let gk = k0 + (e % (BK / 4u)) * 4u;
            let gj = col0 + e / (BK / 4u);
            if (gj < p.n && gk < k_end) {
                v = b4[(b_base + gj * p.k + gk) / 4u];
            }
        } else {
            // [K, N]: four consecutive columns of one k.
            let gj = col0 + (e % (BN / 4u)) * 4u;
            let gk = k0 + e / (BN / 4u);
            if (gj < p.n && gk < k_end) {
                v = b4[(b_base + gk * p.n + gj) / 4u];
            }
        }
        (*rb)[l] = v;
    }
}

fn store_b_tile4(rb: ptr<function, array<vec4<f32>, 4>>, buf: u32, lid: u32) {
    for (var l = 0u; l < LB4; l++) {
        let e = lid + l * NT;
        let v = (*rb)[l];
        if (TRANS_B) {
            let kk = (e % (BK / 4u)) * 4u;
            let j = e / (BK / 4u);
            for (var q = 0u; q < 4u; q++) {
                let f = (buf * BK + kk + q) * SB_ROW + j;
                sb[f / 4u][f % 4u] = v[q];
            }
        } else {
            let j = (e % (BN / 4u)) * 4u;
            let kk = e / (BN / 4u);
            sb[((buf * BK + kk) * SB_ROW + j) / 4u] = v;
        }
    }
}

// Stages the K tile starting at k0 into registers (scalar or vec4 loads).
fn load_tiles(ra: ptr<function, array<f32, 16>>, rb: ptr<function, array<f32, 16>>,
              ra4: ptr<function, array<vec4<f32>, 4>>, rb4: ptr<function, array<vec4<f32>, 4>>,
              a_base: u32, b_base: u32, row0: u32, col0: u32, k0: u32, k_end: u32, lid: u32) {
    if (VEC4) {
        load_a_tile4(ra4, a_base, row0, k0, k_end, lid);
        load_b_tile4(rb4, b_base, col0, k0, k_end, lid);
    } else {
        load_a_tile(ra, a_base, row0, k0, k_end, lid);
        load_b_tile(rb, b_base, col0, k0, k_end, lid);
    }
}

// Writes the staged tiles into workgroup buffer `buf`.
fn store_tiles(ra: ptr<function, array<f32, 16>>, rb: ptr<function, array<f32, 16>>,
               ra4: ptr<function, array<vec4<f32>, 4>>, rb4: ptr<function, array<vec4<f32>, 4>>,
               buf: u32, lid: u32) {
    if (VEC4) {
        store_a_tile4(ra4, buf, lid);
        store_b_tile4(rb4, buf, lid);
    } else {
        store_a_tile(ra, buf, lid);
        store_b_tile(rb, buf, lid);
    }
}

@compute @workgroup_size(NT)
fn matmul_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let tile = tile_of(wg, nwg);
    let w = work_of(tile.z);
    if (w.t >= p.batch) {
        return;
    }
    let k_begin = w.k_begin;
    let k_end = w.k_end;
    let a_base = w.a_base;
    let b_base = w.b_base;
    let c_base = w.c_base;
    let row0 = tile.y * BM;
    let col0 = tile.x * BN;
    let tx = lid % TX;
    let ty = lid / TX;
    // Quadrants per invocation along M and N, and their spacing in vec4s.
    let qm_n = TM / 4u;
    let qn_n = TN / 4u;
    let qm_step = BM / qm_n / 4u;
    let qn_step = BN / qn_n / 4u;

    var ra: array<f32, 16>;
    var rb: array<f32, 16>;
    var ra4: array<vec4<f32>, 4>;
    var rb4: array<vec4<f32>, 4>;
    var acc: array<vec4<f32>, 16>;
    let ntiles = (k_end - k_begin + BK - 1u) / BK;

    load_tiles(&ra, &rb, &ra4, &rb4, a_base, b_base, row0, col0, k_begin, k_end, lid);
    store_tiles(&ra, &rb, &ra4, &rb4, 0u, lid);
    workgroupBarrier();

    for (var kt = 0u; kt < ntiles; kt++) {
        let cur = kt & 1u;
        let more = kt + 1u < ntiles;
        if (more) {
            load_tiles(&ra, &rb, &ra4, &rb4, a_base, b_base, row0, col0, k_begin + (kt + 1u) * BK, k_end, lid);
        }
        for (var kk = 0u; kk < BK; kk++) {
            let a_row = (cur * BK + kk) * (SA_ROW / 4u) + ty;
            let b_row = (cur * BK + kk) * (SB_ROW / 4u) + tx;
            var af: array<vec4<f32>, 2>;
            var bf: array<vec4<f32>, 2>;
            for (var q = 0u; q < qm_n; q++) {
                af[q] = sa[a_row + q * qm_step];
            }
            for (var q = 0u; q < qn_n; q++) {
                bf[q] = sb[b_row + q * qn_step];
            }
            for (var qm = 0u; qm < qm_n; qm++) {
                for (var r = 0u; r < 4u; r++) {
                    let av = vec4<f32>(af[qm][r]);
                    for (var qn = 0u; qn < qn_n; qn++) {
                        let x = (qm * 4u + r) * qn_n + qn;
                        acc[x] = fma(av, bf[qn], acc[x]);
                    }
                }
            }
        }
        if (more) {
            store_tiles(&ra, &rb, &ra4, &rb4, 1u - cur, lid);
        }
        workgroupBarrier();
    }

    for (var qm = 0u; qm < qm_n; qm++) {
        for (var r = 0u; r < 4u; r++) {
            let i = row0 + qm * (BM / qm_n) + ty * 4u + r;
            if (i < p.m) {
                for (var qn = 0u; qn < qn_n; qn++) {
                    let v = acc[(qm * 4u + r) * qn_n + qn];
                    let j = col0 + qn * (BN / qn_n) + tx * 4u;
                    for (var s = 0u; s < 4u; s++) {
                        if (j + s < p.n) {
                            if (SPLIT_K) {
                                c[c_base + i * p.n + j + s] = v[s];
                            } else {
                                write_c(c_base, i, j + s, v[s]);
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// matmul_split_reduce
// ---------------------------------------------------------------------------
//
// The second half of a split-K product (see Split-K above). Bindings: the
// partials at `a` (binding 1, [batch][k_split][M][N]), the bias and C as in the
// contract. One invocation per output of C (a batch-reduce product has one M×N
// C; otherwise `batch` of them at p.c_off + t * p.c_bs), linearised j fastest in
// a folded grid of SR_WG-invocation workgroups. It sums the partials in a fixed
// order (t, then s, ascending) and applies the epilogue through write_c.

override SR_WG: u32 = 256u;

@compute @workgroup_size(SR_WG)
fn matmul_split_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let id = (wg.x + wg.y * nwg.x + wg.z * nwg.x * nwg.y) * SR_WG + lid;
    let mn = p.m * p.n;
    let reduce_batch = (p.flags & FLAG_REDUCE_BATCH) != 0u;
    var outputs = p.batch;
    if (reduce_batch) {
        outputs = 1u;
    }
    if (id >= outputs * mn) {
        return;
    }
    let t_out = id / mn;
    let e = id % mn;
    var t = t_out;
    var t_end = t_out + 1u;
    if (reduce_batch) {
        t = 0u;
        t_end = p.batch;
    }
    var sum = 0.0;
    for (; t < t_end; t++) {
        for (var s = 0u; s < p.k_split; s++) {
            sum += a[(t * p.k_split + s) * mn + e];
        }
    }
    write_c(p.c_off + t_out * p.c_bs, e / p.n, e % p.n, sum);
}
