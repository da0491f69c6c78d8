// Tensor-core matmul: the contract of matmul.wgsl (Params, layouts, batches,
// epilogue, split-K partials; this file is appended to it) computed with
// cooperative matrices, A and B rounded to f16 and products summed in f32.
//
// Launcher: src/kernels/matmul.rs (MatmulVariant::Coop64 / Coop128). CPU twin:
// src/reference/matmul.rs (`matmul_f16_inputs`: the same product with every
// element of A and B rounded to f16 first).
//
// Precision (the caller's choice, like PyTorch's
// `torch.set_float32_matmul_precision("medium")`): each element of op(A) and
// op(B) is rounded to the nearest f16 (11 significant bits) after its operand
// is scaled by a power of two; the products of two f16 are exact in f32, summed
// in f32, and the sum is scaled back.
//
// Range scaling: f16 holds magnitudes up to 65504, loses bits below 6.1e-5 and
// is zero below 6e-8, far narrower than f32 (gradients of a mean loss are often
// 1e-6 and smaller). So each operand is scaled by 2^shift, shift =
// 14 - floor(log2(amax)) within [-126, 126] (0 when amax is 0), which brings
// its largest finite magnitude amax into [2^14, 2^15): no finite element
// overflows, and elements down to amax·2^-28 keep all 11 bits. Powers of two
// are exact, so an operand of f16 values in range is staged unchanged in value.
// amax covers exactly the finite elements the product reads (every batch
// entry; one entry when the batch stride is 0); infinities and NaN pass
// through the product as in f32. matmul_amax finds it in one dispatch
// before the product: up to AMAX_GROUPS workgroups per operand (the launcher
// sizes the grid by the operands) each store the largest |x| of their share (as
// its f32 bits: for x >= 0 the bits order as the values, and NaN's sit above
// inf) in amax_parts, A's part g at g and B's at AMAX_GROUPS + g (parts no
// workgroup writes stay 0, as the buffer was created); each matmul_coop
// workgroup reduces the parts again. The max is exact in any order, so the
// result is the same bit for bit on every run.
//
// The header (matmul_coop16.wgsl or matmul_coop8.wgsl) fixes the fragment:
// FRAG×FRAG×FRAG, types CoopA, CoopB, CoopC.
//
// Kernel matmul_coop: a BM×BN block of C per workgroup (BM, BN, BK and NT are
// matmul_tiled's overrides, set for this kernel by the launcher, so it stages
// its tiles with matmul_tiled's load_tiles). The block is cut into subgroup
// blocks of CO_FM×CO_FN fragments; subgroup `s` (subgroup_id) owns block s and
// keeps its fragments' sums in cooperative accumulators. NT, the workgroup
// size, is the number of blocks times the adapter's largest subgroup, so there
// are at least as many subgroups as blocks (more when the device runs smaller
// subgroups: those repeat a block and store nothing). K goes in steps of BK,
// double-buffered as in matmul_tiled: each invocation loads its share of the
// next step's A and B tiles into registers (as vec4s with VEC4, along
// whichever dimension is contiguous in global memory; elements past M, N or
// the K range load as 0) while the subgroups multiply the current step's
// fragments, then stores them, scaled and converted to f16, into the other
// workgroup buffer, row-major [BM][BK] for A and [BK][BN] for B; one barrier
// per step. Before the first step each workgroup reduces matmul_amax's parts
// to the operands' scales (see Range scaling). The epilogue goes fragment by
// fragment through a per-subgroup FRAG×FRAG f32 slot of workgroup memory,
// where the subgroup's lanes scale the sums back and apply write_c (or store
// the raw partial with SPLIT_K) to the outputs inside C.
//
// Assumes (the launcher checks): the device has cooperative matrices of this
// fragment with f16 inputs and an f32 accumulator, subgroups, f16;
// BM % (FRAG·CO_FM) == 0, BN % (FRAG·CO_FN) == 0, BK % FRAG == 0, CO_FM ≤ 4,
// CO_FM·CO_FN ≤ 8, NT ≥ blocks × the largest subgroup size, CO_SUBGROUPS ≥ NT
// / the smallest subgroup size; BM·BK and BK·BN are multiples of NT with at
// most 16 elements per invocation (4 vec4s with VEC4, as matmul_tiled).

override CO_FM: u32 = 2u;
override CO_FN: u32 = 2u;
// Subgroup blocks along N, and in all.
override CO_BLOCKS_N: u32 = BN / (FRAG * CO_FN);
override CO_BLOCKS: u32 = (BM / (FRAG * CO_FM)) * CO_BLOCKS_N;

// Sizes of the workgroup arrays, two K steps each (named: naga needs a named
// override there).
override CO_A_LEN: u32 = 2u * BM * BK;
override CO_B_LEN: u32 = 2u * BK * BN;
var<workgroup> co_a: array<f16, CO_A_LEN>;
var<workgroup> co_b: array<f16, CO_B_LEN>;
// One FRAG×FRAG epilogue slot per subgroup: CO_SUBGROUPS is the most the
// workgroup can have (NT over the adapter's smallest subgroup).
override CO_SUBGROUPS: u32 = CO_BLOCKS;
override CO_C_LEN: u32 = CO_SUBGROUPS * FRAG * FRAG;
var<workgroup> co_c: array<f32, CO_C_LEN>;

// Range scaling (see the header).
override AMAX_GROUPS: u32 = 128u;
const AMAX_WG: u32 = 256u;
// Per workgroup of matmul_amax, the bits of its largest |x|: [A's AMAX_GROUPS, B's].
@group(0) @binding(7) var<storage, read_write> amax_parts: array<u32>;
var<workgroup> amax_wg: array<atomic<u32>, 2>;

// The exponent of an operand's scale from the bits of its largest magnitude.
fn range_shift(amax_bits: u32) -> i32 {
    let special = amax_bits == 0u || amax_bits >= 0x7f800000u;
    let e = i32(amax_bits >> 23u) - 127;
    return select(clamp(14 - e, -126, 126), 0, special);
}

// One workgroup per (operand, share), the grid 2·G workgroups along x (G ≤
// AMAX_GROUPS): the largest |x| of the elements of A (workgroups [0, G)) or B
// (the next G) the product reads.
@compute @workgroup_size(AMAX_WG)
fn matmul_amax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    if (lid == 0u) {
        atomicStore(&amax_wg[0], 0u);
    }
    workgroupBarrier();
    let groups = nwg.x / 2u;
    let of_b = wg.x >= groups;
    let share = wg.x % groups;
    let per = select(p.m * p.k, p.k * p.n, of_b);
    let off = select(p.a_off, p.b_off, of_b);
    let stride = select(p.a_bs, p.b_bs, of_b);
    let batches = select(p.batch, 1u, stride == 0u);
    var most = 0u;
    for (var t = 0u; t < batches; t++) {
        let base = off + t * stride;
        for (var r = share * AMAX_WG + lid; r < per; r += groups * AMAX_WG) {
            var v: f32;
            if (of_b) {
                v = b[base + r];
            } else {
                v = a[base + r];
            }
            // Finite elements only: an infinity or NaN passes through the
            // product as in f32 and must not set the others' scale.
            let bits = bitcast<u32>(abs(v));
            most = max(most, select(0u, bits, bits < 0x7f800000u));
        }
    }
    atomicMax(&amax_wg[0], most);
    workgroupBarrier();
    if (lid == 0u) {
        amax_parts[select(0u, AMAX_GROUPS, of_b) + share] = atomicLoad(&amax_wg[0]);
    }
}

// Stores this invocation's share of a K step, loaded by load_tiles (the
// element order of matmul_tiled's store_tiles), into workgroup buffer `buf`,
// each element times its operand's scale and rounded to f16.
fn co_store_tiles(ra: ptr<function, array<f32, 16>>, rb: ptr<function, array<f32, 16>>,
                  ra4: ptr<function, array<vec4<f32>, 4>>, rb4: ptr<function, array<vec4<f32>, 4>>,
                  buf: u32, lid: u32, scale_a: f32, scale_b: f32) {
    let a0 = buf * BM * BK;
    let b0 = buf * BK * BN;
    if (VEC4) {
        for (var l = 0u; l < LA4; l++) {
            let e = lid + l * NT;
            let v = (*ra4)[l] * scale_a;
            for (var q = 0u; q < 4u; q++) {
                if (TRANS_A) {
                    co_a[a0 + ((e % (BM / 4u)) * 4u + q) * BK + e / (BM / 4u)] = f16(v[q]);
                } else {
                    co_a[a0 + (e / (BK / 4u)) * BK + (e % (BK / 4u)) * 4u + q] = f16(v[q]);
                }
            }
        }
        for (var l = 0u; l < LB4; l++) {
            let e = lid + l * NT;
            let v = (*rb4)[l] * scale_b;
            for (var q = 0u; q < 4u; q++) {
                if (TRANS_B) {
                    co_b[b0 + ((e % (BK / 4u)) * 4u + q) * BN + e / (BK / 4u)] = f16(v[q]);
                } else {
                    co_b[b0 + (e / (BN / 4u)) * BN + (e % (BN / 4u)) * 4u + q] = f16(v[q]);
                }
            }
        }
    } else {
        for (var l = 0u; l < LA; l++) {
            let e = lid + l * NT;
            var f: u32;
            if (TRANS_A) {
                f = (e % BM) * BK + e / BM;
            } else {
                f = e;  // [i = e / BK][kk = e % BK]
            }
            co_a[a0 + f] = f16((*ra)[l] * scale_a);
        }
        for (var l = 0u; l < LB; l++) {
            let e = lid + l * NT;
            var f: u32;
            if (TRANS_B) {
                f = (e % BK) * BN + e / BK;
            } else {
                f = e;  // [kk = e / BN][j = e % BN]
            }
            co_b[b0 + f] = f16((*rb)[l] * scale_b);
        }
    }
}

@compute @workgroup_size(NT)
fn matmul_coop(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sid: u32,
               @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) lanes: u32) {
    let tile = tile_of(wg, nwg);
    let w = work_of(tile.z);
    // A workgroup past the last batch runs no K step and stores nothing (no early
    // return: cooperative operations need workgroup-uniform control flow).
    let live = w.t < p.batch;
    let k_begin = w.k_begin;
    let k_end = select(k_begin, w.k_end, live);
    let c_base = w.c_base;
    let row0 = tile.y * BM;
    let col0 = tile.x * BN;
    // This subgroup's block. Every subgroup runs the cooperative operations
    // (they need workgroup-uniform control flow); where the device runs more
    // subgroups than blocks, the extra ones repeat block sid % CO_BLOCKS into
    // their own epilogue slot and store nothing.
    let owner = live && sid < CO_BLOCKS;
    let block = sid % CO_BLOCKS;
    let bm0 = (block / CO_BLOCKS_N) * FRAG * CO_FM;
    let bn0 = (block % CO_BLOCKS_N) * FRAG * CO_FN;

    // The operands' scales, from matmul_amax's parts.
    if (lid < 2u) {
        atomicStore(&amax_wg[lid], 0u);
    }
    workgroupBarrier();
    for (var e = lid; e < AMAX_GROUPS; e += NT) {
        atomicMax(&amax_wg[0], amax_parts[e]);
        atomicMax(&amax_wg[1], amax_parts[AMAX_GROUPS + e]);
    }
    workgroupBarrier();
    let shift_a = range_shift(atomicLoad(&amax_wg[0]));
    let shift_b = range_shift(atomicLoad(&amax_wg[1]));
    let scale_a = ldexp(1.0, shift_a);
    let scale_b = ldexp(1.0, shift_b);

    var ra: array<f32, 16>;
    var rb: array<f32, 16>;
    var ra4: array<vec4<f32>, 4>;
    var rb4: array<vec4<f32>, 4>;
    var acc: array<CoopC, 8>;
    var af: array<CoopA, 4>;
    let steps = (k_end - k_begin + BK - 1u) / BK;
    if (steps > 0u) {
        load_tiles(&ra, &rb, &ra4, &rb4, w.a_base, w.b_base, row0, col0, k_begin, k_end, lid);
        co_store_tiles(&ra, &rb, &ra4, &rb4, 0u, lid, scale_a, scale_b);
    }
    workgroupBarrier();
    for (var step = 0u; step < steps; step++) {
        let cur = step & 1u;
        let more = step + 1u < steps;
        if (more) {
            load_tiles(&ra, &rb, &ra4, &rb4, w.a_base, w.b_base, row0, col0, k_begin + (step + 1u) * BK,
                       k_end, lid);
        }
        let a0 = cur * BM * BK;
        let b0 = cur * BK * BN;
        for (var kk = 0u; kk < BK; kk += FRAG) {
            for (var fm = 0u; fm < CO_FM; fm++) {
                af[fm] = coopLoadT<CoopA>(&co_a[a0 + (bm0 + fm * FRAG) * BK + kk], BK);
            }
            for (var fj = 0u; fj < CO_FN; fj++) {
                let bf = coopLoadT<CoopB>(&co_b[b0 + kk * BN + bn0 + fj * FRAG], BN);
                for (var fm = 0u; fm < CO_FM; fm++) {
                    let x = fm * CO_FN + fj;
                    acc[x] = coopMultiplyAdd(af[fm], bf, acc[x]);
                }
            }
        }
        if (more) {
            co_store_tiles(&ra, &rb, &ra4, &rb4, 1u - cur, lid, scale_a, scale_b);
        }
        workgroupBarrier();
    }

    // Scaled back by 2^-(shift_a + shift_b) in two halves, each a valid ldexp
    // exponent, so no intermediate leaves f32's range where the result does not.
    let back = -(shift_a + shift_b);
    let back_lo = back / 2;
    let back_hi = back - back_lo;
    let slot = sid * FRAG * FRAG;
    for (var x = 0u; x < CO_FM * CO_FN; x++) {
        coopStoreT(acc[x], &co_c[slot], FRAG);
        workgroupBarrier();
        if (owner) {
            let i0 = row0 + bm0 + (x / CO_FN) * FRAG;
            let j0 = col0 + bn0 + (x % CO_FN) * FRAG;
            for (var e = lane; e < FRAG * FRAG; e += lanes) {
                let i = i0 + e / FRAG;
                let j = j0 + e % FRAG;
                if (i < p.m && j < p.n) {
                    let v = ldexp(ldexp(co_c[slot + e], back_lo), back_hi);
                    if (SPLIT_K) {
                        c[c_base + i * p.n + j] = v;
                    } else {
                        write_c(c_base, i, j, v);
                    }
                }
            }
        }
        workgroupBarrier();
    }
}
